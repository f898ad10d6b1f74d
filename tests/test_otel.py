"""OpenTelemetry export of runs, in the three vocabularies tracing tools read (GenAI conventions,
OpenInference, Langfuse): every span a local OTLP/HTTP receiver on 127.0.0.1 gets is decoded from its
protobuf and checked, in process (the run service with a real browser and the fake model) and from the
real app (sessions from a request, a saved task and an experiment; environment secrets scrubbed before
any exporter, log, webhook or viewer sees an event). Also: valid JSON at the size cap, a collector down
when a run ends, and nothing of the SDK loaded when the export is off."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agent.engine.browser import Browser
from agent.log.store import Store
from agent.service.otel import RunTracer, make_provider, resource_attributes
from agent.service.otel_content import MAX_ATTRIBUTE_CHARS, bounded_json, image_url
from agent.service.otel_export import KeepingExporter
from agent.service.runs import RunService
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply
from tests.apphelpers import ROOT, App, Receiver, agent_script, poll

TOKEN = "demo-tok-5f3a9c1e7b2d4a68"  # a secret-looking value of DEMO_API_TOKEN in the app's environment
PROJECT = "wb-otel-test"


# ------------------------------------------------------------------ a local OTLP/HTTP receiver
class OtlpReceiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1: decodes each POST /v1/traces into spans; `down` answers 503."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[dict[str, Any]] = []
        self.content_types: set[str] = set()
        self.down = False
        self.refused = 0
        self.lock = threading.Lock()
        receiver = self

        class _H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 50_000_000))
                if receiver.down:
                    receiver.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    receiver.content_types.add(f"{self.path} {self.headers.get('Content-Type')}")
                    for rs in request.resource_spans:
                        resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                        for ss in rs.scope_spans:
                            for span in ss.spans:
                                receiver.spans.append({
                                    "resource": resource, "name": span.name, "trace_id": span.trace_id.hex(),
                                    "span_id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
                                    "status": span.status.code, "attributes": {a.key: _value(a.value)
                                                                               for a in span.attributes},
                                })
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def trace_of(self, run_id: int, *, at_least: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        """Every span received of the run's trace, once its root and `at_least` spans are in."""
        def whole() -> list[dict[str, Any]] | None:
            with self.lock:
                spans = list(self.spans)
            root = next((s for s in spans if s["name"].startswith("invoke_agent")
                         and s["attributes"].get("workbench.run_id") == run_id), None)
            if root is None:
                return None
            mine = [s for s in spans if s["trace_id"] == root["trace_id"]]
            return mine if len(mine) >= at_least else None
        return poll(whole, timeout=timeout, what=f"the trace of run {run_id} at the collector")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def by_kind(spans: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["attributes"].get("openinference.span.kind") == kind]


