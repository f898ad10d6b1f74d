"""Model access through litellm's real code path, against the fake OpenAI-compatible server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.engine.llm import KEY_VARS, LLM, LLMError, MissingKeyError, check_key, key_status, litellm_model
from agent.models import DEFAULT_MODELS, PROVIDERS
from agent.testing.fakellm import FakeLLM, call, reply

TOOLS = [{"type": "function", "function": {"name": "click", "description": "Click",
                                           "parameters": {"type": "object", "properties": {"index": {"type": "integer"}}}}}]
MESSAGES = [{"role": "user", "content": "hello"}]


def test_litellm_names_for_every_provider() -> None:
    assert {p: litellm_model(p, None) for p in PROVIDERS}.items() >= {
        "openai": "openai/o3",
        "deepseek": f"deepseek/{DEFAULT_MODELS['deepseek']}",
        "anthropic": f"anthropic/{DEFAULT_MODELS['anthropic']}",
        "google": f"gemini/{DEFAULT_MODELS['google']}",
        "groq": f"groq/{DEFAULT_MODELS['groq']}",
        "mistral": f"mistral/{DEFAULT_MODELS['mistral']}",
        "together": f"together_ai/{DEFAULT_MODELS['together']}",
    }.items()
    assert litellm_model("openai", "openai/gpt-4.1") == "openai/gpt-4.1"
    assert litellm_model("groq", "openai/gpt-oss-120b") == "groq/openai/gpt-oss-120b"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_key_names_the_variable(provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for names in KEY_VARS.values():
        for name in names:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    with pytest.raises(MissingKeyError) as info:
        check_key(provider)
    assert KEY_VARS[provider][0] in str(info.value)
    if provider == "openai":
        assert "OPENAI_BASE_URL" in str(info.value)
    monkeypatch.setenv(KEY_VARS[provider][0], "x")
    assert key_status(provider)[0] is True


async def test_missing_key_fails_before_any_request(fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    with pytest.raises(MissingKeyError, match="GROQ_API_KEY"):
        await LLM("groq").complete(MESSAGES, TOOLS)
    assert fake_llm.requests == []


async def test_reply_with_tool_calls_usage_and_latency(fake_llm: FakeLLM) -> None:
    fake_llm.handler = lambda body: reply("Click the button", call("click", index=4), usage=(1234, 56))
    answer = await LLM("openai", "gpt-4o-mini").complete(MESSAGES, TOOLS)
    assert answer.text == "Click the button"
    assert [(c.name, c.arguments, c.parse_error) for c in answer.tool_calls] == [("click", {"index": 4}, None)]
    assert (answer.call.input_tokens, answer.call.output_tokens) == (1234, 56)
    assert answer.call.finish_reason == "tool_calls"
    assert answer.call.model == "openai/gpt-4o-mini"
    assert answer.call.cost_usd is not None and answer.call.cost_usd > 0  # from litellm's local price map
    assert answer.call.latency_ms > 0
    sent = fake_llm.requests[0]
    assert sent["model"] == "gpt-4o-mini" and sent["tools"] == TOOLS and sent["tool_choice"] == "required"


async def test_retries_5xx_and_429_then_succeeds(fake_llm: FakeLLM) -> None:
    fake_llm.script([500, 429, reply("ok", call("click", index=1))])
    answer = await LLM("openai", "gpt-4o-mini", backoff_s=0.01).complete(MESSAGES, TOOLS)
    assert answer.tool_calls[0].arguments == {"index": 1}
    assert len(fake_llm.requests) == 3


async def test_gives_up_after_bounded_retries(fake_llm: FakeLLM) -> None:
    fake_llm.handler = lambda body: 503
    with pytest.raises(LLMError) as info:
        await LLM("openai", "gpt-4o-mini", backoff_s=0.01, max_retries=2).complete(MESSAGES, TOOLS)
    assert info.value.retryable and "503" in str(info.value)
    assert (info.value.kind, info.value.fatal) == ("server", False)  # the run may try again next step
    assert info.value.call is not None and info.value.call.error
    assert len(fake_llm.requests) == 3


async def test_client_errors_are_not_retried(fake_llm: FakeLLM) -> None:
    fake_llm.handler = lambda body: 400
    with pytest.raises(LLMError) as info:
        await LLM("openai", "gpt-4o-mini", backoff_s=0.01).complete(MESSAGES, TOOLS)
    assert not info.value.retryable
    assert (info.value.kind, info.value.fatal) == ("bad_request", True)  # a request the provider refuses
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize(("status", "kind", "fatal"), [(401, "auth", True), (403, "auth", True),
                                                       (404, "not_found", True), (429, "rate_limit", False)])
async def test_error_kinds(fake_llm: FakeLLM, status: int, kind: str, fatal: bool) -> None:
    fake_llm.handler = lambda body: status
    with pytest.raises(LLMError) as info:
        await LLM("openai", "gpt-4o-mini", backoff_s=0.01, max_retries=0).complete(MESSAGES, TOOLS)
    assert (info.value.kind, info.value.fatal) == (kind, fatal)
    assert info.value.call is not None and info.value.call.error.startswith(f"{kind}: ")


async def test_malformed_tool_arguments_are_reported_not_raised(fake_llm: FakeLLM) -> None:
    fake_llm.handler = lambda body: reply(None, call("click", _raw='{"index": 4'))
    answer = await LLM("openai", "gpt-4o-mini").complete(MESSAGES, TOOLS)
    assert answer.tool_calls[0].arguments is None
    assert "not valid JSON" in (answer.tool_calls[0].parse_error or "")


def test_importing_the_engine_does_not_import_litellm() -> None:
    code = "import sys, agent.engine.loop, agent.engine.llm; print('litellm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
