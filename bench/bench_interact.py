"""Benchmark how actions touch hard pages: covered clicks, label clicks, typing, hover and scroll settling.

Usage:
    .venv/bin/python bench/bench_interact.py [-n 5]

Serves tests/site, opens each pattern page in a real Chromium and times one action through
`agent.engine.actions.execute` (the path the agent takes), `-n` times each on a fresh page. Prints one
row per case: median and max ms (the action alone, including its wait for the page to settle), and
what the action reported. "type 2000 chars, key by key" is the
baseline that typing long text avoids (every key sent as its own key events).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.engine import actions as act  # noqa: E402
from agent.engine.browser import Browser, BrowserSession  # noqa: E402
from agent.engine.page import find_element, observe  # noqa: E402
from agent.testing.sites import serve_dir  # noqa: E402

SITE = ROOT / "tests" / "site"  # the engine test pages, read as data

LONG = " ".join(f"word{i}" for i in range(260))[:2000]


async def index_of(session: BrowserSession, text: str) -> int:
    """The index of the first element line holding `text`, as the model would pick it."""
    for line in (await observe(session.page)).text.splitlines():
        if line.startswith("[") and text in line:
            return int(line[1:line.index("]")])
    raise LookupError(text)


async def keyed_baseline(session: BrowserSession) -> tuple[str, float]:
    locator = await find_element(session.page, await index_of(session, "Title"))
    t0 = time.perf_counter()
    await locator.press_sequentially(LONG, timeout=120_000)
    return "typed key by key", (time.perf_counter() - t0) * 1000


def action(name: str, target: str, **params: Any) -> Callable[[BrowserSession], Awaitable[tuple[str, float]]]:
    """One action on the element whose line holds `target` (observed first, outside the timing)."""

    async def run(session: BrowserSession) -> tuple[str, float]:
        ctx = act.Context(session=session)
        if target:
            params["index"] = await index_of(session, target)
        t0 = time.perf_counter()
        result, _ = await act.execute(ctx, name, dict(params))
        return (result.error or result.extracted_content or "")[:70], (time.perf_counter() - t0) * 1000

    return run


CASES: list[tuple[str, str, Callable[[BrowserSession], Awaitable[tuple[str, float]]]]] = [
    ("click a control under a cookie wall", "cookie-wall.html", action("click", "Add to cart")),
    ("click a styled checkbox (hidden input)", "consent-form.html", action("click", "I agree")),
    ("click a plain button", "consent-form.html", action("click", "Create account")),
    ("click a control whose centre is covered", "partly-covered.html", action("click", "ONE")),
    ("click, content shows 300 ms later (timer)", "settle.html", action("click", "Show later")),
    ("hover a menu with hover intent", "hover-menu.html", action("hover", "Products")),
    ("type 8 chars into a keyup filter", "filter-table.html", action("input", "Filter parts", text="Part 137")),
    ("type 2000 chars into an editor", "compose.html", action("input", "Post body", text=LONG)),
    ("type 2000 chars into an input", "compose.html", action("input", "Title", text=LONG)),
    ("type 2000 chars, key by key (baseline)", "compose.html", keyed_baseline),
    ("scroll a feed that fetches its next page", "feed.html", action("scroll", "", down=True, pages=2)),
]


async def main(runs: int) -> None:
    server, url = serve_dir(SITE)
    browser = Browser()
    rows = []
    try:
        for name, page, case in CASES:
            times, said = [], ""
            for _ in range(runs):
                async with browser.session() as session:
                    began = time.monotonic()
                    await session.page.goto(f"{url}/{page}", wait_until="load")
                    await act.settle(session, since=began)  # what the page fetches after loading is there
                    said, ms = await case(session)
                    times.append(ms)
            rows.append((name, statistics.median(times), max(times), said))
    finally:
        await browser.close()
        server.shutdown()
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  median ms   max ms  reported")
    for name, median, top, said in rows:
        print(f"{name:<{width}}  {median:9.0f}  {top:7.0f}  {said}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=5, help="times per case, each on a fresh page")
    asyncio.run(main(parser.parse_args().runs))
