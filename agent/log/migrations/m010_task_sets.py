"""Migration 010, as shipped (never edited): m010_task_sets."""

from __future__ import annotations

from agent.log.migrations.base import Connection


def m010_task_sets(db: Connection) -> None:
    """Task sets kept in the run log, named and versioned (issue 23); the version an experiment ran; which
    experiment, variant and cell each run played (for the history's columns and filters)."""
    # A set is a name; its content is a list of versions, never changed once written: every edit (a task
    # added, edited or removed, the tasks replaced, a bundled file that changed) is a new version, so an
    # experiment's version stays readable. A bundled set (data/tasksets/*.jsonl, miniwob) is copied in as
    # its first version when first read.
    db.execute(
        """
        CREATE TABLE task_sets (
            name       VARCHAR PRIMARY KEY,  -- letters, digits, _ . - (it names the set in URLs and experiments)
            source     VARCHAR NOT NULL,     -- bundled (a file shipped with the workbench) | stored (made here)
            created_at TIMESTAMPTZ NOT NULL
        )
        """
    )
    # Each distinct task once, by the sha256 of its canonical JSON: a version lists hashes, so a one-task
    # edit of a 1,000-task set stores one task, not a thousand.
    db.execute(
        """
        CREATE TABLE task_set_tasks (
            hash       VARCHAR PRIMARY KEY, -- sha256 of the task's JSON (keys sorted), hex
            task_key   VARCHAR NOT NULL,    -- the task's id in its set
            check_kind VARCHAR,             -- equals, contains, regex, number, json, page, judge; NULL: by hand
            task_json  JSON NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE task_set_versions (
            name        VARCHAR NOT NULL,
            version     INTEGER NOT NULL,    -- 1, 2, ... per set
            created_at  TIMESTAMPTZ NOT NULL,
            origin      VARCHAR NOT NULL,    -- bundled | created | replaced | added | edited | removed
            note        VARCHAR,             -- what changed, e.g. "added run-42 (from run 42)"
            task_hashes VARCHAR[] NOT NULL,  -- the tasks in order (task_set_tasks.hash)
            PRIMARY KEY (name, version)
        )
        """
    )
    # The version of the stored set an experiment ran (its tasks are also kept whole in experiment_tasks).
    db.execute("ALTER TABLE experiments ADD COLUMN task_set_version INTEGER")
    db.execute(
        """
        CREATE VIEW v_task_sets AS
        SELECT s.name, s.source, v.version, len(v.task_hashes) AS tasks, v.origin, v.note,
               n.versions, s.created_at, v.created_at AS updated_at
        FROM task_sets s
        JOIN task_set_versions v ON v.name = s.name
        JOIN (SELECT name, count(*) AS versions, max(version) AS latest FROM task_set_versions GROUP BY name) n
            ON n.name = s.name AND n.latest = v.version
        """
    )
    db.execute(
        """
        CREATE VIEW v_task_set_tasks AS
        SELECT h.name, h.version, h.position, t.task_key, t.check_kind, t.task_json->>'$.prompt' AS prompt, t.task_json
        FROM (SELECT name, version, unnest(task_hashes) AS hash, generate_subscripts(task_hashes, 1) AS position
              FROM task_set_versions) h
        JOIN task_set_tasks t ON t.hash = h.hash
        """
    )
    # Which experiment cell each run played (every attempt, replays included): the history's experiment and
    # variant columns and filters join this.
    db.execute(
        """
        CREATE VIEW v_run_experiments AS
        SELECT c.run_id, c.experiment_id, e.name AS experiment_name, c.variant, c.task_key, c.repeat
        FROM (SELECT experiment_id, task_key, variant, repeat, unnest(attempt_run_ids) AS run_id
              FROM experiment_cells) c
        JOIN experiments e ON e.id = c.experiment_id
        """
    )
    # v_experiments (m008's) with the task set's version beside its name.
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
        SELECT e.id, e.name, e.status, e.stop_reason, e.task_set, e.task_set_version, e.repeats, e.concurrency,
               e.backend, e.created_at, e.finished_at, e.error,
               coalesce(c.total, 0) AS total, coalesce(c.done, 0) AS done, coalesce(c.played, 0) AS played,
               coalesce(c.cancelled, 0) AS cancelled, coalesce(c.running, 0) AS running,
               coalesce(c.pending, 0) AS pending, coalesce(c.passes, 0) AS passes, coalesce(c.graded, 0) AS graded,
               coalesce(c.lost, 0) AS lost, v.variant_passes
        FROM experiments e LEFT JOIN cells c ON c.experiment_id = e.id LEFT JOIN per_variant v ON v.experiment_id = e.id
        """
    )
