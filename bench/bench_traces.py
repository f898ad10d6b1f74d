"""What the trace of every LLM call costs: bytes per step in the run log, and time per step.

Observes the bundled demo shop's pages in a real Chromium (the observations the model really reads),
then records the same synthetic runs (10 steps each: a growing memory of earlier steps, a real page
observation, the system prompt, the tools, a reply with a tool call) into three run logs:
- "no traces": StepFinished without traces (the log before traces existed);
- "LOG_PROMPTS=0": traces with usage and timing only;
- "traces": the full trace of each call (messages, reply, tool calls).
It prints the database file size of each after a CHECKPOINT (DuckDB compresses at checkpoint), the
bytes per step the traces add, how much DuckDB's compression saves on them, and the time per step
of `make_trace()` (in the engine) and of `Store.record(StepFinished)` with and without traces.

Usage: .venv/bin/python bench/bench_traces.py [--runs 100] [--steps 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402  (the bench reads the file's block counts; the app never does)

from agent.engine import actions, prompts  # noqa: E402
from agent.engine.browser import Browser  # noqa: E402
from agent.engine.page import observe  # noqa: E402
from agent.engine.trace import make_trace  # noqa: E402
from agent.log.store import Store  # noqa: E402
from agent.models import (  # noqa: E402
    ActionResult,
    HistoryItem,
    LLMCall,
    RunFinished,
    RunRequest,
    RunResponse,
    RunStarted,
    StepFinished,
    utcnow,
)
from agent.testing.sites import serve_dir  # noqa: E402

DEMO = ROOT / "data" / "demo"
PAGES = ["index.html", "search.html?q=usb-c", "search.html?q=cable", "product.html?id=cab-01",
         "product.html?id=hdmi-01", "cart.html", "checkout.html", "contact.html", "search.html?q=charger"]


async def observations() -> list[tuple[str, str, str]]:
    """(url, title, observation text) of the demo shop's pages, observed by the engine in Chromium."""
    server, base = serve_dir(DEMO)
    browser = Browser()
    out = []
    try:
        await browser.start()
        chromium = await browser.start()
        context = await chromium.new_context()
        page = await context.new_page()
        for path in PAGES:
            await page.goto(f"{base}/{path}")
            obs = await observe(page)
            out.append((obs.url, obs.title, obs.text))
        await context.close()
    finally:
        await browser.close()
        server.shutdown()
    return out


def steps_of_run(run: int, n_steps: int, pages: list[tuple[str, str, str]],
                 request: RunRequest) -> list[tuple[StepFinished, float]]:
    """One run's StepFinished events with full traces, and the µs make_trace took for each."""
    tools = actions.tools()
    system = prompts.system_prompt()
    history: list[HistoryItem] = []
    out = []
    for step in range(1, n_steps + 1):
        url, title, text = pages[(run + step) % len(pages)]
        message = prompts.step_message(task=request.prompt, step=step, max_steps=25, history=history,
                                       tabs=[(0, url)], current_tab=0, url=url, title=title, page=text, notes=[],
                                       result_hint=prompts.result_hint(None, "text"))
        messages = [{"role": "system", "content": system}, {"role": "user", "content": message}]
        index = 10 + (run * 7 + step) % 40
        raw = {"content": f"Open the result at index {index} to compare its price (step {step}).",
               "tool_calls": [{"id": f"call_{run}_{step}", "name": "click", "arguments": json.dumps({"index": index})}],
               "finish_reason": "tool_calls"}
        call = LLMCall(model="openai/o3", provider="openai", started_at=utcnow(), latency_ms=1500.0 + step,
                       input_tokens=len(message) // 4 + 1400, output_tokens=40, cost_usd=0.01,
                       finish_reason="tool_calls")
        t = time.perf_counter()
        trace = make_trace(call, messages, tools, raw, observation=text)
        made_us = (time.perf_counter() - t) * 1e6
        item = HistoryItem(description=raw["content"], step=step, url=url, title=title, started_at=utcnow(),
                           duration_ms=2000.0, llm_ms=1500.0, browser_ms=300.0, llm_calls=[call],
                           actions=[ActionResult(name="click", params={"index": index}, success=True,
                                                 duration_ms=40.0)])
        history.append(item)
        out.append((StepFinished(item=item, traces=[trace]), made_us))
    return out


