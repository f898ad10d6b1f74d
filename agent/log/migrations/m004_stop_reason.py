"""Migration 004, as shipped (never edited): m004_stop_reason."""

from __future__ import annotations

from agent.log.migrations.base import Connection
from agent.log.migrations.sql import OUTCOME_SQL, RUN_DAY, WILSON_SQL

# Best guesses for runs recorded before stop_reason existed, from the words of their error.
_BACKFILL = """
    UPDATE runs SET stop_reason = CASE
        WHEN status = 'success' THEN 'done'
        WHEN error IN ('cancelled', 'shutdown', 'interrupted') THEN error
        WHEN error LIKE 'reached max_steps (%' THEN 'max_steps'
        WHEN error LIKE 'timed out after %' THEN 'timeout'
        WHEN error LIKE 'stopped after % consecutive failures%' AND error LIKE '%The model could not be used%'
            THEN 'model_error'
        WHEN error LIKE 'stopped after % consecutive failures%' THEN 'max_failures'
        WHEN error LIKE 'the result did not match the JSON schema after %' THEN 'invalid_result'
        WHEN error = 'the agent reported that it could not complete the task' THEN 'done_failure'
        WHEN error LIKE 'No API key for provider %' THEN 'missing_key'
        WHEN error LIKE 'browser error:%' OR error LIKE '%Chromium%' THEN 'browser_error'
        WHEN error LIKE 'internal error:%' OR error = 'the run ended without a result' THEN 'internal_error'
        WHEN mode = 'replay' THEN 'replay_failed'
        WHEN error LIKE '%model call failed%' OR error LIKE '%API refused the key%' THEN 'model_error'
        END
    WHERE status <> 'in_progress' AND stop_reason IS NULL
"""


def m004_stop_reason(db: Connection) -> None:
    """Why each run ended, as a typed column (programs and views stop matching error texts), and each
    step's own time, so that a step's duration is exactly llm_ms + browser_ms + own_ms."""
    db.execute("ALTER TABLE runs ADD COLUMN stop_reason VARCHAR")
    db.execute(_BACKFILL)
    db.execute("ALTER TABLE steps ADD COLUMN own_ms DOUBLE DEFAULT 0")
    db.execute("UPDATE steps SET own_ms = greatest(duration_ms - llm_ms - browser_ms, 0)")
    # Per run, the same split summed over its steps; own_ms also holds the time between steps.
    db.execute(
        f"""
        CREATE OR REPLACE VIEW v_runs AS
        SELECT r.id, r.task_id, r.status, r.stop_reason, {OUTCOME_SQL.format(r="r")} AS outcome,
               r.prompt, r.provider, r.model, r.mode, r.steps, r.actions, r.llm_calls,
               r.duration_ms / 1000.0 AS duration_s,
               coalesce(t.llm_ms, 0) AS llm_ms, coalesce(t.browser_ms, 0) AS browser_ms,
               greatest(coalesce(r.duration_ms, 0) - coalesce(t.llm_ms, 0) - coalesce(t.browser_ms, 0), 0) AS own_ms,
               r.input_tokens, r.output_tokens, r.cost_usd, r.is_successful, r.error,
               r.workflow_id, r.replayed_steps, r.healed_steps,
               r.started_at, r.finished_at, {RUN_DAY} AS day
        FROM runs r LEFT JOIN (
            SELECT run_id, sum(llm_ms) AS llm_ms, sum(browser_ms) AS browser_ms FROM steps GROUP BY run_id
        ) t ON t.run_id = r.id
        """
    )
    db.execute(
        f"""
        CREATE OR REPLACE VIEW v_steps AS
        SELECT s.run_id, s.seq, s.step, s.description, s.url, s.title, s.executed_by,
               s.actions, s.llm_calls, s.duration_ms, s.llm_ms, s.browser_ms, s.own_ms,
               s.started_at, s.finished_at, s.screenshot_path,
               r.provider, r.model, r.mode, r.status AS run_status, r.stop_reason, {RUN_DAY} AS day
        FROM steps s JOIN runs r ON r.id = s.run_id
        """
    )
    n = "count(*) FILTER (WHERE outcome IN ('success', 'agent_failure'))"
    k = "count(*) FILTER (WHERE outcome = 'success')"
    db.execute(
        f"""
        CREATE OR REPLACE VIEW v_success_by_model AS
        WITH o AS (SELECT *, {OUTCOME_SQL.format(r="runs")} AS outcome FROM runs WHERE status <> 'in_progress')
        SELECT provider, model,
               count(*) AS runs,
               {n} AS fair_runs,
               {k} AS successes,
               CASE WHEN {n} > 0 THEN {k} / {n} END AS success_rate,
               {WILSON_SQL.format(n=n, k=k, sign="-")} AS ci_low,
               {WILSON_SQL.format(n=n, k=k, sign="+")} AS ci_high,
               count(*) FILTER (WHERE outcome = 'agent_failure') AS agent_failures,
               count(*) FILTER (WHERE outcome = 'stopped') AS stopped,
               count(*) FILTER (WHERE outcome = 'infrastructure') AS infra_failures,
               avg(cost_usd) AS avg_cost_usd,
               avg(duration_ms) / 1000.0 AS avg_duration_s,
               avg(steps) AS avg_steps,
               sum(cost_usd) AS total_cost_usd
        FROM o
        GROUP BY provider, model
        ORDER BY runs DESC, provider, model
        """
    )
    db.execute(
        f"""
        CREATE VIEW v_stop_reasons AS
        SELECT provider, model, mode, stop_reason, {OUTCOME_SQL.format(r="runs")} AS outcome,
               count(*) AS runs, max(started_at) AS last_at
        FROM runs WHERE status <> 'in_progress'
        GROUP BY ALL
        ORDER BY runs DESC, provider, model, stop_reason
        """
    )
    # The provider's failures, apart from the agent's: failed calls by model and error.
    db.execute(
        """
        CREATE VIEW v_model_errors AS
        SELECT r.provider, r.model, c.purpose, c.error,
               count(*) AS calls, count(DISTINCT c.run_id) AS runs,
               sum(c.latency_ms) AS latency_ms, max(c.started_at) AS last_at
        FROM llm_calls c JOIN runs r ON r.id = c.run_id
        WHERE c.error IS NOT NULL
        GROUP BY ALL
        ORDER BY calls DESC, r.provider, r.model, c.error
        """
    )
