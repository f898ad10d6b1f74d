"""Cached-workflow benchmark: an agent run versus its replay, and replays over page changes.

Runs the real engine (real Chromium, local shop over HTTP) with a scripted fake OpenAI-compatible
model whose token counts are real (o200k_base over the messages and tools it receives) and whose
answers take `--latency` seconds (default 1.0, a fast hosted model; 0 measures our own time). Prints:
1. the same order task (search, open, add to cart, check out, report) done by the agent and then
   replayed with other parameter values, side by side: wall time, model calls, tokens (medians);
   the same for a search on the bundled demo shop;
2. the workflow recorded three ways (a plain text result; a text echoing page values upper-cased,
   quoted and lower-cased; a JSON result) replayed with other values over 11 deliberate changes:
   of the page (ids/classes renamed, wrappers added, items reordered, wording changed, all of those
   at once, the search form removed), of the data (new prices, renamed products, order codes
   without digits, another status word) and both at once; each replay is checked against the
   right answer (what the shop shows for a correct order) and counted right, healed, honestly
   failed or wrong; each healed version is replayed once more with the recorded values;
3. "the cheapest X with its price" read off a list page (two or three values from one item: cards and
   table rows with product-specific ids, nested entries without), replayed with other queries (the
   recorded product listed second, not listed, the same query) over changes of the page and the data:
   right, healed (handed over), failed or wrong (a mixture, or another item than the cheapest).

Usage: .venv/bin/python bench/bench_workflows.py [--runs 3] [--latency 1.0] [--tables 1,2,3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from agent.models import RunFinished, RunRequest, RunResponse, WorkflowHealed  # noqa: E402
from agent.testing.sites import serve_dir  # noqa: E402
from agent.workflows.record import record_workflow  # noqa: E402
from agent.workflows.replay import replay  # noqa: E402

DEMO = ROOT / "data" / "demo"
from agent.testing.fakellm import FakeLLM, counted  # noqa: E402
from agent.testing.workflow_site.lists import stock  # noqa: E402
from agent.testing.workflow_site.script import (  # noqa: E402
    demo_agent,
    list_agent,
    list_prompt,
    order_answer,
    order_prompt,
    shop_agent,
)
from agent.testing.workflow_site.shop import (  # noqa: E402
    DATA_VARIANTS,
    LAYOUT_VARIANTS,
    ShopServer,
    catalog,
    expected_order,
)

A = dict(query="usb-c", qty=2, name="Ada Lovelace", email="ada@example.com", country="Germany")
B = dict(query="hdmi", qty=3, name="Grace Hopper", email="grace@example.com", country="France")
MODEL = "gpt-4o-mini"


async def replay_once(request: RunRequest, doc: dict[str, Any],
                      browser: Browser) -> tuple[RunFinished, dict[str, Any] | None, float]:
    """The replay's end, the healed version it handed over (if any) and its wall time."""
    t0 = time.perf_counter()
    final, healed = None, None
    async for event in replay(request, doc, browser=browser):
        if isinstance(event, WorkflowHealed):
            healed = event.document
        final = event
    assert isinstance(final, RunFinished)
    return final, healed, time.perf_counter() - t0


def row(cells: list[Any], widths: list[int]) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


async def main(runs: int, latency: float, tables: set[int]) -> None:
    shop = ShopServer()
    demo_server, demo_url = serve_dir(DEMO)
    fake = FakeLLM()
    os.environ["OPENAI_BASE_URL"] = fake.url
    os.environ["OPENAI_API_KEY"] = "sk-bench-not-a-real-key"
    browser = Browser()
    await browser.start()
    try:
        # Warm-up: litellm's import and Chromium's first page are paid once, not by the first row.
        fake.reset(counted(shop_agent(**A), 0))
        first = RunRequest(prompt=order_prompt(shop.url, **A), model=MODEL, start_url=shop.url + "/")
        await arun(first, browser=browser)

        if 1 in tables:
            await speed(shop, fake, browser, demo_url, runs, latency)
        if 2 in tables:
            await robustness(shop, fake, browser, latency)
        if 3 in tables:
            await lists_table(shop, fake, browser, latency)
    finally:
        await browser.close()
        fake.close()
        shop.close()
        demo_server.shutdown()