MODES = ("none", "usage", "full")


def _event(event: StepFinished, mode: str) -> StepFinished:
    if mode == "none":
        return StepFinished(item=event.item)
    if mode == "usage":
        return event.model_copy(update={"traces": [t.without_content() for t in event.traces]})
    return event


def record_all(root: Path, runs: list[list[tuple[StepFinished, float]]]) -> dict[str, tuple[int, int, list[float]]]:
    """Record every run in three new logs, one per mode (none / usage / full), round-robin so that a busy
    machine slows them alike. Per mode: (bytes in use after the final CHECKPOINT, file bytes, µs per step).

    The file also holds blocks freed by DuckDB's automatic checkpoints (reused by later writes):
    "in use" is the cost.
    """
    stores = {mode: Store(root / mode, snapshot_interval_s=None) for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    request = RunRequest(prompt="find the cheapest usb-c cable on the demo shop and return its name and price")
    for events in runs:
        for mode, store in stores.items():
            run_id = store.create_run(store.create_task(request), request)
            store.record(run_id, RunStarted(request=request, model="openai/o3"))
            for event, _made in events:
                step = _event(event, mode)
                t = time.perf_counter()
                store.record(run_id, step)
                times[mode].append((time.perf_counter() - t) * 1e6)
            store.record(run_id, RunFinished(response=RunResponse(
                history=[e.item for e, _ in events], status="success", is_done=True, is_successful=True,
                result="ok")))
    out = {}
    for mode, store in stores.items():
        store.close()  # a final CHECKPOINT: what is left on disk is compressed
        path = root / mode / "runs.duckdb"
        con = duckdb.connect(str(path), read_only=True)
        try:
            _name, _size, block_size, _total, used, *_rest = con.execute("CALL pragma_database_size()").fetchone()
        finally:
            con.close()
        out[mode] = (used * block_size, path.stat().st_size, times[mode])
    return out


def main() -> None:
    """Print the trace's cost per step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    pages = asyncio.run(observations())
    request = RunRequest(prompt="find the cheapest usb-c cable on the demo shop and return its name and price")
    runs = [steps_of_run(r, args.steps, pages, request) for r in range(args.runs)]
    n_steps = args.runs * args.steps
    raw_bytes = sum(len(json.dumps(t.model_dump(mode="json"), ensure_ascii=False).encode())
                    for events in runs for e, _ in events for t in e.traces)
    made = [m for events in runs for _, m in events]
    with tempfile.TemporaryDirectory(prefix="bench-traces-") as tmp:
        results = record_all(Path(tmp), runs)
    obs_chars = statistics.median(len(p[2]) for p in pages)
    print(f"\nThe trace of every LLM call: {args.runs} runs x {args.steps} steps = {n_steps:,} steps; "
          f"{len(pages)} real demo-shop observations (median {obs_chars:,.0f} characters)")
    base = results["none"][0]
    print(f"  {'run log':<22}{'MB in use':>10}{'file MB':>9}{'bytes/step added':>18}{'record ms/step p50':>20}"
          f"{'p95':>8}")
    for mode, label in (("none", "no traces (before)"), ("usage", "LOG_PROMPTS=0"), ("full", "full traces")):
        used, size, times = results[mode]
        added = (used - base) / n_steps
        p95 = sorted(times)[int(len(times) * 0.95)]
        print(f"  {label:<22}{used / 1e6:>10.2f}{size / 1e6:>9.2f}{added:>18,.0f}"
              f"{statistics.median(times) / 1000:>20,.1f}{p95 / 1000:>8,.1f}")
    print(f"  (bytes in use are counted in 256 KiB blocks: ±{262144 / n_steps:,.0f} bytes/step)")
    full_added = (results["full"][0] - base) / n_steps
    print(f"  trace JSON before compression: {raw_bytes / n_steps:,.0f} bytes/step; on disk "
          f"{full_added:,.0f} bytes/step ({full_added / (raw_bytes / n_steps):.0%} of it)")
    print(f"  make_trace() in the engine: {statistics.median(made):,.0f} µs/step p50, "
          f"{sorted(made)[int(len(made) * 0.95)]:,.0f} µs p95")


if __name__ == "__main__":
    main()
