"""What exporting a run to OpenTelemetry costs per step, and what scrubbing each event once costs.

A synthetic step of realistic size (a 30,000-character page observation in the step message, the
system prompt, the 16 tools as sent, a reply with a tool call, two actions) goes through:
- "scrub": `RunScrubber.event` (the run service's one scrub of every event), with a secret-looking
  environment variable and a sensitive_data value set, and with neither (nothing to hide: no walk);
- "tracer": `RunTracer(step)` on the event loop (spans built, handed to the batch processor), with
  message content off and on (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`);
- "export": the OTLP/HTTP exporter sending one step's spans to a receiver on 127.0.0.1 (protobuf
  encoding and the request; in the batch processor's thread, off the event loop), and its bytes.
`--compare-to REV` also times the tracer of `agent/service/otel.py` at a git revision (the export before).

Usage: .venv/bin/python bench/bench_otel.py [--steps 300] [--compare-to REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.trace import SpanLimits, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from agent.engine import actions, prompts  # noqa: E402
from agent.engine.trace import make_trace  # noqa: E402
from agent.models import (  # noqa: E402
    ActionResult,
    HistoryItem,
    LLMCall,
    RunRequest,
    RunStarted,
    StepFinished,
    utcnow,
)
from agent.service.observers import RunScrubber  # noqa: E402

SECRET_ENV = "BENCH_DEMO_API_TOKEN"


def page_text(chars: int = 30_000) -> str:
    """A page observation of `chars` characters: interactive lines and text, as the engine renders them."""
    lines, n = [], 0
    while sum(map(len, lines)) < chars:
        n += 1
        lines.append(f"[{n}]<a href=/demo/product.html?id=p-{n}>USB-C cable {n} m, braided, 60 W</a>")
        lines.append(f"Fast charging and data at 480 Mbit/s. Price: €{n % 40 + 4}.99. In stock: {n % 7} left.")
    return "\n".join(lines)[:chars]


def a_step(step: int = 3) -> StepFinished:
    """One finished agent step with its call's full trace (messages, tools as sent, reply)."""
    started = utcnow()
    call = LLMCall(model="openai/gpt-4o-mini", provider="openai", started_at=started, latency_ms=900.0,
                   input_tokens=9000, output_tokens=60, cost_usd=0.0014, finish_reason="tool_calls")
    observation = page_text()
    message = prompts.step_message(task="Find the cheapest USB-C cable and report its name and price", step=step,
                                   max_steps=25, history=[], tabs=[(0, "http://127.0.0.1/demo/")], current_tab=0,
                                   url="http://127.0.0.1/demo/search.html?q=usb-c", title="Search", page=observation,
                                   notes=[], result_hint="")
    messages = [{"role": "system", "content": prompts.system_prompt()}, {"role": "user", "content": message}]
    tools = actions.tools()
    raw = {"content": "Open the cheapest cable.", "finish_reason": "tool_calls", "model": "gpt-4o-mini-2024-07-18",
           "tool_calls": [{"id": "call_1", "name": "click", "arguments": '{"index": 7}'}],
           "parameters": {"max_tokens": 4096, "tool_choice": "required"}}
    trace = make_trace(call, messages, tools, raw, observation=observation)
    item = HistoryItem(
        description="Open the cheapest cable.", step=step, url="http://127.0.0.1/demo/search.html?q=usb-c",
        title="Search", started_at=started, duration_ms=1500.0, llm_ms=900.0, browser_ms=500.0, llm_calls=[call],
        actions=[ActionResult(name="click", params={"index": 7}, success=True, duration_ms=300.0,
                              extracted_content="clicked [7] <a> USB-C cable 7 m"),
                 ActionResult(name="extract", params={"query": "price"}, success=True, duration_ms=200.0,
                              extracted_content="€10.99")])
    return StepFinished(item=item, traces=[trace], at=started + timedelta(milliseconds=1500))


class Sink:
    """An OTLP/HTTP receiver on 127.0.0.1 that reads each request and answers 200 (no decoding)."""

    def __init__(self) -> None:
        class _H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Dropping(SpanExporter):
    """Takes every span and keeps none: the tracer's own cost, without the export's."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def per_call_us(fn: Callable[[], Any], n: int) -> float:
    """Median microseconds of `fn()` over `n` calls (after a few warm-up calls)."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e6)
    return statistics.median(times)


def tracer_us(module: Any, step: StepFinished, capture: bool, n: int) -> float:
    """Median microseconds of one tracer call for a step, spans handed to a processor that drops them."""
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=2000))
    provider.add_span_processor(SimpleSpanProcessor(Dropping()))
    tracer = module.RunTracer(provider, capture_content=capture)
    start = RunStarted(request=RunRequest(prompt="Find the cheapest USB-C cable"), model="openai/gpt-4o-mini")
    tracer(1, start)
    us = per_call_us(lambda: tracer(1, step), n)
    provider.shutdown()
    return us


def export_cost(module: Any, step: StepFinished, capture: bool, n: int) -> tuple[float, int]:
    """(median µs, bytes) to send one step's spans over OTLP/HTTP to a local receiver."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    memory = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=2000))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = module.RunTracer(provider, capture_content=capture)
    tracer(1, RunStarted(request=RunRequest(prompt="Find the cheapest USB-C cable"), model="openai/gpt-4o-mini"))
    tracer(1, step)
    spans = memory.get_finished_spans()
    exporter = OTLPSpanExporter(endpoint=Sink().url)
    us = per_call_us(lambda: exporter.export(spans), n)
    size = len(encode_spans(spans).SerializeToString())
    exporter.shutdown()
    provider.shutdown()
    return us, size


def module_at(rev: str) -> Any:
    """agent/service/otel.py as it was at git revision `rev`, loaded as its own module."""
    source = subprocess.run(["git", "show", f"{rev}:agent/service/otel.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "otel_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("otel_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--compare-to", help="a git revision whose tracer to time as well (e.g. the one before)")
    args = parser.parse_args()
    from agent.service import otel

    step, n = a_step(), args.steps
    rows: list[tuple[str, str, str]] = []
    os.environ.pop(SECRET_ENV, None)
    plain = RunScrubber(None)
    rows.append(("scrub, nothing to hide (no walk)", f"{per_call_us(lambda: plain.event(step), n):.0f}", "-"))
    os.environ[SECRET_ENV] = "demo-tok-5f3a9c1e7b2d4a68"
    secrets = RunScrubber({"password": "hunter2-secret!"})
    rows.append(("scrub, an env secret + sensitive_data", f"{per_call_us(lambda: secrets.event(step), n):.0f}", "-"))
    os.environ.pop(SECRET_ENV, None)
    versions = [("", otel)] + ([(f" at {args.compare_to}", module_at(args.compare_to))] if args.compare_to else [])
    for label, module in versions:
        for capture in (False, True):
            rows.append((f"tracer{label}, content {'on' if capture else 'off'}",
                         f"{tracer_us(module, step, capture, n):.0f}", "-"))
    for label, module in versions:
        for capture in (False, True):
            us, size = export_cost(module, step, capture, max(20, n // 5))
            rows.append((f"export of the step's 4 spans{label}, content {'on' if capture else 'off'}", f"{us:.0f}",
                         f"{size:,}"))
    print(f"Per step ({n} steps; a 30,000-character observation, 16 tools, 2 actions), median:\n")
    print("| what | µs per step | bytes per step |")
    print("|---|---:|---:|")
    for what, us_text, size_text in rows:
        print(f"| {what} | {us_text} | {size_text} |")


if __name__ == "__main__":
    main()
