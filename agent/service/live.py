"""A run the service is running or queueing (`LiveRun`): its events so far, how to stop it, and its writer.

The writer stores the run's events in order behind the engine, and only then shows each to viewers:
the engine's next step never waits for the run log, and a step seen is a step stored. The events it
is handed are already prepared (scrubbed) by the run service: the store, viewers and observers get
the very same object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.models import RunRequest, RunResponse, RunStarted, StepFinished, StopReason, Tally
from agent.service.observers import RunScrubber

__all__ = ["MAX_PENDING_WRITES", "LiveRun", "describe"]

log = logging.getLogger(__name__)

# Events a run may run ahead of its run log: the engine does not wait for each write, up to this many.
MAX_PENDING_WRITES = 16


@dataclass(eq=False)
class LiveRun:
    """A run this process is running (or queueing): its events so far and how to stop it."""

    task_id: int
    run_id: int
    request: RunRequest
    tally: Tally
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # replaced after each event (generations)
    events: list[Any] = field(default_factory=list)
    final: RunResponse | None = None
    stop_reason: StopReason | None = None  # why the service stopped it: "shutdown" replaces the engine's "cancelled"
    engine: dict[str, Any] = field(default_factory=dict)  # per-run engine options (e.g. an experiment's page check)
    batch: bool = False  # an experiment's cell: never takes the last slot from interactive runs
    executor: str = "local"  # local (the engine in this process) | ray (on a Ray worker, events streamed back)
    healed_workflow_id: int | None = None  # where a replay's healed version was saved
    fork: Any = None  # a fork's prefix (agent.workflows.fork.ForkPrefix): its parent's steps, replayed first
    queued: bool = True
    task: asyncio.Task[None] | None = None
    writes: asyncio.Queue[Any] | None = None  # events handed to the run's writer, in order (None: the end)
    writer: asyncio.Task[None] | None = None
    write_error: str | None = None  # the first write that failed: the run ends with it
    # What every consumer sees goes through this first (Observers.prepare): the run's secrets, the environment's.
    scrubber: RunScrubber = field(default_factory=RunScrubber)

    def append(self, event: Any) -> None:
        """Make `event` visible to viewers and wake those waiting."""
        self.events.append(event)
        previous, self.changed = self.changed, asyncio.Event()
        previous.set()

    async def take(self, slots: asyncio.Semaphore) -> bool:
        """Take one of `slots` for this run; False if it was cancelled while queued."""
        if self.cancel.is_set():
            return False
        acquire = asyncio.ensure_future(slots.acquire())
        stop = asyncio.ensure_future(self.cancel.wait())
        try:
            await asyncio.wait({acquire, stop}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled while queued: never keep a slot we will not use
            stop.cancel()
            if acquire.done() and not acquire.cancelled() and acquire.exception() is None:
                slots.release()
            else:
                acquire.cancel()
            raise
        stop.cancel()
        if not acquire.done():
            acquire.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquire
        got = acquire.done() and not acquire.cancelled() and acquire.exception() is None
        if got and self.cancel.is_set():
            slots.release()  # cancelled while queued: give the slot back unused
            return False
        return got

    def snapshot(self) -> RunResponse:
        """The run as it stands, in the contract's shape."""
        if self.final is not None:
            return self.final
        return self.tally.response(finished=False, task_id=self.task_id, task_run_id=self.run_id)

    async def emit(self, event: Any, write: Callable[[int, Any], None], observe: Callable[[int, Any], None]) -> None:
        """Hand `event` to this run's writer and go on: the engine's next step does not wait for the run log.

        The writer stores the events in order (`write`, in a worker thread) and only then makes each visible
        (a step seen is a step stored) and hands it to `observe`; at most MAX_PENDING_WRITES wait. A write
        that failed ends the run at its next event (RuntimeError), or at its end (`write_error`).
        """
        if self.write_error is not None:
            raise RuntimeError(self.write_error)
        if self.writes is None:
            self.writes = asyncio.Queue(MAX_PENDING_WRITES)
            self.writer = asyncio.create_task(self._write_events(write, observe), name=f"writer-{self.run_id}")
        await self.writes.put(event)

    async def _write_events(self, write: Callable[[int, Any], None], observe: Callable[[int, Any], None]) -> None:
        """The run's writer: store each event, then publish it; stops at None."""
        assert self.writes is not None
        while (event := await self.writes.get()) is not None:
            if self.write_error is not None:
                continue  # the run is ending with the first failure; later events are not shown as stored
            try:
                await asyncio.to_thread(write, self.run_id, event)
            except Exception as exc:
                log.exception("run %d: could not write the run log", self.run_id)
                self.write_error = f"could not write the run log ({describe(exc)})"
                continue
            if isinstance(event, RunStarted):
                self.tally.mode = event.mode
                self.tally.started_at = event.at
            elif isinstance(event, StepFinished):
                self.tally.add_step(event.item)
            self.append(event)
            observe(self.run_id, event)

    async def drain(self) -> None:
        """Wait until every event handed to the writer is stored and shown (before the run's end is built)."""
        writer, self.writer = self.writer, None
        if writer is None or self.writes is None:
            return
        await self.writes.put(None)
        try:
            await writer
        except Exception as exc:  # a bug in publishing: the run still ends, saying so
            log.exception("run %d: the run log writer failed", self.run_id)
            self.write_error = self.write_error or f"could not write the run log ({describe(exc)})"


def describe(exc: BaseException) -> str:
    """An exception in one line for a run's error: its type and the first line of its message."""
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
