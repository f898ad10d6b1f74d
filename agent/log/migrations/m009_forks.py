"""Migration 009, as shipped (never edited): m009_forks."""

from __future__ import annotations

from agent.log.migrations.base import Connection
from agent.log.migrations.sql import RUN_DAY


def m009_forks(db: Connection) -> None:
    """Forks and the step playground (issue 22): a fork's parent run and the step the agent took over at;
    calls asked again at a step (llm_calls purpose 'playground', at the step's number and a negative seq, so
    no step of the run owns them) kept out of what counts a run's own calls."""
    db.execute("ALTER TABLE runs ADD COLUMN parent_run_id BIGINT")
    db.execute("ALTER TABLE runs ADD COLUMN forked_at_step INTEGER")
    # As m004 made it, without the playground's calls: they are the prompt engineer's, made with any
    # model, and would show under the run's provider and model.
    db.execute(
        """
        CREATE OR REPLACE VIEW v_model_errors AS
        SELECT r.provider, r.model, c.purpose, c.error,
               count(*) AS calls, count(DISTINCT c.run_id) AS runs,
               sum(c.latency_ms) AS latency_ms, max(c.started_at) AS last_at
        FROM llm_calls c JOIN runs r ON r.id = c.run_id
        WHERE c.error IS NOT NULL AND c.purpose <> 'playground'
        GROUP BY ALL
        ORDER BY calls DESC, r.provider, r.model, c.error
        """
    )
    # Each fork beside its parent: what the new settings changed (status, steps, calls, cost, time).
    db.execute(
        f"""
        CREATE VIEW v_forks AS
        SELECT r.id AS run_id, r.parent_run_id, r.forked_at_step, r.status, r.stop_reason, r.provider, r.model,
               r.steps, r.llm_calls, r.cost_usd, r.duration_ms / 1000.0 AS duration_s,
               p.status AS parent_status, p.stop_reason AS parent_stop_reason, p.provider AS parent_provider,
               p.model AS parent_model, p.steps AS parent_steps, p.llm_calls AS parent_llm_calls,
               p.cost_usd AS parent_cost_usd, p.duration_ms / 1000.0 AS parent_duration_s,
               r.started_at, {RUN_DAY} AS day
        FROM runs r LEFT JOIN runs p ON p.id = r.parent_run_id
        WHERE r.parent_run_id IS NOT NULL
        """
    )
