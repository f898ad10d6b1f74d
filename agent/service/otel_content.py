"""What a span says, in three vocabularies at once: the OpenTelemetry GenAI conventions (`gen_ai.*`),
OpenInference's (`openinference.span.kind`, `input.value`, `llm.*`, `tool.*`: Arize Phoenix and the
tools built on it) and Langfuse's (`langfuse.*`). Attribute names come from the
openinference-semantic-conventions package where it has them.

Every value is bounded and stays valid: a text is cut with a marker saying how much was left out,
and a JSON attribute is shortened by cutting its longest texts (never its encoding) until it fits.
Imported by `agent.service.otel` only when an exporter is configured.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from openinference.semconv.resource import ResourceAttributes
from openinference.semconv.trace import (
    ImageAttributes,
    MessageAttributes,
    MessageContentAttributes,
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    SpanAttributes,
    ToolAttributes,
    ToolCallAttributes,
)

from agent.models import LLMTrace
from agent.providers import REGISTRY

__all__ = ["LANGFUSE", "MAX_ATTRIBUTE_CHARS", "PROJECT_NAME", "TOOL_CALL_ID", "Kind", "Mime", "SA", "bounded_json",
           "cut_text", "genai_content", "genai_tool_definitions", "image_limit", "image_url",
           "openinference_messages", "openinference_tools", "provider_names", "tool_definition", "value_attributes"]

SA = SpanAttributes
Kind = OpenInferenceSpanKindValues
Mime = OpenInferenceMimeTypeValues
PROJECT_NAME = ResourceAttributes.PROJECT_NAME  # Phoenix files the traces under this project
TOOL_CALL_ID = ToolCallAttributes.TOOL_CALL_ID

MAX_ATTRIBUTE_CHARS = 100_000  # one attribute (a prompt, a message list as JSON) is cut to this
MAX_FLAT_MESSAGES = 50  # messages flattened into llm.input_messages.N (the agent sends two)
MAX_CUT_ROUNDS = 64
IMAGE_LIMIT_ENV = "OPENINFERENCE_BASE64_IMAGE_MAX_LENGTH"  # OpenInference's own setting, same default
DEFAULT_IMAGE_LIMIT = 32_000


class LANGFUSE:
    """Langfuse's attribute names (its OTel ingestion reads these first; see docs/prompts.md)."""

    TRACE_NAME = "langfuse.trace.name"
    TRACE_INPUT = "langfuse.trace.input"
    TRACE_OUTPUT = "langfuse.trace.output"
    SESSION_ID = "langfuse.session.id"
    OBSERVATION_TYPE = "langfuse.observation.type"
    USAGE_DETAILS = "langfuse.observation.usage_details"
    COST_DETAILS = "langfuse.observation.cost_details"


def provider_names(provider: str) -> tuple[str, str]:
    """(gen_ai.provider.name, llm.provider) for one of our providers (its record says where they differ from ours)."""
    record = REGISTRY.get(provider)
    if record is None:
        return provider, provider
    return record.genai_name or provider, record.openinference_name or provider


