"""A user's JSON Schema, translated per provider into what that provider's tool schemas accept.

Each provider's record (agent.providers) names its dialect; `DIALECTS` holds one translation each.
The user's schema goes under the `done` tool's `data` property; what each provider takes there differs:
- every provider: `$ref: "#/$defs/Item"` (what pydantic's `model_json_schema()` writes) is resolved
  from the tool's root, so the user's `$defs` are hoisted to the root of the tool's parameters and
  other local references are rewritten to point under `properties.data`;
- OpenAI and the OpenAI dialects (Groq, Mistral, Together, DeepSeek): an array needs `items`;
- Google (Gemini's `parameters`, an OpenAPI 3.0 subset, after litellm's conversion): no `$ref`,
  `oneOf`, `const`, maps or untyped values; enums hold strings only; a string's format is `date-time`
  or `enum`. References are inlined, `oneOf` becomes `anyOf`, `const` and non-string enums become a
  type plus a description, and a value the subset cannot type (a map, any JSON value) is asked for as
  JSON text and decoded before validation.

The translation is only what the model is shown: the result is always validated against the user's
original schema (and the repair loop explains mismatches). What cannot be translated is refused at
submission: `SchemaRefused` names the keyword and the provider.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.providers import REGISTRY, SchemaDialect

ANY_JSON = "the result as any JSON value"
# Keywords that only constrain values: dropped where a provider lacks them (the validator still checks).
_GEMINI_KEEP = ("description", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems",
                "minProperties", "maxProperties")
_GEMINI_FORMATS = {"string": {"date-time", "enum"}, "integer": {"int32", "int64"}, "number": {"float", "double"}}
_SUBSCHEMA_DICTS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
                  "unevaluatedItems", "unevaluatedProperties", "additionalItems")
MAX_INLINED_CHARS = 60_000  # an inlined schema past this is refused rather than sent on every step

Path = tuple[str, ...]  # keys into the result; "*" stands for every item of an array


class SchemaRefused(ValueError):
    """A JSON Schema that a provider cannot take; the message names the keyword, the provider and the fix."""

    def __init__(self, keyword: str, provider: str, fix: str, where: str = "") -> None:
        at = f" at {where}" if where else ""
        super().__init__(f"`{keyword}`{at} cannot be sent to {provider}: {fix}")
        self.keyword = keyword
        self.provider = provider


@dataclass(frozen=True)
class ToolSchema:
    """The schema of `done`'s `data` for one provider: `defs` go to the tool's root; values at
    `json_text` paths arrive as JSON text and are decoded before validation."""

    data: dict[str, Any]
    defs: dict[str, Any]
    json_text: tuple[Path, ...] = ()

    def decode(self, value: Any) -> Any:
        """The model's `data` with JSON-text values parsed (a value that is not JSON text stays as sent)."""
        for path in self.json_text:
            value = _decode_at(value, path)
        return value


def for_provider(schema: dict[str, Any] | None, provider: str) -> ToolSchema:
    """Translate the run's JSON Schema (None: any JSON value) for `provider`; raise SchemaRefused if it cannot be."""
    user = {k: v for k, v in (schema or {}).items() if k not in ("$schema", "$id", "title")}
    _check_refs(user, provider)
    return DIALECTS[REGISTRY[provider].schema_dialect](user, provider)


def problem(schema: dict[str, Any] | None, provider: str) -> str | None:
    """Why `schema` cannot be sent to `provider` (a message naming keyword and provider), or None."""
    try:
        for_provider(schema, provider)
    except SchemaRefused as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------ every provider
