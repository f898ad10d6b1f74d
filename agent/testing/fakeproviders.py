"""Protocol-faithful fakes of the model APIs, each enforcing the documented request rules that matter here.

litellm reaches them through its real client code, each through its provider's base-URL variable:
- `FakeAnthropic`: Anthropic Messages, `POST /v1/messages` (x-api-key, anthropic-version, max_tokens
  required, alternating roles, tool `input_schema` an object schema, valid JSON Schema);
- `FakeGemini`: Gemini `POST /v1beta/models/{model}:generateContent` (the `parameters` Schema is an
  OpenAPI 3.0 subset: no $ref/oneOf/const/additionalProperties, a type on every node, enums of
  strings, arrays with items, objects with properties, string formats date-time/enum only);
- `dialect(provider)`: the rules of the OpenAI chat dialects for `agent.testing.fakellm.FakeLLM` (OpenAI:
  arrays need items, reasoning models refuse max_tokens, images only for vision models; Groq: a tool
  call whose arguments do not match the tool schema is a 400 `tool_use_failed`; Mistral: tool_choice
  values; DeepSeek: text-only content).
Every fake refuses a `$ref` that does not resolve inside the tool's schema, as a JSON Schema compiler does.

Handlers are the same as for FakeLLM: they get the request in OpenAI chat form (system/user messages,
function tools) and answer with `reply(...)`, an int status or a dict; the native fakes translate both
ways, so one scripted model runs against every provider. `raw` keeps the native request bodies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import referencing
import referencing.exceptions
import referencing.jsonschema

from agent.testing.fakellm import FakeLLM, Handler

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Models the fakes refuse images for.
VISION_FREE_MODELS = {"gpt-3.5-turbo", "text-only-local", "llama-3.3-70b-versatile"}
REASONING = re.compile(r"^(o\d|gpt-5)")


# ------------------------------------------------------------------ JSON Schema rules every API applies
def schema_error(schema: Any) -> str | None:
    """Why `schema` is not a usable JSON Schema (invalid, or a $ref that resolves nowhere), or None."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"JSON schema is invalid: {exc.message}"
    root = referencing.jsonschema.DRAFT202012.create_resource(schema)
    resolver = referencing.Registry().with_resource("urn:tool", root).resolver("urn:tool")
    for ref in _refs(schema):
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            return f"reference {ref!r} resolves to nothing in the schema"
    return None


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _arrays_without_items(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(node, dict):
        kinds = node.get("type")
        if (kinds == "array" or (isinstance(kinds, list) and "array" in kinds)) and "items" not in node:
            yield path
        for key, value in node.items():
            yield from _arrays_without_items(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _arrays_without_items(value, path + (str(i),))


def _has_images(messages: list[dict[str, Any]]) -> bool:
    return any(isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
               for m in messages)


# ------------------------------------------------------------------ the OpenAI chat dialects
def _error(status: int, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": "invalid_request_error", **extra}}


def dialect(provider: str) -> Callable[[dict[str, Any]], Any]:
    """The request rules of one OpenAI-dialect provider (openai, groq, mistral, together, deepseek)."""

    def rules(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        model = str(body.get("model", ""))
        for i, tool in enumerate(body.get("tools") or []):
            fn = tool.get("function", {})
            if not TOOL_NAME.match(fn.get("name", "")):
                return _error(400, f"tools[{i}].function.name: string does not match pattern {TOOL_NAME.pattern}")
            problem = schema_error(fn.get("parameters", {}))
            if problem:
                return _error(400, f"Invalid schema for function '{fn.get('name')}': {problem}")
            if provider == "openai":
                for path in _arrays_without_items(fn.get("parameters", {})):
                    return _error(400, f"Invalid schema for function '{fn['name']}': In context={path}, array schema "
                                       "missing items.", param=f"tools[{i}].function.parameters",
                                  code="invalid_function_parameters")
        if provider == "openai" and REASONING.match(model) and "max_tokens" in body:
            return _error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                               "Use 'max_completion_tokens' instead.", param="max_tokens", code="unsupported_parameter")
        if _has_images(body.get("messages", [])):
            if provider == "deepseek":
                return _error(400, "Failed to deserialize the JSON body into the target type: messages[1]: unknown "
                                   "variant `image_url`, expected `text`")
            if provider == "groq" and model in VISION_FREE_MODELS:
                return _error(400, "messages[1].content must be a string")
            if model in VISION_FREE_MODELS:
                return _error(400, "Invalid content type. image_url is only supported by certain models.",
                              code="invalid_content_type")
        if provider == "mistral" and body.get("tools") and body.get("tool_choice") not in ("auto", "none", "any",
                                                                                           "required"):
            return _error(422, "tool_choice: Input should be 'auto', 'none', 'any' or 'required'")
        return None

    return rules


# Where each dialect's API answers, and the base-URL form given to the workbench in the tests: the
# documented bare host where the workbench must complete it (Groq, Together), else the full form.
DIALECT_PATHS = {"openai": {"/v1/chat/completions"}, "groq": {"/openai/v1/chat/completions"},
                 "mistral": {"/v1/chat/completions"}, "together": {"/v1/chat/completions"},
                 "deepseek": {"/chat/completions", "/v1/chat/completions"}}


def dialect_fake(provider: str, handler: Handler | None = None) -> FakeLLM:
    """A fake of an OpenAI-dialect provider with its rules and routes; `url` is the base URL to give."""
    fake = FakeGroq(handler) if provider == "groq" else FakeLLM(handler, rules=dialect(provider))
    fake.paths = DIALECT_PATHS[provider]
    fake.url = fake.url if provider in ("openai", "mistral") else fake.host
    return fake


class FakeGroq(FakeLLM):
    """Groq's dialect: besides the request rules, Groq checks the model's tool call against the tool's
    schema and answers 400 `tool_use_failed` (with the `failed_generation`) when it does not match."""

    def __init__(self, handler: Handler | None = None) -> None:
        super().__init__(handler, rules=dialect("groq"))

    def answer(self, view: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, answer = super().answer(view)
        if status != 200:
            return status, answer
        # Groq's own response fields (litellm reads service_tier from every Groq reply)
        answer = {**answer, "service_tier": "on_demand", "system_fingerprint": "fp_fake", "x_groq": {"id": "req_fake"}}
        schemas = {t["function"]["name"]: t["function"].get("parameters", {}) for t in view.get("tools") or []}
        for tool_call in answer["choices"][0]["message"].get("tool_calls") or []:
            fn = tool_call["function"]
            try:
                args = json.loads(fn["arguments"])
            except ValueError:
                args = None
            schema = schemas.get(fn["name"])
            validator = jsonschema.Draft202012Validator(schema) if schema is not None else None
            errors = [] if validator is None else [e.message for e in validator.iter_errors(args)]
            if schema is None or errors:
                why = "tool not found" if schema is None else f"errors: [{'; '.join(errors)}]"
                return _error(400, f"tool call validation failed: parameters for tool {fn['name']} did not match "
                                   f"schema: {why}", code="tool_use_failed",
                              failed_generation=json.dumps({"name": fn["name"], "arguments": fn["arguments"]}))
        return status, answer


# ------------------------------------------------------------------ Anthropic Messages
_ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                     404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                     529: "overloaded_error"}
_ANTHROPIC_FIELDS = {"model", "messages", "max_tokens", "system", "tools", "tool_choice", "temperature", "top_p",
                     "top_k", "stop_sequences", "stream", "metadata", "thinking", "service_tier"}


class FakeAnthropic(FakeLLM):
    """Anthropic's Messages API at /v1/messages; `url` is the bare host (litellm adds /v1/messages)."""

    def __init__(self, handler: Handler | None = None, *, models: set[str] | None = None) -> None:
        super().__init__(handler)
        self.models = models
        self.raw: list[dict[str, Any]] = []
        self.url = self.host

    def respond(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Check the request as Anthropic does, then answer in the Messages format."""
        self.raw.append(body)
        lower = {k.lower(): v for k, v in headers.items()}
        if path.split("?")[0] != "/v1/messages":
            return self.error(404, f"Not found: {path}")
        if not lower.get("x-api-key") and not lower.get("authorization"):
            return self.error(401, "x-api-key header is required")
        if not lower.get("anthropic-version"):
            return self.error(400, "anthropic-version: header is required")
        problem = self.check(body)
        if problem:
            self.refusals.append((400, {"message": problem}))
            return self.error(400, problem)
        if self.models is not None and body["model"] not in self.models:
            return self.error(404, f"model: {body['model']}")
        status, answer = self.answer(self.view(body))
        if status != 200:
            return self.error(status, answer.get("error", {}).get("message", "error"))
        return 200, self.native(answer, body["model"])

    def error(self, status: int, message: str) -> tuple[int, dict[str, Any]]:
        """An Anthropic error body."""
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        return status, {"type": "error", "error": {"type": kind, "message": message}}

    def check(self, body: dict[str, Any]) -> str | None:
        """The first documented request rule `body` breaks, or None."""
        extra = set(body) - _ANTHROPIC_FIELDS
        if extra:
            return f"{sorted(extra)[0]}: Extra inputs are not permitted"
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            return "max_tokens: Field required"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages: at least one message is required"
        if messages[0].get("role") != "user":
            return "messages: first message must use the \"user\" role"
        for a, b in zip(messages, messages[1:]):
            if a.get("role") == b.get("role"):
                return "messages: roles must alternate between \"user\" and \"assistant\""
        for i, message in enumerate(messages):
            content = message.get("content")
            blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for block in blocks or []:
                kind = block.get("type")
                if kind not in ("text", "image", "tool_use", "tool_result"):
                    return f"messages.{i}.content: unknown block type {kind!r}"
                source: dict[str, Any] = block.get("source") or {}
                if kind == "image" and (source.get("type") != "base64" or source.get("media_type") not in (
                        "image/jpeg", "image/png", "image/gif", "image/webp")):
                    return f"messages.{i}.content: image source must be base64 jpeg, png, gif or webp"
        system = body.get("system")
        if system is not None and not isinstance(system, str) and not all(b.get("type") == "text" for b in system):
            return "system: must be a string or text blocks"
        for i, tool in enumerate(body.get("tools") or []):
            if not TOOL_NAME.match(tool.get("name", "")):
                return f"tools.{i}.custom.name: String should match pattern '{TOOL_NAME.pattern}'"
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                return f"tools.{i}.custom.input_schema.type: Input should be 'object'"
            problem = schema_error(schema)
            if problem:
                return f"tools.{i}.custom.input_schema: {problem}. It must match JSON Schema draft 2020-12"
        choice = body.get("tool_choice")
        if choice is not None and choice.get("type") not in ("auto", "any", "tool", "none"):
            return "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"
        return None

    def view(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request in OpenAI chat form, for the handler."""
        system = body.get("system")
        text = system if isinstance(system, str) else "\n".join(b["text"] for b in system or [])
        messages: list[dict[str, Any]] = [{"role": "system", "content": text}] if text else []
        for message in body["messages"]:
            content = message["content"]
            if isinstance(content, list):
                parts = []
                for block in content:
                    if block["type"] == "text":
                        parts.append({"type": "text", "text": block["text"]})
                    elif block["type"] == "image":
                        src = block["source"]
                        parts.append({"type": "image_url",
                                      "image_url": {"url": f"data:{src['media_type']};base64,{src['data']}"}})
                content = parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts
            messages.append({"role": message["role"], "content": content})
        tools = [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                                   "parameters": t["input_schema"]}} for t in body.get("tools") or []]
        return {"model": body["model"], "messages": messages, "tools": tools, "max_tokens": body["max_tokens"]}

    def native(self, answer: dict[str, Any], model: str) -> dict[str, Any]:
        """An OpenAI-form reply as an Anthropic message."""
        choice = answer["choices"][0]
        message = choice["message"]
        content: list[dict[str, Any]] = [{"type": "text", "text": message["content"]}] if message.get("content") else []
        for i, tool_call in enumerate(message.get("tool_calls") or []):
            content.append({"type": "tool_use", "id": f"toolu_{i:02d}", "name": tool_call["function"]["name"],
                            "input": json.loads(tool_call["function"]["arguments"])})
        stop = {"tool_calls": "tool_use", "stop": "end_turn", "length": "max_tokens"}[choice["finish_reason"]]
        usage = answer.get("usage", {})
        return {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": usage.get("prompt_tokens", 0),
                          "output_tokens": usage.get("completion_tokens", 0)}}


# ------------------------------------------------------------------ Gemini generateContent
_GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
_GEMINI_SCHEMA_FIELDS = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                         "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                         "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}
_GEMINI_TYPES = {"string", "number", "integer", "boolean", "array", "object"}
_GEMINI_FORMATS = {"string": {"date-time", "enum"}, "integer": {"int32", "int64"}, "number": {"float", "double"}}
_GEMINI_PATH = re.compile(r"^/v1beta/models/([^/:]+):generateContent$")


