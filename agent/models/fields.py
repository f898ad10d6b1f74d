"""What the rest of the workbench derives from a request field, said next to the field.

Each `RunRequest` field carries one `About` in its `Annotated[...]` metadata (invisible to its JSON
Schema). From it come the run form's control (agent.ui.form, agent.ui.app), the Gradio API's `run`
parameter (agent.ui.handlers), the engine options a request may set (agent.engine.loop), the fields
an experiment's variant may not set (agent.experiments.runner) and the docs' request table.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Le
from pydantic.fields import FieldInfo

__all__ = ["About", "Control", "Section", "about", "bounds", "control_of", "value_type"]

Section = Literal["main", "Cached workflow", "Advanced"]  # where the form shows a field, in the page's order
# text: a box (strings, whole numbers, lists written comma-separated); secret: a box that hides what is typed;
# json: a JSON editor; check: a tick box; choice: one of the type's values; combo: suggestions or any text.
Control = Literal["text", "secret", "json", "check", "choice", "combo"]


@dataclass(frozen=True)
class About:
    """A request field as the form, the API, the engine, experiments and the docs see it."""

    label: str  # the form's label
    elem_id: str  # the form control's id on the page ("wb-...")
    section: Section = "Advanced"
    row: str | None = None  # fields of one row sit side by side, the row where its first field (in order) is
    column: int = 0  # the place in its row
    control: Control | None = None  # None: from the field's type (control_of)
    placeholder: str = ""
    info: str | None = None  # a line under the label
    lines: int = 1
    max_lines: int | None = None
    json_example: str | None = None  # the form reads the box as a JSON object; this example goes in its messages
    engine: bool = False  # the request's value overrides the engine option of the same name (EngineOptions)
    engine_default: Any = None  # ...and what leaving it empty means: that option's default
    task: bool = False  # an experiment's task sets it: a variant may not
    added: bool = True  # not one of the seed contract's fields (the docs mark it "added")
    see: str | None = None  # the docs page that says more ("security.md#webhooks")


def about(field: FieldInfo) -> About:
    """The field's `About` (every RunRequest field has one; tests/test_models.py checks it)."""
    found = [m for m in field.metadata if isinstance(m, About)]
    if len(found) != 1:
        raise LookupError(f"a request field needs exactly one About in its Annotated metadata, found {len(found)}")
    return found[0]


def value_type(field: FieldInfo) -> Any:
    """The field's type without `None` (Optional[int] -> int), its own Annotated metadata dropped."""
    kind = field.annotation
    if get_origin(kind) in (Union, types.UnionType):
        rest = [a for a in get_args(kind) if a is not type(None)]
        kind = rest[0] if len(rest) == 1 else kind
    while hasattr(kind, "__metadata__"):  # Annotated[int, Field(ge=1)]
        kind = get_args(kind)[0]
    return kind


def bounds(field: FieldInfo) -> tuple[int | None, int | None]:
    """(least, most) a number field takes, from its type's constraints (Annotated[int, Field(ge=1, le=200)])."""
    least: int | None = None
    most: int | None = None
    for rule in [*field.metadata, *(m for a in get_args(field.annotation) for m in getattr(a, "__metadata__", ()))]:
        for item in getattr(rule, "metadata", [rule]):  # a Field(...) inside Annotated carries its constraints
            least = int(item.ge) if isinstance(item, Ge) else least  # type: ignore[call-overload]
            most = int(item.le) if isinstance(item, Le) else most  # type: ignore[call-overload]
    return least, most


def control_of(field: FieldInfo) -> Control:
    """The form control of a field: its About's, else from its type."""
    chosen = about(field).control
    if chosen is not None:
        return chosen
    kind = value_type(field)
    if kind is bool:
        return "check"
    if get_origin(kind) is Literal:
        return "choice"
    if kind is dict or get_origin(kind) is dict:
        return "json"
    return "text"
