"""`Tally`: what a run has done so far, and the one builder of its `RunResponse`."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from agent.models.contract import HistoryItem, RunResponse, StopReason, Usage, utcnow
from agent.models.request import RunRequest

__all__ = ["Tally"]


class Tally:
    """What a run has done so far (steps, usage, clock); the one builder of its `RunResponse`."""

    def __init__(self, request: RunRequest, *, mode: Literal["agent", "replay"] = "agent",
                 started_at: datetime | None = None) -> None:
        self.request, self.mode = request, mode
        self.history: list[HistoryItem] = []
        self.usage = Usage()
        self.started = time.monotonic()
        self.started_at = started_at or utcnow()
        # A fork's lineage, in every response it gives (the Python API sets them from its `fork=` argument).
        self.parent_run_id = request.fork.run_id if request.fork is not None else None
        self.forked_at_step = request.fork.step if request.fork is not None else None

    def add_step(self, item: HistoryItem) -> None:
        """Count a finished step and its model calls."""
        self.history.append(item)
        for call in item.llm_calls:
            self.usage = self.usage.add(call)

    def response(self, *, result: Any = None, done: bool = False, success: bool = False, error: str | None = None,
                 stop_reason: StopReason | None = None, finished: bool = True, **extra: Any) -> RunResponse:
        """The run as it stands (`finished=False`: in progress) or as it ended; `extra` sets added fields.

        A finished run that succeeded stops for "done"; any other end needs its `stop_reason`.
        """
        extra = {"parent_run_id": self.parent_run_id, "forked_at_step": self.forked_at_step, **extra}
        if not finished:
            return RunResponse(history=list(self.history), status="in_progress", mode=self.mode,
                               model=self.request.model, provider=self.request.provider,
                               started_at=self.started_at, usage=self.usage, **extra)
        ok = done and success and error is None
        if ok:
            stop_reason = "done"
        elif stop_reason is None or stop_reason == "done":
            raise ValueError(f"a run that did not succeed needs its stop_reason (error: {error!r})")
        return RunResponse(
            history=list(self.history), result=result, is_done=done, is_successful=done and success,
            status="success" if ok else "failure", error=error, stop_reason=stop_reason, mode=self.mode,
            model=self.request.model, provider=self.request.provider, started_at=self.started_at,
            finished_at=utcnow(), duration_ms=(time.monotonic() - self.started) * 1000, usage=self.usage, **extra,
        )
