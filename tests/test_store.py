"""The run log store, end to end through real DuckDB files (and a second process for snapshots)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_origin, get_type_hints

import duckdb
import pandas as pd
import pytest
from pydantic import ValidationError

from agent.filters import RunFilter
from agent.log.errors import InvalidQuery, SnapshotMissing, StoreLocked
from agent.log.migrations import MIGRATIONS, MigrationError
from agent.log.protocol import RunLog
from agent.log.schema import describe_views, schema_markdown
from agent.log.snapshots import open_snapshot, snapshot_path
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
    StepStarted,
    Usage,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)


# ------------------------------------------------------------------ builders of real events
def make_step(step: int, at: datetime, *, fail: bool = False, model: str = "o3", provider: str = "openai",
              executed_by: str = "agent") -> HistoryItem:
    """A typical step: one LLM call, a navigate, a click with locators, an input (or a failing click)."""
    call = LLMCall(model=model, provider=provider, purpose="step", started_at=at, latency_ms=812.25,
                   input_tokens=1500 + step, output_tokens=40 + step, cost_usd=0.0021 * step,
                   finish_reason="tool_calls")
    actions = [
        ActionResult(name="navigate", params={"url": f"http://127.0.0.1/p{step}", "new_tab": False},
                     success=True, extracted_content=f"Navigated to page {step}", include_in_memory=True,
                     executed_by=executed_by, duration_ms=120.5),
        ActionResult(name="click", params={"index": 7}, success=not fail,
                     error="element 7 is not visible; scroll first" if fail else None,
                     locators={"xpath": "/html/body/main/button[2]", "css": "#buy", "role": "button",
                               "name": "Buy"},
                     executed_by=executed_by, duration_ms=33.0),
        ActionResult(name="input", params={"index": 3, "text": "usb-c cable", "clear": True}, success=True,
                     extracted_content="Typed 'usb-c cable'", locators={"css": "input[name=q]"},
                     executed_by=executed_by, duration_ms=48.75),
    ]
    return HistoryItem(description=f"step {step}: look for the cable", actions=actions, step=step,
                       url=f"http://127.0.0.1/p{step}", title=f"Page {step}", screenshot=f"screenshots/1/{step}.png",
                       started_at=at, duration_ms=1500.5, llm_ms=812.25, browser_ms=650.0, llm_calls=[call],
                       executed_by=executed_by)


def done_step(step: int, at: datetime, *, success: bool = True) -> HistoryItem:
    """The last step: a `done` action with structured data."""
    data = {"name": "Cable X", "price": 9.99}
    return HistoryItem(
        description="report the answer", step=step, started_at=at, duration_ms=900.0, llm_ms=700.0, browser_ms=5.0,
        actions=[ActionResult(name="done", params={"data": data, "success": success}, is_done=True, success=success,
                              extracted_content=json.dumps(data), include_in_memory=True, data=data,
                              duration_ms=1.5)],
        llm_calls=[LLMCall(model="o3", provider="openai", started_at=at, latency_ms=700.0, input_tokens=2000,
                           output_tokens=30, cost_usd=None, finish_reason="tool_calls")],
    )


def run_events(request: RunRequest, *, steps: int = 2, success: bool = True, fail_click: bool = False,
               start: datetime = T0) -> list:
    """The events the engine yields for one whole run."""
    events: list = [RunStarted(request=request, model=f"{request.provider}/{request.model}", at=start)]
    history = []
    at = start
    for n in range(1, steps + 1):
        events.append(StepStarted(step=n, url=f"http://127.0.0.1/p{n}", at=at))
        item = make_step(n, at, fail=fail_click, model=request.model, provider=request.provider)
        history.append(item)
        at += timedelta(seconds=2)
        events.append(StepFinished(item=item, at=at))
    last = done_step(steps + 1, at, success=success)
    history.append(last)
    at += timedelta(seconds=1)
    events.append(StepFinished(item=last, at=at))
    usage = Usage()
    for item in history:
        for call in item.llm_calls:
            usage = usage.add(call)
    response = RunResponse(
        history=history, result={"name": "Cable X", "price": 9.99} if success else None, is_done=True,
        is_successful=success, status="success" if success else "failure",
        error=None if success else "the model gave up", stop_reason="done" if success else "done_failure",
        model=request.model, provider=request.provider,
        started_at=start, finished_at=at, duration_ms=(at - start).total_seconds() * 1000, usage=usage,
        notes=["the provider refused the screenshots; the run went on without images"],  # kept in notes_json
    )
    events.append(RunFinished(response=response, at=at))
    return events


def record_run(store: Store, request: RunRequest, **kw) -> tuple[int, int, RunResponse]:
    """Create a task and a run, record all its events; returns ids and the expected response."""
    task_id = store.create_task(request)
    run_id = store.create_run(task_id, request)
    events = run_events(request, **kw)
    for event in events:
        store.record(run_id, event)
    expected = events[-1].response.model_copy(update={"task_id": task_id, "task_run_id": run_id})
    return task_id, run_id, expected


def request(prompt: str = "find the cheapest usb-c cable and return name and price", **kw) -> RunRequest:
    """A valid run request (contract defaults unless overridden)."""
    return RunRequest(prompt=prompt, **kw)


def snapshot_rows(data_dir: Path, sql: str) -> list[tuple]:
    """Rows of `sql` on a fresh connection to the latest snapshot, as a notebook would read them."""
    con = open_snapshot(data_dir)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Return as soon as `condition()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def store(tmp_path: Path):
    """A store in a fresh data directory, publishing snapshots 50 ms after each run."""
    s = Store(tmp_path / "data", snapshot_interval_s=0.05)
    yield s
    s.close()


# ------------------------------------------------------------------ migrations
def test_migrations_recorded_and_idempotent_on_reopen(tmp_path: Path) -> None:
    data = tmp_path / "data"
    names = [fn.__name__ for fn in MIGRATIONS]
    s = Store(data)
    assert s.migrations_applied == names
    s.close()
    assert [r[0] for r in snapshot_rows(data, "SELECT name FROM _migrations ORDER BY applied_at")] == names

    s = Store(data)
    assert s.migrations_applied == []  # nothing re-run, nothing failed on existing objects
    s.close()
    assert len(snapshot_rows(data, "SELECT * FROM _migrations")) == len(names)

    # A database migrated by a newer version is refused with a message that says what to do.
    con = duckdb.connect(str(data / "runs.duckdb"))
    con.execute("INSERT INTO _migrations VALUES ('m999_future', now())")
    con.close()
    with pytest.raises(MigrationError, match="newer version of the app.*m999_future.*upgrade"):
        Store(data)
    con = duckdb.connect(str(data / "runs.duckdb"))  # the refused store released the file
    con.execute("DELETE FROM _migrations WHERE name = 'm999_future'")
    con.close()
    Store(data).close()


def test_every_migration_module_is_listed_once_in_order() -> None:
    """One module per migration, named as the function `_migrations` records; none left out of the list."""
    folder = ROOT / "agent" / "log" / "migrations"
    modules = sorted(p.stem for p in folder.glob("m[0-9][0-9][0-9]_*.py"))
    assert [fn.__name__ for fn in MIGRATIONS] == modules
    assert [fn.__module__ for fn in MIGRATIONS] == [f"agent.log.migrations.{m}" for m in modules]
    # Numbered without a gap.
    assert sorted(int(m[1:4]) for m in modules) == list(range(1, len(modules) + 1))


def test_stop_reason_migration_backfills_runs_recorded_before_it(tmp_path: Path) -> None:
    """A log written by the previous schema (m001 + m002): its runs get a best-guess stop reason from
    their error text, its steps their own time, and the views the new columns."""
    data = tmp_path / "data"
    data.mkdir()
    con = duckdb.connect(str(data / "runs.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")
    for fn in MIGRATIONS[:2]:
        fn(con)
        con.execute("INSERT INTO _migrations VALUES (?, now())", [fn.__name__])
    con.execute("INSERT INTO tasks (prompt, request_json, created_at) VALUES ('t', '{}', ?)", [T0])
    errors = [
        ("success", None, "agent"), ("failure", "cancelled", "agent"), ("failure", "shutdown", "agent"),
        ("failure", "interrupted", "agent"), ("failure", "reached max_steps (3) without calling done", "agent"),
        ("failure", "timed out after 60 s", "agent"),
        ("failure", "stopped after 3 consecutive failures; last: element 7 is gone", "agent"),
        ("failure", "stopped after 4 consecutive failures; last: The model could not be used: model call failed "
                    "(InternalServerError 500): boom", "agent"),
        ("failure", "the result did not match the JSON schema after 3 attempts: x", "agent"),
        ("failure", "the agent reported that it could not complete the task", "agent"),
        ("failure", "No API key for provider 'anthropic': set ANTHROPIC_API_KEY", "agent"),
        ("failure", "internal error: RuntimeError: boom", "agent"),
        ("failure", "step 2 'Search' could not be replayed or healed: gone", "replay"),
        ("failure", "something nobody foresaw", "agent"),
        ("in_progress", None, "agent"),
    ]
    for status, error, mode in errors:
        con.execute("INSERT INTO runs (task_id, status, error, mode, created_at, started_at, request_json, duration_ms)"
                    " VALUES (1, ?, ?, ?, ?, ?, '{}', 1000)", [status, error, mode, T0, T0])
    con.execute("INSERT INTO steps (run_id, seq, step, finished_at, duration_ms, llm_ms, browser_ms, executed_by, "
                "actions, llm_calls) VALUES (1, 0, 1, ?, 1000, 600, 300, 'agent', 1, 1)", [T0])
    con.close()

    Store(data).close()  # migrates, then publishes a snapshot
    assert snapshot_rows(data, "SELECT stop_reason, outcome FROM v_runs ORDER BY id") == [
        ("done", "success"), ("cancelled", "stopped"), ("shutdown", "stopped"), ("interrupted", "stopped"),
        ("max_steps", "agent_failure"), ("timeout", "agent_failure"), ("max_failures", "agent_failure"),
        ("model_error", "infrastructure"), ("invalid_result", "agent_failure"), ("done_failure", "agent_failure"),
        ("missing_key", "infrastructure"), ("internal_error", "infrastructure"), ("replay_failed", "agent_failure"),
        (None, "agent_failure"), ("interrupted", "stopped"),  # the last was left in progress: interrupted
    ]
    assert snapshot_rows(data, "SELECT duration_ms, llm_ms, browser_ms, own_ms FROM v_steps") == [
        (1000.0, 600.0, 300.0, 100.0)]
    # 1 success over 8 fair runs (cancelled, interrupted, shutdown and infrastructure failures apart).
    assert snapshot_rows(data, "SELECT runs, fair_runs, successes, agent_failures, stopped, infra_failures "
                               "FROM v_success_by_model") == [(15, 8, 1, 7, 4, 3)]


def test_describe_views_and_schema_markdown() -> None:
    views = describe_views()
    assert set(views) == {"v_runs", "v_steps", "v_actions", "v_llm_calls", "v_webhooks", "v_success_by_model",
                          "v_failing_actions", "v_stop_reasons", "v_model_errors", "v_llm_traces", "v_experiments",
                          "v_experiment_cells", "v_experiment_matrix", "v_experiment_variants", "v_forks",
                          "v_task_sets", "v_task_set_tasks", "v_run_experiments", "v_gradings", "v_run_grades",
                          "v_review_queue", "v_judge_pairs"}
    assert [c for c, _ in views["v_runs"]][:9] == ["id", "task_id", "status", "stop_reason", "outcome", "prompt",
                                                   "provider", "model", "mode"]
    assert dict(views["v_success_by_model"]) == {
        "provider": "VARCHAR", "model": "VARCHAR", "runs": "BIGINT", "fair_runs": "BIGINT", "successes": "BIGINT",
        "success_rate": "DOUBLE", "ci_low": "DOUBLE", "ci_high": "DOUBLE", "agent_failures": "BIGINT",
        "stopped": "BIGINT", "infra_failures": "BIGINT", "graded_by_person": "BIGINT", "graded_by_judge": "BIGINT",
        "graded_by_check": "BIGINT", "graded_by_agent": "BIGINT", "success_source": "VARCHAR",
        "claimed_successes": "BIGINT", "claimed_success_rate": "DOUBLE", "avg_cost_usd": "DOUBLE",
        "avg_duration_s": "DOUBLE", "avg_steps": "DOUBLE", "total_cost_usd": "DOUBLE",
    }
    assert dict(views["v_failing_actions"]) == {"name": "VARCHAR", "error": "VARCHAR", "count": "BIGINT",
                                                "runs": "BIGINT", "last_at": "TIMESTAMP WITH TIME ZONE"}
    md = schema_markdown()
    assert "- `v_runs`: `id` bigint, `task_id` bigint" in md and "- `actions`: `run_id` bigint" in md


def test_store_is_the_run_log_the_service_holds(store: Store) -> None:
    """`Store` implements `RunLog` with exactly the protocol's signatures (so the protocol cannot drift)."""
    assert isinstance(store, RunLog)
    members = [name for name, value in vars(RunLog).items() if callable(value) and not name.startswith("_")]
    assert len(members) == 55  # runs and tasks 27, experiments 16, task sets 5, gradings and reviews 7
    for name in members:
        protocol = inspect.signature(getattr(RunLog, name), eval_str=True)
        actual = inspect.signature(getattr(Store, name), eval_str=True)
        assert actual == protocol, f"Store.{name}{actual} differs from RunLog.{name}{protocol}"
    for name, kind in get_type_hints(RunLog).items():
        assert isinstance(getattr(store, name), get_origin(kind) or kind), name