class FakeGemini(FakeLLM):
    """Gemini's generateContent; `url` is the bare host (the workbench adds /v1beta)."""

    def __init__(self, handler: Handler | None = None, *, models: set[str] | None = None,
                 keys: set[str] | None = None) -> None:
        super().__init__(handler)
        self.models = models
        self.keys = keys
        self.raw: list[dict[str, Any]] = []
        self.url = self.host

    def respond(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Check the request as Gemini does, then answer in the generateContent format."""
        self.raw.append(body)
        lower = {k.lower(): v for k, v in headers.items()}
        m = _GEMINI_PATH.match(path.split("?")[0])
        if not m:
            return self.error(404, f"The requested URL {path} was not found on this server.")
        key = lower.get("x-goog-api-key") or (path.split("key=", 1)[1] if "key=" in path else "")
        if not key or (self.keys is not None and key not in self.keys):
            # Gemini answers a bad key with a 400, not a 401
            return 400, {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                   "status": "INVALID_ARGUMENT",
                                   "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                "reason": "API_KEY_INVALID"}]}}
        model = m.group(1)
        if self.models is not None and model not in self.models:
            return self.error(404, f"models/{model} is not found for API version v1beta, or is not supported for "
                                   "generateContent.")
        problem = self.check(body)
        if problem:
            self.refusals.append((400, {"message": problem}))
            return self.error(400, problem)
        status, answer = self.answer(self.view(body, model))
        if status != 200:
            return self.error(status, answer.get("error", {}).get("message", "error"))
        return 200, self.native(answer, model)

    def error(self, status: int, message: str) -> tuple[int, dict[str, Any]]:
        """A Google API error body."""
        return status, {"error": {"code": status, "message": message, "status": _GEMINI_STATUS.get(status, "UNKNOWN")}}

    def check(self, body: dict[str, Any]) -> str | None:
        """The first documented request rule `body` breaks, or None."""
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return "* GenerateContentRequest.contents: contents is not specified"
        for i, content in enumerate(contents):
            if content.get("role") not in ("user", "model", "function"):
                return f"* GenerateContentRequest.contents[{i}].role: Please use a valid role: user, model."
            for part in content.get("parts", []):
                if not set(part) & {"text", "inline_data", "inlineData", "function_call", "functionCall",
                                    "function_response", "functionResponse", "file_data", "thought_signature"}:
                    return (f"* GenerateContentRequest.contents[{i}].parts: required oneof field 'data' must have "
                            "one initialized field")
        for t, tool in enumerate(body.get("tools") or []):
            for f, decl in enumerate(tool.get("function_declarations") or tool.get("functionDeclarations") or []):
                where = f"GenerateContentRequest.tools[{t}].function_declarations[{f}]"
                if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$", decl.get("name", "")):
                    return f"* {where}.name: Invalid function name."
                if "parameters" in decl:
                    problem = self.check_schema(decl["parameters"], f"{where}.parameters")
                    if problem:
                        return problem
        mode = (((body.get("toolConfig") or body.get("tool_config") or {}).get("functionCallingConfig") or {})
                .get("mode"))
        if mode is not None and mode not in ("AUTO", "ANY", "NONE", "VALIDATED"):
            return f"* GenerateContentRequest.tool_config.function_calling_config.mode: invalid value {mode!r}"
        return None

    def check_schema(self, node: Any, where: str) -> str | None:
        """Gemini's `Schema` (an OpenAPI 3.0 subset), checked as its API does."""
        if not isinstance(node, dict):
            return f"* {where}: Invalid value, expected a Schema object"
        for key in node:
            if key not in _GEMINI_SCHEMA_FIELDS:
                return f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field."
        kind = str(node.get("type", "")).lower()
        if not kind and "anyOf" not in node:
            return f"* {where}.type: must be specified"
        if kind and kind not in _GEMINI_TYPES:
            return f"Invalid JSON payload received. Invalid value at '{where}.type' ({node['type']})"
        if "enum" in node:
            if not all(isinstance(v, str) for v in node["enum"]):
                return f"Invalid JSON payload received. Invalid value at '{where}.enum' (TYPE_STRING)"
            if kind != "string":
                return f"* {where}.enum: only allowed for STRING type"
        fmt = node.get("format")
        if fmt is not None and fmt not in _GEMINI_FORMATS.get(kind, set()):
            allowed = " and ".join(f"'{f}'" for f in sorted(_GEMINI_FORMATS.get(kind, set()))) or "no format"
            return f"* {where}.format: only {allowed} are supported for {kind.upper()} type"
        if kind == "object":
            props = node.get("properties")
            if not props:
                return f"* {where}.properties: should be non-empty for OBJECT type"
            for name in node.get("required", []):
                if name not in props:
                    return f"* {where}.required[{name}]: property is not defined"
            for name, sub in props.items():
                problem = self.check_schema(sub, f"{where}.properties[{name}].value")
                if problem:
                    return problem
        if kind == "array":
            if "items" not in node:
                return f"* {where}.items: missing field."
            problem = self.check_schema(node["items"], f"{where}.items")
            if problem:
                return problem
        for i, sub in enumerate(node.get("anyOf") or []):
            problem = self.check_schema(sub, f"{where}.any_of[{i}]")
            if problem:
                return problem
        return None

    def view(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        """The request in OpenAI chat form, for the handler."""
        system = body.get("system_instruction") or body.get("systemInstruction") or {}
        text = "\n".join(p.get("text", "") for p in system.get("parts", []))
        messages: list[dict[str, Any]] = [{"role": "system", "content": text}] if text else []
        for content in body["contents"]:
            parts = []
            for part in content.get("parts", []):
                if "text" in part:
                    parts.append({"type": "text", "text": part["text"]})
                blob = part.get("inline_data") or part.get("inlineData")
                if blob:
                    mime = blob.get("mime_type") or blob.get("mimeType")
                    parts.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{blob['data']}"}})
            role = "assistant" if content["role"] == "model" else "user"
            messages.append({"role": role, "content": parts[0]["text"] if len(parts) == 1 and "text" in parts[0]
                             else parts})
        tools = [{"type": "function", "function": {"name": d["name"], "description": d.get("description", ""),
                                                   "parameters": d.get("parameters", {})}}
                 for tool in body.get("tools") or [] for d in tool.get("function_declarations") or []]
        config = body.get("generationConfig") or body.get("generation_config") or {}
        return {"model": model, "messages": messages, "tools": tools,
                "max_tokens": config.get("max_output_tokens") or config.get("maxOutputTokens")}

    def native(self, answer: dict[str, Any], model: str) -> dict[str, Any]:
        """An OpenAI-form reply as a generateContent response."""
        choice = answer["choices"][0]
        message = choice["message"]
        parts: list[dict[str, Any]] = [{"text": message["content"]}] if message.get("content") else []
        for tool_call in message.get("tool_calls") or []:
            parts.append({"functionCall": {"name": tool_call["function"]["name"],
                                           "args": json.loads(tool_call["function"]["arguments"])}})
        finish = {"tool_calls": "STOP", "stop": "STOP", "length": "MAX_TOKENS"}[choice["finish_reason"]]
        usage = answer.get("usage", {})
        return {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
                "usageMetadata": {"promptTokenCount": usage.get("prompt_tokens", 0),
                                  "candidatesTokenCount": usage.get("completion_tokens", 0),
                                  "totalTokenCount": usage.get("total_tokens", 0)},
                "modelVersion": model}
