"""Model access: the only module that calls models through litellm.

`LLM(provider, model).complete(messages, tools)` returns our own `Reply`; litellm is imported (by
`agent.modelmap.load_litellm`, with its price map the local copy bundled with it) on the first call,
not at import time. Each provider's names, variables and URL forms are its record in `agent.providers`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.modelmap import load_litellm, model_info, model_notes, model_price, output_limit, text_only
from agent.models import LLMCall, PricePerMTok, utcnow
from agent.providers import BASE_URL_VARS, DEFAULT_MODELS, KEY_VARS, REGISTRY, litellm_model

# Re-exported: what litellm's model map says of a model lives in agent.modelmap (a leaf the request model uses).
__all__ = ["LLM", "BASE_URL_VARS", "KEY_VARS", "LLMError", "MissingKeyError", "Reply", "ToolCall", "base_url",
           "check_key", "key_status", "litellm_model", "model_info", "model_notes", "model_price", "output_limit",
           "preload", "text_only", "warm_call"]

MAX_RETRIES = 3

ErrorKind = Literal[
    "auth", "not_found", "bad_request", "context_window", "missing_key",  # fatal: retrying cannot help
    "model_output", "length", "vision_refused", "rate_limit", "server",  # the run can go on
]
FATAL_KINDS = frozenset({"auth", "not_found", "bad_request", "context_window", "missing_key"})
# A 400 on a request that carried images, with one of these words, is the server refusing images.
_IMAGE_REFUSAL = re.compile(r"image|vision|multimodal|mmproj|content must be a string", re.I)
# A 400 about the model's own tool call (Groq validates the arguments against the tool schema).
_OUTPUT_REFUSAL = re.compile(r"tool_use_failed|tool call validation failed|failed to call a function", re.I)


class LLMError(RuntimeError):
    """The model call failed. `kind` says why (see ErrorKind), `fatal` whether a run must stop now, and
    `retryable` whether the same request may succeed when sent again (rate limits, 5xx, timeouts)."""

    def __init__(
        self, message: str, *, kind: ErrorKind = "server", fatal: bool | None = None, retryable: bool = False,
        call: LLMCall | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.fatal = kind in FATAL_KINDS if fatal is None else fatal
        self.retryable = retryable
        self.call = call


class MissingKeyError(LLMError):
    """No API key for the provider; the message names the variable to set."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="missing_key")


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


def _env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def base_url(provider: str) -> str | None:
    """The base URL set for a provider in the environment, in the form litellm needs (its record's rules)."""
    raw = _env(BASE_URL_VARS[provider])
    return REGISTRY[provider].api_base(raw) if raw else None


def key_status(provider: str) -> tuple[bool, str]:
    """(ready, advice): whether a key (or a server of one's own) is configured, and what to set if not."""
    if _env(KEY_VARS[provider]):
        return True, f"{KEY_VARS[provider][0]} is set"
    if base_url(provider):
        var = next(name for name in BASE_URL_VARS[provider] if _env((name,)))
        return True, f"{var} points at a server of your own (no key needed)"
    return False, REGISTRY[provider].missing_key()


def check_key(provider: str) -> None:
    """Raise MissingKeyError naming the variable to set when the provider has no key."""
    ready, advice = key_status(provider)
    if not ready:
        raise MissingKeyError(advice)


def preload() -> None:
    """Import litellm now (~10 s), e.g. in a worker thread at start-up, so no run pays for it."""
    load_litellm()


def warm_call() -> None:
    """Import litellm and take its completion path once with a canned answer (no network, no key): the
    modules it loads on a first call (~1 s) are loaded at start-up instead of by the first run."""
    litellm = load_litellm()
    try:
        litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "warm-up"}],
                           mock_response="ok", api_key="sk-warm-up-not-sent")
    except Exception:  # a litellm without mock responses: the import alone is most of the gain
        pass


