"""The run log for analysts: a read-only connection on the latest snapshot, and pandas helpers.

    from agent import analysis as an
    an.ready()                      # connect; prints why and returns False when there is nothing yet
    an.runs()                       # one row per run (the v_runs view) as a DataFrame
    an.success_by_model()           # which provider/model succeeds most (what was graded, by whom)
    an.judge_agreement()            # each judge against people: agreement, Cohen's kappa, confusion matrix
    an.experiment_diff(7, 9)        # experiment 9 against 7, task by task: regressions first
    an.compare("gpt-4o-mini", "o3") # two models (or two prompts) on the same task, side by side
    an.compare(12, 15)              # two runs step by step, the first step where they diverge marked
    an.traces(12)                   # what the model saw and said in each call of run 12

    con = an.connect()              # one snapshot, held: several helpers see the very same log
    an.runs(con=con); an.steps(7, con=con)
    con.sql("SELECT model, avg(cost_usd) FROM v_runs GROUP BY model").df()
    con.close()

Readers never open the app's live database: they read the latest *snapshot* the app publishes
after each run, read-only, so a notebook left open never blocks or loses a write. Every helper
takes `con=`: a connection from `connect()`, which sees the log as of the moment it was opened
(connect again to see newer runs; close it when done), or None (the default), which opens the
latest snapshot of `data_dir()` for that one call and closes it: always the newest runs, nothing
left open. This module keeps no connection of its own. On a log with no runs each helper returns
an empty DataFrame with the same columns.

The data directory is `WORKBENCH_DATA_DIR`, else `data/` at the repo root (where `make run` keeps
it). Errors: `NoRunLog` (nothing published there yet; the message says what to do), `ValueError`
for a bad argument.

CLI: `python -m agent.log.analysis views-markdown` prints the views and their columns (for docs/run-log.md).

This module imports neither duckdb (it reads through agent.log.snapshots) nor, at import time,
pandas or matplotlib: `import agent.log.analysis` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent.log.compare import compare, compare_runs, most_common
from agent.log.experiment_analysis import (
    experiment_cells,
    experiment_comparisons,
    experiment_matrix,
    experiment_variants,
    experiments,
    latest_experiment,
)
from agent.log.grade_analysis import experiment_diff, gradings, judge_agreement, review_queue, run_grades
from agent.log.migrations import OUTCOME_SQL, WILSON_SQL
from agent.log.reading import (
    Connection,
    NoRunLog,
    check_run_id,
    connect,
    data_dir,
    exports_dir,
    query_df,
    ready,
    screenshot_file,
    using,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "VIEW_DOCS",
    "NoRunLog",
    "actions",
    "compare",
    "compare_runs",
    "connect",
    "cost_latency_by_model",
    "data_dir",
    "exports_dir",
    "failing_actions",
    "failure_step",
    "limit_hits",
    "llm_calls",
    "model_errors",
    "most_common",
    "ready",
    "run_timeline",
    "runs",
    "steps",
    "stop_reasons",
    "success_by_model",
    "success_overall",
    "time_split",
    "traces",
    "views_markdown",
    "webhooks",
    "experiments", "experiment_cells", "experiment_comparisons", "experiment_matrix", "experiment_variants",
    "latest_experiment",
    "experiment_diff", "gradings", "judge_agreement", "review_queue", "run_grades",
]

# What each view answers, for the generated table in docs/run-log.md (a view without an entry still appears).
VIEW_DOCS: dict[str, str] = {
    "v_runs": "one row per run: status, stop reason and outcome, prompt, provider, model, mode, steps, duration "
              "(split LLM / browser / own), tokens, cost, error, times",
    "v_steps": "one row per step, with its run's provider, model, status and stop reason; duration_ms = llm_ms + "
               "browser_ms + own_ms",
    "v_actions": "one row per executed action: name, params, success, error, who executed it",
    "v_llm_calls": "one row per LLM call: tokens, latency, cost, finish reason",
    "v_llm_traces": "one row per LLM call as made: system prompt, messages sent, reply and tool calls as written, "
                    "where the page observation sits; usage from llm_calls",
    "v_webhooks": "one row per webhook delivery attempt",
    "v_experiments": "one row per experiment: status, why it stopped, its task set and the version it ran, "
                     "progress (played, cancelled, running, waiting), passes, lost, each variant's passes out of "
                     "its tries",
    "v_experiment_cells": "one row per experiment cell (task × variant × repeat): its outcome (passed, failed, lost, "
                          "ungraded, or not played), grade and reason, why it was lost, its runs and their outcome",
    "v_experiment_matrix": "per experiment task × variant: passes out of the tries (lost runs count as failures), "
                           "graded, lost, ungraded, the cells' run ids",
    "v_experiment_variants": "per experiment variant: passes, failures, lost (and why), ungraded (and why), the "
                             "success rate as the mean over tasks (and without the lost runs), mean steps, tokens, "
                             "cost (NULL when a model has no price), cost per success, p50/p95 duration; the "
                             "interval and pass@k come from agent.stats (an.experiment_variants)",
    "v_task_sets": "one row per task set (bundled or stored): its latest version, task count, what made that "
                   "version (origin, note), how many versions, when",
    "v_task_set_tasks": "one row per task of every version of every task set: position, id, check kind, prompt, "
                        "the task's JSON",
    "v_run_experiments": "one row per run an experiment played (replays included): the experiment, its name, the "
                         "variant, task and repeat",
    "v_success_by_model": "finished runs per provider and model: success rate over the runs where the agent had a "
                          "fair chance (fair_runs, with its 95% Wilson interval) counting what was graded (a person's "
                          "review, a check, a judge; the agent's own claim only where nothing graded it: graded_by_*, "
                          "success_source), what the agents claimed beside it, runs stopped or lost to the "
                          "infrastructure apart, average cost, duration, steps",
    "v_gradings": "every grading of a run (a check's, a judge's, a person's review), never overwritten; latest: the "
                  "one of its grader (kind, grader, rubric) that counts",
    "v_run_grades": "per run, the grade it counts by: graded_by (person, then its experiment cell's check or judge, "
                    "else agent: its own claim), passed, the outcome that makes, whether its graders disagree, why "
                    "it is queued for review",
    "v_review_queue": "runs to review next, most useful first: graders that disagree, judged runs nobody reviewed, "
                      "failures of the agent",
    "v_judge_pairs": "per judge (model and rubric) and run both it and a person graded: the judge's latest verdict "
                     "and the people's (the latest review); an.judge_agreement gives kappa",
    "v_stop_reasons": "finished runs per provider, model, mode and stop reason, with its outcome",
    "v_model_errors": "failed LLM calls (the provider's failures, not the agent's) by provider, model and error; "
                      "calls asked again at a step (the playground) left out",
    "v_forks": "one row per fork beside its parent: the step forked at, status, stop reason, model, steps, LLM "
               "calls, cost and time of both",
    "v_failing_actions": "failed actions grouped by name and error, most frequent first",
}

# The stop reasons of a run cut short by one of its bounds.
LIMITS: tuple[str, ...] = ("max_steps", "timeout", "max_failures", "invalid_result")

# An action failed when it says so or carries an error (success is NULL for some actions).
_FAILED = "(a.error IS NOT NULL OR a.success = false)"

# ------------------------------------------------------------------ the views as DataFrames
def runs(*, con: Connection | None = None) -> pd.DataFrame:
    """One row per run (v_runs), oldest first, with the grade it counts by (v_run_grades): graded_by (person,
    judge, check, or agent: its own claim), graded_passed and graded_outcome."""
    return query_df(con, "SELECT v.*, g.graded_by, g.passed AS graded_passed, g.outcome AS graded_outcome "
                         "FROM v_runs v LEFT JOIN v_run_grades g ON g.run_id = v.id ORDER BY v.id")


def steps(run_id: int | None = None, *, con: Connection | None = None) -> pd.DataFrame:
    """One row per step (v_steps), of one run or all, in run order."""
    where, params = _run_filter(run_id)
    return query_df(con, f"SELECT * FROM v_steps {where} ORDER BY run_id, seq", params)


def actions(run_id: int | None = None, *, con: Connection | None = None) -> pd.DataFrame:
    """One row per executed action (v_actions), of one run or all, in run order."""
    where, params = _run_filter(run_id)
    return query_df(con, f"SELECT * FROM v_actions {where} ORDER BY run_id, seq, idx", params)


def llm_calls(run_id: int | None = None, *, con: Connection | None = None) -> pd.DataFrame:
    """One row per LLM call (v_llm_calls), of one run or all, in run order."""
    where, params = _run_filter(run_id)
    return query_df(con, f"SELECT * FROM v_llm_calls {where} ORDER BY run_id, seq, idx", params)


def webhooks(*, con: Connection | None = None) -> pd.DataFrame:
    """Every webhook delivery attempt (v_webhooks), oldest first."""
    return query_df(con, "SELECT * FROM v_webhooks ORDER BY id")


def success_by_model(*, con: Connection | None = None) -> pd.DataFrame:
    """Finished runs per provider and model: the success rate over fair runs (n = fair_runs, 95% interval
    ci_low..ci_high), runs stopped and infrastructure failures apart, cost, duration, steps."""
    return query_df(con, "SELECT * FROM v_success_by_model")


def success_overall(*, con: Connection | None = None) -> pd.DataFrame:
    """All finished runs in one row, counted as v_success_by_model counts them (what was graded, by whom, and
    what the agents claimed beside it)."""
    n = "count(*) FILTER (WHERE outcome IN ('success', 'agent_failure'))"
    k = "count(*) FILTER (WHERE outcome = 'success')"
    fair = "outcome IN ('success', 'agent_failure')"
    claimed_n = "count(*) FILTER (WHERE claimed_outcome IN ('success', 'agent_failure'))"
    claimed_k = "count(*) FILTER (WHERE claimed_outcome = 'success')"
    return query_df(
        con,
        f"""
        SELECT count(*) AS runs, {n} AS fair_runs, {k} AS successes,
               CASE WHEN {n} > 0 THEN {k} / {n} END AS success_rate,
               {WILSON_SQL.format(n=n, k=k, sign="-")} AS ci_low,
               {WILSON_SQL.format(n=n, k=k, sign="+")} AS ci_high,
               count(*) FILTER (WHERE outcome = 'agent_failure') AS agent_failures,
               count(*) FILTER (WHERE outcome = 'stopped') AS stopped,
               count(*) FILTER (WHERE outcome = 'infrastructure') AS infra_failures,
               count(*) FILTER (WHERE {fair} AND graded_by <> 'agent') AS graded_runs,
               count(*) FILTER (WHERE {fair} AND graded_by = 'agent') AS graded_by_agent,
               {claimed_k} AS claimed_successes,
               CASE WHEN {claimed_n} > 0 THEN {claimed_k} / {claimed_n} END AS claimed_success_rate
        FROM v_run_grades WHERE status <> 'in_progress'
        """,
    )


def stop_reasons(*, con: Connection | None = None) -> pd.DataFrame:
    """Finished runs per provider, model, mode and stop reason, with the outcome each counts as (v_stop_reasons)."""
    return query_df(con, "SELECT * FROM v_stop_reasons")


def model_errors(*, con: Connection | None = None) -> pd.DataFrame:
    """Failed LLM calls by provider, model and error: the provider's failures, apart from the agent's."""
    return query_df(con, "SELECT * FROM v_model_errors")


def failing_actions(*, con: Connection | None = None) -> pd.DataFrame:
    """Failed actions by name and error, most frequent first (v_failing_actions)."""
    return query_df(con, "SELECT * FROM v_failing_actions")


def _run_filter(run_id: int | None) -> tuple[str, list[Any]]:
    if run_id is None:
        return "", []
    return "WHERE run_id = ?", [check_run_id(run_id)]


# ------------------------------------------------------------------ the everyday questions
def cost_latency_by_model(*, con: Connection | None = None) -> pd.DataFrame:
    """Tokens and cost per step and per run, and LLM latency p50/p90/p99, per provider and model."""
    return query_df(
        con,
        """
        WITH r AS (
            -- sums of integers are 128-bit in DuckDB (floats in pandas): back to BIGINT
            SELECT provider, model, count(*) AS runs, sum(steps)::BIGINT AS steps,
                   sum(llm_calls)::BIGINT AS llm_calls, sum(input_tokens)::BIGINT AS input_tokens,
                   sum(output_tokens)::BIGINT AS output_tokens, sum(cost_usd) AS cost_usd
            FROM runs WHERE status <> 'in_progress'
            GROUP BY provider, model
        ), lat AS (
            SELECT r.provider, r.model,
                   quantile_cont(c.latency_ms, 0.5) AS llm_latency_p50_ms,
                   quantile_cont(c.latency_ms, 0.9) AS llm_latency_p90_ms,
                   quantile_cont(c.latency_ms, 0.99) AS llm_latency_p99_ms
            FROM llm_calls c JOIN runs r ON r.id = c.run_id
            WHERE r.status <> 'in_progress' AND c.purpose <> 'playground'  -- the run's own calls
            GROUP BY r.provider, r.model
        )
        SELECT r.provider, r.model, r.runs, r.steps, r.llm_calls,
               r.input_tokens, r.output_tokens, r.input_tokens + r.output_tokens AS total_tokens,
               (r.input_tokens + r.output_tokens) / nullif(r.steps, 0) AS tokens_per_step,
               (r.input_tokens + r.output_tokens) / r.runs AS tokens_per_run,
               r.cost_usd, r.cost_usd / nullif(r.steps, 0) AS cost_per_step_usd,
               r.cost_usd / r.runs AS cost_per_run_usd,
               lat.llm_latency_p50_ms, lat.llm_latency_p90_ms, lat.llm_latency_p99_ms
        FROM r LEFT JOIN lat ON lat.provider IS NOT DISTINCT FROM r.provider
                            AND lat.model IS NOT DISTINCT FROM r.model
        ORDER BY r.runs DESC, r.provider, r.model
        """,
    )


def time_split(*, con: Connection | None = None) -> pd.DataFrame:
    """Per step: time in the LLM, in the browser and our own, in ms (measured: duration_ms is their sum)."""
    return query_df(
        con,
        """
        SELECT s.run_id, s.seq, s.step, r.provider, r.model, s.executed_by,
               s.duration_ms, s.llm_ms, s.browser_ms, s.own_ms
        FROM steps s JOIN runs r ON r.id = s.run_id
        ORDER BY s.run_id, s.seq
        """,
    )


def limit_hits(*, con: Connection | None = None) -> pd.DataFrame:
    """Failed runs cut short by a bound: max_steps, timeout, max_failures, invalid_result (schema retries)."""
    listed = ", ".join(f"'{name}'" for name in LIMITS)
    return query_df(
        con,
        f"""
        SELECT id AS run_id, provider, model, prompt, stop_reason AS limit_hit,
               steps, duration_ms / 1000.0 AS duration_s, error, started_at
        FROM runs WHERE status = 'failure' AND stop_reason IN ({listed})
        ORDER BY run_id
        """,
    )


def failure_step(*, con: Connection | None = None) -> pd.DataFrame:
    """For each failed run, why it ended (stop reason, outcome) and the step where it went wrong.

    The step: for a model error, the first step whose model call failed; else the first step with a
    failed action; else the last step. `why` says which ("model error", "first action error", "last
    step", or "no step" for a run that ended before its first step, e.g. a missing key).
    """
    return query_df(
        con,
        f"""
        WITH failed AS (
            SELECT id, provider, model, prompt, error, stop_reason, {OUTCOME_SQL.format(r="runs")} AS outcome
            FROM runs WHERE status = 'failure'
        ), model_error AS (
            SELECT run_id, min(seq) AS seq FROM llm_calls WHERE error IS NOT NULL AND seq >= 0 GROUP BY run_id
        ), first_error AS (
            SELECT a.run_id, min(a.seq) AS seq FROM actions a WHERE {_FAILED} GROUP BY a.run_id
        ), last_step AS (
            SELECT run_id, max(seq) AS seq FROM steps GROUP BY run_id
        ), picked AS (
            SELECT f.*,
                   CASE WHEN f.stop_reason IN ('model_error', 'missing_key') AND m.seq IS NOT NULL THEN m.seq
                        ELSE coalesce(e.seq, l.seq) END AS seq,
                   CASE WHEN f.stop_reason IN ('model_error', 'missing_key') AND m.seq IS NOT NULL THEN 'model error'
                        WHEN e.seq IS NOT NULL THEN 'first action error'
                        WHEN l.seq IS NOT NULL THEN 'last step'
                        ELSE 'no step' END AS why
            FROM failed f LEFT JOIN model_error m ON m.run_id = f.id LEFT JOIN first_error e ON e.run_id = f.id
            LEFT JOIN last_step l ON l.run_id = f.id
        ), culprit AS (
            -- the step's first failed action, else its last action
            SELECT a.run_id, a.seq, a.name, a.error FROM actions a
            QUALIFY row_number() OVER (
                PARTITION BY a.run_id, a.seq
                ORDER BY {_FAILED} DESC, CASE WHEN {_FAILED} THEN a.idx ELSE -a.idx END) = 1
        ), call_error AS (
            SELECT run_id, seq, first(error ORDER BY idx) AS error FROM llm_calls WHERE error IS NOT NULL
            GROUP BY run_id, seq
        )
        SELECT p.id AS run_id, p.provider, p.model, p.prompt, p.stop_reason, p.outcome, p.seq, s.step, p.why,
               s.description, s.url,
               CASE WHEN p.why = 'model error' THEN 'model call' ELSE c.name END AS action,
               CASE WHEN p.why = 'model error' THEN ce.error ELSE c.error END AS action_error,
               p.error AS run_error, s.screenshot_path
        FROM picked p
        LEFT JOIN steps s ON s.run_id = p.id AND s.seq = p.seq
        LEFT JOIN culprit c ON c.run_id = p.id AND c.seq = p.seq
        LEFT JOIN call_error ce ON ce.run_id = p.id AND ce.seq = p.seq
        ORDER BY p.id
        """,
    )


# One run step by step (run_timeline); the run id is bound three times.
_TIMELINE_SQL = """
    WITH a AS (
        SELECT seq,
               string_agg(name || ' ' || left(params_json::VARCHAR, 80), '; ' ORDER BY idx) AS actions,
               string_agg(name || ': ' || error, '; ' ORDER BY idx) AS errors,
               count(*) FILTER (WHERE error IS NOT NULL OR success = false) AS failed_actions
        FROM actions WHERE run_id = ? GROUP BY seq
    ), c AS (
        SELECT seq, sum(input_tokens)::BIGINT AS input_tokens, sum(output_tokens)::BIGINT AS output_tokens,
               sum(cost_usd) AS cost_usd
        FROM llm_calls WHERE run_id = ? GROUP BY seq
    )
    SELECT s.run_id, s.seq, s.step, s.executed_by, s.description, s.url, s.title,
           coalesce(a.actions, '') AS actions, a.errors, coalesce(a.failed_actions, 0) AS failed_actions,
           s.duration_ms, s.llm_ms, s.browser_ms, s.own_ms,
           coalesce(c.input_tokens, 0) AS input_tokens, coalesce(c.output_tokens, 0) AS output_tokens,
           c.cost_usd, s.screenshot_path
    FROM steps s LEFT JOIN a ON a.seq = s.seq LEFT JOIN c ON c.seq = s.seq
    WHERE s.run_id = ?
    ORDER BY s.seq
"""


def run_timeline(run_id: int, *, con: Connection | None = None) -> pd.DataFrame:
    """One run step by step: goal, actions, errors, timings, tokens, and the screenshot file if it exists."""
    from agent.log.snapshots import data_dir_of  # duckdb: when called (see the module's docstring)

    rid = check_run_id(run_id)
    with using(con) as c:
        df = c.execute(_TIMELINE_SQL, [rid, rid, rid]).df()
        # Screenshot paths are kept relative to the data directory of the log being read.
        base = data_dir_of(c) or data_dir()
    df["screenshot"] = [screenshot_file(p, base) for p in df["screenshot_path"]]
    return df


# ------------------------------------------------------------------ one run's model calls
def traces(run_id: int, *, con: Connection | None = None) -> pd.DataFrame:
    """What the model saw and said in each call of a run (v_llm_traces), with the observation cut out."""
    # duckdb (rows) and pandas: when called, so that `import agent.analysis` stays instant.
    import pandas as pd

    from agent.log.rows import observation_of

    rid = check_run_id(run_id)
    df = query_df(con, "SELECT * FROM v_llm_traces WHERE run_id = ? ORDER BY seq, idx", [rid])

    def whole(value: Any) -> int | None:
        return None if pd.isna(value) else int(value)

    df["observation"] = [observation_of(m, whole(s), whole(e))
                         for m, s, e in zip(df["messages_json"], df["observation_start"], df["observation_end"])]
    return df


# ------------------------------------------------------------------ docs
def views_markdown() -> str:
    """The views and their columns as a markdown table, from a freshly migrated database."""
    from agent.log.schema import describe_views  # duckdb: when called

    lines = ["| view | what it answers | columns |", "|---|---|---|"]
    for name, cols in describe_views().items():
        columns = ", ".join(f"`{c}` {t.lower()}" for c, t in cols)
        lines.append(f"| `{name}` | {VIEW_DOCS.get(name, '')} | {columns} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m agent.log.analysis views-markdown`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m agent.log.analysis", description="The run log for analysts.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("views-markdown", help="print the views and their columns as a markdown table")
    args = parser.parse_args(argv)
    if args.command == "views-markdown":
        print(views_markdown())
    return 0

if __name__ == "__main__":
    sys.exit(main())