def flat(attributes: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The attributes under `prefix.`, with the prefix taken off (OpenInference's flattened lists)."""
    return {k[len(prefix) + 1:]: v for k, v in attributes.items() if k.startswith(prefix + ".")}


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A receiver of this test's own (run ids start again at 1 in each test's run log)."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def otlp(receiver: OtlpReceiver) -> RunTracer:
    """A tracer sending each span over OTLP/HTTP to `receiver` as it ends (content captured); the run
    service shuts it down when it closes."""
    exporter = OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces", timeout=5)
    return RunTracer(make_provider(exporter, batch=False), capture_content=True)


def two_steps(body: dict[str, Any]) -> Any:
    """Click "Form page" (step 2, after the start page), then done."""
    if "Step 2 of at most" in last_user_text(body):
        return reply("Open the form page.", call("click", index=find_index(body, "Form page", tag="a")))
    return reply("Report it.", call("done", text="a form", success=True), usage=(120, 30))


# ------------------------------------------------------------------ in process, decoded from OTLP
async def test_every_span_kind_speaks_genai_openinference_and_langfuse(
        fake_llm: FakeLLM, browser: Browser, tmp_path: Path, site_url: str, receiver: OtlpReceiver,
        otlp: RunTracer) -> None:
    fake_llm.reset(two_steps)
    store = Store(tmp_path / "data", snapshot_interval_s=None)
    service = RunService(store, browser, data_dir=store.data_dir, observers=[otlp])
    prompt = "Open the form page of the test site"
    response = await service.run({"prompt": prompt, "model": "gpt-4o-mini", "start_url": f"{site_url}/index.html",
                                  "session_id": "form-study"})
    await service.close()
    store.close()
    assert response.status == "success"
    spans = receiver.trace_of(response.task_run_id or 0, at_least=9)
    assert sorted(s["name"] for s in spans) == sorted([
        "invoke_agent web-agent", "step 1", "step 2", "step 3", "chat gpt-4o-mini", "chat gpt-4o-mini",
        "execute_tool navigate", "execute_tool click", "execute_tool done"])
    assert {s["resource"]["service.name"] for s in spans} == {"web-agent-workbench"}
    assert {s["resource"]["openinference.project.name"] for s in spans} == {"web-agent-workbench"}
    # Every span: in the session, in the named trace.
    for span in spans:
        a = span["attributes"]
        assert (a["session.id"], a["langfuse.session.id"], a["gen_ai.conversation.id"], a["langfuse.trace.name"]) == (
            "form-study", "form-study", "form-study", prompt), span["name"]

    (run,) = by_kind(spans, "AGENT")
    a = run["attributes"]
    assert run["parent"] == "" and run["name"] == "invoke_agent web-agent"
    assert {k: a[k] for k in ("gen_ai.operation.name", "agent.name", "langfuse.observation.type", "input.value",
                              "input.mime_type", "output.value", "output.mime_type", "langfuse.trace.input",
                              "langfuse.trace.output", "gen_ai.usage.input_tokens", "workbench.status")} == {
        "gen_ai.operation.name": "invoke_agent", "agent.name": "web-agent", "langfuse.observation.type": "agent",
        "input.value": prompt, "input.mime_type": "text/plain", "output.value": "a form",
        "output.mime_type": "text/plain", "langfuse.trace.input": prompt, "langfuse.trace.output": "a form",
        "gen_ai.usage.input_tokens": 220, "workbench.status": "success"}

    steps = {s["name"]: s for s in by_kind(spans, "CHAIN")}
    assert sorted(steps) == ["step 1", "step 2", "step 3"]
    assert all(s["parent"] == run["span_id"] and s["attributes"]["langfuse.observation.type"] == "chain"
               for s in steps.values())
    click_step = steps["step 2"]["attributes"]
    assert (click_step["input.value"], click_step["input.mime_type"]) == ("Open the form page.", "text/plain")
    outcomes = json.loads(click_step["output.value"])
    assert click_step["output.mime_type"] == "application/json"
    assert [(o["name"], o["success"]) for o in outcomes] == [("click", True)]

    llm = by_kind(spans, "LLM")
    assert len(llm) == 2 and all(s["parent"] in (steps["step 2"]["span_id"], steps["step 3"]["span_id"]) for s in llm)
    first = next(s for s in llm if s["parent"] == steps["step 2"]["span_id"])["attributes"]
    history = response.history[1].llm_calls[0]
    assert {k: first[k] for k in (
        "gen_ai.operation.name", "gen_ai.request.model", "gen_ai.response.model", "llm.model_name",
        "llm.request.model_name", "llm.response.model_name", "llm.provider", "llm.system", "gen_ai.provider.name",
        "llm.token_count.prompt", "llm.token_count.completion", "llm.token_count.total", "gen_ai.usage.input_tokens",
        "langfuse.observation.type", "gen_ai.response.finish_reasons", "llm.cost.total")} == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
        # the model the server said answered (the fake server says "fake"), not the one asked for
        "gen_ai.response.model": "fake", "llm.model_name": "fake", "llm.request.model_name": "gpt-4o-mini",
        "llm.response.model_name": "fake", "llm.provider": "openai", "llm.system": "openai",
        "gen_ai.provider.name": "openai", "llm.token_count.prompt": 100, "llm.token_count.completion": 20,
        "llm.token_count.total": 120, "gen_ai.usage.input_tokens": 100, "langfuse.observation.type": "generation",
        "gen_ai.response.finish_reasons": ["tool_calls"], "llm.cost.total": history.cost_usd}
    assert json.loads(first["langfuse.observation.usage_details"]) == {"input": 100, "output": 20, "total": 120}
    assert json.loads(first["langfuse.observation.cost_details"]) == {"total": history.cost_usd}
    parameters = json.loads(first["llm.invocation_parameters"])
    assert parameters["model"] == "gpt-4o-mini" and parameters["tool_choice"] == "required"
    assert parameters["max_tokens"] == first["gen_ai.request.max_tokens"] > 0
    # The messages, flattened as OpenInference says: the system prompt first, then the step's message.
    messages = flat(first, "llm.input_messages")
    assert messages["0.message.role"] == "system" and "browser" in messages["0.message.content"].lower()
    assert messages["1.message.role"] == "user" and "Form page" in messages["1.message.content"]
    assert prompt in messages["1.message.content"]
    out = flat(first, "llm.output_messages.0.message")
    call_id = out["tool_calls.0.tool_call.id"]
    assert (out["role"], out["content"], out["tool_calls.0.tool_call.function.name"]) == (
        "assistant", "Open the form page.", "click")
    assert json.loads(out["tool_calls.0.tool_call.function.arguments"]) == response.history[1].actions[0].params
    # ... and as the GenAI conventions say.
    genai_in = json.loads(first["gen_ai.input.messages"])
    assert [m["role"] for m in genai_in] == ["user"] and genai_in[0]["parts"][0]["type"] == "text"
    assert "Form page" in genai_in[0]["parts"][0]["content"]
    assert json.loads(first["gen_ai.output.messages"])[0]["parts"][1] == {
        "type": "tool_call", "id": call_id, "name": "click", "arguments": response.history[1].actions[0].params}
    # The tools offered, in both.
    offered = [json.loads(v)["function"]["name"] for v in flat(first, "llm.tools").values()]
    assert "click" in offered and "done" in offered and len(offered) >= 10
    assert [t["name"] for t in json.loads(first["gen_ai.tool.definitions"])] == offered

    tools = {s["name"]: s["attributes"] for s in by_kind(spans, "TOOL")}
    click = tools["execute_tool click"]
    assert {k: click[k] for k in ("tool.name", "tool.id", "tool_call.id", "gen_ai.tool.call.id",
                                  "langfuse.observation.type", "input.mime_type", "output.mime_type")} == {
        "tool.name": "click", "tool.id": call_id, "tool_call.id": call_id, "gen_ai.tool.call.id": call_id,
        "langfuse.observation.type": "tool", "input.mime_type": "application/json",
        "output.mime_type": "application/json"}
    assert json.loads(click["input.value"]) == response.history[1].actions[0].params
    assert json.loads(click["output.value"])["success"] is True
    assert click["gen_ai.tool.call.result"] == click["output.value"]
    assert "index" in json.loads(click["tool.parameters"])["properties"] and click["tool.description"]
    done = tools["execute_tool done"]
    assert json.loads(done["output.value"]) == {"success": True, "extracted_content": "a form", "is_done": True}
    # The start page was opened without the model: no tool call to point at.
    assert "tool.id" not in tools["execute_tool navigate"]


