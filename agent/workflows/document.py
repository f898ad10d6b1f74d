"""The cached-workflow document: its models, loading (with clear errors) and editing.

A workflow is a versioned JSON document (`"format": "workbench-workflow/1"`) recorded from a
successful run (agent.workflows.record): its parameters and its steps, each step a description and
the actions that achieved it; element actions carry the locators recorded when the agent used them,
and each parameter appears as `{{name}}` wherever its value appeared. Templating lives in
agent.workflows.template, replaying in agent.workflows.replay.

Errors: `WorkflowError` (a ValueError with `field` naming the culprit and a message naming the
fix); `NotRecordable` (a WorkflowError) for a run that cannot become a workflow.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.engine.actions import ACTIONS
from agent.models import parse_json_schema

FORMAT: Literal["workbench-workflow/1"] = "workbench-workflow/1"


MAX_STEPS = 200


MAX_ACTIONS_PER_STEP = 20


MAX_PARAMETERS = 30


MAX_DOCUMENT_CHARS = 1_000_000


NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")


# Action params that are URLs (encoded by place when rendered), from each action's traits.
URL_PARAMS: dict[str, tuple[str, ...]] = {name: a.traits.url_args for name, a in ACTIONS.items() if a.traits.url_args}


class WorkflowError(ValueError):
    """A workflow (or an edit, or parameter values) that cannot be accepted; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotRecordable(WorkflowError):
    """The run cannot become a workflow (it did not succeed, or did nothing replayable)."""


class Parameter(BaseModel):
    """A value that changes from one replay to the next."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Appears as {{name}} in the steps")
    type: Literal["string", "number", "integer", "boolean"] = "string"
    description: str = Field(default="", max_length=1000)
    example: str | int | float | bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid parameter name: use letters, digits and _ (not first), e.g. 'product_query'"
            )
        return value


class Expect(BaseModel):
    """What must hold after an action, where that can be checked; strings may hold {{param}}."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, description="URL pattern: * matches any query value or path segment")
    value: str | None = Field(default=None, description="The field holds exactly this after input")
    selected: str | None = Field(default=None, description="The dropdown shows this option after select")


class WorkflowAction(BaseModel):
    """One action as the agent called it, with the element's locators and the check to make after it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    locators: dict[str, Any] | None = None
    expect: Expect | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ACTIONS:
            raise ValueError(f"unknown action {value!r}; use one of: {', '.join(ACTIONS)}")
        return value


class WorkflowStep(BaseModel):
    """One step: what it is for, the actions that achieve it, and the page it started on."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(max_length=2000)
    actions: list[WorkflowAction] = Field(min_length=1, max_length=MAX_ACTIONS_PER_STEP)
    url: str | None = Field(default=None, description="The page the step started on when recorded (literal)")
    healed: bool = Field(default=False, description="Re-recorded by the agent during a replay")


