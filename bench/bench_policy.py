"""How long the URL policy takes per call (it runs on every navigation and every page request).

Run: .venv/bin/python bench/bench_policy.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.rules.policy import check_navigation, request_blocked

CASES = {
    "check_navigation plain": lambda: check_navigation("https://shop.example.com/cart?id=42", allowed_domains=[]),
    "check_navigation + lists": lambda: check_navigation(
        "https://shop.example.com/cart?id=42",
        allowed_domains=["example.com", "*.example.org", "docs.python.org"],
        blocked_domains=["ads.example.com"],
    ),
    "check_navigation refused (hex IP)": lambda: _refused("http://0xA9FEA9FE/latest"),
    "check_navigation IDN host": lambda: check_navigation("https://bücher.de/x", allowed_domains=[]),
    "request_blocked https": lambda: request_blocked("https://cdn.example.com/app.js?v=3"),
    "request_blocked data:": lambda: request_blocked("data:image/png;base64,AAAA"),
    "request_blocked metadata": lambda: request_blocked("http://169.254.169.254/latest/meta-data/"),
}


def _refused(url: str) -> None:
    try:
        check_navigation(url, allowed_domains=[])
    except ValueError:
        return
    raise AssertionError(f"{url} was not refused")


def main() -> None:
    """Print microseconds per call for each case, and the module's cold import time."""
    rows = []
    for name, fn in CASES.items():
        fn()
        n = 20_000
        start = time.perf_counter()
        for _ in range(n):
            fn()
        rows.append((name, (time.perf_counter() - start) / n * 1e6))
    # -X importtime of the module alone (as a top-level module, so the agent packages' __init__ are not counted),
    # cumulative: the module plus the stdlib modules it pulls in.
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import sys; sys.path.insert(0, 'agent/rules'); import policy"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
    ).stderr
    import_us = next(
        (int(line.split("|")[1]) for line in trace.splitlines() if line.rstrip().endswith("| policy")), -1
    )
    print(f"{'case':40} {'us/call':>10}")
    print("-" * 51)
    for name, us in rows:
        print(f"{name:40} {us:10.1f}")
    print("-" * 51)
    print(f"{'import policy.py + stdlib deps (ms)':40} {import_us / 1000:10.1f}")


if __name__ == "__main__":
    main()