async def test_vision_text_parts_use_the_conventions_keys(
        fake_llm: FakeLLM, browser: Browser, tmp_path: Path, site_url: str, receiver: OtlpReceiver,
        otlp: RunTracer) -> None:
    fake_llm.reset(lambda body: reply("Done.", call("done", text="seen", success=True)))
    store = Store(tmp_path / "data", snapshot_interval_s=None)
    service = RunService(store, browser, data_dir=store.data_dir, observers=[otlp])
    response = await service.run({"prompt": "Look at the test site", "model": "gpt-4o-mini", "use_vision": True,
                                  "start_url": f"{site_url}/index.html"})
    await service.close()
    store.close()
    assert response.status == "success"
    sent = fake_llm.requests[-1]["messages"][1]["content"]
    assert [p["type"] for p in sent] == ["text", "image_url"]  # the model did get the screenshot
    (llm,) = by_kind(receiver.trace_of(response.task_run_id or 0, at_least=6), "LLM")
    a = llm["attributes"]
    user = flat(a, "llm.input_messages.1.message")
    assert user["role"] == "user" and "message.content" not in user
    assert user["contents.0.message_content.type"] == "text"
    assert user["contents.0.message_content.text"] == sent[0]["text"]
    # A page this small makes a screenshot under OpenInference's limit for inline images (32,000 characters
    # of base64): it goes inline, as the model saw it; the GenAI JSON names its workbench URL.
    assert user["contents.1.message_content.type"] == "image"
    assert user["contents.1.message_content.image.image.url"] == sent[1]["image_url"]["url"]
    link = f"/api/runs/{response.task_run_id}/screenshots/2"
    parts = json.loads(a["gen_ai.input.messages"])[0]["parts"]
    assert parts == [{"type": "text", "content": sent[0]["text"]},
                     {"type": "uri", "modality": "image", "mime_type": "image/jpeg", "uri": link}]


