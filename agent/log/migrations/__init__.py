"""Numbered migrations of the run log schema, applied in order when the store opens.

One module per migration (`m001_initial.py`, ...), each a small named function recorded in
`_migrations` once applied. A migration is never edited once shipped: a schema change is a new
module at the end of `MIGRATIONS` (that is how a database created by any earlier version reaches
the current schema). Comments say why a column or view exists, because the schema is read by
analysts more often than by us.

To add a column: a new `mNNN_<what>.py` with `ALTER TABLE ... ADD COLUMN`, listed last below, and
the field of the same name on the record it stores (agent.log.rows writes and reads it by name).

This package does not import duckdb: it receives a connection from the store (or from
`agent.log.schema`, which describes a freshly migrated in-memory database).
"""

from __future__ import annotations

from agent.log.migrations.base import Connection, Migration, MigrationError
from agent.log.migrations.m001_initial import m001_initial
from agent.log.migrations.m002_views import m002_views
from agent.log.migrations.m003_run_notes import m003_run_notes
from agent.log.migrations.m004_stop_reason import m004_stop_reason
from agent.log.migrations.m005_webhook_outbox import m005_webhook_outbox
from agent.log.migrations.m006_traces import m006_traces
from agent.log.migrations.m007_experiments import m007_experiments
from agent.log.migrations.m008_experiment_outcomes import m008_experiment_outcomes
from agent.log.migrations.m009_forks import m009_forks
from agent.log.migrations.m010_task_sets import m010_task_sets
from agent.log.migrations.m011_reviews import m011_reviews
from agent.log.migrations.sql import OUTCOME_SQL, RUN_DAY, WILSON_SQL, Z95

__all__ = ["MIGRATIONS", "OUTCOME_SQL", "RUN_DAY", "WILSON_SQL", "Z95", "Connection", "Migration", "MigrationError",
           "applied", "migrate", "m001_initial", "m002_views", "m003_run_notes", "m004_stop_reason",
           "m005_webhook_outbox", "m006_traces", "m007_experiments", "m008_experiment_outcomes",
           "m009_forks", "m010_task_sets", "m011_reviews"]

# In the order they apply; a function's name is what `_migrations` records, so a name never changes.
MIGRATIONS: list[Migration] = [
    m001_initial,
    m002_views,
    m003_run_notes,
    m004_stop_reason,
    m005_webhook_outbox,
    m006_traces,
    m007_experiments,
    m008_experiment_outcomes,
    m009_forks,
    m010_task_sets,
    m011_reviews,
]


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
