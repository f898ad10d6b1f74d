"""Experiments in the run log: the experiment, its tasks and variants, one cell per task × variant × repeat.

Each cell points at the ordinary run that played it; the views `v_experiment_cells`,
`v_experiment_variants`, `v_experiment_matrix` and `v_experiments` compute the numbers (success rate
with its Wilson interval, pass@k, pass^k, tokens, cost, durations) so the UI, the API and the
notebooks show the same thing. Write functions follow agent.log.writes: `fn(con, secrets, ...)`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb

from agent.log.errors import InvalidQuery
from agent.log.redact import dumps, scrub
from agent.log.rows import dicts, insert_sql, scalar
from agent.models import utcnow

Connection = duckdb.DuckDBPyConnection
Secrets = Sequence[str]
CELL_STATUSES = ("pending", "running", "done", "cancelled", "interrupted")
EXPERIMENT_STATUSES = ("running", "done", "cancelled", "interrupted", "failed")
TERMINAL = ("done", "cancelled", "interrupted", "failed")
MAX_PAGE = 1000


def create_experiment(con: Connection, secrets: Secrets, *, name: str, task_set: str | None, repeats: int,
                      concurrency: int, backend: str, spec: dict[str, Any],
                      tasks: list[dict[str, Any]], variants: list[dict[str, Any]]) -> int:
    """The experiment, its tasks and variants, and every cell (pending); the new id."""
    now = utcnow()
    exp_id = scalar(con, """
        INSERT INTO experiments (name, status, task_set, repeats, concurrency, backend, created_at, spec_json)
        VALUES (?, 'running', ?, ?, ?, ?, ?, ?) RETURNING id""",
        [scrub(name, secrets), task_set, repeats, concurrency, backend, now, dumps(spec, secrets)])
    con.execute(insert_sql("experiment_tasks", ("experiment_id", "task_key", "position", "title", "prompt",
                                                "check_kind", "task_json"), len(tasks)),
                [v for n, t in enumerate(tasks) for v in (
                    exp_id, t["id"], n, t.get("title"), scrub(t["prompt"], secrets),
                    (t.get("check") or {}).get("kind"), dumps(t["task"], secrets))])
    con.execute(insert_sql("experiment_variants", ("experiment_id", "name", "position", "overrides_json"),
                           len(variants)),
                [v for n, var in enumerate(variants)
                 for v in (exp_id, var["name"], n, dumps(var["overrides"], secrets))])
    cells = [(exp_id, t["id"], var["name"], r) for t in tasks for var in variants for r in range(1, repeats + 1)]
    for start in range(0, len(cells), 500):  # multi-row inserts, bounded statement size
        chunk = cells[start:start + 500]
        con.execute(insert_sql("experiment_cells", ("experiment_id", "task_key", "variant", "repeat"), len(chunk)),
                    [v for cell in chunk for v in cell])
    return int(exp_id)


def start_cell(con: Connection, secrets: Secrets, exp_id: int, task_key: str, variant: str, repeat: int,
               run_id: int) -> None:
    """A cell's run was submitted."""
    con.execute("""UPDATE experiment_cells SET status = 'running', run_id = ?, attempts = attempts + 1,
                   started_at = ? WHERE experiment_id = ? AND task_key = ? AND variant = ? AND repeat = ?""",
                [run_id, utcnow(), exp_id, task_key, variant, repeat])


def finish_cell(con: Connection, secrets: Secrets, exp_id: int, task_key: str, variant: str, repeat: int, *,
                status: str, passed: bool | None, score: float | None, detail: str | None, graded_by: str | None,
                page_value: Any = None) -> None:
    """A cell's end: its status and, when graded, the grade."""
    if status not in CELL_STATUSES:
        raise InvalidQuery(f"cell status must be one of {', '.join(CELL_STATUSES)}, got {status!r}")
    con.execute("""UPDATE experiment_cells SET status = ?, passed = ?, score = ?, grade_detail = ?, graded_by = ?,
                   graded_at = CASE WHEN ? IS NULL THEN graded_at ELSE ? END, page_value_json = ?, finished_at = ?
                   WHERE experiment_id = ? AND task_key = ? AND variant = ? AND repeat = ?""",
                [status, passed, score, scrub(detail, secrets), graded_by, passed, utcnow(),
                 None if page_value is None else dumps(page_value, secrets), utcnow(), exp_id, task_key, variant,
                 repeat])


