"""`RunLog`: the run log's surface as the run service sees it (no duckdb here: cheap to import).

The run service is the only holder of a `RunLog`; the UI, the routes, replay and experiments ask the
service. `agent.log.store.Store` is the implementation; a test can check any other against this
protocol with `isinstance(x, RunLog)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from agent.filters import RunFilter
from agent.models import (
    LLMCall,
    LLMTrace,
    RunFinished,
    RunRequest,
    RunResponse,
    RunStarted,
    StepFinished,
    StepStarted,
)

LogEvent = RunStarted | StepStarted | StepFinished | RunFinished


class StoredTask(NamedTuple):
    """A task of a task set as the log keeps it: its id in the set, its check's kind (None: graded by hand), and
    its JSON (agent.experiments.tasks says what a valid task is)."""

    task_key: str
    check_kind: str | None
    task: dict[str, Any]


@runtime_checkable
class RunLog(Protocol):
    """What the run service reads and writes; every method is blocking (call it off the event loop)."""

    path: Path
    screenshots_dir: Path
    interrupted_runs: list[int]

    def create_task(self, request: RunRequest, *, workflow_id: int | None = None) -> int:
        """Record what was asked; the new task id."""
        ...

    def create_run(self, task_id: int, request: RunRequest, *, mode: str = "agent") -> int:
        """Start a run of a task (in progress, started now); the new run id."""
        ...

    def record(self, run_id: int, event: LogEvent) -> None:
        """Persist one event of a run in one transaction."""
        ...

    def fail_run(self, run_id: int, error: str, stop_reason: str = "internal_error") -> None:
        """End a run still in progress as a failure, for `stop_reason`."""
        ...

    def record_llm_call(self, run_id: int, call: LLMCall, trace: LLMTrace | None = None) -> None:
        """Log a model call made for a run outside its steps (e.g. an experiment's judge)."""
        ...

    def record_playground(self, run_id: int, step: int, calls: Sequence[tuple[LLMCall, LLMTrace | None]]) -> int:
        """Log the calls of one question asked again at a run's step (purpose "playground"); its seq."""
        ...

    def record_webhook_attempt(self, run_id: int, *, url: str, attempt: int, at: datetime,
                               status_code: int | None, ok: bool, error: str | None, duration_ms: float,
                               event: str = "run.finished") -> None:
        """Keep one webhook delivery attempt."""
        ...

    def add_secrets(self, run_id: int, values: Sequence[str]) -> None:
        """Scrub these values (a run's sensitive_data) from every write until the run ends."""
        ...

    def pending_webhooks(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Webhooks owed for ended runs (or for `run_id`): run_id, url (in clear), delivery_id, event, attempts."""
        ...

    def end_webhook(self, run_id: int) -> None:
        """The run's webhook is no longer owed: drop its clear URL."""
        ...

    def get_run(self, run_id: int) -> RunResponse | None:
        """The run in the contract's shape; None if unknown."""
        ...

    def get_run_request(self, run_id: int) -> RunRequest | None:
        """The request a run was started with; None if unknown."""
        ...

    def list_runs(self, filters: RunFilter | None = None, *, limit: int = 50,
                  offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of runs, newest first, and the total matching."""
        ...

    def runs_summary(self, filters: RunFilter | None = None) -> dict[str, Any]:
        """Totals of the runs matching: runs, success rate, tokens, cost."""
        ...

    def get_traces(self, run_id: int, *, step: int | None = None) -> list[dict[str, Any]]:
        """What the model saw and said in a run's calls (of one step), in order."""
        ...

    def get_playground(self, run_id: int, step: int) -> list[dict[str, Any]]:
        """The calls asked again at a run's step, newest question first."""
        ...

    def get_task(self, task_id: int) -> dict[str, Any] | None:
        """A task with its request, run count and last status; None if unknown."""
        ...

    def list_tasks(self, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of tasks, newest first, and the total."""
        ...

    def set_task_workflow(self, task_id: int, workflow_id: int | None) -> None:
        """Link a task to the workflow saved from it."""
        ...

    def webhook_attempts(self, run_id: int) -> list[dict[str, Any]]:
        """Every delivery attempt of a run, oldest first."""
        ...

    def save_workflow(self, document: dict[str, Any], *, workflow_id: int | None = None,
                      source_run_id: int | None = None, healed_from_version: int | None = None) -> tuple[int, int]:
        """Store a workflow document: (id, version)."""
        ...

    def save_run_workflow(self, document: dict[str, Any], run_id: int) -> tuple[int, int, bool]:
        """The workflow recorded from a run: (id, latest version, created); saved only the first time."""
        ...

    def delete_workflow(self, workflow_id: int) -> bool:
        """Delete every version of a workflow; False if unknown."""
        ...

    def get_workflow(self, workflow_id: int, version: int | None = None) -> dict[str, Any] | None:
        """One version of a workflow (the latest by default); None if unknown."""
        ...

    def workflow_versions(self, workflow_id: int) -> list[dict[str, Any]]:
        """Every version of a workflow, oldest first ([] if unknown)."""
        ...

    def list_workflows(self) -> list[dict[str, Any]]:
        """The latest version of each workflow, newest first."""
        ...

    # ------------------------------------------------------------ experiments (agent.log.experiments)
    def create_experiment(self, **fields: Any) -> int:
        """Record an experiment with its tasks, variants and pending cells; its id."""
        ...

    def start_cell(self, exp_id: int, task_key: str, variant: str, repeat: int, run_id: int) -> None:
        """Note the run a cell started."""
        ...

    def finish_cell(self, exp_id: int, task_key: str, variant: str, repeat: int, **grade: Any) -> None:
        """Note a cell's end and grade."""
        ...

    def requeue_cell(self, exp_id: int, task_key: str, variant: str, repeat: int) -> None:
        """Put an interrupted cell back in the queue."""
        ...

    def cancel_pending_cells(self, exp_id: int, detail: str = "not played: the experiment was cancelled") -> None:
        """Mark the cells never started of an experiment that stopped (cancelled, or its budget spent)."""
        ...

    def set_experiment_status(self, exp_id: int, status: str, error: str | None = None,
                              stop_reason: str | None = None) -> None:
        """Set an experiment's status (and, when it ends, why)."""
        ...

    def get_experiment(self, exp_id: int) -> dict[str, Any] | None:
        """An experiment with progress, tasks and variants; None if unknown."""
        ...

    def experiment_progress(self, exp_id: int) -> dict[str, Any] | None:
        """Status, progress and per-variant passes only (cheap); None if unknown."""
        ...

    def experiment_cells(self, exp_id: int, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Cells with their run's outcome (a page of them)."""
        ...

    def cell_of_run(self, run_id: int) -> dict[str, Any] | None:
        """The experiment cell a run played, or None."""
        ...

    def experiment_spent(self, exp_id: int) -> tuple[float, int]:
        """USD spent by an experiment's runs so far, and the calls without a price."""
        ...

    def tokens_per_step(self, prompts: Sequence[str]) -> dict[str, dict[str, float]]:
        """Past runs' mean steps and tokens per step, by prompt."""
        ...

    def experiment_variants(self, exp_id: int) -> list[dict[str, Any]]:
        """Per-variant numbers."""
        ...

    def experiment_matrix(self, exp_id: int) -> list[dict[str, Any]]:
        """Per task × variant: passes out of the graded tries."""
        ...

    def list_experiments(self, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of experiments, newest first, and the total."""
        ...

    def unfinished_experiments(self) -> list[int]:
        """Experiments a previous process left running (or marked done with cells never played)."""
        ...

    # ------------------------------------------------------------ task sets (agent.log.tasksets)
    def list_task_sets(self) -> list[dict[str, Any]]:
        """Every stored set with its latest version's summary, by name."""
        ...

    def get_task_set(self, name: str, version: int | None = None) -> dict[str, Any] | None:
        """One version of a set (the latest by default) with its tasks; None if unknown."""
        ...

    def create_task_set(self, name: str, tasks: Sequence[StoredTask], *, source: str = "stored",
                        origin: str = "created", note: str | None = None) -> int | None:
        """A new set (version 1); None when the name is taken."""
        ...

    def add_task_set_version(self, name: str, tasks: Sequence[StoredTask], *, origin: str, note: str | None = None,
                             base_version: int | None = None) -> int | None:
        """The set's next version; None for an unknown set; VersionConflict when `base_version` is stale."""
        ...

    def sync_bundled_task_set(self, name: str, tasks: Sequence[StoredTask]) -> int:
        """A bundled set as its file has it (copied in, or followed while unedited); its latest version."""
        ...

    # ------------------------------------------------------------ gradings and reviews (agent.log.grades)
    def add_grading(self, run_id: int, **grading: Any) -> int:
        """Keep one grading of a run (a check's, a judge's, a person's); its id."""
        ...

    def review_run(self, run_id: int, **review: Any) -> dict[str, Any]:
        """A person's review of a finished run (it grades the run's experiment cell, if any); the grading kept."""
        ...

    def run_gradings(self, run_id: int, *, kind: str | None = None) -> list[dict[str, Any]]:
        """Every grading of a run (of one kind), oldest first."""
        ...

    def run_grade(self, run_id: int) -> dict[str, Any] | None:
        """The grade a run counts by; None if unknown."""
        ...

    def review_queue(self, *, limit: int = 50, offset: int = 0,
                     reason: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of the runs to review next, and how many there are."""
        ...

    def judges(self, experiment_id: int | None = None) -> list[dict[str, Any]]:
        """Every judge measured against people."""
        ...

    def diff_cells(self, exp_id: int) -> list[dict[str, Any]]:
        """An experiment's cells with their prompts and results (for the diff of two experiments)."""
        ...

    def close(self) -> None:
        """Publish a final snapshot and release the database."""
        ...
