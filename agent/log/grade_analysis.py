"""Gradings for notebooks: reviews and every other grading of a run, the review queue, judges measured against
people, and two experiments compared task by task.

The same numbers `GET /api/judges` and `GET /api/experiments/{a}/diff/{b}` show: they read the same views and call
the same functions (`agent.log.agreement`, `agent.log.experiment_diff`, `agent.stats`). Imported into
`agent.analysis`, so a notebook writes `an.judge_agreement()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.log.agreement import JUDGE_PAIRS_SQL, JUDGES_SQL
from agent.log.agreement import judge_agreement as _agreement
from agent.log.experiment_diff import DIFF_CELLS_SQL, diff_cell
from agent.log.experiment_diff import experiment_diff as _diff
from agent.log.reading import Connection, check_run_id, query_df
from agent.log.reading import using as _using

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AGREEMENT_COLUMNS", "DIFF_COLUMNS", "experiment_diff", "gradings", "judge_agreement", "review_queue",
           "run_grades"]

AGREEMENT_COLUMNS = ["judge", "rubric_hash", "runs_judged", "n", "agreement", "agreement_low", "agreement_high",
                     "kappa", "kappa_low", "kappa_high", "kappa_words", "judge_pass_person_pass",
                     "judge_pass_person_fail", "judge_fail_person_pass", "judge_fail_person_fail", "sentence", "rubric"]
DIFF_COLUMNS = ["kind", "task_id", "task_id_b", "matched_by", "variant", "before_passes", "before_tries",
                "before_rate", "after_passes", "after_tries", "after_rate", "change", "compare", "results_a",
                "results_b"]


def gradings(run_id: int | None = None, *, con: Connection | None = None) -> pd.DataFrame:
    """Every grading (v_gradings: a check's, a judge's, a person's review), of one run or all, oldest first;
    `latest` marks the one of its grader that counts."""
    if run_id is None:
        return query_df(con, "SELECT * FROM v_gradings ORDER BY run_id, created_at, id")
    return query_df(con, "SELECT * FROM v_gradings WHERE run_id = ? ORDER BY created_at, id", [check_run_id(run_id)])


def run_grades(*, con: Connection | None = None) -> pd.DataFrame:
    """Per run (v_run_grades): the grade it counts by (graded_by: person, judge, check, or agent: its own claim),
    passed, the outcome that makes, and why it is queued for review."""
    return query_df(con, "SELECT * FROM v_run_grades ORDER BY run_id")


def review_queue(*, con: Connection | None = None) -> pd.DataFrame:
    """Runs to review next (v_review_queue), most useful first: graders that disagree, judged runs, failures."""
    return query_df(con, "SELECT * FROM v_review_queue ORDER BY priority, run_id DESC")


def judge_agreement(experiment_id: int | None = None, *, con: Connection | None = None) -> pd.DataFrame:
    """Per judge (model and rubric): runs judged and, on the `n` runs people also reviewed, agreement (with its
    Wilson interval), Cohen's kappa (with its 95% interval), the confusion matrix and a sentence in words."""
    import pandas as pd

    where, params = ("AND experiment_id = ?", [int(experiment_id)]) if experiment_id is not None else ("", [])
    with _using(con) as c:
        judges = _records(c, JUDGES_SQL.format(where=where), params)
        pairs = _records(c, JUDGE_PAIRS_SQL.format(where="WHERE experiment_id = ?" if params else ""), params)
    rows = [{**{k: v for k, v in r.items() if k != "confusion"}, **r["confusion"]} for r in _agreement(judges, pairs)]
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def experiment_diff(a: int, b: int, *, con: Connection | None = None) -> pd.DataFrame:
    """Experiment `b` against `a`, per task (matched by id, else by prompt) and variant: pass rates before and
    after, regressions first, then improvements; `df.attrs["comparisons"]` (the paired comparison over tasks per
    variant, with its verdict), `df.attrs["summary"]` ("2 regressions, 1 improvement, ...")."""
    import pandas as pd

    with _using(con) as c:
        names = dict(c.execute("SELECT id, name FROM experiments WHERE id IN (?, ?)", [int(a), int(b)]).fetchall())
        for exp_id in (a, b):
            if int(exp_id) not in names:
                raise ValueError(f"experiment {exp_id} is not in the run log; pick ids from an.experiments().id")
        cells_a, cells_b = ([diff_cell(r) for r in _records(c, DIFF_CELLS_SQL, [int(x)])] for x in (a, b))
    found = _diff({"experiment_id": int(a), "name": names[int(a)]}, cells_a,
                  {"experiment_id": int(b), "name": names[int(b)]}, cells_b)
    rows = [{"kind": r["kind"], "task_id": r["task_id"], "task_id_b": r["task_id_b"], "matched_by": r["matched_by"],
             "variant": r["variant"], **{f"{side}_{k}": r[side][k] for side in ("before", "after")
                                         for k in ("passes", "tries", "rate")},
             "change": r["change"], "compare": [p["compare"] for p in r["runs"] if p["compare"]],
             "results_a": [p["a"]["result"] if p["a"] else None for p in r["runs"]],
             "results_b": [p["b"]["result"] if p["b"] else None for p in r["runs"]]} for r in found["rows"]]
    df = pd.DataFrame(rows, columns=DIFF_COLUMNS)
    df.attrs["comparisons"] = pd.DataFrame(found["comparisons"])
    df.attrs["summary"] = found["summary"]
    df.attrs["unmatched"] = found["unmatched"]
    return df


def _records(con: Connection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    """The rows of `sql` as dicts, as the API reads them (no pandas: NULL stays None, integers stay ints)."""
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
