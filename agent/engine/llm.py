"""Model access: the only module that imports litellm.

`LLM(provider, model).complete(messages, tools)` returns our own `Reply`; litellm is imported on the
first call, not at import time, and its price map is the local copy bundled with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from agent.models import DEFAULT_MODELS, LLMCall, utcnow

# litellm's route prefix per provider.
PREFIXES: dict[str, str] = {
    "openai": "openai",
    "deepseek": "deepseek",
    "anthropic": "anthropic",
    "google": "gemini",
    "groq": "groq",
    "mistral": "mistral",
    "together": "together_ai",
}
# Environment variables holding each provider's key (first one found wins).
KEY_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "google": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "together": ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"),
}
# Environment variables that point a provider at another server (first one found wins).
BASE_URL_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "deepseek": ("DEEPSEEK_BASE_URL", "DEEPSEEK_API_BASE"),
    "anthropic": ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"),
    "google": ("GEMINI_BASE_URL", "GEMINI_API_BASE"),
    "groq": ("GROQ_BASE_URL", "GROQ_API_BASE"),
    "mistral": ("MISTRAL_BASE_URL", "MISTRAL_API_BASE"),
    "together": ("TOGETHER_BASE_URL", "TOGETHERAI_API_BASE"),
}
# Suggestions shown in the form's model box, newest first.
SUGGESTED_MODELS: dict[str, list[str]] = {
    "openai": ["o3", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "o4-mini"],
    "deepseek": ["deepseek-chat", "deepseek-reasoner"],
    "anthropic": ["claude-sonnet-4-5", "claude-opus-4-1", "claude-3-5-haiku-latest"],
    "google": ["gemini-2.5-flash", "gemini-2.5-pro"],
    "groq": ["llama-3.3-70b-versatile", "openai/gpt-oss-120b"],
    "mistral": ["mistral-large-latest", "mistral-medium-latest", "mistral-small-latest"],
    "together": ["meta-llama/Llama-3.3-70B-Instruct-Turbo", "deepseek-ai/DeepSeek-V3"],
}
MAX_RETRIES = 3
MAX_OUTPUT_TOKENS = 2048


class LLMError(RuntimeError):
    """The model could not be reached or refused the request; `retryable` says if trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False, call: LLMCall | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.call = call


class MissingKeyError(LLMError):
    """No API key for the provider; the message names the variable to set."""


@dataclass(frozen=True)
class ToolCall:
    """One tool call from the model; `arguments` is None when they were not valid JSON."""

    id: str
    name: str
    raw_arguments: str
    arguments: dict[str, Any] | None
    parse_error: str | None = None


@dataclass(frozen=True)
class Reply:
    """What the model said, with what it cost; `raw_message` is the reply as written (for its trace)."""

    text: str
    tool_calls: list[ToolCall]
    call: LLMCall
    raw_message: dict[str, Any] = field(default_factory=dict)


def litellm_model(provider: str, model: str | None) -> str:
    """The litellm model name for a provider and model: ('google', 'gemini-2.5-flash') -> 'gemini/gemini-2.5-flash'."""
    model = (model or DEFAULT_MODELS[provider]).strip()
    prefix = PREFIXES[provider]
    if model.startswith(prefix + "/"):
        return model
    return f"{prefix}/{model}"


def _env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def base_url(provider: str) -> str | None:
    """The base URL set for a provider in the environment, if any."""
    return _env(BASE_URL_VARS[provider])


def key_status(provider: str) -> tuple[bool, str]:
    """(ready, advice): whether a key (or a local server) is configured, and what to set if not."""
    if _env(KEY_VARS[provider]):
        return True, f"{KEY_VARS[provider][0]} is set"
    if provider == "openai" and base_url("openai"):
        return True, "OPENAI_BASE_URL points at an OpenAI-compatible server"
    advice = f"No API key for provider '{provider}': set {KEY_VARS[provider][0]}"
    if provider == "openai":
        advice += (
            ", or point OPENAI_BASE_URL at a local OpenAI-compatible server "
            "(vLLM, Ollama: http://localhost:11434/v1, llama.cpp)"
        )
    return False, advice


def check_key(provider: str) -> None:
    """Raise MissingKeyError naming the variable to set when the provider has no key."""
    ready, advice = key_status(provider)
    if not ready:
        raise MissingKeyError(advice)


def _import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.drop_params = True  # providers that lack a parameter (e.g. tool_choice) still answer
    return litellm


def preload() -> None:
    """Import litellm now (~10 s), e.g. in a worker thread at start-up, so no run pays for it."""
    _import_litellm()


async def _litellm() -> Any:
    """litellm, imported in a worker thread the first time so the event loop never stalls on it."""
    import sys

    module = sys.modules.get("litellm")
    if module is not None and hasattr(module, "acompletion"):
        return _import_litellm()
    return await asyncio.to_thread(_import_litellm)


