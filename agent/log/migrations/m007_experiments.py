"""Migration 007, as shipped (never edited): m007_experiments."""

from __future__ import annotations

from agent.log.migrations.base import Connection
from agent.log.migrations.sql import OUTCOME_SQL, Z95


def m007_experiments(db: Connection) -> None:
    """Experiments: a task set × variants × repeats, each cell an ordinary run, and the views that grade them."""
    db.execute("CREATE SEQUENCE experiments_id START 1")
    db.execute(
        """
        CREATE TABLE experiments (
            id          BIGINT PRIMARY KEY DEFAULT nextval('experiments_id'),
            name        VARCHAR NOT NULL,
            status      VARCHAR NOT NULL,  -- running | done | cancelled | interrupted | failed
            task_set    VARCHAR,           -- a bundled set's name, or NULL for tasks given inline
            repeats     INTEGER NOT NULL,
            concurrency INTEGER NOT NULL,
            backend     VARCHAR NOT NULL,  -- local | ray
            created_at  TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            error       VARCHAR,
            spec_json   JSON NOT NULL      -- the request that created it (secrets stripped)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE experiment_tasks (
            experiment_id BIGINT NOT NULL,
            task_key      VARCHAR NOT NULL,  -- the task's id in its set
            position      INTEGER NOT NULL,
            title         VARCHAR,
            prompt        VARCHAR NOT NULL,
            check_kind    VARCHAR,           -- equals, contains, regex, number, json, page, judge; NULL: by hand
            task_json     JSON NOT NULL,
            PRIMARY KEY (experiment_id, task_key)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE experiment_variants (
            experiment_id  BIGINT NOT NULL,
            name           VARCHAR NOT NULL,
            position       INTEGER NOT NULL,
            overrides_json JSON NOT NULL,    -- run-request fields this variant sets
            PRIMARY KEY (experiment_id, name)
        )
        """
    )
    # One row per task × variant × repeat from the start (status pending): progress is a count, and a
    # restart knows exactly what is left.
    db.execute(
        """
        CREATE TABLE experiment_cells (
            experiment_id   BIGINT NOT NULL,
            task_key        VARCHAR NOT NULL,
            variant         VARCHAR NOT NULL,
            repeat          INTEGER NOT NULL,
            status          VARCHAR NOT NULL DEFAULT 'pending',  -- pending | running | done | cancelled | interrupted
            run_id          BIGINT,
            attempts        INTEGER NOT NULL DEFAULT 0,          -- an interrupted run is retried once
            passed          BOOLEAN,                             -- NULL: not graded (yet)
            score           DOUBLE,
            grade_detail    VARCHAR,
            graded_by       VARCHAR,                             -- check | judge | hand
            graded_at       TIMESTAMPTZ,
            page_value_json JSON,                                -- what a page check read off the final page
            started_at      TIMESTAMPTZ,
            finished_at     TIMESTAMPTZ,
            PRIMARY KEY (experiment_id, task_key, variant, repeat)
        )
        """
    )
    # A cell's run outcome is OUTCOME_SQL's: runs stopped from outside or lost to the infrastructure are
    # not graded (the agent had no fair chance) and are counted apart, by stop reason.
    db.execute(
        f"""
        CREATE VIEW v_experiment_cells AS
        SELECT c.experiment_id, c.task_key, t.title AS task_title, t.check_kind, t.position AS task_position,
               c.variant, v.position AS variant_position, c.repeat, c.status, c.run_id, c.attempts,
               c.passed, c.score, c.grade_detail, c.graded_by,
               r.status AS run_status, r.stop_reason, CASE WHEN r.id IS NOT NULL THEN {OUTCOME_SQL.format(r="r")} END
                   AS run_outcome, r.error AS run_error, r.steps, r.input_tokens, r.output_tokens,
               r.cost_usd, r.duration_ms, r.started_at, r.finished_at
        FROM experiment_cells c
        JOIN experiment_tasks t ON t.experiment_id = c.experiment_id AND t.task_key = c.task_key
        JOIN experiment_variants v ON v.experiment_id = c.experiment_id AND v.name = c.variant
        LEFT JOIN runs r ON r.id = c.run_id
        """
    )
    # Per task × variant: graded tries and passes, the pass@k / pass^k terms with k = the tries
    # (any try passed / every try passed: the unbiased estimators at k = n).
    db.execute(
        """
        CREATE VIEW v_experiment_matrix AS
        SELECT experiment_id, task_key, any_value(task_title) AS task_title, any_value(task_position) AS task_position,
               variant, any_value(variant_position) AS variant_position,
               count(*) AS cells,
               count(*) FILTER (WHERE status = 'done') AS finished,
               count(passed) AS graded,
               count(*) FILTER (WHERE passed) AS passes,
               CASE WHEN count(passed) > 0 THEN count(*) FILTER (WHERE passed) / count(passed) END AS pass_rate,
               list(run_id ORDER BY repeat) FILTER (WHERE run_id IS NOT NULL) AS run_ids
        FROM v_experiment_cells
        GROUP BY experiment_id, task_key, variant
        """
    )
    db.execute(
        f"""
        CREATE VIEW v_experiment_variants AS
        WITH per_variant AS (
            SELECT c.experiment_id, c.variant, any_value(c.variant_position) AS position,
                   count(*) AS cells,
                   count(c.run_id) FILTER (WHERE c.status = 'done') AS runs,
                   count(c.passed) AS graded,
                   count(*) FILTER (WHERE c.passed) AS passes,
                   avg(c.steps) FILTER (WHERE c.status = 'done') AS mean_steps,
                   sum(c.input_tokens) AS input_tokens, sum(c.output_tokens) AS output_tokens,
                   sum(c.cost_usd) AS cost_usd,
                   quantile_cont(c.duration_ms, 0.5) FILTER (WHERE c.status = 'done') / 1000.0 AS p50_duration_s,
                   quantile_cont(c.duration_ms, 0.95) FILTER (WHERE c.status = 'done') / 1000.0 AS p95_duration_s,
                   count(*) FILTER (WHERE c.run_outcome = 'infrastructure') AS infra_failures,
                   count(*) FILTER (WHERE c.run_outcome = 'stopped') AS stopped,
                   histogram(c.stop_reason) FILTER (WHERE c.stop_reason IS NOT NULL) AS stop_reasons
            FROM v_experiment_cells c GROUP BY c.experiment_id, c.variant
        ), per_task AS (
            SELECT experiment_id, variant,
                   avg(CASE WHEN passes > 0 THEN 1.0 ELSE 0.0 END) AS pass_at_k,
                   avg(CASE WHEN passes = graded THEN 1.0 ELSE 0.0 END) AS pass_hat_k,
                   min(graded) AS k
            FROM v_experiment_matrix WHERE graded > 0 GROUP BY experiment_id, variant
        )
        SELECT v.experiment_id, v.variant, v.position, v.cells, v.runs, v.graded, v.passes,
               CASE WHEN v.graded > 0 THEN v.passes / v.graded END AS success_rate,
               CASE WHEN v.graded > 0 THEN greatest(0.0, round(
                   (v.passes / v.graded + {Z95}^2 / (2 * v.graded)) / (1 + {Z95}^2 / v.graded)
                   - {Z95} * sqrt((v.passes / v.graded) * (1 - v.passes / v.graded) / v.graded
                                  + {Z95}^2 / (4 * v.graded * v.graded)) / (1 + {Z95}^2 / v.graded), 12)) END
                   AS wilson_low,
               CASE WHEN v.graded > 0 THEN least(1.0, round(
                   (v.passes / v.graded + {Z95}^2 / (2 * v.graded)) / (1 + {Z95}^2 / v.graded)
                   + {Z95} * sqrt((v.passes / v.graded) * (1 - v.passes / v.graded) / v.graded
                                  + {Z95}^2 / (4 * v.graded * v.graded)) / (1 + {Z95}^2 / v.graded), 12)) END
                   AS wilson_high,
               t.k, t.pass_at_k, t.pass_hat_k, v.mean_steps, v.input_tokens, v.output_tokens, v.cost_usd,
               CASE WHEN v.passes > 0 THEN v.cost_usd / v.passes END AS cost_per_success,
               v.p50_duration_s, v.p95_duration_s, v.infra_failures, v.stopped, v.stop_reasons
        FROM per_variant v LEFT JOIN per_task t USING (experiment_id, variant)
        """
    )
    db.execute(
        """
        CREATE VIEW v_experiments AS
        SELECT e.id, e.name, e.status, e.task_set, e.repeats, e.concurrency, e.backend, e.created_at,
               e.finished_at, e.error,
               count(c.repeat) AS total,
               count(*) FILTER (WHERE c.status IN ('done', 'cancelled', 'interrupted')) AS done,
               count(*) FILTER (WHERE c.status = 'running') AS running,
               count(*) FILTER (WHERE c.passed) AS passes,
               count(c.passed) AS graded
        FROM experiments e LEFT JOIN experiment_cells c ON c.experiment_id = e.id
        GROUP BY ALL
        """
    )
