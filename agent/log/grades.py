"""Gradings in the run log: every verdict on a run, a check's, a judge's or a person's, kept beside the others.

A grading is never updated: a person reviewing again, or a second judge asked later, adds a row, and the
latest row of each grader (kind, grader, rubric) is the one that counts (`v_gradings.latest`). A review
(a person's grading) of the run an experiment cell counts also grades that cell, so the experiment's numbers
follow what people said. `v_run_grades` says which grade each run counts by (person, then the cell's check or
judge, then the agent's own claim), `v_review_queue` what to look at next, `v_judge_pairs` each judge beside the
people. Write functions follow agent.log.writes: `fn(con, secrets, ...)`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb

from agent.log.agreement import JUDGE_PAIRS_SQL, JUDGES_SQL, judge_agreement
from agent.log.errors import InvalidQuery
from agent.log.experiment_diff import DIFF_CELLS_SQL, diff_cell
from agent.log.mixin import StorePart
from agent.log.redact import dumps, scrub
from agent.log.rows import dicts, insert_row, scalar
from agent.models import utcnow

Connection = duckdb.DuckDBPyConnection
Secrets = Sequence[str]
KINDS = ("check", "judge", "person")
QUEUE_REASONS = ("disagreement", "judged", "failure")
MAX_QUEUE_PAGE = 1000
MAX_COMMENT_CHARS = 4000  # a check's or judge's reason is cut here (a review's comment is capped at the door)
Cell = tuple[int, str, str, int]  # experiment id, task key, variant, repeat


def add_grading(con: Connection, secrets: Secrets, run_id: int, *, kind: str, grader: str, passed: bool | None,
                score: float | None = None, comment: str | None = None, rubric_hash: str | None = None,
                cell: Cell | None = None, extra: dict[str, Any] | None = None, at: datetime | None = None) -> int:
    """Keep one grading of run `run_id` (a new row, whatever came before); its id."""
    if kind not in KINDS:
        raise InvalidQuery(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not grader:
        raise InvalidQuery("grader must name who graded: a check's kind, a judge's provider/model, a person's name")
    exp_id, task_key, variant, repeat = cell if cell is not None else (None, None, None, None)
    return int(insert_row(con, "gradings", {
        "run_id": run_id, "kind": kind, "grader": scrub(grader, secrets), "rubric_hash": rubric_hash,
        "passed": passed, "score": score, "comment": (scrub(comment or "", secrets) or "")[:MAX_COMMENT_CHARS] or None,
        "experiment_id": exp_id, "task_key": task_key, "variant": variant, "repeat": repeat,
        "created_at": at or utcnow(), "grading_json": dumps(extra or {}, secrets)}, returning="id"))


def cell_of(con: Connection, run_id: int) -> Cell | None:
    """The experiment cell whose run (the one it counts) is `run_id`, or None."""
    row = con.execute("SELECT experiment_id, task_key, variant, repeat FROM experiment_cells WHERE run_id = ? "
                      "LIMIT 1", [run_id]).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]), int(row[3]))


def review_run(con: Connection, secrets: Secrets, run_id: int, *, reviewer: str, passed: bool, score: float | None,
               comment: str | None, source: str) -> dict[str, Any]:
    """A person's review of a finished run, kept as a grading; the run's experiment cell, if any, takes its verdict
    (the latest review grades the cell). InvalidQuery for an unknown run or one still in progress."""
    status = scalar(con, "SELECT status FROM runs WHERE id = ?", [run_id])
    if status is None:
        raise InvalidQuery(f"run {run_id} does not exist")
    if status == "in_progress":
        raise InvalidQuery(f"run {run_id} is still running; review it once it has ended")
    cell = cell_of(con, run_id)
    comment = (comment or "").strip() or None
    score = float(passed) if score is None else score
    grading_id = add_grading(con, secrets, run_id, kind="person", grader=reviewer, passed=passed, score=score,
                             comment=comment, cell=cell, extra={"source": source})
    if cell is not None:
        detail = f"reviewed by {reviewer}" + (f": {comment}" if comment else "")
        con.execute("""UPDATE experiment_cells SET passed = ?, score = ?, grade_detail = ?, graded_by = 'person',
                       graded_at = ?, ungraded_reason = NULL
                       WHERE experiment_id = ? AND task_key = ? AND variant = ? AND repeat = ?""",
                    [passed, score, (scrub(detail, secrets) or "")[:1000], utcnow(), *cell])
    return _grading(con, grading_id)


def _grading(con: Connection, grading_id: int) -> dict[str, Any]:
    found = dicts(con.execute("SELECT * FROM v_gradings WHERE id = ?", [grading_id]))
    return _shown(found[0])


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A v_gradings row as the API shows it (its JSON parsed)."""
    row = dict(row)
    row["details"] = json.loads(row.pop("grading_json") or "{}")
    return row


