"""Numbered migrations of the run log schema, applied in order when the store opens.

Each migration is a small named function recorded in `_migrations` once applied. A migration is
never edited once shipped: a schema change is a new function at the end of the list (that is how a
database created by any earlier version reaches the current schema). Comments say why a column or
view exists, because the schema is read by analysts more often than by us.

This module does not import duckdb: it receives a connection from the store (or from
`agent.log.schema`, which describes a freshly migrated in-memory database).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol


class Connection(Protocol):
    """The part of a DuckDB connection that migrations use."""

    def execute(self, query: str, parameters: Any = ...) -> Any:
        ...


class MigrationError(RuntimeError):
    """The database cannot be brought to the schema this code expects."""


Migration = Callable[[Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration (its name is what gets recorded)."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: Connection) -> None:
    """The tables: one per noun, flat typed columns for filters, *_json for the rest."""
    # Ids come from sequences so that ids are stable across snapshots and exports.
    for seq in ("tasks_id", "runs_id", "workflows_id", "webhook_deliveries_id"):
        db.execute(f"CREATE SEQUENCE {seq} START 1")
    # A task is what was asked; a run is one attempt at it (a task can be re-run or replayed).
    db.execute(
        """
        CREATE TABLE tasks (
            id           BIGINT PRIMARY KEY DEFAULT nextval('tasks_id'),
            prompt       VARCHAR NOT NULL,
            request_json JSON NOT NULL,
            created_at   TIMESTAMPTZ NOT NULL,
            workflow_id  BIGINT            -- the cached workflow saved from this task, if any
        )
        """
    )
    # Running totals (steps, actions, llm_calls, tokens, cost) are updated with every step so that
    # a run in progress, or one cut short by a crash, still shows what it did.
    db.execute(
        """
        CREATE TABLE runs (
            id             BIGINT PRIMARY KEY DEFAULT nextval('runs_id'),
            task_id        BIGINT NOT NULL,
            status         VARCHAR NOT NULL CHECK (status IN ('success', 'failure', 'in_progress')),
            error          VARCHAR,
            mode           VARCHAR NOT NULL CHECK (mode IN ('agent', 'replay')),
            provider       VARCHAR,
            model          VARCHAR,     -- as requested, e.g. 'o3'
            litellm_model  VARCHAR,     -- as sent to litellm, e.g. 'openai/o3'
            prompt         VARCHAR,
            created_at     TIMESTAMPTZ NOT NULL,  -- accepted (a background run may wait)
            started_at     TIMESTAMPTZ NOT NULL,  -- the engine started
            finished_at    TIMESTAMPTZ,
            duration_ms    DOUBLE,
            steps          INTEGER NOT NULL DEFAULT 0,
            actions        INTEGER NOT NULL DEFAULT 0,
            llm_calls      INTEGER NOT NULL DEFAULT 0,
            input_tokens   BIGINT NOT NULL DEFAULT 0,
            output_tokens  BIGINT NOT NULL DEFAULT 0,
            cost_usd       DOUBLE NOT NULL DEFAULT 0,
            is_done        BOOLEAN NOT NULL DEFAULT false,
            is_successful  BOOLEAN,
            result_json    JSON,
            request_json   JSON NOT NULL,  -- secrets stripped before writing
            workflow_id    BIGINT,
            replayed_steps INTEGER NOT NULL DEFAULT 0,
            healed_steps   INTEGER NOT NULL DEFAULT 0,
            webhook_url    VARCHAR
        )
        """
    )
    # `seq` is the step's position in the run's history: it orders and joins steps, actions and
    # llm calls even if the engine repeats a step number (a healed step keeps its number).
    db.execute(
        """
        CREATE TABLE steps (
            run_id          BIGINT NOT NULL,
            seq             INTEGER NOT NULL,
            step            INTEGER NOT NULL,
            description     VARCHAR,
            url             VARCHAR,
            title           VARCHAR,
            screenshot_path VARCHAR,   -- a file under <data_dir>/screenshots, never image bytes
            started_at      TIMESTAMPTZ,
            finished_at     TIMESTAMPTZ NOT NULL,
            duration_ms     DOUBLE NOT NULL,
            llm_ms          DOUBLE NOT NULL,
            browser_ms      DOUBLE NOT NULL,
            executed_by     VARCHAR NOT NULL,  -- agent | replay | heal
            actions         INTEGER NOT NULL,
            llm_calls       INTEGER NOT NULL
        )
        """
    )
    # No indexes on the big tables: DuckDB's zone maps make `run_id = ?` cheap on insert-ordered
    # data, and an ART index would tax every insert.
    db.execute(
        """
        CREATE TABLE actions (
            run_id            BIGINT NOT NULL,
            seq               INTEGER NOT NULL,
            step              INTEGER NOT NULL,
            idx               INTEGER NOT NULL,   -- position within the step
            name              VARCHAR NOT NULL,
            params_json       JSON NOT NULL,
            success           BOOLEAN,
            is_done           BOOLEAN NOT NULL,
            error             VARCHAR,
            extracted_content VARCHAR,
            include_in_memory BOOLEAN NOT NULL,
            locators_json     JSON,     -- how to find the element again (replay)
            data_json         JSON,     -- the parsed `done` result in JSON mode
            executed_by       VARCHAR NOT NULL,
            duration_ms       DOUBLE NOT NULL,
            created_at        TIMESTAMPTZ NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE llm_calls (
            run_id        BIGINT NOT NULL,
            seq           INTEGER NOT NULL,
            step          INTEGER NOT NULL,
            idx           INTEGER NOT NULL,
            model         VARCHAR NOT NULL,
            provider      VARCHAR NOT NULL,
            purpose       VARCHAR NOT NULL,   -- step | extract | heal | params
            started_at    TIMESTAMPTZ NOT NULL,
            latency_ms    DOUBLE NOT NULL,
            input_tokens  BIGINT NOT NULL,
            output_tokens BIGINT NOT NULL,
            cost_usd      DOUBLE,             -- NULL when litellm does not know the price
            finish_reason VARCHAR,
            error         VARCHAR
        )
        """
    )
    # A workflow is never overwritten: healing or editing saves a new version of the same id.
    db.execute(
        """
        CREATE TABLE workflows (
            id                  BIGINT NOT NULL,
            version             INTEGER NOT NULL,
            name                VARCHAR,
            prompt              VARCHAR,
            document_json       JSON NOT NULL,
            created_at          TIMESTAMPTZ NOT NULL,
            source_run_id       BIGINT,
            healed_from_version INTEGER,
            PRIMARY KEY (id, version)
        )
        """
    )
    # Every attempt is a row, so failed deliveries and their retries can be audited.
    db.execute(
        """
        CREATE TABLE webhook_deliveries (
            id          BIGINT PRIMARY KEY DEFAULT nextval('webhook_deliveries_id'),
            run_id      BIGINT NOT NULL,
            url         VARCHAR NOT NULL,
            attempt     INTEGER NOT NULL,
            "at"        TIMESTAMPTZ NOT NULL,  -- quoted: AT is a keyword
            status_code INTEGER,
            ok          BOOLEAN NOT NULL,
            error       VARCHAR,
            duration_ms DOUBLE NOT NULL,
            event       VARCHAR NOT NULL
        )
        """
    )


# `day` is the run's UTC start date, whatever the reader's TimeZone setting: the same run always
# falls on the same day in views and in the Parquet export.
RUN_DAY = "CAST(timezone('UTC', r.started_at) AS DATE)"


@migration
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


@migration
def m003_run_notes(db: Connection) -> None:
    """What the user should know about a run that is neither its result nor its error (e.g. the
    provider refused the screenshots, the model lacks function calling): a JSON list of strings."""
    db.execute("ALTER TABLE runs ADD COLUMN notes_json JSON")


# How each stop reason counts (agent.models.StopReason). A success rate is over the runs where the
# agent had a fair chance: success and agent failures; runs stopped from outside (cancelled,
# interrupted, shutdown) and infrastructure failures (the provider, a missing key, the browser, our
# own bugs) are counted apart. A finished run without a stop reason (none could be inferred) counts
# as an agent failure.
OUTCOME_SQL = """CASE
    WHEN {r}.status = 'in_progress' THEN 'in_progress'
    WHEN {r}.status = 'success' THEN 'success'
    WHEN {r}.stop_reason IN ('cancelled', 'interrupted', 'shutdown') THEN 'stopped'
    WHEN {r}.stop_reason IN ('model_error', 'missing_key', 'browser_error', 'internal_error') THEN 'infrastructure'
    ELSE 'agent_failure' END"""
# The 95% Wilson score interval of k successes in n runs (z = 1.96): honest for small n and rates near 0 or 1.
WILSON_SQL = """CASE WHEN {n} > 0 THEN greatest(0.0, least(1.0,
    ({k} / {n} + 1.9208 / {n} {sign} 1.96 * sqrt({k} / {n} * (1 - {k} / {n}) / {n} + 0.9604 / ({n} * {n})))
    / (1 + 3.8416 / {n}))) END"""
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


@migration
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


@migration
def m005_webhook_outbox(db: Connection) -> None:
    """Webhook deliveries that survive a crash; webhook URLs kept in clear only there (they carry tokens)."""
    from agent.engine.policy import redact_url  # pure stdlib

    # One row per run whose webhook is still owed: 'waiting' while the run runs, 'pending' once it has
    # ended, deleted when the delivery ends (delivered, refused, or out of attempts). The next start
    # resumes what a crash left pending. `url` is redacted: the full URL (it may carry a token) lives
    # beside the database, in <data_dir>/outbox/<run_id>.url, never in snapshots or exports.
    db.execute(
        """
        CREATE TABLE webhook_outbox (
            run_id      BIGINT PRIMARY KEY,
            url         VARCHAR NOT NULL,
            delivery_id VARCHAR NOT NULL,   -- the same on every attempt, across restarts
            event       VARCHAR NOT NULL,
            state       VARCHAR NOT NULL CHECK (state IN ('waiting', 'pending')),
            created_at  TIMESTAMPTZ NOT NULL
        )
        """
    )
    # Runs still owed their webhook keep the full URL here until the Store moves it beside the database
    # (Store._spill_outbox); then every other copy is redacted.
    db.execute(
        """
        INSERT INTO webhook_outbox
        SELECT id, webhook_url, replace(CAST(uuid() AS VARCHAR), '-', ''), 'run.finished', 'waiting', now()
        FROM runs WHERE status = 'in_progress' AND webhook_url IS NOT NULL
        """
    )
    for table, column in (("runs", "webhook_url"), ("webhook_deliveries", "url")):
        found = db.execute(f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL").fetchall()
        for (url,) in found:
            db.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", [redact_url(url), url])
    for table in ("tasks", "runs"):
        found = db.execute(
            f"SELECT id, request_json FROM {table} WHERE json_extract_string(request_json, '$.webhook_url') IS NOT NULL"
        ).fetchall()
        for ident, text in found:
            request = json.loads(text)
            request["webhook_url"] = redact_url(str(request["webhook_url"]))
            db.execute(f"UPDATE {table} SET request_json = ? WHERE id = ?",
                       [json.dumps(request, ensure_ascii=False, separators=(",", ":")), ident])


@migration
def m006_traces(db: Connection) -> None:
    """The trace of every LLM call: what was sent and the reply as written (issue 13)."""
    # A run sends the same system prompt on every step: kept once, by the sha256 of its text.
    db.execute(
        """
        CREATE TABLE system_prompts (
            hash       VARCHAR PRIMARY KEY,   -- sha256 of the text, hex
            text       VARCHAR NOT NULL,
            first_seen TIMESTAMPTZ NOT NULL
        )
        """
    )
    # One row per llm_calls row whose content was kept, joined on (run_id, seq, idx): usage and
    # timing stay in llm_calls (with LOG_PROMPTS=0 no row is written at all). Large VARCHAR/JSON
    # columns are compressed by DuckDB at checkpoint (FSST, dictionary): a trace takes about half
    # its JSON size on disk (bench/bench_traces.py). Screenshots are never inlined: an image part
    # is {"type": "image", "screenshot_step": n}.
    db.execute(
        """
        CREATE TABLE llm_traces (
            run_id            BIGINT NOT NULL,
            seq               INTEGER NOT NULL,
            step              INTEGER NOT NULL,
            idx               INTEGER NOT NULL,
            system_hash       VARCHAR,            -- system_prompts.hash (NULL: no system message, or not logged)
            messages_json     JSON,               -- the messages after the system one, as sent
            tools             VARCHAR[],          -- the tools offered, by name
            reply_text        VARCHAR,            -- the model's text as written
            tool_calls_json   JSON,               -- [{id, name, arguments}]: arguments as the model wrote them
            observation_start INTEGER,            -- where the page observation sits in the last message
            observation_end   INTEGER,
            prompt_chars      INTEGER NOT NULL    -- characters sent (system prompt + messages, no images)
        )
        """
    )
    # Every call, its content when it was kept (`logged`): a call of a run from before traces, or
    # made with LOG_PROMPTS=0, still shows its usage, latency and finish reason.
    db.execute(
        f"""
        CREATE VIEW v_llm_traces AS
        SELECT c.run_id, c.seq, c.step, c.idx, c.purpose, c.provider, c.model, c.started_at, c.latency_ms,
               c.input_tokens, c.output_tokens, c.cost_usd, c.finish_reason, c.error,
               t.run_id IS NOT NULL AS logged, t.prompt_chars, p.text AS system_prompt, t.system_hash,
               t.messages_json, t.tools, t.reply_text, t.tool_calls_json, t.observation_start, t.observation_end,
               r.model AS run_model, r.status AS run_status, {RUN_DAY} AS day
        FROM llm_calls c
        JOIN runs r ON r.id = c.run_id
        LEFT JOIN llm_traces t ON t.run_id = c.run_id AND t.seq = c.seq AND t.idx = c.idx
        LEFT JOIN system_prompts p ON p.hash = t.system_hash
        """
    )


# z for a two-sided 95% interval; the Wilson bounds below are agent.experiments.stats.wilson in SQL
# (a test checks that both give the same numbers).
Z95 = "1.959963984540054"


@migration
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


@migration
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


def applied(db: Connection) -> list[str]:
    """Names of the migrations already recorded in this database, in order."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
    )
    return [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY applied_at, name").fetchall()]


def migrate(db: Connection) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; returns their names."""
    done = set(applied(db))
    known = {fn.__name__ for fn in MIGRATIONS}
    unknown = sorted(done - known)
    if unknown:
        raise MigrationError(
            f"this database was migrated by a newer version of the app ({', '.join(unknown)}); "
            "upgrade the app, or point it at another data directory"
        )
    ran = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        db.execute("BEGIN TRANSACTION")
        try:
            fn(db)
            db.execute("INSERT INTO _migrations VALUES (?, now())", [fn.__name__])
            db.execute("COMMIT")
        except Exception as exc:
            db.execute("ROLLBACK")
            raise MigrationError(f"migration {fn.__name__} failed: {exc}") from exc
        ran.append(fn.__name__)
    return ran
