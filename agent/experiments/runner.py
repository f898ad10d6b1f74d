"""The experiment runner: every cell (task × variant × repeat) an ordinary run through the run service.

`ExperimentRunner(service, base_url=...)` validates an `ExperimentSpec`, records it with all its
cells (pending), and plays the cells at most `concurrency` at a time as batch runs (the service
keeps a slot for interactive runs). Each run is graded as it ends (`agent.experiments.checks`; a
judge check asks a model, whose call is logged with the run); cancel stops every running cell and
keeps the finished ones; at start, an experiment a dead process left running resumes: a cell whose
run was interrupted is retried once, then marked interrupted. Nothing here touches the store but
through the service.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.experiments import checks
from agent.experiments.tasks import Check, Task, TaskError, load_bundled, parse_jsonl, parse_tasks, pick
from agent.models import (
    NO_FAIR_CHANCE,
    TASK_FIELDS,
    LLMTrace,
    PageChecked,
    RunFinished,
    RunRequest,
    RunResponse,
    validation_errors,
)

if TYPE_CHECKING:
    from agent.service.runs import RunService

log = logging.getLogger(__name__)

MAX_CELLS = 2000
MAX_VARIANTS = 20
MAX_REPEATS = 20
MAX_CONCURRENCY = 32
RETRIES = 1  # an interrupted run is played once more (AgentLab's n_relaunch)
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


class ExperimentSpec(BaseModel):
    """What `POST /api/experiments` takes: tasks (inline, JSONL text or a bundled set) × variants × repeats."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="experiment", min_length=1, max_length=200)
    tasks: list[dict[str, Any]] | None = None
    tasks_jsonl: str | None = Field(default=None, max_length=2_000_000)
    task_set: str | None = Field(default=None, max_length=100)
    task_glob: str | None = Field(default=None, max_length=100, description="only the tasks whose id matches")
    variants: list[Variant] = Field(min_length=1, max_length=MAX_VARIANTS)
    repeats: int = Field(default=1, ge=1, le=MAX_REPEATS)
    concurrency: int = Field(default=2, ge=1, le=MAX_CONCURRENCY)
    backend: Literal["local", "ray"] = "local"

    @model_validator(mode="after")
    def _one_source(self) -> ExperimentSpec:
        given = [n for n in ("tasks", "tasks_jsonl", "task_set") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of tasks, tasks_jsonl or task_set (got {', '.join(given) or 'none'})")
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant names must be unique; {', '.join(dupes)} appears more than once")
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
                RunRequest.model_validate({"prompt": "check a variant", **variant.overrides})
            except ValidationError as exc:
                err = validation_errors(exc)[0]
                raise ValueError(f"variants[{n}].{err['field']}: {err['message']}") from None
        return variants

    def load_tasks(self) -> list[Task]:
        """The tasks, whichever way they were given; TaskError naming the culprit."""
        if self.task_set is not None:
            return load_bundled(self.task_set, glob=self.task_glob)
        tasks = (parse_jsonl(self.tasks_jsonl, field="tasks_jsonl") if self.tasks_jsonl is not None
                 else parse_tasks(self.tasks))
        return pick(tasks, self.task_glob, of="the tasks given")


def validate_spec(data: Any) -> tuple[ExperimentSpec, list[Task]]:
    """The spec and its tasks; TaskError (field + fix) for anything wrong, cells over the limit included."""
    if not isinstance(data, dict):
        raise TaskError("body", 'must be a JSON object such as {"task_set": "demo-shop", "variants": [{"name": "A"}]}')
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        err = validation_errors(exc)[0]
        field_name = err["field"] if err["field"] != "request" else "body"
        if err["message"].startswith("unknown field"):
            err["message"] = f"unknown field; an experiment has: {', '.join(ExperimentSpec.model_fields)}"
        raise TaskError(field_name, err["message"]) from None
    tasks = spec.load_tasks()
    cells = len(tasks) * len(spec.variants) * spec.repeats
    if cells > MAX_CELLS:
        raise TaskError("repeats", f"{len(tasks)} tasks × {len(spec.variants)} variants × {spec.repeats} repeats = "
                                   f"{cells} runs; the limit is {MAX_CELLS}: use fewer tasks, variants or repeats")
    return spec, tasks


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


@dataclass
class _Active:
    """An experiment this process is playing."""

    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    runs: set[int] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class ExperimentRunner:
    """Plays experiments through the run service (`local` backend: in this process)."""

    def __init__(self, service: RunService, *, base_url: str) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._active: dict[int, _Active] = {}

    # ------------------------------------------------------------ starting, cancelling, resuming
    async def start(self, data: Any) -> int:
        """Validate (off the event loop), record and start an experiment; its id. TaskError when invalid."""
        spec, tasks = await asyncio.to_thread(validate_spec, data)
        if spec.backend == "ray":
            from agent.service.ray_executor import RayUnavailable

            try:
                await self.service.ray().ensure_started()
            except (RayUnavailable, TimeoutError) as exc:
                raise TaskError("backend", str(exc).removeprefix("backend: ")) from None
        exp_id = await self.service.create_experiment(
            name=spec.name, task_set=spec.task_set, repeats=spec.repeats, concurrency=spec.concurrency,
            backend=spec.backend, spec=spec.model_dump(mode="json", exclude={"tasks_jsonl"}),
            tasks=[{"id": t.id, "title": t.title, "prompt": t.prompt,
                    "check": {"kind": t.check.kind} if t.check else None,
                    "task": t.model_dump(mode="json", by_alias=True)} for t in tasks],
            variants=[{"name": v.name, "overrides": v.overrides} for v in spec.variants])
        self._play(exp_id)
        return exp_id

    def _play(self, exp_id: int) -> None:
        active = self._active.setdefault(exp_id, _Active())
        active.task = asyncio.create_task(self._drive(exp_id, active), name=f"experiment-{exp_id}")

    async def cancel(self, exp_id: int) -> bool:
        """Stop an experiment: running cells are cancelled, pending ones dropped, finished ones kept."""
        active = self._active.get(exp_id)
        if active is None:
            await self.service.get_experiment(exp_id)  # NotFound for an unknown id
            return False
        active.cancel.set()
        for run_id in list(active.runs):
            await self.service.cancel(run_id)
        if active.task is not None:
            await asyncio.wait({active.task}, timeout=60)
        return True

    async def resume(self) -> list[int]:
        """Go on with the experiments a previous process left running (called at start)."""
        resumed = await self.service.unfinished_experiments()
        for exp_id in resumed:
            self._play(exp_id)
        return resumed

    async def close(self) -> None:
        """Stop playing (the app is going down): cells not finished stay for the next start."""
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    def is_running(self, exp_id: int) -> bool:
        """True while this process plays the experiment."""
        return exp_id in self._active

    # ------------------------------------------------------------ playing
    async def _drive(self, exp_id: int, active: _Active) -> None:
        try:
            experiment = await self.service.get_experiment(exp_id)
            backend = str(experiment["backend"])
            cells = await self._pending(exp_id, experiment)
            slots = asyncio.Semaphore(int(experiment["concurrency"]))
            playing: set[asyncio.Task[None]] = set()
            for cell in cells:
                await slots.acquire()
                if active.cancel.is_set():
                    slots.release()
                    break
                job = asyncio.create_task(self._play_cell(exp_id, cell, active, backend))
                playing.add(job)
                job.add_done_callback(playing.discard)
                job.add_done_callback(lambda _job: slots.release())
            if playing:
                await asyncio.wait(set(playing))
            if active.cancel.is_set():
                await self.service.cancel_pending_cells(exp_id)
                await self.service.set_experiment_status(exp_id, "cancelled")
            else:
                await self.service.set_experiment_status(exp_id, "done")
        except asyncio.CancelledError:  # the app is going down: resume() picks it up at the next start
            raise
        except Exception as exc:  # our own bug: the experiment ends with the reason, never stuck running
            log.exception("experiment %d failed", exp_id)
            await self.service.set_experiment_status(exp_id, "failed", f"internal error: {exc}")
        finally:
            self._active.pop(exp_id, None)

    async def _pending(self, exp_id: int, experiment: dict[str, Any]) -> list[Cell]:
        """The cells still to play, in an order that fills every variant and task evenly."""
        tasks = {t["task_key"]: Task.model_validate(t["task"]) for t in experiment["tasks"]}
        variants = {v["name"]: Variant.model_validate({"name": v["name"], **v["overrides"]})
                    for v in experiment["variant_specs"]}
        todo: list[Cell] = []
        for row in experiment["cells"]:
            cell = Cell(tasks[row["task_key"]], variants[row["variant"]], int(row["repeat"]))
            if row["status"] == "running":  # a previous process died while it ran
                if row["attempts"] <= RETRIES:
                    await self.service.requeue_cell(exp_id, *cell.key)
                    todo.append(cell)
                else:
                    await self.service.finish_cell(exp_id, *cell.key, status="interrupted", passed=None, score=None,
                                                   detail="interrupted twice; not retried again", graded_by=None)
            elif row["status"] == "pending":
                todo.append(cell)
        order = {name: n for n, name in enumerate(variants)}
        task_order = {key: n for n, key in enumerate(tasks)}
        return sorted(todo, key=lambda c: (c.repeat, task_order[c.task.id], order[c.variant.name]))

    def request_for(self, cell: Cell) -> tuple[RunRequest, dict[str, Any]]:
        """The run request (task fields, then the variant's overrides) and the per-run engine options."""
        request = RunRequest.model_validate({**cell.task.request(self.base_url), **cell.variant.overrides})
        engine: dict[str, Any] = {}
        check = cell.task.check
        if check is not None and check.kind == "page":
            engine["check_page"] = check.page
        if cell.task.setup:
            engine["setup_script"] = cell.task.setup.replace("{repeat}", str(cell.repeat))
        return request, engine

    async def _play_cell(self, exp_id: int, cell: Cell, active: _Active, backend: str) -> None:
        request, engine = self.request_for(cell)
        if request.session_id is None:  # the experiment's runs are one session in tracing tools
            request = request.model_copy(update={"session_id": f"experiment-{exp_id}"})
        for attempt in range(1 + RETRIES):  # a run whose worker died is played once more
            _task_id, run_id = await self.service.submit(request, engine=engine, batch=True, executor=backend)
            active.runs.add(run_id)
            try:
                await self.service.start_cell(exp_id, *cell.key, run_id)
                final, page = await self._watch(run_id)
            finally:
                active.runs.discard(run_id)
            lost = final.stop_reason == "interrupted" and not active.cancel.is_set()
            if not lost or attempt == RETRIES:
                break
            await self.service.requeue_cell(exp_id, *cell.key)
        status = "cancelled" if active.cancel.is_set() and final.status == "failure" else (
            "interrupted" if lost else "done")
        grade = await self._grade(cell, run_id, final, page)
        await self.service.finish_cell(exp_id, *cell.key, status=status, passed=grade.passed, score=grade.score,
                                       detail=grade.detail, graded_by=self._graded_by(cell, grade),
                                       page_value=page.value if page else None)

    async def _watch(self, run_id: int) -> tuple[RunResponse, PageChecked | None]:
        """The run's end and, for a page check, what it read off the final page."""
        page: PageChecked | None = None
        async for event in self.service.subscribe(run_id):
            if isinstance(event, PageChecked):
                page = event
            elif isinstance(event, RunFinished):
                return event.response, page
        return await self.service.wait(run_id), page

    async def _grade(self, cell: Cell, run_id: int, final: RunResponse, page: PageChecked | None) -> checks.Grade:
        if final.stop_reason in NO_FAIR_CHANCE:  # as the run log's outcome counts them
            return checks.Grade(None, None, f"not graded: the run ended with {final.stop_reason} ({final.error}); "
                                            "the agent had no fair chance")
        check = cell.task.check
        grade = checks.grade(check, final.result, page_value=page.value if page else None,
                             page_error=page.error if page else None, run_succeeded=final.status == "success")
        if check is not None and check.kind == "judge":
            grade = await self._judge(run_id, check, cell.task.prompt, final.result)
        return grade

    async def _judge(self, run_id: int, check: Check, prompt: str, result: Any) -> checks.Grade:
        """Ask the check's model to grade the result; the call is logged with the run (purpose "judge")."""
        from agent.engine.llm import LLM, LLMError  # litellm loads on first use, not at import
        from agent.engine.trace import make_trace

        provider, model = check.judge_model
        messages = checks.judge_messages(check, prompt, result)
        try:
            reply = await LLM(provider, model).complete(messages, None, purpose="judge")
        except LLMError as exc:
            if exc.call is not None:
                await self.service.record_llm_call(run_id, exc.call, self._judge_trace(make_trace(
                    exc.call, messages, None, None)))
            return checks.Grade(None, None, f"not graded: the judge ({provider}/{model}) failed: {exc}")
        # What the judge was asked and answered is kept with the run, like the agent's own calls.
        await self.service.record_llm_call(run_id, reply.call, self._judge_trace(make_trace(
            reply.call, messages, None, reply.raw_message)))
        return checks.read_judgement(reply.text)

    def _judge_trace(self, trace: LLMTrace) -> LLMTrace:
        """The judge's trace as the run log keeps traces (without content when LOG_PROMPTS=0)."""
        return trace if self.service.log_prompts else trace.without_content()

    @staticmethod
    def _graded_by(cell: Cell, grade: checks.Grade) -> str | None:
        if grade.passed is None or cell.task.check is None:
            return None
        return "judge" if cell.task.check.kind == "judge" else "check"