# ------------------------------------------------------------------ the run lifecycle
def test_full_run_recorded_and_rebuilt(store: Store) -> None:
    req = request(webhook_url="https://hooks.example.com/x", json_schema={"type": "object"}, max_steps=9)
    task_id, run_id, expected = record_run(store, req, steps=3)

    assert store.get_run(run_id) == expected  # every step, action, locator, llm call, time, total
    # The webhook URL is kept redacted (it may carry a token), so it is no longer a place to deliver to.
    assert store.get_run_request(run_id) == req.model_copy(update={"webhook_url": None})
    assert store.get_run(run_id + 100) is None and store.get_run_request(run_id + 100) is None

    rows, total = store.list_runs()
    assert total == 1
    assert rows == [{
        "id": run_id, "task_id": task_id, "status": "success", "prompt": req.prompt, "provider": "openai",
        "model": "o3", "mode": "agent", "steps": 4, "duration_ms": 7000.0,
        "cost_usd": expected.usage.cost_usd, "started_at": T0, "error": None, "stop_reason": "done",
        "parent_run_id": None, "forked_at_step": None, "forks": 0,
        "experiment_id": None, "experiment_name": None, "variant": None,  # a run of no experiment
    }]
    task = store.get_task(task_id)
    created = task.pop("created_at")
    assert isinstance(created, datetime) and created.tzinfo is not None
    assert task == {"id": task_id, "prompt": req.prompt, "workflow_id": None, "runs": 1,
                    "last_run_id": run_id, "last_status": "success",
                    "request": {**req.model_dump(mode="json"), "webhook_url": "https://hooks.example.com/..."}}