class Workflow(BaseModel):
    """A cached workflow: parameters and steps; the last step's `done` is the result template."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["workbench-workflow/1"] = FORMAT
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    prompt: str = Field(min_length=1, description="The task the workflow was recorded from")
    start_url: str | None = None
    result_format: Literal["text", "json"] = "text"
    json_schema: dict[str, Any] | None = None
    parameters: list[Parameter] = Field(default_factory=list, max_length=MAX_PARAMETERS)
    steps: list[WorkflowStep] = Field(min_length=1, max_length=MAX_STEPS)
    source_run_id: int | None = None

    @field_validator("json_schema", mode="before")
    @classmethod
    def _schema(cls, value: Any) -> Any:
        return parse_json_schema(value)

    @model_validator(mode="after")
    def _consistent(self) -> Workflow:
        names = [p.name for p in self.parameters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"parameter names must be unique; {', '.join(dupes)} appear(s) more than once")
        last = self.steps[-1].actions[-1]
        if last.name != "done":
            raise ValueError("the last action of the last step must be `done` (the result template)")
        for n, step in enumerate(self.steps[:-1], 1):
            if any(a.name == "done" for a in step.actions):
                raise ValueError(f"step {n} holds `done`; only the last step may finish the workflow")
        return self

    @property
    def param_names(self) -> set[str]:
        """The declared parameter names."""
        return {p.name for p in self.parameters}


def placeholders_in(value: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(value, str):
        out.update(PLACEHOLDER_RE.findall(value))
    elif isinstance(value, dict):
        for v in value.values():
            out |= placeholders_in(v)
    elif isinstance(value, list):
        for v in value:
            out |= placeholders_in(v)
    return out


def load_workflow(value: Any, *, strict: bool = False, field: str = "cached_workflow"
                  ) -> tuple[Workflow, int | None, int | None]:
    """(document, id, version) from a document, a stored record {id, version, document} or JSON text.

    `strict` (edits) also refuses a {{name}} that names no parameter; otherwise such text is kept
    literally, as a page may really show "{{x}}". Errors name `field` (the request's or the body's).
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise WorkflowError(field, f"is not valid JSON ({exc.msg}); give a workflow object") from None
    if not isinstance(value, dict):
        raise WorkflowError(field, "must be a workflow object (as returned by GET /api/workflows/{id})")
    wid = version = None
    if isinstance(value.get("document"), dict):
        wid, version = value.get("id"), value.get("version")
        value = value["document"]
    if len(json.dumps(value, default=str)) > MAX_DOCUMENT_CHARS:
        raise WorkflowError(field, f"is larger than {MAX_DOCUMENT_CHARS} characters")
    if value.get("format") not in (None, FORMAT):
        raise WorkflowError(f"{field}.format", f"is {value.get('format')!r}; this version reads {FORMAT!r}")
    try:
        doc = Workflow.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise WorkflowError(f"{field}.{where}" if where else field,
                            err["msg"].removeprefix("Value error, ")) from None
    unknown = sorted(placeholders_in(doc.model_dump(exclude={"parameters", "prompt"})) - doc.param_names)
    if unknown and strict:
        raise WorkflowError(
            f"{field}.parameters",
            f"the steps use {', '.join('{{' + u + '}}' for u in unknown)} but no such parameter is declared; "
            "declare it under parameters",
        )
    return doc, (int(wid) if isinstance(wid, int) else None), (int(version) if isinstance(version, int) else None)


def rename_parameter(document: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The document with every {{old}} (steps, result, descriptions) written as {{new}}."""

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return PLACEHOLDER_RE.sub(lambda m: "{{" + new + "}}" if m.group(1) == old else m.group(0), value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    out = dict(document)
    out["steps"] = walk(document.get("steps", []))
    return out


def edit_workflow(
    document: dict[str, Any],
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A new document with the workflow renamed/described and parameters renamed/retyped/described.

    `parameters` maps a current parameter name to changes: {"name", "description", "type", "example"}.
    """
    doc, _, _ = load_workflow(document, field="document")
    out = doc.model_dump(mode="json")
    if name is not None:
        if not name.strip():
            raise WorkflowError("name", "must not be empty; give the workflow a short name")
        out["name"] = name.strip()[:200]
    if description is not None:
        out["description"] = description[:2000]
    current = {p["name"]: p for p in out["parameters"]}
    renames: list[tuple[str, str]] = []
    for old, change in (parameters or {}).items():
        field = f"parameters.{old}"
        if old not in current:
            raise WorkflowError(field, f"no such parameter; the workflow has: {', '.join(current) or '(none)'}")
        if not isinstance(change, dict):
            raise WorkflowError(field, 'must be an object such as {"name": "product", "description": "..."}')
        unknown = set(change) - {"name", "description", "type", "example"}
        if unknown:
            raise WorkflowError(f"{field}.{sorted(unknown)[0]}", "unknown key; use name, description, type or example")
        param = dict(current[old])
        for key in ("description", "type", "example"):
            if key in change:
                param[key] = change[key]
        if "name" in change and change["name"] != old:
            new = change["name"]
            if not isinstance(new, str) or not NAME_RE.match(new):
                raise WorkflowError(f"{field}.name",
                                    f"{new!r} is not a valid name: letters, digits and _, e.g. 'product'")
            renames.append((old, new))
            param["name"] = new
        try:
            Parameter.model_validate(param)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(map(str, err["loc"]))
            raise WorkflowError(f"{field}.{where}", err["msg"].removeprefix("Value error, ")) from None
        current[old] = param
    out["parameters"] = list(current.values())
    final_names = [p["name"] for p in out["parameters"]]
    dupes = sorted({n for n in final_names if final_names.count(n) > 1})
    if dupes:
        raise WorkflowError("parameters", f"two parameters would be called {dupes[0]!r}; pick different names")
    # Rename through temporary names so that swapping two names (a<->b) works.
    for i, (old, _new) in enumerate(renames):
        out = rename_parameter(out, old, f"__renaming_{i}__")
    for i, (_old, new) in enumerate(renames):
        out = rename_parameter(out, f"__renaming_{i}__", new)
    doc, _, _ = load_workflow(out, strict=True, field="document")
    return doc.model_dump(mode="json")

