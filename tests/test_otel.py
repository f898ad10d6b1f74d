"""OpenTelemetry export of runs (GenAI semantic conventions): in process with the SDK's in-memory
exporter, and end to end from the real app to a local OTLP/HTTP receiver on 127.0.0.1 whose protobuf
requests are decoded. Off (no endpoint): nothing of the SDK is imported."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agent.engine.browser import Browser
from agent.log.store import Store
from agent.service.otel import RunTracer
from agent.service.runs import RunService
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply
from tests.apphelpers import ROOT, App, agent_script, poll


def two_steps(body: dict[str, Any]) -> Any:
    """Click "Form page" (step 2, after the start page), then done."""
    if "Step 2 of at most" in last_user_text(body):
        return reply("Open the form page.", call("click", index=find_index(body, "Form page", tag="a")))
    return reply("Report it.", call("done", text="a form", success=True), usage=(120, 30))


@pytest.fixture
def spans_of(tmp_path: Path) -> Iterator[tuple[RunTracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield RunTracer(provider, capture_content=True), exporter
    provider.shutdown()


async def test_a_run_is_a_trace_of_run_step_llm_call_and_action_spans(
        fake_llm: FakeLLM, browser: Browser, tmp_path: Path, site_url: str,
        spans_of: tuple[RunTracer, InMemorySpanExporter]) -> None:
    tracer, exporter = spans_of
    fake_llm.reset(two_steps)
    store = Store(tmp_path / "data", snapshot_interval_s=None)
    service = RunService(store, browser, data_dir=store.data_dir, observers=[tracer])
    response = await service.run({"prompt": "Open the form page", "model": "gpt-4o-mini",
                                  "start_url": f"{site_url}/index.html"})
    await service.close()
    store.close()
    spans = {s.name: s for s in exporter.get_finished_spans() if not s.name.startswith(("step", "execute"))}
    all_spans = exporter.get_finished_spans()
    assert response.status == "success"
    # One trace: the run, its three steps, two model calls, three actions.
    assert len({s.context.trace_id for s in all_spans}) == 1
    assert sorted(s.name for s in all_spans) == sorted([
        "invoke_agent web-agent", "step 1", "step 2", "step 3", "chat gpt-4o-mini", "chat gpt-4o-mini",
        "execute_tool navigate", "execute_tool click", "execute_tool done"])
    run = spans["invoke_agent web-agent"]
    assert run.parent is None
    assert dict(run.attributes) == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "web-agent", "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.conversation.id": str(response.task_run_id),
        "workbench.run_id": response.task_run_id, "workbench.mode": "agent", "workbench.litellm_model": "openai/gpt-4o-mini",
        "workbench.prompt": "Open the form page", "workbench.task_id": response.task_id, "workbench.status": "success",
        "workbench.stop_reason": "done", "workbench.steps": 3, "workbench.cost_usd": response.usage.cost_usd, "gen_ai.usage.input_tokens": 220,
        "gen_ai.usage.output_tokens": 50}
    steps = {s.name: s for s in all_spans if s.name.startswith("step")}
    assert {s.parent.span_id for s in steps.values()} == {run.context.span_id}  # type: ignore[union-attr]
    calls = [s for s in all_spans if s.name.startswith("chat")]
    assert [s.parent.span_id for s in calls] == [steps["step 2"].context.span_id,  # type: ignore[union-attr]
                                                 steps["step 3"].context.span_id]
    first = dict(calls[0].attributes)
    assert {k: v for k, v in first.items() if not k.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.system_"))} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20,
        "gen_ai.response.finish_reasons": ("tool_calls",), "workbench.purpose": "step",
        "workbench.cost_usd": response.history[1].llm_calls[0].cost_usd}
    # Content only because this tracer was asked to capture it (the conventions' opt-in).
    assert '"name": "click"' in first["gen_ai.output.messages"] and "Form page" in first["gen_ai.input.messages"]
    actions = {s.name: s for s in all_spans if s.name.startswith("execute_tool")}
    assert actions["execute_tool click"].parent.span_id == steps["step 2"].context.span_id  # type: ignore[union-attr]
    assert dict(actions["execute_tool click"].attributes)["gen_ai.tool.name"] == "click"
    # Every child lies within its parent's time.
    for child in all_spans:
        parent = next((p for p in all_spans if child.parent and p.context.span_id == child.parent.span_id), None)
        if parent is not None:
            assert parent.start_time <= child.start_time <= child.end_time <= parent.end_time, child.name


async def test_a_failed_run_and_a_failed_action_are_errors(
        fake_llm: FakeLLM, browser: Browser, tmp_path: Path, site_url: str,
        spans_of: tuple[RunTracer, InMemorySpanExporter]) -> None:
    tracer, exporter = spans_of
    tracer.capture_content = False
    fake_llm.reset(lambda body: reply("Click something that is not there.", call("click", index=9999)))
    store = Store(tmp_path / "data", snapshot_interval_s=None)
    service = RunService(store, browser, data_dir=store.data_dir, observers=[tracer])
    response = await service.run({"prompt": "Click the missing button", "model": "gpt-4o-mini", "max_steps": 2,
                                  "start_url": f"{site_url}/index.html"})
    await service.close()
    store.close()
    spans = exporter.get_finished_spans()
    run = next(s for s in spans if s.name.startswith("invoke_agent"))
    assert response.status == "failure"
    assert run.status.status_code == StatusCode.ERROR and run.status.description == response.error
    failed = [s for s in spans if s.name == "execute_tool click"]
    assert failed and all(s.status.status_code == StatusCode.ERROR for s in failed)
    # Without the opt-in, no content leaves: neither the prompt nor messages nor action parameters.
    assert not any(k in dict(s.attributes) for s in spans
                   for k in ("workbench.prompt", "gen_ai.input.messages", "gen_ai.tool.call.arguments"))


# ------------------------------------------------------------------ the real app -> an OTLP/HTTP receiver
class OtlpReceiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: decodes each POST /v1/traces into spans."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[dict[str, Any]] = []
        self.content_types: set[str] = set()
        self.lock = threading.Lock()
        receiver = self

        class _H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 50_000_000))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    receiver.content_types.add(f"{self.path} {self.headers.get('Content-Type')}")
                    for rs in request.resource_spans:
                        service = {a.key: a.value.string_value for a in rs.resource.attributes}.get("service.name")
                        for ss in rs.scope_spans:
                            for span in ss.spans:
                                receiver.spans.append({
                                    "service": service, "name": span.name, "trace_id": span.trace_id.hex(),
                                    "span_id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
                                    "attributes": {a.key: _value(a.value) for a in span.attributes},
                                })
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@pytest.mark.slow
def test_the_app_sends_each_run_to_an_otlp_collector(tmp_path: Path) -> None:
    receiver = OtlpReceiver()
    model = FakeLLM(agent_script)
    env = {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
           "OTEL_BSP_SCHEDULE_DELAY": "200"}
    app = App(tmp_path / "data", env).start()
    try:
        app.ready()
        with httpx.Client(base_url=app.base, timeout=120) as http:
            run = http.post("/api/runs", json={"prompt": f"Open {app.base}/demo/ and look [shop]"}).json()
        assert run["status"] == "success"
        root = poll(lambda: next((s for s in list(receiver.spans) if s["name"] == "invoke_agent web-agent"
                                  and s["attributes"].get("workbench.run_id") == run["task_run_id"]), None),
                    timeout=30, what="the run's span at the collector")
        spans = poll(lambda: [s for s in list(receiver.spans) if s["trace_id"] == root["trace_id"]]
                     if len([s for s in receiver.spans if s["trace_id"] == root["trace_id"]]) >= 10 else None,
                     timeout=30, what="the run's whole trace")
    finally:
        app.stop()
        model.close()
        receiver.close()
    assert receiver.content_types == {"/v1/traces application/x-protobuf"}
    assert {s["service"] for s in spans} == {"web-agent-workbench"}
    assert sorted(s["name"] for s in spans) == sorted(
        ["invoke_agent web-agent", "step 1", "step 2", "step 3", "chat o3", "chat o3", "chat o3",
         "execute_tool navigate", "execute_tool scroll", "execute_tool done"])
    assert root["attributes"]["workbench.status"] == "success" and root["attributes"]["gen_ai.usage.input_tokens"] == 300
    chat = next(s for s in spans if s["name"] == "chat o3")
    assert {k: chat["attributes"][k] for k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
                                                "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
                                                "gen_ai.response.finish_reasons")} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "o3",
        "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20,
        "gen_ai.response.finish_reasons": ["tool_calls"]}
    assert "gen_ai.input.messages" not in chat["attributes"]  # content is opt-in
    steps = {s["span_id"] for s in spans if s["name"].startswith("step")}
    assert chat["parent"] in steps and all(s["parent"] == root["span_id"] for s in spans if s["span_id"] in steps)


def test_off_by_default_and_nothing_of_the_sdk_loaded(tmp_path: Path) -> None:
    code = (
        "import sys; from agent.service.runs import RunService; from agent.log.store import Store;"
        f"s = Store({str(tmp_path / 'data')!r}, snapshot_interval_s=None);"
        "svc = RunService(s, object(), data_dir=s.data_dir); s.close();"
        "print(len(svc._observers.observers), sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')"
        " or m.startswith('opentelemetry.exporter')))"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0 []"