def test_run_in_progress_shows_running_totals(store: Store) -> None:
    req = request()
    task_id = store.create_task(req)
    run_id = store.create_run(task_id, req)
    events = run_events(req, steps=2)
    for event in events[:4]:  # started, step 1 started/finished, step 2 started
        store.record(run_id, event)
    got = store.get_run(run_id)
    item = events[2].item
    assert got.status == "in_progress" and got.history == [item] and got.finished_at is None
    assert got.started_at == T0 and got.duration_ms is None
    assert got.usage == Usage().add(item.llm_calls[0])


def test_run_finished_keeps_unannounced_steps_and_fills_times(store: Store) -> None:
    """A replay that reports only its end still gets its whole history, a finish time and a duration."""
    req = request()
    task_id = store.create_task(req)
    run_id = store.create_run(task_id, req, mode="replay")
    first = make_step(1, T0, executed_by="replay")
    store.record(run_id, StepFinished(item=first, at=T0 + timedelta(seconds=1)))
    second = make_step(2, T0, executed_by="heal")
    response = RunResponse(history=[first, second], result="ok", is_done=True, is_successful=True,
                           status="success", mode="replay", started_at=T0, replayed_steps=1, healed_steps=1)
    store.record(run_id, RunFinished(response=response, at=T0 + timedelta(seconds=4)))
    got = store.get_run(run_id)
    assert got == response.model_copy(update={
        "task_id": task_id, "task_run_id": run_id, "finished_at": T0 + timedelta(seconds=4), "duration_ms": 4000.0,
        "model": "o3", "provider": "openai",  # from the request
        "usage": Usage().add(first.llm_calls[0]).add(second.llm_calls[0]),  # running totals stand
    })


