"""Migration 008, as shipped (never edited): m008_experiment_outcomes."""

from __future__ import annotations

from agent.log.migrations.base import Connection
from agent.log.migrations.sql import OUTCOME_SQL

# Why a cell's run is lost to the experiment (no fair chance for the agent), from the run's stop reason and,
# for a provider failure, its last failed call's kind (agent.engine.llm's "<kind>: <message>"): a rate limit or
# a server error may pass and is played again; a refused key is lost at once. A failure the variant caused
# (a context window, a bad request, an unknown model, images refused) is no loss: it is the variant's failure.
_LOST_REASON_BACKFILL = """CASE
    WHEN {r}.stop_reason IN ('cancelled', 'interrupted', 'shutdown', 'missing_key', 'browser_error', 'internal_error')
        THEN {r}.stop_reason
    WHEN {r}.stop_reason = 'model_error' AND {last_error} LIKE 'rate_limit:%' THEN 'rate_limit'
    WHEN {r}.stop_reason = 'model_error' AND {last_error} LIKE 'server:%' THEN 'server_error'
    WHEN {r}.stop_reason = 'model_error' AND {last_error} LIKE 'auth:%' THEN 'auth'
    END"""


def m008_experiment_outcomes(db: Connection) -> None:
    """Experiments whose verdicts can be trusted (issue 21): every cell ends passed, failed, lost or ungraded;
    a success rate is the mean over tasks; costs are unknown (NULL), never 0, when a model has no price."""
    # A run's cost is NULL when a call that used tokens had no price (agent.models.Usage): a model litellm
    # cannot price no longer shows as costing $0. Past runs with such calls become NULL too.
    db.execute("ALTER TABLE runs ALTER COLUMN cost_usd DROP NOT NULL")
    db.execute("""
        UPDATE runs SET cost_usd = NULL WHERE id IN (
            SELECT run_id FROM llm_calls WHERE cost_usd IS NULL AND (input_tokens > 0 OR output_tokens > 0)
            AND purpose NOT IN ('judge', 'playground'))""")
    # Why an experiment stopped (done, cancelled, budget, failed), beside its status.
    db.execute("ALTER TABLE experiments ADD COLUMN stop_reason VARCHAR")
    db.execute("UPDATE experiments SET stop_reason = status WHERE status <> 'running'")
    # A cell lost to the infrastructure or stopped from outside (after its replays) counts as a failure of
    # its variant, and says why (_LOST_REASON_BACKFILL); a cell with a run but no grade says why not
    # (judge_error: the judge failed twice; no_check: the task is graded by hand).
    db.execute("ALTER TABLE experiment_cells ADD COLUMN lost_reason VARCHAR")
    db.execute("ALTER TABLE experiment_cells ADD COLUMN ungraded_reason VARCHAR")
    # Every run a cell played, replays included (run_id is the last): what it cost, what the viewer links.
    db.execute("ALTER TABLE experiment_cells ADD COLUMN attempt_run_ids BIGINT[]")
    db.execute("UPDATE experiment_cells SET attempt_run_ids = [run_id] WHERE run_id IS NOT NULL")
    last_error = ("(SELECT max_by(l.error, l.seq * 1000 + l.idx) FROM llm_calls l WHERE l.run_id = r.id "
                  "AND l.error IS NOT NULL AND l.purpose <> 'judge')")
    db.execute(f"""
        UPDATE experiment_cells SET lost_reason = coalesce(
            (SELECT {_LOST_REASON_BACKFILL.format(r="r", last_error=last_error)} FROM runs r
             WHERE r.id = experiment_cells.run_id), CASE WHEN status = 'interrupted' THEN 'interrupted' END)
        WHERE status IN ('done', 'interrupted') AND passed IS NULL""")
    db.execute("""UPDATE experiment_cells SET status = 'done' WHERE status = 'interrupted'""")
    # A failed run left ungraded for a reason the variant caused (a context window, a refused request) is the
    # variant's failure: its check would have found no result.
    db.execute("""
        UPDATE experiment_cells SET passed = false, score = 0.0, graded_by = 'check',
            grade_detail = 'no result (the run failed: ' || r.stop_reason || '); graded when the run log was upgraded'
        FROM runs r, experiment_tasks t
        WHERE r.id = experiment_cells.run_id AND t.experiment_id = experiment_cells.experiment_id
          AND t.task_key = experiment_cells.task_key AND experiment_cells.status = 'done'
          AND experiment_cells.passed IS NULL AND experiment_cells.lost_reason IS NULL AND r.status = 'failure'
          AND t.check_kind IS NOT NULL""")
    db.execute("""
        UPDATE experiment_cells SET ungraded_reason = CASE WHEN t.check_kind = 'judge' THEN 'judge_error'
                                                           ELSE 'no_check' END
        FROM experiment_tasks t
        WHERE t.experiment_id = experiment_cells.experiment_id AND t.task_key = experiment_cells.task_key
          AND experiment_cells.status = 'done' AND experiment_cells.passed IS NULL
          AND experiment_cells.lost_reason IS NULL""")
    # The outcome of a cell: passed, failed (including the variant's own failures: a context window, a bad
    # request), lost (counted as a failure, shown apart), ungraded (no check, or the judge failed), or not
    # played yet (pending, running) or ever (cancelled with the experiment).
    db.execute(
        f"""
        CREATE OR REPLACE VIEW v_experiment_cells AS
        SELECT c.experiment_id, c.task_key, t.title AS task_title, t.check_kind, t.position AS task_position,
               c.variant, v.position AS variant_position, c.repeat, c.status,
               CASE WHEN c.status IN ('pending', 'running', 'cancelled') THEN c.status
                    WHEN c.lost_reason IS NOT NULL THEN 'lost'
                    WHEN c.passed THEN 'passed' WHEN NOT c.passed THEN 'failed'
                    ELSE 'ungraded' END AS outcome,
               c.run_id, c.attempts, c.attempt_run_ids, c.passed, c.score, c.grade_detail, c.graded_by,
               c.lost_reason, c.ungraded_reason,
               r.status AS run_status, r.stop_reason, CASE WHEN r.id IS NOT NULL THEN {OUTCOME_SQL.format(r="r")} END
                   AS run_outcome, r.error AS run_error, r.steps, r.input_tokens, r.output_tokens,
               r.cost_usd, r.duration_ms, r.started_at, r.finished_at
        FROM experiment_cells c
        JOIN experiment_tasks t ON t.experiment_id = c.experiment_id AND t.task_key = c.task_key
        JOIN experiment_variants v ON v.experiment_id = c.experiment_id AND v.name = c.variant
        LEFT JOIN runs r ON r.id = c.run_id
        """
    )
    # Per task × variant: `tries` (passed, failed or lost) is a task's denominator; `graded` leaves the lost out.
    db.execute(
        """
        CREATE OR REPLACE VIEW v_experiment_matrix AS
        SELECT experiment_id, task_key, any_value(task_title) AS task_title, any_value(task_position) AS task_position,
               variant, any_value(variant_position) AS variant_position,
               count(*) AS cells,
               count(*) FILTER (WHERE outcome IN ('passed', 'failed', 'lost', 'ungraded')) AS played,
               count(*) FILTER (WHERE outcome = 'passed') AS passes,
               count(*) FILTER (WHERE outcome = 'failed') AS failures,
               count(*) FILTER (WHERE outcome = 'lost') AS lost,
               count(*) FILTER (WHERE outcome = 'ungraded') AS ungraded,
               count(*) FILTER (WHERE outcome IN ('passed', 'failed', 'lost')) AS tries,
               count(*) FILTER (WHERE outcome IN ('passed', 'failed')) AS graded,
               count(*) FILTER (WHERE outcome = 'passed')
                   / nullif(count(*) FILTER (WHERE outcome IN ('passed', 'failed', 'lost')), 0) AS pass_rate,
               count(*) FILTER (WHERE outcome = 'passed')
                   / nullif(count(*) FILTER (WHERE outcome IN ('passed', 'failed')), 0) AS pass_rate_excluding_lost,
               list(run_id ORDER BY repeat) FILTER (WHERE run_id IS NOT NULL) AS run_ids
        FROM v_experiment_cells
        GROUP BY experiment_id, task_key, variant
        """
    )
    # Per variant, the counts and the means over tasks; the interval, pass@k and pass^k come from
    # agent.stats over v_experiment_matrix (the notebooks' an.experiment_variants adds them).
    db.execute(
        """
        CREATE OR REPLACE VIEW v_experiment_variants AS
        WITH per_variant AS (
            SELECT c.experiment_id, c.variant, any_value(c.variant_position) AS position,
                   count(*) AS cells,
                   count(*) FILTER (WHERE c.outcome IN ('passed', 'failed', 'lost', 'ungraded')) AS runs,
                   count(*) FILTER (WHERE c.outcome = 'passed') AS passes,
                   count(*) FILTER (WHERE c.outcome = 'failed') AS failures,
                   count(*) FILTER (WHERE c.outcome IN ('passed', 'failed')) AS graded,
                   count(*) FILTER (WHERE c.outcome = 'lost') AS lost,
                   histogram(c.lost_reason) FILTER (WHERE c.outcome = 'lost') AS lost_reasons,
                   count(*) FILTER (WHERE c.outcome = 'ungraded') AS ungraded,
                   histogram(c.ungraded_reason) FILTER (WHERE c.outcome = 'ungraded') AS ungraded_reasons,
                   count(*) FILTER (WHERE c.status = 'cancelled') AS cancelled,
                   avg(c.steps) FILTER (WHERE c.run_id IS NOT NULL AND c.status = 'done') AS mean_steps,
                   sum(c.input_tokens) AS input_tokens, sum(c.output_tokens) AS output_tokens,
                   count(*) FILTER (WHERE c.run_id IS NOT NULL AND c.cost_usd IS NULL) AS unpriced_runs,
                   sum(c.cost_usd) AS known_cost_usd,
                   quantile_cont(c.duration_ms, 0.5) FILTER (WHERE c.status = 'done') / 1000.0 AS p50_duration_s,
                   quantile_cont(c.duration_ms, 0.95) FILTER (WHERE c.status = 'done') / 1000.0 AS p95_duration_s,
                   histogram(c.stop_reason) FILTER (WHERE c.stop_reason IS NOT NULL) AS stop_reasons
            FROM v_experiment_cells c GROUP BY c.experiment_id, c.variant
        ), per_task AS (
            SELECT experiment_id, variant, count(*) FILTER (WHERE tries > 0) AS tasks,
                   avg(pass_rate) AS success_rate, avg(pass_rate_excluding_lost) AS success_rate_excluding_lost
            FROM v_experiment_matrix GROUP BY experiment_id, variant
        )
        SELECT v.experiment_id, v.variant, v.position, v.cells, v.runs, v.passes, v.failures, v.graded, v.lost,
               v.lost_reasons, v.ungraded, v.ungraded_reasons, v.cancelled, t.tasks,
               t.success_rate, t.success_rate_excluding_lost,
               v.mean_steps, v.input_tokens, v.output_tokens,
               CASE WHEN v.unpriced_runs = 0 THEN coalesce(v.known_cost_usd, 0) END AS cost_usd,
               v.unpriced_runs,
               CASE WHEN v.unpriced_runs = 0 AND v.passes > 0 THEN coalesce(v.known_cost_usd, 0) / v.passes END
                   AS cost_per_success,
               v.p50_duration_s, v.p95_duration_s, v.stop_reasons
        FROM per_variant v LEFT JOIN per_task t USING (experiment_id, variant)
        """
    )
    # One row per experiment: progress (`done` counts cancelled cells too; `played` only those with an
    # outcome), why it stopped, and each variant's passes out of its tries, in order.
    db.execute(
        """
        CREATE OR REPLACE VIEW v_experiments AS
        WITH cells AS (
            SELECT experiment_id, count(*) AS total,
                   count(*) FILTER (WHERE status IN ('done', 'cancelled', 'interrupted')) AS done,
                   count(*) FILTER (WHERE status IN ('done', 'interrupted')) AS played,
                   count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                   count(*) FILTER (WHERE status = 'running') AS running,
                   count(*) FILTER (WHERE status = 'pending') AS pending,
                   count(*) FILTER (WHERE passed AND lost_reason IS NULL) AS passes,
                   count(*) FILTER (WHERE passed IS NOT NULL AND lost_reason IS NULL) AS graded,
                   count(*) FILTER (WHERE lost_reason IS NOT NULL) AS lost
            FROM experiment_cells GROUP BY experiment_id
        ), per_variant AS (
            SELECT experiment_id, list({'variant': variant, 'passes': passes, 'tries': tries} ORDER BY position)
                       AS variant_passes
            FROM (SELECT experiment_id, variant, any_value(variant_position) AS position, sum(passes)::BIGINT AS passes,
                         sum(tries)::BIGINT AS tries
                  FROM v_experiment_matrix GROUP BY experiment_id, variant)
            GROUP BY experiment_id
        )
        SELECT e.id, e.name, e.status, e.stop_reason, e.task_set, e.repeats, e.concurrency, e.backend,
               e.created_at, e.finished_at, e.error,
               coalesce(c.total, 0) AS total, coalesce(c.done, 0) AS done, coalesce(c.played, 0) AS played,
               coalesce(c.cancelled, 0) AS cancelled, coalesce(c.running, 0) AS running,
               coalesce(c.pending, 0) AS pending, coalesce(c.passes, 0) AS passes, coalesce(c.graded, 0) AS graded,
               coalesce(c.lost, 0) AS lost, v.variant_passes
        FROM experiments e LEFT JOIN cells c ON c.experiment_id = e.id LEFT JOIN per_variant v ON v.experiment_id = e.id
        """
    )
