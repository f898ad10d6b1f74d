"""The engine's events, and the trace of each model call: what the run service consumes and records.

Every event is frozen: once yielded, it never changes (emit a new one instead).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.models.contract import HistoryItem, LLMCall, RunResponse, utcnow
from agent.models.request import RunRequest

__all__ = ["Event", "LLMTrace", "PageChecked", "RunFinished", "RunStarted", "StepFinished", "StepStarted",
           "WorkflowHealed", "message_text"]


class LLMTrace(BaseModel):
    """One model call as made: the messages sent (images as `{"type": "image", "screenshot_step": n}`, the
    system prompt apart) and the reply as written; `observation` is the page's (start, end) in the last
    message. `logged` False (LOG_PROMPTS=0): only `call` counts."""

    model_config = ConfigDict(frozen=True)

    call: LLMCall
    system_prompt: str | None = None
    messages: list[dict[str, Any]] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    reply_text: str | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)  # {id, name, arguments: the raw JSON text}
    observation: tuple[int, int] | None = None
    prompt_chars: int = 0
    logged: bool = True
    # added for tracing tools: the model the server said answered, the call's parameters, the tools as sent
    response_model: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)  # e.g. max_tokens, tool_choice
    tool_definitions: list[dict[str, Any]] = Field(default_factory=list)  # {"type": "function", "function": ...}

    def without_content(self) -> LLMTrace:
        """This trace with the messages and the reply dropped (LOG_PROMPTS=0): usage and timing stay."""
        return LLMTrace(call=self.call, tools=self.tools, prompt_chars=self.prompt_chars, logged=False,
                        response_model=self.response_model, parameters=self.parameters)


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message, whether its content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


class RunStarted(BaseModel):
    """The engine accepted the request and is about to take the first step."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["run_started"] = "run_started"
    request: RunRequest
    model: str  # the litellm model name actually used
    mode: Literal["agent", "replay"] = "agent"
    at: datetime = Field(default_factory=utcnow)


class StepStarted(BaseModel):
    """A step began: the model is being asked (or a replayed step is running)."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["step_started"] = "step_started"
    step: int
    url: str | None = None
    at: datetime = Field(default_factory=utcnow)


class StepFinished(BaseModel):
    """A step ended; `item` is exactly what goes into the response's history. `traces`: its model calls
    as made (one per `item.llm_calls` entry), kept out of `item` so responses keep the contract's shape."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["step_finished"] = "step_finished"
    item: HistoryItem
    traces: list[LLMTrace] = Field(default_factory=list)
    at: datetime = Field(default_factory=utcnow)


class RunFinished(BaseModel):
    """The run ended; `response` is final (ids are filled in by the run service)."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["run_finished"] = "run_finished"
    response: RunResponse
    at: datetime = Field(default_factory=utcnow)


class PageChecked(BaseModel):
    """A JS expression (an experiment's page check) evaluated on the run's final page before it closed."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["page_checked"] = "page_checked"
    expression: str
    value: Any = None
    error: str | None = None
    at: datetime = Field(default_factory=utcnow)


class WorkflowHealed(BaseModel):
    """A replay re-recorded some steps: `document` is the new version, to be saved before the run ends."""

    model_config = ConfigDict(frozen=True)
    kind: Literal["workflow_healed"] = "workflow_healed"
    document: dict[str, Any]
    workflow_id: int | None = None  # the stored workflow replayed (None: an inline one)
    version: int | None = None  # the version replayed
    at: datetime = Field(default_factory=utcnow)


Event = Annotated[RunStarted | StepStarted | StepFinished | RunFinished | WorkflowHealed | PageChecked,
                  Field(discriminator="kind")]
