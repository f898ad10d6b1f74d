"""The run contract (request, response, history) and the engine's events.

Field names of `RunRequest`, `RunResponse`, `HistoryItem` and `ActionResult` follow
`shared/seed/run-agent-api.txt` exactly; fields marked "added" extend the contract and may be
ignored by clients. Every model that leaves the engine is frozen: an event, once yielded, never
changes.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from agent.limits import (
    MAX_DOMAIN_CHARS,
    MAX_DOMAINS,
    MAX_ID,
    MAX_JSON_DEPTH,
    MAX_MODEL_CHARS,
    MAX_PROMPT_CHARS,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    MAX_WORKFLOW_BYTES,
    MAX_WORKFLOW_PARAMS_BYTES,
    json_depth,
    json_size,
)

# The one check of a user's JSON Schema, re-exported (agent.models has always been where it lived).
from agent.schemas import parse_json_schema as parse_json_schema
from agent.schemas import schema_problem as schema_problem

PROVIDERS: tuple[str, ...] = ("openai", "deepseek", "anthropic", "google", "groq", "mistral", "together")
Provider = Literal["openai", "deepseek", "anthropic", "google", "groq", "mistral", "together"]
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


# Current default model per provider, used when a request names a provider but no model.
DEFAULT_MODELS: dict[str, str] = {
    "openai": "o3",
    "deepseek": "deepseek-chat",
    "anthropic": "claude-sonnet-4-5",
    "google": "gemini-2.5-flash",
    "groq": "llama-3.3-70b-versatile",
    "mistral": "mistral-large-latest",
    "together": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
}

MAX_SYSTEM_MESSAGE_CHARS = 50_000  # a system prompt is read on every step: a bound keeps it a prompt

# Fields whose explicit JSON `null` means "use the default".
_NULL_MEANS_DEFAULT = ("provider", "wait_for_completion", "response_format", "use_cached_workflow")


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


class RequestError(ValueError):
    """A run request that cannot be accepted; `field` names the culprit, the message the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


MAX_BUDGET_USD = 100_000.0
MAX_PRICE_PER_MTOK = 10_000.0


class PricePerMTok(BaseModel):
    """USD per million tokens, in and out: the price of a model litellm cannot price (a self-hosted one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, le=MAX_PRICE_PER_MTOK, description="USD per million input (prompt) tokens")
    output: float = Field(ge=0, le=MAX_PRICE_PER_MTOK, description="USD per million output (completion) tokens")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """What these tokens cost at this price."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