def test_the_project_name_as_phoenix_and_everyone_else_read_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SERVICE_NAME", "PHOENIX_PROJECT_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    assert resource_attributes() == {"service.name": "web-agent-workbench",
                                     "openinference.project.name": "web-agent-workbench"}
    monkeypatch.setenv("OTEL_SERVICE_NAME", "cable-study")
    assert resource_attributes() == {"service.name": "cable-study", "openinference.project.name": "cable-study"}
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "openinference.project.name=from-attributes")
    assert resource_attributes()["openinference.project.name"] == "from-attributes"
    monkeypatch.setenv("PHOENIX_PROJECT_NAME", "phoenix-only")
    assert resource_attributes() == {"service.name": "cable-study", "openinference.project.name": "phoenix-only"}


def test_a_small_screenshot_goes_inline_a_large_one_by_reference(tmp_path: Path) -> None:
    shot = tmp_path / "step-002.jpg"
    shot.write_bytes(b"\xff\xd8\xff" + b"j" * 3000)
    assert image_url(str(shot), "/api/runs/1/screenshots/2", 32_000).startswith("data:image/jpeg;base64,/9j/")
    assert image_url(str(shot), "/api/runs/1/screenshots/2", 1000) == "/api/runs/1/screenshots/2"
    assert image_url(str(tmp_path / "gone.jpg"), "/api/runs/1/screenshots/2", 32_000) == "/api/runs/1/screenshots/2"


def big_reply(body: dict[str, Any]) -> Any:
    """A reply of 50,000 characters (quotes, backslashes, non-ASCII) and three 20,000-character tool calls."""
    if "Step 1 of at most" in last_user_text(body):
        text = 'Thinking "hard" \\ é ✓ ' * 2300
        return reply(text, *[call("wait", seconds=0, note="x\"\\é" * 5000) for _ in range(3)])
    return reply("Done.", call("done", text="ok", success=True))


