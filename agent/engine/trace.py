"""The trace of a model call: the messages as sent and the reply as written, for the prompt engineer.

`make_trace()` turns what went to `LLM.complete` and what came back into an `LLMTrace`: the system
prompt apart (the store keeps each distinct one once), images replaced by a reference to the step
whose screenshot they were, tools by name, the page observation located in the step message.
Every text is bounded, so a runaway page or reply cannot blow up the log.
"""

from __future__ import annotations

import json
from typing import Any

from agent.models import LLMCall, LLMTrace, message_text

MAX_MESSAGE_CHARS = 200_000  # one message's text kept (an observation is capped well below this)
MAX_REPLY_CHARS = 50_000  # the model's text kept
MAX_ARGUMENT_CHARS = 20_000  # one tool call's raw arguments kept
MAX_TOOL_CALLS = 50


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"…(cut: {len(text) - limit} more characters)"


def _message(message: dict[str, Any], screenshot_step: int | None) -> dict[str, Any]:
    """A message as kept: text parts whole (bounded), images as a reference to the step's screenshot."""
    content = message.get("content")
    if isinstance(content, list):
        parts: list[dict[str, Any]] = []
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                parts.append({"type": "text", "text": _cut(str(part.get("text", "")), MAX_MESSAGE_CHARS)})
            else:  # an image (data: URL): the screenshot file is already kept for the step
                parts.append({"type": "image", "screenshot_step": screenshot_step})
        return {"role": message.get("role", "user"), "content": parts}
    return {"role": message.get("role", "user"), "content": _cut(str(content or ""), MAX_MESSAGE_CHARS)}


def _raw_arguments(value: Any) -> str:
    """Arguments as the model wrote them: a provider that hands back an object gets it as JSON text."""
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def make_trace(
    call: LLMCall,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    raw_reply: dict[str, Any] | None,
    *,
    observation: str | None = None,
    screenshot_step: int | None = None,
) -> LLMTrace:
    """The trace of one call: `raw_reply` is `Reply.raw_message` (None when the call failed)."""
    system = [message_text(m) for m in messages if m.get("role") == "system"]
    rest = [_message(m, screenshot_step) for m in messages if m.get("role") != "system"]
    span = None
    if observation and rest:
        text = message_text(rest[-1])
        start = text.rfind(observation)  # the page comes last in the step message (prompts.step_message)
        if start >= 0:
            span = (start, start + len(observation))
    reply = raw_reply or {}
    calls = [
        {"id": str(c.get("id") or ""), "name": str(c.get("name") or ""),
         "arguments": _cut(_raw_arguments(c.get("arguments")), MAX_ARGUMENT_CHARS)}
        for c in (reply.get("tool_calls") or [])[:MAX_TOOL_CALLS]
    ]
    reply_text = reply.get("content")
    return LLMTrace(
        call=call,
        system_prompt="\n\n".join(system) if system else None,
        messages=rest,
        tools=[str((t.get("function") or {}).get("name") or t.get("name") or "") for t in tools or []],
        reply_text=_cut(reply_text, MAX_REPLY_CHARS) if isinstance(reply_text, str) else None,
        tool_calls=calls,
        observation=span,
        prompt_chars=sum(len(s) for s in system) + sum(len(message_text(m)) for m in rest),
        response_model=str(reply["model"]) if reply.get("model") else None,
        parameters=dict(reply.get("parameters") or {}),
        tool_definitions=list(tools or []),
    )
