"""The trace of every LLM call, in process: the run service with a real DuckDB store, real Chromium on
the local test pages, the fake model through litellm's real path. What the model was sent and what it
answered is kept (system prompt once by hash, images by reference, secrets scrubbed), LOG_PROMPTS=0
keeps usage only, the system prompt is the user's to extend or replace, and two runs compare step by
step from a notebook."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from agent.engine.browser import Browser
from agent.engine.prompts import SYSTEM_PROMPT
from agent.log.store import Store
from agent.models import RunRequest, StepFinished
from agent.service.runs import RunService
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply

STEP_RE = re.compile(r"Step (\d+) of at most")
PAGE_RE = re.compile(r'<page url="[^"]*" title="[^"]*">\n(.*)\n</page>\nStep \d+ of at most', re.S)
# Arguments as a model may write them (spacing, key order): the trace keeps them verbatim.
RAW_ARGS = '{ "index":  %d }'


def model(body: dict[str, Any]) -> Any:
    """After the start page: click "Form page" (arguments written loosely), then extract, then done."""
    if not body.get("tools"):
        return reply("The page is a form.", usage=(50, 5))
    text = last_user_text(body)
    step = int(STEP_RE.search(text).group(1))  # type: ignore[union-attr]
    if step == 2:
        return reply("Open the form page.", call("click", RAW_ARGS % find_index(body, "Form page", tag="a")))
    if step == 3:
        return reply("Read what the page is.", call("extract", query="what is this page?"))
    return reply("Report it.", call("done", text="a form", success=True))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data", snapshot_interval_s=None)
    yield s
    s.close()


@pytest.fixture
def fake(fake_llm: FakeLLM) -> FakeLLM:
    fake_llm.reset(model)
    return fake_llm


def stored(store: Store, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Rows straight from the live file (a second connection of the same process, read only)."""
    cur = store._con.cursor()  # the test reads the tables the service wrote, as they are on disk
    try:
        return cur.execute(sql, params or []).fetchall()
    finally:
        cur.close()


async def test_every_call_is_traced_as_sent_and_as_answered(fake: FakeLLM, browser: Browser, store: Store,
                                                            site_url: str) -> None:
    service = RunService(store, browser, data_dir=store.data_dir, log_prompts=True)
    response = await service.run({"prompt": "Open the form page and say what it is", "model": "gpt-4o-mini",
                                  "start_url": f"{site_url}/index.html"})
    assert response.status == "success"
    run_id = response.task_run_id
    assert run_id is not None
    traces = await service.traces(run_id)
    sent = fake.requests  # what the model server really received, in order
    assert [(t["step"], t["purpose"]) for t in traces] == [(2, "step"), (3, "step"), (3, "extract"), (4, "step")]
    assert len(sent) == 4
    for trace, body in zip(traces, sent):
        # The messages kept are the messages sent: system prompt, the step message, tool names.
        assert trace["messages"] == body["messages"]
        assert trace["system_prompt"] == (SYSTEM_PROMPT if trace["purpose"] == "step" else None)
        assert trace["tools"] == [t["function"]["name"] for t in body.get("tools") or []]
        assert trace["logged"] is True and trace["usage"]["prompt_chars"] == sum(
            len(m["content"]) for m in body["messages"])
    first = traces[0]
    # The observation is exactly the page part of the step message the model read.
    assert first["observation"] == PAGE_RE.search(last_user_text(sent[0])).group(1)  # type: ignore[union-attr]
    assert "[" in first["observation"] and "Form page" in first["observation"]
    # The reply as written: text, tool call arguments verbatim, finish reason, tokens.
    index = find_index(sent[0], "Form page", tag="a")
    assert (first["reply"], first["tool_calls"]) == ("Open the form page.", [
        {"id": first["tool_calls"][0]["id"], "name": "click", "arguments": RAW_ARGS % index}])
    assert first["usage"] | {"latency_ms": None, "cost_usd": None} == {
        "input_tokens": 100, "output_tokens": 20, "latency_ms": None, "cost_usd": None,
        "finish_reason": "tool_calls", "prompt_chars": first["usage"]["prompt_chars"]}
    assert first["usage"]["latency_ms"] > 0
    extract = traces[2]
    assert extract["reply"] == "The page is a form." and extract["tool_calls"] == []
    assert extract["usage"]["finish_reason"] == "stop" and extract["observation"] is None
    # One step's calls (a list when several), and they join the llm_calls rows one to one.
    assert [t["purpose"] for t in await service.traces(run_id, step=3)] == ["step", "extract"]
    assert stored(store, "SELECT count(*) FROM llm_calls c JOIN llm_traces t USING (run_id, seq, idx) "
                         "WHERE run_id = ?", [run_id]) == [(4,)]
    # The system prompt is stored once, whatever the number of steps and runs.
    await service.run({"prompt": "Open the form page and say what it is", "model": "gpt-4o-mini",
                       "start_url": f"{site_url}/index.html"})
    assert stored(store, "SELECT count(*), min(text) = ? FROM system_prompts", [SYSTEM_PROMPT]) == [(1, True)]
    assert stored(store, "SELECT count(DISTINCT system_hash), count(*) FROM llm_traces WHERE system_hash IS NOT NULL") \
        == [(1, 6)]
    await service.close()
    # The Parquet export carries them too (partitioned by their run's day, like every child table).
    import pandas as pd

    out = store.data_dir.parent / "export"
    store.export_parquet(out)
    assert len(pd.read_parquet(out / "llm_traces")) == 8 and len(pd.read_parquet(out / "system_prompts")) == 1