async def test_json_attributes_stay_valid_at_the_size_cap(
        fake_llm: FakeLLM, browser: Browser, tmp_path: Path, receiver: OtlpReceiver, otlp: RunTracer) -> None:
    fake_llm.reset(big_reply)
    store = Store(tmp_path / "data", snapshot_interval_s=None)
    service = RunService(store, browser, data_dir=store.data_dir, observers=[otlp])
    response = await service.run({"prompt": "Think at length", "model": "gpt-4o-mini"})
    await service.close()
    store.close()
    spans = receiver.trace_of(response.task_run_id or 0, at_least=7)
    first = next(s for s in by_kind(spans, "LLM") if s["attributes"]["llm.token_count.prompt"]
                 and "wait" in s["attributes"]["gen_ai.output.messages"])["attributes"]
    encoded = first["gen_ai.output.messages"]
    assert len(encoded) <= MAX_ATTRIBUTE_CHARS
    (message,) = json.loads(encoded)  # it parses: the content was cut, not the encoding
    assert [p["type"] for p in message["parts"]] == ["text", "tool_call", "tool_call", "tool_call"]
    assert "[cut: " in message["parts"][0]["content"] and message["parts"][0]["content"].startswith('Thinking "hard"')
    for value in [v for k, v in first.items() if k.startswith("gen_ai.") and isinstance(v, str) and v[:1] in "[{"]:
        json.loads(value)
    assert len(first["llm.output_messages.0.message.content"]) <= MAX_ATTRIBUTE_CHARS


def test_bounded_json_cuts_texts_never_the_encoding() -> None:
    value = {"messages": [{"role": "user", "content": 'a"\\é\n' * 40_000}, {"role": "user", "content": "short"}],
             "n": 3}
    text = bounded_json(value, 10_000)
    back = json.loads(text)
    assert len(text) <= 10_000 and back["n"] == 3 and back["messages"][1] == {"role": "user", "content": "short"}
    assert back["messages"][0]["content"].startswith('a"\\é\n') and "more characters]" in back["messages"][0]["content"]
    assert bounded_json(value, 10**7) == json.dumps(value, ensure_ascii=False)  # fits: untouched
    assert len(bounded_json("é" * 500, 100)) <= 100 and json.loads(bounded_json("é" * 500, 100)).startswith("é")
    many = [str(i) for i in range(20_000)]  # too many small texts to fit by cutting: still valid JSON
    assert json.loads(bounded_json(many, 1000)) == {"cut": f"{len(json.dumps(many))} characters of JSON, more "
                                                           "than the 1000 an attribute may hold"}