def grade_cell(con: Connection, secrets: Secrets, exp_id: int, task_key: str, variant: str, repeat: int, *,
               passed: bool, score: float | None, detail: str, graded_by: str) -> None:
    """Grade a finished cell (by hand, or the judge's late answer); InvalidQuery for an unknown cell."""
    found = scalar(con, """UPDATE experiment_cells SET passed = ?, score = ?, grade_detail = ?, graded_by = ?,
                          graded_at = ? WHERE experiment_id = ? AND task_key = ? AND variant = ? AND repeat = ?
                          RETURNING run_id""",
                   [passed, score, scrub(detail, secrets), graded_by, utcnow(), exp_id, task_key, variant, repeat])
    if found is None:
        raise InvalidQuery(f"experiment {exp_id} has no cell {task_key!r} / {variant!r} / repeat {repeat}")


def requeue_cell(con: Connection, secrets: Secrets, exp_id: int, task_key: str, variant: str, repeat: int) -> None:
    """Put a cell whose run was interrupted back in the queue (the runner retries it once)."""
    con.execute("""UPDATE experiment_cells SET status = 'pending', run_id = NULL, started_at = NULL
                   WHERE experiment_id = ? AND task_key = ? AND variant = ? AND repeat = ?""",
                [exp_id, task_key, variant, repeat])


def cancel_pending(con: Connection, secrets: Secrets, exp_id: int) -> None:
    """Cells never started of a cancelled experiment."""
    con.execute("""UPDATE experiment_cells SET status = 'cancelled', grade_detail = 'the experiment was cancelled',
                   finished_at = ? WHERE experiment_id = ? AND status = 'pending'""", [utcnow(), exp_id])


def set_status(con: Connection, secrets: Secrets, exp_id: int, status: str, error: str | None = None) -> None:
    """An experiment's status (a terminal one stamps finished_at)."""
    if status not in EXPERIMENT_STATUSES:
        raise InvalidQuery(f"status must be one of {', '.join(EXPERIMENT_STATUSES)}, got {status!r}")
    con.execute("""UPDATE experiments SET status = ?, error = ?,
                   finished_at = CASE WHEN ? IN ('done', 'cancelled', 'interrupted', 'failed') THEN ? END
                   WHERE id = ?""", [status, scrub(error, secrets), status, utcnow(), exp_id])


# ------------------------------------------------------------------ reads
def get_experiment(con: Connection, exp_id: int) -> dict[str, Any] | None:
    """The experiment with its progress, tasks and variants; None if unknown."""
    found = dicts(con.execute("SELECT * FROM v_experiments WHERE id = ?", [exp_id]))
    if not found:
        return None
    out = found[0]
    out["spec"] = json.loads(scalar(con, "SELECT spec_json FROM experiments WHERE id = ?", [exp_id]))
    out["tasks"] = [{**r, "task": json.loads(r.pop("task_json"))} for r in dicts(con.execute(
        "SELECT task_key, title, prompt, check_kind, task_json FROM experiment_tasks WHERE experiment_id = ? "
        "ORDER BY position", [exp_id]))]
    variants = dicts(con.execute(
        "SELECT name, overrides_json FROM experiment_variants WHERE experiment_id = ? ORDER BY position", [exp_id]))
    out["variant_specs"] = [{"name": r["name"], "overrides": json.loads(r["overrides_json"])} for r in variants]
    return out


def experiment_cells(con: Connection, exp_id: int) -> list[dict[str, Any]]:
    """Every cell of an experiment with its run's outcome, in task, variant, repeat order."""
    return dicts(con.execute("SELECT * FROM v_experiment_cells WHERE experiment_id = ? "
                             "ORDER BY task_position, variant_position, repeat", [exp_id]))