# ------------------------------------------------------------------ bounded values
def cut_text(text: str, limit: int = MAX_ATTRIBUTE_CHARS) -> str:
    """`text` whole if it fits in `limit` characters, else its start and a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 40)
    return text[:keep] + f"…[cut: {len(text) - keep} more characters]"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _strings(value: Any) -> Iterator[tuple[Any, Any, int]]:
    """(container, key, length) of every string inside `value` (dicts and lists)."""
    items: Iterator[tuple[Any, Any]] = iter(value.items()) if isinstance(value, dict) else iter(enumerate(value))
    for key, item in items:
        if isinstance(item, str):
            yield value, key, len(item)
        elif isinstance(item, (dict, list)):
            yield from _strings(item)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


def bounded_json(value: Any, limit: int = MAX_ATTRIBUTE_CHARS) -> str:
    """`value` as JSON text of at most `limit` characters that always parses: the longest texts inside are
    cut (each marked with how much was left out) until it fits; the encoding itself is never cut."""
    text = _dumps(value)
    if len(text) <= limit:
        return text
    size, value = len(text), _copy(value)
    if isinstance(value, (dict, list)):
        for _ in range(MAX_CUT_ROUNDS):
            found = max(_strings(value), key=lambda s: s[2], default=None)
            if found is None or found[2] == 0:
                break
            container, key, length = found
            # What it takes in the JSON (escapes make it longer): keep the share of it that leaves room.
            encoded = len(_dumps(container[key])) - 2
            room = encoded - (len(text) - limit) - 48
            container[key] = cut_text(container[key], max(0, length * room // encoded) if room > 0 else 0)
            text = _dumps(value)
            if len(text) <= limit:
                return text
    elif isinstance(value, str):
        return _dumps(cut_text(value, max(0, limit - 48 - (len(text) - len(value)))))
    # Too many small parts to fit by cutting texts: say so, in valid JSON.
    return _dumps({"cut": f"{size} characters of JSON, more than the {limit} an attribute may hold"})


_VALUE_KEYS = {"input": (SA.INPUT_VALUE, SA.INPUT_MIME_TYPE), "output": (SA.OUTPUT_VALUE, SA.OUTPUT_MIME_TYPE)}


def value_attributes(side: Literal["input", "output"], value: Any) -> dict[str, Any]:
    """OpenInference's input.value / output.value and its mime type: text as is, anything else as JSON."""
    key, mime = _VALUE_KEYS[side]
    if isinstance(value, str):
        return {key: cut_text(value), mime: Mime.TEXT.value}
    return {key: bounded_json(value), mime: Mime.JSON.value}


def image_limit() -> int:
    """The longest screenshot (as a base64 data URL) put into a span; longer ones are sent as their URL."""
    raw = os.environ.get(IMAGE_LIMIT_ENV, "").strip()
    try:
        return max(0, int(raw)) if raw else DEFAULT_IMAGE_LIMIT
    except ValueError:
        raise ValueError(f"{IMAGE_LIMIT_ENV}={raw!r} is not a whole number; set it to e.g. "
                         f"{DEFAULT_IMAGE_LIMIT} (characters of base64)") from None


