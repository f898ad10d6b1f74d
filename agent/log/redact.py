"""Secret scrubbing for everything the run log writes: no key or secret ever reaches the file.

Two rules: the values of secret-looking environment variables (`OPENAI_API_KEY`, `WEBHOOK_SECRET`,
...) and a running task's `sensitive_data` are replaced by a marker wherever they appear, in any
spelling (percent-encoded, HTML, JSON escapes: the engine's own `agent.engine.spellings`, so the run
log and the engine scrub alike), and request fields whose key names a credential (`api_key`,
`password`, `authorization`, ...) are dropped from the stored request.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence
from typing import Any, overload

from agent.engine.spellings import Scrubber
from agent.models import RunRequest
from agent.rules.policy import redact_url

__all__ = ["REDACTED", "dumps", "redact_url", "request_json", "scrub", "secret_values", "strip_secret_fields"]

REDACTED = "[redacted]"
# Env var names that hold credentials; their values are scrubbed from everything written.
_SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
# Request fields that look like credentials are dropped from the stored request JSON.
_SECRET_FIELD = re.compile(
    r"^(.*api[_-]?key.*|.*secret.*|.*password.*|.*passwd.*|.*token|authorization|.*credentials?|access[_-]?key.*)$",
    re.IGNORECASE,
)


def _looks_secret(value: str) -> bool:
    """A value worth scrubbing: long, one token, not a path, with a digit unless very long.

    Guards against redacting ordinary words everywhere (`SOME_KEY=disabled`).
    """
    return (
        len(value) >= 12
        and not any(c.isspace() for c in value)
        and not value.startswith("/")
        and (len(value) >= 24 or any(c.isdigit() for c in value))
    )


def secret_values() -> list[str]:
    """Values of secret-looking env vars, longest first (so a key containing another is caught whole); a list of
    keys (`name:key,name:key`, as WORKBENCH_API_KEYS holds them) also entry by entry."""
    found: set[str] = set()
    for name, value in os.environ.items():
        if not _SECRET_NAME.search(name):
            continue
        parts = [value]
        if "," in value or ":" in value:  # a list of keys, `name:key,...`
            parts += [part.partition(":")[2] or part for part in value.split(",")]
        found.update(p.strip() for p in parts if _looks_secret(p.strip()))
    return sorted(found, key=len, reverse=True)


@overload
def scrub(text: str, secrets: Sequence[str]) -> str: ...


@overload
def scrub(text: None, secrets: Sequence[str]) -> None: ...


@overload
def scrub(text: str | None, secrets: Sequence[str]) -> str | None: ...


def scrub(text: str | None, secrets: Sequence[str]) -> str | None:
    """`text` with every secret value, in any spelling, replaced by a marker."""
    if not text or not secrets:
        return text
    return _scrubber(tuple(secrets)).sub(text)


@functools.lru_cache(maxsize=32)
def _scrubber(secrets: tuple[str, ...]) -> Scrubber:
    # One compiled program per set of values: the store asks with the same set write after write.
    return Scrubber({secret: REDACTED for secret in secrets})


def strip_secret_fields(value: Any) -> Any:
    """A copy of `value` without string entries whose key names a credential."""
    if isinstance(value, dict):
        return {
            k: strip_secret_fields(v)
            for k, v in value.items()
            if not (isinstance(v, str) and v and _SECRET_FIELD.match(str(k)))
        }
    if isinstance(value, list):
        return [strip_secret_fields(v) for v in value]
    return value


def dumps(value: Any, secrets: Sequence[str]) -> str:
    """Compact JSON for a *_json column, secrets scrubbed (and the JSON still valid)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    if not secrets or scrub(text, secrets) == text:
        return text  # the common case: no value anywhere, one pass over the text
    # Scrubbing the JSON text could cut an escape in two (a value ending in `\` leaves `\"`) or put a mark
    # where a number stood: scrub the strings (keys too) and numbers themselves, then write the JSON again.
    # What still matches in that text is an artifact of JSON's escapes (`\nabc` holds "nabc"), not a value: the
    # scrubber knows every escaped spelling, so a value the strings held is gone from them already.
    return json.dumps(_scrub_tree(json.loads(text), secrets), ensure_ascii=False, separators=(",", ":"))


def _scrub_tree(value: Any, secrets: Sequence[str]) -> Any:
    """A JSON value with every string and number holding a secret value scrubbed (a number becomes a string)."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {scrub(k, secrets): _scrub_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_tree(v, secrets) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = json.dumps(value)
        return value if scrub(text, secrets) == text else scrub(text, secrets)
    return value


def request_json(request: RunRequest, secrets: Sequence[str]) -> str:
    """The request as stored: credential-named fields dropped, the webhook URL redacted, secret values scrubbed.

    `sensitive_data` never gets here: the request model excludes it from every dump.
    """
    stored = strip_secret_fields(request.model_dump(mode="json"))
    if stored.get("webhook_url"):
        stored["webhook_url"] = redact_url(stored["webhook_url"])
    return dumps(stored, secrets)
