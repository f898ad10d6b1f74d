"""The contract's response side: a run's response, its history items and actions, and why it ended.

Field names of `RunResponse`, `HistoryItem` and `ActionResult` follow `shared/seed/run-agent-api.txt`
exactly; fields marked "added" extend the contract and may be ignored by clients. Every model here is
frozen: an event, once yielded, never changes.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["INFRASTRUCTURE_REASONS", "NO_FAIR_CHANCE", "STOPPED_REASONS", "STOP_REASONS", "ActionResult",
           "ExecutedBy", "HistoryItem", "LLMCall", "RunResponse", "Status", "StopReason", "Usage", "json_safe",
           "screenshot_url", "utcnow"]

Status = Literal["success", "failure", "in_progress"]
ExecutedBy = Literal["agent", "replay", "heal"]
# Why a run ended, for programs (`error` says it in words). `status` keeps the contract's three values.
StopReason = Literal[
    "done",            # the agent called done and succeeded
    "done_failure",    # the agent called done saying it could not do the task
    "max_steps",       # max_steps reached without done
    "max_failures",    # max_failures consecutive steps failed
    "invalid_result",  # the result did not match the JSON schema, retries used up
    "timeout",         # the run's wall-clock bound
    "cancelled",       # a user or program cancelled it
    "interrupted",     # the process that ran it died (found at the next start)
    "shutdown",        # the app was shutting down
    "model_error",     # the provider failed: auth, quota, model unknown, 5xx after retries
    "missing_key",     # no key (or local server) configured for the provider
    "browser_error",   # the browser could not start or crashed
    "replay_failed",   # a cached workflow could not be replayed (or healed)
    "internal_error",  # our own bug: the run service caught an unexpected error
    "budget",          # the run's model calls cost max_cost_usd (checked after each step)
]
STOP_REASONS: tuple[str, ...] = StopReason.__args__  # type: ignore[attr-defined]
# Stop reasons that say nothing about the agent (the run log's OUTCOME_SQL counts them apart): stopped
# from outside, or lost to the infrastructure. A success rate is over the other finished runs.
STOPPED_REASONS: tuple[str, ...] = ("cancelled", "interrupted", "shutdown")
INFRASTRUCTURE_REASONS: tuple[str, ...] = ("model_error", "missing_key", "browser_error", "internal_error")
# An experiment plays such a run's cell again (a model_error only when the provider's failure may pass) and
# counts what stays lost as a failure, shown apart (agent.experiments.runner).
NO_FAIR_CHANCE: tuple[str, ...] = STOPPED_REASONS + INFRASTRUCTURE_REASONS


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities (not JSON) replaced by null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class ActionResult(BaseModel):
    """One executed action: the contract's action record plus replay details."""

    model_config = ConfigDict(frozen=True)

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    is_done: bool = False
    success: bool | None = None
    extracted_content: str | None = None
    error: str | None = None
    include_in_memory: bool = False
    # added
    locators: dict[str, Any] | None = None
    executed_by: ExecutedBy = "agent"
    duration_ms: float = 0.0
    data: Any = None  # the parsed `done` result (JSON mode), kept separate from the text


class LLMCall(BaseModel):
    """One call to the model: what it cost and how long it took."""

    model_config = ConfigDict(frozen=True)

    model: str
    provider: str
    purpose: str = "step"  # step | extract | heal | params | judge | playground (asked again, outside the run's totals)
    started_at: datetime
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    finish_reason: str | None = None
    error: str | None = None


class HistoryItem(BaseModel):
    """One finished step: the contract's history item plus what was seen and measured."""

    model_config = ConfigDict(frozen=True)

    description: str
    actions: list[ActionResult] = Field(default_factory=list)
    # added
    step: int = 0
    url: str | None = None
    title: str | None = None
    screenshot: str | None = None
    started_at: datetime | None = None
    duration_ms: float = 0.0
    llm_ms: float = 0.0  # waiting for the model, failed calls, retries and backoff included
    browser_ms: float = 0.0  # observing the page and running actions (model calls inside them excluded)
    own_ms: float = 0.0  # the rest: our own work; duration_ms = llm_ms + browser_ms + own_ms
    llm_calls: list[LLMCall] = Field(default_factory=list)
    executed_by: ExecutedBy = "agent"

    @model_validator(mode="before")
    @classmethod
    def _own_time(cls, data: Any) -> Any:
        # The three parts are measured over disjoint stretches of the step, so the rest is exact.
        if isinstance(data, dict) and data.get("own_ms") is None:
            data = dict(data)
            parts = float(data.get("llm_ms") or 0.0) + float(data.get("browser_ms") or 0.0)
            data["own_ms"] = max(0.0, float(data.get("duration_ms") or 0.0) - parts)
        return data


class Usage(BaseModel):
    """Token and cost totals of a run. `cost_usd` is None (unknown) once a call that used tokens had no price
    (a model litellm cannot price, without price_per_mtok): an unknown cost is never shown as 0.
    `unpriced_calls` counts those calls; a failed call used no tokens and costs 0."""

    model_config = ConfigDict(frozen=True)

    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    unpriced_calls: int = 0

    def add(self, call: LLMCall) -> Usage:
        """A new total including `call`."""
        unpriced = call.cost_usd is None and (call.input_tokens or call.output_tokens) > 0
        cost = None if self.cost_usd is None or unpriced else self.cost_usd + (call.cost_usd or 0.0)
        return Usage(
            llm_calls=self.llm_calls + 1,
            input_tokens=self.input_tokens + call.input_tokens,
            output_tokens=self.output_tokens + call.output_tokens,
            cost_usd=cost,
            unpriced_calls=self.unpriced_calls + unpriced,
        )


class RunResponse(BaseModel):
    """The contract's response; the same shape from every place that returns a run."""

    model_config = ConfigDict(frozen=True)

    task_id: int | None = None
    task_run_id: int | None = None
    history: list[HistoryItem] = Field(default_factory=list)
    result: Any = None
    is_done: bool = False
    is_successful: bool | None = None
    status: Status = "in_progress"
    # added
    error: str | None = None
    stop_reason: StopReason | None = None  # None while in progress
    mode: Literal["agent", "replay"] = "agent"
    model: str | None = None
    provider: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    usage: Usage = Field(default_factory=Usage)
    workflow_id: int | None = None
    replayed_steps: int = 0
    healed_steps: int = 0
    notes: list[str] = Field(default_factory=list)  # what the user should know (e.g. images refused)
    parent_run_id: int | None = None  # a fork: the run whose steps before `forked_at_step` it replayed
    forked_at_step: int | None = None  # a fork: the step the agent took over at

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON object: what every route, the Gradio API and webhooks send.

        A step's `screenshot` is the file's path inside the app; clients get the URL that serves it
        (`/api/runs/{task_run_id}/screenshots/{step}`) instead, once the run has an id.
        """
        data: dict[str, Any] = json_safe(self.model_dump(mode="json"))
        if self.task_run_id is not None:
            for item in data["history"]:
                if item.get("screenshot"):
                    item["screenshot"] = screenshot_url(self.task_run_id, item.get("step") or 0)
        return data


def screenshot_url(run_id: int, step: int) -> str:
    """Where the API serves the screenshot taken at the start of a step (relative to the app's root)."""
    return f"/api/runs/{int(run_id)}/screenshots/{int(step)}"