def image_url(path: str | None, reference: str, limit: int) -> str:
    """A screenshot as a data URL when small enough (`limit` characters), else `reference` (its workbench URL)."""
    if path:
        try:
            size = Path(path).stat().st_size
            if 23 + 4 * ((size + 2) // 3) <= limit:
                return "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode()
        except OSError:
            pass  # gone (a data folder cleaned up): the reference still names it
    return reference


# ------------------------------------------------------------------ GenAI conventions (JSON attributes)
def _arguments(raw: Any) -> Any:
    """Tool-call arguments as an object when they are JSON, else the text as written."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def genai_content(trace: LLMTrace, image_uri: Callable[[int | None], str]) -> dict[str, str]:
    """gen_ai.input.messages / output.messages / system_instructions: JSON in the conventions' parts format."""
    def parts(content: Any) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return [{"type": "text", "content": content}]
        out: list[dict[str, Any]] = []
        for part in content or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                out.append({"type": "text", "content": str(part.get("text", ""))})
            else:  # the step's screenshot, by reference (its bytes would not fit in an attribute)
                out.append({"type": "uri", "modality": "image", "mime_type": "image/jpeg",
                            "uri": image_uri(part.get("screenshot_step"))})
        return out

    output: list[dict[str, Any]] = [{"type": "text", "content": trace.reply_text}] if trace.reply_text else []
    output += [{"type": "tool_call", "id": c.get("id"), "name": c.get("name"),
                "arguments": _arguments(c.get("arguments"))} for c in trace.tool_calls]
    out = {
        "gen_ai.input.messages": bounded_json([{"role": m.get("role"), "parts": parts(m.get("content"))}
                                               for m in trace.messages]),
        "gen_ai.output.messages": bounded_json([{"role": "assistant", "parts": output,
                                                 "finish_reason": trace.call.finish_reason
                                                 or ("error" if trace.call.error else "stop")}]),
    }
    if trace.system_prompt is not None:
        out["gen_ai.system_instructions"] = bounded_json([{"type": "text", "content": trace.system_prompt}])
    return out


def _function(definition: dict[str, Any]) -> dict[str, Any]:
    """The function part of a tool definition as sent ({"type": "function", "function": {...}})."""
    inner = definition.get("function")
    return inner if isinstance(inner, dict) else definition


def genai_tool_definitions(definitions: list[dict[str, Any]]) -> dict[str, str]:
    """gen_ai.tool.definitions: the tools offered to the model, in the conventions' format."""
    if not definitions:
        return {}
    keys = ("name", "description", "parameters")
    tools = [{"type": "function", **{k: v for k, v in _function(d).items() if k in keys}} for d in definitions]
    return {"gen_ai.tool.definitions": bounded_json(tools)}


def tool_definition(definitions: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The function definition of tool `name`, if it was offered."""
    return next((_function(d) for d in definitions if _function(d).get("name") == name), None)


# ------------------------------------------------------------------ OpenInference (flattened attributes)
def _message_attributes(prefix: str, message: dict[str, Any], image: Callable[[int | None], str]) -> dict[str, Any]:
    out: dict[str, Any] = {f"{prefix}.{MessageAttributes.MESSAGE_ROLE}": str(message.get("role") or "user")}
    content = message.get("content")
    if isinstance(content, str):
        out[f"{prefix}.{MessageAttributes.MESSAGE_CONTENT}"] = cut_text(content)
        return out
    for j, part in enumerate(p for p in content or [] if isinstance(p, dict)):
        key = f"{prefix}.{MessageAttributes.MESSAGE_CONTENTS}.{j}"
        if part.get("type") == "text":
            out[f"{key}.{MessageContentAttributes.MESSAGE_CONTENT_TYPE}"] = "text"
            out[f"{key}.{MessageContentAttributes.MESSAGE_CONTENT_TEXT}"] = cut_text(str(part.get("text", "")))
        else:
            out[f"{key}.{MessageContentAttributes.MESSAGE_CONTENT_TYPE}"] = "image"
            out[f"{key}.{MessageContentAttributes.MESSAGE_CONTENT_IMAGE}.{ImageAttributes.IMAGE_URL}"] = \
                image(part.get("screenshot_step"))
    return out


def openinference_messages(trace: LLMTrace, image: Callable[[int | None], str]) -> dict[str, Any]:
    """llm.input_messages.N.message.* (the system prompt first) and llm.output_messages.0.message.*."""
    messages = ([{"role": "system", "content": trace.system_prompt}] if trace.system_prompt is not None else []) \
        + list(trace.messages)
    out: dict[str, Any] = {}
    for i, message in enumerate(messages[:MAX_FLAT_MESSAGES]):
        out.update(_message_attributes(f"{SA.LLM_INPUT_MESSAGES}.{i}", message, image))
    reply = f"{SA.LLM_OUTPUT_MESSAGES}.0"
    out[f"{reply}.{MessageAttributes.MESSAGE_ROLE}"] = "assistant"
    if trace.reply_text:
        out[f"{reply}.{MessageAttributes.MESSAGE_CONTENT}"] = cut_text(trace.reply_text)
    for k, tool_call in enumerate(trace.tool_calls):
        key = f"{reply}.{MessageAttributes.MESSAGE_TOOL_CALLS}.{k}"
        out[f"{key}.{ToolCallAttributes.TOOL_CALL_ID}"] = str(tool_call.get("id") or "")
        out[f"{key}.{ToolCallAttributes.TOOL_CALL_FUNCTION_NAME}"] = str(tool_call.get("name") or "")
        out[f"{key}.{ToolCallAttributes.TOOL_CALL_FUNCTION_ARGUMENTS_JSON}"] = cut_text(
            str(tool_call.get("arguments") or ""))
    return out


def openinference_tools(definitions: list[dict[str, Any]]) -> dict[str, str]:
    """llm.tools.N.tool.json_schema: each tool offered, as sent."""
    return {f"{SA.LLM_TOOLS}.{i}.{ToolAttributes.TOOL_JSON_SCHEMA}": bounded_json(d) for i, d in enumerate(definitions)}
