"""The request and response models: defaults, validation messages, the contract's shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.models import DEFAULT_MODELS, PROVIDERS, RunRequest, RunResponse, schema_problem, validation_errors

# The contract's field lists (from shared/seed/run-agent-api.txt), kept in the repository.
CONTRACT = Path(__file__).resolve().parent / "contract" / "run-agent-api.json"


def errors_of(body: dict) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        RunRequest.model_validate(body)
    return validation_errors(info.value)


def test_defaults_match_the_contract() -> None:
    request = RunRequest(prompt="find a cable")
    assert request.model_dump(include={
        "prompt", "model", "provider", "wait_for_completion", "webhook_url", "response_format", "json_schema",
        "use_cached_workflow", "cached_workflow",
    }) == {
        "prompt": "find a cable", "model": "o3", "provider": "openai", "wait_for_completion": True,
        "webhook_url": None, "response_format": "text", "json_schema": None, "use_cached_workflow": False,
        "cached_workflow": None,
    }


def test_explicit_null_is_accepted_for_every_optional_field() -> None:
    optional = [name for name in RunRequest.model_fields if name != "prompt"]
    request = RunRequest.model_validate({"prompt": "abc", **{name: None for name in optional}})
    assert (request.model, request.provider, request.wait_for_completion, request.response_format) == (
        "o3", "openai", True, "text")


@pytest.mark.parametrize("provider", [p for p in PROVIDERS if p != "openai"])
def test_provider_without_model_gets_that_providers_default(provider: str) -> None:
    assert RunRequest(prompt="abc", provider=provider).model == DEFAULT_MODELS[provider]
    assert RunRequest(prompt="abc", provider=provider, model="my-model").model == "my-model"


def test_json_schema_as_object_or_string() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    assert RunRequest(prompt="abc", json_schema=schema).json_schema == schema
    assert RunRequest(prompt="abc", json_schema=json.dumps(schema)).json_schema == schema
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "array", "items": {"type": "number"}}
    assert RunRequest(prompt="abc", json_schema=draft7).json_schema == draft7


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({}, "prompt", "is required"),
        ({"prompt": "ab"}, "prompt", "at least 3 characters"),
        ({"prompt": "   "}, "prompt", "at least 3 characters"),
        ({"prompt": "abc", "provider": "openia"}, "provider", "must be one of openai, deepseek"),
        ({"prompt": "abc", "response_format": "xml"}, "response_format", "'text' or 'json'"),
        ({"prompt": "abc", "json_schema": "<string>"}, "json_schema", "is not valid JSON"),
        ({"prompt": "abc", "json_schema": {"type": "strnig"}}, "json_schema", "is not a valid JSON Schema at type"),
        ({"prompt": "abc", "json_schema": [1, 2]}, "json_schema", "must be a JSON Schema object"),
        ({"prompt": "abc", "webhook_url": "ftp://x.org/h"}, "webhook_url", "http:// or https://"),
        ({"prompt": "abc", "webhook_url": "not a url"}, "webhook_url", "http:// or https://"),
        ({"prompt": "abc", "cached_workflow": [1]}, "cached_workflow", "must be a workflow object"),
        ({"prompt": "abc", "promt": "x"}, "promt", "unknown field"),
        ({"prompt": "abc", "max_steps": 0}, "max_steps", "greater than or equal to 1"),
        ({"prompt": 123}, "prompt", "valid string"),
        ({"prompt": "abc", "wait_for_completion": "maybe"}, "wait_for_completion", "valid boolean"),
    ],
)
def test_bad_requests_name_the_field_and_the_fix(body: dict, field: str, fragment: str) -> None:
    errors = errors_of(body)
    assert [e["field"] for e in errors] == [field]
    assert fragment in errors[0]["message"]


def test_response_has_every_contract_field_with_contract_types() -> None:
    contract = json.loads(CONTRACT.read_text())
    dumped = RunResponse(task_id=1, task_run_id=2).model_dump(mode="json")
    assert set(contract["response"]) <= set(dumped)
    assert dumped["status"] == "in_progress" and dumped["history"] == []
    assert set(contract["status"]) == set(RunResponse.model_fields["status"].annotation.__args__)
    from agent.models import ActionResult, HistoryItem

    item = HistoryItem(description="d", actions=[ActionResult(name="click", params={"index": 1})]).model_dump()
    assert set(contract["history_item"]) <= set(item)
    assert set(contract["action"]) <= set(item["actions"][0])


def test_request_has_every_contract_field_with_its_default() -> None:
    contract = json.loads(CONTRACT.read_text())["request"]
    assert set(contract) <= set(RunRequest.model_fields)
    request = RunRequest(prompt="abc")
    for name, spec in contract.items():
        if "default" in spec:
            assert getattr(request, name) == (spec["default"] if spec["default"] is not None else None), name
    enum = contract["provider"]["enum"]  # the contract's providers, in its order; more may be added after them
    assert list(PROVIDERS)[:len(enum)] == enum


def test_validating_against_a_schema_never_fetches_a_reference() -> None:
    """Even a schema that slipped past submission is validated with an empty registry: nothing is fetched."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class _H(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            hits.append(self.path)
            body = b'{"type": "string"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/schema.json"
        problem = schema_problem({"$ref": url}, 5)
        assert problem is not None and problem.startswith("the JSON schema cannot be used")
        assert hits == []
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------ each field said once, derived everywhere
def test_every_request_field_says_where_it_goes_and_the_engine_and_experiments_derive_from_it() -> None:
    from typing import get_args

    from agent.engine.loop import EngineOptions, resolve_options
    from agent.experiments.spec import VARIANT_FIELDS
    from agent.models import ENGINE_FIELDS, FIELDS, TASK_FIELDS
    from agent.models.fields import Section, value_type

    assert list(FIELDS) == list(RunRequest.model_fields)  # each field has its About (else the import fails)
    assert len({a.elem_id for a in FIELDS.values()}) == len(FIELDS)  # one control per field on the page
    assert {a.section for a in FIELDS.values()} <= set(get_args(Section))
    contract = json.loads(CONTRACT.read_text())["request"]
    assert {n for n, a in FIELDS.items() if not a.added} == set(contract)  # "added" is what the seed lacks
    # Every engine field is an engine option of the same type, whose default is what leaving it empty means.
    for name in ENGINE_FIELDS:
        option = EngineOptions.model_fields[name]
        assert value_type(option) == value_type(RunRequest.model_fields[name]), name
        assert option.default == FIELDS[name].engine_default, name
    # ...and an engine option named like a request field is one the request sets.
    assert set(EngineOptions.model_fields) & set(RunRequest.model_fields) == set(ENGINE_FIELDS)
    # (use_vision=True would ask litellm's map whether o3 takes images: a 10 s import)
    given = RunRequest(prompt="abc", start_url="https://shop.example/", max_steps=7, use_vision=False,
                       allowed_domains=["shop.example"])
    options = resolve_options(given, None, {})
    assert {n: getattr(options, n) for n in ENGINE_FIELDS} == {n: getattr(given, n) for n in ENGINE_FIELDS}
    assert {n: getattr(resolve_options(RunRequest(prompt="abc"), None, {}), n) for n in ENGINE_FIELDS} == {
        n: FIELDS[n].engine_default for n in ENGINE_FIELDS}
    # An experiment's variant sets every field the task does not.
    assert set(VARIANT_FIELDS) | TASK_FIELDS == set(RunRequest.model_fields)
    assert not set(VARIANT_FIELDS) & TASK_FIELDS