def test_fail_run_ends_only_runs_in_progress(store: Store) -> None:
    req = request()
    task_id = store.create_task(req)
    stuck = store.create_run(task_id, req)
    store.fail_run(stuck, "browser could not start: chromium missing", "browser_error")
    got = store.get_run(stuck)
    assert (got.status, got.error, got.stop_reason, got.is_done, got.is_successful) == (
        "failure", "browser could not start: chromium missing", "browser_error", False, False)
    assert got.finished_at >= got.started_at and got.duration_ms >= 0

    _, done_id, expected = record_run(store, req)
    store.fail_run(done_id, "late failure")
    assert store.get_run(done_id) == expected  # a finished run keeps its honest end
    with pytest.raises(InvalidQuery, match="run 999 does not exist; create it with create_run"):
        store.fail_run(999, "x")
    with pytest.raises(InvalidQuery, match="stop_reason must be one of done, done_failure, "):
        store.fail_run(stuck, "x", "gave_up")


def test_interrupted_runs_marked_on_reopen(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = Store(data)
    req = request()
    task_id = s.create_task(req)
    run_id = s.create_run(task_id, req)
    events = run_events(req, steps=2)
    for event in events[:3]:  # the app dies after the first step
        s.record(run_id, event)
    _, done_id, done_expected = record_run(s, req)
    s.close()

    s = Store(data)
    try:
        assert s.interrupted_runs == [run_id]
        got = s.get_run(run_id)
        step_end = events[2].at
        assert got == RunResponse(
            task_id=task_id, task_run_id=run_id, history=[events[2].item], status="failure", error="interrupted",
            stop_reason="interrupted", is_done=False, is_successful=False, model="o3", provider="openai", started_at=T0,
            finished_at=step_end, duration_ms=(step_end - T0).total_seconds() * 1000,
            usage=Usage().add(events[2].item.llm_calls[0]),
        )
        assert s.get_run(done_id) == done_expected
        assert s.list_runs(RunFilter(status="in_progress")) == ([], 0)
    finally:
        s.close()


def test_list_runs_filters_and_pagination(store: Store) -> None:
    ids = {}
    for n, (provider, model, success) in enumerate([
        ("openai", "o3", True), ("openai", "o3", False), ("anthropic", "claude-sonnet-4-5", True),
        ("openai", "gpt-4.1-mini", True), ("anthropic", "claude-sonnet-4-5", False),
    ]):
        _, run_id, _ = record_run(store, request(f"task number {n}", provider=provider, model=model), success=success)
        ids[n] = run_id
    req = request("still running")
    running_task = store.create_task(req)
    running = store.create_run(running_task, req)

    def listed(limit: int = 50, offset: int = 0, **kw):
        rows, total = store.list_runs(RunFilter(**kw), limit=limit, offset=offset)
        return [r["id"] for r in rows], total

    assert listed() == ([running, ids[4], ids[3], ids[2], ids[1], ids[0]], 6)
    assert listed(status="failure") == ([ids[4], ids[1]], 2)
    assert listed(status="in_progress") == ([running], 1)
    assert listed(provider="anthropic") == ([ids[4], ids[2]], 2)
    assert listed(provider="openai", model="o3") == ([running, ids[1], ids[0]], 3)
    assert listed(provider="openai", model="o3", status="success") == ([ids[0]], 1)
    assert listed(task_id=running_task) == ([running], 1)
    assert listed(limit=2) == ([running, ids[4]], 6)
    assert listed(limit=2, offset=2) == ([ids[3], ids[2]], 6)
    assert listed(limit=2, offset=6) == ([], 6)

    with pytest.raises(ValidationError, match="status\n  Input should be 'success', 'failure' or 'in_progress'"):
        store.list_runs(RunFilter(status="done"))
    with pytest.raises(InvalidQuery, match="limit must be an integer from 1 to 1000"):
        store.list_runs(limit=0)
    with pytest.raises(InvalidQuery, match="offset must be an integer >= 0"):
        store.list_runs(offset=-1)

    tasks, total = store.list_tasks(limit=2)
    assert total == 6
    assert [(t["id"], t["runs"], t["last_status"]) for t in tasks] == [
        (running_task, 1, "in_progress"), (running_task - 1, 1, "failure")]


def test_writers_in_many_threads_lose_nothing(store: Store) -> None:
    """The run service writes from worker threads (asyncio.to_thread): one lock keeps them apart."""
    expected: dict[int, RunResponse] = {}
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            _, run_id, exp = record_run(store, request(f"thread {n} buys a cable"), steps=3)
            expected[run_id] = exp
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(expected) == 6
    for run_id, exp in expected.items():
        assert store.get_run(run_id) == exp
    assert store.list_runs()[1] == 6


def test_webhook_attempts_recorded_in_order(store: Store) -> None:
    _, run_id, _ = record_run(store, request(webhook_url="https://hooks.example.com/x"))
    attempts = [
        {"url": "https://hooks.example.com/x", "attempt": 1, "at": T0, "status_code": None, "ok": False,
         "error": "connection refused", "duration_ms": 3.5},
        {"url": "https://hooks.example.com/x", "attempt": 2, "at": T0 + timedelta(seconds=1), "status_code": 503,
         "ok": False, "error": "HTTP 503", "duration_ms": 40.0},
        {"url": "https://hooks.example.com/x", "attempt": 3, "at": T0 + timedelta(seconds=3), "status_code": 200,
         "ok": True, "error": None, "duration_ms": 21.25},
    ]
    for a in attempts:
        store.record_webhook_attempt(run_id, **a)
    got = store.webhook_attempts(run_id)
    # The URL is kept redacted (webhook URLs carry tokens): scheme, host and port only.
    assert [{k: v for k, v in g.items() if k != "id"} for g in got] == [
        {"run_id": run_id, "event": "run.finished", **a, "url": "https://hooks.example.com/..."} for a in attempts]
    assert [g["id"] for g in got] == sorted(g["id"] for g in got)
    assert store.webhook_attempts(run_id + 1) == []


def test_workflow_versions(store: Store) -> None:
    task_id, run_id, _ = record_run(store, request())
    doc1 = {"name": "cheapest cable", "prompt": "find the cheapest {{item}}", "parameters": [{"name": "item"}],
            "steps": [{"description": "search", "actions": [{"name": "input", "params": {"text": "{{item}}"}}]}]}
    wid, v1 = store.save_workflow(doc1, source_run_id=run_id)
    assert v1 == 1
    other, _ = store.save_workflow({"name": "other"})
    doc2 = {**doc1, "steps": doc1["steps"] + [{"description": "healed step", "actions": []}]}
    assert store.save_workflow(doc2, workflow_id=wid, source_run_id=run_id, healed_from_version=1) == (wid, 2)

    latest = store.get_workflow(wid)
    created = latest.pop("created_at")
    assert created.tzinfo is not None
    assert latest == {"id": wid, "version": 2, "name": "cheapest cable", "prompt": "find the cheapest {{item}}",
                      "document": doc2, "source_run_id": run_id, "healed_from_version": 1}
    assert store.get_workflow(wid, 1)["document"] == doc1
    assert store.get_workflow(wid, 3) is None and store.get_workflow(other + 1) is None
    assert [(w["id"], w["version"], w["versions"]) for w in store.list_workflows()] == [(other, 1, 1), (wid, 2, 2)]

    store.set_task_workflow(task_id, wid)
    assert store.get_task(task_id)["workflow_id"] == wid
    with pytest.raises(InvalidQuery, match="workflow 999 does not exist; omit workflow_id"):
        store.save_workflow(doc1, workflow_id=999)
    with pytest.raises(InvalidQuery, match="document must be a workflow object"):
        store.save_workflow("not a dict")  # type: ignore[arg-type]
    with pytest.raises(InvalidQuery, match="task 999 does not exist"):
        store.set_task_workflow(999, wid)


def test_bad_ids_and_second_owner_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidQuery, match="task 42 does not exist; create it with create_task"):
        store.create_run(42, request())
    with pytest.raises(InvalidQuery, match="run 42 does not exist; create it with create_run"):
        store.record(42, StepFinished(item=make_step(1, T0)))
    with pytest.raises(InvalidQuery, match="run 42 does not exist"):
        store.record(42, StepStarted(step=1))
    with pytest.raises(InvalidQuery, match="mode must be 'agent' or 'replay'"):
        store.create_run(1, request(), mode="cached")
    assert store.list_runs() == ([], 0)  # nothing half-written by the refused events
    with pytest.raises(StoreLocked, match="already open by a Store in this process"):
        Store(store.data_dir)
    with pytest.raises(SnapshotMissing, match="python -m agent.log snapshot --data-dir"):
        open_snapshot(tmp_path / "nowhere")


