"""The experiment runner's own cost: N cells through an experiment against the same N runs through
plain `POST /api/runs`, at the same concurrency, with a zero-latency fake model; the same experiment on
a local Ray (`backend: ray`, workers with their own Chromium, events streamed back to the app); and
memory per concurrent run (PSS of the app, its Chromium and, with Ray, Ray's processes and workers).

    python bench/bench_experiments.py [--cells 100] [--concurrency 4] [--no-ray]

Each run opens the demo shop (served by the app) and reports its title: a real browser context, a
page load and two model calls, so the runner's overhead is measured against real work.
"""

from __future__ import annotations

import argparse
import json
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
from agent.testing.process import WorkbenchProcess, _children, own_pss_mb  # noqa: E402

PROMPT = "Open the demo shop and report its title [bench]"


def model(body: dict[str, Any]) -> Any:
    """Zero latency: step 1 (after the start page) reports the page title."""
    title = last_user_text(body).split('title="', 1)[1].split('"', 1)[0]
    return reply("Report.", call("done", text=title, success=True))


def ray_pids() -> set[int]:
    """Ray's own processes (gcs_server, raylet, workers, whatever started them) and their descendants."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::") or "/ray/core/src/ray/" in cmd or "ray/_private/" in cmd:
            found.update(_children(int(entry.name)))
    return found


def total_pss_mb(app: WorkbenchProcess) -> float:
    """PSS of the app and its Chromium, plus Ray's processes and their Chromium where they are not the app's."""
    mine = set(_children(app.proc.pid)) if app.proc is not None else set()
    return app.pss_mb() + sum(own_pss_mb(p) for p in ray_pids() - mine)


class Sampler:
    """Samples the PSS of the app (and of Ray's processes, when any) every 0.2 s while a phase runs."""

    def __init__(self, app: WorkbenchProcess) -> None:
        self.app, self.values = app, [total_pss_mb(app)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self.values.append(total_pss_mb(self.app))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def via_runs(app: WorkbenchProcess, cells: int, concurrency: int) -> float:
    """Wall time of `cells` runs posted by `concurrency` clients (each waits for its run's end)."""
    body = {"prompt": PROMPT, "model": "bench-model", "start_url": f"{app.base}/demo/", "max_steps": 3}

    def one(_: int) -> str:
        with httpx.Client(base_url=app.base, timeout=120) as http:
            return str(http.post("/api/runs", json=body).json()["status"])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(one, range(cells)))
    assert statuses.count("success") == cells, statuses
    return time.perf_counter() - t0


def via_experiment(app: WorkbenchProcess, cells: int, concurrency: int, backend: str = "local") -> float:
    """Wall time of one experiment of `cells` cells (one task, `cells` repeats) at `concurrency`."""
    task = {"id": "title", "prompt": PROMPT, "start_url": "{BASE_URL}/demo/", "max_steps": 3,
            "check": {"contains": ["Demo Shop"]}}
    # one task; as many variants (all the same model) as it takes for `cells` runs of at most 20 repeats
    variants = max(1, -(-cells // 20))
    if cells % variants:
        raise SystemExit(f"--cells {cells}: give a multiple of {variants} (at most 20 repeats per variant)")
    spec = {"tasks": [task], "repeats": cells // variants, "concurrency": concurrency, "backend": backend,
            "variants": [{"name": f"v{i}", "model": "bench-model"} for i in range(variants)]}
    with httpx.Client(base_url=app.base, timeout=60) as http:
        t0 = time.perf_counter()
        exp_id = http.post("/api/experiments", json=spec).json()["experiment_id"]
        # The light list (not the full report) every 0.25 s: the bench must not load the app it measures.
        while next(e for e in http.get("/api/experiments", params={"limit": 5}).json()["experiments"]
                   if e["experiment_id"] == exp_id)["status"] == "running":
            time.sleep(0.25)
        wall = time.perf_counter() - t0
        report = http.get(f"/api/experiments/{exp_id}").json()
    assert report["status"] == "done" and report["progress"]["done"] == cells, report["progress"]
    passes = sum(v["passes"] for v in report["variants"])
    assert passes == cells, f"{passes} of {cells} passed"
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray phase")
    args = parser.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        args.no_ray = True
    fake = FakeLLM(model)
    with tempfile.TemporaryDirectory() as tmp:
        app = WorkbenchProcess(Path(tmp) / "data", {
            "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-bench",
            # one slot more than the experiment's concurrency: the runner always leaves one to the form
            "MAX_CONCURRENT_RUNS": str(args.concurrency + 1), "MAX_QUEUED_RUNS": "1000"}).start()
        try:
            via_runs(app, 2 * args.concurrency, args.concurrency)  # warm up: browser, model library, caches
            idle = app.pss_mb()
            rows = []
            phases: list[tuple[str, Any]] = [("POST /api/runs", via_runs), ("experiment runner", via_experiment),
                                             ("POST /api/runs (again)", via_runs)]
            if not args.no_ray:
                t0 = time.perf_counter()  # Ray starts (and its workers start their Chromium) on first use
                via_experiment(app, 2 * args.concurrency, args.concurrency, "ray")
                ray_start = time.perf_counter() - t0
                phases.append(("experiment on Ray", lambda a, n, c: via_experiment(a, n, c, "ray")))
            for label, phase in phases:
                with Sampler(app) as sampler:
                    wall = phase(app, args.cells, args.concurrency)
                rows.append((label, wall, args.cells / wall * 60, statistics.median(sampler.values),
                             max(sampler.values)))
        finally:
            app.stop()
            fake.close()
    plain = statistics.mean([rows[0][1], rows[2][1]])
    print(f"\n{args.cells} runs at concurrency {args.concurrency}, zero-latency model "
          f"(one model call and one page load each); app + Chromium PSS idle {idle:.0f} MB\n")
    print(f"{'path':<24} {'wall s':>8} {'runs/min':>9} {'PSS p50 MB':>11} {'PSS max MB':>11}")
    for label, wall, per_min, p50, peak in rows:
        print(f"{label:<24} {wall:>8.1f} {per_min:>9.1f} {p50:>11.0f} {peak:>11.0f}")
    print(f"\nrunner overhead against plain runs: {100 * (rows[1][1] - plain) / plain:+.1f}% "
          f"(mean of the two plain phases: {plain:.1f} s)")
    print(f"memory per concurrent run: {(max(r[4] for r in rows[:3]) - idle) / args.concurrency:.0f} MB "
          f"(local: peak minus idle, over {args.concurrency} runs)")
    if not args.no_ray:
        print(f"Ray: started with its workers in {ray_start:.1f} s (first experiment of {2 * args.concurrency} "
              f"cells, not timed above); {rows[3][2]:.1f} runs/min, "
              f"{(rows[3][2] - rows[1][2]) / rows[1][2] * 100:+.1f}% against the local runner; peak PSS with "
              f"Ray {rows[3][4]:.0f} MB")
    print(json.dumps({"cells": args.cells, "concurrency": args.concurrency, "rows": rows, "idle_mb": idle}))


if __name__ == "__main__":
    main()
