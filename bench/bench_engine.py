"""Engine benchmark: fixed prompt size per step and the engine's own time per step.

Runs the real engine on local pages with a zero-latency fake OpenAI-compatible model and prints:
- the fixed prompt per step (system prompt + tool schemas, which every step pays before the page), in
  tokens (o200k_base, offline);
- per step: wall time, time in the model call (HTTP + litellm), browser time (observe, screenshot,
  actions) and the rest, our own overhead.

Usage: .venv/bin/python bench/bench_engine.py [--steps 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agent.engine import actions, prompts  # noqa: E402
from agent.engine.browser import Browser  # noqa: E402
from agent.engine.loop import stream  # noqa: E402
from agent.models import StepFinished  # noqa: E402
from agent.testing.sites import serve_dir  # noqa: E402

SITE = ROOT / "tests" / "site"  # the engine test pages, read as data
from agent.testing.fakellm import FakeLLM, call, find_index, reply  # noqa: E402


def tokens(text: str) -> int:
    """Tokens of `text` with the o200k_base encoding."""
    import bpe_openai

    return len(bpe_openai.get_encoding("o200k_base").encode(text))


def fixed_prompt_table() -> list[tuple[str, int, int]]:
    """(variant, chars, tokens) of what every step sends besides the task and the page."""
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
              "required": ["name", "price"]}
    rows = []
    cases = [("text result", {}), ("json_schema result", {"json_schema": schema, "response_format": "json"})]
    for label, kwargs in cases:
        tool_json = json.dumps(actions.tools(**kwargs))
        frame = prompts.step_message(task="", step=1, max_steps=25, history=[], tabs=[(0, "")], current_tab=0,
                                     url="", title="", page="", notes=[], result_hint=prompts.result_hint(
                                         kwargs.get("json_schema"), kwargs.get("response_format", "text")))
        text = prompts.SYSTEM_PROMPT + tool_json + frame
        rows.append((label, len(text), tokens(text)))
    return rows


# (label, start page, the model's action on each step): scrolling a long page, and a button whose click
# changes the DOM or leaves it as it was (the two ends of what a step's wait for the page costs).
CASES: list[tuple[str, str, Any]] = [
    ("scroll a long page", "long.html", lambda body, i: call("scroll", down=(i % 2 == 0), pages=1)),
    ("click, DOM changes", "clicker.html", lambda body, i: call("click", index=find_index(body, "Next item"))),
    ("click, DOM still", "clicker.html?mode=still",
     lambda body, i: call("click", index=find_index(body, "Next item"))),
]


async def own_time(steps: int, cases: list[tuple[str, str, Any]] = CASES) -> dict[str, list[dict[str, float]]]:
    """Per case, run `steps` steps of its action then done on a local page; return per-step timings."""
    server, base = serve_dir(SITE)
    fake = FakeLLM()
    os.environ["OPENAI_BASE_URL"] = fake.url
    os.environ["OPENAI_API_KEY"] = "sk-bench"
    browser = Browser()
    out: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as shots:
        # Warm-up run: browser start and litellm import are paid once per process, not per step.
        fake.script([reply("done", call("done", text="warm", success=True))])
        async for _ in stream({"prompt": "warm up", "model": "gpt-4o-mini"}, browser=browser):
            pass
        for label, page, act in cases:
            count = [0]

            def model(body: dict[str, Any], act: Any = act, count: list[int] = count) -> Any:
                count[0] += 1
                if count[0] > steps:
                    return reply("Finished", call("done", text="read it", success=True))
                return reply("On with it", act(body, count[0]))

            fake.reset(model)
            request = {"prompt": "Work the page", "model": "gpt-4o-mini", "start_url": f"{base}/{page}",
                       "max_steps": steps + 3}
            rows = out.setdefault(label, [])
            async for event in stream(request, browser=browser, screenshot_dir=Path(shots)):
                if isinstance(event, StepFinished) and event.item.llm_calls \
                        and not any(a.is_done for a in event.item.actions):
                    item = event.item
                    if any(a.error for a in item.actions):
                        raise RuntimeError(f"{label}: {[a.error for a in item.actions]}")
                    rows.append({"wall": item.duration_ms, "llm": item.llm_ms, "browser": item.browser_ms,
                                 "own": item.duration_ms - item.llm_ms - item.browser_ms})
    await browser.close()
    fake.close()
    server.shutdown()
    return out


def main() -> None:
    """Print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    print("Fixed prompt per step (system prompt + tool schemas + message frame; target < 2,500 tokens)")
    print(f"{'variant':<22}{'chars':>8}{'tokens':>8}")
    for label, chars, toks in fixed_prompt_table():
        print(f"{label:<22}{chars:>8}{toks:>8}")

    results = asyncio.run(own_time(args.steps))
    print(f"\nPer step, {args.steps} steps per case, zero-latency fake model (ms): wall = the whole step (observe,"
          "\nmodel HTTP, action and its wait for the page, screenshot); targets: click 120 (DOM changes) / 80 (still)")
    print(f"{'case':<20}{'stat':<8}{'wall':>9}{'llm call':>10}{'browser':>9}{'own':>9}")
    for label, rows in results.items():
        for stat, fn in (("median", statistics.median), ("p90", lambda v: sorted(v)[int(len(v) * 0.9) - 1]),
                         ("max", max)):
            print(f"{label:<20}{stat:<8}" + "".join(f"{fn([r[k] for r in rows]):>{w}.1f}"
                                                    for k, w in (("wall", 9), ("llm", 10), ("browser", 9), ("own", 9))))


if __name__ == "__main__":
    main()
