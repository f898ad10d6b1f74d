"""Experiments for notebooks: the experiment views as DataFrames, and the paired verdicts.

The same numbers the UI and `GET /api/experiments/{id}` show (they read the same views); imported
into `agent.analysis`, so a notebook writes `an.experiment_variants(7)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


def experiment_variants(experiment_id: int, *, con: Connection | None = None) -> pd.DataFrame:
    """Per variant: runs, passes, success rate with its Wilson 95% interval, pass@k, pass^k, steps, cost, time."""
    return _df(con, "SELECT * FROM v_experiment_variants WHERE experiment_id = ? ORDER BY position",
               [int(experiment_id)])


def experiment_matrix(experiment_id: int, *, con: Connection | None = None) -> pd.DataFrame:
    """Per task × variant: passes out of the graded tries (the heat map's numbers)."""
    return _df(con, "SELECT * FROM v_experiment_matrix WHERE experiment_id = ? "
                    "ORDER BY task_position, variant_position", [int(experiment_id)])


def experiment_cells(experiment_id: int, *, con: Connection | None = None) -> pd.DataFrame:
    """Every cell with its run's outcome (status, error, steps, tokens, cost, duration)."""
    return _df(con, "SELECT * FROM v_experiment_cells WHERE experiment_id = ? "
                    "ORDER BY task_position, variant_position, repeat", [int(experiment_id)])


def experiment_comparisons(experiment_id: int, *, con: Connection | None = None) -> pd.DataFrame:
    """Every pair of variants compared task by task (exact sign test), with the verdict in words."""
    import pandas as pd

    from agent.experiments.report import comparisons

    with _using(con) as c:
        names = [r[0] for r in c.execute("SELECT name FROM experiment_variants WHERE experiment_id = ? "
                                         "ORDER BY position", [int(experiment_id)]).fetchall()]
        matrix: list[dict[str, Any]] = experiment_matrix(experiment_id, con=c).to_dict("records")
    return pd.DataFrame(comparisons(names, matrix),
                        columns=["a", "b", "tasks", "wins", "losses", "ties", "p_value", "significant", "verdict"])