def gradings_of(con: Connection, run_id: int, *, kind: str | None = None) -> list[dict[str, Any]]:
    """Every grading of a run (of one kind), oldest first, each saying whether it is its grader's latest."""
    where, params = ("AND kind = ?", [run_id, kind]) if kind else ("", [run_id])
    return [_shown(r) for r in dicts(con.execute(
        f"SELECT * FROM v_gradings WHERE run_id = ? {where} ORDER BY created_at, id", params))]


def run_grade(con: Connection, run_id: int) -> dict[str, Any] | None:
    """The grade run `run_id` counts by (v_run_grades: by whom, passed, outcome, the queue's reason); None if
    unknown."""
    found = dicts(con.execute("SELECT * FROM v_run_grades WHERE run_id = ?", [run_id]))
    return found[0] if found else None


def review_queue(con: Connection, *, limit: int, offset: int,
                 reason: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """A page of the runs to review next (graders that disagree, judged runs, failures), most useful first; and
    how many there are."""
    if not 1 <= limit <= MAX_QUEUE_PAGE or offset < 0:
        raise InvalidQuery(f"limit must be 1..{MAX_QUEUE_PAGE} and offset >= 0, got {limit}, {offset}")
    if reason is not None and reason not in QUEUE_REASONS:
        raise InvalidQuery(f"reason must be one of {', '.join(QUEUE_REASONS)}, got {reason!r}")
    where, params = ("WHERE reason = ?", [reason]) if reason else ("", [])
    total = scalar(con, f"SELECT count(*) FROM v_review_queue {where}", params)
    rows = dicts(con.execute(f"SELECT * FROM v_review_queue {where} ORDER BY priority, run_id DESC LIMIT ? OFFSET ?",
                             [*params, limit, offset]))
    return rows, int(total or 0)


def judges(con: Connection, experiment_id: int | None = None) -> list[dict[str, Any]]:
    """Every judge (model and rubric) measured against people (see agent.log.agreement); of one experiment's
    runs when `experiment_id` is given."""
    where, params = ("AND experiment_id = ?", [experiment_id]) if experiment_id is not None else ("", [])
    found = dicts(con.execute(JUDGES_SQL.format(where=where), params))
    pair_where = "WHERE experiment_id = ?" if experiment_id is not None else ""
    pairs = dicts(con.execute(JUDGE_PAIRS_SQL.format(where=pair_where), params))
    return judge_agreement(found, pairs)


def diff_cells(con: Connection, exp_id: int) -> list[dict[str, Any]]:
    """An experiment's cells with their task's prompt and their run's result (agent.log.experiment_diff)."""
    return [diff_cell(r) for r in dicts(con.execute(DIFF_CELLS_SQL, [exp_id]))]


class GradeLog(StorePart):
    """The Store's grading methods (mixed into `agent.log.store.Store`); each write is one transaction."""

    def add_grading(self, run_id: int, **grading: Any) -> int:
        """Keep one grading of a run (a check's, a judge's, a person's); its id."""
        grading_id = int(self._write(add_grading, run_id, **grading))
        self._request_snapshot()
        return grading_id

    def review_run(self, run_id: int, **review: Any) -> dict[str, Any]:
        """A person's review of a finished run (it grades the run's experiment cell, if any); the grading kept."""
        found = self._write(review_run, run_id, **review)
        self._request_snapshot()  # notebooks see reviews as they come
        return found

    def run_gradings(self, run_id: int, *, kind: str | None = None) -> list[dict[str, Any]]:
        """Every grading of a run (of one kind), oldest first."""
        return self._read(gradings_of, run_id, kind=kind)

    def run_grade(self, run_id: int) -> dict[str, Any] | None:
        """The grade a run counts by; None if unknown."""
        return self._read(run_grade, run_id)

    def review_queue(self, *, limit: int = 50, offset: int = 0,
                     reason: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of the runs to review next, and how many there are."""
        return self._read(review_queue, limit=limit, offset=offset, reason=reason)

    def judges(self, experiment_id: int | None = None) -> list[dict[str, Any]]:
        """Every judge measured against people."""
        return self._read(judges, experiment_id)

    def diff_cells(self, exp_id: int) -> list[dict[str, Any]]:
        """An experiment's cells with their prompts and results (for the diff of two experiments)."""
        return self._read(diff_cells, exp_id)
