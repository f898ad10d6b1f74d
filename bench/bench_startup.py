"""Start-up benchmark: process start -> /api/health answers -> / answers -> first model call.

Starts the app (a fresh data folder each time) with the fake OpenAI-compatible model and measures,
from the process start: when /api/health first answers, when / answers (while the UI is built, a
page that reloads itself stands in for it), when / is the UI itself, and when health says "ok"
(everything warmed up). As soon as /api/health answers (or
`--delay` seconds later, like a user who first reads the page) it posts a run and measures the time
from the POST to the model's first request, and to the run's end. One row per start, then medians.

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


def wait_answers(base: str, t0: float) -> dict[str, float]:
    """Seconds from `t0` (process start) until /api/health answers, until / answers (with anything), until / is
    the UI itself (not the page that stands in for it while it is built) and until health says "ok" (the
    warm-up over; an app without a warm-up status says "ok" from its first answer)."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 180
    with httpx.Client(base_url=base, timeout=5) as http:
        while len(seen) < 4:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not answer within 180 s (answered: {sorted(seen)})")
            for key, path in (("health", "/api/health"), ("page", "/")):
                if key in seen:
                    continue
                try:
                    answer = http.get(path)
                except httpx.HTTPError:
                    continue
                if answer.status_code == 200:
                    seen[key] = time.monotonic() - t0
                    if key == "health" and answer.json().get("status") == "ok":
                        seen["ok"] = seen[key]
            if "page" in seen and "ui" not in seen:
                try:
                    page = http.get("/")
                    if page.status_code == 200 and 'http-equiv="refresh"' not in page.text:
                        seen["ui"] = time.monotonic() - t0
                except httpx.HTTPError:
                    pass
            if "health" in seen and "ok" not in seen:
                try:
                    if http.get("/api/health").json().get("status") == "ok":
                        seen["ok"] = time.monotonic() - t0
                except httpx.HTTPError:
                    pass
            if len(seen) < 4:
                time.sleep(0.05)
    return seen


def one_start(delay: float) -> dict[str, float]:
    """Seconds from process start to /api/health, / and warm ("ok"), then POST to the first model call and
    to the run's end, for one fresh app; the run is posted as soon as /api/health answers (plus `delay`)."""
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
                time.sleep(0.05)
            else:
                raise TimeoutError("the app did not answer /api/health within 180 s")
            health = time.monotonic() - t0
            # The run goes in a thread while this one watches / and the warm-up end.
            answer: dict[str, Any] = {}

            def post() -> None:
                time.sleep(delay)
                answer["posted"] = time.monotonic()
                answer["response"] = httpx.post(base + "/api/runs", timeout=180,
                                                json={"prompt": "Say you are ready", "model": "gpt-4o-mini"})
                answer["ended"] = time.monotonic()

            poster = threading.Thread(target=post)
            poster.start()
            times = wait_answers(base, t0)
            poster.join(200)
            response = answer["response"]
            assert response.status_code == 200 and response.json()["status"] == "success", response.text
            return {"health": health, "page": times["page"], "ui": times["ui"], "ok": times["ok"],
                    "first": seen["first"] - answer["posted"], "run": answer["ended"] - answer["posted"],
                    "start_first": seen["first"] - t0}
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            fake.close()


COLUMNS = [("health", "/api/health s"), ("page", "/ answers s"), ("ui", "/ is the UI s"), ("ok", "warm (ok) s"),
           ("first", "POST->1st call s"), ("run", "run s"), ("start_first", "start->1st call s")]


def main(starts: int, delay: float) -> None:
    """Print one row per fresh start, then the medians."""
    print(f"From process start (s); a run posted as soon as /api/health answers, plus {delay:g} s\n")
    print(f"{'start':<7}" + "".join(f"{title:>18}" for _, title in COLUMNS))
    rows = []
    for n in range(1, starts + 1):
        rows.append(one_start(delay))
        print(f"{n:<7}" + "".join(f"{rows[-1][key]:>18.2f}" for key, _ in COLUMNS))
    print(f"{'median':<7}" + "".join(f"{statistics.median(r[key] for r in rows):>18.2f}" for key, _ in COLUMNS))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=3, help="fresh app starts (default 3)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between /api/health and the POST")
    args = parser.parse_args()
    main(max(1, args.starts), max(0.0, args.delay))