async def test_the_system_prompt_is_extended_or_replaced_and_recorded(fake: FakeLLM, browser: Browser,
                                                                      store: Store, site_url: str) -> None:
    service = RunService(store, browser, data_dir=store.data_dir)
    extended = await service.run({"prompt": "Open the form page and say what it is", "model": "gpt-4o-mini",
                                  "start_url": f"{site_url}/index.html",
                                  "extend_system_message": "Always answer in French."})
    assert fake.requests[0]["messages"][0]["content"] == SYSTEM_PROMPT + "\n\nAlways answer in French."
    fake.reset()
    replaced = await service.run({"prompt": "Open the form page and say what it is", "model": "gpt-4o-mini",
                                  "start_url": f"{site_url}/index.html",
                                  "override_system_message": "You are a terse agent.",
                                  "extend_system_message": "Never scroll."})
    assert {b["messages"][0]["content"] for b in fake.requests if b.get("tools")} == {
        "You are a terse agent.\n\nNever scroll."}
    # Recorded with the run (and so carried by "Run again" and POST /api/tasks/{id}/runs).
    for response, fields in ((extended, {"extend_system_message": "Always answer in French."}),
                             (replaced, {"extend_system_message": "Never scroll.",
                                         "override_system_message": "You are a terse agent."})):
        request = await service.run_request(response.task_run_id or 0)
        assert request is not None
        assert {k: v for k, v in request.model_dump().items() if k.endswith("_system_message") and v} == fields
    assert stored(store, "SELECT count(*) FROM system_prompts") == [(2,)]
    await service.close()


def test_bad_system_messages_are_named() -> None:
    from pydantic import ValidationError

    from agent.models import validation_errors

    with pytest.raises(ValidationError) as caught:
        RunRequest(prompt="find a cable", extend_system_message="x" * 50_001, override_system_message=7)  # type: ignore[arg-type]
    assert {e["field"] for e in validation_errors(caught.value)} == {"extend_system_message",
                                                                      "override_system_message"}
    # Blank means "none": the default prompt.
    assert RunRequest(prompt="find a cable", extend_system_message="  ").extend_system_message is None


