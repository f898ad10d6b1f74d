"""Webhooks owed and their attempts: the outbox part of the run log (a mixin of `agent.log.store.Store`).

A run's webhook is owed from its end until its delivery ends (delivered, refused, out of attempts);
the outbox table says which are owed and survives a crash, so the next start resumes them. The full
webhook URL (it may carry a token) is kept only beside the database, one file per run, until its
delivery ends: never in the tables, their snapshots or exports.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from agent.log import writes
from agent.log.redact import scrub, secret_values

__all__ = ["WebhookOutbox"]

T = TypeVar("T")


class WebhookOutbox:
    """Keeping owed webhooks (URL files beside the database, rows in `webhook_outbox`) and every attempt."""

    data_dir: Path

    def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:  # provided by Store
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:  # provided by Store
        raise NotImplementedError

    def _outbox_file(self, run_id: int) -> Path:
        return self.data_dir / "outbox" / f"{int(run_id)}.url"

    def _keep_webhook_url(self, run_id: int, url: str) -> None:
        path = self._outbox_file(run_id)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(scrub(url, secret_values()))  # environment secrets never reach a file
        os.replace(tmp, path)

    def _spill_outbox(self) -> None:
        """Move full URLs an older version kept in the outbox table to their files (once, at open)."""
        for row in self._query("SELECT run_id, url FROM webhook_outbox WHERE url NOT LIKE '%/...'"):
            self._keep_webhook_url(row["run_id"], row["url"])
            self._write(writes.redact_outbox_url, row["run_id"], row["url"])

    def record_webhook_attempt(
        self,
        run_id: int,
        *,
        url: str,
        attempt: int,
        at: datetime,
        status_code: int | None,
        ok: bool,
        error: str | None,
        duration_ms: float,
        event: str = "run.finished",
    ) -> None:
        """Keep one webhook delivery attempt (each retry is its own row)."""
        self._write(
            writes.insert_webhook_attempt, run_id, url=url, attempt=attempt, at=at, status_code=status_code,
            ok=ok, error=error, duration_ms=duration_ms, event=event,
        )

    def pending_webhooks(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Webhooks owed for ended runs (or for `run_id`): run_id, url (in clear), delivery_id, event, attempts made."""
        where, params = ("AND o.run_id = ?", [run_id]) if run_id is not None else ("", [])
        rows = self._query(
            f"""
            SELECT o.run_id, o.url, o.delivery_id, o.event,
                   coalesce((SELECT max(d.attempt) FROM webhook_deliveries d WHERE d.run_id = o.run_id), 0) AS attempts
            FROM webhook_outbox o WHERE o.state = 'pending' {where} ORDER BY o.run_id
            """, params,
        )
        for row in rows:  # None: the file was lost (a crash between the row and the file)
            path = self._outbox_file(row["run_id"])
            row["url"] = path.read_text(encoding="utf-8") if path.is_file() else None
        return rows

    def end_webhook(self, run_id: int) -> None:
        """The run's webhook is no longer owed (delivered, refused, out of attempts): drop its clear URL."""
        self._write(writes.end_webhook, run_id)
        self._outbox_file(run_id).unlink(missing_ok=True)

    def webhook_attempts(self, run_id: int) -> list[dict[str, Any]]:
        """Every delivery attempt for a run, oldest first."""
        return self._query(
            "SELECT * FROM webhook_deliveries WHERE run_id = ? ORDER BY id", [run_id]
        )