# ------------------------------------------------------------------ views
def test_views_return_expected_rows(store: Store) -> None:
    _, a, _ = record_run(store, request("one", provider="openai", model="o3"), steps=1)
    _, b, _ = record_run(store, request("two", provider="openai", model="o3"), steps=2, success=False,
                         fail_click=True)
    _, c, _ = record_run(store, request("three", provider="anthropic", model="claude-sonnet-4-5"), steps=1)
    running = store.create_run(store.create_task(request("four")), request("four"))
    store.record_webhook_attempt(a, url="https://h.example.com", attempt=1, at=T0, status_code=200, ok=True,
                                 error=None, duration_ms=5.0)
    store.publish_snapshot()
    data = store.data_dir

    day = T0.date()
    assert snapshot_rows(data, "SELECT id, status, provider, model, mode, steps, actions, llm_calls, duration_s, "
                               "error, day FROM v_runs ORDER BY id") == [
        (a, "success", "openai", "o3", "agent", 2, 4, 2, 3.0, None, day),
        (b, "failure", "openai", "o3", "agent", 3, 7, 3, 5.0, "the model gave up", day),
        (c, "success", "anthropic", "claude-sonnet-4-5", "agent", 2, 4, 2, 3.0, None, day),
        (running, "in_progress", "openai", "o3", "agent", 0, 0, 0, None, None,
         snapshot_rows(data, f"SELECT CAST(timezone('UTC', started_at) AS DATE) FROM runs WHERE id={running}")[0][0]),
    ]
    # Every run's done step made a call without a price (cost NULL, tokens used): its total is unknown (NULL),
    # never the sum of the priced calls shown as if it were the whole.
    rows = snapshot_rows(data, "SELECT * FROM v_success_by_model")
    # Nothing graded these runs: the agents' own claims count (graded_by_agent, success_source "agent").
    assert rows == [
        ("openai", "o3", 2, 2, 1, 0.5, pytest.approx(0.0945, abs=1e-4), pytest.approx(0.9055, abs=1e-4), 1, 0, 0,
         0, 0, 0, 2, "agent", 1, 0.5, None, 4.0, 2.5, None),
        ("anthropic", "claude-sonnet-4-5", 1, 1, 1, 1.0, pytest.approx(0.2065, abs=1e-4), 1.0, 0, 0, 0,
         0, 0, 0, 1, "agent", 1, 1.0, None, 3.0, 2.0, None),
    ]
    assert snapshot_rows(data, "SELECT name, error, count, runs FROM v_failing_actions") == [
        ("click", "element 7 is not visible; scroll first", 2, 1),
        ("done", None, 1, 1),  # the failed run's `done` said success=false
    ]
    assert snapshot_rows(data, "SELECT run_id, name, provider, model, run_status, day FROM v_actions "
                               f"WHERE run_id = {c} ORDER BY seq, idx") == [
        (c, "navigate", "anthropic", "claude-sonnet-4-5", "success", day),
        (c, "click", "anthropic", "claude-sonnet-4-5", "success", day),
        (c, "input", "anthropic", "claude-sonnet-4-5", "success", day),
        (c, "done", "anthropic", "claude-sonnet-4-5", "success", day),
    ]
    assert snapshot_rows(data, f"SELECT run_id, step, executed_by, actions, duration_ms, run_status FROM v_steps "
                               f"WHERE run_id = {b} ORDER BY seq") == [
        (b, 1, "agent", 3, 1500.5, "failure"),
        (b, 2, "agent", 3, 1500.5, "failure"),
        (b, 3, "agent", 1, 900.0, "failure"),
    ]
    assert snapshot_rows(data, f"SELECT run_id, step, purpose, input_tokens, cost_usd, run_status FROM v_llm_calls "
                               f"WHERE run_id = {a} ORDER BY seq") == [
        (a, 1, "step", 1501, 0.0021, "success"), (a, 2, "step", 2000, None, "success")]
    assert snapshot_rows(data, "SELECT run_id, attempt, status_code, ok, run_status FROM v_webhooks") == [
        (a, 1, 200, True, "success")]


