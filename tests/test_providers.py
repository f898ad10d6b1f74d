"""Every provider through litellm's real client code, against fakes of its own wire protocol.

Anthropic Messages and Gemini generateContent are faked natively (agent/testing/fakeproviders.py); OpenAI,
Groq, Mistral, Together and DeepSeek through the OpenAI fake with each dialect's rules. Each fake
enforces the documented request rules that matter here, so a request the real API would refuse
fails the test. No key is set: each provider runs keyless against its base URL, as a gateway would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from agent.engine.browser import Browser
from agent.engine.llm import BASE_URL_VARS, KEY_VARS, LLM, base_url, key_status, model_info, model_notes, output_limit
from agent.engine.loop import stream
from agent.models import PROVIDERS, RunFinished, RunRequest, RunResponse, validation_errors
from agent.rules import toolschema as schemas
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply
from agent.testing.fakeproviders import FakeAnthropic, FakeGemini, dialect_fake, schema_error

BASE_ENV = {"openai": "OPENAI_BASE_URL", "anthropic": "ANTHROPIC_BASE_URL", "google": "GEMINI_BASE_URL",
            "groq": "GROQ_BASE_URL", "mistral": "MISTRAL_BASE_URL", "together": "TOGETHER_BASE_URL",
            "deepseek": "DEEPSEEK_BASE_URL"}


def make_fake(provider: str, handler: Any = None, **kwargs: Any) -> tuple[FakeLLM, str]:
    """The provider's fake and the base URL to give the workbench (a documented form to normalise)."""
    if provider == "anthropic":
        fake: FakeLLM = FakeAnthropic(handler, **kwargs)
        return fake, fake.host + "/v1"  # the form users copy from SDK docs; litellm adds /v1/messages itself
    if provider == "google":
        fake = FakeGemini(handler, **kwargs)
        return fake, fake.host  # bare host: the workbench adds /v1beta
    fake = dialect_fake(provider, handler)
    return fake, fake.url


@contextmanager
def serving(provider: str, monkeypatch: pytest.MonkeyPatch, handler: Any = None, *, key: str | None = None,
            **kwargs: Any) -> Iterator[FakeLLM]:
    """The provider's fake, reached through its base-URL variable; no key unless `key`."""
    for names in (*KEY_VARS.values(), *BASE_URL_VARS.values()):
        for name in names:
            monkeypatch.delenv(name, raising=False)
    fake, url = make_fake(provider, handler, **kwargs)
    monkeypatch.setenv(BASE_ENV[provider], url)
    if key:
        monkeypatch.setenv(KEY_VARS[provider][0], key)
    try:
        yield fake
    finally:
        fake.close()


def done_schema(body: dict[str, Any]) -> dict[str, Any]:
    """The `data` schema of the done tool as the provider received it."""
    tool = next(t for t in body["tools"] if t["function"]["name"] == "done")
    return tool["function"]["parameters"]["properties"]["data"]


def conform(value: Any, schema: Any) -> Any:
    """`value` as a model following `schema` writes it: JSON text where the schema asks for a string."""
    if not isinstance(schema, dict) or (value is None and schema.get("nullable")):
        return value
    kind = schema.get("type")
    if kind == "string" and not isinstance(value, str):
        return json.dumps(value)
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: conform(v, props.get(k)) for k, v in value.items()}
    if kind == "array" and isinstance(value, list):
        return [conform(v, schema.get("items")) for v in value]
    return value


async def go(request: dict[str, Any], browser: Browser, **options: Any) -> RunResponse:
    events = [e async for e in stream(request, browser=browser, **options)]
    assert isinstance(events[-1], RunFinished)
    return events[-1].response


