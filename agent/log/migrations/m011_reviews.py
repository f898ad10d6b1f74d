"""Migration 011, as shipped (never edited): m011_reviews."""

from __future__ import annotations

from agent.log.migrations.base import Connection
from agent.log.migrations.sql import OUTCOME_SQL, WILSON_SQL

# The judge a task named, as a grader: "provider/model", the provider's default model when the check named
# none (agent.providers.DEFAULT_MODELS when this migration was written: a shipped migration does not follow it).
_JUDGE_DEFAULTS = {"openai": "o3", "deepseek": "deepseek-chat", "anthropic": "claude-sonnet-4-5",
                   "google": "gemini-2.5-flash", "groq": "llama-3.3-70b-versatile", "mistral": "mistral-large-latest",
                   "together": "meta-llama/Llama-3.3-70B-Instruct-Turbo"}
_PROVIDER = "coalesce(t.task_json->>'$.check.provider', 'openai')"
_DEFAULT_MODEL = "CASE " + " ".join(f"WHEN {_PROVIDER} = '{p}' THEN '{m}'" for p, m in _JUDGE_DEFAULTS.items()) + " END"
_JUDGE = f"{_PROVIDER} || '/' || coalesce(t.task_json->>'$.check.model', {_DEFAULT_MODEL})"
# A rubric's hash: the first 16 hex digits of its SHA-256 (agent.experiments.checks.rubric_hash, in SQL).
_RUBRIC_HASH = "left(sha256(t.task_json->>'$.check.judge'), 16)"


def m011_reviews(db: Connection) -> None:
    """Every grading of a run kept beside the others (a check's, a judge's, a person's review), the grade each run
    counts by, the review queue, judges against people, and success views that count what was graded."""
    db.execute("CREATE SEQUENCE gradings_id START 1")
    # One row per grading, never updated: a person reviewing again, or a second judge, adds a row. The latest
    # row of each grader (kind, grader, rubric_hash) is the one that counts (v_gradings.latest).
    db.execute(
        """
        CREATE TABLE gradings (
            id            BIGINT PRIMARY KEY DEFAULT nextval('gradings_id'),
            run_id        BIGINT NOT NULL,
            kind          VARCHAR NOT NULL,   -- check | judge | person (a review)
            grader        VARCHAR NOT NULL,   -- check: its kind (equals...); judge: provider/model; person: the name
            rubric_hash   VARCHAR,            -- judge: the first 16 hex digits of its rubric's SHA-256
            passed        BOOLEAN,            -- NULL: no verdict (a judge that failed twice)
            score         DOUBLE,             -- 0..1
            comment       VARCHAR,            -- a person's comment; a check's or a judge's reason
            experiment_id BIGINT,             -- the experiment cell graded (NULL: a run of no experiment)
            task_key      VARCHAR,
            variant       VARCHAR,
            repeat        INTEGER,
            created_at    TIMESTAMPTZ NOT NULL,
            grading_json  JSON NOT NULL       -- the rest: a judge's rubric, where a reviewer's name came from
        )
        """
    )
    # Grades an older version kept only on the cells become gradings; a grade "by hand" is a person's review.
    db.execute("UPDATE experiment_cells SET graded_by = 'person' WHERE graded_by = 'hand'")
    db.execute(
        f"""
        INSERT INTO gradings (run_id, kind, grader, rubric_hash, passed, score, comment, experiment_id, task_key,
                              variant, repeat, created_at, grading_json)
        SELECT c.run_id, c.graded_by,
               CASE c.graded_by WHEN 'check' THEN coalesce(t.check_kind, 'check')
                                WHEN 'judge' THEN {_JUDGE} ELSE '(graded by hand)' END,
               CASE WHEN c.graded_by = 'judge' THEN {_RUBRIC_HASH} END,
               c.passed, c.score, c.grade_detail, c.experiment_id, c.task_key, c.variant, c.repeat,
               coalesce(c.graded_at, c.finished_at, c.started_at, now()),
               CASE WHEN c.graded_by = 'judge'
                    THEN json_object('source', 'upgrade', 'rubric', left(t.task_json->>'$.check.judge', 2000))
                    ELSE json_object('source', 'upgrade') END
        FROM experiment_cells c
        JOIN experiment_tasks t ON t.experiment_id = c.experiment_id AND t.task_key = c.task_key
        WHERE c.run_id IS NOT NULL AND c.passed IS NOT NULL AND c.graded_by IN ('check', 'judge', 'person')
        ORDER BY c.experiment_id, c.task_key, c.variant, c.repeat
        """
    )
    # Every grading, and whether it is its grader's latest of that run (the one that counts).
    db.execute(
        """
        CREATE VIEW v_gradings AS
        SELECT g.id, g.run_id, g.kind, g.grader, g.rubric_hash, g.passed,
               CASE WHEN g.passed THEN 'pass' WHEN NOT g.passed THEN 'fail' END AS verdict,
               g.score, g.comment, g.experiment_id, g.task_key, g.variant, g.repeat, g.created_at,
               row_number() OVER (PARTITION BY g.run_id, g.kind, g.grader, coalesce(g.rubric_hash, '')
                                  ORDER BY g.created_at DESC, g.id DESC) = 1 AS latest,
               g.grading_json
        FROM gradings g
        """
    )
    _run_grades(db)
    _queue_and_judges(db)
    _success_views(db)


