"""What keeping secrets secret costs: scrubbing per event, and masking per screenshot.

Scrub: the demo shop's pages observed in a real Chromium make realistic step events (a StepFinished
with its trace: system prompt, step message holding the page observation, reply, tool calls). For sets
of sensitive_data values (none; 1 short; 5; 50; long ones) it times compiling the scrubber (once per run,
off the event loop), the engine's `Secrets.scrub_model` of the event (every string, every spelling), and
the run log's `redact.dumps` of the trace's messages (its second pass, as JSON).

Mask: `BrowserSession.screenshot` on real pages (the demo shop's product page, and a large generated page
of ~5,000 text nodes), without secrets (a plain JPEG), with secrets the page does not show (the page is
read), and with secrets it shows (read, PNG, painted, encoded as JPEG).

Usage: .venv/bin/python bench/bench_secrets.py [-n 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.engine import prompts  # noqa: E402
from agent.engine.browser import Browser  # noqa: E402
from agent.engine.page import observe  # noqa: E402
from agent.engine.secrets import Secrets  # noqa: E402
from agent.engine.trace import make_trace  # noqa: E402
from agent.log.redact import dumps  # noqa: E402
from agent.models import ActionResult, HistoryItem, LLMCall, StepFinished, utcnow  # noqa: E402
from agent.testing.sites import serve_dir  # noqa: E402

DEMO = ROOT / "data" / "demo"
PAGES = ["index.html", "search.html?q=usb-c", "product.html?id=cab-01", "cart.html", "checkout.html"]
ALPHABET = string.ascii_letters + string.digits + "~*!'()&+%/?#\"<>\\, éß😀"
SECRET_SETS = [("none", 0, 0), ("1 x 16 chars", 1, 16), ("5 x 32 chars", 5, 32), ("50 x 64 chars", 50, 64),
               ("1 x 4096 chars", 1, 4096), ("10 x 4096 chars", 10, 4096)]


BIG_PAGE = "<!doctype html><title>Big</title>" + "".join(
    f"<div class=row><span>Item {i}</span> <b>price {i % 97}.99</b> <a href='/p/{i}'>open</a></div>"
    for i in range(1700))


# What `extract` scrubs at most: 40,000 characters of page text (mixed, with encoded bits and non-ASCII).
LONG_TEXT = ("Price 5.49 € for the USB-C cable, 0 results for p%7Essword &amp; more; \u00e9t\u00e9 " * 520)[:40_000]


def values(count: int, length: int, seed: int = 7) -> dict[str, str]:
    rng = random.Random(seed)
    return {f"s{i}": "".join(rng.choice(ALPHABET) for _ in range(length)) for i in range(count)}


def median_ms(fn: Callable[..., Any], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def observations() -> list[tuple[str, str, str]]:
    server, base = serve_dir(DEMO)
    browser = Browser()
    out = []
    try:
        async with browser.session() as session:
            for page in PAGES:
                await session.page.goto(f"{base}/{page}", wait_until="load")
                obs = await observe(session.page)
                out.append((obs.url, obs.title, obs.text))
            await session.page.set_content(BIG_PAGE)  # an observation at its 30,000-character cap
            obs = await observe(session.page)
            out.append((f"{base}/big?q=usb-c", obs.title, obs.text))
    finally:
        await browser.close()
        server.shutdown()
    return out


def event(url: str, title: str, text: str) -> StepFinished:
    """A step's event as the engine yields it: the item and the trace of its model call."""
    message = prompts.step_message(task="Find the cheapest USB-C cable", step=3, max_steps=25, history=[],
                                   tabs=[(0, url)],
                                   current_tab=0, url=url, title=title, page=text, notes=[], result_hint="")
    messages = [{"role": "system", "content": prompts.system_prompt()}, {"role": "user", "content": message}]
    call = LLMCall(purpose="step", model="o3", provider="openai", started_at=utcnow(), latency_ms=900.0,
                   input_tokens=3000, output_tokens=40)
    raw = {"role": "assistant", "content": "Open the cheapest.",
           "tool_calls": [{"id": "c1", "type": "function",
                           "function": {"name": "click", "arguments": '{"index": 12}'}}]}
    trace = make_trace(call, messages, None, raw, observation=text, screenshot_step=3)
    item = HistoryItem(description="Open the cheapest.", step=3, url=url, title=title, started_at=utcnow(),
                       actions=[ActionResult(name="click", params={"index": 12}, success=True,
                                             extracted_content="clicked [12] USB-C to USB-C Cable 0.5 m")],
                       llm_calls=[call])
    return StepFinished(item=item, traces=[trace])


