"""Experiments in the run log: the experiment, its tasks and variants, one cell per task × variant × repeat.

Each cell points at the ordinary run that played it and ends with an outcome: passed, failed, lost
(after its replays; counted as a failure) or ungraded. The views `v_experiment_cells`,
`v_experiment_matrix`, `v_experiment_variants` and `v_experiments` count them (per task, per variant,
means over tasks, tokens, cost, durations); the intervals and tests come from `agent.stats` over the
matrix, so the UI, the API, the CLI and the notebooks show the same thing. Write functions follow
agent.log.writes: `fn(con, secrets, ...)`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb

from agent.log.errors import InvalidQuery
from agent.log.grades import add_grading
from agent.log.mixin import StorePart
from agent.log.redact import dumps, scrub
from agent.log.rows import dicts, insert_sql, scalar
from agent.models import utcnow

Connection = duckdb.DuckDBPyConnection
Secrets = Sequence[str]
CELL_STATUSES = ("pending", "running", "done", "cancelled", "interrupted")
EXPERIMENT_STATUSES = ("running", "done", "cancelled", "interrupted", "failed")
TERMINAL = ("done", "cancelled", "interrupted", "failed")
# Why an experiment stopped: every cell played (done), a user (cancelled), max_cost_usd spent (budget), a bug.
STOP_REASONS = ("done", "cancelled", "budget", "failed", "interrupted")
MAX_PAGE = 1000
MAX_CELLS_PAGE = 2000


def create_experiment(con: Connection, secrets: Secrets, *, name: str, task_set: str | None, repeats: int,
                      concurrency: int, backend: str, spec: dict[str, Any],
                      tasks: list[dict[str, Any]], variants: list[dict[str, Any]],
                      task_set_version: int | None = None) -> int:
    """The experiment (with the version of the stored task set it runs, if any), its tasks and variants, and
    every cell (pending); the new id."""
    now = utcnow()
    exp_id = scalar(con, """
        INSERT INTO experiments (name, status, task_set, task_set_version, repeats, concurrency, backend, created_at,
                                 spec_json)
        VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
        [scrub(name, secrets), task_set, task_set_version, repeats, concurrency, backend, now, dumps(spec, secrets)])
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
                   attempt_run_ids = list_append(coalesce(attempt_run_ids, []), ?), started_at = ?
                   WHERE experiment_id = ? AND task_key = ? AND variant = ? AND repeat = ?""",
                [run_id, run_id, utcnow(), exp_id, task_key, variant, repeat])


def finish_cell(con: Connection, secrets: Secrets, exp_id: int, task_key: str, variant: str, repeat: int, *,
                status: str, passed: bool | None, score: float | None, detail: str | None, graded_by: str | None,
                page_value: Any = None, lost_reason: str | None = None, ungraded_reason: str | None = None,
                grading: dict[str, Any] | None = None) -> None:
    """A cell's end: its status and, when graded, the grade; when lost, why (`lost_reason`); when played but
    not graded, why not (`ungraded_reason`: judge_error, no_check). `grading` (agent.log.grades.add_grading's
    kind, grader, rubric_hash, extra) keeps the check's or judge's verdict among the run's gradings too."""
    if status not in CELL_STATUSES:
        raise InvalidQuery(f"cell status must be one of {', '.join(CELL_STATUSES)}, got {status!r}")
    con.execute("""UPDATE experiment_cells SET status = ?, passed = ?, score = ?, grade_detail = ?, graded_by = ?,
                   graded_at = CASE WHEN ? IS NULL THEN graded_at ELSE ? END, page_value_json = ?, finished_at = ?,
                   lost_reason = ?, ungraded_reason = ?
                   WHERE experiment_id = ? AND task_key = ? AND variant = ? AND repeat = ?""",
                [status, passed, score, scrub(detail, secrets), graded_by, passed, utcnow(),
                 None if page_value is None else dumps(page_value, secrets), utcnow(), lost_reason, ungraded_reason,
                 exp_id, task_key, variant, repeat])
    run_id = scalar(con, "SELECT run_id FROM experiment_cells WHERE experiment_id = ? AND task_key = ? AND variant = ? "
                         "AND repeat = ?", [exp_id, task_key, variant, repeat])
    if grading is not None and run_id is not None:
        add_grading(con, secrets, int(run_id), passed=passed, score=score, comment=detail,
                    cell=(exp_id, task_key, variant, repeat), **grading)


