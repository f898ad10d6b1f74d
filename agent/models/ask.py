"""Asking the model again at a step (the step playground): the question, and the answer it gets.

`AskRequest` is the body of `POST /api/runs/{id}/steps/{n}/ask` (and the viewer's "Try this step
again" panel); `AskAnswer` what comes back: the step's original reply and each new one, every tool
call rendered as the action it would be, with the element its index named on that step's page,
and for each reply whether it would have done the same as the original.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.limits import MAX_MODEL_CHARS
from agent.models.request import MAX_SYSTEM_MESSAGE_CHARS
from agent.providers import Provider

__all__ = ["MAX_SAMPLES", "AskAnswer", "AskReply", "AskRequest", "NotAskable", "ProposedAction"]

MAX_SAMPLES = 10


class NotAskable(Exception):
    """The step cannot be asked again (no messages kept, no model call, the screenshot gone); the message says why."""


class AskRequest(BaseModel):
    """What to change when the step's messages are sent again; a field left out keeps the run's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Provider | None = Field(default=None, description="Who serves the model (default: the run's)")
    model: str | None = Field(default=None, max_length=MAX_MODEL_CHARS,
                              description="The model (default: the run's; a new provider alone: its default model)")
    extend_system_message: str | None = Field(
        default=None, max_length=MAX_SYSTEM_MESSAGE_CHARS,
        description="Appended to the system prompt (left out: the run's own; empty: none)")
    override_system_message: str | None = Field(
        default=None, max_length=MAX_SYSTEM_MESSAGE_CHARS,
        description="Replaces our system prompt (left out: the run's own; empty: ours)")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0,
                                      description="Sampling temperature (default: the provider's, as runs send)")
    samples: int = Field(default=1, ge=1, le=MAX_SAMPLES, description="How many times to ask (sent concurrently)")

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        return value.strip() or None if isinstance(value, str) else value

    def system_fields_given(self) -> bool:
        """Whether the question changes the system prompt (either field given, even empty)."""
        return bool({"extend_system_message", "override_system_message"} & self.model_fields_set)


class ProposedAction(BaseModel):
    """A tool call as the action it would be: its arguments, and the element its index named on the step's page."""

    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict[str, Any] | None = None  # None: not valid JSON (see `error`)
    raw_arguments: str = ""
    index: int | None = None
    element: str | None = None  # the observation's line for `index`, e.g. '[12]<a href="/p/3">Cable 1 m'
    error: str | None = None  # why it could not have run as it is: arguments, unknown action, no such index


class AskReply(BaseModel):
    """One reply: its text, its actions, what it cost, and how it differs from the step's original reply."""

    model_config = ConfigDict(frozen=True)

    text: str | None = None
    actions: list[ProposedAction] = Field(default_factory=list)
    same_as_original: bool = False  # same actions, on the same elements, with the same arguments
    differences: list[str] = Field(default_factory=list)  # in words, first difference first
    provider: str | None = None
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float | None = None
    cost_usd: float | None = None
    finish_reason: str | None = None
    error: str | None = None  # the call failed (the provider's words)


class AskAnswer(BaseModel):
    """The step asked again: what was sent (system prompt, screenshot), the original reply and the new ones."""

    model_config = ConfigDict(frozen=True)

    task_run_id: int
    step: int
    provider: str
    model: str
    system_prompt: str
    system_prompt_changed: bool
    screenshot: bool  # the step's screenshot went along, as in the original call
    temperature: float | None = None
    original: AskReply
    replies: list[AskReply]
    same: int = 0  # replies that would have done the same as the original