async def test_a_failed_run_and_a_failed_action_are_errors_and_content_is_opt_in(
        fake_llm: FakeLLM, browser: Browser, tmp_path: Path, site_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = RunTracer(provider, capture_content=False)
    fake_llm.reset(lambda body: reply("Click something that is not there.", call("click", index=9999)))
    store = Store(tmp_path / "data", snapshot_interval_s=None)
    service = RunService(store, browser, data_dir=store.data_dir, observers=[tracer])
    response = await service.run({"prompt": "Click the missing button", "model": "gpt-4o-mini", "max_steps": 2,
                                  "start_url": f"{site_url}/index.html"})
    await service.close()
    store.close()
    provider.shutdown()
    spans = exporter.get_finished_spans()
    run = next(s for s in spans if s.name.startswith("invoke_agent"))
    assert response.status == "failure"
    assert run.status.status_code == StatusCode.ERROR and run.status.description == response.error
    failed = [s for s in spans if s.name == "execute_tool click"]
    assert failed and all(s.status.status_code == StatusCode.ERROR for s in failed)
    # Every span still has its kind; no session without one; the trace is named without the task.
    assert {dict(s.attributes)["openinference.span.kind"] for s in spans} == {"AGENT", "CHAIN", "LLM", "TOOL"}
    assert not any("session.id" in dict(s.attributes) for s in spans)
    assert dict(run.attributes)["langfuse.trace.name"] == f"web-agent run {response.task_run_id}"
    # Without the opt-in, no content leaves: neither the task nor messages, tools, arguments or outcomes.
    content = ("input.value", "output.value", "langfuse.trace.input", "gen_ai.input.messages", "gen_ai.tool.call.arguments",
               "gen_ai.tool.definitions", "llm.input_messages.", "llm.output_messages.", "llm.tools.", "tool.parameters")
    assert not [k for s in spans for k in dict(s.attributes) if k.startswith(content)]


# ------------------------------------------------------------------ a collector down when the run ends
async def test_a_collector_down_when_the_run_ends_still_gets_the_whole_trace(
        fake_llm: FakeLLM, browser: Browser, tmp_path: Path, site_url: str) -> None:
    receiver = OtlpReceiver()
    kept = KeepingExporter(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces", timeout=0.5), retry_every_s=0.3)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = RunTracer(provider, capture_content=True)

    def model(body: dict[str, Any]) -> Any:
        if "Step 2 of at most" in last_user_text(body):
            return reply("Open the form page.", call("click", index=find_index(body, "Form page", tag="a")))
        receiver.down = True  # the collector goes away while the last step runs
        return reply("Report it.", call("done", text="a form", success=True))

    fake_llm.reset(model)
    store = Store(tmp_path / "data", snapshot_interval_s=None)
    service = RunService(store, browser, data_dir=store.data_dir, observers=[tracer])
    try:
        response = await service.run({"prompt": "Open the form page", "model": "gpt-4o-mini",
                                      "start_url": f"{site_url}/index.html", "session_id": "outage"})
        # The steps before went through; the last step and the run's own span were refused, and kept.
        assert receiver.refused >= 2 and any(k.root for k in kept.kept)
        assert not any(s["name"].startswith("invoke_agent") for s in receiver.spans)
        receiver.down = False  # back: the kept spans go out on their own, without another run
        spans = receiver.trace_of(response.task_run_id or 0, at_least=9, timeout=20)
    finally:
        await service.close()  # shuts the tracer's provider down
        store.close()
        receiver.close()
    ids = {s["span_id"] for s in spans}
    assert len(spans) == 9 and all(s["parent"] in ids for s in spans if s["parent"]), spans
    poll(lambda: not kept.kept, timeout=10, what="the kept spans to be let go once sent")
    assert kept.dropped == 0


def test_kept_spans_are_bounded_and_the_roots_stay_longest() -> None:
    receiver = OtlpReceiver()
    receiver.down = True
    kept = KeepingExporter(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces", timeout=0.5), max_kept=5,
                           retry_every_s=60)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("test")
    try:
        from opentelemetry import trace

        root = tracer.start_span("root")
        for n in range(10):
            tracer.start_span(f"child {n}", context=trace.set_span_in_context(root)).end()
        root.end()
        assert [k.span.name for k in kept.kept] == ["child 6", "child 7", "child 8", "child 9", "root"]
        assert kept.dropped == 6
        receiver.down = False
        assert kept.force_flush() is True
        assert sorted(s["name"] for s in receiver.spans) == ["child 6", "child 7", "child 8", "child 9", "root"]
    finally:
        provider.shutdown()
        receiver.close()


# ------------------------------------------------------------------ the real app -> an OTLP/HTTP receiver
def app_model(body: dict[str, Any]) -> Any:
    """agent_script, plus [secret]: the model says the environment's secret in its text, the next step's
    input carries it (the history), and done's arguments and the result hold it."""
    text = last_user_text(body)
    if body.get("tools") and "[secret]" in text:
        if "Step 1 of at most" in text:
            return reply(f"I will keep {TOKEN} in mind.", call("scroll", down=True))
        return reply(f"Reporting {TOKEN} now.", call("done", text=f"the token is {TOKEN}", success=True))
    return agent_script(body)


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def app_model_server() -> Iterator[FakeLLM]:
    model = FakeLLM(app_model)
    yield model
    model.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, collector: OtlpReceiver, app_model_server: FakeLLM) -> Iterator[App]:
    env = {"OPENAI_BASE_URL": app_model_server.url, "OPENAI_API_KEY": "sk-test",
           "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "200",
           "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true", "OTEL_SERVICE_NAME": PROJECT,
           "DEMO_API_TOKEN": TOKEN, "WEBHOOK_ALLOW_PRIVATE": "1"}
    running = App(tmp_path_factory.mktemp("otel") / "data", env).start()
    try:
        yield running.ready()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def http(app: App) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.base, timeout=120) as client:
        yield client


