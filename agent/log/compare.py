"""Comparing runs for analysts: two runs step by step, or two models (or prompts) over many runs.

Part of `agent.analysis` (re-exported there); connections and ids come from `agent.log.reading`.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

from agent.log.diff import TOTALS
from agent.log.diff import compare_runs as align
from agent.log.migrations import WILSON_SQL
from agent.log.reading import Connection, check_run_id, data_dir, query_df, screenshot_file, using

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["compare", "compare_runs", "most_common"]

_BY = {"model": "model", "prompt": "prompt"}


def _by(by: str) -> str:
    if by not in _BY:
        raise ValueError(f"by must be 'model' or 'prompt', got {by!r}")
    return _BY[by]


def most_common(by: str = "model", n: int = 2, *, con: Connection | None = None) -> list[str]:
    """The `n` models (or prompts) with the most finished runs, most frequent first."""
    col = _by(by)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    with using(con) as c:
        rows = c.execute(
            f"SELECT {col}, count(*) AS c FROM runs WHERE status <> 'in_progress' AND {col} IS NOT NULL "
            f"GROUP BY {col} ORDER BY c DESC, {col} LIMIT ?",
            [n],
        ).fetchall()
    return [r[0] for r in rows]


def compare(
    a: str | int,
    b: str | int,
    *,
    by: str = "model",
    task: str | None = None,
    model: str | None = None,
    con: Connection | None = None,
) -> pd.DataFrame:
    """Two runs step by step (`a`, `b` run ids: see `compare_runs`), or two models (or two prompts) on the
    same task, one row each: success rate (over fair_runs, with its 95% interval ci_low..ci_high; what was graded,
    the agent's own claim only where nothing graded a run), steps,
    duration, tokens, cost.

    by="model": runs of models `a` and `b` on the prompt `task`, or (task=None) on the prompts both
    have run. by="prompt": runs of prompts `a` and `b`, of `model` only when given. Finished runs only.
    """
    import pandas as pd  # loaded when a notebook first compares, not at `import agent.analysis`

    if _is_id(a) and _is_id(b):
        return compare_runs(int(a), int(b), con=con)
    col = _by(by)
    if not isinstance(a, str) or not isinstance(b, str) or not a or not b:
        raise ValueError(f"a and b must be two {by}s (strings), got {a!r} and {b!r}")
    if a == b:
        raise ValueError(f"a and b are the same {by} ({a!r}); pick two different ones")
    scope, params = "", [a, b]
    if by == "model":
        if task is not None:
            scope, params = "AND prompt = ?", [a, b, task]
        else:
            # "The same task": only prompts that both models have run.
            scope = ("AND prompt IN (SELECT prompt FROM runs WHERE model = ? AND status <> 'in_progress' "
                     "INTERSECT SELECT prompt FROM runs WHERE model = ? AND status <> 'in_progress')")
            params = [a, b, a, b]
    elif model is not None:
        scope, params = "AND model = ?", [a, b, model]

    # A success is what was graded (a person, a check, a judge), the agent's own claim only where nothing was.
    fair = "count(*) FILTER (WHERE graded_outcome IN ('success', 'agent_failure'))"
    wins = "count(*) FILTER (WHERE graded_outcome = 'success')"
    df = query_df(
        con,
        f"""
        SELECT {col} AS value, count(*) AS runs,
               {fair} AS fair_runs,
               {wins} AS successes,
               CASE WHEN {fair} > 0 THEN {wins} / {fair} END AS success_rate,
               {WILSON_SQL.format(n=fair, k=wins, sign="-")} AS ci_low,
               {WILSON_SQL.format(n=fair, k=wins, sign="+")} AS ci_high,
               avg(steps) AS avg_steps, avg(duration_ms) / 1000.0 AS avg_duration_s,
               avg(input_tokens) AS avg_input_tokens, avg(output_tokens) AS avg_output_tokens,
               avg(input_tokens + output_tokens) AS avg_tokens,
               avg(cost_usd) AS avg_cost_usd, sum(cost_usd) AS total_cost_usd,
               count(DISTINCT prompt) AS prompts, count(DISTINCT model) AS models
        FROM runs JOIN (SELECT run_id AS graded_run, outcome AS graded_outcome FROM v_run_grades) g
             ON g.graded_run = runs.id
        WHERE status <> 'in_progress' AND {col} IN (?, ?) {scope}
        GROUP BY {col}
        """,
        params,
    )
    out = df.set_index("value").reindex(pd.Index([a, b], name=by))
    for name in ("runs", "fair_runs", "successes", "prompts", "models"):
        out[name] = out[name].fillna(0).astype("int64")
    return out


def _is_id(value: Any) -> bool:
    """An integer run id (numpy integers from a DataFrame included), not a bool or a name."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def compare_runs(run_a: int, run_b: int, *, con: Connection | None = None) -> pd.DataFrame:
    """Two runs step by step: one row per step position, each run's goal, actions, results, page, tokens,
    time and screenshot side by side; `same` per row, `diverges` on the first step where they differ.

    `df.attrs["totals"]` holds the two runs' totals (status, stop reason, steps, tokens, cost, time) and
    `df.attrs["first_divergence"]` the step position (1-based) where they part, or None.
    """
    # pandas and duckdb (rows, snapshots) load when a notebook first compares, not at `import agent.analysis`.
    import pandas as pd

    from agent.log import rows as log_rows
    from agent.log.snapshots import data_dir_of

    ids = (check_run_id(run_a), check_run_id(run_b))
    with using(con) as c:
        found = [log_rows.fetch_run(c, rid) for rid in ids]
        base = data_dir_of(c) or data_dir()
    for rid, rows_found in zip(ids, found):
        if rows_found is None:
            raise ValueError(f"run {rid} is not in the run log; pick ids from runs().id")
    responses = [log_rows.run_response(rid, r) for rid, r in zip(ids, found) if r is not None]
    runs = [r.to_json() for r in responses]
    aligned = align(runs[0], runs[1])
    records = []
    for row in aligned["steps"]:
        record: dict[str, Any] = {"position": row["position"], "same": row["same"], "diverges": row["diverges"]}
        for side, response in zip(("a", "b"), responses):
            s = row[side] or {}
            # The file's own path (the JSON form has the URL that serves it instead).
            shot = response.history[row["position"] - 1].screenshot if row[side] else None
            duration = s.get("duration_ms")
            record |= {
                f"{side}_step": s.get("step"), f"{side}_goal": s.get("goal"),
                f"{side}_actions": "; ".join(s.get("actions") or []) if row[side] else None,
                f"{side}_results": "; ".join(s.get("results") or []) if row[side] else None,
                f"{side}_url": s.get("url"), f"{side}_input_tokens": s.get("input_tokens"),
                f"{side}_output_tokens": s.get("output_tokens"),
                f"{side}_duration_s": None if duration is None else duration / 1000,
                f"{side}_screenshot": screenshot_file(shot, base),
            }
        records.append(record)
    columns = ["position", "same", "diverges"] + [f"{side}_{name}" for side in ("a", "b") for name in (
        "step", "goal", "actions", "results", "url", "input_tokens", "output_tokens", "duration_s", "screenshot")]
    df = pd.DataFrame(records, columns=columns)
    df.attrs["totals"] = pd.DataFrame(
        {f"run {rid}": [aligned[side][key] for _label, key in TOTALS] for rid, side in zip(ids, ("a", "b"))},
        index=[label for label, _key in TOTALS])
    df.attrs["first_divergence"] = aligned["first_divergence"]
    return df


