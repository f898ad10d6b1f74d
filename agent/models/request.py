"""The run request: the contract's fields plus added engine, workflow and prompt options.

Field names follow `shared/seed/run-agent-api.txt` exactly (and in its order, which is the Gradio
API's parameter order); fields marked "added" extend the contract. Each field says, in its `About`
(agent.models.fields), how the form shows it, whether it is an engine option or a task's, and where
the docs say more: the form, the Gradio API, the engine's options, experiments and docs/api.md's
table are derived from these fields. The checks are agent.rules' (URLs, secrets, tool schemas),
agent.schemas' and agent.modelmap's (which models take images): all below this floor.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent.limits import (
    MAX_BUDGET_USD,
    MAX_DOMAIN_CHARS,
    MAX_DOMAINS,
    MAX_ID,
    MAX_JSON_DEPTH,
    MAX_MODEL_CHARS,
    MAX_PRICE_PER_MTOK,
    MAX_PROMPT_CHARS,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    MAX_SESSION_ID_CHARS,
    MAX_WORKFLOW_BYTES,
    MAX_WORKFLOW_PARAMS_BYTES,
    json_depth,
    json_size,
)
from agent.modelmap import model_price, text_only
from agent.models.fields import About, about
from agent.providers import DEFAULT_MODELS, DEFAULT_PROVIDER, PROVIDERS, Provider
from agent.rules.policy import PolicyError, check_domain_rules, check_navigation, check_webhook_url
from agent.rules.sensitive import check_sensitive_data
from agent.rules.toolschema import problem as schema_refused
from agent.schemas import parse_json_schema

__all__ = ["ENGINE_FIELDS", "FIELDS", "MAX_SYSTEM_MESSAGE_CHARS", "TASK_FIELDS", "Fork", "PricePerMTok",
           "RequestError", "RunRequest", "validation_errors"]

MAX_SYSTEM_MESSAGE_CHARS = 50_000  # a system prompt is read on every step: a bound keeps it a prompt
MAX_FORK_STEP = 10_000  # a parent's steps are bounded by its max_steps (200); replays and heals add a few

_CACHED = "Cached workflow"


class RequestError(ValueError):
    """A run request that cannot be accepted; `field` names the culprit, the message the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PricePerMTok(BaseModel):
    """USD per million tokens, in and out: the price of a model litellm cannot price (a self-hosted one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, le=MAX_PRICE_PER_MTOK, description="USD per million input (prompt) tokens")
    output: float = Field(ge=0, le=MAX_PRICE_PER_MTOK, description="USD per million output (completion) tokens")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """What these tokens cost at this price."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


