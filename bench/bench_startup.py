"""Start-up benchmark: how long the first run after `python app.py` waits before its first model call.

Starts the app (a fresh data folder each time) with the fake OpenAI-compatible model, waits until
/api/health answers, then at once (or after `--delay` seconds, like a user who first reads the
page) posts a run and measures the time from the POST to the model's first request, and to the
run's end. Prints one row per start and the medians.

Usage: .venv/bin/python bench/bench_startup.py [--starts 3] [--delay 0]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.testing.fakellm import FakeLLM, call, reply  # noqa: E402


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_start(delay: float) -> tuple[float, float, float]:
    """(seconds to /api/health, POST to first model call, POST to the run's end) for one fresh app."""
    first_call = threading.Event()
    seen: dict[str, float] = {}

    def model(body: dict[str, Any]) -> Any:
        if not first_call.is_set():
            seen["first"] = time.monotonic()
            first_call.set()
        return reply("Answer at once.", call("done", text="ready", success=True))

    fake = FakeLLM(model)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-bench-not-a-real-key",
               "PYTHONUNBUFFERED": "1"}
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--data-dir", f"{tmp}/data"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                try:
                    if httpx.get(base + "/api/health", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            else:
                raise TimeoutError("the app did not answer /api/health within 180 s")
            ready = time.monotonic() - t0
            time.sleep(delay)
            posted = time.monotonic()
            answer = httpx.post(base + "/api/runs", json={"prompt": "Say you are ready", "model": "gpt-4o-mini"},
                                timeout=180)
            ended = time.monotonic()
            assert answer.status_code == 200 and answer.json()["status"] == "success", answer.text
            return ready, seen["first"] - posted, ended - posted
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            fake.close()


def main(starts: int, delay: float) -> None:
    """Print one row per fresh start, then the medians."""
    print(f"First run after the app starts (POST right after /api/health answers, plus {delay:g} s)\n")
    header = f"{'start':<6} {'health s':>9} {'POST to 1st model call s':>25} {'run s':>7}"
    print(header + f" {'process start to 1st call s':>28}")
    rows = []
    for n in range(1, starts + 1):
        ready, first, total = one_start(delay)
        rows.append((ready, first, total, ready + delay + first))
        print(f"{n:<6} {ready:>9.2f} {first:>25.2f} {total:>7.2f} {rows[-1][3]:>28.2f}")
    med = [statistics.median(col) for col in zip(*rows)]
    print(f"{'median':<6} {med[0]:>9.2f} {med[1]:>25.2f} {med[2]:>7.2f} {med[3]:>28.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=3, help="fresh app starts (default 3)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between /api/health and the POST")
    args = parser.parse_args()
    main(max(1, args.starts), max(0.0, args.delay))