def scrub_rows(pages: list[tuple[str, str, str]], n: int) -> list[list[str]]:
    events = [event(*p) for p in pages]
    kb = statistics.mean(len(e.model_dump_json()) for e in events) / 1024  # mean size of an event
    rows = []
    for label, count, length in SECRET_SETS:
        data = values(count, length)
        started = time.perf_counter()
        secrets = Secrets(data)
        secrets.scrubber  # noqa: B018  (compiled here, as `prepare` does off the event loop)
        compile_ms = (time.perf_counter() - started) * 1000
        engine = median_ms(lambda s=secrets: [s.scrub_model(e) for e in events], n) / len(events)
        plain = list(data.values())
        store = median_ms(lambda p=plain: [dumps(e.traces[0].messages, p) for e in events], n) / len(events)
        page = median_ms(lambda s=secrets: s.scrub(LONG_TEXT), n)
        rows.append([label, f"{compile_ms:.1f}", f"{kb:.0f}", f"{engine:.2f}", f"{store:.2f}", f"{page:.2f}"])
    return rows




ECHO_JS = """v => { for (let i = 0; i < 3; i++) {
  const p = document.createElement('p'); p.textContent = 'You typed ' + v; document.body.prepend(p); } }"""


async def mask_rows(n: int) -> list[list[str]]:
    server, base = serve_dir(DEMO)
    browser = Browser()
    shown = "Zq~9*!(x) &+% SECRET"
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, html in (("demo product page", None), ("large page, ~5,000 text nodes", BIG_PAGE)):
                cases = (("no secrets", None, False), ("5 secrets, none shown", values(5, 32), False),
                         ("5 secrets, 1 shown 3 times", {**values(4, 32), "pw": shown}, True))
                for label, secrets, echo in cases:
                    async with browser.session() as session:
                        page = session.page
                        if html is None:
                            await page.goto(f"{base}/product.html?id=cab-01", wait_until="load")
                        else:
                            await page.set_content(html)
                        if echo:
                            await page.evaluate(ECHO_JS, shown)
                        if secrets:
                            await session.hide(Secrets(secrets))
                        times = []
                        for i in range(n):
                            started = time.perf_counter()
                            assert await session.screenshot(Path(tmp) / f"{i}.jpg")
                            times.append((time.perf_counter() - started) * 1000)
                    rows.append([name, label, f"{statistics.median(times):.0f}", f"{max(times):.0f}"])
    finally:
        await browser.close()
        server.shutdown()
    return rows


def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line, sep, *("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
                                   for r in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="repetitions per row (default 20)")
    args = parser.parse_args()
    pages = asyncio.run(observations())
    print("Scrubbing sensitive_data (per step event: the demo shop's pages and one at the observation's cap)\n")
    print(table(["values", "compile ms (once a run)", "mean event KB", "engine scrub_model ms", "run log dumps ms",
                 "40,000-char page text ms"],
                scrub_rows(pages, args.n)))
    print("\nMasking secrets in screenshots (BrowserSession.screenshot, 1280x800 JPEG)\n")
    print(table(["page", "secrets", "median ms", "max ms"], asyncio.run(mask_rows(args.n))))


if __name__ == "__main__":
    main()