@pytest.mark.slow
def test_the_app_sends_each_run_to_an_otlp_collector(app: App, http: httpx.Client, collector: OtlpReceiver) -> None:
    run = http.post("/api/runs", json={"prompt": f"Open {app.base}/demo/ and look [shop]"}).json()
    assert run["status"] == "success"
    spans = collector.trace_of(run["task_run_id"], at_least=10)
    assert collector.content_types == {"/v1/traces application/x-protobuf"}
    # The project, as Phoenix (openinference.project.name) and everyone else (service.name) read it.
    assert {(s["resource"]["service.name"], s["resource"]["openinference.project.name"]) for s in spans} == {
        (PROJECT, PROJECT)}
    assert sorted((s["attributes"]["openinference.span.kind"], s["name"]) for s in spans) == sorted([
        ("AGENT", "invoke_agent web-agent"), ("CHAIN", "step 1"), ("CHAIN", "step 2"), ("CHAIN", "step 3"),
        ("LLM", "chat o3"), ("LLM", "chat o3"), ("LLM", "chat o3"), ("TOOL", "execute_tool navigate"),
        ("TOOL", "execute_tool scroll"), ("TOOL", "execute_tool done")])
    (root,) = by_kind(spans, "AGENT")
    assert root["attributes"]["workbench.status"] == "success" and root["attributes"]["gen_ai.usage.input_tokens"] == 300
    assert root["attributes"]["output.value"] == run["result"] and "session.id" not in root["attributes"]
    steps = {s["span_id"] for s in by_kind(spans, "CHAIN")}
    assert all(s["parent"] in steps for s in by_kind(spans, "LLM") + by_kind(spans, "TOOL"))
    assert all(s["parent"] == root["span_id"] for s in by_kind(spans, "CHAIN"))


