"""Migration 003, as shipped (never edited): m003_run_notes."""

from __future__ import annotations

from agent.log.migrations.base import Connection


def m003_run_notes(db: Connection) -> None:
    """What the user should know about a run that is neither its result nor its error (e.g. the
    provider refused the screenshots, the model lacks function calling): a JSON list of strings."""
    db.execute("ALTER TABLE runs ADD COLUMN notes_json JSON")
