"""Asking the model again at a step: the step's stored messages sent anew, with a changed system prompt or model.

`ask_again(trace, ...)` takes a step call's trace as the run log keeps it (agent.log.rows.trace_dict:
the system prompt apart, images as a reference to the step's screenshot), rebuilds the messages the
model received, puts in the system prompt asked for (`agent.engine.prompts.system_prompt`, as a run
would build it), re-attaches the screenshot when the original call had one, and sends them `samples`
times (concurrently, bounded) through `LLM.complete` with the same tools. Each reply's tool calls are
rendered as the actions they would be, with the element each index named on the step's page (the
observation's line), and compared with the original reply. No browser, no run log: the run service
logs the calls (purpose "playground") and keeps them out of the run's totals.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

from agent.engine import actions as act
from agent.engine import prompts
from agent.engine.llm import LLM, LLMError, Reply, check_key
from agent.engine.trace import make_trace
from agent.models import (
    DEFAULT_MODELS,
    AskAnswer,
    AskReply,
    AskRequest,
    LLMCall,
    LLMTrace,
    NotAskable,
    ProposedAction,
    RunRequest,
)

__all__ = ["MAX_CONCURRENT_SAMPLES", "NotAskable", "ask_again", "compare", "element_lines", "proposed_actions",
           "rebuild_messages", "system_for"]

MAX_CONCURRENT_SAMPLES = 4  # samples in flight at once: a provider's rate limit is the user's too
_ELEMENT_RE = re.compile(r"^\s*\[(\d+)\]<")


def element_lines(observation: str | None) -> dict[int, str]:
    """The page's interactive elements by index, each its observation line ('[12]<a href="/p/3">Cable 1 m')."""
    found: dict[int, str] = {}
    for line in (observation or "").splitlines():
        m = _ELEMENT_RE.match(line)
        if m is not None:
            found.setdefault(int(m.group(1)), line.strip())
    return found


def system_for(trace: dict[str, Any], run_request: RunRequest, ask: AskRequest) -> str:
    """The system prompt to send: the step's own unless the question changes it; then built as a run builds it,
    each field left out taken from the run's request (an empty one meaning none)."""
    original = trace.get("system_prompt")
    if not ask.system_fields_given() and isinstance(original, str):
        return original
    given = ask.model_fields_set
    extend = ask.extend_system_message if "extend_system_message" in given else run_request.extend_system_message
    override = ask.override_system_message if "override_system_message" in given \
        else run_request.override_system_message
    return prompts.system_prompt(override=(override or "").strip() or None, extend=(extend or "").strip() or None)


def rebuild_messages(trace: dict[str, Any], system: str, screenshot: Path | None) -> tuple[list[dict[str, Any]], bool]:
    """The messages the model received at the step, `system` first: (messages, whether an image went along).

    NotAskable when they were not kept (LOG_PROMPTS=0) or the screenshot they referred to is gone.
    """
    kept = [m for m in trace.get("messages") or [] if m.get("role") != "system"]
    if not trace.get("logged", True) or not kept:
        raise NotAskable("this step's messages were not kept (the run was logged with LOG_PROMPTS=0): there is "
                         "nothing to send again; run it again with LOG_PROMPTS=1 to use the playground")
    image = False
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for message in kept:
        content = message.get("content")
        if not isinstance(content, list):
            out.append({"role": message.get("role", "user"), "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for part in content:
            if part.get("type") == "text":
                parts.append({"type": "text", "text": part.get("text", "")})
                continue
            if screenshot is None or not screenshot.is_file():
                raise NotAskable(f"the call sent the screenshot of step {part.get('screenshot_step')}, which is no "
                                 "longer in the data folder: it cannot be sent again as it was")
            b64 = base64.b64encode(screenshot.read_bytes()).decode()
            parts.append({"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64}"}})
            image = True
        out.append({"role": message.get("role", "user"), "content": parts})
    return out, image


def _arguments(raw: Any) -> tuple[dict[str, Any] | None, str, str | None]:
    """(parsed arguments, the raw text, why they cannot be used)."""
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False) if raw is not None else ""
    try:
        value = json.loads(text or "{}") if not isinstance(raw, dict) else raw
    except json.JSONDecodeError as exc:
        return None, text, f"arguments are not valid JSON ({exc.msg} at char {exc.pos})"
    if not isinstance(value, dict):
        return None, text, "arguments must be a JSON object"
    return value, text, None


def proposed_actions(tool_calls: list[dict[str, Any]], elements: dict[int, str]) -> list[ProposedAction]:
    """Tool calls ({name, arguments}: arguments as JSON text or an object) as the actions they would be."""
    out = []
    for tc in tool_calls:
        name = str(tc.get("name") or "")
        arguments, raw, error = _arguments(tc.get("arguments"))
        index = arguments.get("index") if arguments else None
        index = index if isinstance(index, int) and not isinstance(index, bool) else None
        element = elements.get(index) if index is not None else None
        if error is None and name not in act.ACTIONS:
            error = f"there is no action {name!r}"
        elif error is None and index is not None and element is None:
            error = f"the page had no element [{index}]"
        out.append(ProposedAction(name=name, arguments=arguments, raw_arguments=raw[:20_000], index=index,
                                  element=element, error=error))
    return out


def _said(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:119] + "…"


