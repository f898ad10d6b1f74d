"""Sending the webhooks the run log's outbox says are owed, each in its own task (the run never waits).

The run log keeps what is owed (`RunLog.pending_webhooks`: a row per ended run whose webhook has
not been delivered, refused or run out of attempts) and every attempt; `Outbox` sends them: when a
run ends, and at start for what a previous process still owed (a crash, a shutdown mid-retry),
counting the attempts it had made.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agent.log.protocol import RunLog
from agent.models import RunResponse
from agent.service import webhooks

__all__ = ["MAX_RESUMED_WEBHOOKS", "Outbox"]

log = logging.getLogger(__name__)

MAX_RESUMED_WEBHOOKS = 100
WEBHOOK_SHUTDOWN_GRACE_S = 5.0


class Outbox:
    """Delivers owed webhooks, each in its own task; every attempt goes to the run log."""

    def __init__(self, run_log: RunLog, *, secret: str | None, max_attempts: int, timeout_s: float,
                 backoff_s: float) -> None:
        self._log = run_log
        self._secret = secret  # None means "unsigned"; never logged
        self.max_attempts = max_attempts
        self._kwargs: dict[str, Any] = {"max_attempts": max_attempts, "timeout_s": timeout_s, "backoff_s": backoff_s}
        self._tasks: set[asyncio.Task[None]] = set()

    async def resume(self) -> None:
        """Send what a previous process still owed (the most recent first, bounded); drop what cannot be sent."""
        owed = await asyncio.to_thread(self._log.pending_webhooks)
        for row in owed[-MAX_RESUMED_WEBHOOKS:]:
            response = await asyncio.to_thread(self._log.get_run, row["run_id"])
            if response is None or row["url"] is None or row["attempts"] >= self.max_attempts:
                if row["url"] is None:
                    log.warning("run %d: its webhook URL was lost in a crash; the delivery is dropped", row["run_id"])
                await asyncio.to_thread(self._log.end_webhook, row["run_id"])
                continue
            self._spawn(row, response)
        if len(owed) > MAX_RESUMED_WEBHOOKS:
            log.warning("%d older pending webhooks wait for a later start", len(owed) - MAX_RESUMED_WEBHOOKS)

    async def send(self, run_id: int, url: str, response: RunResponse) -> None:
        """Send the webhook a run owes now that it has ended (to `url` as the request gave it)."""
        try:  # the outbox row holds the delivery id, and outlives a crash
            owed = await asyncio.to_thread(self._log.pending_webhooks, run_id)
        except Exception:
            log.exception("run %d: could not read its pending webhook", run_id)
            owed = []
        for row in owed:  # the URL as given (the outbox copy has environment secrets scrubbed)
            self._spawn({**row, "url": url}, response)

    def sending(self, run_id: int) -> bool:
        """True while the run's delivery goes on (attempts, retries, backoff)."""
        return any(task.get_name() == f"webhook-{run_id}" and not task.done() for task in self._tasks)

    async def close(self) -> None:
        """Let deliveries in flight finish briefly, then cut them (the outbox keeps them for the next start)."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=WEBHOOK_SHUTDOWN_GRACE_S)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=WEBHOOK_SHUTDOWN_GRACE_S)

    def _spawn(self, row: dict[str, Any], response: RunResponse) -> None:
        """Deliver in its own task: the run's end never waits for the receiver."""
        run_id = int(row["run_id"])
        hook = asyncio.create_task(self._deliver(row, response), name=f"webhook-{run_id}")
        self._tasks.add(hook)
        hook.add_done_callback(self._tasks.discard)

    async def _deliver(self, row: dict[str, Any], response: RunResponse) -> None:
        """Deliver the final response; every attempt goes to the run log; nothing here touches the run.

        The outbox row goes once the delivery has ended (delivered, refused or out of attempts); a
        shutdown or a crash in between leaves it for the next start.
        """
        run_id, url, event = int(row["run_id"]), str(row["url"]), str(row["event"])

        async def on_attempt(attempt: webhooks.Attempt) -> None:
            await asyncio.to_thread(
                self._log.record_webhook_attempt, run_id, url=url, attempt=attempt.attempt, at=attempt.at,
                status_code=attempt.status_code, ok=attempt.ok, error=attempt.error,
                duration_ms=attempt.duration_ms, event=event,
            )

        try:
            await webhooks.deliver(url, response.to_json(), secret=self._secret, on_attempt=on_attempt, event=event,
                                   first_attempt=int(row["attempts"]) + 1, delivery_id=str(row["delivery_id"]),
                                   **self._kwargs)
        except Exception:
            log.exception("run %d: webhook delivery failed unexpectedly", run_id)
        try:
            await asyncio.to_thread(self._log.end_webhook, run_id)
        except Exception:
            log.exception("run %d: could not clear its webhook from the outbox", run_id)