async def _litellm() -> Any:
    """litellm, imported in a worker thread the first time so the event loop never stalls on it."""
    module = sys.modules.get("litellm")
    if module is not None and hasattr(module, "acompletion"):
        return load_litellm()
    return await asyncio.to_thread(load_litellm)


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
        price: PricePerMTok | None = None,
    ) -> None:
        self.provider = provider
        self.price = price  # the run's price_per_mtok: overrides litellm's price map
        self.model = model or DEFAULT_MODELS[provider]
        self.name = litellm_model(provider, self.model)
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._max_tokens: int | None = None

    @property
    def max_tokens(self) -> int:
        """The output limit of a reply (see output_limit); reads litellm's map, so litellm is imported."""
        if self._max_tokens is None:
            self._max_tokens = output_limit(self.provider, self.model)
        return self._max_tokens

    def supports_vision(self) -> bool:
        """Whether the model takes images: litellm's map for models it knows; models it does not know
        (a llava behind OPENAI_BASE_URL) are trusted, since vision is only asked for on purpose."""
        return not text_only(self.provider, self.model)

    async def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        purpose: str = "step",
        tool_choice: str = "required",
        temperature: float | None = None,
    ) -> Reply:
        """One model call with bounded retries on rate limits, 5xx, timeouts and connection errors.

        Raises LLMError: its `kind` says why, `fatal` whether the run must stop. A reply cut at the
        output limit before a whole tool call is an LLMError of kind "length". The reply's (or the
        LLMError's) `call` covers the whole call: its latency includes failed attempts and the backoff
        between them, so that time spent waiting on the model is never lost.
        """
        first_at, t_first = utcnow(), time.perf_counter()

        def failed(error: LLMError) -> LLMError:
            error.call = LLMCall(model=self.name, provider=self.provider, purpose=purpose, started_at=first_at,
                                 latency_ms=(time.perf_counter() - t_first) * 1000,
                                 error=f"{error.kind}: {error}"[:1000])
            return error

        try:
            check_key(self.provider)
        except MissingKeyError as exc:
            raise failed(exc) from None
        litellm = await _litellm()  # imported: the model map lookups below are cheap now
        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "timeout": self.timeout_s,
            "num_retries": 0,
            "max_tokens": self.max_tokens,  # litellm sends it as max_completion_tokens to reasoning models
        }
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = tool_choice
        if temperature is not None:  # None: the provider's default (what a run sends)
            kwargs["temperature"] = temperature
        api_base = base_url(self.provider)
        if api_base:
            kwargs["api_base"] = api_base
        key = _env(KEY_VARS[self.provider])
        if key:
            kwargs["api_key"] = key
        elif api_base:
            kwargs["api_key"] = "sk-no-key-needed"  # local servers and gateways ignore it; clients insist on one
        images = any(isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
                     for m in messages)

        attempt = 0
        while True:
            attempt += 1
            try:
                response = await litellm.acompletion(**kwargs)
            except Exception as exc:  # converted at once into our own error type
                error = _convert_error(litellm, exc, self.provider, self.model, images=images)
                if error.retryable and attempt <= self.max_retries:
                    delay = min(self.backoff_s * 2 ** (attempt - 1), 20.0) * (0.5 + random.random() / 2)
                    await asyncio.sleep(delay)
                    continue
                raise failed(error) from None
            latency = (time.perf_counter() - t_first) * 1000
            reply = _to_reply(litellm, response, self, purpose, first_at, latency,
                              parameters={k: kwargs[k] for k in ("max_tokens", "tool_choice") if k in kwargs})
            cut = not reply.tool_calls or any(c.parse_error for c in reply.tool_calls)
            if reply.call.finish_reason == "length" and cut:
                raise LLMError(
                    f"the reply was cut at the output limit ({self.max_tokens} tokens, finish_reason=length) "
                    "before a whole action was written: think less, write shorter, call one action",
                    kind="length", call=reply.call)
            return reply


def _error_payload(exc: Exception) -> dict[str, Any]:
    """The provider's error object ({"message", "type"/"code"/"status", ...}) from a litellm exception."""
    body = getattr(exc, "body", None)
    if not isinstance(body, dict):
        text = str(exc)
        start = text.find("{")
        try:
            body = json.loads(text[start:]) if start >= 0 else None
        except ValueError:
            body = None
    if not isinstance(body, dict):
        return {}
    inner = body.get("error")
    return inner if isinstance(inner, dict) else body


