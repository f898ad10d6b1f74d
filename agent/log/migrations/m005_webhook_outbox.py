"""Migration 005, as shipped (never edited): m005_webhook_outbox."""

from __future__ import annotations

import json

from agent.log.migrations.base import Connection
from agent.rules.policy import redact_url  # pure stdlib


def m005_webhook_outbox(db: Connection) -> None:
    """Webhook deliveries that survive a crash; webhook URLs kept in clear only there (they carry tokens)."""
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