def _run_grades(db: Connection) -> None:
    """v_run_grades: the grade each run counts by. People first (the latest review: reviewers who disagree are
    settled by the latest), then the grade its experiment cell holds (its check's or its judge's; a second judge
    asked later is compared, not counted), and only where nothing graded it, what the agent itself claimed."""
    db.execute(
        f"""
        CREATE VIEW v_run_grades AS
        WITH per_run AS (
            SELECT run_id,
                   count(*) FILTER (WHERE kind = 'person') AS reviewers,
                   count(*) FILTER (WHERE kind = 'person' AND passed) AS reviewers_pass,
                   arg_max(passed, id) FILTER (WHERE kind = 'person') AS person_passed,
                   count(*) FILTER (WHERE kind = 'judge') AS judgings,
                   count(*) FILTER (WHERE kind IN ('check', 'judge') AND passed) AS machine_passes,
                   count(*) FILTER (WHERE kind IN ('check', 'judge') AND NOT passed) AS machine_fails
            FROM v_gradings WHERE latest GROUP BY run_id
        ), graded AS (
            SELECT r.id AS run_id, r.status, r.status = 'success' AS claimed_success, r.stop_reason,
                   {OUTCOME_SQL.format(r="r")} AS claimed_outcome,
                   c.experiment_id, c.task_key, c.variant, c.repeat,
                   CASE WHEN r.status = 'in_progress' THEN NULL
                        WHEN coalesce(p.reviewers, 0) > 0 THEN 'person'
                        WHEN c.passed IS NOT NULL AND c.graded_by IN ('check', 'judge', 'person') THEN c.graded_by
                        ELSE 'agent' END AS graded_by,
                   CASE WHEN r.status = 'in_progress' THEN NULL
                        WHEN coalesce(p.reviewers, 0) > 0 THEN p.person_passed
                        WHEN c.passed IS NOT NULL AND c.graded_by IN ('check', 'judge', 'person') THEN c.passed
                        ELSE r.status = 'success' END AS passed,
                   coalesce(p.reviewers, 0) AS reviewers, coalesce(p.reviewers_pass, 0) AS reviewers_pass,
                   coalesce(p.judgings, 0) AS judgings,
                   coalesce(p.machine_passes, 0) > 0 AND coalesce(p.machine_fails, 0) > 0 AS graders_disagree
            FROM runs r LEFT JOIN per_run p ON p.run_id = r.id LEFT JOIN experiment_cells c ON c.run_id = r.id
        ), counted AS (
            SELECT *, CASE WHEN status = 'in_progress' THEN 'in_progress'
                           WHEN graded_by = 'agent' THEN claimed_outcome
                           WHEN passed THEN 'success' ELSE 'agent_failure' END AS outcome
            FROM graded
        )
        SELECT run_id, status, stop_reason, experiment_id, task_key, variant, repeat, graded_by, passed, outcome,
               claimed_success, claimed_outcome, reviewers, reviewers_pass, judgings, graders_disagree,
               CASE WHEN status = 'in_progress' OR reviewers > 0 THEN NULL
                    WHEN graders_disagree THEN 'disagreement'
                    WHEN judgings > 0 THEN 'judged'
                    WHEN outcome = 'agent_failure' THEN 'failure' END AS queue_reason
        FROM counted
        """
    )


