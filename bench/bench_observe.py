"""Benchmark page observation: time, size and tokens of `observe()` on the test pages and a huge page.

Usage:
    .venv/bin/python bench/bench_observe.py [-n 10] [--mb 5] [files-or-urls...]

Observes every page of tests/site, a generated documentation-like page of about `--mb` megabytes,
and any HTML files or URLs given, `-n` times each after one warm-up observation ("first ms").
"settle ms" is how long a trivial script waited after `load` for the renderer to finish its own
layout and paint: on a huge page that is seconds, and no observation can start before it.
Prints one table row per page. Tokens are counted with bpe_openai's o200k_base when it is
installed; otherwise the column says "~chars/4".
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.engine.browser import Browser  # noqa: E402
from agent.engine.page import observe, page_text  # noqa: E402
from agent.testing.sites import serve_dir  # noqa: E402

SITE = ROOT / "tests" / "site"  # the engine test pages, read as data

WORDS = ["the", "of", "function", "returns", "value", "parameter", "object", "request", "response", "module",
         "class", "method", "string", "list", "dict", "config", "option", "default", "timeout", "error", "handler",
         "session", "client", "server", "stream", "buffer"]


def make_doc_page(target_bytes: int, *, seed: int = 7) -> str:
    """A documentation-like page of about `target_bytes`: fixed sidebar of links, sections of prose, code, tables."""
    rnd = random.Random(seed)

    def sentence(n: int) -> str:
        return " ".join(rnd.choice(WORDS) for _ in range(n)).capitalize() + "."

    n_sections = max(1, target_bytes // 6_000)
    head = [
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Generated API reference</title>",
        "<style>nav{position:fixed;left:0;top:0;width:220px;height:100vh;overflow:auto}"
        "main{margin-left:240px} pre{background:#f6f6f6} .k{color:#a0a}</style></head><body><nav><ul>",
        *(f'<li><a href="#s{i}">Section {i}</a></li>' for i in range(n_sections)),
        "</ul></nav><main><h1>API reference</h1>",
    ]
    parts = ["".join(head)]
    size = len(parts[0])
    i = 0
    while size < target_bytes:
        chunk = [f'<section id="s{i}"><h2>Section {i}: <code>module_{i}.call()</code></h2>']
        for _ in range(4):
            chunk.append(
                f"<p>{sentence(20)} See <a href='#s{rnd.randrange(n_sections)}'>section link</a> "
                f"and <code>arg_{i}</code>. {sentence(15)}</p>"
            )
        chunk.append(
            "<pre><code>"
            + "\n".join(
                f'<span class="k">def</span> <span>f_{i}_{j}</span>(<span>x</span>, <span>y</span>): '
                f'<span class="k">return</span> x + y'
                for j in range(8)
            )
            + "</code></pre>"
        )
        chunk.append(
            "<table><tr><th>Name</th><th>Type</th><th>Description</th></tr>"
            + "".join(f"<tr><td><code>p{j}</code></td><td>str</td><td>{sentence(8)}</td></tr>" for j in range(5))
            + "</table>"
        )
        chunk.append("<ul>" + "".join(f"<li>{sentence(10)}</li>" for _ in range(5)) + "</ul></section>")
        text = "".join(chunk)
        parts.append(text)
        size += len(text)
        i += 1
    parts.append('<p id="doc-end">End of the generated reference.</p></main></body></html>')
    return "".join(parts)


def token_counter() -> tuple[Callable[[str], int], str]:
    """A token counter and its label: o200k_base from bpe_openai, else characters / 4."""
    try:
        from bpe_openai import get_encoding

        encoding = get_encoding("o200k_base")
        return (lambda text: len(encoding.encode(text))), "tokens"
    except Exception:
        return (lambda text: len(text) // 4), "~chars/4"


async def bench(targets: list[tuple[str, str]], runs: int) -> list[dict[str, object]]:
    """Observe each (name, url) `runs` times after one warm-up; one result row per page."""
    count_tokens, _ = token_counter()
    rows: list[dict[str, object]] = []
    browser = Browser()
    try:
        async with browser.session() as session:
            page = session.page
            for name, url in targets:
                t0 = time.perf_counter()
                await page.goto(url, wait_until="load", timeout=120_000)
                load_ms = (time.perf_counter() - t0) * 1000
                # After `load` a huge page keeps the renderer busy (layout, paint) for seconds; any
                # script waits for that, so it is measured apart from observation itself.
                t1 = time.perf_counter()
                await page.evaluate("1")
                settle_ms = (time.perf_counter() - t1) * 1000
                first = await observe(page)
                times, obs = [], first
                for _ in range(runs):
                    obs = await observe(page)
                    times.append(obs.elapsed_ms)
                t1 = time.perf_counter()
                text = await page_text(page)
                text_ms = (time.perf_counter() - t1) * 1000
                rows.append({
                    "page": name,
                    "load ms": load_ms,
                    "settle ms": settle_ms,
                    "first ms": first.elapsed_ms,
                    "median ms": statistics.median(times),
                    "max ms": max(times),
                    "chars": len(obs.text),
                    "tokens": count_tokens(obs.text),
                    "elements": obs.element_count,
                    "truncated": obs.truncated,
                    "page_text ms": text_ms,
                    "page_text chars": len(text),
                })
    finally:
        await browser.close()
    return rows


def print_table(rows: list[dict[str, object]], token_label: str) -> None:
    """Print rows as an aligned text table."""
    columns = list(rows[0])
    header = [token_label if c == "tokens" else c for c in columns]
    cells = [[_fmt(row[c]) for c in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def main() -> None:
    """Serve the pages, run the benchmark, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="extra HTML files or http(s) URLs to observe")
    parser.add_argument("-n", "--runs", type=int, default=10, help="observations per page (after one warm-up)")
    parser.add_argument("--mb", type=float, default=5.0, help="size of the generated documentation page, in MB")
    args = parser.parse_args()

    servers = []
    site_server, site_url = serve_dir(SITE)
    servers.append(site_server)
    targets = [(p.name, f"{site_url}/{p.name}") for p in sorted(SITE.glob("*.html"))]
    with tempfile.TemporaryDirectory() as tmp:
        html = make_doc_page(int(args.mb * 1_000_000))
        (Path(tmp) / "generated-doc.html").write_text(html, encoding="utf-8")
        gen_server, gen_url = serve_dir(Path(tmp))
        servers.append(gen_server)
        targets.append((f"generated-doc.html ({len(html) / 1e6:.1f} MB)", f"{gen_url}/generated-doc.html"))
        for target in args.targets:
            if target.startswith(("http://", "https://")):
                targets.append((target, target))
                continue
            path = Path(target).resolve()
            if not path.is_file():
                parser.error(f"{target}: no such file; give an HTML file path or an http(s) URL")
            server, url = serve_dir(path.parent)
            servers.append(server)
            targets.append((path.name, f"{url}/{path.name}"))
        rows = asyncio.run(bench(targets, max(1, args.runs)))
    for server in servers:
        server.shutdown()
    print_table(rows, token_counter()[1])


if __name__ == "__main__":
    main()
