"""Taking a run over at a step: what a fork hands the engine (its steps before that step, done again).

The engine knows nothing of workflows: `agent.workflows.fork` builds a `Prefix` from a parent run
(its steps 1..S-1 as a workflow replays them) and `engine.stream(request, fork=prefix)` plays it in
the run's own browser session, then asks the model from step S on, its memory of the earlier steps
the parent's (`Prefix.memory`: the steps as the parent's model saw them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agent.models import Event, HistoryItem, RunRequest, StopReason

if TYPE_CHECKING:
    from agent.engine.browser import BrowserSession
    from agent.engine.llm import LLM

__all__ = ["Prefix", "PrefixBroken"]


class PrefixBroken(Exception):
    """A step before the one the agent takes over at could not be done again; the message names it and why."""

    def __init__(self, step: int, message: str, stop_reason: StopReason = "replay_failed") -> None:
        super().__init__(message)
        self.step = step
        self.stop_reason: StopReason = stop_reason


@runtime_checkable
class Prefix(Protocol):
    """The steps a fork does again before the agent takes over at `step`."""

    parent_run_id: int | None  # the parent's task_run_id (None: a run never logged, from the Python API)
    step: int  # the step the agent takes over at; steps 1..step-1 are the prefix
    memory: list[HistoryItem]  # the parent's steps 1..step-1, as its model saw them (the new run's memory)

    def replay(self, session: BrowserSession, *, request: RunRequest, options: Any, llm: LLM | None,
               cancel: asyncio.Event | None) -> AsyncGenerator[Event, None]:
        """StepStarted/StepFinished for each of steps 1..step-1, done again in `session`; PrefixBroken when one
        cannot be. `options` is the run's `agent.engine.loop.EngineOptions` (not imported here: the loop imports
        this module)."""
        ...
