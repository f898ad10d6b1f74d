"""What every consumer of a run's events sees, prepared in one place: the run log, live viewers, the
webhook's final response, and observers (the OpenTelemetry export, or any callable given to the service).

`Observers.prepare(event, scrubber)` is the one door: with LOG_PROMPTS off the call traces lose their
content, and every text of the event is scrubbed once (`RunScrubber`): a value of the run's
`sensitive_data` becomes its `<secret>name</secret>` placeholder (in every spelling the engine's
`Secrets` knows) and the value of a secret-looking environment variable (`*_API_KEY`, `*_TOKEN`, ...)
becomes `[redacted]` (the run log's own rule, `agent.log.redact`). The store still scrubs what it
writes, a second line of defence; nothing else sees an event before this.

An observer is called with (run id, event) after the event is recorded (the run's end included).
It runs on the event loop: it must be quick; one that fails is logged, never the run's problem.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from agent.engine.secrets import Secrets
from agent.log.redact import scrub, secret_values
from agent.models import LLMTrace, StepFinished, message_text

__all__ = ["LOG_PROMPTS_ENV", "Observer", "Observers", "RunScrubber", "log_prompts_from_env"]

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


class RunScrubber:
    """One run's scrubbing of its events: sensitive_data values as placeholders, environment secrets redacted."""

    def __init__(self, sensitive_data: Mapping[str, Any] | None = None) -> None:
        self._secrets = Secrets(sensitive_data)

    def text_scrubber(self) -> Callable[[str], str] | None:
        """The function that scrubs one text now (the environment is read once per event), or None: nothing to hide."""
        env = secret_values()
        run = self._secrets
        if not env and not run:
            return None
        if not run:
            return lambda text: scrub(text, env)
        return lambda text: scrub(run.scrub(text) or text, env)

    def event(self, event: Any) -> Any:
        """`event` with every text scrubbed: the same object when nothing had to change (frozen models: a copy)."""
        text = self.text_scrubber()
        return event if text is None else _scrubbed(event, text)


def _scrubbed(value: Any, text: Callable[[str], str]) -> Any:
    """`value` with `text` applied to every string (dict keys too); unchanged parts keep their identity."""
    if isinstance(value, str):
        return text(value) if value else value
    if isinstance(value, BaseModel):
        if isinstance(value, LLMTrace):
            return _scrubbed_trace(value, text)
        updates = {}
        for name in type(value).model_fields:
            old = getattr(value, name)
            new = _scrubbed(old, text)
            if new is not old:
                updates[name] = new
        return value.model_copy(update=updates) if updates else value
    if isinstance(value, dict):
        items = [(_scrubbed(k, text), _scrubbed(v, text)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    if isinstance(value, (list, tuple)):
        out = [_scrubbed(v, text) for v in value]
        if all(a is b for a, b in zip(out, value, strict=True)):
            return value
        return out if isinstance(value, list) else tuple(out)
    return value  # numbers, times, None, SecretStr (never shown anyway)


def _scrubbed_trace(trace: LLMTrace, text: Callable[[str], str]) -> LLMTrace:
    """A call's trace scrubbed, the page observation's place in the last message moved with what it replaced."""
    updates = {}
    for name in LLMTrace.model_fields:
        if name == "observation":
            continue
        old = getattr(trace, name)
        new = _scrubbed(old, text)
        if new is not old:
            updates[name] = new
    if not updates:
        return trace
    if trace.observation is not None and "messages" in updates and trace.messages:
        start, end = trace.observation
        before = message_text(trace.messages[-1])
        new_start = len(text(before[:start]))
        updates["observation"] = (new_start, new_start + len(text(before[start:end])))
    return trace.model_copy(update=updates)


class Observers:
    """The run service's observers: those given, plus the OpenTelemetry exporter when its endpoint is set."""

    def __init__(self, observers: list[Observer] | None = None, *, log_prompts: bool | None = None) -> None:
        self.log_prompts = log_prompts if log_prompts is not None else log_prompts_from_env()
        self.observers: list[Observer] = list(observers or [])
        from agent.service import otel  # stdlib only; the SDK is imported only when the endpoint is set

        exporter = otel.from_env(log_prompts=self.log_prompts)
        if exporter is not None:
            self.observers.append(exporter)

    def prepare(self, event: Any, scrubber: RunScrubber) -> Any:
        """The event as the store, viewers, webhooks and observers get it: scrubbed once, and with LOG_PROMPTS
        off, traces without content."""
        if isinstance(event, StepFinished) and not self.log_prompts and event.traces:
            event = event.model_copy(update={"traces": [t.without_content() for t in event.traces]})
        return scrubber.event(event)

    def __call__(self, run_id: int, event: Any) -> None:
        """Hand a recorded (prepared) event to each observer."""
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
