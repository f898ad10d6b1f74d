"""Experiments for notebooks: the experiment views as DataFrames, with the intervals and the verdicts.

The same numbers the UI and `GET /api/experiments/{id}` show: they read the same views and call the
same functions of `agent.stats` (a leaf module: the run log never imports agent.experiments). Imported
into `agent.analysis`, so a notebook writes `an.experiment_variants(7)`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from agent import stats
from agent.log.reading import Connection
from agent.log.reading import query_df as _df
from agent.log.reading import using as _using

if TYPE_CHECKING:
    import pandas as pd


def experiments(*, con: Connection | None = None) -> pd.DataFrame:
    """One row per experiment (v_experiments): status, progress, passes; newest first."""
    return _df(con, "SELECT * FROM v_experiments ORDER BY id DESC")


def latest_experiment(*, con: Connection | None = None) -> int | None:
    """The id of the newest experiment, or None when there is none."""
    import pandas as pd

    value = _df(con, "SELECT max(id) AS id FROM experiments")["id"].iloc[0]
    return None if pd.isna(value) else int(value)  # None, NaN or pd.NA when there is no experiment


def _counts(matrix: pd.DataFrame) -> dict[str, dict[str, tuple[int, int]]]:
    """Per variant and task: (passes, tries), lost runs counted as failures (as agent.experiments.report does)."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for row in matrix.itertuples():
        out.setdefault(str(row.variant), {})[str(row.task_key)] = (int(row.passes), int(row.tries))
    return out


def experiment_variants(experiment_id: int, *, con: Connection | None = None) -> pd.DataFrame:
    """Per variant: runs, passes, failures, lost (and why), the success rate (mean over tasks) with its 95% interval
    clustered by task, the rate without the lost runs, pass@k and pass^k at one k, steps, cost, time."""
    with _using(con) as c:
        frame = _df(c, "SELECT * FROM v_experiment_variants WHERE experiment_id = ? ORDER BY position",
                    [int(experiment_id)])
        counts = _counts(experiment_matrix(experiment_id, con=c))
    numbers = [stats.variant_numbers(counts.get(str(v), {})) for v in frame["variant"]]
    for key in ("ci_low", "ci_high", "k", "pass_at_k", "pass_hat_k", "pass_k_tasks"):
        frame[key] = [n[key] for n in numbers]
    return frame


def experiment_matrix(experiment_id: int, *, con: Connection | None = None) -> pd.DataFrame:
    """Per task × variant: passes out of the tries (lost runs count as failures), graded, lost, ungraded."""
    return _df(con, "SELECT * FROM v_experiment_matrix WHERE experiment_id = ? "
                    "ORDER BY task_position, variant_position", [int(experiment_id)])


def experiment_cells(experiment_id: int, *, con: Connection | None = None) -> pd.DataFrame:
    """Every cell with its outcome (passed, failed, lost, ungraded...) and its run's (status, steps, tokens, cost)."""
    return _df(con, "SELECT * FROM v_experiment_cells WHERE experiment_id = ? "
                    "ORDER BY task_position, variant_position, repeat", [int(experiment_id)])


COMPARISON_COLUMNS = ["a", "b", "tasks", "difference", "ci_low", "ci_high", "p_value", "p_adjusted", "significant",
                      "mde", "method", "verdict"]


def experiment_comparisons(experiment_id: int, *, con: Connection | None = None) -> pd.DataFrame:
    """Each variant against the baseline (or every pair, as the experiment asked): the difference over tasks, its
    interval, the p-value (Holm-adjusted too), the smallest effect the design would see, and the verdict."""
    import pandas as pd

    with _using(con) as c:
        names = [r[0] for r in c.execute("SELECT name FROM experiment_variants WHERE experiment_id = ? "
                                         "ORDER BY position", [int(experiment_id)]).fetchall()]
        found = c.execute("SELECT spec_json FROM experiments WHERE id = ?", [int(experiment_id)]).fetchone()
        counts = _counts(experiment_matrix(experiment_id, con=c))
    spec = json.loads(found[0]) if found else {}
    rows = stats.comparisons(names, counts, baseline=spec.get("baseline"), mode=spec.get("compare") or "baseline")
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
