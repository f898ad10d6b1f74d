"""Caps on every input, the same on every surface (REST, Gradio's API, the form), and the JSON checks
that enforce them. Pure standard library: the request model and the HTTP layer both import it.

A cap keeps one request from holding the server: a 2 MB schema once took the event loop for 30 s.
docs/security.md lists them; changing one here changes it everywhere.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DOMAINS",
    "MAX_DOMAIN_CHARS",
    "MAX_ID",
    "MAX_JSON_DEPTH",
    "MAX_MODEL_CHARS",
    "MAX_PROMPT_CHARS",
    "MAX_REVIEWER_CHARS",
    "MAX_REVIEW_COMMENT_CHARS",
    "MAX_SCHEMA_BYTES",
    "MAX_SCHEMA_DEPTH",
    "MAX_SECRETS",
    "MAX_SECRET_CHARS",
    "MAX_SESSION_ID_CHARS",
    "MAX_BUDGET_USD",
    "MAX_PRICE_PER_MTOK",
    "MAX_WORKFLOW_BYTES",
    "MAX_WORKFLOW_PARAMS_BYTES",
    "json_depth",
    "json_size",
]

MAX_BODY_BYTES = 1_000_000  # a whole request body, on /api and /gradio_api
MAX_JSON_DEPTH = 64  # nesting of any JSON body or JSON field
MAX_ID = 2**63 - 1  # DuckDB BIGINT: larger ids cannot exist, and must not reach the database
MAX_PROMPT_CHARS = 20_000
MAX_MODEL_CHARS = 200
MAX_SCHEMA_BYTES = 64 * 1024  # json_schema, as compact JSON
MAX_SCHEMA_DEPTH = 32
MAX_WORKFLOW_BYTES = 512 * 1024  # cached_workflow, as compact JSON
MAX_WORKFLOW_PARAMS_BYTES = 16 * 1024  # workflow_params, as compact JSON
MAX_DOMAINS = 100  # entries of allowed_domains
MAX_DOMAIN_CHARS = 253  # the longest DNS name
MAX_SECRETS = 50  # names in sensitive_data (all domains together)
MAX_SECRET_CHARS = 4096  # one sensitive value
MAX_BUDGET_USD = 100_000.0  # max_cost_usd of a run or an experiment
MAX_PRICE_PER_MTOK = 10_000.0  # price_per_mtok's input and output, USD per million tokens
MAX_SESSION_ID_CHARS = 128  # session_id: a name for a group of runs in tracing tools
MAX_REVIEWER_CHARS = 60  # a reviewer's name (a review's, or an API key's in WORKBENCH_API_KEYS)
MAX_REVIEW_COMMENT_CHARS = 4000  # a review's comment


def json_depth(value: Any, *, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply `value` nests (a scalar is 0, `[1]` is 1); stops counting past `limit`.

    Iterative, so a value nested far deeper than Python's recursion limit is measured, not crashed on.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def json_size(value: Any) -> int:
    """Bytes of `value` as compact UTF-8 JSON (call after `json_depth`: json.dumps recurses)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8"))