def compare(original: list[ProposedAction], reply: list[ProposedAction]) -> list[str]:
    """How `reply`'s actions differ from `original`'s, in words ([] when they would do the same)."""
    out: list[str] = []
    if len(reply) != len(original):
        out.append(f"{len(reply)} action{'s' if len(reply) != 1 else ''} instead of {len(original)}")
    for n, (a, b) in enumerate(zip(original, reply), 1):
        if a.name != b.name:
            out.append(f"action {n}: {b.name or '(no name)'} instead of {a.name}")
            continue
        if a.element != b.element or a.index != b.index:
            out.append(f"action {n} ({b.name}): element {b.element or b.index} instead of {a.element or a.index}")
        args_a = {k: v for k, v in (a.arguments or {}).items() if k != "index"}
        args_b = {k: v for k, v in (b.arguments or {}).items() if k != "index"}
        if (a.arguments is None) != (b.arguments is None):
            out.append(f"action {n} ({b.name}): arguments {b.raw_arguments!r} instead of {a.raw_arguments!r}")
            continue
        for key in sorted(set(args_a) | set(args_b)):
            if args_a.get(key) != args_b.get(key):
                shown_b = _said(args_b[key]) if key in args_b else "left out"
                shown_a = _said(args_a[key]) if key in args_a else "left out"
                out.append(f"action {n} ({b.name}): {key} {shown_b} instead of {shown_a}")
    return out


def _reply(reply: Reply | None, call: LLMCall | None, elements: dict[int, str], original: list[ProposedAction],
           error: str | None) -> AskReply:
    """One new reply as the answer shows it."""
    actions = proposed_actions([{"name": c.name, "arguments": c.raw_arguments} for c in reply.tool_calls],
                               elements) if reply is not None else []
    differences = compare(original, actions) if reply is not None else ["the call failed"]
    return AskReply(
        text=reply.text if reply is not None else None, actions=actions,
        same_as_original=reply is not None and not differences, differences=differences,
        provider=call.provider if call else None, model=call.model if call else None,
        input_tokens=call.input_tokens if call else 0, output_tokens=call.output_tokens if call else 0,
        latency_ms=call.latency_ms if call else None, cost_usd=call.cost_usd if call else None,
        finish_reason=call.finish_reason if call else None, error=error)


def original_reply(trace: dict[str, Any], elements: dict[int, str]) -> AskReply:
    """The step's own reply, as the answer shows it (beside the new ones)."""
    usage = trace.get("usage") or {}
    actions = proposed_actions(trace.get("tool_calls") or [], elements)
    return AskReply(text=trace.get("reply"), actions=actions, same_as_original=True, provider=trace.get("provider"),
                    model=trace.get("model"), input_tokens=usage.get("input_tokens") or 0,
                    output_tokens=usage.get("output_tokens") or 0, latency_ms=usage.get("latency_ms"),
                    cost_usd=usage.get("cost_usd"), finish_reason=usage.get("finish_reason"), error=trace.get("error"))


async def ask_again(trace: dict[str, Any], *, run_id: int, run_request: RunRequest, ask: AskRequest,
                    screenshot: Path | None, llm: LLM | None = None) -> tuple[AskAnswer, list[LLMTrace]]:
    """Send the step's messages again as `ask` says: the answer, and each call's trace (purpose "playground").

    NotAskable when the step cannot be asked again; MissingKeyError (naming the variable to set) before
    anything is sent when the provider has no key. A call that fails is a reply with its `error`.
    """
    provider = ask.provider or run_request.provider
    model = ask.model or (run_request.model if provider == run_request.provider else DEFAULT_MODELS[provider])
    system = system_for(trace, run_request, ask)
    messages, image = rebuild_messages(trace, system, screenshot)
    offered = list(trace.get("tools") or [])
    tools = [t for t in act.tools(json_schema=run_request.json_schema, response_format=run_request.response_format,
                                  provider=provider) if t["function"]["name"] in offered] or None
    if llm is None:
        check_key(provider)
        llm = LLM(provider, model)
    step = int(trace.get("step") or 0)
    observation = trace.get("observation")
    elements = element_lines(observation)
    original = original_reply(trace, elements)
    slots = asyncio.Semaphore(MAX_CONCURRENT_SAMPLES)

    async def one() -> tuple[AskReply, LLMTrace | None]:
        async with slots:
            try:
                reply = await llm.complete(messages, tools, purpose="playground", temperature=ask.temperature)
            except LLMError as exc:
                if exc.call is None:
                    return _reply(None, None, elements, original.actions, str(exc)), None
                failed = make_trace(exc.call, messages, tools, None, observation=observation,
                                    screenshot_step=step if image else None)
                return _reply(None, exc.call, elements, original.actions, str(exc)), failed
        made = make_trace(reply.call, messages, tools, reply.raw_message, observation=observation,
                          screenshot_step=step if image else None)
        return _reply(reply, reply.call, elements, original.actions, None), made

    done = await asyncio.gather(*(one() for _ in range(ask.samples)))
    replies = [r for r, _ in done]
    answer = AskAnswer(task_run_id=run_id, step=step, provider=provider, model=model, system_prompt=system,
                       system_prompt_changed=system != trace.get("system_prompt"), screenshot=image,
                       temperature=ask.temperature, original=original, replies=replies,
                       same=sum(1 for r in replies if r.same_as_original))
    return answer, [t for _, t in done if t is not None]