@pytest.mark.slow
def test_sessions_come_from_the_request_a_saved_task_and_an_experiment(
        app: App, http: httpx.Client, collector: OtlpReceiver) -> None:
    given = http.post("/api/runs", json={"prompt": "Answer at once [quick]", "session_id": "  study 7  "}).json()
    plain = http.post("/api/runs", json={"prompt": "Answer at once [quick]"}).json()
    again = http.post(f"/api/tasks/{plain['task_id']}/runs", json={}).json()  # the saved task, run again
    started = http.post("/api/experiments", json={"name": "sessions", "tasks": [
        {"id": "t1", "prompt": "Answer at once [quick]"}], "variants": [{"name": "v", "model": "o3"}]})
    assert started.status_code == 202, started.text
    exp_id = started.json()["experiment_id"]
    report = poll(lambda: (r := http.get(f"/api/experiments/{exp_id}").json())["status"] != "running" and r,
                  timeout=120, what="the experiment to end")
    (cell,) = report["cells"]
    expected = {given["task_run_id"]: "study 7", again["task_run_id"]: f"task-{plain['task_id']}",
                cell["run_id"]: f"experiment-{exp_id}"}
    for run_id, session in expected.items():
        spans = collector.trace_of(run_id, at_least=4)
        assert {(s["attributes"]["session.id"], s["attributes"]["langfuse.session.id"]) for s in spans} == {
            (session, session)}, run_id
    # A run on its own is in no session (each run its own "session" would only clutter the session list).
    assert not any("session.id" in s["attributes"] for s in collector.trace_of(plain["task_run_id"], at_least=4))
    bad = http.post("/api/runs", json={"prompt": "Answer at once [quick]", "session_id": "x" * 129})
    assert bad.status_code == 422 and bad.json()["detail"] == [
        {"field": "session_id", "message": "is too long: the limit is 128 characters"}]
    bad = http.post("/api/runs", json={"prompt": "Answer at once [quick]", "session_id": "a\nb"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "session_id"


def sse_events(response: httpx.Response) -> list[tuple[str | None, Any]]:
    """(event, data) pairs of a server-sent event stream, read to its end."""
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: "):])))
    return events


@pytest.mark.slow
def test_environment_secrets_reach_no_exporter_log_webhook_or_viewer(
        app: App, http: httpx.Client, collector: OtlpReceiver, hooks: Receiver, app_model_server: FakeLLM) -> None:
    # The live viewer's stream (Gradio's API: the run after each step), with a webhook.
    started = http.post("/gradio_api/call/v2/run", json={"prompt": "Say what you know [secret]",
                                                         "webhook_url": f"{hooks.url}/secret"})
    assert started.status_code == 200, started.text
    with http.stream("GET", f"/gradio_api/call/run/{started.json()['event_id']}") as stream:
        streamed = sse_events(stream)
    final = streamed[-1][1][0]
    run_id = final["task_run_id"]
    assert final["status"] == "success" and len(streamed) >= 3
    # The model did say it, and its next input carried it: the places below had it to leak.
    asked = [r for r in app_model_server.requests if "[secret]" in json.dumps(r)]
    assert TOKEN in json.dumps(asked[-1]["messages"])
    spans = collector.trace_of(run_id, at_least=7)
    hook = poll(lambda: hooks.on("/secret"), what="the webhook")[0]
    stored = http.get(f"/api/runs/{run_id}").json()
    traces = [http.get(f"/api/runs/{run_id}/steps/{n}/trace").json() for n in (1, 2)]
    places = {"the OTLP spans": json.dumps([s["attributes"] for s in spans], ensure_ascii=False),
              "the live viewer's stream": json.dumps(streamed, ensure_ascii=False),
              "the webhook body": hook.body.decode(), "the stored run": json.dumps(stored),
              "the LOG_PROMPTS traces": json.dumps(traces, ensure_ascii=False), "the process log": app.log()}
    assert {where: TOKEN in text for where, text in places.items()} == dict.fromkeys(places, False)
    # Scrubbed where it was: chat output, the next input, the step's description, done's arguments, the result.
    llm = sorted(by_kind(spans, "LLM"), key=lambda s: s["attributes"]["llm.input_messages.1.message.content"].count(
        "[redacted]"))
    assert llm[0]["attributes"]["llm.output_messages.0.message.content"] == "I will keep [redacted] in mind."
    assert "I will keep [redacted] in mind." in llm[1]["attributes"]["llm.input_messages.1.message.content"]
    assert {s["attributes"]["input.value"] for s in by_kind(spans, "CHAIN")} == {
        "I will keep [redacted] in mind.", "Reporting [redacted] now."}
    done = next(s for s in by_kind(spans, "TOOL") if s["name"] == "execute_tool done")["attributes"]
    assert json.loads(done["input.value"])["text"] == "the token is [redacted]"
    assert final["result"] == stored["result"] == json.loads(hook.body)["result"] == "the token is [redacted]"


def test_off_by_default_and_nothing_of_the_sdk_loaded(tmp_path: Path) -> None:
    code = (
        "import sys; from agent.service.runs import RunService; from agent.log.store import Store;"
        f"s = Store({str(tmp_path / 'data')!r}, snapshot_interval_s=None);"
        "svc = RunService(s, object(), data_dir=s.data_dir); s.close();"
        "print(len(svc._observers.observers), sorted(m for m in sys.modules if m.startswith(("
        "'opentelemetry.sdk', 'opentelemetry.exporter', 'openinference'))))"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0 []"
