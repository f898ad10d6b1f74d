"""What `POST /api/experiments` takes, checked before anything is recorded: `ExperimentSpec` and `validate_spec`.

Besides the shape (tasks from one source, unique variant names, run options a variant may set), a spec
is refused, naming the field and the fix, when it could only mislead: a variant whose provider has no
key (every one of its runs would be lost), a judge whose provider has no key, a baseline that is not a
variant, too many cells, or a budget (`max_cost_usd`) that a model without a price could never count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.experiments.tasks import Task, TaskError, load_bundled, parse_jsonl, parse_tasks, pick
from agent.limits import MAX_BUDGET_USD
from agent.models import TASK_FIELDS, RunRequest, validation_errors

MAX_CELLS = 2000
MAX_VARIANTS = 20
MAX_REPEATS = 20
MAX_CONCURRENCY = 32
DEFAULT_MAX_REPLAYS = 2
MAX_REPLAYS = 5
MAX_VERSION = 1_000_000
# A variant sets the other fields; the request's TASK_FIELDS (marked `task`: they belong to the task, or
# would make cells wait on a client) are the task's.
VARIANT_FIELDS: tuple[str, ...] = tuple(name for name in RunRequest.model_fields if name not in TASK_FIELDS)


class Variant(BaseModel):
    """A name plus run-request overrides (provider, model, extend_system_message, use_vision, max_steps...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, max_length=60, pattern=r"^[\w .:+()/-]+$")

    @property
    def overrides(self) -> dict[str, Any]:
        """The run-request fields this variant sets."""
        return dict(self.model_extra or {})

    def request(self) -> RunRequest:
        """A run request with this variant's overrides (provider, model, price...) and a stand-in prompt."""
        return RunRequest.model_validate({"prompt": "check a variant", **self.overrides})


class ExperimentSpec(BaseModel):
    """What `POST /api/experiments` takes: tasks (inline, JSONL text or a bundled set) × variants × repeats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="experiment", min_length=1, max_length=200)
    tasks: list[dict[str, Any]] | None = None
    tasks_jsonl: str | None = Field(default=None, max_length=2_000_000)
    task_set: str | None = Field(default=None, max_length=100,
                                 description="a task set kept in the workbench (bundled or stored), by name")
    task_set_version: int | None = Field(default=None, ge=1, le=MAX_VERSION,
                                         description="the task set's version to run (default: its latest)")
    task_glob: str | None = Field(default=None, max_length=100, description="only the tasks whose id matches")
    variants: list[Variant] = Field(min_length=1, max_length=MAX_VARIANTS)
    repeats: int = Field(default=1, ge=1, le=MAX_REPEATS)
    concurrency: int = Field(default=2, ge=1, le=MAX_CONCURRENCY)
    backend: Literal["local", "ray"] = "local"
    baseline: str | None = Field(default=None, max_length=60,
                                 description="the variant the others are compared with (default: the first)")
    compare: Literal["baseline", "all"] = Field(
        default="baseline", description="baseline: each variant against the baseline; all: every pair (Holm)")
    max_replays: int = Field(default=DEFAULT_MAX_REPLAYS, ge=0, le=MAX_REPLAYS,
                             description="how many times a run lost to the infrastructure is played again")
    max_cost_usd: float | None = Field(default=None, gt=0, le=MAX_BUDGET_USD,
                                       description="no new cell starts once the runs have cost this much")
    dry_run: bool = Field(default=False, description="only count the cells and estimate the cost; start nothing")

    @model_validator(mode="after")
    def _one_source(self) -> ExperimentSpec:
        given = [n for n in ("tasks", "tasks_jsonl", "task_set") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of tasks, tasks_jsonl or task_set (got {', '.join(given) or 'none'})")
        if self.task_set_version is not None and self.task_set is None:
            raise ValueError("task_set_version: goes with task_set (the set's name); inline tasks have no version")
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant names must be unique; {', '.join(dupes)} appears more than once")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline: {self.baseline!r} is not a variant; name one of {', '.join(names)}")
        return self

    @field_validator("variants")
    @classmethod
    def _overrides(cls, variants: list[Variant]) -> list[Variant]:
        for n, variant in enumerate(variants):
            bad = sorted(set(variant.overrides) & TASK_FIELDS)
            if bad:
                raise ValueError(f"variants[{n}] sets {bad[0]!r}, which belongs to the task; a variant sets "
                                 f"{', '.join(VARIANT_FIELDS)}")
            try:
                variant.request()
            except ValidationError as exc:
                err = validation_errors(exc)[0]
                raise ValueError(f"variants[{n}].{err['field']}: {err['message']}") from None
        return variants

    @property
    def baseline_name(self) -> str:
        """The variant the others are compared with."""
        return self.baseline or self.variants[0].name

    def load_tasks(self, stored: list[Task] | None = None) -> list[Task]:
        """The tasks, whichever way they were given (`stored`: the named set's tasks, read from the run log;
        without them, a bundled set is read from its file); TaskError naming the culprit."""
        if self.task_set is not None:
            return pick(stored if stored is not None else load_bundled(self.task_set), self.task_glob,
                        of=self.task_set)
        tasks = (parse_jsonl(self.tasks_jsonl, field="tasks_jsonl") if self.tasks_jsonl is not None
                 else parse_tasks(self.tasks))
        return pick(tasks, self.task_glob, of="the tasks given")


def parse_spec(data: Any) -> ExperimentSpec:
    """The spec's shape checked (its tasks not read yet); TaskError naming the field and the fix."""
    if not isinstance(data, dict):
        raise TaskError("body", 'must be a JSON object such as {"task_set": "demo-shop", "variants": [{"name": "A"}]}')
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        err = validation_errors(exc)[0]
        field_name = err["field"] if err["field"] != "request" else "body"
        message = err["message"]
        named = message.split(": ", 1)
        if field_name == "body" and len(named) == 2 and named[0] in ExperimentSpec.model_fields:
            field_name, message = named  # a check across fields that names the one to fix
        if message.startswith("unknown field"):
            message = f"unknown field; an experiment has: {', '.join(ExperimentSpec.model_fields)}"
        raise TaskError(field_name, message) from None


