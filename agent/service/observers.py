"""What else sees a run's events besides the store and live viewers: observers (OpenTelemetry export),
and the LOG_PROMPTS switch that strips the call traces before anything sees them.

An observer is called with (run id, event) after the event is recorded (the run's end included).
It runs on the event loop: it must be quick; one that fails is logged, never the run's problem.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from agent.models import StepFinished

__all__ = ["LOG_PROMPTS_ENV", "Observer", "Observers", "log_prompts_from_env"]

log = logging.getLogger(__name__)

LOG_PROMPTS_ENV = "LOG_PROMPTS"
Observer = Callable[[int, Any], None]


def log_prompts_from_env() -> bool:
    """LOG_PROMPTS: on unless set to 0/false/no/off (then traces keep usage and timing, not messages)."""
    raw = os.environ.get(LOG_PROMPTS_ENV, "").strip().lower()
    if raw in ("", "1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{LOG_PROMPTS_ENV}={raw!r} is not a switch; set it to 1 (keep prompts) or 0 (leave them out)")


class Observers:
    """The run service's observers: those given, plus the OpenTelemetry exporter when its endpoint is set."""

    def __init__(self, observers: list[Observer] | None = None, *, log_prompts: bool | None = None) -> None:
        self.log_prompts = log_prompts if log_prompts is not None else log_prompts_from_env()
        self.observers: list[Observer] = list(observers or [])
        from agent.service import otel  # stdlib only; the SDK is imported only when the endpoint is set

        exporter = otel.from_env(log_prompts=self.log_prompts)
        if exporter is not None:
            self.observers.append(exporter)

    def prepare(self, event: Any) -> Any:
        """The event as the store, viewers and observers get it: with LOG_PROMPTS off, traces without content."""
        if isinstance(event, StepFinished) and not self.log_prompts and event.traces:
            return event.model_copy(update={"traces": [t.without_content() for t in event.traces]})
        return event

    def __call__(self, run_id: int, event: Any) -> None:
        """Hand a recorded event to each observer."""
        for observer in self.observers:
            try:
                observer(run_id, event)
            except Exception:
                log.exception("run %d: an event observer failed", run_id)

    async def shutdown(self) -> None:
        """Let observers that hold something (the exporter's last spans) finish, off the event loop."""
        for observer in self.observers:
            shutdown = getattr(observer, "shutdown", None)
            if shutdown is None:
                continue
            try:
                await asyncio.to_thread(shutdown)
            except Exception:
                log.exception("could not shut down %r", observer)