class LLM:
    """A provider + model, called with our messages and tools; returns `Reply`."""

    def __init__(
        self,
        provider: str = "openai",
        model: str | None = None,
        *,
        timeout_s: float = 120.0,
        max_retries: int = MAX_RETRIES,
        backoff_s: float = 1.0,
    ) -> None:
        self.provider = provider
        self.model = model or DEFAULT_MODELS[provider]
        self.name = litellm_model(provider, self.model)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s

    def supports_vision(self) -> bool:
        """Whether the model takes images: litellm's map for models it knows; models it does not know
        (a llava behind OPENAI_BASE_URL) are trusted, since vision is only asked for on purpose."""
        litellm = _import_litellm()
        try:
            info = litellm.get_model_info(self.name)
        except Exception:
            return True
        return bool(info.get("supports_vision"))

    async def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        purpose: str = "step",
        tool_choice: str = "required",
    ) -> Reply:
        """One model call with bounded retries on rate limits, 5xx, timeouts and connection errors."""
        check_key(self.provider)
        litellm = await _litellm()
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "timeout": self.timeout_s,
            "num_retries": 0,
            "max_tokens": MAX_OUTPUT_TOKENS,
        }
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = tool_choice
        api_base = base_url(self.provider)
        if api_base:
            kwargs["api_base"] = api_base
        key = _env(KEY_VARS[self.provider])
        if key:
            kwargs["api_key"] = key
        elif api_base:
            kwargs["api_key"] = "sk-no-key-needed"  # local servers ignore it; the client insists on one
        if self.name.startswith("openai/o") or "gpt-5" in self.name:
            kwargs.pop("max_tokens")  # reasoning models take max_completion_tokens; leave the default

        attempt = 0
        while True:
            attempt += 1
            started_at = utcnow()
            t0 = time.perf_counter()
            try:
                response = await litellm.acompletion(**kwargs)
            except Exception as exc:  # converted at once into our own error type
                latency = (time.perf_counter() - t0) * 1000
                error = _convert_error(litellm, exc, self.provider)
                call = LLMCall(
                    model=self.name, provider=self.provider, purpose=purpose, started_at=started_at,
                    latency_ms=latency, error=str(error),
                )
                error.call = call
                if error.retryable and attempt <= self.max_retries:
                    delay = min(self.backoff_s * 2 ** (attempt - 1), 20.0) * (0.5 + random.random() / 2)
                    await asyncio.sleep(delay)
                    continue
                raise error from None
            latency = (time.perf_counter() - t0) * 1000
            return _to_reply(litellm, response, self, purpose, started_at, latency)


def _convert_error(litellm: Any, exc: Exception, provider: str) -> LLMError:
    message = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
    if isinstance(exc, litellm.AuthenticationError):
        var = KEY_VARS[provider][0]
        return LLMError(f"the {provider} API refused the key: check {var} ({message})")
    retryable_types = tuple(
        t
        for t in (
            getattr(litellm, "RateLimitError", None),
            getattr(litellm, "InternalServerError", None),
            getattr(litellm, "ServiceUnavailableError", None),
            getattr(litellm, "Timeout", None),
            getattr(litellm, "APIConnectionError", None),
            getattr(litellm, "BadGatewayError", None),
        )
        if t is not None
    )
    status = getattr(exc, "status_code", None)
    retryable = isinstance(exc, retryable_types) or (isinstance(status, int) and (status == 429 or status >= 500))
    kind = type(exc).__name__
    return LLMError(f"model call failed ({kind}{f' {status}' if status else ''}): {message}", retryable=retryable)


def _to_reply(litellm: Any, response: Any, llm: LLM, purpose: str, started_at: Any, latency_ms: float) -> Reply:
    choice = response.choices[0]
    message = choice.message
    usage = getattr(response, "usage", None)
    input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    try:
        cost = float(litellm.completion_cost(completion_response=response, model=llm.name))
    except Exception:  # models missing from the price map have no known cost
        cost = None
    calls = []
    for i, tc in enumerate(getattr(message, "tool_calls", None) or []):
        raw = tc.function.arguments or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else dict(raw)
            error = None if isinstance(args, dict) else "arguments must be a JSON object"
            args = args if isinstance(args, dict) else None
        except json.JSONDecodeError as exc:
            args, error = None, f"arguments are not valid JSON ({exc.msg} at char {exc.pos})"
        calls.append(ToolCall(id=tc.id or f"call_{i}", name=tc.function.name or "", raw_arguments=str(raw)[:2000],
                              arguments=args, parse_error=error))
    call = LLMCall(
        model=llm.name, provider=llm.provider, purpose=purpose, started_at=started_at, latency_ms=latency_ms,
        input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost,
        finish_reason=getattr(choice, "finish_reason", None),
    )
    content = message.content if isinstance(message.content, str) else ""
    # The reply as the model wrote it (untrimmed text, arguments unparsed), for the call's trace.
    raw = {"content": message.content if isinstance(message.content, str) else None,
           "tool_calls": [{"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
                          for tc in getattr(message, "tool_calls", None) or []],
           "finish_reason": call.finish_reason}
    return Reply(text=(content or "").strip(), tool_calls=calls, call=call, raw_message=raw)
