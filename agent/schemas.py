"""JSON Schemas a user gives (`json_schema` of a request or a workflow): the one place they are parsed,
checked and used to validate a result. A schema may only refer inside itself, and validation uses an
empty registry, so nothing a user sends makes the server fetch a URL or read a file. Its patterns
(`pattern`, `patternProperties`) run with RE2, in linear time (agent.regexes): one RE2 cannot run is
refused with the schema.

`agent.models` re-exports `parse_json_schema` and `schema_problem`; jsonschema is imported lazily.
"""

from __future__ import annotations

import json
from typing import Any

from agent.limits import MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH, json_depth, json_size
from agent.regexes import RegexError, check_regex, linear_validator, schema_patterns

__all__ = ["parse_json_schema", "schema_problem"]


def parse_json_schema(value: Any) -> dict[str, Any] | None:
    """Accept a JSON Schema as an object or a JSON string; check its size, its refs and its metaschema.

    The one check of a schema (requests, workflow documents, the form's live check): a schema may only
    refer inside itself (`#...`), so that nothing a user sends makes the server fetch or read anything.
    """
    import jsonschema  # here, not at the top: +115 ms (measured) on every `import agent.models`

    if value is None or value == "":
        return None
    if isinstance(value, str):
        if len(value) > 4 * MAX_SCHEMA_BYTES:
            raise ValueError(f"is {len(value)} characters long; the limit is {MAX_SCHEMA_BYTES} bytes of JSON")
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                'give a JSON Schema object such as {"type": "object", "properties": {...}}'
            ) from None
        except RecursionError:
            raise ValueError(f"nests deeper than {MAX_SCHEMA_DEPTH} levels; flatten it") from None
    if isinstance(value, bool):
        value = {} if value else {"not": {}}
    if not isinstance(value, dict):
        raise ValueError(
            f"must be a JSON Schema object (or a JSON string of one), got {type(value).__name__}"
        )
    if json_depth(value, limit=MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
        raise ValueError(f"nests deeper than {MAX_SCHEMA_DEPTH} levels; flatten it")
    size = json_size(value)
    if size > MAX_SCHEMA_BYTES:
        raise ValueError(f"is {size} bytes as JSON; the limit is {MAX_SCHEMA_BYTES}: describe only the result")
    _check_refs(value)
    validator = jsonschema.validators.validator_for(value, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValueError(f"is not a valid JSON Schema at {where}: {exc.message}") from None
    for where, pattern in schema_patterns(value):
        try:
            check_regex(pattern)
        except RegexError as exc:
            raise ValueError(f"has a pattern at {where} that cannot be used: {exc}") from None
    return value


# Keywords whose string value names another schema; anything but "#..." could be fetched or read.
_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef", "$id")
# Keywords whose value is data, not a schema: a "$ref" key there is just data.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples", "example"})


def _check_refs(schema: dict[str, Any]) -> None:
    """ValueError unless every $ref/$id/$dynamicRef is local (`#...`) and every local $ref resolves."""
    from referencing import Registry  # here, not at the top: +40 ms (measured), only schemas need it
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012, specification_with

    local: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(schema, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, list):
            stack.extend((item, f"{where}/{i}") for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, item in node.items():
            path = f"{where}/{key}"
            if key in _REF_KEYWORDS and isinstance(item, str):
                if not item.startswith("#"):
                    raise ValueError(
                        f"has {key} {item[:200]!r} at {path}, which points outside the schema: a schema may only "
                        "refer inside itself (e.g. '#/$defs/item'); put what it names under $defs"
                    )
                if key != "$id":
                    local.append((item, path))
            elif key not in _DATA_KEYWORDS:
                stack.append((item, path))
    if not local:
        return
    spec = specification_with(str(schema.get("$schema", "")), default=DRAFT202012)
    resolver = Registry().with_resource("", spec.create_resource(schema)).resolver(base_uri="")
    for ref, path in local:
        try:
            resolver.lookup(ref)
        except (Unresolvable, LookupError, ValueError, TypeError):
            raise ValueError(f"has $ref {ref[:200]!r} at {path}, which points at nothing in the schema") from None


def schema_problem(schema: dict[str, Any], value: Any) -> str | None:
    """Why `value` does not match the JSON Schema `schema` (first 8 errors, by path), or None.

    Validates with an empty registry: a reference outside the schema is never retrieved. Patterns
    match with RE2 (linear time, whatever the pattern and the value).
    """
    import jsonschema  # here, not at the top: +115 ms (measured), only structured runs need it
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    validator = linear_validator(jsonschema.validators.validator_for(schema))(schema, registry=Registry())
    try:
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    except (Unresolvable, jsonschema.exceptions.SchemaError, RegexError) as exc:  # refused at submission
        return f"the JSON schema cannot be used: {str(exc)[:300]}"
    if not errors:
        return None
    detail = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:8])
    return f"the result does not match the JSON schema: {detail}"
