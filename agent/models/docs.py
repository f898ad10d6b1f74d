"""The docs' generated tables: the request's fields (docs/api.md) and the providers (docs/engine.md).

`python -m agent.models.docs` writes both between their pages' markers (`<!-- fields:start -->` ...
`<!-- fields:end -->`); tests/test_models.py checks that the pages hold them, so they cannot go stale.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from annotated_types import MaxLen, MinLen
from pydantic.fields import FieldInfo

from agent.models.fields import bounds, value_type
from agent.models.request import FIELDS, RunRequest
from agent.providers import providers_markdown

__all__ = ["GENERATED", "filled", "main", "request_fields_markdown"]

DOCS = Path(__file__).resolve().parents[2] / "docs"

_HUGE = 10**9  # a bound past this is a technical cap, not worth a reader's attention


def _shape(info: FieldInfo) -> str:
    """The field's type in words: "string", "`text` or `json`", "int 1-200", "list of strings"..."""
    kind = value_type(info)
    if get_origin(kind) is Literal:
        values = [f"`{v}`" for v in get_args(kind)]
        return " or ".join(values) if len(values) == 2 else ", ".join(values)
    if kind is bool:
        return "bool"
    if kind is int:
        least, most = bounds(info)
        return f"int {least}–{most}" if most is not None and most < _HUGE else f"int ≥ {least}"
    if kind is float:
        return "number"
    if kind is str:
        least = next((m.min_length for m in info.metadata if isinstance(m, MinLen)), None)
        most = next((m.max_length for m in info.metadata if isinstance(m, MaxLen)), None)
        limits = ([f"≥ {least} characters"] if least else []) + ([f"≤ {most:,} characters"] if most else [])
        return ", ".join(["string", *limits])
    if get_origin(kind) is list:
        return "list of strings"
    return "object"


def _default(name: str, info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value: Any = info.default if info.default is not None else FIELDS[name].engine_default
    return "" if value is None else f"`{json.dumps(value)}`" if isinstance(value, bool) else f"`{value}`"


def request_fields_markdown() -> str:
    """The request table of docs/api.md, one row per RunRequest field in the contract's order."""
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, info in RunRequest.model_fields.items():
        about = FIELDS[name]
        meaning = ("*added*: " if about.added else "") + (info.description or "")
        if about.see:
            meaning += f" ([{about.see.split('#')[0]}]({about.see}))"
        meaning = meaning.replace("|", "/").replace("<", "&lt;").replace(">", "&gt;")
        lines.append(f"| `{name}` | {_shape(info)} | {_default(name, info)} | {meaning} |")
    return "\n".join(lines)


# page -> (marker, the table's generator)
GENERATED = {"api.md": ("fields", request_fields_markdown), "engine.md": ("providers", providers_markdown)}


def filled(page: str, text: str) -> str:
    """The page's text with its generated table in place; ValueError when its markers are missing."""
    marker, table = GENERATED[page]
    pattern = re.compile(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"docs/{page} lost its <!-- {marker}:start --> / <!-- {marker}:end --> markers")
    return pattern.sub(lambda m: m.group(1) + table() + "\n" + m.group(2), text)


def main() -> None:
    """Write the generated tables into their pages (between the markers)."""
    for page in GENERATED:
        path = DOCS / page
        path.write_text(filled(page, path.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"docs/{page}: {GENERATED[page][0]} table written")


if __name__ == "__main__":
    main()
