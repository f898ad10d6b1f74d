"""Tasks and task sets: what an experiment asks the agent, and how a result is graded without a human.

A task is one JSON object (one line of a JSONL file): `id`, `prompt`, optional `start_url`,
`json_schema` / `response_format`, `max_steps`, and a `check`, one of

    {"equals": "..."}                       the result, normalised, equals this text
    {"contains": ["...", "..."]}            ... contains every one of these (normalised)
    {"regex": "..."}                        ... matches this regular expression (search)
    {"number": 5.49, "tolerance": 0.01}     the result's first number is within tolerance
    {"json": {...}}                         the (JSON) result holds these fields and values
    {"page": "<JS expression>"}             evaluated on the run's final page: truthy or > 0 passes
    {"judge": "<rubric>", "provider": ..., "model": ...}   a model grades the result

A task without a check is graded by hand. `{BASE_URL}` in a prompt or start URL stands for the
workbench's own address (the bundled sets point at the demo shop it serves at /demo/, and at the
MiniWoB++ pages at /miniwob/). A `setup` script runs on the start page before the first step; the
string it returns is the page's own instruction, put where the prompt says `{instruction}`.

Errors: `TaskError` (a ValueError) names the line and the field, and says how to fix it.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.experiments import miniwob
from agent.models import DEFAULT_MODELS, PROVIDERS, Provider, parse_json_schema
from agent.regexes import RegexError, check_regex

TASKSETS_DIR = Path(__file__).resolve().parents[2] / "data" / "tasksets"
MAX_TASKS = 1000
MAX_PROMPT_CHARS = 20_000
MAX_CHECK_CHARS = 4_000
MAX_REGEX_CHARS = 500
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$")
SET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")  # it names the set in URLs: no / or :
CheckKind = Literal["equals", "contains", "regex", "number", "json", "page", "judge"]
CHECK_KINDS: tuple[str, ...] = ("equals", "contains", "regex", "number", "json", "page", "judge")


class TaskError(ValueError):
    """A task or task set that cannot be used; `field` names the culprit (e.g. `tasks[3].check`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class Check(BaseModel):
    """How a run's result is graded; exactly one kind key is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    equals: str | None = Field(default=None, max_length=MAX_CHECK_CHARS)
    contains: list[str] | None = Field(default=None, min_length=1, max_length=50)
    regex: str | None = Field(default=None, max_length=MAX_REGEX_CHARS)
    number: float | None = None
    tolerance: float = Field(default=0.0, ge=0)
    json_: dict[str, Any] | None = Field(default=None, alias="json")
    page: str | None = Field(default=None, max_length=MAX_CHECK_CHARS)
    judge: str | None = Field(default=None, max_length=MAX_CHECK_CHARS)
    provider: Provider | None = None
    model: str | None = Field(default=None, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"must be an object with one of: {', '.join(CHECK_KINDS)}")
        # A dumped check carries every field: unset ones are None, an unused tolerance is 0.
        data = {k: v for k, v in data.items() if v is not None and not (k == "tolerance" and v == 0)}
        kinds = [k for k in CHECK_KINDS if k in data]
        unknown = sorted(set(data) - set(CHECK_KINDS) - {"tolerance", "provider", "model"})
        if unknown:
            raise ValueError(f"unknown check kind {unknown[0]!r}; use one of: {', '.join(CHECK_KINDS)}")
        if len(kinds) != 1:
            raise ValueError(f"must have exactly one of {', '.join(CHECK_KINDS)}; got {', '.join(kinds) or 'none'}")
        if "tolerance" in data and kinds != ["number"]:
            raise ValueError("tolerance goes with a number check only")
        if ("provider" in data or "model" in data) and kinds != ["judge"]:
            raise ValueError("provider and model go with a judge check only")
        return data

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:  # it runs with RE2, in linear time (agent.regexes): refuse what RE2 cannot run
            try:
                check_regex(value, ignore_case=True)
            except RegexError as exc:
                raise ValueError(f"{exc}; e.g. \"DS-[0-9A-F]{{8}}\"") from None
        return value

    @field_validator("contains")
    @classmethod
    def _contains(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not isinstance(v, str) or not v.strip() for v in value):
            raise ValueError("must be a list of non-empty strings")
        return value

    @property
    def kind(self) -> CheckKind:
        """Which kind of check this is."""
        for kind in CHECK_KINDS:
            if getattr(self, "json_" if kind == "json" else kind) is not None:
                return kind  # type: ignore[return-value]
        raise AssertionError("a validated check has a kind")

    @property
    def judge_model(self) -> tuple[str, str]:
        """(provider, model) of a judge check; the provider's default model when none is named."""
        provider = self.provider or "openai"
        return provider, self.model or DEFAULT_MODELS[provider]

    def as_json(self) -> dict[str, Any]:
        """The check as it is written in a task file."""
        out = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        if self.kind != "number":
            out.pop("tolerance", None)
        return out


class Task(BaseModel):
    """One task of a task set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Unique in its set; letters, digits, _ . : -")
    prompt: str = Field(min_length=3, max_length=MAX_PROMPT_CHARS)
    start_url: str | None = Field(default=None, max_length=2048)
    response_format: Literal["text", "json"] = "text"
    json_schema: dict[str, Any] | None = None
    max_steps: int | None = Field(default=None, ge=1, le=200)
    check: Check | None = None
    title: str | None = Field(default=None, max_length=200)
    setup: str | None = Field(default=None, max_length=MAX_CHECK_CHARS,
                              description="JS run on the start page before the first step; a string it returns "
                                          "is the page's instruction ({instruction} in the prompt); {repeat} is the "
                                          "repeat number (e.g. a seed)")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not ID_RE.match(value):
            raise ValueError("must be 1-80 letters, digits, _ . : - (starting with a letter or digit), "
                             "e.g. 'cheapest-usbc'")
        return value

    @field_validator("json_schema", mode="before")
    @classmethod
    def _schema(cls, value: Any) -> Any:
        return parse_json_schema(value)

    def request(self, base_url: str) -> dict[str, Any]:
        """The run request fields this task sets ({BASE_URL} filled in)."""
        out: dict[str, Any] = {"prompt": self.prompt.replace("{BASE_URL}", base_url),
                               "response_format": self.response_format}
        if self.start_url:
            out["start_url"] = self.start_url.replace("{BASE_URL}", base_url)
        if self.json_schema is not None:
            out["json_schema"] = self.json_schema
        if self.max_steps is not None:
            out["max_steps"] = self.max_steps
        return out


def _first_error(exc: ValidationError, prefix: str) -> TaskError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"] if p != "json_")
    field = ".".join(p for p in (prefix, where) if p) or "body"  # no prefix: the fields of the body itself
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = f"unknown field; a task has: {', '.join(Task.model_fields)}"
    elif err["type"] == "missing":
        message = "is required"
    return TaskError(field, message)


def validate_task(data: Any, *, field: str = "task") -> Task:
    """A task from a JSON object; TaskError naming the field (e.g. `task.check`) and the fix."""
    if not isinstance(data, dict):
        raise TaskError(field, "must be a JSON object with at least id and prompt")
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, field) from None


def parse_tasks(items: Any, *, field: str = "tasks") -> list[Task]:
    """Tasks from a list of objects; TaskError naming the first bad one (e.g. `tasks[2].check`)."""
    if not isinstance(items, list) or not items:
        raise TaskError(field, "must be a non-empty list of tasks, e.g. [{\"id\": \"t1\", \"prompt\": \"...\"}]")
    if len(items) > MAX_TASKS:
        raise TaskError(field, f"has {len(items)} tasks; the limit is {MAX_TASKS}")
    tasks: list[Task] = []
    seen: set[str] = set()
    for n, item in enumerate(items):
        where = f"{field}[{n}]"
        task = validate_task(item, field=where)
        if task.id in seen:
            raise TaskError(f"{where}.id", f"{task.id!r} is used by an earlier task; ids must be unique")
        seen.add(task.id)
        tasks.append(task)
    return tasks


def parse_jsonl(text: str, *, field: str = "tasks") -> list[Task]:
    """Tasks from JSONL text (one object per line; blank lines and lines starting with // skipped)."""
    items: list[Any] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise TaskError(f"{field} line {number}", f"is not valid JSON ({exc.msg} at column {exc.colno})") from None
        lines.append(number)
    try:
        return parse_tasks(items, field=field)
    except TaskError as exc:
        match = re.match(rf"^{re.escape(field)}\[(\d+)\](.*)$", exc.field)
        if match:  # name the file's line, not the list position
            raise TaskError(f"{field} line {lines[int(match.group(1))]}{match.group(2)}", exc.message) from None
        raise


def check_set_name(name: Any, *, field: str = "name") -> str:
    """A task set's name as given; TaskError naming the fix when it cannot name one."""
    if not isinstance(name, str) or not SET_NAME_RE.match(name):
        raise TaskError(field, "must be 1-80 letters, digits, _ . - (starting with a letter or digit), "
                               "e.g. 'checkout-regressions'")
    return name


def as_json(task: Task) -> dict[str, Any]:
    """A task as a task file writes it (fields left at their defaults out; the check as written)."""
    out = task.model_dump(mode="json", by_alias=True, exclude_none=True)
    if out.get("response_format") == "text":
        out.pop("response_format")
    if task.check is not None:
        out["check"] = task.check.as_json()
    head: dict[str, Any] = {k: out.pop(k) for k in ("id", "title") if k in out}  # a reader looks for these first
    return {**head, **out}


def to_jsonl(tasks: list[Task]) -> str:
    """Tasks as JSONL text, one task per line (what parse_jsonl reads back to the same tasks)."""
    return "".join(json.dumps(as_json(t), ensure_ascii=False) + "\n" for t in tasks)


def bundled_sets() -> list[str]:
    """Names of the task sets shipped with the workbench (data/tasksets/*.jsonl, and miniwob when installed)."""
    return sorted([p.stem for p in TASKSETS_DIR.glob("*.jsonl")] + (["miniwob"] if miniwob.html_dir() else []))


def load_bundled(name: str, *, glob: str | None = None) -> list[Task]:
    """A bundled task set by name (only the tasks whose id matches `glob`); TaskError naming the fix."""
    names = bundled_sets()
    if name not in names:
        raise TaskError("task_set", f"unknown task set {name!r}; bundled ones: {', '.join(names) or '(none)'}")
    if name == "miniwob":
        tasks = [Task.model_validate(fields) for fields in miniwob.tasks()]
    else:
        tasks = parse_jsonl((TASKSETS_DIR / f"{name}.jsonl").read_text(encoding="utf-8"), field=f"task_set {name}")
    return pick(tasks, glob, of=name)


def pick(tasks: list[Task], glob: str | None, *, of: str = "the set") -> list[Task]:
    """The tasks whose id matches one of the comma-separated globs (all when None); TaskError when none does."""
    if glob is None:
        return tasks
    patterns = [g.strip() for g in glob.split(",") if g.strip()]
    chosen = [t for t in tasks if any(fnmatch.fnmatchcase(t.id, g) for g in patterns)]
    if not chosen:
        raise TaskError("task_glob", f"{glob!r} matches no task of {of}; e.g. 'click-*' or 'click-button,enter-text'")
    return chosen


__all__ = ["CHECK_KINDS", "Check", "PROVIDERS", "Task", "TaskError", "as_json", "bundled_sets", "check_set_name",
           "load_bundled", "parse_jsonl", "parse_tasks", "to_jsonl", "validate_task"]