async def speed(shop: ShopServer, fake: FakeLLM, browser: Browser, demo_url: str, runs: int, latency: float) -> None:
    """Table 1: the agent's run against the replay of its workflow with other values (medians of `runs`)."""
    tasks = [
        ("order (shop)", lambda: counted(shop_agent(**A), latency),
         RunRequest(prompt=order_prompt(shop.url, **A), model=MODEL, start_url=shop.url + "/"),
         RunRequest(prompt=order_prompt(shop.url, **B), model=MODEL, use_cached_workflow=True)),
        ("search (demo)", lambda: counted(demo_agent("usb-c"), latency),
         RunRequest(prompt=f"Search {demo_url} for usb-c and give the first result's name and price", model=MODEL,
                    start_url=demo_url + "/index.html"),
         RunRequest(prompt=f"Search {demo_url} for keyboard and give the first result's name and price",
                    model=MODEL, use_cached_workflow=True)),
    ]
    print(f"1. Agent run vs replay with other values (median of {runs}; model latency {latency:g} s per call)\n")
    widths = [15, 7, 10, 10, 10, 11, 9, 8]
    print(row(["task", "mode", "wall s", "LLM calls", "tokens in", "tokens out", "steps", "status"], widths))
    for label, make_handler, agent_request, replay_request in tasks:
        agent_rows: list[tuple[float, RunResponse]] = []
        for _ in range(runs):
            fake.reset(make_handler())
            t0 = time.perf_counter()
            response = await arun(agent_request, browser=browser)
            agent_rows.append((time.perf_counter() - t0, response))
        task_doc = record_workflow(agent_request, agent_rows[0][1])
        fake.reset(lambda body: 503)
        replay_rows = [await replay_once(replay_request, task_doc, browser) for _ in range(runs)]
        assert not fake.requests, "a replay called the model"
        by_mode = (("agent", [(t, r) for t, r in agent_rows]),
                   ("replay", [(t, f.response) for f, _, t in replay_rows]))
        for mode, rows in by_mode:
            wall = statistics.median(t for t, _ in rows)
            r = rows[0][1]
            print(row([label, mode, f"{wall:.2f}", r.usage.llm_calls, r.usage.input_tokens, r.usage.output_tokens,
                       len(r.history), r.status], widths))


SCHEMA = {"type": "object", "required": ["order", "product", "quantity", "total", "name"],
          "properties": {"order": {"type": "string"}, "product": {"type": "string"}, "quantity": {"type": "integer"},
                         "total": {"type": "number"}, "name": {"type": "string"}}}
# How the recorded run reported the order: plain text; text echoing page values transformed (product
# upper-cased and quoted, status word lower-cased); JSON.
KINDS = {"text": ("plain", False), "echo": ("echo", False), "json": ("plain", True)}
CHANGES = (*LAYOUT_VARIANTS, *DATA_VARIANTS, "redesign+names")


def truth(values: dict[str, Any], variant: str, kind: str) -> Any:
    """The right answer: the scripted agent's report of the order a correct run places under `variant`."""
    style, json_result = KINDS[kind]
    return order_answer(expected_order(**values, variant=variant), style=style, json_result=json_result)


def outcome(response: RunResponse, right: Any) -> str:
    """right (untouched), healed (right, after healing), failed (honestly), or wrong (a success that is not right)."""
    if response.status != "success":
        return "failed"
    if response.result != right:
        return "wrong"
    return "healed" if response.healed_steps else "right"


async def robustness(shop: ShopServer, fake: FakeLLM, browser: Browser, latency: float) -> None:
    """Table 2: each recording replayed with other values over every page or data change, then its healed version
    replayed with the recorded values again; the outcomes counted against the right answer."""
    print(f"\n2. The order workflow replayed (other values) on changed pages and data; the model heals "
          f"({latency:g} s per call)\n")
    widths = [16, 6, 9, 7, 6, 8, 26]
    print(row(["change", "kind", "outcome", "healed", "calls", "wall s", "healed version, A again"], widths))
    counts = {kind: {"right": 0, "healed": 0, "failed": 0, "wrong": 0} for kind in KINDS}
    notes: list[str] = []
    for kind, (style, json_result) in KINDS.items():
        shop.variant = "base"
        fake.reset(counted(shop_agent(**A, style=style, json_result=json_result), 0))
        request = RunRequest(prompt=order_prompt(shop.url, **A), model=MODEL, start_url=shop.url + "/",
                             json_schema=SCHEMA if json_result else None)
        doc = record_workflow(request, await arun(request, browser=browser))
        for variant in CHANGES:
            shop.variant = variant
            fake.reset(counted(shop_agent(**B, style=style, json_result=json_result), latency))
            again_request = RunRequest(prompt=order_prompt(shop.url, **B), model=MODEL, json_schema=request.json_schema)
            final, healed, wall = await replay_once(again_request, doc, browser)
            r = final.response
            verdict = outcome(r, truth(B, variant, kind))
            counts[kind][verdict] += 1
            again = "-"
            if healed is not None:
                fake.reset(lambda body: 503)
                second, _, _ = await replay_once(RunRequest(prompt=order_prompt(shop.url, **A), model=MODEL,
                                                            json_schema=request.json_schema), healed, browser)
                again = f"{outcome(second.response, truth(A, variant, kind))}, {len(fake.requests)} calls"
            print(row([variant, kind, verdict, r.healed_steps, r.usage.llm_calls, f"{wall:.2f}", again], widths))
            if verdict == "failed":
                notes.append(f"{variant}/{kind}: {r.stop_reason}: {r.error}")
            elif verdict == "wrong":
                notes.append(f"{variant}/{kind}: answered {json.dumps(r.result, ensure_ascii=False)[:160]}")
    shop.variant = "base"
    n = len(CHANGES)
    print(f"\nOver {n} deliberate changes ({len(LAYOUT_VARIANTS)} of the page, {len(DATA_VARIANTS)} of the data, "
          "1 of both) and 3 kinds of recorded result:")
    print(row(["kind", "right", "healed", "failed", "wrong"], [6, 7, 7, 7, 7]))
    for kind, c in counts.items():
        print(row([kind, c["right"], c["healed"], c["failed"], c["wrong"]], [6, 7, 7, 7, 7]))
    total = {k: sum(c[k] for c in counts.values()) for k in ("right", "healed", "failed", "wrong")}
    print(row(["all", total["right"], total["healed"], total["failed"], total["wrong"]], [6, 7, 7, 7, 7]))
    for note in notes:
        print(f"  {note}")