def _walk(node: Any, fn: Any) -> Any:
    """Apply `fn` to every subschema, bottom up (`fn` gets a dict and returns the new dict)."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in _SUBSCHEMA_DICTS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _walk(sub, fn) for name, sub in out[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [_walk(sub, fn) for sub in out[key]]
    for key in _SUBSCHEMA_ONE:
        if isinstance(out.get(key), dict):
            out[key] = _walk(out[key], fn)
    return fn(out)


def _refs(node: Any) -> list[str]:
    found: list[str] = []

    def see(sub: dict[str, Any]) -> dict[str, Any]:
        if isinstance(sub.get("$ref"), str):
            found.append(sub["$ref"])
        return sub

    _walk(node, see)
    return found


def _check_refs(schema: dict[str, Any], provider: str) -> None:
    for ref in _refs(schema):
        if not ref.startswith("#"):
            raise SchemaRefused("$ref", provider, f"{ref!r} points outside the schema; put what it names under "
                                                  "$defs and refer to it as #/$defs/<name>")


def _rebase(data: dict[str, Any]) -> dict[str, Any]:
    """Point the user's root-relative references at their new place under `properties.data`."""

    def fix(node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith(("#/$defs/", "#/definitions/")):
            node["$ref"] = "#/properties/data" + ref[1:]
        return node

    return _walk(data, fix)


def _openai(user: dict[str, Any], provider: str) -> ToolSchema:
    """OpenAI's dialect (Groq, Mistral, Together, DeepSeek and Anthropic take it too): `$defs` hoisted."""
    data = {k: v for k, v in user.items() if k not in ("$defs", "definitions")} or {"description": ANY_JSON}
    defs = {key: {name: _openai_rules(_rebase(sub)) for name, sub in user[key].items()}
            for key in ("$defs", "definitions") if isinstance(user.get(key), dict)}
    return ToolSchema(data=_openai_rules(_rebase(data)), defs=defs)


def _openai_rules(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI refuses (400) an array schema without `items`: give it an empty one (any item)."""

    def fix(node: dict[str, Any]) -> dict[str, Any]:
        types = node.get("type")
        is_array = types == "array" or (isinstance(types, list) and "array" in types)
        if is_array and "items" not in node and "prefixItems" not in node:
            node["items"] = {}
        return node

    return _walk(schema, fix)


def _decode_at(value: Any, path: Path) -> Any:
    if not path:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value
    head, rest = path[0], path[1:]
    if head == "*" and isinstance(value, list):
        return [_decode_at(v, rest) for v in value]
    if isinstance(value, dict) and head in value:
        return {**value, head: _decode_at(value[head], rest)}
    return value


# ------------------------------------------------------------------ Google (Gemini)
def _gemini(user: dict[str, Any], provider: str) -> ToolSchema:
    """Gemini's OpenAPI 3.0 subset: references inlined, untypeable values asked for as JSON text."""
    return _Gemini(user, provider).translate()


class _Gemini:
    """One translation of a user schema into Gemini's `parameters` subset."""

    def __init__(self, root: dict[str, Any], provider: str) -> None:
        self.root = root
        self.provider = provider
        self.json_text: list[Path] = []

    def translate(self) -> ToolSchema:
        data = {k: v for k, v in self.root.items() if k not in ("$defs", "definitions")}
        out = self.node(data, (), (), no_text=False)
        if len(json.dumps(out)) > MAX_INLINED_CHARS:
            raise SchemaRefused("$ref", self.provider, "the schema grows past 60 000 characters once its "
                                                       "references are inlined; make it smaller")
        return ToolSchema(data=out, defs={}, json_text=tuple(self.json_text))

    def refuse(self, keyword: str, fix: str, where: Path) -> SchemaRefused:
        return SchemaRefused(keyword, self.provider, fix, "/".join(where) or "(root)")

    def resolve(self, ref: str, where: Path, seen: tuple[str, ...]) -> dict[str, Any]:
        if ref in seen:
            raise self.refuse("$ref", f"{ref} refers to itself and Gemini takes no recursive schemas; "
                                      "bound the nesting (e.g. two explicit levels)", where)
        target: Any = self.root
        for part in ref.lstrip("#").strip("/").split("/") if ref not in ("#", "#/") else []:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            raise self.refuse("$ref", f"{ref} names nothing in the schema", where)
        return target

    def text(self, node: dict[str, Any], where: Path, no_text: bool, what: str) -> dict[str, Any]:
        """A value Gemini cannot type, asked for as JSON text (decoded before validation)."""
        if no_text:
            raise self.refuse("anyOf", f"a choice ({what}) that Gemini cannot type; give each option a type "
                                       "(string, number, integer, boolean, array with items, object with properties)",
                              where)
        self.json_text.append(where)
        hint = json.dumps({k: v for k, v in node.items() if k != "description"}, separators=(",", ":"))[:300]
        said = f"{node['description']}. " if node.get("description") else ""
        return {"type": "string", "description": f"{said}{what}, written as JSON text"
                                                 + (f" matching {hint}" if hint not in ("{}", "") else "")}

    def node(self, node: Any, where: Path, seen: tuple[str, ...], *, no_text: bool) -> dict[str, Any]:
        if node is True or node == {}:
            return self.text({}, where, no_text, "any JSON value" if where else ANY_JSON)
        if node is False or not isinstance(node, dict):
            raise self.refuse("false", "a schema that accepts nothing cannot be asked for", where)
        if isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            target = self.resolve(ref, where, seen)
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return self.node(merged, where, seen + (ref,), no_text=no_text)
        if isinstance(node.get("allOf"), list):
            parts = node["allOf"]
            if len(parts) != 1:
                raise self.refuse("allOf", "Gemini cannot combine schemas; merge the parts into one object", where)
            rest = {k: v for k, v in node.items() if k != "allOf"}
            part = parts[0] if isinstance(parts[0], dict) else {}
            return self.node({**part, **rest}, where, seen, no_text=no_text)
        for keyword in ("oneOf", "anyOf"):
            if isinstance(node.get(keyword), list):
                return self.choice(node, node[keyword], where, seen, no_text=no_text)
        if "const" in node:
            return self.enum(node, [node["const"]], where, no_text=no_text)
        if isinstance(node.get("enum"), list):
            return self.enum(node, node["enum"], where, no_text=no_text)
        types = node.get("type")
        kinds = [types] if isinstance(types, str) else list(types) if isinstance(types, list) else []
        if not kinds:
            kinds = ["object"] if "properties" in node else ["array"] if "items" in node else []
        nullable = "null" in kinds
        kinds = [k for k in kinds if k != "null"]
        if not kinds:
            return self.text(node, where, no_text, ANY_JSON if not where else "any JSON value")
        if len(kinds) > 1:
            branches = [{**node, "type": k} for k in kinds]
            return self.choice(node, branches + ([{"type": "null"}] if nullable else []), where, seen, no_text=no_text)
        out = self.typed(node, kinds[0], where, seen, no_text=no_text)
        if nullable:
            out["nullable"] = True
        return out

    def typed(self, node: dict[str, Any], kind: str, where: Path, seen: tuple[str, ...], *,
              no_text: bool) -> dict[str, Any]:
        if kind not in ("string", "number", "integer", "boolean", "object", "array"):
            raise self.refuse("type", f"{kind!r} is not a JSON Schema type Gemini knows", where)
        out: dict[str, Any] = {"type": kind}
        out.update({k: node[k] for k in _GEMINI_KEEP if k in node})
        fmt = node.get("format")
        if isinstance(fmt, str):
            if fmt in _GEMINI_FORMATS.get(kind, set()):
                out["format"] = fmt
            else:
                out["description"] = f"{out['description']} (format: {fmt})" if out.get("description") \
                    else f"format: {fmt}"
        if kind == "object":
            props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
            if not props:
                extra = node.get("additionalProperties", True)
                what = "a JSON object" if extra in (True, {}) else "a JSON object mapping each name to a value"
                return self.text(node, where, no_text, what)
            out["properties"] = {name: self.node(sub, where + (name,), seen, no_text=no_text)
                                 for name, sub in props.items()}
            required = [r for r in node.get("required", []) if r in props]
            if required:
                out["required"] = required
        elif kind == "array":
            if "prefixItems" in node:
                raise self.refuse("prefixItems", "Gemini takes no tuples; use an array of one item type or an "
                                                 "object with named properties", where)
            items = node.get("items")
            # An array of any items: Gemini needs an item type; strings are items the user's schema accepts.
            out["items"] = self.node(items, where + ("*",), seen, no_text=no_text) \
                if isinstance(items, dict) and items else {"type": "string"}
        return out

    def choice(self, node: dict[str, Any], branches: list[Any], where: Path, seen: tuple[str, ...], *,
               no_text: bool) -> dict[str, Any]:
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "type")}
        real = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null" and len(b) == 1)]
        nullable = len(real) < len(branches)
        if len(real) == 1:
            out = self.node({**real[0], **rest} if isinstance(real[0], dict) else real[0], where, seen, no_text=no_text)
        else:
            out = {"anyOf": [self.node({**b, **{k: v for k, v in rest.items() if k != "description"}}
                                       if isinstance(b, dict) else b, where, seen, no_text=True) for b in real]}
            if rest.get("description"):
                out["description"] = rest["description"]
        if nullable:
            out["nullable"] = True
        return out

    def enum(self, node: dict[str, Any], values: list[Any], where: Path, *, no_text: bool) -> dict[str, Any]:
        said = node.get("description", "")
        groups: dict[str, list[Any]] = {}
        for v in values:
            kind = "null" if v is None else "boolean" if isinstance(v, bool) else "integer" if isinstance(v, int) \
                else "number" if isinstance(v, float) else "string" if isinstance(v, str) else "other"
            groups.setdefault(kind, []).append(v)
        if "other" in groups:
            raise self.refuse("enum", "Gemini takes enum values that are strings, numbers or booleans, not "
                                      "objects or arrays", where)
        if "integer" in groups and "number" in groups:
            groups["number"] += groups.pop("integer")
        nullable = bool(groups.pop("null", None))
        parts = []
        for kind, members in groups.items():
            if kind == "string":
                part: dict[str, Any] = {"type": "string", "enum": members}
            else:
                listed = ", ".join(json.dumps(v) for v in members)
                part = {"type": kind, "description": f"always {listed}" if len(members) == 1 else f"one of {listed}"}
            parts.append(part)
        if not parts:
            raise self.refuse("enum", "an enum of null alone; use {\"type\": \"null\"}", where)
        out: dict[str, Any] = parts[0] if len(parts) == 1 else {"anyOf": parts}
        if said:
            out["description"] = f"{said} ({out['description']})" if "description" in out else said
        if nullable:
            out["nullable"] = True
        return out


DIALECTS: dict[SchemaDialect, Callable[[dict[str, Any], str], ToolSchema]] = {"openai": _openai, "gemini": _gemini}