class RunRequest(BaseModel):
    """A run request: the contract's fields plus a few added engine and workflow options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(description="The task to be performed by the agent", min_length=3,
                        max_length=MAX_PROMPT_CHARS)
    model: str = Field(default="o3", description="Model name; defaults per provider", max_length=MAX_MODEL_CHARS)
    provider: Provider = "openai"
    wait_for_completion: bool = True
    webhook_url: str | None = Field(default=None, description="POST the final response here (http/https)")
    response_format: Literal["text", "json"] = "text"
    json_schema: dict[str, Any] | None = Field(
        default=None, description=f"A JSON Schema for the result (object or JSON string; at most {MAX_SCHEMA_BYTES} "
                                  f"bytes and {MAX_SCHEMA_DEPTH} levels; $ref only inside the schema)")
    use_cached_workflow: bool = False
    cached_workflow: dict[str, Any] | None = None
    # added: cached workflows
    workflow_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = Field(default=None,
                                                                     description="Replay this stored workflow")
    workflow_params: dict[str, Any] | None = Field(default=None, description="Workflow parameter values")
    # added: engine options a run may carry (the form's "Advanced" part)
    start_url: str | None = Field(default=None, description="Open this URL before the first step")
    max_steps: Annotated[int, Field(ge=1, le=200)] | None = None
    use_vision: bool | None = None
    allowed_domains: list[str] | None = Field(default=None, max_length=MAX_DOMAINS,
                                              description="The agent may open only these hosts")
    # added: secrets typed into pages, never shown to the model nor kept (see agent.engine.secrets)
    sensitive_data: dict[str, SecretStr | dict[str, SecretStr]] | None = Field(
        default=None, exclude=True,
        description="{name: value} or {domain pattern: {name: value}}; the prompt and the model write "
                    "<secret>name</secret>, the value is typed only into the page and never stored or shown")
    # added: the system prompt is the user's to change (browser-use's names)
    extend_system_message: str | None = Field(default=None, max_length=MAX_SYSTEM_MESSAGE_CHARS,
                                              description="Appended to the agent's system prompt")
    override_system_message: str | None = Field(default=None, max_length=MAX_SYSTEM_MESSAGE_CHARS,
                                                description="Replaces the agent's system prompt")
    # added: what a run may cost (see agent.engine.llm for how a call is priced)
    max_cost_usd: Annotated[float, Field(gt=0, le=MAX_BUDGET_USD)] | None = Field(
        default=None, description="Stop the run (stop_reason 'budget') once its model calls have cost this many "
                                  "USD; the model needs a price (litellm's, or price_per_mtok)")
    price_per_mtok: PricePerMTok | None = Field(
        default=None, description="USD per million input and output tokens, for a model litellm cannot price "
                                  "(a self-hosted one); without it such a model's cost is unknown (null), never 0")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in _NULL_MEANS_DEFAULT:
            if name in data and data[name] is None:
                del data[name]
        provider = data.get("provider", "openai")
        if data.get("model") in (None, ""):
            data["model"] = DEFAULT_MODELS.get(provider, "o3") if isinstance(provider, str) else "o3"
        return data

    @property
    def structured(self) -> bool:
        """True when the result is JSON (a schema was given, or response_format is json)."""
        return self.json_schema is not None or self.response_format == "json"

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if len(value.strip()) < 3:
            raise ValueError("must be at least 3 characters of task description")
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must name a model, e.g. 'o3' or 'gpt-4.1-mini'")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        from agent.engine.policy import check_webhook_url  # local: pure stdlib, but keeps models a leaf

        if value is None or value.strip() == "":
            return None
        return check_webhook_url(value)

    @field_validator("start_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host, e.g. https://example.com/hook")
        return value

    @field_validator("json_schema", mode="before")
    @classmethod
    def _json_schema(cls, value: Any) -> Any:
        return parse_json_schema(value)

    @field_validator("json_schema")
    @classmethod
    def _schema_fits_provider(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        from agent.engine.schema import problem  # local: the translation is only needed for structured runs

        provider = info.data.get("provider")
        why = problem(value, provider) if value is not None and provider else None
        if why:
            raise ValueError(why)
        return value

    @field_validator("use_vision")
    @classmethod
    def _vision_model(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        from agent.engine.llm import text_only  # local: reads litellm's model map, never imports litellm

        provider, model = info.data.get("provider"), info.data.get("model")
        if value and provider and model and text_only(provider, model):
            raise ValueError(f"the model {model!r} ({provider}) takes no images according to litellm's model map; "
                             "turn use_vision off or pick a vision model")
        return value

    @field_validator("cached_workflow", mode="before")
    @classmethod
    def _cached_workflow(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            if len(value) > MAX_WORKFLOW_BYTES:
                raise ValueError(f"is {len(value)} characters long; the limit is {MAX_WORKFLOW_BYTES}")
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"is not valid JSON ({exc.msg}); give a workflow object") from None
            except RecursionError:
                raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels") from None
        if value is not None and not isinstance(value, dict):
            raise ValueError("must be a workflow object (as returned by GET /api/workflows/{id})")
        _bounded_json(value, MAX_WORKFLOW_BYTES)
        return value or None

    @field_validator("workflow_params", mode="before")
    @classmethod
    def _workflow_params(cls, value: Any) -> Any:
        _bounded_json(value, MAX_WORKFLOW_PARAMS_BYTES)
        return value

    @field_validator("extend_system_message", "override_system_message")
    @classmethod
    def _system_message(cls, value: str | None) -> str | None:
        return value if value is not None and value.strip() else None

    @field_validator("allowed_domains", mode="before")
    @classmethod
    def _domains(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [d for d in value.replace(",", " ").split() if d]
        if isinstance(value, list) and len(value) > MAX_DOMAINS:
            raise ValueError(f"has {len(value)} entries; the limit is {MAX_DOMAINS}")
        return value or None

    @field_validator("allowed_domains")
    @classmethod
    def _domain_rules(cls, value: list[str] | None) -> list[str] | None:
        from agent.engine.policy import check_domain_rules  # local: pure stdlib, but keeps models a leaf

        if value:
            for entry in value:
                if len(entry) > MAX_DOMAIN_CHARS:
                    raise ValueError(f"entry '{entry[:40]}...' is {len(entry)} characters; the limit is "
                                     f"{MAX_DOMAIN_CHARS}")
            check_domain_rules(value, "allowed_domains")
        return value

    @field_validator("sensitive_data")
    @classmethod
    def _sensitive(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        from agent.engine.secrets import check_sensitive_data  # local: pure stdlib, but keeps models a leaf

        return check_sensitive_data(value) if value else None

    @model_validator(mode="after")
    def _budget_priced(self) -> RunRequest:
        # A budget on a model nobody can price could never stop the run: refused now, saying what to give.
        if self.max_cost_usd is not None and self.price_per_mtok is None:
            from agent.engine.llm import model_price  # local: reads litellm's price map (imports litellm once)

            if model_price(self.provider, self.model) is None:
                raise ValueError(f"max_cost_usd: litellm has no price for the model {self.model!r} ({self.provider}), "
                                 'so the budget could never be counted; give price_per_mtok {"input": ..., '
                                 '"output": ...} (USD per million tokens) or drop max_cost_usd')
        return self

    @model_validator(mode="after")
    def _start_url_allowed(self) -> RunRequest:
        # Refused now rather than at the first step: a metadata address, a blocked or unlisted host.
        from agent.engine.policy import PolicyError, check_navigation

        if self.start_url is not None:
            try:
                check_navigation(self.start_url, allowed_domains=self.allowed_domains)
            except PolicyError as exc:
                raise ValueError(f"start_url: {exc}") from None
        return self


def _bounded_json(value: Any, max_bytes: int) -> None:
    """ValueError naming the limit when a JSON field nests too deeply or is too large."""
    if value is None or isinstance(value, str):
        return
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
    size = json_size(value)
    if size > max_bytes:
        raise ValueError(f"is {size} bytes as JSON; the limit is {max_bytes}")


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
    purpose: str = "step"  # step | extract | heal | params
    started_at: datetime
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    finish_reason: str | None = None
    error: str | None = None


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

    def without_content(self) -> LLMTrace:
        """This trace with the messages and the reply dropped (LOG_PROMPTS=0): usage and timing stay."""
        return LLMTrace(call=self.call, tools=self.tools, prompt_chars=self.prompt_chars, logged=False)


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message, whether its content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


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


# ---------------------------------------------------------------- events
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


class Tally:
    """What a run has done so far (steps, usage, clock); the one builder of its `RunResponse`."""

    def __init__(self, request: RunRequest, *, mode: Literal["agent", "replay"] = "agent",
                 started_at: datetime | None = None) -> None:
        self.request, self.mode = request, mode
        self.history: list[HistoryItem] = []
        self.usage = Usage()
        self.started = time.monotonic()
        self.started_at = started_at or utcnow()

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


def validation_errors(exc: Exception) -> list[dict[str, str]]:
    """Turn a pydantic ValidationError into `[{field, message}]` that name the fix."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return [{"field": getattr(exc, "field", "request"), "message": str(exc)}]
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "request"
        kind = err["type"]
        msg = err["msg"].removeprefix("Value error, ")
        named = msg.split(": ", 1)
        if field == "request" and len(named) == 2 and named[0] in RunRequest.model_fields:
            field, msg = named  # a check across fields that names the one to fix
        if kind == "extra_forbidden":
            msg = f"unknown field; allowed fields are: {', '.join(RunRequest.model_fields)}"
        elif kind == "missing":
            msg = "is required"
            if field == "prompt":
                msg = "is required: describe the task in plain words (at least 3 characters)"
        elif kind == "literal_error" and field == "provider":
            msg = f"must be one of {', '.join(PROVIDERS)}"
        elif kind == "literal_error" and field == "response_format":
            msg = "must be 'text' or 'json'"
        elif kind == "string_too_short" and field == "prompt":
            msg = "must be at least 3 characters of task description"
        elif kind in ("string_too_long", "too_long"):
            limit = (err.get("ctx") or {}).get("max_length")
            msg = f"is too long: the limit is {limit} {'characters' if kind == 'string_too_long' else 'entries'}"
        elif kind in ("greater_than_equal", "less_than_equal") and field == "workflow_id":
            msg = f"must be an id from 1 to {MAX_ID}"
        out.append({"field": field, "message": msg})
    return out
