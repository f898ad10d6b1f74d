"""Migration 001, as shipped (never edited): m001_initial."""

from __future__ import annotations

from agent.log.migrations.base import Connection


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