def requeue_cell(con: Connection, secrets: Secrets, exp_id: int, task_key: str, variant: str, repeat: int) -> None:
    """Put a cell whose run was lost back in the queue (the runner plays it again, up to max_replays)."""
    con.execute("""UPDATE experiment_cells SET status = 'pending', run_id = NULL, started_at = NULL
                   WHERE experiment_id = ? AND task_key = ? AND variant = ? AND repeat = ?""",
                [exp_id, task_key, variant, repeat])


def cancel_pending(con: Connection, secrets: Secrets, exp_id: int,
                   detail: str = "not played: the experiment was cancelled") -> None:
    """Cells never started of an experiment that stopped before them (cancelled, or its budget spent)."""
    con.execute("""UPDATE experiment_cells SET status = 'cancelled', grade_detail = ?,
                   finished_at = ? WHERE experiment_id = ? AND status = 'pending'""", [detail, utcnow(), exp_id])


def set_status(con: Connection, secrets: Secrets, exp_id: int, status: str, error: str | None = None,
               stop_reason: str | None = None) -> None:
    """An experiment's status (a terminal one stamps finished_at, and its stop reason: by default the status)."""
    if status not in EXPERIMENT_STATUSES:
        raise InvalidQuery(f"status must be one of {', '.join(EXPERIMENT_STATUSES)}, got {status!r}")
    if status != "running" and stop_reason is None:
        stop_reason = status
    if stop_reason is not None and stop_reason not in STOP_REASONS:
        raise InvalidQuery(f"stop_reason must be one of {', '.join(STOP_REASONS)}, got {stop_reason!r}")
    con.execute("""UPDATE experiments SET status = ?, error = ?, stop_reason = ?,
                   finished_at = CASE WHEN ? IN ('done', 'cancelled', 'interrupted', 'failed') THEN ? END
                   WHERE id = ?""", [status, scrub(error, secrets), stop_reason, status, utcnow(), exp_id])


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


def experiment_progress(con: Connection, exp_id: int) -> dict[str, Any] | None:
    """The experiment's row of v_experiments (status, progress, per-variant passes); None if unknown."""
    found = dicts(con.execute("SELECT * FROM v_experiments WHERE id = ?", [exp_id]))
    return found[0] if found else None


def experiment_cells(con: Connection, exp_id: int, *, offset: int = 0,
                     limit: int | None = None) -> list[dict[str, Any]]:
    """Cells of an experiment with their run's outcome, in task, variant, repeat order (a page of them)."""
    if offset < 0 or (limit is not None and not 0 <= limit <= MAX_CELLS_PAGE):
        raise InvalidQuery(f"cells_limit must be 0..{MAX_CELLS_PAGE} and cells_offset >= 0, got {limit}, {offset}")
    return dicts(con.execute("SELECT * FROM v_experiment_cells WHERE experiment_id = ? "
                             "ORDER BY task_position, variant_position, repeat LIMIT ? OFFSET ?",
                             [exp_id, MAX_CELLS_PAGE if limit is None else limit, offset]))


def cell_of_run(con: Connection, run_id: int) -> dict[str, Any] | None:
    """The experiment cell a run played (with the experiment's name), or None for a run of no experiment."""
    found = dicts(con.execute(
        "SELECT c.*, e.name AS experiment_name FROM v_experiment_cells c JOIN experiments e ON e.id = c.experiment_id "
        "WHERE c.run_id = ? LIMIT 1", [run_id]))
    return found[0] if found else None


