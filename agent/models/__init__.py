"""The run contract (request, response, history) and the engine's events: the floor every layer stands on.

`request` (RunRequest: each field with its `About`, from which the form, the Gradio API, the engine's
options, experiments and the docs derive), `contract` (the response side and why a run ended),
`events` (what the engine yields, and each model call's trace), `tally` (the one builder of a
response), `fields` (`About`) and `ask` (asking the model again at a step). Every name is re-exported
here: `from agent.models import X`.
"""

from agent.models.ask import MAX_SAMPLES, AskAnswer, AskReply, AskRequest, NotAskable, ProposedAction
from agent.models.contract import (
    INFRASTRUCTURE_REASONS,
    NO_FAIR_CHANCE,
    STOP_REASONS,
    STOPPED_REASONS,
    ActionResult,
    ExecutedBy,
    HistoryItem,
    LLMCall,
    RunResponse,
    Status,
    StopReason,
    Usage,
    json_safe,
    screenshot_url,
    utcnow,
)
from agent.models.events import (
    Event,
    LLMTrace,
    PageChecked,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    WorkflowHealed,
    message_text,
)
from agent.models.fields import About
from agent.models.request import (
    ENGINE_FIELDS,
    FIELDS,
    MAX_SYSTEM_MESSAGE_CHARS,
    TASK_FIELDS,
    Fork,
    PricePerMTok,
    RequestError,
    RunRequest,
    validation_errors,
)
from agent.models.review import REVIEWER_PATTERN, ReviewError, ReviewIn, Verdict, read_review
from agent.models.tally import Tally
from agent.providers import DEFAULT_MODELS, PROVIDERS, Provider

# The one check of a user's JSON Schema, re-exported (agent.models has always been where it lived).
from agent.schemas import parse_json_schema, schema_problem

__all__ = [
    "DEFAULT_MODELS", "ENGINE_FIELDS", "FIELDS", "INFRASTRUCTURE_REASONS", "MAX_SAMPLES", "MAX_SYSTEM_MESSAGE_CHARS",
    "NO_FAIR_CHANCE", "PROVIDERS", "STOPPED_REASONS", "STOP_REASONS", "TASK_FIELDS", "About", "ActionResult",
    "AskAnswer", "AskReply", "AskRequest", "Event", "ExecutedBy", "Fork", "HistoryItem", "LLMCall", "LLMTrace",
    "NotAskable", "PageChecked", "PricePerMTok", "ProposedAction", "Provider", "RequestError", "RunFinished",
    "RunRequest", "RunResponse", "RunStarted", "Status", "StepFinished", "StepStarted", "StopReason", "Tally",
    "Usage", "WorkflowHealed", "json_safe", "message_text", "parse_json_schema", "schema_problem", "screenshot_url",
    "utcnow", "validation_errors",
    "REVIEWER_PATTERN", "ReviewError", "ReviewIn", "Verdict", "read_review",
]