# ------------------------------------------------------------------ plain runs
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_plain_run_through_every_provider(provider: str, browser: Browser, site_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def model(body: dict[str, Any]) -> Any:
        if "value=Grace" not in last_user_text(body):
            return reply("Type the name", call("input", index=find_index(body, "Full name", tag="input"), text="Grace"))
        return reply("Done", call("done", text="typed", success=True))

    with serving(provider, monkeypatch, model) as fake:
        response = await go({"prompt": "Type Grace as the name", "provider": provider,
                             "start_url": f"{site_url}/form.html"}, browser)
    assert (response.status, response.result, response.error) == ("success", "typed", None), response.error
    assert [a.name for h in response.history for a in h.actions] == ["navigate", "input", "done"]
    assert fake.refusals == [] and len(fake.requests) == 2
    sent = fake.requests[0]
    assert {t["function"]["name"] for t in sent["tools"]} >= {"click", "hover", "input", "done"}
    assert (sent.get("max_tokens") or sent.get("max_completion_tokens")) == output_limit(provider, None)


def test_base_url_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    forms = {
        "google": [("https://gemini.example", "https://gemini.example/v1beta"),
                   ("https://gemini.example/v1beta/", "https://gemini.example/v1beta")],
        "anthropic": [("https://claude.example/v1", "https://claude.example"),
                      ("https://claude.example", "https://claude.example")],
        "groq": [("https://api.groq.com", "https://api.groq.com/openai/v1"),
                 ("https://api.groq.com/openai/v1", "https://api.groq.com/openai/v1")],
        "together": [("https://api.together.xyz", "https://api.together.xyz/v1"),
                     ("https://api.together.xyz/v1", "https://api.together.xyz/v1")],
        "mistral": [("https://api.mistral.ai/v1", "https://api.mistral.ai/v1")],
        "deepseek": [("https://api.deepseek.com", "https://api.deepseek.com")],
        "openai": [("http://localhost:11434/v1", "http://localhost:11434/v1"),
                   ("http://gateway.local", "http://gateway.local")],
    }
    for provider, cases in forms.items():
        for given, used in cases:
            for name in BASE_URL_VARS[provider]:
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv(BASE_URL_VARS[provider][0], given)
            assert base_url(provider) == used, (provider, given)
            monkeypatch.delenv(KEY_VARS[provider][0], raising=False)
            assert key_status(provider) == (True, f"{BASE_URL_VARS[provider][0]} points at a server of your own "
                                                  "(no key needed)")


async def test_a_key_is_sent_when_there_is_one(browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving("google", monkeypatch, key="gm-key-1", keys={"gm-key-1"}) as fake:
        response = await go({"prompt": "Say ok", "provider": "google"}, browser)
    assert response.status == "success" and fake.refusals == []


# ------------------------------------------------------------------ structured output
class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


class Basket(BaseModel):
    items: list[Item]
    note: str | None = None


CASES: dict[str, tuple[dict[str, Any] | None, Any]] = {
    "pydantic_defs": (Basket.model_json_schema(),
                      {"items": [{"name": "USB-C cable", "price": 9.99, "tags": ["usb"]}], "note": None}),
    "type_list_with_null": ({"type": "object", "properties": {"note": {"type": ["string", "null"]},
                                                              "count": {"type": ["integer", "null"]}},
                             "required": ["note", "count"]}, {"note": None, "count": 3}),
    "const_enum_format": ({"type": "object", "properties": {
        "kind": {"const": "product"}, "version": {"const": 2}, "stars": {"type": "integer", "enum": [1, 2, 3]},
        "color": {"enum": ["red", "blue"]}, "email": {"type": "string", "format": "email"},
        "when": {"type": "string", "format": "date-time"}},
        "required": ["kind", "version", "stars", "color", "email", "when"]},
        {"kind": "product", "version": 2, "stars": 3, "color": "blue", "email": "ada@example.com",
         "when": "2030-06-07T10:00:00Z"}),
    "array_without_items": ({"type": "object", "properties": {"tags": {"type": "array"}}, "required": ["tags"]},
                            {"tags": ["usb", "cable"]}),
    "map": ({"type": "object", "properties": {"prices": {"type": "object", "additionalProperties": {"type": "number"}}},
             "required": ["prices"]}, {"prices": {"USB-C cable": 9.99, "HDMI cable": 7.0}}),
    "one_of_any_of": ({"type": "object", "properties": {"id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                                                        "label": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
                       "required": ["id", "label"]}, {"id": 42, "label": None}),
    "top_level_array": ({"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "price": {"type": "number"}}, "required": ["name", "price"]}},
        [{"name": "USB-C cable", "price": 9.99}]),
    "json_mode": (None, [1, "two", {"three": 3}]),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_structured_result_through_every_provider(provider: str, case: str, browser: Browser,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    schema, value = CASES[case]
    model = lambda body: reply("Answer", call("done", data=conform(value, done_schema(body)), success=True))  # noqa: E731
    request = {"prompt": "Give the result", "provider": provider, "response_format": "json",
               **({"json_schema": schema} if schema is not None else {})}
    with serving(provider, monkeypatch, model) as fake:
        response = await go(request, browser)
    assert fake.refusals == []
    assert (response.status, response.result, response.error) == ("success", value, None)
    assert len(fake.requests) == 1  # right the first time: no repair round


def test_user_defs_are_hoisted_to_the_tool_root() -> None:
    from agent.engine.actions import done_tool

    schema = Basket.model_json_schema()
    for provider in ("openai", "anthropic", "groq"):
        params = done_tool(json_schema=schema, response_format="json", provider=provider)["function"]["parameters"]
        assert params["$defs"] == {"Item": {**schema["$defs"]["Item"], "title": "Item"} | {}} or "Item" in params["$defs"]
        assert params["properties"]["data"]["properties"]["items"]["items"] == {"$ref": "#/$defs/Item"}
        assert schema_error(params) is None  # every reference resolves from the tool's root
    # A reference into the user's own properties is rebased under `data`.
    odd = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"$ref": "#/properties/a"}}}
    params = done_tool(json_schema=odd, response_format="json", provider="openai")["function"]["parameters"]
    assert params["properties"]["data"]["properties"]["b"] == {"$ref": "#/properties/data/properties/a"}
    assert schema_error(params) is None
    # Gemini takes no references: they are inlined.
    gemini = schemas.for_provider(schema, "google").data
    assert "$ref" not in json.dumps(gemini) and gemini["properties"]["items"]["items"]["required"] == ["name", "price"]


@pytest.mark.parametrize(("schema", "message"), [
    ({"type": "object", "properties": {"child": {"$ref": "#"}}},
     "`$ref` at child/child cannot be sent to google: # refers to itself and Gemini takes no recursive schemas"),
    ({"type": "object", "properties": {"pair": {"type": "array", "prefixItems": [{"type": "string"}]}}},
     "`prefixItems` at pair cannot be sent to google: Gemini takes no tuples"),
    ({"type": "object", "properties": {"v": {"anyOf": [{"type": "object"}, {"type": "string"}]}}},
     "`anyOf` at v cannot be sent to google: a choice (a JSON object) that Gemini cannot type"),
])
def test_untranslatable_schemas_are_refused_at_submission(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        RunRequest(prompt="Give the result", provider="google", json_schema=schema)
    [error] = validation_errors(info.value)
    assert error["field"] == "json_schema" and error["message"].startswith(message)
    RunRequest(prompt="Give the result", provider="anthropic", json_schema=schema)  # another provider takes it


def test_remote_references_are_refused_for_every_provider() -> None:
    for provider in PROVIDERS:
        with pytest.raises(ValidationError) as info:
            RunRequest(prompt="Give it", provider=provider, json_schema={"$ref": "https://example.com/s.json"})
        assert "points outside the schema" in str(info.value)


async def test_invalid_result_is_repaired_against_the_users_schema(browser: Browser,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    schema = CASES["map"][0]
    answers = iter([{"prices": {"cable": "cheap"}}, {"prices": {"cable": 9.99}}])
    model = lambda body: reply("Answer", call("done", data=conform(next(answers), done_schema(body))))  # noqa: E731
    with serving("google", monkeypatch, model) as fake:
        response = await go({"prompt": "Prices", "provider": "google", "json_schema": schema}, browser)
    assert response.status == "success" and response.result == {"prices": {"cable": 9.99}}
    first = response.history[0].actions[0]
    assert first.error.startswith("the result does not match the JSON schema: prices/cable: 'cheap' is not of type")
    assert "prices/cable: 'cheap'" in last_user_text(fake.requests[1])


# ------------------------------------------------------------------ errors
async def test_groq_tool_use_failed_goes_back_to_the_model(browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    schema = {"type": "object", "properties": {"price": {"type": "number"}}, "required": ["price"]}
    answers = iter([{"price": "9.99"}, {"price": "9.99"}, {"price": 9.99}])
    model = lambda body: reply("Answer", call("done", data=next(answers), success=True))  # noqa: E731
    with serving("groq", monkeypatch, model) as fake:
        response = await go({"prompt": "Price", "provider": "groq", "json_schema": schema}, browser)
    assert (response.status, response.result) == ("success", {"price": 9.99})
    assert [h.description[:29] for h in response.history] == ["The model's reply was refused"] * 2 + ["Answer"]
    error = response.history[0].actions[0].error
    assert error.startswith("the provider rejected your tool call: tool call validation failed: parameters for "
                            "tool done did not match schema")
    assert 'what you sent: {"name": "done", "arguments": "{\\"data\\": {\\"price\\": \\"9.99\\"}' in error
    assert "tool call validation failed" in last_user_text(fake.requests[1])
    assert all(c.error.startswith("model_output: ") for h in response.history[:2] for c in h.llm_calls)


async def test_model_mistakes_count_as_consecutive_failures(browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    model = lambda body: reply("Answer", call("done", data={"price": "x"}))  # noqa: E731
    schema = {"type": "object", "properties": {"price": {"type": "number"}}, "required": ["price"]}
    with serving("groq", monkeypatch, model):
        response = await go({"prompt": "Price", "provider": "groq", "json_schema": schema}, browser, max_failures=3)
    assert len(response.history) == 3
    assert response.error.startswith("stopped after 3 consecutive failures; last: the provider rejected your tool call")


@pytest.mark.parametrize(("provider", "fake_options", "key", "kind", "says"), [
    ("google", {"keys": {"right-key"}}, "wrong-key", "auth", "the google API refused the key: check GEMINI_API_KEY"),
    ("anthropic", {"models": {"claude-sonnet-4-5"}}, None, "not_found",
     "the anthropic API does not know the model 'claude-nonexistent'"),
    ("google", {"models": {"gemini-2.5-flash"}}, None, "not_found",
     "the google API does not know the model 'claude-nonexistent'"),
])
async def test_errors_that_cannot_improve_end_the_run_at_once(
    provider: str, fake_options: dict[str, Any], key: str | None, kind: str, says: str, browser: Browser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = "claude-nonexistent" if kind == "not_found" else None
    with serving(provider, monkeypatch, key=key, **fake_options) as fake:
        response = await go({"prompt": "Anything", "provider": provider, **({"model": model} if model else {})},
                            browser, max_failures=5)
    assert len(fake.raw) == 1  # not retried, not repeated
    assert len(response.history) == 1 and response.status == "failure"
    assert response.error.startswith(f"the model could not be used ({kind}): {says}"), response.error


async def test_a_request_the_provider_refuses_ends_the_run(browser: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving("openai", monkeypatch, lambda body: {"__status__": 400, "error": {
            "message": "Unrecognized request argument supplied: foo", "type": "invalid_request_error"}}) as fake:
        response = await go({"prompt": "Anything", "model": "gpt-4.1-mini"}, browser, max_failures=5)
    assert len(fake.requests) == 1 and len(response.history) == 1
    assert response.error == ("the model could not be used (bad_request): the openai API refused the request "
                              "(BadRequestError 400): Unrecognized request argument supplied: foo")


# ------------------------------------------------------------------ output limits
def test_output_limit_comes_from_the_model_map() -> None:
    assert output_limit("google", "gemini-2.5-flash") == 32768  # a thinking model: thinking counts against it
    assert output_limit("openai", "o3") == 32768
    assert output_limit("openai", "gpt-4o") == 4096
    assert output_limit("deepseek", "deepseek-chat") == 4096
    assert output_limit("openai", "llava-local") == 2048  # unknown to litellm


async def test_reasoning_models_get_their_limit_as_max_completion_tokens(browser: Browser,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with serving("openai", monkeypatch) as fake:  # the OpenAI rules refuse max_tokens for o3
        response = await go({"prompt": "Say ok", "model": "o3"}, browser)
    assert response.status == "success" and fake.refusals == []


@pytest.mark.parametrize("provider", ["google", "anthropic", "openai"])
async def test_a_reply_cut_at_the_output_limit_says_so(provider: str, browser: Browser,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([reply("Let me think about this at great length", finish="length"),
                    reply("Done", call("done", text="ok", success=True))])
    with serving(provider, monkeypatch, lambda body: next(answers)) as fake:
        response = await go({"prompt": "Say ok", "provider": provider}, browser)
    assert response.status == "success"
    first = response.history[0]
    limit = output_limit(provider, None)
    assert first.actions[0].error == (
        f"the reply was cut at the output limit ({limit} tokens, finish_reason=length) before a whole action was "
        "written: think less, write shorter, call one action")
    assert first.llm_calls[0].finish_reason == "length"
    assert "finish_reason=length" in last_user_text(fake.requests[1])


# ------------------------------------------------------------------ vision and function calling
async def test_images_refused_by_the_provider_the_run_goes_on_without(
    browser: Browser, site_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
) -> None:
    answers = iter([reply("Look", call("scroll", down=True)), reply("Done", call("done", text="ok", success=True))])
    with serving("openai", monkeypatch, lambda body: next(answers)) as fake:
        response = await go({"prompt": "Look", "model": "text-only-local", "use_vision": True,
                             "start_url": f"{site_url}/form.html"}, browser, screenshot_dir=tmp_path)
    assert response.status == "success"
    assert [r[0] for r in fake.refusals] == [400]  # the first request carried the image
    assert all(isinstance(r["messages"][1]["content"], str) for r in fake.requests)  # every later one did not
    assert response.notes == ["the provider refused the screenshots (the provider refused the screenshot "
                              "(BadRequestError 400): Invalid content type. image_url is only supported by certain "
                              "models.); the run went on without images"]
    calls = response.history[1].llm_calls
    assert [c.error is not None for c in calls] == [True, False] and calls[0].error.startswith("vision_refused:")


async def test_a_model_without_function_calling_still_gets_tools_and_is_named(
    browser: Browser, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert model_info("deepseek", "deepseek-reasoner")["supports_function_calling"] is False
    assert model_notes("deepseek", "deepseek-reasoner")[0].startswith(
        "litellm marks 'deepseek-reasoner' as lacking function calling")
    assert model_notes("openai", "gpt-4.1") == []
    with serving("deepseek", monkeypatch) as fake:
        response = await go({"prompt": "Say ok", "provider": "deepseek", "model": "deepseek-reasoner"}, browser)
    assert fake.requests[0]["tools"] and fake.requests[0]["tool_choice"] == "required"
    assert response.notes == ["litellm marks 'deepseek-reasoner' as lacking function calling; the actions were sent "
                              "as tools anyway (the provider may refuse them)"]


def test_llm_uses_the_model_limit() -> None:
    assert LLM("google").max_tokens == 32768 and LLM("openai", "gpt-4o-mini").max_tokens == 4096


# ------------------------------------------------------------------ one record per provider
def test_every_provider_record_is_complete_and_used_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider is its record in agent.providers: the request's values, defaults, litellm names, keys, base
    URLs, schema dialect and the docs all come from it (the form's choices: tests/test_ui.py)."""
    from typing import get_args

    from agent.engine.actions import tools
    from agent.providers import REGISTRY, litellm_model
    from agent.rules.toolschema import DIALECTS

    assert tuple(REGISTRY) == PROVIDERS == get_args(RunRequest.model_fields["provider"].annotation)
    with pytest.raises(ValidationError) as info:
        RunRequest(prompt="abc", provider="acme")
    assert validation_errors(info.value) == [{"field": "provider", "message": f"must be one of {', '.join(PROVIDERS)}"}]
    for names in (*KEY_VARS.values(), *BASE_URL_VARS.values()):
        for name in names:
            monkeypatch.delenv(name, raising=False)
    from pathlib import Path

    keys_page = (Path(__file__).resolve().parent.parent / "docs" / "providers.md").read_text(encoding="utf-8")
    for name, record in REGISTRY.items():
        assert record.name == name and record.litellm_prefix and record.url_form and record.own_server
        assert f"| `{name}` | `{record.key_vars[0]}`" in keys_page, f"docs/providers.md's keys table lacks {name}"
        assert record.models[0] == record.default_model  # the form suggests the default first
        assert record.key_vars and record.base_url_vars and all(v.isupper() for v in record.key_vars)
        assert record.schema_dialect in DIALECTS
        assert RunRequest(prompt="abc", provider=name).model == record.default_model
        assert litellm_model(name, None) == f"{record.litellm_prefix}/{record.default_model}"
        assert key_status(name) == (False, f"No API key for provider '{name}': set {record.key_vars[0]}, or point "
                                           f"{record.base_url_vars[0]} at {record.own_server}")
        monkeypatch.setenv(record.base_url_vars[-1], "https://gateway.example")
        assert base_url(name) == record.api_base("https://gateway.example")
        assert key_status(name)[0] is True
        done = tools(json_schema={"type": "object", "properties": {"a": {"type": "array"}}}, provider=name)[-1]
        assert done["function"]["name"] == "done"
        bare = next(t for t in tools(provider=name) if t["function"]["name"] == "go_back")["function"]
        assert ("parameters" in bare) is not record.no_empty_parameters
        # Its names in traces: OpenInference's a value of its own list; from the record in the exporter too.
        from openinference.semconv.trace import OpenInferenceLLMProviderValues

        from agent.service.otel_content import provider_names

        genai, openinference = provider_names(name)
        assert openinference in {v.value for v in OpenInferenceLLMProviderValues}, name
        assert (genai, openinference) == (record.genai_name or name, record.openinference_name or name)
