"""The experiment runner: every cell (task × variant × repeat) an ordinary run through the run service.

`ExperimentRunner(service, base_url=...)` validates an `ExperimentSpec` (a variant whose provider has no
key, or a budget on a model without a price, is refused naming the variant), records it with all its
cells (pending), and plays the cells at most `concurrency` at a time as batch runs (the service keeps a
slot for interactive runs; a cell waits while the run queue is full). Each cell ends with an outcome:

- its run is graded as it ends (`agent.experiments.checks`; a judge that fails is asked once more, then
  the cell is `ungraded` with `judge_error`);
- a run stopped from outside, interrupted, or lost to the infrastructure (a rate limit, a provider's
  server error, the browser) is played again, up to `max_replays` times (AgentLab's relaunch); what is
  still lost after that is `lost` (a failure of its variant, shown apart, with the reason);
- a failure the variant itself causes (a context window, a bad request, images refused) is a failure.

Cancel stops every running cell and keeps the finished ones; `max_cost_usd` starts no new cell once the
experiment's runs have cost that much (it ends with stop_reason "budget"). An experiment is `done` only
when every cell has an outcome; one a dead process left running resumes at the next start. Nothing here
touches the store but through the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.experiments import checks
from agent.experiments.estimate import estimate
from agent.experiments.judging import Rejudges, ask_judge, rubric_hash
from agent.experiments.spec import (
    DEFAULT_MAX_REPLAYS,
    MAX_CELLS,
    Cell,
    ExperimentSpec,
    Variant,
    check_spec,
    parse_spec,
    validate_spec,
)
from agent.experiments.tasks import Task, TaskError
from agent.experiments.tasksets import TaskSets
from agent.models import NO_FAIR_CHANCE, PageChecked, RunFinished, RunRequest, RunResponse
from agent.service.runs import ServiceBusy

if TYPE_CHECKING:
    from agent.service.runs import RunService

__all__ = ["MAX_CELLS", "Cell", "ExperimentRunner", "ExperimentSpec", "Variant", "lost_reason", "validate_spec"]

log = logging.getLogger(__name__)

BUSY_BACKOFF_S = (0.05, 2.0)  # a cell waiting for room in the run queue looks again after this (doubling)
# Why a cell's run is lost to the experiment: its stop reason, or for a provider failure, the kind of the last
# failed call (agent.engine.llm.ErrorKind). Variant-caused provider failures (context_window, bad_request,
# not_found, vision refused, the model's own output) are none of these: they are the variant's failures.
LOST_STOP_REASONS = frozenset(NO_FAIR_CHANCE) - {"model_error"}  # a model error: by the kind of its last call
LOST_CALL_KINDS = {"rate_limit": "rate_limit", "server": "server_error", "auth": "auth"}
# Lost runs worth playing again: what may pass (a key that is missing or refused will not).
REPLAYED = frozenset({"cancelled", "interrupted", "shutdown", "browser_error", "internal_error", "rate_limit",
                      "server_error"})


def lost_reason(final: RunResponse) -> str | None:
    """Why a finished run says nothing about its variant (see LOST_STOP_REASONS), or None: it counts."""
    if final.stop_reason in LOST_STOP_REASONS:
        return str(final.stop_reason)
    if final.stop_reason == "model_error":
        for item in reversed(final.history):
            for call in reversed(item.llm_calls):
                if call.error:
                    return LOST_CALL_KINDS.get(call.error.split(":", 1)[0])
    return None


@dataclass(frozen=True)
class Play:
    """How a recorded experiment is played (from its row and the spec it was started with; older ones lack some)."""

    concurrency: int
    backend: str
    max_replays: int
    max_cost_usd: float | None

    @classmethod
    def of(cls, experiment: dict[str, Any]) -> Play:
        """The settings of a recorded experiment."""
        spec = experiment.get("spec") or {}
        budget = spec.get("max_cost_usd")
        return cls(int(experiment["concurrency"]), str(experiment["backend"]),
                   int(spec.get("max_replays", DEFAULT_MAX_REPLAYS)), None if budget is None else float(budget))


@dataclass
class _Active:
    """An experiment this process is playing."""

    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    runs: set[int] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    spent: float | None = None  # set once max_cost_usd is reached: what had been spent


class ExperimentRunner:
    """Plays experiments through the run service (`local` backend: in this process; `ray`: on Ray workers)."""

    def __init__(self, service: RunService, *, base_url: str) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.tasksets = TaskSets(service, base_url=self.base_url)  # the task sets kept in the run log
        self._active: dict[int, _Active] = {}
        self.judges = Rejudges(service)  # judging an experiment's results again (POST .../judge)

    # ------------------------------------------------------------ starting, cancelling, resuming
    async def validate(self, data: Any) -> tuple[ExperimentSpec, list[Task], int | None]:
        """The spec, its tasks and, for a named task set, the version read (the latest unless the spec names
        one); TaskError naming the field and the fix. Checked off the event loop."""
        spec = await asyncio.to_thread(parse_spec, data)
        version, stored = (await self.tasksets.tasks(spec.task_set, spec.task_set_version)
                           if spec.task_set is not None else (None, None))
        tasks = await asyncio.to_thread(spec.load_tasks, stored)
        await asyncio.to_thread(check_spec, spec, tasks)
        return spec, tasks, version

    async def start(self, data: Any) -> int:
        """Validate (off the event loop), record and start an experiment; its id. TaskError when invalid."""
        spec, tasks, version = await self.validate(data)
        if spec.dry_run:
            raise TaskError("dry_run", "a dry run starts nothing: send it to dry_run(), or POST it to "
                                       "/api/experiments, which answers with the estimate")
        if spec.backend == "ray":
            from agent.service.ray_executor import INIT_TIMEOUT_S, RayUnavailable

            try:
                await self.service.ray().ensure_started()
            except RayUnavailable as exc:
                raise TaskError("backend", str(exc).removeprefix("backend: ")) from None
            except TimeoutError:
                raise TaskError("backend", f"Ray did not start, or join the cluster at RAY_ADDRESS, within "
                                           f"{INIT_TIMEOUT_S:g} s; check that the cluster is up, or use backend "
                                           "local") from None
        exp_id = await self.service.create_experiment(
            name=spec.name, task_set=spec.task_set, task_set_version=version, repeats=spec.repeats,
            concurrency=spec.concurrency,
            backend=spec.backend, spec=spec.model_dump(mode="json", exclude={"tasks_jsonl"}),
            tasks=[{"id": t.id, "title": t.title, "prompt": t.prompt,
                    "check": {"kind": t.check.kind} if t.check else None,
                    "task": t.model_dump(mode="json", by_alias=True)} for t in tasks],
            variants=[{"name": v.name, "overrides": v.overrides} for v in spec.variants])
        self._play(exp_id)
        return exp_id

    async def dry_run(self, data: Any) -> dict[str, Any]:
        """What an experiment would be, without starting it: cells, estimated cost, the expected mde."""
        spec, tasks, version = await self.validate(data)
        prompts = [RunRequest.model_validate(t.request(self.base_url)).prompt for t in tasks]
        past = await self.service.tokens_per_step(prompts)
        found = await asyncio.to_thread(estimate, spec, tasks, prompts, past)
        return {**found, "task_set": spec.task_set, "task_set_version": version} if spec.task_set else found

    def _play(self, exp_id: int) -> None:
        active = self._active.setdefault(exp_id, _Active())
        active.task = asyncio.create_task(self._drive(exp_id, active), name=f"experiment-{exp_id}")

    async def cancel(self, exp_id: int) -> bool:
        """Stop an experiment: running cells are cancelled, pending ones dropped, finished ones kept."""
        active = self._active.get(exp_id)
        if active is None:
            await self.service.experiment_progress(exp_id)  # NotFound for an unknown id
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
        await self.judges.close()
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
            spec = Play.of(experiment)
            for _round in range(3):  # a cell a bug left unplayed gets another pass; never "done" with one
                await self._play_all(exp_id, experiment, spec, active)
                if active.cancel.is_set() or active.spent is not None:
                    break
                experiment = await self.service.get_experiment(exp_id)
                if not any(c["status"] in ("pending", "running") for c in experiment["cells"]):
                    break
            await self._end(exp_id, active, spec)
        except asyncio.CancelledError:  # the app is going down: resume() picks it up at the next start
            raise
        except Exception as exc:  # our own bug: the experiment ends with the reason, never stuck running
            log.exception("experiment %d failed", exp_id)
            await self.service.set_experiment_status(exp_id, "failed", f"internal error: {exc}")
        finally:
            self._active.pop(exp_id, None)

    async def _play_all(self, exp_id: int, experiment: dict[str, Any], spec: Play,
                        active: _Active) -> None:
        """Play the cells still to play, at most `concurrency` at a time; stop handing out cells on cancel or
        once the budget is spent. Cancelled with the app: the cells being played are left to the next start."""
        cells = await self._pending(exp_id, experiment, spec.max_replays)
        slots = asyncio.Semaphore(spec.concurrency)
        playing: set[asyncio.Task[None]] = set()
        try:
            for cell in cells:
                await slots.acquire()
                if active.cancel.is_set() or await self._spent(exp_id, spec, active):
                    slots.release()
                    break
                job = asyncio.create_task(self._play_cell(exp_id, cell, active, spec))
                playing.add(job)
                job.add_done_callback(playing.discard)
                job.add_done_callback(lambda _job: slots.release())
            if playing:
                await asyncio.wait(set(playing))
        except asyncio.CancelledError:
            for job in playing:
                job.cancel()
            raise

    async def _spent(self, exp_id: int, spec: Play, active: _Active) -> bool:
        """True once the experiment's runs have cost its max_cost_usd (remembered in `active.spent`)."""
        if spec.max_cost_usd is None:
            return False
        if active.spent is None:
            spent, _unpriced = await self.service.experiment_spent(exp_id)
            if spent >= spec.max_cost_usd:
                active.spent = spent
        return active.spent is not None

    async def _end(self, exp_id: int, active: _Active, spec: Play) -> None:
        """The experiment's status: done only when every cell has an outcome."""
        if active.spent is not None:
            await self.service.cancel_pending_cells(
                exp_id, f"not played: the experiment's budget (max_cost_usd {spec.max_cost_usd:g}) was spent "
                        f"(${active.spent:.4f})")
            await self.service.set_experiment_status(exp_id, "cancelled", stop_reason="budget")
        elif active.cancel.is_set():
            await self.service.cancel_pending_cells(exp_id)
            await self.service.set_experiment_status(exp_id, "cancelled")
        else:
            left = (await self.service.experiment_progress(exp_id))
            unplayed = int(left["pending"]) + int(left["running"])
            if unplayed:
                await self.service.set_experiment_status(
                    exp_id, "failed", f"internal error: {unplayed} cells could not be played; restart the app to "
                                      "resume them")
            else:
                await self.service.set_experiment_status(exp_id, "done")

    async def _pending(self, exp_id: int, experiment: dict[str, Any], max_replays: int) -> list[Cell]:
        """The cells still to play, in an order that fills every variant and task evenly."""
        tasks = {t["task_key"]: Task.model_validate(t["task"]) for t in experiment["tasks"]}
        variants = {v["name"]: Variant.model_validate({"name": v["name"], **v["overrides"]})
                    for v in experiment["variant_specs"]}
        todo: list[Cell] = []
        for row in experiment["cells"]:
            cell = Cell(tasks[row["task_key"]], variants[row["variant"]], int(row["repeat"]))
            if row["status"] == "running":  # a previous process died while it ran
                if row["attempts"] <= max_replays:
                    await self.service.requeue_cell(exp_id, *cell.key)
                    todo.append(cell)
                else:
                    await self.service.finish_cell(
                        exp_id, *cell.key, status="done", passed=None, score=None, graded_by=None,
                        lost_reason="interrupted",
                        detail=f"lost: interrupted {row['attempts']} times (the app or a worker died); "
                               "counted as a failure")
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

    async def _play_cell(self, exp_id: int, cell: Cell, active: _Active, spec: Play) -> None:
        try:
            await self._play_cell_runs(exp_id, cell, active, spec)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # our own bug: the cell still ends, lost, saying why (never left running)
            log.exception("experiment %d: cell %s failed", exp_id, cell.key)
            await self.service.finish_cell(exp_id, *cell.key, status="done", passed=None, score=None,
                                           graded_by=None, lost_reason="internal_error",
                                           detail=f"lost: internal error while playing it: {exc}")

    async def _play_cell_runs(self, exp_id: int, cell: Cell, active: _Active, spec: Play) -> None:
        """Play the cell (again while its run is lost to something that may pass, up to max_replays), then
        record its outcome."""
        request, engine = self.request_for(cell)
        if request.session_id is None:  # the experiment's runs are one session in tracing tools
            request = request.model_copy(update={"session_id": f"experiment-{exp_id}"})
        attempt = 0
        while True:
            run_id = await self._submit(request, engine, spec.backend, active)
            if run_id is None:  # cancelled (or the budget spent) while waiting for room: never started
                return
            active.runs.add(run_id)
            try:
                await self.service.start_cell(exp_id, *cell.key, run_id)
                final, page = await self._watch(run_id)
            finally:
                active.runs.discard(run_id)
            if active.cancel.is_set() and final.stop_reason == "cancelled":  # stopped with the experiment
                await self.service.finish_cell(exp_id, *cell.key, status="cancelled", passed=None, score=None,
                                               graded_by=None, detail="not played: cancelled with the experiment")
                return
            lost = lost_reason(final)
            if lost is None or lost not in REPLAYED or attempt >= spec.max_replays or active.cancel.is_set():
                break
            attempt += 1
            await self.service.requeue_cell(exp_id, *cell.key)
        if lost is not None:
            plays = f"{attempt + 1} time{'s' if attempt else ''}"
            await self.service.finish_cell(
                exp_id, *cell.key, status="done", passed=None, score=None, graded_by=None, lost_reason=lost,
                detail=f"lost ({lost}, played {plays}): {final.error}; counted as a failure")
            return
        grade = await self._grade(cell, run_id, final, page)
        ungraded = None if grade.passed is not None else (
            "judge_error" if cell.task.check is not None and cell.task.check.kind == "judge" else "no_check")
        await self.service.finish_cell(exp_id, *cell.key, status="done", passed=grade.passed, score=grade.score,
                                       detail=grade.detail, graded_by=self._graded_by(cell, grade),
                                       page_value=page.value if page else None, ungraded_reason=ungraded,
                                       grading=self._grading(cell))

    async def _submit(self, request: RunRequest, engine: dict[str, Any], backend: str,
                      active: _Active) -> int | None:
        """Submit the cell's run as a batch run, waiting while the run queue is full (the form keeps its
        place: batch runs never take the last one); None if the experiment stops meanwhile."""
        delay = BUSY_BACKOFF_S[0]
        while not active.cancel.is_set() and active.spent is None:
            try:
                _task_id, run_id = await self.service.submit(request, engine=engine, batch=True, executor=backend)
                return run_id
            except ServiceBusy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(active.cancel.wait(), delay)
                delay = min(2 * delay, BUSY_BACKOFF_S[1])
        return None

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
        check = cell.task.check
        grade = checks.grade(check, final.result, page_value=page.value if page else None,
                             page_error=page.error if page else None, run_succeeded=final.status == "success")
        if check is not None and check.kind == "judge":
            if final.result is None:  # nothing to judge: no need to pay a judge to say so
                return checks.Grade(False, 0.0, "no result" + ("" if final.status == "success" else
                                                               f" (the run failed: {final.stop_reason})"))
            provider, model = check.judge_model
            grade = await ask_judge(self.service, run_id, provider=provider, model=model, rubric=check.judge or "",
                                    prompt=cell.task.prompt, result=final.result)
        return grade

    @staticmethod
    def _graded_by(cell: Cell, grade: checks.Grade) -> str | None:
        if grade.passed is None or cell.task.check is None:
            return None
        return "judge" if cell.task.check.kind == "judge" else "check"

    @staticmethod
    def _grading(cell: Cell) -> dict[str, Any] | None:
        """Who graded the cell's run, for the run's gradings (agent.log.grades): its check, or its judge (model and
        rubric); a judge that failed is kept too (no verdict), so the run shows in the review queue."""
        check = cell.task.check
        if check is None:
            return None
        if check.kind != "judge":
            return {"kind": "check", "grader": check.kind, "extra": {"source": "experiment"}}
        provider, model = check.judge_model
        rubric = check.judge or ""
        return {"kind": "judge", "grader": f"{provider}/{model}", "rubric_hash": rubric_hash(rubric),
                "extra": {"source": "experiment", "rubric": rubric[:2000]}}