def check_spec(spec: ExperimentSpec, tasks: list[Task]) -> None:
    """TaskError when the spec and its tasks could only mislead: too many cells, a provider without a key, a
    budget that a model without a price could never count."""
    cells = len(tasks) * len(spec.variants) * spec.repeats
    if cells > MAX_CELLS:
        raise TaskError("repeats", f"{len(tasks)} tasks × {len(spec.variants)} variants × {spec.repeats} repeats = "
                                   f"{cells} runs; the limit is {MAX_CELLS}: use fewer tasks, variants or repeats")
    check_keys(spec, tasks)
    if spec.max_cost_usd is not None:
        check_prices(spec, tasks)


def validate_spec(data: Any, *, stored: list[Task] | None = None) -> tuple[ExperimentSpec, list[Task]]:
    """The spec and its tasks (`stored`: the named set's, read from the run log); TaskError (field + fix) for
    anything wrong, cells over the limit included."""
    spec = parse_spec(data)
    tasks = spec.load_tasks(stored)
    check_spec(spec, tasks)
    return spec, tasks


def check_keys(spec: ExperimentSpec, tasks: list[Task]) -> None:
    """TaskError naming the variant (or the judge) whose provider has no key: its runs could only be lost."""
    from agent.engine.llm import key_status  # the environment only; litellm is not imported

    for n, variant in enumerate(spec.variants):
        provider = variant.request().provider
        ready, advice = key_status(provider)
        if not ready:
            raise TaskError(f"variants[{n}].provider", f"variant {variant.name!r}: {advice}")
    for n, task in enumerate(tasks):
        if task.check is not None and task.check.kind == "judge":
            ready, advice = key_status(task.check.judge_model[0])
            if not ready:
                raise TaskError(f"tasks[{n}].check.provider", f"the judge of task {task.id!r}: {advice}")


def check_prices(spec: ExperimentSpec, tasks: list[Task]) -> None:
    """TaskError naming the variant (or judge) whose model has no price: a budget could not count its runs."""
    from agent.engine.llm import model_price  # reads litellm's price map (imports litellm the first time)

    for n, variant in enumerate(spec.variants):
        request = variant.request()
        if request.price_per_mtok is None and model_price(request.provider, request.model) is None:
            raise TaskError(f"variants[{n}].model",
                            f"variant {variant.name!r}: litellm has no price for the model {request.model!r} "
                            f"({request.provider}), so max_cost_usd could never count its runs; give the variant "
                            'price_per_mtok {"input": ..., "output": ...} (USD per million tokens) or drop '
                            "max_cost_usd")
    for n, task in enumerate(tasks):
        if task.check is not None and task.check.kind == "judge":
            provider, model = task.check.judge_model
            if model_price(provider, model) is None:
                raise TaskError(f"tasks[{n}].check.model",
                                f"the judge of task {task.id!r}: litellm has no price for {model!r} ({provider}), "
                                "so max_cost_usd could never count its calls; pick a judge model litellm can price "
                                "or drop max_cost_usd")


@dataclass(frozen=True)
class Cell:
    """One task × variant × repeat."""

    task: Task
    variant: Variant
    repeat: int

    @property
    def key(self) -> tuple[str, str, int]:
        """(task id, variant name, repeat): how the log names the cell."""
        return self.task.id, self.variant.name, self.repeat
