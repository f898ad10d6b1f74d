"""Benchmark of the run history with experiments: what joining each run to the experiment cell it played costs.

    .venv/bin/python bench/bench_history.py                      # 100,000 runs, 80% of them experiment cells
    .venv/bin/python bench/bench_history.py --runs 400000 --experiment-share 0.9

The history lists runs joined with `v_run_experiments` (which experiment, variant and cell each played),
leaves experiments' runs out by default and filters on them. A synthetic log is written with SQL into a
file made by the Store's own migrations: `--runs` runs, the given share of them cells of experiments of
2,000 cells each. Then, through the Store, each everyday read of the history (a page of 50 and the totals,
as the page and `GET /api/runs` make them) is timed, beside the same reads without the join (the history
before it had experiment columns) for scale. Prints the median and p95 of `--repeats` tries, in ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # the bench fills a file directly; the app never does

from agent.filters import RunFilter
from agent.log import rows
from agent.log.store import Store

CELLS_PER_EXPERIMENT = 2000


def generate(data_dir: Path, n_runs: int, share: float) -> int:
    """Runs, and experiments whose cells played the first `share` of them; the last experiment's id."""
    Store(data_dir, snapshot_interval_s=None).close()  # the schema comes from the Store's own migrations
    con = duckdb.connect(str(data_dir / "runs.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    t0 = "TIMESTAMPTZ '2026-09-01 00:00:00+00'"
    con.execute(f"""INSERT INTO tasks (id, prompt, request_json, created_at)
                    SELECT i, 'task ' || i, '{{}}', {t0} FROM range(1, {n_runs} + 1) t(i)""")
    con.execute(f"""
        INSERT INTO runs (id, task_id, status, mode, provider, model, litellm_model, prompt, created_at, started_at,
                          finished_at, duration_ms, steps, actions, llm_calls, input_tokens, output_tokens, cost_usd,
                          is_done, is_successful, request_json, stop_reason)
        SELECT i, i, CASE WHEN i % 3 = 0 THEN 'failure' ELSE 'success' END, 'agent', 'openai', 'gpt-4.1-mini',
               'openai/gpt-4.1-mini', 'task ' || i, {t0} + to_seconds(i), {t0} + to_seconds(i),
               {t0} + to_seconds(i + 20), 20000, 5, 8, 5, 20000, 500, 0.004, true, i % 3 <> 0, '{{}}',
               CASE WHEN i % 3 = 0 THEN 'max_steps' ELSE 'done' END
        FROM range(1, {n_runs} + 1) t(i)""")
    played = int(n_runs * share)
    experiments = max(1, -(-played // CELLS_PER_EXPERIMENT))
    con.execute(f"""INSERT INTO experiments (id, name, status, task_set, repeats, concurrency, backend, created_at,
                                             spec_json)
                    SELECT e, 'experiment ' || e, 'done', NULL, 1, 4, 'local', {t0}, '{{}}'
                    FROM range(1, {experiments} + 1) t(e)""")
    con.execute(f"""INSERT INTO experiment_tasks (experiment_id, task_key, position, prompt, task_json)
                    SELECT e, 't' || k, k, 'task', '{{}}' FROM range(1, {experiments} + 1) a(e), range(100) b(k)""")
    con.execute(f"""INSERT INTO experiment_variants (experiment_id, name, position, overrides_json)
                    SELECT e, v, p, '{{}}' FROM range(1, {experiments} + 1) a(e),
                    (VALUES ('A', 0), ('B', 1)) b(v, p)""")
    # Run i (i <= played) is cell (i - 1) % 2000 of experiment (i - 1) // 2000 + 1: 100 tasks x 2 variants x 10.
    con.execute(f"""
        INSERT INTO experiment_cells (experiment_id, task_key, variant, repeat, status, run_id, attempts, passed,
                                      attempt_run_ids)
        SELECT (i - 1) // {CELLS_PER_EXPERIMENT} + 1, 't' || ((i - 1) % 100), CASE WHEN (i - 1) % 200 < 100 THEN 'A'
               ELSE 'B' END, ((i - 1) % {CELLS_PER_EXPERIMENT}) // 200 + 1, 'done', i, 1, i % 3 <> 0, [i]
        FROM range(1, {played} + 1) t(i)""")
    for seq, table in (("tasks_id", "tasks"), ("runs_id", "runs"), ("experiments_id", "experiments")):
        con.execute(f"SELECT nextval('{seq}') FROM range((SELECT max(id) FROM {table}))")
    con.execute("CHECKPOINT")
    con.close()
    return experiments


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median and p95 of `fn`'s wall time, in ms (one warm-up call first)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def main(argv: list[str] | None = None) -> int:
    """Build the log, time the reads, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--experiment-share", type=float, default=0.8, help="share of runs that are cells")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        t = time.perf_counter()
        last = generate(data, args.runs, args.experiment_share)
        built = time.perf_counter() - t
        store = Store(data, snapshot_interval_s=None)
        try:
            con, lock = store._con, store._lock  # the old reads, for scale: the same connection, no join

            def old_page() -> None:
                with lock:
                    rows.scalar(con, "SELECT count(*) FROM runs")
                    con.execute(f"SELECT {', '.join(rows.RUN_LIST_COLS)} FROM runs ORDER BY id DESC LIMIT 50"
                                ).fetchall()

            def old_totals() -> None:
                with lock:
                    con.execute(rows.SUMMARY_SQL.replace(rows.RUNS_FROM, "runs").format(where="")).fetchall()

            cases: list[tuple[str, Callable[[], Any]]] = [
                ("a page, no join (the history before)", old_page),
                ("a page, experiments' runs left out (the default)", lambda: store.list_runs(RunFilter(), limit=50)),
                ("a page, every run (the switch on)",
                 lambda: store.list_runs(RunFilter(include_experiments=True), limit=50)),
                ("a page of one experiment's runs", lambda: store.list_runs(RunFilter(experiment_id=last), limit=50)),
                ("... and one variant", lambda: store.list_runs(RunFilter(experiment_id=last, variant="B"), limit=50)),
                ("totals, no join (the history before)", old_totals),
                ("totals, experiments' runs left out", lambda: store.runs_summary(RunFilter())),
                ("totals of one experiment", lambda: store.runs_summary(RunFilter(experiment_id=last))),
            ]
            results = [(name, *timed(fn, args.repeats)) for name, fn in cases]
        finally:
            store.close()
    cells = int(args.runs * args.experiment_share)
    print(f"\nThe history on {args.runs:,} runs, {cells:,} of them experiment cells ({last} experiments); "
          f"log built in {built:.1f} s; {args.repeats} tries each")
    width = max(len(r[0]) for r in results)
    print(f"  {'read':<{width}}  {'p50 ms':>8}  {'p95 ms':>8}")
    print(f"  {'-' * width}  {'-' * 8}  {'-' * 8}")
    for name, p50, p95 in results:
        print(f"  {name:<{width}}  {p50:>8.1f}  {p95:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