LIST_LAYOUTS = ("cards", "table", "nested")
LIST_CHANGES = ("base", "renamed", "wrapped", "reordered", "prices", "names")
# Replayed with: a query whose list holds the recorded product second ("cable"), one whose list does not
# hold it ("lightning"), and the recorded query itself ("hdmi").
LIST_QUERIES = ("cable", "lightning", "hdmi")


def list_truth(query: str, layout: str, variant: str) -> str:
    """The right answer: the list agent's report of the cheapest product matching `query` under `variant`."""
    matching = [p for p in catalog(variant) if all(w in (p["name"] + " " + p["tags"]).lower() for w in query.split())]
    best = min(matching, key=lambda p: p["price"])
    extra = f" ({stock(best)} left)" if layout == "table" else ""
    return f"The cheapest is {best['name']} at €{best['price']:.2f}{extra}."


async def lists_table(shop: ShopServer, fake: FakeLLM, browser: Browser, latency: float) -> None:
    """Table 3: "the cheapest X with its price" read off a list page (values from one item), recorded per layout
    (cards and table rows with product-specific ids, nested entries without), replayed with other queries
    over page and data changes; the outcomes counted against the right answer."""
    print(f"\n3. Name and price read from one item of a list, replayed with other queries on changed pages "
          f"(the model heals, {latency:g} s per call)\n")
    widths = [9, 10, 10, 9, 7, 6]
    print(row(["layout", "change", "query", "outcome", "healed", "calls"], widths))
    counts = {layout: {"right": 0, "healed": 0, "failed": 0, "wrong": 0} for layout in LIST_LAYOUTS}
    notes: list[str] = []
    for layout in LIST_LAYOUTS:
        shop.variant = "base"
        fake.reset(counted(list_agent(), 0))
        request = RunRequest(prompt=list_prompt(shop.url, "hdmi", layout), model=MODEL)
        doc = record_workflow(request, await arun(request, browser=browser))
        for variant in LIST_CHANGES:
            shop.variant = variant
            for query in LIST_QUERIES:
                fake.reset(counted(list_agent(), latency))
                final, _healed, _wall = await replay_once(
                    RunRequest(prompt=list_prompt(shop.url, query, layout), model=MODEL), doc, browser)
                r = final.response
                verdict = outcome(r, list_truth(query, layout, variant))
                counts[layout][verdict] += 1
                print(row([layout, variant, query, verdict, r.healed_steps, r.usage.llm_calls], widths))
                if verdict in ("failed", "wrong"):
                    notes.append(f"{layout}/{variant}/{query}: {r.error or json.dumps(r.result, ensure_ascii=False)}")
    shop.variant = "base"
    total = len(LIST_CHANGES) * len(LIST_QUERIES)
    print(f"\nOver {len(LIST_CHANGES)} changes x {len(LIST_QUERIES)} queries ({total} replays per layout):")
    print(row(["layout", "right", "healed", "failed", "wrong"], [7, 7, 7, 7, 7]))
    for layout, c in counts.items():
        print(row([layout, c["right"], c["healed"], c["failed"], c["wrong"]], [7, 7, 7, 7, 7]))
    every = {k: sum(c[k] for c in counts.values()) for k in ("right", "healed", "failed", "wrong")}
    print(row(["all", every["right"], every["healed"], every["failed"], every["wrong"]], [7, 7, 7, 7, 7]))
    for note in notes:
        print(f"  {note[:300]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per mode in table 1 (median shown)")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds the fake model takes per answer")
    parser.add_argument("--tables", default="1,2,3", help="which tables to print, e.g. 3 or 1,3")
    args = parser.parse_args()
    try:
        chosen = {int(t) for t in args.tables.split(",") if t.strip()}
    except ValueError:
        parser.error(f"--tables {args.tables!r}: give table numbers 1-3 separated by commas, e.g. 2,3")
    if not chosen or not chosen <= {1, 2, 3}:
        parser.error(f"--tables {args.tables!r}: give table numbers 1-3 separated by commas, e.g. 2,3")
    asyncio.run(main(max(1, args.runs), max(0.0, args.latency), chosen))