async def test_log_prompts_off_keeps_usage_and_timing_only(fake: FakeLLM, browser: Browser, store: Store,
                                                          site_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_PROMPTS", "0")
    service = RunService(store, browser, data_dir=store.data_dir)
    assert service.log_prompts is False
    seen: list[Any] = []
    service._observers.observers.append(lambda run_id, event: seen.append(event))  # what every observer gets
    response = await service.run({"prompt": "Open the form page and say what it is", "model": "gpt-4o-mini",
                                  "start_url": f"{site_url}/index.html"})
    traces = await service.traces(response.task_run_id or 0)
    assert [(t["logged"], t["messages"], t["reply"], t["tool_calls"], t["observation"]) for t in traces] == [
        (False, [], None, [], None)] * 4
    assert [t["usage"]["finish_reason"] for t in traces] == ["tool_calls", "tool_calls", "stop", "tool_calls"]
    assert all(t["usage"]["input_tokens"] > 0 and t["usage"]["latency_ms"] > 0 for t in traces)
    assert stored(store, "SELECT count(*) FROM llm_traces") == [(0,)]
    assert stored(store, "SELECT count(*) FROM system_prompts") == [(0,)]
    steps = [e for e in seen if isinstance(e, StepFinished)]
    assert steps and all(not t.logged and t.messages == [] for e in steps for t in e.traces)
    await service.close()
    monkeypatch.setenv("LOG_PROMPTS", "maybe")
    with pytest.raises(ValueError, match="LOG_PROMPTS='maybe' is not a switch; set it to 1"):
        RunService(store, browser, data_dir=store.data_dir)


async def test_secrets_and_images_stay_out_of_the_trace(fake_llm: FakeLLM, browser: Browser, store: Store,
                                                        site_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "tok-5f9a2c7e1b3d4f6a8c0e"
    monkeypatch.setenv("SHOP_TOKEN", secret)
    fake_llm.reset(lambda body: reply(f"Done with {secret}.", call("done", text="ok", success=True)))
    service = RunService(store, browser, data_dir=store.data_dir)
    response = await service.run({"prompt": f"Log in with {secret} and look", "model": "gpt-4o",
                                  "start_url": f"{site_url}/index.html", "use_vision": True})
    assert secret in json.dumps(fake_llm.requests[-1])  # the model saw it (the task named it) ...
    [trace] = await service.traces(response.task_run_id or 0, step=2)
    text = json.dumps(trace, default=str)
    assert secret not in text and "[redacted]" in text  # ... the log did not keep it
    # The screenshot went to the model as an image; the trace refers to the step's screenshot instead.
    user = trace["messages"][1]["content"]
    assert [p["type"] for p in user] == ["text", "image"] and user[1] == {"type": "image", "screenshot_step": 2}
    assert "Test site" in trace["observation"]  # still located after the scrub shifted the text
    assert user[0]["text"].endswith(trace["observation"] + "\n</page>\nStep 2 of at most 25.")
    raw = (store.data_dir / "runs.duckdb").read_bytes() + b"".join(
        p.read_bytes() for p in store.data_dir.glob("*.wal"))
    assert secret.encode() not in raw and b"data:image/jpeg;base64" not in raw
    await service.close()


async def test_two_runs_compare_step_by_step_in_a_notebook(fake: FakeLLM, browser: Browser, store: Store,
                                                           site_url: str) -> None:
    from agent import analysis as an

    service = RunService(store, browser, data_dir=store.data_dir)
    request = {"prompt": "Open the form page and say what it is", "model": "gpt-4o-mini",
               "start_url": f"{site_url}/index.html"}
    a = await service.run(request)
    # The second run goes elsewhere at its second step: there they diverge.
    fake.reset(lambda body: reply("Open the links page.", call("click", index=find_index(body, "Links page", tag="a")))
               if STEP_RE.search(last_user_text(body)).group(1) == "2" else model(body))  # type: ignore[union-attr]
    b = await service.run(request)
    await service.close()
    store.publish_snapshot()
    con = an.connect(store.data_dir)
    try:
        df = an.compare(a.task_run_id, b.task_run_id, con=con)
        traces = an.traces(a.task_run_id, con=con)
    finally:
        con.close()
    assert list(df["position"]) == [1, 2, 3, 4]
    assert list(df["same"]) == [True, False, False, False] and list(df["diverges"]) == [False, True, False, False]
    assert df.attrs["first_divergence"] == 2
    assert list(df["a_goal"]) == ["Open the start page", "Open the form page.", "Read what the page is.", "Report it."]
    assert df.loc[1, "b_goal"] == "Open the links page." and df.loc[1, "b_actions"].startswith("click {")
    assert list(df["a_url"]) == [f"{site_url}/index.html"] * 2 + [f"{site_url}/form.html"] * 2
    assert list(df["b_url"]) == [f"{site_url}/index.html"] * 2 + [f"{site_url}/links.html"] * 2
    assert df.loc[1, "a_input_tokens"] == 100 and df.loc[2, "a_input_tokens"] == 150  # a step call + an extract
    assert Path(df.loc[1, "a_screenshot"]).is_file()
    totals = df.attrs["totals"]
    assert list(totals.columns) == [f"run {a.task_run_id}", f"run {b.task_run_id}"]
    assert totals.loc["status"].tolist() == ["success", "success"]
    assert totals.loc["steps"].tolist() == [4, 4]
    assert totals.loc["input tokens"].tolist() == [a.usage.input_tokens, b.usage.input_tokens] and a.usage.input_tokens == 350
    # The trace from a notebook: what the model saw, per call.
    assert list(traces["purpose"]) == ["step", "step", "extract", "step"]
    assert "Form page" in traces.loc[0, "observation"] and traces.loc[0, "system_prompt"] == SYSTEM_PROMPT
    with pytest.raises(ValueError, match="run 999 is not in the run log"):
        an.compare(a.task_run_id, 999, con=an.connect(store.data_dir))


def test_a_database_from_before_traces_is_migrated_and_still_reads(tmp_path: Path) -> None:
    from agent.log.migrations import MIGRATIONS, m006_traces, migrate

    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    older = [fn for fn in MIGRATIONS if fn is not m006_traces]
    for fn in older:  # a log written before the traces existed
        fn(con)
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")
    con.executemany("INSERT INTO _migrations VALUES (?, now())", [[fn.__name__] for fn in older])
    con.execute("INSERT INTO tasks (prompt, request_json, created_at) VALUES ('t', '{}', now())")
    con.execute("INSERT INTO runs (task_id, status, mode, created_at, started_at, request_json) "
                "VALUES (1, 'success', 'agent', now(), now(), '{}')")
    con.execute("INSERT INTO llm_calls VALUES (1, 0, 1, 0, 'openai/o3', 'openai', 'step', now(), 900, 10, 2, NULL, "
                "'stop', NULL)")
    assert migrate(con) == ["m006_traces"]
    # An old call shows in the traces view with its usage, and says its content was not kept.
    assert con.execute("SELECT logged, input_tokens, finish_reason, messages_json FROM v_llm_traces").fetchall() == [
        (False, 10, "stop", None)]
    con.close()


def test_history_filters_by_stop_reason(tmp_path: Path) -> None:
    """The runs filter on runs.stop_reason, list it and offer the values present in the log."""
    from agent.filters import RunFilter
    from agent.models import RunFinished, RunResponse

    data = tmp_path / "data"
    store = Store(data, snapshot_interval_s=None)
    ids = []
    for prompt in ("find a cable", "find a charger"):
        request = RunRequest(prompt=prompt)
        run_id = store.create_run(store.create_task(request), request)
        store.record(run_id, RunFinished(response=RunResponse(status="failure", error="x")))
        ids.append(run_id)
    assert store.runs_summary()["stop_reasons"] == []  # runs that say no reason offer none
    store.close()
    con = duckdb.connect(str(data / "runs.duckdb"))
    con.execute("UPDATE runs SET stop_reason = CASE WHEN id = ? THEN 'max_steps' ELSE 'done' END", [ids[1]])
    con.close()
    store = Store(data, snapshot_interval_s=None)
    rows, total = store.list_runs(RunFilter(stop_reason="max_steps"))
    assert (total, [(r["id"], r["stop_reason"]) for r in rows]) == (1, [(ids[1], "max_steps")])
    assert store.runs_summary(RunFilter(q="cable"))["stop_reasons"] == ["done", "max_steps"]  # whatever the filter
    assert store.runs_summary(RunFilter(stop_reason="done"))["runs"] == 1
    store.close()


def test_the_compare_view_shows_the_stop_reason_when_runs_carry_one() -> None:
    from agent.ui.compare import parse_pair, render_compare_html

    base = {"status": "failure", "history": [], "usage": {"input_tokens": 1200, "output_tokens": 30, "cost_usd": 0.5}}
    html = render_compare_html({**base, "task_run_id": 3, "stop_reason": "max_steps"},
                               {**base, "task_run_id": 4, "error": "<b>bad</b>"})
    assert '<tr data-total="stop_reason"><td>stop reason</td><td>max_steps</td><td>–</td></tr>' in html
    assert "&lt;b&gt;bad&lt;/b&gt;" in html and "<b>bad</b>" not in html  # escaped
    assert '<tr data-total="input_tokens"><td>input tokens</td><td>1,200</td><td>1,200</td></tr>' in html
    assert 'data-first-divergence=""' in html  # two empty histories never diverge
    assert [parse_pair(x) for x in ("12,15", " 12 , 15 ", "12", "a,b", "1,2,3", "0,4")] == [
        (12, 15), (12, 15), None, None, None, None]