# ------------------------------------------------------------------ snapshots
READER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from agent.log.snapshots import open_snapshot

    data_dir, ready, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    seen, errors = [], []
    held = open_snapshot(data_dir)  # kept open the whole time: must block nothing in the writer
    held_before = held.execute("SELECT count(*) FROM runs").fetchone()[0]
    deadline = time.monotonic() + 120  # bounded even if the test dies
    while time.monotonic() < deadline:
        stopping = stop.exists()  # checked first: the last read happens after the last publish
        try:
            con = open_snapshot(data_dir)
            try:
                n = con.execute("SELECT count(*) FROM v_runs WHERE status = 'success'").fetchone()[0]
                con.execute("SELECT * FROM v_success_by_model").fetchall()
                con.execute("SELECT count(*) FROM v_actions").fetchone()
            finally:
                con.close()
            seen.append(n)
            tmp = ready.with_suffix(".tmp")
            tmp.write_text(str(n))
            tmp.replace(ready)  # the writer waits on this to pace itself
        except Exception as exc:
            errors.append(repr(exc))
        if stopping:
            break
        time.sleep(0.005)
    held_after = held.execute("SELECT count(*) FROM runs").fetchone()[0]
    held.close()
    print(json.dumps({"seen": seen, "errors": errors, "held": [held_before, held_after]}))
    """
)


def _python_env() -> dict[str, str]:
    """The environment for a child process that imports `agent`."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_second_process_reads_snapshots_while_this_one_writes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = Store(data, snapshot_interval_s=None)  # publishes below are explicit
    try:
        store.publish_snapshot()
        ready, stop = tmp_path / "ready", tmp_path / "stop"
        reader = subprocess.Popen([sys.executable, "-c", READER, str(data), str(ready), str(stop)], cwd=ROOT,
                                  env=_python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: ready.exists() or reader.poll() is not None, timeout=60, what="the reader's first read")
            assert ready.exists(), reader.stderr.read() if reader.poll() is not None else "reader never read"

            expected = {}
            write_ms, publish_ms = [], []
            for n in range(8):
                t = time.perf_counter()
                _, run_id, exp = record_run(store, request(f"run {n} of the concurrency test"), steps=2)
                write_ms.append((time.perf_counter() - t) * 1000)
                expected[run_id] = exp
                t = time.perf_counter()
                store.publish_snapshot()
                publish_ms.append((time.perf_counter() - t) * 1000)
                # Wait until the reader has seen this version (or died: reported below), however loaded the machine.
                wait_until(lambda n=n: reader.poll() is not None or int(ready.read_text() or -1) >= n + 1,
                           timeout=30, what=f"the reader to see run {n + 1}")
            stop.touch()
            out, err = reader.communicate(timeout=60)
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait()
        assert reader.returncode == 0, err
        result = json.loads(out)
        assert result["errors"] == []
        assert result["held"] == [0, 0]  # the held connection kept its consistent old view
        seen = result["seen"]
        assert seen == sorted(seen) and seen[-1] == 8  # monotonic, ends with every run
        assert set(seen) == set(range(9))  # saw each run appear while the others were being written
        for run_id, exp in expected.items():  # no write lost
            assert store.get_run(run_id) == exp
        assert max(publish_ms) < 10_000 and max(write_ms) < 10_000, (write_ms, publish_ms)
    finally:
        store.close()


@pytest.mark.parametrize("method", ["checkpoint", "copy"])
def test_reader_holding_a_snapshot_blocks_neither_publish_nor_writes(tmp_path: Path, method: str) -> None:
    store = Store(tmp_path / "data", snapshot_interval_s=None, snapshot_method=method)
    try:
        record_run(store, request("first"))
        store.publish_snapshot()
        held = open_snapshot(store.data_dir)
        try:
            assert held.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
            t = time.perf_counter()
            _, second, expected = record_run(store, request("second"))
            store.publish_snapshot()
            assert time.perf_counter() - t < 10
            assert store.last_publish_method == method
            assert (store.last_publish_lock_ms > 0) == (method == "checkpoint")
            # The snapshot holds the same rows as the live log, views included.
            assert snapshot_rows(store.data_dir, "SELECT id, status, steps, actions FROM v_runs ORDER BY id") == [
                (r["id"], "success", 3, 7) for r in reversed(store.list_runs()[0])]
            assert store.get_run(second) == expected
            assert held.execute("SELECT count(*) FROM runs").fetchone()[0] == 1  # its consistent old view
            fresh = open_snapshot(store.data_dir)
            try:
                assert fresh.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
            finally:
                fresh.close()
        finally:
            held.close()
    finally:
        store.close()
    assert not list(snapshot_path(store.data_dir).parent.glob(".runs-*"))  # no temp files left


def test_snapshot_published_in_background_after_run_finished(store: Store) -> None:
    _, run_id, _ = record_run(store, request())

    def published() -> bool:
        try:
            return snapshot_rows(store.data_dir, "SELECT id, status FROM runs") == [(run_id, "success")]
        except SnapshotMissing:
            return False

    wait_until(published, timeout=20, what="the background snapshot with the finished run")
    assert store.snapshot_error is None


