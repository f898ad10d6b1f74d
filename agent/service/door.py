"""The run service's reading side and workflow keeping: the one door to the run log for the UI and routes.

`RunService` inherits these; nothing outside the service holds the store. Every method reads or
writes in a worker thread, so the event loop never waits on DuckDB.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.filters import RunFilter
from agent.models import LLMCall, LLMTrace, ReviewIn, RunRequest, RunResponse
from agent.workflows.document import WorkflowError

if TYPE_CHECKING:
    from agent.log.protocol import RunLog, StoredTask


EXPORT_FORMAT = "workbench-run/1"  # the export's own version, for readers of saved files


class NotFound(LookupError):
    """No run, task or workflow with that id."""

    def __init__(self, kind: str, ident: int, *, detail: str | None = None) -> None:
        super().__init__(detail or f"{kind} {ident} not found")
        self.kind, self.ident = kind, ident

    def __str__(self) -> str:
        return str(self.args[0])


class Conflict(RuntimeError):
    """The thing asked for cannot be done in the state it is in (e.g. reviewing a run still running): a 409."""


class LogDoor:
    """Reads of the run log and the keeping of workflows, for the routes and the UI."""

    _log: RunLog

    async def aget(self, run_id: int) -> RunResponse | None:
        """The run from the log; RunService answers live runs itself first."""
        return await asyncio.to_thread(self._log.get_run, run_id)

    async def run_request(self, run_id: int) -> RunRequest | None:
        """The request a run was started with (secret-looking fields stripped); None if unknown."""
        return await asyncio.to_thread(self._log.get_run_request, run_id)

    async def list_runs(self, filters: RunFilter | None = None, *, limit: int = 50,
                        offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of runs, newest first, and the total matching `filters`."""
        return await asyncio.to_thread(self._log.list_runs, filters, limit=limit, offset=offset)

    async def runs_summary(self, filters: RunFilter | None = None) -> dict[str, Any]:
        """Totals of the runs matching `filters` (and the stop reasons present in the log)."""
        return await asyncio.to_thread(self._log.runs_summary, filters)

    async def traces(self, run_id: int, *, step: int | None = None) -> list[dict[str, Any]]:
        """What the model saw and said in a run's calls (of one step by its number); NotFound naming what is missing."""
        response = await self.aget(run_id)
        if response is None:
            raise NotFound("run", run_id)
        if step is not None and all(item.step != step for item in response.history):
            raise NotFound("run", run_id, detail=f"run {run_id} has no step {step} "
                                                 f"(it has {len(response.history)} so far)")
        return await asyncio.to_thread(lambda: self._log.get_traces(run_id, step=step))

    async def export(self, run_id: int) -> dict[str, Any]:
        """Everything kept about a run: its response, request, call traces and webhook attempts."""
        response = await self.aget(run_id)
        if response is None:
            raise NotFound("run", run_id)
        request = await self.run_request(run_id)
        traces = await asyncio.to_thread(self._log.get_traces, run_id)
        attempts = await asyncio.to_thread(self._log.webhook_attempts, run_id)
        return {"format": EXPORT_FORMAT, "response": response.to_json(),
                "request": request.model_dump(mode="json", exclude_none=True) if request else None,
                "traces": traces, "webhook_attempts": attempts}

    async def get_task(self, task_id: int) -> dict[str, Any]:
        """A task with its request, run count and last status; NotFound if unknown."""
        task = await asyncio.to_thread(self._log.get_task, task_id)
        if task is None:
            raise NotFound("task", task_id)
        return task

    async def list_tasks(self, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of tasks, newest first, and the total."""
        return await asyncio.to_thread(lambda: self._log.list_tasks(limit=limit, offset=offset))

    async def webhook_attempts(self, run_id: int) -> list[dict[str, Any]]:
        """Every webhook delivery attempt of a run, oldest first; NotFound for an unknown run."""
        if await self.aget(run_id) is None:
            raise NotFound("run", run_id)
        return await asyncio.to_thread(self._log.webhook_attempts, run_id)

    async def screenshot(self, run_id: int, step: int) -> Path | None:
        """The JPEG taken at the start of a step, if any; only files under the screenshots folder."""
        response = await self.aget(run_id)
        if response is None:
            raise NotFound("run", run_id)
        return self._screenshot_file(run_id, response, step)

    async def screenshot_files(self, run_id: int) -> dict[int, Path]:
        """Every step's screenshot file that exists, by step number (for the HTML export)."""
        response = await self.aget(run_id)
        if response is None:
            raise NotFound("run", run_id)
        found = {item.step: self._screenshot_file(run_id, response, item.step) for item in response.history}
        return {step: path for step, path in found.items() if path is not None}

    def _screenshot_file(self, run_id: int, response: RunResponse, step: int) -> Path | None:
        root = Path(self._log.screenshots_dir).resolve()
        candidates = [root / str(run_id) / f"step-{step:03d}.jpg"]
        candidates += [Path(item.screenshot) for item in response.history if item.step == step and item.screenshot]
        for path in candidates:
            resolved = path.resolve()
            if resolved.is_relative_to(root) and resolved.is_file():
                return resolved
        return None

    # ------------------------------------------------------------ workflows
    async def list_workflows(self) -> list[dict[str, Any]]:
        """The latest version of each workflow, newest first."""
        return await asyncio.to_thread(self._log.list_workflows)

    async def get_workflow(self, workflow_id: int, version: int | None = None) -> dict[str, Any]:
        """One version of a workflow (the latest by default); NotFound naming what is missing."""
        row = await asyncio.to_thread(self._log.get_workflow, workflow_id, version)
        if row is not None:
            return row
        if version is not None and await asyncio.to_thread(self._log.get_workflow, workflow_id) is not None:
            raise NotFound("workflow", workflow_id, detail=f"workflow {workflow_id} has no version {version}")
        raise NotFound("workflow", workflow_id)

    async def workflow_versions(self, workflow_id: int) -> list[dict[str, Any]]:
        """Every version of a workflow, oldest first; NotFound if unknown."""
        versions = await asyncio.to_thread(self._log.workflow_versions, workflow_id)
        if not versions:
            raise NotFound("workflow", workflow_id)
        return versions

    async def save_workflow(self, document: dict[str, Any], *, workflow_id: int | None = None,
                            source_run_id: int | None = None) -> tuple[int, int]:
        """Store a workflow document: a new workflow, or the next version of `workflow_id`; (id, version)."""
        return await asyncio.to_thread(
            lambda: self._log.save_workflow(document, workflow_id=workflow_id, source_run_id=source_run_id))

    async def save_run_as_workflow(self, run_id: int, *, name: str | None = None
                                   ) -> tuple[int, int, dict[str, Any], bool]:
        """Record a successful run as a workflow linked to its task: (id, version, document, created).

        Saving the same run again gives the workflow saved the first time (created False), never a
        second one. NotFound for an unknown run; `agent.workflows.document.WorkflowError` when it
        cannot be recorded.
        """
        # Recording imports playwright (through agent.engine.provenance): loaded at the first save, not at start.
        from agent.workflows.record import record_workflow

        response = await self.aget(run_id)
        request = await self.run_request(run_id) if response is not None else None
        if response is None or request is None:
            raise NotFound("run", run_id)
        if response.status == "in_progress":
            raise WorkflowError("task_run_id", f"run {run_id} is still running; save it once it has succeeded")
        document = record_workflow(request, response.model_copy(update={"task_run_id": run_id}), name=name)

        def save() -> tuple[int, int, dict[str, Any], bool]:
            workflow_id, version, created = self._log.save_run_workflow(document, run_id)
            if response.task_id is not None:
                self._log.set_task_workflow(response.task_id, workflow_id)
            if created:
                return workflow_id, version, document, True
            saved = self._log.get_workflow(workflow_id)
            return workflow_id, version, (saved or {}).get("document") or document, False

        return await asyncio.to_thread(save)

    async def delete_workflow(self, workflow_id: int) -> None:
        """Delete every version of a workflow; NotFound if unknown."""
        if not await asyncio.to_thread(self._log.delete_workflow, workflow_id):
            raise NotFound("workflow", workflow_id)

    # ------------------------------------------------------------ experiments (agent.experiments uses these)
    async def create_experiment(self, **fields: Any) -> int:
        """Record an experiment with its tasks, variants and pending cells; its id."""
        return await asyncio.to_thread(lambda: self._log.create_experiment(**fields))

    async def start_cell(self, exp_id: int, task_key: str, variant: str, repeat: int, run_id: int) -> None:
        """Note the run a cell started."""
        await asyncio.to_thread(self._log.start_cell, exp_id, task_key, variant, repeat, run_id)

    async def finish_cell(self, exp_id: int, task_key: str, variant: str, repeat: int, **grade: Any) -> None:
        """Note a cell's end and grade."""
        await asyncio.to_thread(lambda: self._log.finish_cell(exp_id, task_key, variant, repeat, **grade))

    async def requeue_cell(self, exp_id: int, task_key: str, variant: str, repeat: int) -> None:
        """Put an interrupted cell back in the queue."""
        await asyncio.to_thread(self._log.requeue_cell, exp_id, task_key, variant, repeat)

    async def cancel_pending_cells(self, exp_id: int, detail: str = "not played: the experiment was cancelled") -> None:
        """Mark the cells never started of an experiment that stopped (cancelled, or its budget spent)."""
        await asyncio.to_thread(self._log.cancel_pending_cells, exp_id, detail)

    async def record_llm_call(self, run_id: int, call: LLMCall, trace: LLMTrace | None = None) -> None:
        """Log a model call made for a run outside its steps (an experiment's judge)."""
        await asyncio.to_thread(self._log.record_llm_call, run_id, call, trace)

    async def set_experiment_status(self, exp_id: int, status: str, error: str | None = None,
                                    stop_reason: str | None = None) -> None:
        """Set an experiment's status (and, when it ends, why)."""
        await asyncio.to_thread(self._log.set_experiment_status, exp_id, status, error, stop_reason)

    async def get_experiment(self, exp_id: int, *, cells_offset: int = 0,
                             cells_limit: int | None = None) -> dict[str, Any]:
        """An experiment with progress, tasks, variants, a page of its cells (all by default), per-variant
        numbers and the matrix; NotFound."""

        def read() -> dict[str, Any] | None:
            found = self._log.get_experiment(exp_id)
            if found is not None:
                found["cells"] = self._log.experiment_cells(exp_id, offset=cells_offset, limit=cells_limit)
                found["variants"] = self._log.experiment_variants(exp_id)
                found["matrix"] = self._log.experiment_matrix(exp_id)
            return found

        found = await asyncio.to_thread(read)
        if found is None:
            raise NotFound("experiment", exp_id)
        return found

    async def experiment_progress(self, exp_id: int) -> dict[str, Any]:
        """An experiment's status, progress and per-variant passes only (cheap); NotFound."""
        found = await asyncio.to_thread(self._log.experiment_progress, exp_id)
        if found is None:
            raise NotFound("experiment", exp_id)
        return found

    async def cell_of_run(self, run_id: int) -> dict[str, Any] | None:
        """The experiment cell a run played (its grade and why), or None for a run of no experiment."""
        return await asyncio.to_thread(self._log.cell_of_run, run_id)

    async def experiment_spent(self, exp_id: int) -> tuple[float, int]:
        """USD spent by an experiment's runs so far, and how many calls had no price."""
        return await asyncio.to_thread(self._log.experiment_spent, exp_id)

    async def tokens_per_step(self, prompts: list[str]) -> dict[str, dict[str, float]]:
        """Past runs of these prompts: mean steps, input and output tokens per step."""
        return await asyncio.to_thread(self._log.tokens_per_step, prompts)

    async def list_experiments(self, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of experiments, newest first, and the total."""
        return await asyncio.to_thread(lambda: self._log.list_experiments(limit=limit, offset=offset))

    async def unfinished_experiments(self) -> list[int]:
        """Experiments a previous process left running."""
        return await asyncio.to_thread(self._log.unfinished_experiments)

    # ------------------------------------------------------------ task sets (agent.experiments.tasksets uses these)
    async def list_task_sets(self) -> list[dict[str, Any]]:
        """Every stored task set with its latest version's summary, by name."""
        return await asyncio.to_thread(self._log.list_task_sets)

    async def get_task_set(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        """One version of a task set (the latest by default) with its tasks; None if unknown."""
        return await asyncio.to_thread(self._log.get_task_set, name, version)

    async def create_task_set(self, name: str, tasks: list[StoredTask], *, source: str = "stored",
                              origin: str = "created", note: str | None = None) -> int | None:
        """A new task set (version 1); None when the name is taken."""
        return await asyncio.to_thread(
            lambda: self._log.create_task_set(name, tasks, source=source, origin=origin, note=note))

    async def add_task_set_version(self, name: str, tasks: list[StoredTask], *, origin: str,
                                   note: str | None = None, base_version: int | None = None) -> int | None:
        """The task set's next version; None for an unknown set; VersionConflict when `base_version` is stale."""
        return await asyncio.to_thread(lambda: self._log.add_task_set_version(
            name, tasks, origin=origin, note=note, base_version=base_version))

    async def sync_bundled_task_set(self, name: str, tasks: list[StoredTask]) -> int:
        """A bundled task set as its file has it (copied in, or followed while unedited); its latest version."""
        return await asyncio.to_thread(self._log.sync_bundled_task_set, name, tasks)

    # ------------------------------------------------------------ gradings and reviews (agent.log.grades)
    async def review(self, run_id: int, review: ReviewIn, *, reviewer: str, source: str) -> dict[str, Any]:
        """Keep a person's review of a finished run (it grades the run's experiment cell, if any); the review kept.
        NotFound for an unknown run, Conflict for one still running."""
        response = await self.aget(run_id)
        if response is None:
            raise NotFound("run", run_id)
        if response.status == "in_progress":
            raise Conflict(f"run {run_id} is still running; review it once it has ended")
        return await asyncio.to_thread(lambda: self._log.review_run(
            run_id, reviewer=reviewer, passed=review.passed, score=review.score, comment=review.comment,
            source=source))

    async def add_grading(self, run_id: int, **grading: Any) -> int:
        """Keep one grading of a run (a judge asked again); its id."""
        return await asyncio.to_thread(lambda: self._log.add_grading(run_id, **grading))

    async def gradings(self, run_id: int, *, kind: str | None = None) -> list[dict[str, Any]]:
        """Every grading of a run (of one kind: "person" for its reviews), oldest first; NotFound if unknown."""
        if await self.aget(run_id) is None:
            raise NotFound("run", run_id)
        return await asyncio.to_thread(lambda: self._log.run_gradings(run_id, kind=kind))

    async def run_grade(self, run_id: int) -> dict[str, Any]:
        """The grade a run counts by (a person's, its check's or judge's, or its agent's claim); NotFound."""
        found = await asyncio.to_thread(self._log.run_grade, run_id)
        if found is None:
            raise NotFound("run", run_id)
        return found

    async def review_queue(self, *, limit: int = 50, offset: int = 0,
                           reason: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of the runs to review next (most useful first), and how many there are."""
        return await asyncio.to_thread(lambda: self._log.review_queue(limit=limit, offset=offset, reason=reason))

    async def judges(self, experiment_id: int | None = None) -> list[dict[str, Any]]:
        """Every judge (model and rubric) measured against people: agreement, kappa, the confusion matrix."""
        return await asyncio.to_thread(self._log.judges, experiment_id)

    async def diff_cells(self, exp_id: int) -> list[dict[str, Any]]:
        """An experiment's cells with their prompts and results; NotFound for an unknown experiment."""
        await self.experiment_progress(exp_id)
        return await asyncio.to_thread(self._log.diff_cells, exp_id)
