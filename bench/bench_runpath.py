"""The run path's own cost, measured through the real app (`python app.py`, screenshots on, the run log
written): what a step costs beyond the model, the fixed cost of a run, memory per concurrent run and
throughput.

    python bench/bench_runpath.py [--quick]

1. Step time with a model that answers in 1 s (target: median <= 1.1 s).
2. Fixed cost of a run (no start page, one step): accepted -> first model request, and last reply ->
   response stored, as the client sees them (target: each < 300 ms at the median).
3. Memory (PSS of the app and its Chromium) at 1, 4 and 8 concurrent runs, per additional run
   (target: < 250 MB).
4. Throughput with a zero-latency model at concurrency 1, 4 and 8 (runs per minute), with the CPU
   the app and its Chromium used (cores busy): where the machine's 2 cores are the limit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx  # noqa: E402

from agent.testing.fakellm import FakeLLM, call, last_user_text, reply  # noqa: E402
from agent.testing.process import WorkbenchProcess, _children  # noqa: E402

STEPS = 6  # model steps per run in sections 1 and 3


class Model:
    """The fake model: scrolls STEPS-1 times then finishes; `latency` s per answer; every call timed."""

    def __init__(self) -> None:
        self.latency = 0.0
        self.steps = STEPS
        self.calls: list[tuple[float, float, str]] = []  # (received, answered, task) in time.time()
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Any:
        received = time.time()
        text = last_user_text(body)
        step = int(text.split("Step ")[-1].split(" of")[0])
        task = text.split("<task>\n")[1].split("\n</task>")[0]
        if self.latency:
            time.sleep(self.latency)
        answer = (reply("Scroll on.", call("scroll", down=True)) if step < self.steps and "[fixed" not in task
                  else reply("Done.", call("done", text="seen", success=True)))
        with self.lock:
            self.calls.append((received, time.time(), task))
        return answer


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its descendants so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in _children(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def post_runs(app: WorkbenchProcess, n: int, concurrency: int, tag: str, *, start_page: bool = True
              ) -> list[dict[str, Any]]:
    """`n` runs posted by `concurrency` clients, each waiting for its run's end: each run's prompt, the
    time it was sent, the time its final response came back, and the response."""
    def one(i: int) -> dict[str, Any]:
        prompt = f"Look down the page [{tag} {i}]"
        body: dict[str, Any] = {"prompt": prompt, "model": "bench-model", "max_steps": STEPS + 2}
        if start_page:
            body["start_url"] = f"{app.base}/demo/"
        with httpx.Client(base_url=app.base, timeout=300) as http:
            sent = time.time()
            response = http.post("/api/runs", json=body).json()
            return {"prompt": prompt, "sent": sent, "received": time.time(), "response": response}

    with ThreadPoolExecutor(concurrency) as pool:
        runs = list(pool.map(one, range(n)))
    assert all(r["response"]["status"] == "success" for r in runs), [r["response"].get("error") for r in runs]
    return runs


def step_times(runs: list[dict[str, Any]]) -> list[float]:
    """Duration of every model-driven step (the start page's step left out), in seconds."""
    return [item["duration_ms"] / 1000 for r in runs for item in r["response"]["history"][1:]]


def wall_steps(model: Model, runs: list[dict[str, Any]]) -> list[float]:
    """Per run, the time from one model request to the next: a whole step as the run goes (the model's
    answer, the action, the next observation and every write in between), in seconds."""
    out = []
    for r in runs:
        received = sorted(c[0] for c in model.calls if c[2] == r["prompt"])
        out += [b - a for a, b in zip(received, received[1:])]
    return out


def fixed_costs(model: Model, runs: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Per run, as its client saw it: sent -> first model request, and last reply -> final response back."""
    first, last = [], []
    for r in runs:
        calls = sorted(c for c in model.calls if c[2] == r["prompt"])
        first.append(calls[0][0] - r["sent"])
        last.append(r["received"] - calls[-1][1])
    return first, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test of the benchmark)")
    args = parser.parse_args()
    model = Model()
    fake = FakeLLM(model)
    with tempfile.TemporaryDirectory() as tmp:
        app = WorkbenchProcess(Path(tmp) / "data", {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-bench",
                                                    "MAX_CONCURRENT_RUNS": "8", "MAX_QUEUED_RUNS": "100"}).start()
        try:
            post_runs(app, 2, 2, "warm-up")  # the browser, the model library and caches are warm
            print("\n1-2. One run at a time, the model answering in 1 s, screenshots on\n")
            model.latency, model.calls[:] = 1.0, []
            runs = post_runs(app, 3 if args.quick else 10, 1, "step")
            steps, walls = step_times(runs), wall_steps(model, runs)
            # The fixed cost on its own: no start page, the model answers `done` at once.
            first, last = fixed_costs(model, post_runs(app, 3 if args.quick else 10, 1, "fixed", start_page=False))
            print(f"{'':34} {'median':>8} {'p90':>8} {'max':>8}")
            for label, values in (("step (model 1 s), s", steps), ("model request -> next request, s", walls),
                                  ("accepted -> first model request, s", first),
                                  ("last reply -> response stored, s", last)):
                ordered = sorted(values)
                print(f"{label:34} {statistics.median(ordered):>8.3f} {ordered[int(0.9 * (len(ordered) - 1))]:>8.3f} "
                      f"{ordered[-1]:>8.3f}")
            print("\n3. Memory: PSS of the app and its Chromium while N runs go on together (model 1 s)\n")
            idle = app.pss_mb()
            print(f"{'concurrent runs':>16} {'PSS MB':>8} {'per extra run MB':>17}")
            print(f"{0:>16} {idle:>8.0f} {'':>17}")
            base = None
            for n in (1, 4, 8):
                peak = [0.0]
                done = threading.Event()

                def sample(peak: list[float] = peak, done: threading.Event = done) -> None:
                    while not done.wait(0.25):
                        peak[0] = max(peak[0], app.pss_mb())

                sampler = threading.Thread(target=sample)
                sampler.start()
                post_runs(app, n, n, f"mem{n}")
                done.set()
                sampler.join()
                base = base or peak[0]
                extra = "" if n == 1 else f"{(peak[0] - base) / (n - 1):>17.0f}"
                print(f"{n:>16} {peak[0]:>8.0f} {extra}")
            print("\n4. Throughput: zero-latency model, runs of the demo shop, POST /api/runs\n")
            model.latency = 0.0
            print(f"{'concurrency':>12} {'runs':>6} {'wall s':>8} {'runs/min':>9} {'cores busy':>11}")
            for c in (1, 4, 8):
                n = (4 if args.quick else 16) if c == 1 else (8 if args.quick else 32)
                cpu0, t0 = cpu_seconds(app.proc.pid) if app.proc else 0.0, time.perf_counter()
                post_runs(app, n, c, f"tp{c}")
                wall = time.perf_counter() - t0
                busy = ((cpu_seconds(app.proc.pid) if app.proc else 0.0) - cpu0) / wall
                print(f"{c:>12} {n:>6} {wall:>8.1f} {n / wall * 60:>9.1f} {busy:>11.2f}")
            print(f"\n(the machine has {os.cpu_count()} cores; 'cores busy' counts the app and its Chromium only)")
        finally:
            app.stop()
            fake.close()


if __name__ == "__main__":
    main()
