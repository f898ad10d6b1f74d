"""The experiment runner's own cost: N cells through an experiment against the same N runs through
plain `POST /api/runs`, at the same concurrency, with a zero-latency fake model; the same experiment on
a local Ray (`backend: ray`, workers with their own Chromium, events streamed back to the app); and
memory per concurrent run (PSS of the app, its Chromium and, with Ray, Ray's processes and workers).

    python bench/bench_experiments.py [--cells 100] [--concurrency 4] [--no-ray]
    python bench/bench_experiments.py --report 2000     # only the report of a played 2,000-cell experiment

Each run opens the demo shop (served by the app) and reports its title: a real browser context, a
page load and two model calls, so the runner's overhead is measured against real work.

`--report N` writes a played experiment of N cells (100 tasks × 2 variants × N/200 repeats, every run
recorded with a step and a grade) into a fresh run log with the Store, starts the app on it, and times
`GET /api/experiments/{id}` (every cell, and the default page of 500), the light `/progress` form, the
report built in process (`summary`), and `/api/health`'s worst answer while four full reports are built.
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


def played_experiment(data_dir: Path, cells: int) -> int:
    """A finished experiment of `cells` cells written straight into a run log (every cell a recorded run)."""
    from agent.log.store import Store
    from agent.models import HistoryItem, LLMCall, RunFinished, RunRequest, Tally, utcnow

    tasks = [{"id": f"t{i:03d}", "prompt": f"Say the colour of the sky ({i})", "check": {"equals": "blue"}}
             for i in range(100)]
    repeats = max(1, cells // 200)
    store = Store(data_dir, snapshot_interval_s=None)
    try:
        exp_id = store.create_experiment(
            name="report bench", task_set=None, repeats=repeats, concurrency=4, backend="local",
            spec={"tasks": tasks, "repeats": repeats, "variants": [{"name": "A"}, {"name": "B"}]},
            tasks=[{"id": t["id"], "title": None, "prompt": t["prompt"], "check": {"kind": "equals"}, "task": t}
                   for t in tasks], variants=[{"name": v, "overrides": {"model": f"m-{v}"}} for v in ("A", "B")])
        for t in tasks:
            for variant in ("A", "B"):
                for repeat in range(1, repeats + 1):
                    request = RunRequest(prompt=t["prompt"], model=f"m-{variant}")
                    run_id = store.create_run(store.create_task(request), request)
                    tally = Tally(request)
                    tally.add_step(HistoryItem(description="answer", step=1, started_at=utcnow(), llm_calls=[
                        LLMCall(model=f"openai/m-{variant}", provider="openai", started_at=utcnow(), latency_ms=5,
                                input_tokens=900, output_tokens=30, cost_usd=0.001)]))
                    passed = variant == "B" or repeat % 2 == 0
                    store.record(run_id, RunFinished(response=tally.response(
                        result="blue" if passed else "red", done=True, success=True)))
                    store.start_cell(exp_id, t["id"], variant, repeat, run_id)
                    store.finish_cell(exp_id, t["id"], variant, repeat, status="done", passed=passed,
                                      score=float(passed), detail="equals 'blue'" if passed else "differs from 'blue'",
                                      graded_by="check")
        store.set_experiment_status(exp_id, "done")
        return exp_id
    finally:
        store.close()


def report_phase(cells: int, keep: Path | None = None) -> None:
    """Time the report of a played `cells`-cell experiment through the app, and the loop's health meanwhile
    (`keep`: the data folder to write it to, or to reuse when it holds one already)."""
    import asyncio

    with tempfile.TemporaryDirectory() as tmp:
        data = keep or Path(tmp) / "data"
        t0 = time.perf_counter()
        exp_id = 1 if keep is not None and (keep / "runs.duckdb").exists() else played_experiment(data, cells)
        written = time.perf_counter() - t0
        app = WorkbenchProcess(data, {"OPENAI_API_KEY": "sk-bench"}).start()
        try:
            rows = []
            with httpx.Client(base_url=app.base, timeout=120) as http:
                for label, path, params in (("full report (every cell)", f"/api/experiments/{exp_id}",
                                             {"cells_limit": cells}),
                                            ("default page (500 cells)", f"/api/experiments/{exp_id}", {}),
                                            ("progress (light form)", f"/api/experiments/{exp_id}/progress", {})):
                    times, size = [], 0
                    for _ in range(7):
                        t0 = time.perf_counter()
                        size = len(http.get(path, params=params).content)
                        times.append(1000 * (time.perf_counter() - t0))
                    rows.append((label, statistics.median(times), max(times), size))

            async def health_while_building() -> float:
                def full() -> None:
                    httpx.get(f"{app.base}/api/experiments/{exp_id}", params={"cells_limit": cells}, timeout=120)

                async with httpx.AsyncClient(base_url=app.base, timeout=30) as client:
                    building = asyncio.gather(*(asyncio.to_thread(full) for _ in range(4)))
                    worst = 0.0
                    while not building.done():
                        t0 = time.perf_counter()
                        await client.get("/api/health")
                        worst = max(worst, 1000 * (time.perf_counter() - t0))
                        await asyncio.sleep(0.02)
                    await building
                    return worst

            worst = asyncio.run(health_while_building())
        finally:
            app.stop()
        from agent.experiments.report import summary
        from agent.log.store import Store

        store = Store(data, snapshot_interval_s=None)
        try:
            found = store.get_experiment(exp_id)
            found["cells"] = store.experiment_cells(exp_id)
            found["variants"] = store.experiment_variants(exp_id)
            found["matrix"] = store.experiment_matrix(exp_id)
            t0 = time.perf_counter()
            summary(found)
            built = 1000 * (time.perf_counter() - t0)
        finally:
            store.close()
    print(f"\nreport of a played experiment of {cells} cells (written in {written:.0f} s)\n")
    print(f"{'request':<28} {'p50 ms':>8} {'max ms':>8} {'bytes':>9}")
    for label, p50, peak, size in rows:
        print(f"{label:<28} {p50:>8.0f} {peak:>8.0f} {size:>9,}")
    print(f"\nsummary() in process (statistics, comparisons, cells): {built:.0f} ms")
    print(f"/api/health worst answer while 4 full reports were built: {worst:.0f} ms")
    print(json.dumps({"cells": cells, "rows": rows, "summary_ms": built, "health_worst_ms": worst}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray phase")
    parser.add_argument("--report", type=int, default=None, metavar="CELLS",
                        help="only time the report of a played experiment of CELLS cells (e.g. 2000)")
    parser.add_argument("--report-data", type=Path, default=None, metavar="DIR",
                        help="with --report: write the experiment there, or reuse the one written there before")
    args = parser.parse_args()
    if args.report:
        report_phase(args.report, args.report_data)
        return
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