def _convert_error(litellm: Any, exc: Exception, provider: str, model: str, *, images: bool = False) -> LLMError:
    payload = _error_payload(exc)
    text = str(exc)
    message = str(payload.get("message") or (text.splitlines()[0] if text else type(exc).__name__))[:500]
    status = getattr(exc, "status_code", None)
    where = f"({type(exc).__name__}{f' {status}' if status else ''})"

    def of(name: str) -> tuple[type, ...]:
        found = getattr(litellm, name, None)
        return (found,) if isinstance(found, type) else ()

    details = json.dumps(payload)[:2000]
    if isinstance(exc, of("AuthenticationError") + of("PermissionDeniedError")) or status in (401, 403) \
            or "API_KEY_INVALID" in details or "API key not valid" in message:
        var = KEY_VARS[provider][0]
        return LLMError(f"the {provider} API refused the key: check {var} {where}: {message}", kind="auth")
    if isinstance(exc, of("NotFoundError")) or status == 404:
        return LLMError(f"the {provider} API does not know the model {model!r}: check the model name {where}: "
                        f"{message}", kind="not_found")
    if isinstance(exc, of("ContextWindowExceededError")):
        return LLMError(f"the request is longer than {model!r} can read {where}: {message}", kind="context_window")
    if isinstance(exc, of("RateLimitError")) or status == 429:
        return LLMError(f"rate limited by the {provider} API {where}: {message}", kind="rate_limit", retryable=True)
    retryable = of("InternalServerError") + of("ServiceUnavailableError") + of("Timeout") + \
        of("APIConnectionError") + of("BadGatewayError")
    if isinstance(exc, retryable) or (isinstance(status, int) and status >= 500):
        return LLMError(f"model call failed {where}: {message}", kind="server", retryable=True)
    if _OUTPUT_REFUSAL.search(details) or _OUTPUT_REFUSAL.search(message):
        generation = str(payload.get("failed_generation") or "")[:600]
        sent = f" (what you sent: {generation})" if generation else ""
        return LLMError(f"the provider rejected your tool call: {message}{sent}", kind="model_output")
    if images and _IMAGE_REFUSAL.search(message):
        return LLMError(f"the provider refused the screenshot {where}: {message}", kind="vision_refused")
    return LLMError(f"the {provider} API refused the request {where}: {message}", kind="bad_request")


def _cost(litellm: Any, response: Any, llm: LLM, input_tokens: int, output_tokens: int) -> float | None:
    """What the call cost: at the run's price_per_mtok when given, else litellm's price; None when unknown
    (litellm has no price for the model), never a made-up 0."""
    if llm.price is not None:
        return llm.price.cost(input_tokens, output_tokens)
    if model_price(llm.provider, llm.model) is None:  # litellm may answer 0 for a model it cannot price
        return None
    try:
        return float(litellm.completion_cost(completion_response=response, model=llm.name))
    except Exception:  # a model the price map knows under another name only
        return None


def _to_reply(litellm: Any, response: Any, llm: LLM, purpose: str, started_at: Any, latency_ms: float,
              parameters: dict[str, Any] | None = None) -> Reply:
    choice = response.choices[0]
    message = choice.message
    usage = getattr(response, "usage", None)
    input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    cost = _cost(litellm, response, llm, input_tokens, output_tokens)
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
    # The reply as the model wrote it (untrimmed text, arguments unparsed), for the call's trace; with the
    # model the server says answered (it may differ from the one asked for) and the parameters sent.
    as_written = {"content": message.content if isinstance(message.content, str) else None,
                  "tool_calls": [{"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
                                 for tc in getattr(message, "tool_calls", None) or []],
                  "finish_reason": call.finish_reason,
                  "model": getattr(response, "model", None), "parameters": dict(parameters or {})}
    return Reply(text=(content or "").strip(), tool_calls=calls, call=call, raw_message=as_written)
