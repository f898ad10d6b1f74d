"""Rows by column name (agent.log.rows) and the history's filters (agent.filters.RunFilter).

A column added by a migration and a field of the same name on the record are all it takes for a
value to be written and read back; every filter of RunFilter filters the runs of a real store.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pydantic import ValidationError

from agent.filters import RunFilter
from agent.log import rows, writes
from agent.log.migrations import migrate
from agent.log.redact import REDACTED
from agent.log.store import Store
from agent.models import ActionResult, HistoryItem, LLMCall, LLMTrace, RunFinished, RunRequest, RunResponse

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SECRET = "tok-9f8e7d6c5b4a39281706"


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """A freshly migrated run log in memory."""
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    migrate(c)
    yield c
    c.close()


class Tagged(ActionResult):
    """An action record with two fields no migration knows yet (as if added to agent.models)."""

    colour: str | None = None
    tags: list[str] = []


def test_a_new_column_and_its_field_round_trip_by_name_alone(con: duckdb.DuckDBPyConnection) -> None:
    # The migration's part: two columns, at the end of the table (not where the fields sit in the model).
    con.execute("ALTER TABLE actions ADD COLUMN colour VARCHAR")
    con.execute("ALTER TABLE actions ADD COLUMN tags_json VARCHAR")
    how = rows.plan(con, "actions", Tagged, (*writes._CHILD_GIVEN, "created_at"))
    assert {"colour", "tags_json", "params_json", "locators_json", "name"} <= set(how.cols)
    item = Tagged(name="click", params={"index": 4}, success=True, extracted_content="clicked <b>", duration_ms=3.5,
                  locators={"css": "#buy"}, colour=f"teal {SECRET}", tags=["cart", "buy"])
    given = {"run_id": 1, "seq": 0, "step": 1, "idx": 0, "created_at": T0}
    con.execute(rows.insert_sql("actions", how.cols, 1), rows.values(how, item, [SECRET], given))

    stored = rows.dicts(con.execute("SELECT * FROM actions"))[0]
    assert (stored["colour"], stored["tags_json"], stored["created_at"]) == (f"teal {REDACTED}", '["cart","buy"]', T0)
    assert rows.record(Tagged, stored) == item.model_copy(update={"colour": f"teal {REDACTED}"})
    # The record the log knows today reads the same row, leaving the columns it has no field for.
    assert rows.record(ActionResult, stored) == ActionResult(**item.model_dump(exclude={"colour", "tags"}))


def test_a_null_column_leaves_the_field_s_default(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE actions ADD COLUMN colour VARCHAR")
    row = {"name": "wait", "params_json": "{}", "is_done": False, "colour": None, "tags_json": None, "seq": 0}
    assert rows.record(Tagged, row) == Tagged(name="wait", params={})


@pytest.mark.parametrize("table, model, given", [
    ("steps", HistoryItem, writes._STEP_GIVEN),
    ("actions", ActionResult, (*writes._CHILD_GIVEN, "created_at")),
    ("llm_calls", LLMCall, writes._CHILD_GIVEN),
    ("llm_traces", LLMTrace, writes._TRACE_GIVEN),
])
def test_every_column_of_a_step_s_rows_is_written(con: duckdb.DuckDBPyConnection, table: str, model: Any,
                                                  given: tuple[str, ...]) -> None:
    """A column no field fills (and the writer does not give) would stay NULL forever: name it."""
    how = rows.plan(con, table, model, given)
    missing = [c for c in rows.table_columns(con, table) if c not in how.cols]
    assert missing == [], (f"{table} columns {missing} are filled by no {model.__name__} field: add a field of "
                           "the column's name (x_json for JSON) to the model, or give it in agent/log/writes.py")


def test_a_run_s_end_writes_every_response_field_that_has_a_column(con: duckdb.DuckDBPyConnection) -> None:
    how = rows.plan(con, "runs", RunResponse, writes._FINISH_GIVEN, exclude=writes._NOT_AT_FINISH)
    assert set(how.cols) == {
        "status", "error", "stop_reason", "mode", "provider", "model", "started_at", "finished_at", "duration_ms",
        "llm_calls", "input_tokens", "output_tokens", "cost_usd", "is_done", "is_successful", "result_json",
        "workflow_id", "replayed_steps", "healed_steps", "notes_json", "parent_run_id", "forked_at_step"}


# ------------------------------------------------------------------ the history's filters
@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data", snapshot_interval_s=None)
    yield s
    s.close()


def _run(store: Store, prompt: str, *, provider: str, model: str, status: str, stop_reason: str,
         day: datetime, fork: dict[str, int] | None = None) -> tuple[int, int]:
    request = RunRequest(prompt=prompt, provider=provider, model=model, fork=fork)
    task_id = store.create_task(request)
    run_id = store.create_run(task_id, request)
    store.record(run_id, RunFinished(response=RunResponse(
        status=status, stop_reason=stop_reason, is_done=status == "success", is_successful=status == "success",
        result={"answer": f"{prompt} answered"}, started_at=day, finished_at=day + timedelta(seconds=3))))
    return task_id, run_id


def test_every_run_filter_filters_the_runs(store: Store) -> None:
    first = _run(store, "find a usb-c cable", provider="openai", model="gpt-4.1-mini", status="success",
                 stop_reason="done", day=T0)
    second = _run(store, "find a charger", provider="anthropic", model="claude-sonnet-4-5", status="failure",
                  stop_reason="max_steps", day=T0 + timedelta(days=3), fork={"run_id": first[1], "step": 1})
    # A third run plays a cell of an experiment: left out of the list unless asked for.
    played = _run(store, "find a cable (experiment)", provider="openai", model="gpt-4.1-mini", status="success",
                  stop_reason="done", day=T0)
    exp_id = store.create_experiment(
        name="cables", task_set=None, repeats=1, concurrency=1, backend="local", spec={},
        tasks=[{"id": "cable", "title": None, "prompt": "find a cable", "check": None, "task": {}}],
        variants=[{"name": "B", "overrides": {}}])
    store.start_cell(exp_id, "cable", "B", 1, played[1])
    # One sample per field, each matching only the second run (or, for the experiment's fields, only the
    # experiment's run); a field without one fails here.
    samples: dict[str, Any] = {
        "status": "failure", "provider": "anthropic", "model": "claude-sonnet-4-5", "task_id": second[0],
        "parent_run_id": first[1],
        "q": "CHARGER", "model_contains": "SONNET", "stop_reason": "max_steps",
        "since": (T0 + timedelta(days=1)).date(), "until": None,
        "experiment_id": exp_id, "variant": "B", "include_experiments": None,
        "review": "queue",  # the second run's agent failed (max_steps) and nobody reviewed it: it is queued
    }
    unsampled = sorted(set(RunFilter.model_fields) - set(samples))
    assert unsampled == [], f"give RunFilter's new field(s) {unsampled} a sample value here"
    for field, value in samples.items():
        if value is None:
            continue
        expected = played[1] if field in ("experiment_id", "variant") else second[1]
        found, total = store.list_runs(RunFilter(**{field: value}))
        assert ([r["id"] for r in found], total) == ([expected], 1), field
        assert store.runs_summary(RunFilter(**{field: value}))["runs"] == 1, field
    found, total = store.list_runs(RunFilter(until=T0.date()))
    assert ([r["id"] for r in found], total) == ([first[1]], 1)
    assert store.list_runs(RunFilter(provider="openai", status="failure")) == ([], 0)  # filters together all hold
    assert store.list_runs()[1] == store.list_runs(RunFilter())[1] == 2
    # The switch: every run, each with its experiment and variant (None for a run of none).
    found, total = store.list_runs(RunFilter(include_experiments=True))
    assert total == 3 and store.runs_summary(RunFilter(include_experiments=True))["runs"] == 3
    assert [(r["id"], r["experiment_id"], r["experiment_name"], r["variant"]) for r in found] == [
        (played[1], exp_id, "cables", "B"), (second[1], None, None, None), (first[1], None, None, None)]
    assert store.list_runs(RunFilter(experiment_id=exp_id, variant="A")) == ([], 0)
    assert store.list_runs(RunFilter(experiment_id=exp_id + 1)) == ([], 0)
    # Reviewed, unreviewed: the first run reviewed (a person failed it), the second not; the queue leaves it out.
    store.review_run(first[1], reviewer="ana", passed=False, score=None, comment=None, source="body")
    assert [r["id"] for r in store.list_runs(RunFilter(review="reviewed"))[0]] == [first[1]]
    # (a review filter lists experiments' runs too: the played run is finished and unreviewed)
    assert [r["id"] for r in store.list_runs(RunFilter(review="unreviewed"))[0]] == [played[1], second[1]]
    assert [r["id"] for r in store.list_runs(RunFilter(review="queue"))[0]] == [second[1]]
    # The totals count what was graded: the first run said "success", the person said fail.
    assert (store.runs_summary()["successes"], store.runs_summary()["claimed_successes"]) == (0, 1)


def test_run_filter_refuses_what_no_run_can_match_and_reads_empty_boxes_as_none() -> None:
    with pytest.raises(ValidationError) as err:
        RunFilter(stop_reason="finished")
    assert "max_steps" in str(err.value)  # the values it takes
    with pytest.raises(ValidationError, match="status"):
        RunFilter(status="done")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        RunFilter(stauts="success")  # a misspelt filter is refused, never silently ignored
    assert RunFilter(q="", model_contains="", stop_reason="", variant="") == RunFilter()
    assert RunFilter(since=T0.date(), until=(T0 - timedelta(days=1)).date()).days_problem() == \
        "is after until (2026-03-02 > 2026-03-01); swap them"
    assert RunFilter(since=T0.date(), until=T0.date()).days_problem() is None