def experiment_variants(con: Connection, exp_id: int) -> list[dict[str, Any]]:
    """Per-variant numbers (rate, interval, pass@k, pass^k, tokens, cost, durations), in the given order."""
    return dicts(con.execute("SELECT * FROM v_experiment_variants WHERE experiment_id = ? ORDER BY position",
                             [exp_id]))


def experiment_matrix(con: Connection, exp_id: int) -> list[dict[str, Any]]:
    """Per task × variant: passes out of the graded tries."""
    return dicts(con.execute("SELECT * FROM v_experiment_matrix WHERE experiment_id = ? "
                             "ORDER BY task_position, variant_position", [exp_id]))


def list_experiments(con: Connection, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page of experiments, newest first, with their progress; and the total."""
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise InvalidQuery(f"limit must be 1..{MAX_PAGE} and offset >= 0, got {limit}, {offset}")
    total = scalar(con, "SELECT count(*) FROM experiments")
    return dicts(con.execute("SELECT * FROM v_experiments ORDER BY id DESC LIMIT ? OFFSET ?", [limit, offset])), total


def unfinished(con: Connection) -> list[int]:
    """Experiments a previous process left running (to resume)."""
    return [r[0] for r in con.execute("SELECT id FROM experiments WHERE status = 'running' ORDER BY id").fetchall()]


class ExperimentLog:
    """The Store's experiment methods (mixed into `agent.log.store.Store`); each write is one transaction."""

    def _write(self, fn: Any, *args: Any, **kwargs: Any) -> Any:  # provided by Store
        raise NotImplementedError

    def _read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:  # provided by Store
        raise NotImplementedError

    def _request_snapshot(self) -> None:  # provided by Store
        raise NotImplementedError

    def create_experiment(self, **fields: Any) -> int:
        """Record an experiment with its tasks, variants and pending cells; its id."""
        return int(self._write(create_experiment, **fields))

    def start_cell(self, exp_id: int, task_key: str, variant: str, repeat: int, run_id: int) -> None:
        """Note the run a cell started."""
        self._write(start_cell, exp_id, task_key, variant, repeat, run_id)

    def finish_cell(self, exp_id: int, task_key: str, variant: str, repeat: int, **grade: Any) -> None:
        """Note a cell's end and grade."""
        self._write(finish_cell, exp_id, task_key, variant, repeat, **grade)
        self._request_snapshot()  # readers (notebooks) see grades as they come

    def grade_cell(self, exp_id: int, task_key: str, variant: str, repeat: int, **grade: Any) -> None:
        """Grade a finished cell (by hand, or the judge)."""
        self._write(grade_cell, exp_id, task_key, variant, repeat, **grade)

    def requeue_cell(self, exp_id: int, task_key: str, variant: str, repeat: int) -> None:
        """Put an interrupted cell back in the queue."""
        self._write(requeue_cell, exp_id, task_key, variant, repeat)

    def cancel_pending_cells(self, exp_id: int) -> None:
        """Mark the cells never started of a cancelled experiment."""
        self._write(cancel_pending, exp_id)

    def set_experiment_status(self, exp_id: int, status: str, error: str | None = None) -> None:
        """Set an experiment's status."""
        self._write(set_status, exp_id, status, error)
        self._request_snapshot()

    def get_experiment(self, exp_id: int) -> dict[str, Any] | None:
        """An experiment with progress, tasks and variants; None if unknown."""
        return self._read(get_experiment, exp_id)

    def experiment_cells(self, exp_id: int) -> list[dict[str, Any]]:
        """Every cell with its run's outcome."""
        return self._read(experiment_cells, exp_id)

    def experiment_variants(self, exp_id: int) -> list[dict[str, Any]]:
        """Per-variant numbers."""
        return self._read(experiment_variants, exp_id)

    def experiment_matrix(self, exp_id: int) -> list[dict[str, Any]]:
        """Per task × variant: passes out of the graded tries."""
        return self._read(experiment_matrix, exp_id)

    def list_experiments(self, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of experiments, newest first, and the total."""
        return self._read(list_experiments, limit=limit, offset=offset)

    def unfinished_experiments(self) -> list[int]:
        """Experiments a previous process left running."""
        return self._read(unfinished)