class Fork(BaseModel):
    """Where a fork starts: the parent run and the step the agent takes over at (steps before it are replayed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: int = Field(ge=1, le=MAX_ID, description="The parent run (its task_run_id)")
    step: int = Field(ge=1, le=MAX_FORK_STEP, description="The step the agent takes over at (1 is the first step); "
                                                          "steps 1 to step-1 replay the parent's actions")
    heal: bool = Field(default=False, description="A replayed step that no longer fits the page is done by the agent "
                                                  "(else the fork ends with stop_reason replay_failed)")


class RunRequest(BaseModel):
    """A run request: the contract's fields plus a few added engine and workflow options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # ------------------------------------------------------------ the contract's fields
    prompt: Annotated[str, About(
        "Task (prompt)", "wb-prompt", section="main", lines=4, max_lines=14, task=True, added=False,
        placeholder="e.g. Go to the demo shop and find the cheapest USB-C cable. Return its name and price.",
    )] = Field(description="The task to be performed by the agent, in plain words (at least 3 characters)",
               min_length=3, max_length=MAX_PROMPT_CHARS)
    model: Annotated[str, About(
        "Model", "wb-model", section="main", row="model", column=1, control="combo",
        info="Suggestions, or type any model name", added=False, see="engine.md#models-and-providers",
    )] = Field(default=DEFAULT_MODELS[DEFAULT_PROVIDER], max_length=MAX_MODEL_CHARS,
               description="The model; a request that names only a provider gets that provider's default")
    provider: Annotated[Provider, About(
        "Provider", "wb-provider", section="main", row="model", added=False, see="providers.md",
    )] = Field(default=DEFAULT_PROVIDER,
               description="Who serves the model (its key or base URL comes from the environment)")
    wait_for_completion: Annotated[bool, About(
        "Wait for completion", "wb-wait", section="main", row="format", column=1, info="Off: start in the background",
        task=True, added=False,
    )] = Field(default=True, description="false: answer at once with the ids and run in the background")
    webhook_url: Annotated[str | None, About(
        "Webhook URL (optional)", "wb-webhook", section="main", task=True, added=False, see="security.md#webhooks",
        placeholder="https://example.com/hook: receives the final response",
    )] = Field(default=None, description="POST the final response here (http/https)")
    response_format: Annotated[Literal["text", "json"], About(
        "Response format", "wb-format", section="main", row="format", task=True, added=False,
    )] = Field(default="text", description="text, or json for a JSON result (see json_schema)")
    json_schema: Annotated[dict[str, Any] | None, About(
        "JSON schema (optional)", "wb-schema", section="main", lines=5, max_lines=18, task=True, added=False,
        see="providers.md#structured-output-per-provider",
    )] = Field(default=None, description=f"A JSON Schema the result must match (object or JSON string; draft 7 or "
                                         f"2020-12; at most {MAX_SCHEMA_BYTES} bytes and {MAX_SCHEMA_DEPTH} levels; "
                                         "$ref only inside the schema)")
    use_cached_workflow: Annotated[bool, About(
        "Use cached workflow", "wb-use-cached", section=_CACHED, added=False, see="workflows.md",
    )] = Field(default=False, description="Replay a cached workflow instead of asking the model")
    cached_workflow: Annotated[dict[str, Any] | None, About(
        "Cached workflow (JSON document)", "wb-cached-workflow", section=_CACHED, lines=4, max_lines=18,
        task=True, added=False,
    )] = Field(default=None, description="An inline workflow to replay (object or JSON string)")
    # ------------------------------------------------------------ added: cached workflows
    workflow_id: Annotated[Annotated[int, Field(ge=1, le=MAX_ID)] | None, About(
        "Workflow id (a saved workflow)", "wb-workflow-id", section=_CACHED, placeholder="e.g. 3", task=True,
    )] = Field(default=None, description="Replay this stored workflow")
    workflow_params: Annotated[dict[str, Any] | None, About(
        "Workflow parameters (JSON)", "wb-workflow-params", section=_CACHED, lines=3, task=True,
        json_example='{"product": "HDMI cable"}',
    )] = Field(default=None, description="The stored workflow's parameter values")
    # ------------------------------------------------------------ added: engine options (the form's "Advanced")
    start_url: Annotated[str | None, About(
        "Start URL (opened before the first step)", "wb-start-url", engine=True, task=True,
    )] = Field(default=None, description="Open this page first (recorded as step 1, no model call)")
    max_steps: Annotated[Annotated[int, Field(ge=1, le=200)] | None, About(
        "Max steps", "wb-max-steps", engine=True, engine_default=25,
    )] = Field(default=None, description="Steps before giving up")
    use_vision: Annotated[bool | None, About(
        "Use vision (send screenshots to the model)", "wb-use-vision", engine=True, engine_default=False,
    )] = Field(default=None, description="Send each step's screenshot to the model")
    allowed_domains: Annotated[list[str] | None, About(
        "Allowed domains (comma separated; empty: any public site)", "wb-allowed-domains", engine=True,
        placeholder="shop.example, *.example.org", see="security.md#navigation-policy",
    )] = Field(default=None, max_length=MAX_DOMAINS, description="The agent may open only these hosts")
    # ------------------------------------------------------------ added: secrets (see agent.engine.secrets)
    sensitive_data: Annotated[dict[str, SecretStr | dict[str, SecretStr]] | None, About(
        "Sensitive data (JSON; typed into pages, never shown to the model or kept)", "wb-sensitive-data",
        control="secret", json_example='{"password": "..."}', see="security.md#secrets-a-task-needs-sensitive_data",
        placeholder='{"password": "..."}: write <secret>password</secret> in the task',
    )] = Field(default=None, exclude=True,
               description="{name: value} or {domain pattern: {name: value}}; the prompt and the model write "
                           "<secret>name</secret>, the value is typed only into the page and never stored or shown")
    # ------------------------------------------------------------ added: the system prompt (browser-use's names)
    extend_system_message: Annotated[str | None, About(
        "Extend the system prompt (appended to ours)", "wb-extend-system", lines=2, max_lines=12,
        placeholder="e.g. Prices on this site are per pack: always read the pack size.",
        see="prompts.md#the-system-prompt-is-yours-to-change",
    )] = Field(default=None, max_length=MAX_SYSTEM_MESSAGE_CHARS, description="Appended to the agent's system prompt")
    override_system_message: Annotated[str | None, About(
        "Override the system prompt (replaces ours; empty: ours)", "wb-override-system", lines=3, max_lines=20,
    )] = Field(default=None, max_length=MAX_SYSTEM_MESSAGE_CHARS,
               description="Replaces the agent's system prompt (extend_system_message is still appended)")
    # ------------------------------------------------------------ added: what a run may cost (agent.engine.llm prices)
    max_cost_usd: Annotated[Annotated[float, Field(gt=0, le=MAX_BUDGET_USD)] | None, About(
        "Budget (USD; the run stops once its model calls cost this)", "wb-max-cost", placeholder="e.g. 0.50",
        see="experiments.md#costs-before-and-during",
    )] = Field(default=None, description="Stop the run (stop_reason 'budget') once its model calls have cost this many "
                                         "USD; the model needs a price (litellm's, or price_per_mtok)")
    price_per_mtok: Annotated[PricePerMTok | None, About(
        "Price per million tokens (JSON; for a model litellm cannot price)", "wb-price-per-mtok", control="json",
        json_example='{"input": 0.5, "output": 1.5}', placeholder='{"input": 0.5, "output": 1.5}',
        see="experiments.md#costs-before-and-during",
    )] = Field(default=None, description="USD per million input and output tokens, for a model litellm cannot price "
                                         "(a self-hosted one); without it such a model's cost is unknown (null), "
                                         "never 0")
    # ------------------------------------------------------------ added: tracing tools (OpenTelemetry session.id)
    session_id: Annotated[str | None, About(
        "Session id (groups runs in Phoenix, Langfuse; empty: the saved task's or experiment's)", "wb-session-id",
        placeholder="e.g. checkout-study", see="prompts.md#opentelemetry-traces",
    )] = Field(default=None, max_length=MAX_SESSION_ID_CHARS,
               description=f"Groups this run with others in tracing tools (the exported trace's session.id); "
                           f"1 to {MAX_SESSION_ID_CHARS} printable characters. Default: the saved task's or the "
                           "experiment's id")
    # ------------------------------------------------------------ added: forks (agent.workflows.fork)
    fork: Annotated[Fork | None, About(
        "Fork from a run's step (JSON; \"Fork from here\" on a step fills it)", "wb-fork", control="json",
        lines=2, json_example='{"run_id": 12, "step": 8}', see="prompts.md#fork-a-run-from-a-step",
    )] = Field(default=None, description="{run_id, step, heal}: replay run_id's steps before `step` without the "
                                         "model, then the agent takes over at `step` with this request's settings; "
                                         "fields left out of a POST /api/runs body come from the parent's request")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in _NULL_MEANS_DEFAULT:
            if name in data and data[name] is None:
                del data[name]
        provider = data.get("provider", DEFAULT_PROVIDER)
        if data.get("model") in (None, ""):
            fallback = DEFAULT_MODELS[DEFAULT_PROVIDER]
            data["model"] = DEFAULT_MODELS.get(provider, fallback) if isinstance(provider, str) else fallback
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
        provider = info.data.get("provider")
        why = schema_refused(value, provider) if value is not None and provider else None
        if why:
            raise ValueError(why)
        return value

    @field_validator("use_vision")
    @classmethod
    def _vision_model(cls, value: bool | None, info: ValidationInfo) -> bool | None:
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

    @field_validator("session_id")
    @classmethod
    def _session_id(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.isprintable():
            raise ValueError("must be printable characters only (no line breaks or control characters), "
                             "e.g. 'checkout-study'")
        return value

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
        return check_sensitive_data(value) if value else None

    @model_validator(mode="after")
    def _budget_priced(self) -> RunRequest:
        # A budget on a model nobody can price could never stop the run: refused now, saying what to give.
        if self.max_cost_usd is not None and self.price_per_mtok is None and model_price(self.provider,
                                                                                         self.model) is None:
            raise ValueError(f"max_cost_usd: litellm has no price for the model {self.model!r} ({self.provider}), "
                             'so the budget could never be counted; give price_per_mtok {"input": ..., '
                             '"output": ...} (USD per million tokens) or drop max_cost_usd')
        return self

    @model_validator(mode="after")
    def _start_url_allowed(self) -> RunRequest:
        # Refused now rather than at the first step: a metadata address, a blocked or unlisted host.
        if self.start_url is not None:
            try:
                check_navigation(self.start_url, allowed_domains=self.allowed_domains)
            except PolicyError as exc:
                raise ValueError(f"start_url: {exc}") from None
        return self


def _takes_none(annotation: Any) -> bool:
    return type(None) in get_args(annotation)


def _bounded_json(value: Any, max_bytes: int) -> None:
    """ValueError naming the limit when a JSON field nests too deeply or is too large."""
    if value is None or isinstance(value, str):
        return
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
    size = json_size(value)
    if size > max_bytes:
        raise ValueError(f"is {size} bytes as JSON; the limit is {max_bytes}")


def validation_errors(exc: Exception, *, model: type[BaseModel] | None = None) -> list[dict[str, str]]:
    """Turn a pydantic ValidationError into `[{field, message}]` that name the fix (`model`: the one validated,
    RunRequest by default: an unknown field's message lists its fields)."""
    fields = (model or RunRequest).model_fields
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
            nested = model is None and len(err["loc"]) > 1 and err["loc"][0] == "fork"
            msg = f"unknown field; allowed fields are: {', '.join(Fork.model_fields if nested else fields)}"
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


# What the rest of the workbench derives from the fields (agent.models.fields).
FIELDS: dict[str, About] = {name: about(info) for name, info in RunRequest.model_fields.items()}
ENGINE_FIELDS: tuple[str, ...] = tuple(name for name, a in FIELDS.items() if a.engine)
TASK_FIELDS: frozenset[str] = frozenset(name for name, a in FIELDS.items() if a.task)
# Fields whose explicit JSON `null` means "use the default": the optional ones that cannot hold None.
_NULL_MEANS_DEFAULT: tuple[str, ...] = tuple(
    name for name, info in RunRequest.model_fields.items()
    if not info.is_required() and info.default is not None and not _takes_none(info.annotation))
