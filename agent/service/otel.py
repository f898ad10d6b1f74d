"""OpenTelemetry export: each run as a trace, following the GenAI semantic conventions.

When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the run service
hands every recorded event to a `RunTracer`, which builds one trace per run: a span for the run
(`invoke_agent`), a span per step, a span per LLM call (`chat {model}` with `gen_ai.*` attributes:
provider, model, tokens, finish reasons) and a span per action (`execute_tool {name}`). Spans are
built from the events after the fact, with the times the events carry, so the engine knows nothing
of telemetry. Langfuse, Phoenix, Jaeger or any OTLP collector shows them.

Message content (the prompt, the reply, action parameters) goes into spans only when
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` (the conventions' own opt-in) and
LOG_PROMPTS is not 0. Without the endpoint nothing here is imported beyond this file: no cost.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from agent.models import HistoryItem, LLMCall, LLMTrace, RunFinished, RunResponse, RunStarted, StepFinished

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

__all__ = ["RunTracer", "enabled", "from_env"]

log = logging.getLogger(__name__)

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"
SERVICE_NAME = "web-agent-workbench"
AGENT_NAME = "web-agent"
MAX_OPEN_RUNS = 1000  # run spans kept open at once; a run never finished (a bug) cannot pile up
MAX_ATTRIBUTE_CHARS = 100_000  # one content attribute (a prompt) is cut beyond this
# gen_ai.provider.name's well-known values, where ours differ.
PROVIDER_NAMES = {"google": "gcp.gemini", "together": "together_ai", "mistral": "mistral_ai"}


def enabled() -> bool:
    """True when an OTLP endpoint is configured."""
    return bool(os.environ.get(ENDPOINT_ENV, "").strip() or os.environ.get(TRACES_ENDPOINT_ENV, "").strip())


def from_env(*, log_prompts: bool = True) -> RunTracer | None:
    """A tracer exporting over OTLP/HTTP when the endpoint is set (the SDK reads OTEL_* itself); else None."""
    if not enabled():
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get(SERVICE_NAME_ENV, "").strip() or SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    capture = os.environ.get(CAPTURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return RunTracer(provider, capture_content=capture and log_prompts)


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1e9)


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_ATTRIBUTE_CHARS else text[:MAX_ATTRIBUTE_CHARS] + "…"


class RunTracer:
    """An observer of the run service: events in, OpenTelemetry spans out (one trace per run)."""

    def __init__(self, provider: TracerProvider, *, capture_content: bool = False) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.provider = provider
        self.tracer = provider.get_tracer("agent.service.otel")
        self.capture_content = capture_content
        self._runs: dict[int, Span] = {}

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
            self._runs.pop(run_id).end()
        self.provider.shutdown()

    # ------------------------------------------------------------ spans
    def _start_run(self, run_id: int, event: RunStarted) -> None:
        if len(self._runs) >= MAX_OPEN_RUNS:
            oldest = min(self._runs)
            self._runs.pop(oldest).end()
        request = event.request
        span = self.tracer.start_span(
            f"invoke_agent {AGENT_NAME}", start_time=_ns(event.at), kind=self._trace.SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT_NAME,
                "gen_ai.provider.name": PROVIDER_NAMES.get(request.provider, request.provider),
                "gen_ai.system": request.provider, "gen_ai.request.model": request.model,
                "gen_ai.conversation.id": str(run_id),
                "workbench.run_id": run_id, "workbench.mode": event.mode, "workbench.litellm_model": event.model,
            })
        if self.capture_content:
            span.set_attribute("workbench.prompt", request.prompt[:MAX_ATTRIBUTE_CHARS])
        self._runs[run_id] = span

    def _step(self, run_id: int, event: StepFinished) -> None:
        parent = self._runs.get(run_id)
        if parent is None:
            return
        item = event.item
        start = item.started_at or event.at - timedelta(milliseconds=item.duration_ms)
        end = start + timedelta(milliseconds=item.duration_ms)
        context = self._trace.set_span_in_context(parent)
        span = self.tracer.start_span(f"step {item.step}", context=context, start_time=_ns(start), attributes={
            "workbench.step": item.step, "workbench.executed_by": item.executed_by,
            "workbench.url": item.url or "", "workbench.description": item.description[:1000],
            "workbench.llm_ms": item.llm_ms, "workbench.browser_ms": item.browser_ms,
        })
        inner = self._trace.set_span_in_context(span)
        for call in item.llm_calls:
            self._llm_span(inner, call, next((t for t in event.traces if t.call == call), None))
        self._action_spans(inner, item, start, end)
        span.end(end_time=_ns(end))

    def _llm_span(self, context: Any, call: LLMCall, trace: LLMTrace | None) -> None:
        model = call.model.split("/", 1)[-1]
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER_NAMES.get(call.provider, call.provider), "gen_ai.system": call.provider,
            "gen_ai.request.model": model, "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": call.input_tokens, "gen_ai.usage.output_tokens": call.output_tokens,
            "workbench.purpose": call.purpose,
        }
        if call.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [call.finish_reason]
        if call.cost_usd is not None:
            attributes["workbench.cost_usd"] = call.cost_usd
        if trace is not None and trace.logged and self.capture_content:
            attributes.update(_content(trace))
        start = _ns(call.started_at)
        span = self.tracer.start_span(f"chat {model}", context=context, start_time=start,
                                      kind=self._trace.SpanKind.CLIENT, attributes=attributes)
        if call.error:
            span.set_attribute("error.type", "model_call_failed")
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, call.error[:500]))
        span.end(end_time=start + int(call.latency_ms * 1e6))

    def _action_spans(self, context: Any, item: HistoryItem, start: datetime, end: datetime) -> None:
        """One span per action, one after the other from the end of the step's first model call.

        Actions carry their duration, not their start: they ran in order once the model had answered.
        """
        at = start
        if item.llm_calls:
            first = item.llm_calls[0]
            at = max(start, first.started_at + timedelta(milliseconds=first.latency_ms))
        for action in item.actions:
            begin = min(at, end)
            finish = min(begin + timedelta(milliseconds=action.duration_ms), end)
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": action.name,
                "gen_ai.tool.type": "function", "workbench.executed_by": action.executed_by,
            }
            if action.success is not None:
                attributes["workbench.success"] = action.success
            if self.capture_content:
                attributes["gen_ai.tool.call.arguments"] = _json(action.params)
            span = self.tracer.start_span(f"execute_tool {action.name}", context=context, start_time=_ns(begin),
                                          attributes=attributes)
            if action.error:
                span.set_attribute("error.type", "action_failed")
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, action.error[:500]))
            span.end(end_time=_ns(finish))
            at = finish

    def _finish_run(self, run_id: int, response: RunResponse, at: datetime) -> None:
        span = self._runs.pop(run_id, None)
        if span is None:  # ended before it started (cancelled while queued): a run span all the same
            span = self.tracer.start_span(f"invoke_agent {AGENT_NAME}", start_time=_ns(response.started_at or at),
                                          attributes={"gen_ai.operation.name": "invoke_agent",
                                                      "gen_ai.agent.name": AGENT_NAME, "workbench.run_id": run_id})
        usage = response.usage
        span.set_attributes({
            "workbench.task_id": response.task_id or 0, "workbench.status": response.status,
            "workbench.steps": len(response.history),
            "gen_ai.usage.input_tokens": usage.input_tokens, "gen_ai.usage.output_tokens": usage.output_tokens,
        })
        if usage.cost_usd is not None:  # unknown (a model without a price) is left out, never sent as 0
            span.set_attribute("workbench.cost_usd", usage.cost_usd)
        if response.stop_reason:
            span.set_attribute("workbench.stop_reason", str(response.stop_reason))
        if response.status == "failure":
            span.set_attribute("error.type", "run_failed")
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, (response.error or "failure")[:500]))
        end = response.finished_at or at
        span.end(end_time=_ns(end))


def _content(trace: LLMTrace) -> dict[str, Any]:
    """The call's content as the conventions' opt-in attributes (JSON text, bounded)."""
    out = {
        "gen_ai.input.messages": _json([
            {"role": m.get("role"), "parts": [{"type": "text", "content": c} if isinstance(c, str) else c
                                              for c in ([m.get("content")] if isinstance(m.get("content"), str)
                                                        else m.get("content") or [])]}
            for m in trace.messages]),
        "gen_ai.output.messages": _json([{
            "role": "assistant", "finish_reason": trace.call.finish_reason,
            "parts": ([{"type": "text", "content": trace.reply_text}] if trace.reply_text else [])
            + [{"type": "tool_call", "id": c.get("id"), "name": c.get("name"), "arguments": c.get("arguments")}
               for c in trace.tool_calls]}]),
    }
    if trace.system_prompt is not None:
        out["gen_ai.system_instructions"] = _json([{"type": "text", "content": trace.system_prompt}])
    return out
