"""OpenTelemetry export: each run as a trace that Phoenix, Langfuse and any OTLP tool show fully.

When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the run service
hands every recorded (already scrubbed) event to a `RunTracer`, which builds one trace per run: a span
for the run (`invoke_agent web-agent`; OpenInference kind AGENT), one per step (`step N`, CHAIN), one
per LLM call (`chat {model}`, LLM) and one per action (`execute_tool {name}`, TOOL). Each carries the
OpenTelemetry GenAI conventions, OpenInference's and Langfuse's attributes (`agent.service.otel_content`),
the run's session (`session.id`: the request's `session_id`, a saved task's or an experiment's id) and
the trace's name. Spans are built from the events after the fact, with the times the events carry,
so the engine knows nothing of telemetry.

Content (the task, messages, replies, tool definitions, action arguments and outcomes, the result)
goes into spans only with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` (the conventions'
own opt-in) and LOG_PROMPTS not 0. The project (Phoenix's `openinference.project.name`, the
`service.name`) is `PHOENIX_PROJECT_NAME`, else `OTEL_SERVICE_NAME`, else web-agent-workbench
(`OTEL_RESOURCE_ATTRIBUTES` may name either).
Spans the collector could not take are kept and sent again (`agent.service.otel_export`). Without the
endpoint nothing here is imported beyond this file: no cost.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from agent.models import (
    ActionResult,
    HistoryItem,
    LLMCall,
    LLMTrace,
    RunFinished,
    RunRequest,
    RunResponse,
    RunStarted,
    StepFinished,
    screenshot_url,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

__all__ = ["RunTracer", "enabled", "from_env", "make_provider", "resource_attributes"]

log = logging.getLogger(__name__)

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"
PROJECT_ENV = "PHOENIX_PROJECT_NAME"
SERVICE_NAME = "web-agent-workbench"
AGENT_NAME = "web-agent"
MAX_OPEN_RUNS = 1000  # run spans kept open at once; a run never finished (a bug) cannot pile up
MAX_TRACE_NAME_CHARS = 200
# The SDK keeps 128 attributes a span by default and then silently drops the oldest; an LLM span with its
# messages, tool calls and tool definitions flattened (OpenInference) holds a few hundred.
MAX_SPAN_ATTRIBUTES = 2000
SPAN_ATTRIBUTES_ENV = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"  # the SDK's own settings: when either is set, it wins
ATTRIBUTES_ENV = "OTEL_ATTRIBUTE_COUNT_LIMIT"


def enabled() -> bool:
    """True when an OTLP endpoint is configured."""
    return bool(os.environ.get(ENDPOINT_ENV, "").strip() or os.environ.get(TRACES_ENDPOINT_ENV, "").strip())


def resource_attributes() -> dict[str, str]:
    """service.name (OTEL_SERVICE_NAME, else OTEL_RESOURCE_ATTRIBUTES', else ours) and Phoenix's project name
    (PHOENIX_PROJECT_NAME, else OTEL_RESOURCE_ATTRIBUTES' openinference.project.name, else the service name)."""
    from opentelemetry.sdk.resources import OTELResourceDetector

    from agent.service.otel_content import PROJECT_NAME

    given = OTELResourceDetector().detect().attributes
    name = os.environ.get(SERVICE_NAME_ENV, "").strip() or str(given.get("service.name") or SERVICE_NAME)
    project = os.environ.get(PROJECT_ENV, "").strip() or str(given.get(PROJECT_NAME) or name)
    return {"service.name": name, PROJECT_NAME: project}


def make_provider(exporter: SpanExporter, *, batch: bool = True) -> TracerProvider:
    """A TracerProvider for runs: our resource, room for the flattened attributes, `exporter` behind a
    batch processor (or a simple one, `batch=False`: each span sent as it ends) and `KeepingExporter`."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from agent.service.otel_export import KeepingExporter

    given = os.environ.get(SPAN_ATTRIBUTES_ENV, "").strip() or os.environ.get(ATTRIBUTES_ENV, "").strip()
    limits = None if given else SpanLimits(max_span_attributes=MAX_SPAN_ATTRIBUTES)
    provider = TracerProvider(resource=Resource.create(resource_attributes()), span_limits=limits)
    kept = KeepingExporter(exporter)
    provider.add_span_processor(BatchSpanProcessor(kept) if batch else SimpleSpanProcessor(kept))
    return provider


def from_env(*, log_prompts: bool = True) -> RunTracer | None:
    """A tracer exporting over OTLP/HTTP when the endpoint is set (the SDK reads OTEL_* itself); else None."""
    if not enabled():
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    capture = os.environ.get(CAPTURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return RunTracer(make_provider(OTLPSpanExporter()), capture_content=capture and log_prompts)


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1e9)


@dataclass
class _Run:
    """A run whose span is open: the span and what every span of the run carries (session, trace name)."""

    span: Span
    common: dict[str, Any] = field(default_factory=dict)


class RunTracer:
    """An observer of the run service: events in, OpenTelemetry spans out (one trace per run)."""

    def __init__(self, provider: TracerProvider, *, capture_content: bool = False) -> None:
        from opentelemetry import trace

        from agent.service import otel_content

        self._trace = trace
        self._c = otel_content
        self.provider = provider
        self.tracer = provider.get_tracer("agent.service.otel")
        self.capture_content = capture_content
        self.image_limit = otel_content.image_limit()
        self._runs: dict[int, _Run] = {}

    def __call__(self, run_id: int, event: Any) -> None:
        """Turn one recorded event into spans."""
        if isinstance(event, RunStarted):
            self._start_run(run_id, event)
        elif isinstance(event, StepFinished):
            self._step(run_id, event)
        elif isinstance(event, RunFinished):
            self._finish_run(run_id, event.response, event.at)

    def shutdown(self) -> None:
        """End the spans of runs still open and send everything (bounded by the SDK's timeouts)."""
        for run_id in list(self._runs):
            self._runs.pop(run_id).span.end()
        self.provider.shutdown()

    # ------------------------------------------------------------ what every span of a run carries
    def _common(self, run_id: int, request: RunRequest | None) -> dict[str, Any]:
        """The session (OpenInference, Langfuse, GenAI) and the trace's name: on every span, so that a trace
        whose root never arrived is still named and in its session."""
        c = self._c
        if self.capture_content and request is not None:
            name = c.cut_text(" ".join(request.prompt.split()), MAX_TRACE_NAME_CHARS)
        else:
            name = f"{AGENT_NAME} run {run_id}"
        out: dict[str, Any] = {c.LANGFUSE.TRACE_NAME: name}
        if request is not None and request.session_id:
            out |= {c.SA.SESSION_ID: request.session_id, c.LANGFUSE.SESSION_ID: request.session_id,
                    "gen_ai.conversation.id": request.session_id}
        return out

    # ------------------------------------------------------------ spans
    def _start_run(self, run_id: int, event: RunStarted) -> None:
        if len(self._runs) >= MAX_OPEN_RUNS:
            oldest = min(self._runs)
            self._runs.pop(oldest).span.end()
        c, request = self._c, event.request
        genai_provider, _ = c.provider_names(request.provider)
        common = self._common(run_id, request)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT_NAME,
            "gen_ai.provider.name": genai_provider, "gen_ai.system": request.provider,
            "gen_ai.request.model": request.model,
            c.SA.OPENINFERENCE_SPAN_KIND: c.Kind.AGENT.value, c.SA.AGENT_NAME: AGENT_NAME,
            c.LANGFUSE.OBSERVATION_TYPE: "agent",
            "workbench.run_id": run_id, "workbench.mode": event.mode, "workbench.litellm_model": event.model,
            **common,
        }
        if self.capture_content:
            attributes |= c.value_attributes("input", request.prompt)
            attributes[c.LANGFUSE.TRACE_INPUT] = c.cut_text(request.prompt)
        span = self.tracer.start_span(f"invoke_agent {AGENT_NAME}", start_time=_ns(event.at),
                                      kind=self._trace.SpanKind.INTERNAL, attributes=attributes)
        self._runs[run_id] = _Run(span, common)

    def _step(self, run_id: int, event: StepFinished) -> None:
        run = self._runs.get(run_id)
        if run is None:
            return
        c, item = self._c, event.item
        start = item.started_at or event.at - timedelta(milliseconds=item.duration_ms)
        end = start + timedelta(milliseconds=item.duration_ms)
        attributes: dict[str, Any] = {
            c.SA.OPENINFERENCE_SPAN_KIND: c.Kind.CHAIN.value, c.LANGFUSE.OBSERVATION_TYPE: "chain",
            "workbench.step": item.step, "workbench.executed_by": item.executed_by,
            "workbench.url": item.url or "", "workbench.description": item.description[:1000],
            "workbench.llm_ms": item.llm_ms, "workbench.browser_ms": item.browser_ms, **run.common,
        }
        if self.capture_content:  # the step's goal, and what its actions did
            attributes |= c.value_attributes("input", item.description)
            attributes |= c.value_attributes("output", [{"name": a.name} | _outcome(a) for a in item.actions])
        span = self.tracer.start_span(f"step {item.step}", context=self._trace.set_span_in_context(run.span),
                                      start_time=_ns(start), attributes=attributes)
        inner = self._trace.set_span_in_context(span)
        shots = {item.step: item.screenshot}
        for call in item.llm_calls:
            trace = next((t for t in event.traces if t.call == call), None)
            self._llm_span(inner, run_id, run.common, call, trace, shots)
        self._action_spans(inner, run.common, item, event.traces, start, end)
        span.end(end_time=_ns(end))

    def _llm_span(self, context: Any, run_id: int, common: dict[str, Any], call: LLMCall, trace: LLMTrace | None,
                  shots: dict[int, str | None]) -> None:
        c = self._c
        model = call.model.split("/", 1)[-1]
        answered = (trace.response_model if trace is not None else None) or model
        genai_provider, oi_provider = c.provider_names(call.provider)
        tokens = {"input": call.input_tokens, "output": call.output_tokens,
                  "total": call.input_tokens + call.output_tokens}
        parameters = dict(trace.parameters) if trace is not None else {}
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": genai_provider, "gen_ai.system": call.provider,
            "gen_ai.request.model": model, "gen_ai.response.model": answered,
            "gen_ai.usage.input_tokens": call.input_tokens, "gen_ai.usage.output_tokens": call.output_tokens,
            c.SA.OPENINFERENCE_SPAN_KIND: c.Kind.LLM.value, c.SA.LLM_SYSTEM: oi_provider,
            c.SA.LLM_PROVIDER: oi_provider, c.SA.LLM_MODEL_NAME: answered,
            c.SA.LLM_REQUEST_MODEL_NAME: model, c.SA.LLM_RESPONSE_MODEL_NAME: answered,
            c.SA.LLM_TOKEN_COUNT_PROMPT: tokens["input"], c.SA.LLM_TOKEN_COUNT_COMPLETION: tokens["output"],
            c.SA.LLM_TOKEN_COUNT_TOTAL: tokens["total"],
            c.SA.LLM_INVOCATION_PARAMETERS: c.bounded_json({"model": model, **parameters}),
            c.LANGFUSE.OBSERVATION_TYPE: "generation", c.LANGFUSE.USAGE_DETAILS: c.bounded_json(tokens),
            "workbench.purpose": call.purpose, **common,
        }
        if isinstance(parameters.get("max_tokens"), int):
            attributes["gen_ai.request.max_tokens"] = parameters["max_tokens"]
        if call.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [call.finish_reason]
        if call.cost_usd is not None:
            attributes["workbench.cost_usd"] = call.cost_usd
            attributes[c.SA.LLM_COST_TOTAL] = call.cost_usd
            attributes[c.LANGFUSE.COST_DETAILS] = c.bounded_json({"total": call.cost_usd})
        if trace is not None and trace.logged and self.capture_content:
            def link(step: int | None) -> str:
                return screenshot_url(run_id, step or 0)

            def image(step: int | None) -> str:
                return c.image_url(shots.get(step or 0), link(step), self.image_limit)

            attributes |= c.genai_content(trace, link)
            attributes |= c.openinference_messages(trace, image)
            attributes |= c.genai_tool_definitions(trace.tool_definitions)
            attributes |= c.openinference_tools(trace.tool_definitions)
        start = _ns(call.started_at)
        span = self.tracer.start_span(f"chat {model}", context=context, start_time=start,
                                      kind=self._trace.SpanKind.CLIENT, attributes=attributes)
        if call.error:
            span.set_attribute("error.type", "model_call_failed")
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, call.error[:500]))
        span.end(end_time=start + int(call.latency_ms * 1e6))

    def _action_spans(self, context: Any, common: dict[str, Any], item: HistoryItem, traces: list[LLMTrace],
                      start: datetime, end: datetime) -> None:
        """One span per action, one after the other from the end of the step's first model call.

        Actions carry their duration, not their start: they ran in order once the model had answered. Each
        is matched to the model's tool call it ran (same name, in order) for its id and definition.
        """
        c = self._c
        at = start
        if item.llm_calls:
            first = item.llm_calls[0]
            at = max(start, first.started_at + timedelta(milliseconds=first.latency_ms))
        calls = [(t, tc) for t in traces if t.call.purpose == "step" for tc in t.tool_calls]
        for action in item.actions:
            begin = min(at, end)
            finish = min(begin + timedelta(milliseconds=action.duration_ms), end)
            matched = next(((t, tc) for t, tc in calls if tc.get("name") == action.name), None)
            if matched is not None:
                calls.remove(matched)
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": action.name,
                "gen_ai.tool.type": "function", c.SA.OPENINFERENCE_SPAN_KIND: c.Kind.TOOL.value,
                c.SA.TOOL_NAME: action.name, c.LANGFUSE.OBSERVATION_TYPE: "tool",
                "workbench.executed_by": action.executed_by, **common,
            }
            if matched is not None and matched[1].get("id"):
                call_id = str(matched[1]["id"])
                attributes |= {"gen_ai.tool.call.id": call_id, c.SA.TOOL_ID: call_id, c.TOOL_CALL_ID: call_id}
            if action.success is not None:
                attributes["workbench.success"] = action.success
            if self.capture_content:
                attributes |= self._tool_content(action, matched[0] if matched else None)
            span = self.tracer.start_span(f"execute_tool {action.name}", context=context, start_time=_ns(begin),
                                          attributes=attributes)
            if action.error:
                span.set_attribute("error.type", "action_failed")
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, action.error[:500]))
            span.end(end_time=_ns(finish))
            at = finish

    def _tool_content(self, action: ActionResult, trace: LLMTrace | None) -> dict[str, Any]:
        """An action's arguments and outcome, and the definition of the tool it ran."""
        c = self._c
        outcome = _outcome(action)
        out = {"gen_ai.tool.call.arguments": c.bounded_json(action.params),
               "gen_ai.tool.call.result": c.bounded_json(outcome),
               **c.value_attributes("input", action.params), **c.value_attributes("output", outcome)}
        definition = c.tool_definition(trace.tool_definitions, action.name) if trace is not None else None
        if definition is not None:
            if definition.get("description"):
                out["gen_ai.tool.description"] = out[c.SA.TOOL_DESCRIPTION] = c.cut_text(str(definition["description"]))
            if definition.get("parameters") is not None:
                out[c.SA.TOOL_PARAMETERS] = c.bounded_json(definition["parameters"])
        return out

    def _finish_run(self, run_id: int, response: RunResponse, at: datetime) -> None:
        c = self._c
        run = self._runs.pop(run_id, None)
        if run is None:  # ended before it started (cancelled while queued): a run span all the same
            common = self._common(run_id, None)
            run = _Run(self.tracer.start_span(
                f"invoke_agent {AGENT_NAME}", start_time=_ns(response.started_at or at),
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT_NAME,
                            c.SA.OPENINFERENCE_SPAN_KIND: c.Kind.AGENT.value, c.LANGFUSE.OBSERVATION_TYPE: "agent",
                            "workbench.run_id": run_id, **common}), common)
        span, usage = run.span, response.usage
        span.set_attributes({
            "workbench.task_id": response.task_id or 0, "workbench.status": response.status,
            "workbench.steps": len(response.history),
            "gen_ai.usage.input_tokens": usage.input_tokens, "gen_ai.usage.output_tokens": usage.output_tokens,
        })
        if usage.cost_usd is not None:  # unknown (a model without a price) is left out, never sent as 0
            span.set_attribute("workbench.cost_usd", usage.cost_usd)
        if self.capture_content:  # the result; a run without one says why it ended
            result = response.result if response.result is not None else (response.error or response.status)
            output = c.value_attributes("output", result)
            span.set_attributes(output | {c.LANGFUSE.TRACE_OUTPUT: output[c.SA.OUTPUT_VALUE]})
        if response.stop_reason:
            span.set_attribute("workbench.stop_reason", str(response.stop_reason))
        if response.status == "failure":
            span.set_attribute("error.type", "run_failed")
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, (response.error or "failure")[:500]))
        span.end(end_time=_ns(response.finished_at or at))


def _outcome(action: ActionResult) -> dict[str, Any]:
    """What an action did, as shown for its tool span and its step (fields that are set)."""
    out: dict[str, Any] = {"success": action.success}
    if action.extracted_content:
        out["extracted_content"] = action.extracted_content
    if action.error:
        out["error"] = action.error
    if action.is_done:
        out["is_done"] = True
        if action.data is not None:
            out["data"] = action.data
    return out