def test_the_docs_tables_are_generated_from_the_request_and_the_providers() -> None:
    from agent.models.docs import DOCS, GENERATED, filled, request_fields_markdown

    for page in GENERATED:
        text = (DOCS / page).read_text(encoding="utf-8")
        assert filled(page, text) == text, f"docs/{page} is stale: run `python -m agent.models.docs`"
    rows = request_fields_markdown().splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == list(RunRequest.model_fields)
    for row, (name, info) in zip(rows, RunRequest.model_fields.items()):
        assert info.description and info.description.replace("<", "&lt;").replace(">", "&gt;") in row, name


def test_the_models_floor_imports_nothing_above_it() -> None:
    """agent.models and the leaves it stands on import neither the engine nor any layer above (nor litellm)."""
    import ast
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    floor = [*sorted((root / "agent" / "models").glob("*.py")), *sorted((root / "agent" / "rules").glob("*.py")),
             *(root / "agent" / f for f in ("providers.py", "modelmap.py", "schemas.py", "limits.py"))]
    above = ("agent.engine", "agent.service", "agent.log", "agent.workflows", "agent.experiments", "agent.ui")
    for path in floor:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            bad = [n for n in names if n.startswith(above) or n == "litellm" and path.name != "modelmap.py"]
            assert not bad, f"{path.relative_to(root)} imports {bad}: the models floor imports only below it"
    code = ("import sys, agent.models; print(sorted(m for m in sys.modules if m.startswith(('agent.engine', "
            "'litellm', 'gradio', 'duckdb'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"