def _queue_and_judges(db: Connection) -> None:
    """The review queue, and each judge's verdicts beside the people's on the runs both graded."""
    # Runs to look at next, most useful first: graders that disagree, then judged runs no person has reviewed,
    # then failures (the agent's own, not those of the infrastructure).
    db.execute(
        """
        CREATE VIEW v_review_queue AS
        SELECT g.run_id, g.queue_reason AS reason,
               CASE g.queue_reason WHEN 'disagreement' THEN 1 WHEN 'judged' THEN 2 ELSE 3 END AS priority,
               r.prompt, r.provider, r.model, r.status, r.stop_reason, g.graded_by, g.passed, g.outcome,
               g.experiment_id, g.task_key, g.variant, g.repeat, r.started_at, r.finished_at
        FROM v_run_grades g JOIN runs r ON r.id = g.run_id
        WHERE g.queue_reason IS NOT NULL
        """
    )
    # One row per judge (model and rubric) and run that the judge graded and a person reviewed: the judge's
    # latest verdict and the people's (the latest review). Cohen's kappa comes from agent.stats (an.judge_agreement).
    db.execute(
        """
        CREATE VIEW v_judge_pairs AS
        WITH people AS (
            SELECT run_id, arg_max(passed, id) AS person_passed, count(*) AS reviewers
            FROM v_gradings WHERE kind = 'person' AND latest GROUP BY run_id
        )
        SELECT j.grader AS judge, j.rubric_hash, j.run_id, j.experiment_id, j.task_key, j.variant, j.repeat,
               j.passed AS judge_passed, p.person_passed, p.reviewers, j.created_at AS judged_at
        FROM v_gradings j JOIN people p ON p.run_id = j.run_id
        WHERE j.kind = 'judge' AND j.latest AND j.passed IS NOT NULL AND p.person_passed IS NOT NULL
        """
    )


def _success_views(db: Connection) -> None:
    """Success rates that count what was graded (v_run_grades.outcome), saying by whom, beside what the agents
    claimed (the rate this view showed before: an agent that says "done" on a wrong answer is not a success)."""
    n = "count(*) FILTER (WHERE outcome IN ('success', 'agent_failure'))"
    k = "count(*) FILTER (WHERE outcome = 'success')"
    claimed_n = "count(*) FILTER (WHERE claimed_outcome IN ('success', 'agent_failure'))"
    claimed_k = "count(*) FILTER (WHERE claimed_outcome = 'success')"
    fair = "outcome IN ('success', 'agent_failure')"
    db.execute(
        f"""
        CREATE OR REPLACE VIEW v_success_by_model AS
        WITH o AS (
            SELECT r.provider, r.model, r.cost_usd, r.duration_ms, r.steps, g.outcome, g.graded_by, g.claimed_outcome
            FROM runs r JOIN v_run_grades g ON g.run_id = r.id WHERE r.status <> 'in_progress'
        )
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
               count(*) FILTER (WHERE {fair} AND graded_by = 'person') AS graded_by_person,
               count(*) FILTER (WHERE {fair} AND graded_by = 'judge') AS graded_by_judge,
               count(*) FILTER (WHERE {fair} AND graded_by = 'check') AS graded_by_check,
               count(*) FILTER (WHERE {fair} AND graded_by = 'agent') AS graded_by_agent,
               CASE WHEN count(*) FILTER (WHERE {fair} AND graded_by <> 'agent') = 0 THEN 'agent'
                    WHEN count(*) FILTER (WHERE {fair} AND graded_by = 'agent') = 0 THEN 'graded'
                    ELSE 'mixed' END AS success_source,
               {claimed_k} AS claimed_successes,
               CASE WHEN {claimed_n} > 0 THEN {claimed_k} / {claimed_n} END AS claimed_success_rate,
               avg(cost_usd) AS avg_cost_usd,
               avg(duration_ms) / 1000.0 AS avg_duration_s,
               avg(steps) AS avg_steps,
               sum(cost_usd) AS total_cost_usd
        FROM o
        GROUP BY provider, model
        ORDER BY runs DESC, provider, model
        """
    )
