"""Fork benchmark: taking a 10-step demo-shop run over at step 8 versus running the whole task again.

Runs the real engine (real Chromium, the bundled demo shop over HTTP) with the scripted fake model of
agent.testing.forks (fill the cart with two products, open the cart, report the total: ten steps, one
model call each), whose answers take `--latency` seconds (default 1.0, a fast hosted model; 0 measures
our own time) and whose token counts are real (o200k_base over the messages and tools it receives).
For each latency, the median of `--runs` of:
- the whole task again: ten steps, ten model calls;
- a fork of that run at step 8 (`fork_from(parent, step=8)`): steps 1-7 replayed in the fork's own
  browser without the model (recorded locators, checks), then the agent at steps 8-10.
Prints wall time, model calls, tokens, the replayed prefix's time, and the fork's saving.

Usage: .venv/bin/python bench/bench_fork.py [--runs 3] [--latency 1.0 0] [--step 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agent.engine.browser import Browser  # noqa: E402
from agent.engine.loop import arun  # noqa: E402
from agent.models import RunRequest, RunResponse  # noqa: E402
from agent.testing.fakellm import FakeLLM, counted  # noqa: E402
from agent.testing.forks import cart_agent, cart_prompt  # noqa: E402
from agent.testing.sites import serve_dir  # noqa: E402
from agent.workflows.fork import fork_from  # noqa: E402

DEMO = ROOT / "data" / "demo"
MODEL = "gpt-4o-mini"


def row(cells: list[Any], widths: list[int]) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


async def timed(request: RunRequest, browser: Browser, **kwargs: Any) -> tuple[float, RunResponse]:
    t0 = time.perf_counter()
    response = await arun(request, browser=browser, **kwargs)
    return time.perf_counter() - t0, response


async def main(runs: int, latencies: list[float], step: int) -> None:
    server, base = serve_dir(DEMO)
    fake = FakeLLM()
    os.environ["OPENAI_BASE_URL"] = fake.url
    os.environ["OPENAI_API_KEY"] = "sk-bench-not-a-real-key"
    browser = Browser()
    await browser.start()
    request = RunRequest(prompt=cart_prompt(base + "/index.html"), model=MODEL)
    try:
        fake.reset(counted(cart_agent, 0))
        _t, parent = await timed(request, browser)  # warm-up (litellm's import, Chromium's first page); the parent
        assert parent.status == "success" and len(parent.history) == 10, (parent.status, parent.error)
        prefix = fork_from(parent, step=step)
        print(f"Forking step {step} of a {len(parent.history)}-step demo-shop run vs running the whole task again "
              f"(median of {runs}; real Chromium, scripted model)\n")
        widths = [22, 9, 8, 10, 10, 11, 12, 8]
        print(row(["mode", "latency", "wall s", "LLM calls", "tokens in", "tokens out", "replayed s", "status"],
                  widths))
        summary = []
        for latency in latencies:
            results: dict[str, list[tuple[float, RunResponse, int]]] = {"whole task again": [], f"fork at {step}": []}
            for _ in range(runs):
                for mode, kwargs in (("whole task again", {}), (f"fork at {step}", {"fork": prefix})):
                    fake.reset(counted(cart_agent, latency))
                    wall, response = await timed(request, browser, **kwargs)
                    results[mode].append((wall, response, len(fake.requests)))
            medians = {}
            for mode, rows in results.items():
                wall = statistics.median(w for w, _, _ in rows)
                medians[mode] = wall
                r, calls = rows[0][1], rows[0][2]  # calls and tokens are the same in every run (a scripted model)
                replayed = statistics.median(sum(i.duration_ms for i in x.history if i.executed_by == "replay")
                                             for _, x, _ in rows) / 1000
                print(row([mode, f"{latency:g} s", f"{wall:.2f}", f"{r.usage.llm_calls} ({calls})",
                           r.usage.input_tokens, r.usage.output_tokens, f"{replayed:.2f}", r.status], widths))
            whole, forked = medians["whole task again"], medians[f"fork at {step}"]
            summary.append(f"latency {latency:g} s: the fork took {forked:.2f} s against {whole:.2f} s "
                           f"({forked / whole:.0%} of the time), {len(parent.history) - step + 1} model calls against "
                           f"{len(parent.history)}")
        print()
        for line in summary:
            print(line)
        print("(LLM calls: the run's usage, and in brackets the requests the fake model received)")
    finally:
        await browser.close()
        fake.close()
        server.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per mode (median shown)")
    parser.add_argument("--latency", type=float, nargs="+", default=[1.0, 0.0], help="seconds per model answer")
    parser.add_argument("--step", type=int, default=8, help="the step the fork takes over at (1-10)")
    args = parser.parse_args()
    asyncio.run(main(max(1, args.runs), [max(0.0, x) for x in args.latency], min(10, max(1, args.step))))
