"""What one replay carries from step to step (`ReplayState`), and what one step did so far (`StepLog`).

Shared by the replay loop (agent.workflows.replay) and the healing of a step (agent.workflows.heal).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from agent.engine.llm import LLM, key_status
from agent.engine.loop import EngineOptions
from agent.engine.runtime import RunClock, StepClock
from agent.engine.secrets import Secrets
from agent.models import (
    ActionResult,
    HistoryItem,
    LLMCall,
    LLMTrace,
    RunFinished,
    RunRequest,
    StopReason,
    Tally,
)
from agent.workflows.document import Workflow, WorkflowAction, WorkflowStep
from agent.workflows.locate import FIRST_MARK

__all__ = ["ReplayState", "StepFailed", "StepLog"]


class StepFailed(Exception):
    """A replayed action failed or its check did not hold; `result` is the action as it ended."""

    def __init__(self, reason: str, result: ActionResult) -> None:
        super().__init__(reason)
        self.reason, self.result = reason, result


class ReplayState(RunClock):
    """The mutable state of one replay."""

    def __init__(self, request: RunRequest, doc: Workflow, options: EngineOptions, llm: LLM | None,
                 cancel: asyncio.Event | None, heal_max_steps: int, find_timeout_s: float,
                 workflow_id: int | None) -> None:
        super().__init__(options.timeout_s, cancel)
        self.request, self.doc, self.options = request, doc, options
        self.llm = llm
        self.heal_max_steps, self.find_timeout_s = heal_max_steps, find_timeout_s
        self.workflow_id = workflow_id
        self.tally = Tally(request, mode="replay")
        self.values: dict[str, Any] = {}
        self.pending: list[LLMTrace] = []  # model calls made before the first step (parameter values)
        self.replayed = self.healed = 0
        self.new_steps: list[WorkflowStep] = list(doc.steps)
        self.structured = request.structured or doc.result_format == "json"
        self.marks = itertools.count(FIRST_MARK)  # indices for located elements, never observe()'s
        self.secrets = Secrets(request.sensitive_data)  # <secret>name</secret> in the steps: typed, never shown
        self.params_clock: StepClock | None = None  # reading the parameter values, counted in step 1
        self.heal_asked: list[int] = []  # the steps the agent was asked to heal

    def use_prompt(self, prompt: str) -> None:
        """The replay now says `prompt` (the request's with this replay's parameter values): in the log,
        to the agent that heals a step, in the response."""
        if prompt != self.request.prompt:
            self.request = self.request.model_copy(update={"prompt": prompt})
            self.tally.request = self.request

    @property
    def history(self) -> list[HistoryItem]:
        """The steps replayed so far."""
        return self.tally.history

    def model(self) -> LLM | None:
        """The model for parameters and healing (created on first need); None when no key is set."""
        if self.llm is None and key_status(self.request.provider)[0]:
            self.llm = LLM(self.request.provider, self.request.model)
        return self.llm

    def finish(self, error: str | None = None, stop_reason: StopReason | None = "replay_failed", *,
               result: Any = None, success: bool = False) -> RunFinished:
        """The end of the replay, as it stands (a value read off a page shows as its placeholder)."""
        return RunFinished(response=self.secrets.scrub_model(self.tally.response(
            result=result, done=success, success=success, error=error, stop_reason=stop_reason,
            workflow_id=self.workflow_id, replayed_steps=self.replayed, healed_steps=self.healed,
            notes=self.notes())))

    def notes(self) -> list[str]:
        """What the user should know of this replay: which model healed which steps."""
        if not self.heal_asked or self.llm is None:
            return []
        steps = ", ".join(str(n) for n in self.heal_asked)
        whose = ("the model this request names" if (self.llm.provider, self.llm.model) ==
                 (self.request.provider, self.request.model) else "the model this replay was given")
        return [f"the agent that healed step{'s' if len(self.heal_asked) > 1 else ''} {steps} ran on "
                f"{self.llm.provider} model {self.llm.model!r}, {whose}"]


@dataclass
class StepLog:
    """What one replayed step did so far: its actions (and those that replayed), model calls, traces, time."""

    clock: StepClock
    traces: list[LLMTrace]
    calls: list[LLMCall]
    results: list[ActionResult] = field(default_factory=list)
    kept: list[tuple[WorkflowAction, ActionResult]] = field(default_factory=list)
