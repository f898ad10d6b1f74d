"""Migration 002, as shipped (never edited): m002_views."""

from __future__ import annotations

from agent.log.migrations.base import Connection
from agent.log.migrations.sql import RUN_DAY


def m002_views(db: Connection) -> None:
    """Views for the everyday questions; they live in the database so snapshots carry them."""
    db.execute(
        f"""
        CREATE VIEW v_runs AS
        SELECT r.id, r.task_id, r.status, r.prompt, r.provider, r.model, r.mode,
               r.steps, r.actions, r.llm_calls,
               r.duration_ms / 1000.0 AS duration_s,
               r.input_tokens, r.output_tokens, r.cost_usd, r.is_successful, r.error,
               r.workflow_id, r.replayed_steps, r.healed_steps,
               r.started_at, r.finished_at, {RUN_DAY} AS day
        FROM runs r
        """
    )
    db.execute(
        f"""
        CREATE VIEW v_steps AS
        SELECT s.run_id, s.seq, s.step, s.description, s.url, s.title, s.executed_by,
               s.actions, s.llm_calls, s.duration_ms, s.llm_ms, s.browser_ms,
               s.started_at, s.finished_at, s.screenshot_path,
               r.provider, r.model, r.mode, r.status AS run_status, {RUN_DAY} AS day
        FROM steps s JOIN runs r ON r.id = s.run_id
        """
    )
    db.execute(
        f"""
        CREATE VIEW v_actions AS
        SELECT a.run_id, a.seq, a.step, a.idx, a.name, a.success, a.is_done, a.error,
               a.executed_by, a.duration_ms, a.params_json, a.extracted_content,
               a.locators_json, a.created_at,
               r.provider, r.model, r.mode, r.status AS run_status, {RUN_DAY} AS day
        FROM actions a JOIN runs r ON r.id = a.run_id
        """
    )
    db.execute(
        f"""
        CREATE VIEW v_llm_calls AS
        SELECT c.run_id, c.seq, c.step, c.idx, c.provider, c.model, c.purpose,
               c.started_at, c.latency_ms, c.input_tokens, c.output_tokens, c.cost_usd,
               c.finish_reason, c.error,
               r.model AS run_model, r.status AS run_status, {RUN_DAY} AS day
        FROM llm_calls c JOIN runs r ON r.id = c.run_id
        """
    )
    db.execute(
        """
        CREATE VIEW v_webhooks AS
        SELECT w.id, w.run_id, w.event, w.url, w.attempt, w."at", w.status_code, w.ok, w.error,
               w.duration_ms, r.status AS run_status
        FROM webhook_deliveries w LEFT JOIN runs r ON r.id = w.run_id
        """
    )
    # Runs still in progress have no outcome yet: counting them would drag the rate down.
    db.execute(
        """
        CREATE VIEW v_success_by_model AS
        SELECT provider, model,
               count(*) AS runs,
               count(*) FILTER (WHERE status = 'success') AS successes,
               count(*) FILTER (WHERE status = 'success') / count(*) AS success_rate,
               avg(cost_usd) AS avg_cost_usd,
               avg(duration_ms) / 1000.0 AS avg_duration_s,
               avg(steps) AS avg_steps,
               sum(cost_usd) AS total_cost_usd
        FROM runs
        WHERE status <> 'in_progress'
        GROUP BY provider, model
        ORDER BY runs DESC, provider, model
        """
    )
    # An action failed when it says so or carries an error (success is NULL for some actions).
    db.execute(
        """
        CREATE VIEW v_failing_actions AS
        SELECT name, error,
               count(*) AS count,
               count(DISTINCT run_id) AS runs,
               max(created_at) AS last_at
        FROM actions
        WHERE success = false OR error IS NOT NULL
        GROUP BY name, error
        ORDER BY count DESC, name, error
        """
    )
