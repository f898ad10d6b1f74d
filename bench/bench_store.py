"""Benchmark of the run log store: write cost per action, snapshot publish, everyday queries.

    .venv/bin/python bench/bench_store.py                 # 1,000,000 actions (about 1-2 min)
    .venv/bin/python bench/bench_store.py --actions 200000 --insert-steps 500

Three parts, each printed as a table:
1. the insertion path: `Store.record(StepFinished)` as the engine emits it (one step = one
   transaction with its actions and LLM calls), for steps of 1, 4 and 10 actions;
2. a run log of N synthetic actions generated with SQL straight into a file created by the Store's
   own migrations (the insertion path is far too slow to be the generator), then: opening the
   Store on it, publishing a snapshot, and how long a write waits while a publish runs;
3. everyday analytic queries on the snapshot, as a notebook runs them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb  # the bench fills a file directly; the app never does

from agent.filters import RunFilter
from agent.log.snapshots import open_snapshot
from agent.log.store import Store
from agent.models import (
    ActionResult,
    HistoryItem,
    LLMCall,
    RunFinished,
    RunRequest,
    RunResponse,
    RunStarted,
    StepFinished,
    utcnow,
)


def typical_step(step: int, n_actions: int) -> HistoryItem:
    """A step of realistic size: params, locators, extracted text, one LLM call."""
    now = utcnow()
    kinds = [
        ("navigate", {"url": "https://shop.example.com/search?q=usb-c+cable", "new_tab": False}, None),
        ("click", {"index": 42}, {"xpath": "/html/body/div[3]/main/ul/li[2]/a",
                                   "css": "ul.results > li:nth-child(2) > a", "role": "link",
                                   "name": "Anker USB-C cable 2 m", "text": "Anker USB-C cable 2 m",
                                   "attributes": {"href": "/p/anker-usbc-2m", "class": "result-link"}}),
        ("input", {"index": 7, "text": "usb-c cable", "clear": True}, {"css": "input[name=q]", "role": "searchbox",
                                                                     "name": "Search", "attributes": {"name": "q"}}),
        ("scroll", {"down": True, "pages": 1.0}, None),
    ]
    actions = []
    for i in range(n_actions):
        name, params, locators = kinds[i % len(kinds)]
        actions.append(ActionResult(
            name=name, params=params, success=True, include_in_memory=True, locators=locators,
            extracted_content=f"{name} done: the page now shows 24 results for 'usb-c cable' sorted by relevance",
            duration_ms=35.5 + i,
        ))
    call = LLMCall(model="o3", provider="openai", started_at=now, latency_ms=1830.0, input_tokens=4200,
                   output_tokens=96, cost_usd=0.0123, finish_reason="tool_calls")
    return HistoryItem(description="Search the shop for usb-c cables and open the cheapest", actions=actions,
                       step=step, url="https://shop.example.com/search?q=usb-c+cable", title="Search results",
                       screenshot=f"screenshots/1/{step}.png", started_at=now, duration_ms=2310.0, llm_ms=1830.0,
                       browser_ms=410.0, llm_calls=[call])


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """A plain aligned table."""
    cells = [header] + [[f"{c:,.1f}" if isinstance(c, float) else f"{c:,}" if isinstance(c, int) else str(c)
                         for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


# ---------------------------------------------------------------- 1. insertion path
def bench_insert(root: Path, total_steps: int) -> None:
    """Part 1: time `record(StepFinished)` for steps of 1, 4 and 10 actions."""
    sizes = (1, 4, 10)
    steps_per_run = 10
    req = RunRequest(prompt="find the cheapest usb-c cable and return its name and price")
    stores = {n: Store(root / f"insert-{n}", snapshot_interval_s=None) for n in sizes}
    items = {n: [typical_step(s + 1, n) for s in range(steps_per_run)] for n in sizes}
    times: dict[int, list[float]] = {n: [] for n in sizes}
    finish: dict[int, list[float]] = {n: [] for n in sizes}
    # Round-robin over the step sizes, so that a busy machine slows them all alike.
    for _ in range(max(1, total_steps // steps_per_run)):
        for n in sizes:
            store = stores[n]
            run = store.create_run(store.create_task(req), req)
            store.record(run, RunStarted(request=req, model="openai/o3"))
            for item in items[n]:
                t = time.perf_counter()
                store.record(run, StepFinished(item=item))
                times[n].append((time.perf_counter() - t) * 1e6)
            t = time.perf_counter()
            store.record(run, RunFinished(response=RunResponse(history=items[n], status="success", is_done=True,
                                                               is_successful=True, result="ok")))
            finish[n].append((time.perf_counter() - t) * 1e6)
    for store in stores.values():
        store.close()
    rows = [[n, len(times[n]), min(times[n]), statistics.median(times[n]), pct(times[n], 0.95),
             statistics.median(times[n]) / n, statistics.median(finish[n])] for n in sizes]
    print_table("1. Recording StepFinished (one transaction: step + actions + llm calls + run totals)",
                ["actions/step", "steps", "µs/step min", "µs/step p50", "µs/step p95", "µs/action (p50)",
                 "RunFinished µs p50"], rows)


# ---------------------------------------------------------------- 2. a big synthetic log
MODELS = """(VALUES (0, 'openai', 'o3', 0.82, 0.0121), (1, 'openai', 'gpt-4.1-mini', 0.61, 0.0009),
                  (2, 'anthropic', 'claude-sonnet-4-5', 0.86, 0.0094), (3, 'google', 'gemini-2.5-flash', 0.70, 0.0006),
                  (4, 'deepseek', 'deepseek-chat', 0.55, 0.0004)) AS m(m, provider, model, rate, call_cost)"""


def generate(data_dir: Path, n_actions: int) -> dict[str, int]:
    """Fill a Store-migrated file with `n_actions` actions (10 steps x 4 actions per run) using SQL."""
    Store(data_dir, snapshot_interval_s=None).close()  # the schema comes from the Store's own migrations
    n_runs = max(1, n_actions // 40)
    con = duckdb.connect(str(data_dir / "runs.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SELECT setseed(0.42)")
    t0 = "TIMESTAMPTZ '2026-09-01 00:00:00+00'"
    spread = max(1, int(90 * 86400 / n_runs))  # runs spread over 90 days
    con.execute(f"""
        INSERT INTO tasks (id, prompt, request_json, created_at)
        SELECT i, 'synthetic task ' || i, json_object('prompt', 'synthetic task ' || i),
               {t0} + to_seconds(i * {spread})
        FROM range(1, {n_runs} + 1) t(i)
    """)
    con.execute(f"""
        INSERT INTO runs (id, task_id, status, error, mode, provider, model, litellm_model, prompt, created_at,
                          started_at, finished_at, duration_ms, steps, actions, llm_calls, is_done, is_successful,
                          result_json, request_json)
        SELECT i, i, CASE WHEN ok THEN 'success' ELSE 'failure' END,
               CASE WHEN ok THEN NULL ELSE 'max steps reached' END,
               'agent', provider, model, provider || '/' || model, 'synthetic task ' || i,
               t, t, t + to_milliseconds(dur::BIGINT), dur, 10, 40, 10, ok, ok,
               CASE WHEN ok THEN '{{"price": 9.99}}' END, json_object('prompt', 'synthetic task ' || i)
        FROM (SELECT i, provider, model, random() < rate AS ok, {t0} + to_seconds(i * {spread}) AS t,
                     20000 + random() * 40000 AS dur
              FROM range(1, {n_runs} + 1) t(i) JOIN {MODELS} ON m.m = i % 5)
    """)
    con.execute("""
        INSERT INTO steps (run_id, seq, step, description, url, title, screenshot_path, started_at, finished_at,
                           duration_ms, llm_ms, browser_ms, executed_by, actions, llm_calls)
        SELECT id, s, s + 1, 'synthetic step ' || (s + 1), 'https://shop.example.com/p/' || s, 'Page ' || s,
               'screenshots/' || id || '/' || (s + 1) || '.png',
               started_at + to_milliseconds(s * 3000), started_at + to_milliseconds(s * 3000 + d::BIGINT),
               d, d * 0.7, d * 0.25, 'agent', 4, 1
        FROM (SELECT r.id, r.started_at, s, 800 + random() * 4000 AS d FROM runs r, range(10) t(s))
    """)
    con.execute("""
        INSERT INTO actions (run_id, seq, step, idx, name, params_json, success, is_done, error, extracted_content,
                             include_in_memory, locators_json, data_json, executed_by, duration_ms, created_at)
        SELECT run_id, seq, step, a, name,
               CASE name WHEN 'click' THEN '{"index": 42}' WHEN 'input' THEN '{"index": 7, "text": "usb-c cable"}'
                         ELSE '{"url": "https://shop.example.com/"}' END,
               NOT failed, seq = 9 AND a = 3,
               CASE WHEN failed THEN ['element not found', 'element is not visible; scroll first',
                                      'timeout after 10 s', 'navigation refused by policy'][1 + (run_id + a) % 4] END,
               name || ' done: the page shows 24 results', true,
               CASE WHEN name IN ('click', 'input') THEN '{"css": "#buy", "role": "button", "name": "Buy"}' END,
               NULL, 'agent', 20 + random() * 300, finished_at
        FROM (SELECT s.*, a, ['navigate', 'click', 'input', 'scroll'][a + 1] AS name, random() < 0.06 AS failed
              FROM steps s, range(4) t(a))
    """)
    con.execute(f"""
        INSERT INTO llm_calls (run_id, seq, step, idx, model, provider, purpose, started_at, latency_ms,
                               input_tokens, output_tokens, cost_usd, finish_reason, error)
        SELECT s.run_id, s.seq, s.step, 0, r.model, r.provider, 'step', s.started_at, s.llm_ms,
               (3000 + random() * 3000)::BIGINT, (50 + random() * 150)::BIGINT, m.call_cost, 'tool_calls', NULL
        FROM steps s JOIN runs r ON r.id = s.run_id JOIN {MODELS} ON m.provider = r.provider AND m.model = r.model
    """)
    con.execute("""
        UPDATE runs SET input_tokens = c.tin, output_tokens = c.tout, cost_usd = c.cost
        FROM (SELECT run_id, sum(input_tokens) AS tin, sum(output_tokens) AS tout, sum(cost_usd) AS cost
              FROM llm_calls GROUP BY run_id) c
        WHERE runs.id = c.run_id
    """)
    # Gradings: a judge graded every 4th run, a person reviewed every 10th (one in two of those against the
    # agent's claim): what the graded views (v_run_grades, v_success_by_model, the review queue) join.
    con.execute("""
        INSERT INTO gradings (run_id, kind, grader, rubric_hash, passed, score, comment, created_at, grading_json)
        SELECT id, 'judge', 'openai/gpt-4.1', 'a1b2c3d4e5f60718', is_successful = (random() < 0.85), NULL,
               'judge: read it', finished_at, '{"rubric": "The answer names the price."}'
        FROM runs WHERE id % 4 = 0
        UNION ALL
        SELECT id, 'person', ['ana', 'ben'][1 + id % 2], NULL, random() < 0.5, NULL, 'looked at it',
               finished_at + INTERVAL 1 HOUR, '{"source": "api_key"}'
        FROM runs WHERE id % 10 = 0
    """)
    # Keep the sequences ahead of the generated ids, as the Store's own inserts would have.
    for seq, table in (("tasks_id", "tasks"), ("runs_id", "runs")):
        con.execute(f"SELECT nextval('{seq}') FROM range((SELECT max(id) FROM {table}))")
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("runs", "steps", "actions", "llm_calls", "gradings")}
    con.execute("CHECKPOINT")
    con.close()
    return counts


def bench_big(root: Path, n_actions: int) -> None:
    """Part 2: a synthetic log of `n_actions`; open, publish (both methods), reads, export."""
    data = root / "big"
    t = time.perf_counter()
    counts = generate(data, n_actions)
    gen_s = time.perf_counter() - t
    size_mb = (data / "runs.duckdb").stat().st_size / 1e6

    t = time.perf_counter()
    store = Store(data, snapshot_interval_s=None)  # no background publishes: we time our own
    open_ms = (time.perf_counter() - t) * 1000

    req = RunRequest(prompt="a run written while a snapshot is being published")
    item = typical_step(1, 4)
    run = store.create_run(store.create_task(req), req)
    idle = []
    for _ in range(30):
        t = time.perf_counter()
        store.record(run, StepFinished(item=item))
        idle.append((time.perf_counter() - t) * 1000)

    publish_rows = []
    for method in ("checkpoint", "copy"):
        totals, locks, busy = [], [], []
        for _ in range(3):
            for _ in range(20):  # some fresh writes in the WAL, as between two real publishes
                store.record(run, StepFinished(item=item))
            # Writes while a publish runs: how long does a step wait?
            publisher = threading.Thread(target=store.publish_snapshot, kwargs={"method": method})
            publisher.start()
            while publisher.is_alive():
                t = time.perf_counter()
                store.record(run, StepFinished(item=item))
                busy.append((time.perf_counter() - t) * 1000)
            publisher.join()
            totals.append(store.last_publish_ms)
            locks.append(store.last_publish_lock_ms)
        publish_rows.append([
            f"publish_snapshot(method={method!r}): total ms (min / max)",
            f"{min(totals):,.0f} / {max(totals):,.0f}"])
        publish_rows.append(["  write lock held (ms, max)", f"{max(locks):,.0f}"])
        publish_rows.append([
            f"  StepFinished during it (ms p50 / max, n={len(busy)})",
            f"{statistics.median(busy):.1f} / {max(busy):.1f}" if busy else "-"])
    snap_mb = (data / "snapshot" / "runs.duckdb").stat().st_size / 1e6

    t = time.perf_counter()
    got = store.get_run(counts["runs"] // 2)
    get_run_ms = (time.perf_counter() - t) * 1000
    assert got is not None and len(got.history) == 10
    t = time.perf_counter()
    store.list_runs(RunFilter(status="failure", provider="openai"), limit=50)
    list_ms = (time.perf_counter() - t) * 1000
    graded_rows = []  # the history's totals and the review tools, which join every run's grade
    for label, fn in (("runs_summary(): the history's totals, graded (ms)", lambda: store.runs_summary()),
                      ("list_runs(review='queue') page (ms)",
                       lambda: store.list_runs(RunFilter(review="queue"), limit=50)),
                      ("review_queue() page (ms)", lambda: store.review_queue(limit=50)),
                      ("judges(): agreement and kappa per judge (ms)", lambda: store.judges())):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
        graded_rows.append([label + " p50 / min", f"{statistics.median(times):.1f} / {min(times):.1f}"])
    t = time.perf_counter()
    files = store.export_parquet(root / "export")
    export_ms = (time.perf_counter() - t) * 1000
    store.close()

    print_table("2. A synthetic run log", ["what", "value"], [
        ["runs / steps / actions / llm_calls / gradings",
         f"{counts['runs']:,} / {counts['steps']:,} / {counts['actions']:,} / {counts['llm_calls']:,} / "
         f"{counts['gradings']:,}"],
        ["generated with SQL in (s)", gen_s],
        ["database file (MB)", size_mb],
        ["Store() open: migrations check + interrupted sweep (ms)", open_ms],
        ["StepFinished write with no publish running (ms p50 / max)",
         f"{statistics.median(idle):.1f} / {max(idle):.1f}"],
        *publish_rows,
        ["snapshot file (MB)", snap_mb],
        ["get_run of one run (10 steps, 40 actions) (ms)", get_run_ms],
        ["list_runs(status, provider) page (ms)", list_ms],
        *graded_rows,
        [f"export_parquet, {len(files)} files (ms)", export_ms],
    ])
    bench_queries(data)


# ---------------------------------------------------------------- 3. everyday queries
QUERIES = {
    "success rate by model (v_success_by_model)": "SELECT * FROM v_success_by_model",
    "cost per run by model, p50/p95 (v_runs)": """
        SELECT provider, model, median(cost_usd), quantile_cont(cost_usd, 0.95), sum(cost_usd)
        FROM v_runs GROUP BY ALL""",
    "top failing actions (v_failing_actions)": "SELECT * FROM v_failing_actions LIMIT 20",
    "step duration p50/p95 by model (v_steps)": """
        SELECT provider, model, quantile_cont(duration_ms, 0.5), quantile_cont(duration_ms, 0.95)
        FROM v_steps GROUP BY ALL""",
    "runs per day (v_runs)": """
        SELECT day, count(*), count(*) FILTER (WHERE status = 'success') FROM v_runs GROUP BY day ORDER BY day""",
    "action failure rate by name and model (v_actions)": """
        SELECT name, model, avg(CASE WHEN success THEN 0 ELSE 1 END) FROM v_actions GROUP BY ALL""",
    "each run's grade (v_run_grades)": "SELECT graded_by, count(*) FROM v_run_grades GROUP BY ALL",
    "runs to review next, a page (v_review_queue)":
        "SELECT * FROM v_review_queue ORDER BY priority, run_id DESC LIMIT 50",
    "one run's actions (v_actions WHERE run_id = ?)":
        "SELECT * FROM v_actions WHERE run_id = (SELECT max(id) // 2 FROM runs)",
}


def bench_queries(data: Path) -> None:
    """Part 3: everyday analytic queries on the snapshot."""
    rows = []
    con = open_snapshot(data)
    try:
        for label, sql in QUERIES.items():
            times = []
            for _ in range(5):
                t = time.perf_counter()
                result = con.execute(sql).fetchall()
                times.append((time.perf_counter() - t) * 1000)
            rows.append([label, len(result), statistics.median(times), min(times)])
        con.sql("SELECT 1").df()  # import pandas outside the timing
        t = time.perf_counter()
        df = con.sql("SELECT * FROM v_runs").df()
        rows.append(["v_runs -> pandas DataFrame", len(df), (time.perf_counter() - t) * 1000, float("nan")])
    finally:
        con.close()
    print_table("3. Everyday analytic queries on the snapshot (open_snapshot)", ["query", "rows", "ms p50", "ms min"],
                rows)


def main() -> None:
    """Run the three parts and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=1_000_000, help="synthetic log size (default 1,000,000)")
    parser.add_argument("--insert-steps", type=int, default=1000, help="StepFinished events per batch size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        root = Path(tmp)
        bench_insert(root, args.insert_steps)
        bench_big(root, args.actions)


if __name__ == "__main__":
    main()