def test_cli_while_the_app_owns_the_file(store: Store, tmp_path: Path) -> None:
    record_run(store, request(), steps=2)
    store.publish_snapshot()
    out_dir = tmp_path / "exports"
    env = _python_env()
    done = subprocess.run([sys.executable, "-m", "agent.log", "export", "--data-dir", str(store.data_dir),
                           "--out", str(out_dir)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "wrote 5 Parquet files" in done.stdout  # tasks, runs, steps, actions, llm_calls (one day each)
    assert pd.read_parquet(out_dir / "actions").shape[0] == 7

    # The publish above copied the live file: the app must still hold DuckDB's lock on it.
    snap = subprocess.run([sys.executable, "-m", "agent.log", "snapshot", "--data-dir", str(store.data_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert snap.returncode == 0, snap.stderr
    assert "the app owns the run log" in snap.stdout and "latest snapshot" in snap.stdout

    missing = subprocess.run([sys.executable, "-m", "agent.log", "export", "--data-dir", str(tmp_path / "none")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 2 and "no snapshot at" in missing.stderr and "Traceback" not in missing.stderr

    schema = subprocess.run([sys.executable, "-m", "agent.log", "schema"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert schema.returncode == 0 and schema.stdout == schema_markdown() + "\n", schema.stderr


# ------------------------------------------------------------------ export
def test_export_parquet_partitioned_by_day(store: Store, tmp_path: Path) -> None:
    day1, day2 = T0, T0 + timedelta(days=1)
    _, a, _ = record_run(store, request("day one"), steps=2, start=day1)
    _, b, _ = record_run(store, request("day two"), steps=1, start=day2, success=False, fail_click=True)
    store.record_webhook_attempt(b, url="https://h.example.com", attempt=1, at=day2, status_code=500, ok=False,
                                 error="HTTP 500", duration_ms=9.0)
    store.save_workflow({"name": "w"}, source_run_id=a)
    out = tmp_path / "parquet"
    files = store.export_parquet(out)
    assert all(f.suffix == ".parquet" and f.is_file() for f in files)
    assert {f.parent.name for f in files if f.parent.parent.name == "runs"} == {"day=2026-11-29", "day=2026-11-30"}

    expected = {"tasks": 2, "runs": 2, "steps": 5, "actions": 11, "llm_calls": 5, "workflows": 1,
                "webhook_deliveries": 1}
    for table, count in expected.items():
        assert len(pd.read_parquet(out / table)) == count, table
        assert duckdb.execute(f"SELECT count(*) FROM read_parquet('{out / table}/**/*.parquet', "
                              "hive_partitioning = true)").fetchall() == [(count,)]
    by_day = duckdb.execute(f"SELECT day::VARCHAR, count(*) FROM read_parquet('{out}/actions/**/*.parquet', "
                        "hive_partitioning = true) GROUP BY ALL ORDER BY 1").fetchall()
    assert by_day == [("2026-11-29", 7), ("2026-11-30", 4)]

    runs = pd.read_parquet(out / "runs").sort_values("id")
    assert runs["status"].tolist() == ["success", "failure"]
    assert json.loads(runs["result_json"].iloc[0]) == {"name": "Cable X", "price": 9.99}

    # Exporting again replaces the folders whole: no stale or doubled files.
    again = store.export_parquet(out)
    assert len(again) == len(files) and len(pd.read_parquet(out / "actions")) == 11


# ------------------------------------------------------------------ secrets
def test_secrets_never_reach_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-proj-T3stS3cretValue0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("WEBHOOK_SECRET", "whsec-another-secret-value-42")
    monkeypatch.setenv("FEATURE_KEY_MODE", "enabled-mode")  # a word, not a secret: left alone
    data = tmp_path / "data"
    store = Store(data)
    try:
        req = RunRequest(prompt=f"log in with {secret} then buy CONTROL-MARKER-91b, enabled-mode", workflow_params={
            "api_key": "user-given-key-value", "item": "cable"}, webhook_url=f"https://h.example.com/?k={secret}")
        task_id = store.create_task(req)
        run_id = store.create_run(task_id, req)
        leaky = make_step(1, T0).model_copy(update={
            "actions": [ActionResult(name="input", params={"text": secret}, error=f"rejected {secret}",
                                     extracted_content=f"typed {secret}")],
            "llm_calls": [LLMCall(model="o3", provider="openai", started_at=T0, latency_ms=1.0,
                                  error=f"AuthenticationError: Incorrect API key provided: {secret}")],
        })
        store.record(run_id, StepFinished(item=leaky))
        store.record(run_id, RunFinished(response=RunResponse(
            history=[leaky], result=f"the key is {secret}", status="failure", error=f"bad key {secret}")))
        store.record_webhook_attempt(run_id, url=f"https://h.example.com/?k={secret}", attempt=1, at=T0,
                                     status_code=None, ok=False, error="whsec-another-secret-value-42 refused",
                                     duration_ms=1.0)
        store.save_workflow({"name": "w", "prompt": secret})
        stored = store.get_run_request(run_id)
        assert stored.workflow_params == {"item": "cable"}  # the key-like field is dropped
        assert stored.prompt == "log in with [redacted] then buy CONTROL-MARKER-91b, enabled-mode"
        store.export_parquet(tmp_path / "export")
    finally:
        store.close()

    files = [p for p in [*data.rglob("*"), *(tmp_path / "export").rglob("*")] if p.is_file()]
    assert any(p.name == "runs.duckdb" for p in files)
    blobs = {p: p.read_bytes() for p in files}
    assert any(b"CONTROL-MARKER-91b" in blob for blob in blobs.values())  # the scan does see plain text
    for needle in (secret, "whsec-another-secret-value-42", "user-given-key-value"):
        assert [p for p, blob in blobs.items() if needle.encode() in blob] == [], needle
    # And through SQL, over every text column of every table (compression cannot hide it there).
    con = open_snapshot(data)
    try:
        cols = con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = 'runlog' "
                           "AND data_type IN ('VARCHAR', 'JSON') AND table_name NOT LIKE 'v_%'").fetchall()
        assert len(cols) > 20
        for table, column in cols:
            hits = con.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}"::VARCHAR LIKE ?',
                               [f"%{secret[:20]}%"]).fetchone()[0]
            assert hits == 0, (table, column)
    finally:
        con.close()


def test_json_columns_stay_json_whatever_the_secret_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value ending in a backslash, or one a JSON escape seems to hold (`\\nabc...` holds "nabc..."), or a number:
    scrubbed in the stored JSON without breaking it (a scrub of the JSON text would cut `\\\\` in two)."""
    monkeypatch.setenv("DEMO_API_TOKEN", "C:\\tok\\9f8e7d6c\\")
    monkeypatch.setenv("DEMO_PIN_KEY", "8812345678901")
    monkeypatch.setenv("DEMO_N_TOKEN", "nabc-55-secret")
    store = Store(tmp_path / "data", snapshot_interval_s=None)
    try:
        req = RunRequest(prompt="paths C:\\tok\\9f8e7d6c\\ and\nabc-55-secret ok", model="m",
                         json_schema={"type": "object", "title": "C:\\tok\\9f8e7d6c\\"},
                         workflow_params={"pin": 8812345678901, "C:\\tok\\9f8e7d6c\\": "as a key"})
        run_id = store.create_run(store.create_task(req), req)
        store.record(run_id, RunFinished(response=RunResponse(
            status="success", is_done=True, is_successful=True,
            result={"path": "C:\\tok\\9f8e7d6c\\", "pin": 8812345678901, "line": "x\nabc-55-secret"})))
        stored = store.get_run_request(run_id)  # loads the stored JSON: it must still be JSON
        assert stored.json_schema == {"type": "object", "title": "[redacted]"}
        assert stored.workflow_params == {"pin": "[redacted]", "[redacted]": "as a key"}
        # A JSON escape that merely looks like a value ("\\n" then "abc-55-secret") is not a value: left as it was.
        assert store.get_run(run_id).result == {"path": "[redacted]", "pin": "[redacted]", "line": "x\nabc-55-secret"}
    finally:
        store.close()


def test_a_secret_cut_by_a_length_cap_leaves_no_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A text capped after scrubbing, not before: a value straddling the cap would leave its head in clear."""
    from agent.log.grades import MAX_COMMENT_CHARS

    secret = "sk-cut-Q7w8e9r0t1y2u3i4o5"
    monkeypatch.setenv("DEMO_API_TOKEN", secret)
    store = Store(tmp_path / "data", snapshot_interval_s=None)
    try:
        req = RunRequest(prompt="find a cable", model="m")
        run_id = store.create_run(store.create_task(req), req)
        store.record(run_id, RunFinished(response=RunResponse(status="failure", is_done=True)))
        comment = "x" * (MAX_COMMENT_CHARS - 12) + secret  # the cap falls inside the value
        kept = store.review_run(run_id, reviewer="ana", passed=False, score=None, comment=comment, source="body")
        assert kept["comment"] == "x" * (MAX_COMMENT_CHARS - 12) + "[redacted]"  # not the value's first 12 characters
    finally:
        store.close()


def test_webhook_urls_kept_in_clear_by_an_older_version_are_redacted_and_owed_ones_kept(tmp_path: Path) -> None:
    """m005_webhook_outbox on a log an older version wrote: clear URLs redacted, an owed delivery kept aside."""
    data = tmp_path / "data"
    data.mkdir()
    con = duckdb.connect(str(data / "runs.duckdb"))
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")
    for fn in MIGRATIONS[:MIGRATIONS.index(next(m for m in MIGRATIONS if m.__name__ == "m005_webhook_outbox"))]:
        fn(con)
        con.execute("INSERT INTO _migrations VALUES (?, now())", [fn.__name__])
    ended, running = "https://hooks.example.com/a?token=old-ended-1", "https://hooks.example.com/b?token=old-live-2"
    con.execute("INSERT INTO tasks VALUES (1, 'p', ?, now(), NULL)", [json.dumps({"prompt": "p", "webhook_url": ended})])
    for run_id, status, url in ((1, "success", ended), (2, "in_progress", running)):
        con.execute("INSERT INTO runs (id, task_id, status, mode, created_at, started_at, request_json, webhook_url) "
                    "VALUES (?, 1, ?, 'agent', now(), now(), ?, ?)",
                    [run_id, status, json.dumps({"prompt": "p", "webhook_url": url}), url])
    con.execute("INSERT INTO webhook_deliveries VALUES (1, 1, ?, 1, now(), 200, true, NULL, 1.0, 'run.finished')",
                [ended])
    con.close()

    store = Store(data, snapshot_interval_s=None)
    try:
        assert "m005_webhook_outbox" in store.migrations_applied and store.interrupted_runs == [2]
        # The run left in progress ended as interrupted: its webhook is owed, to the full URL.
        assert [(r["run_id"], r["url"], r["attempts"]) for r in store.pending_webhooks()] == [(2, running, 0)]
        assert store.webhook_attempts(1)[0]["url"] == "https://hooks.example.com/..."
        assert store.get_task(1)["request"]["webhook_url"] == "https://hooks.example.com/..."
        store.end_webhook(2)
        assert store.pending_webhooks() == [] and not (data / "outbox" / "2.url").exists()
        files = store.export_parquet(tmp_path / "export")
    finally:
        store.close()
    # What readers get from the tables holds no token. (The old bytes may linger in free pages of the
    # database file itself until DuckDB reuses them: docs/security.md says so.)
    assert files and all(b"old-ended-1" not in f.read_bytes() and b"old-live-2" not in f.read_bytes() for f in files)