def experiment_spent(con: Connection, exp_id: int) -> tuple[float, int]:
    """What an experiment's runs have cost so far (every attempt's model calls, the judge's too) in USD, and
    how many of those calls had no price (their cost unknown, counted 0 here)."""
    row = con.execute(
        """SELECT coalesce(sum(cost_usd), 0),
                  count(*) FILTER (WHERE cost_usd IS NULL AND (input_tokens > 0 OR output_tokens > 0))
           FROM llm_calls WHERE run_id IN (
               SELECT unnest(attempt_run_ids) FROM experiment_cells WHERE experiment_id = ?)""",
        [exp_id]).fetchone()
    return (float(row[0]), int(row[1])) if row else (0.0, 0)


def tokens_per_step(con: Connection, prompts: Sequence[str]) -> dict[str, dict[str, float]]:
    """For each prompt that past finished runs had: their mean steps and input / output tokens per step."""
    if not prompts:
        return {}
    rows = dicts(con.execute(
        """SELECT prompt, count(*) AS runs, avg(steps) AS steps,
                  sum(input_tokens) / sum(steps) AS input_per_step, sum(output_tokens) / sum(steps) AS output_per_step
           FROM runs WHERE prompt IN (SELECT unnest(?)) AND status <> 'in_progress' AND steps > 0
           GROUP BY prompt""", [list(prompts)]))
    return {r.pop("prompt"): {k: float(v) for k, v in r.items()} for r in rows}


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


def unfinished(con: Connection, secrets: Secrets) -> list[int]:
    """Experiments a previous process left running (to resume), and any marked done with cells never played
    (an older version did that when the run queue was full): those are running again."""
    con.execute("""UPDATE experiments SET status = 'running', stop_reason = NULL, finished_at = NULL
                   WHERE status = 'done' AND id IN (SELECT experiment_id FROM experiment_cells
                                                    WHERE status IN ('pending', 'running'))""")
    return [r[0] for r in con.execute("SELECT id FROM experiments WHERE status = 'running' ORDER BY id").fetchall()]


class ExperimentLog(StorePart):
    """The Store's experiment methods (mixed into `agent.log.store.Store`); each write is one transaction."""

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

    def requeue_cell(self, exp_id: int, task_key: str, variant: str, repeat: int) -> None:
        """Put an interrupted cell back in the queue."""
        self._write(requeue_cell, exp_id, task_key, variant, repeat)

    def cancel_pending_cells(self, exp_id: int, detail: str = "not played: the experiment was cancelled") -> None:
        """Mark the cells never started of an experiment that stopped (cancelled, or its budget spent)."""
        self._write(cancel_pending, exp_id, detail)

    def set_experiment_status(self, exp_id: int, status: str, error: str | None = None,
                              stop_reason: str | None = None) -> None:
        """Set an experiment's status (and, when it ends, why)."""
        self._write(set_status, exp_id, status, error, stop_reason)
        self._request_snapshot()

    def get_experiment(self, exp_id: int) -> dict[str, Any] | None:
        """An experiment with progress, tasks and variants; None if unknown."""
        return self._read(get_experiment, exp_id)

    def experiment_progress(self, exp_id: int) -> dict[str, Any] | None:
        """Status, progress and per-variant passes only (cheap); None if unknown."""
        return self._read(experiment_progress, exp_id)

    def experiment_cells(self, exp_id: int, *, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Cells with their run's outcome (a page of them)."""
        return self._read(experiment_cells, exp_id, offset=offset, limit=limit)

    def cell_of_run(self, run_id: int) -> dict[str, Any] | None:
        """The experiment cell a run played, or None."""
        return self._read(cell_of_run, run_id)

    def experiment_spent(self, exp_id: int) -> tuple[float, int]:
        """USD spent by an experiment's runs so far, and the calls without a price."""
        return self._read(experiment_spent, exp_id)

    def tokens_per_step(self, prompts: Sequence[str]) -> dict[str, dict[str, float]]:
        """Past runs' mean steps and tokens per step, by prompt."""
        return self._read(tokens_per_step, prompts)

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
        """Experiments a previous process left running (or marked done with cells never played)."""
        return self._write(unfinished)
