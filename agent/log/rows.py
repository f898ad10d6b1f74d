"""The run log's rows, by column name: records written and read back, the runs filters, the traces.

A row and a record meet by name: the column `x` holds the record's field `x`, the column `x_json`
holds field `x` as JSON, and `RENAMED` lists the few that differ. Which columns a table has is read
from the database (its migrations made it), so a new column that a record's field of the same name
fills is written and read back without a line here. Text is scrubbed of secrets on its way in.

Functions here take the Store's connection and run under the Store's lock; they never open,
begin or commit anything themselves.
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import duckdb
from pydantic import BaseModel

from agent.filters import MATCHED_APART, RunFilter
from agent.log.redact import dumps, scrub
from agent.models import ActionResult, HistoryItem, LLMCall, RunResponse, Usage, message_text

__all__ = [
    "RENAMED",
    "RUNS_FROM",
    "RUN_EXPERIMENT_COLS",
    "RUN_LIST_COLS",
    "Plan",
    "RunRows",
    "dicts",
    "fetch_playground",
    "fork_counts",
    "fetch_run",
    "fetch_traces",
    "insert_row",
    "insert_sql",
    "loads",
    "observation_of",
    "plan",
    "record",
    "run_filter",
    "run_response",
    "scalar",
    "table_columns",
    "trace_dict",
    "values",
    "workflow",
]

Connection = duckdb.DuckDBPyConnection
M = TypeVar("M", bound=BaseModel)

# Columns whose record field has another name (column -> field).
RENAMED = {"screenshot_path": "screenshot"}
# What the runs list shows of each run (the history's table), not every column.
RUN_LIST_COLS = (
    "id", "task_id", "status", "prompt", "provider", "model", "mode", "steps", "duration_ms",
    "cost_usd", "started_at", "error", "stop_reason", "parent_run_id", "forked_at_step",
)


# ------------------------------------------------------------------ filtering runs
# The runs as the history lists and filters them: each with the experiment cell it played, if any.
RUNS_FROM = "runs LEFT JOIN v_run_experiments x ON x.run_id = runs.id"
# What the runs list adds to each run from that cell.
RUN_EXPERIMENT_COLS = ("x.experiment_id", "x.experiment_name", "x.variant")
STOP_REASONS_SQL = "SELECT DISTINCT stop_reason FROM runs WHERE stop_reason IS NOT NULL ORDER BY 1"
# Runs in progress have no outcome yet: the success rate counts finished runs only. A success is what was
# graded (a person's review, the run's check or judge: v_run_grades), the agent's own claim only where nothing
# graded it; `graded` says how many finished runs a grade decided, `claimed_successes` what the agents claimed.
SUMMARY_SQL = f"""
    SELECT count(*) AS runs,
           count(*) FILTER (WHERE status <> 'in_progress') AS finished,
           count(*) FILTER (WHERE graded_passed) AS successes,
           count(*) FILTER (WHERE graded_passed) / nullif(count(*) FILTER (WHERE status <> 'in_progress'), 0)
               AS success_rate,
           count(*) FILTER (WHERE graded_source IN ('person', 'judge', 'check')) AS graded,
           count(*) FILTER (WHERE status = 'success') AS claimed_successes,
           coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
           coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
           coalesce(sum(cost_usd), 0) AS cost_usd
    FROM {RUNS_FROM} LEFT JOIN (SELECT run_id AS graded_run, passed AS graded_passed, graded_by AS graded_source
                               FROM v_run_grades) g ON g.graded_run = runs.id
    {{where}}
"""
# The history's review filter (RunFilter.review): a review is a person's grading (agent.log.grades).
REVIEW_SQL = {
    "queue": "id IN (SELECT run_id FROM v_review_queue)",
    "reviewed": "id IN (SELECT run_id FROM gradings WHERE kind = 'person')",
    "unreviewed": "status <> 'in_progress' AND id NOT IN (SELECT run_id FROM gradings WHERE kind = 'person')",
}


def _like(text: str) -> str:
    """`text` as an ILIKE pattern that matches it anywhere, its own % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def run_filter(filters: RunFilter | None) -> tuple[str, list[Any]]:
    """The WHERE clause and parameters of the runs filters over RUNS_FROM (fields left None filter nothing;
    None is RunFilter()'s defaults: experiments' runs left out)."""
    where: list[str] = []
    params: list[Any] = []
    given = (filters or RunFilter()).model_dump(exclude_none=True)
    # A field is an exact match on the column of its name (of `runs`, or of the run's experiment cell), unless
    # RunFilter says otherwise.
    for col, value in given.items():
        if col not in MATCHED_APART:
            where.append(f"{col} = ?")
            params.append(value)
    if "q" in given:
        where.append("(prompt ILIKE ? ESCAPE '\\' OR CAST(result_json AS VARCHAR) ILIKE ? ESCAPE '\\' "
                     "OR error ILIKE ? ESCAPE '\\')")
        params += [_like(given["q"])] * 3
    if "model_contains" in given:
        where.append("model ILIKE ? ESCAPE '\\'")
        params.append(_like(given["model_contains"]))
    # Days are UTC days, as in the views' `day` column.
    if "since" in given:
        where.append("CAST(timezone('UTC', started_at) AS DATE) >= ?")
        params.append(given["since"])
    if "until" in given:
        where.append("CAST(timezone('UTC', started_at) AS DATE) <= ?")
        params.append(given["until"])
    # Experiments' runs only when asked for, or when a filter names an experiment, a variant or a review state
    # (the runs to review are mostly experiments' judged cells: the history's queue is the review queue).
    if not given.get("include_experiments") and not {"experiment_id", "variant", "review"} & given.keys():
        where.append("x.experiment_id IS NULL")
    if "review" in given:
        where.append(REVIEW_SQL[given["review"]])
    return ("WHERE " + " AND ".join(where)) if where else "", params


def fork_counts(con: Connection, run_ids: Sequence[int]) -> dict[int, int]:
    """How many forks each of `run_ids` has (a page of the history: one scan of parent_run_id, not one per run;
    a correlated count would aggregate the whole table for every page)."""
    if not run_ids:
        return {}
    found = con.execute(f"SELECT parent_run_id, count(*) FROM runs WHERE parent_run_id IN "
                        f"({', '.join('?' * len(run_ids))}) GROUP BY parent_run_id", list(run_ids)).fetchall()
    return {int(parent): int(n) for parent, n in found}


_INSERT_SQL: dict[tuple[str, tuple[str, ...], int], str] = {}


def insert_sql(table: str, cols: Sequence[str], rows: int) -> str:
    """A multi-row INSERT (one statement per batch: DuckDB's executemany is row by row)."""
    key = (table, tuple(cols), rows)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        one = "(" + ", ".join("?" * len(cols)) + ")"
        # Quoted: a column may be named by an SQL keyword (webhook_deliveries."at").
        names = ", ".join(f'"{c}"' for c in cols)
        sql = f"INSERT INTO {table} ({names}) VALUES " + ", ".join([one] * rows)
        _INSERT_SQL[key] = sql
    return sql


def dicts(cursor: Connection) -> list[dict[str, Any]]:
    """The cursor's remaining rows as dicts keyed by column name."""
    names = [d[0] for d in cursor.description or ()]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def scalar(con: Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row of `sql`; None if there is no row."""
    row = con.execute(sql, params).fetchone()
    return None if row is None else row[0]


def loads(text: str | None) -> Any:
    """A *_json column's value, None staying None."""
    return None if text is None else json.loads(text)


def workflow(row: dict[str, Any]) -> dict[str, Any]:
    """A workflows row with its document parsed (`document` instead of `document_json`)."""
    row = dict(row)
    row["document"] = json.loads(row.pop("document_json"))
    return row


# ------------------------------------------------------------------ records <-> rows, by name
# Per connection, the columns of each table (the schema only changes while migrating, before any write).
_COLUMNS: weakref.WeakKeyDictionary[Connection, dict[str, tuple[str, ...]]] = weakref.WeakKeyDictionary()


def table_columns(con: Connection, table: str) -> tuple[str, ...]:
    """The columns of `table` in the connection's database, in order (read once per connection)."""
    known = _COLUMNS.setdefault(con, {})
    cols = known.get(table)
    if cols is None:
        cols = tuple(r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() "
            "AND table_schema = 'main' AND table_name = ? ORDER BY ordinal_position", [table]).fetchall())
        if not cols:
            raise LookupError(f"the run log has no table {table!r}; is the database migrated?")
        known[table] = cols
    return cols


def _field_of(col: str, model: type[BaseModel]) -> tuple[str, bool] | None:
    """(field, held as JSON) of the record field column `col` holds; None if it holds none."""
    fields = model.model_fields
    if col in RENAMED and RENAMED[col] in fields:
        return RENAMED[col], False
    if col in fields:
        return col, False
    if col.endswith("_json") and col[:-5] in fields:
        return col[:-5], True
    return None


class Plan(NamedTuple):
    """How to write one kind of record into a table: the columns, and for each the field it takes."""

    table: str
    cols: tuple[str, ...]
    slots: tuple[tuple[str, str | None, bool], ...]  # (column, field or None when given, as JSON)


def plan(con: Connection, table: str, model: type[BaseModel], given: Iterable[str] = (), *,
         exclude: Iterable[str] = ()) -> Plan:
    """The columns of `table` a `model` record fills (by name) or the caller gives, minus `exclude`."""
    return _plan(table, table_columns(con, table), model, frozenset(given), frozenset(exclude))


@functools.cache
def _plan(table: str, cols: tuple[str, ...], model: type[BaseModel], given: frozenset[str],
          exclude: frozenset[str]) -> Plan:
    slots: list[tuple[str, str | None, bool]] = []
    for col in cols:
        if col in exclude:
            continue
        if col in given:
            slots.append((col, None, False))
        elif (found := _field_of(col, model)) is not None:
            slots.append((col, *found))
    return Plan(table, tuple(s[0] for s in slots), tuple(slots))


def values(how: Plan, item: BaseModel, secrets: Sequence[str], given: Mapping[str, Any]) -> list[Any]:
    """The row of `item` in `how`'s column order: `given` values as they are, fields scrubbed (JSON ones dumped)."""
    out: list[Any] = []
    for col, field, as_json in how.slots:
        if field is None:
            out.append(given[col])
            continue
        value = getattr(item, field)
        if as_json:
            value = None if value is None else dumps(value, secrets)
        elif isinstance(value, str):
            value = scrub(value, secrets)
        out.append(value)
    return out


def insert_row(con: Connection, table: str, row: Mapping[str, Any], *, returning: str | None = None) -> Any:
    """Insert one row given by column name; the `returning` column's value (e.g. the new id), if asked."""
    sql = insert_sql(table, tuple(row), 1)
    if returning is None:
        con.execute(sql, list(row.values()))
        return None
    return scalar(con, f"{sql} RETURNING {returning}", list(row.values()))


def record(model: type[M], row: Mapping[str, Any], **given: Any) -> M:
    """A `model` record from a row by column name (`given` fields first); a NULL column leaves the field's default."""
    fields: dict[str, Any] = {}
    for col, (field, as_json) in _reading(model, tuple(row)):
        value = row[col]
        if value is not None:
            fields[field] = json.loads(value) if as_json else value
    return model(**{**fields, **given})


@functools.cache
def _reading(model: type[BaseModel], cols: tuple[str, ...]) -> tuple[tuple[str, tuple[str, bool]], ...]:
    return tuple((col, found) for col in cols if (found := _field_of(col, model)) is not None)


# ------------------------------------------------------------------ reading a run back
class RunRows(NamedTuple):
    """A run's row and its children's rows (by column name), read in one go under the store's lock."""

    run: dict[str, Any]
    steps: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    calls: list[dict[str, Any]]


def fetch_run(con: Connection, run_id: int) -> RunRows | None:
    """The rows of run `run_id`, children in order; None if unknown."""
    run = dicts(con.execute("SELECT * FROM runs WHERE id = ?", [run_id]))
    if not run:
        return None
    steps = dicts(con.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY seq", [run_id]))
    actions = dicts(con.execute("SELECT * FROM actions WHERE run_id = ? ORDER BY seq, idx", [run_id]))
    calls = dicts(con.execute("SELECT * FROM llm_calls WHERE run_id = ? ORDER BY seq, idx", [run_id]))
    return RunRows(run[0], steps, actions, calls)


def run_response(run_id: int, rows: RunRows) -> RunResponse:
    """The run as the contract's response, rebuilt from its rows (outside the lock: pure)."""
    actions = _by_seq(ActionResult, rows.actions)
    calls = _by_seq(LLMCall, rows.calls)
    history = [record(HistoryItem, step, actions=actions.get(step["seq"], []), llm_calls=calls.get(step["seq"], []))
               for step in rows.steps]
    # Calls that used tokens without a price keep the run's cost unknown (None, a NULL column), never 0.
    unpriced = sum(1 for item in history for c in item.llm_calls
                   if c.cost_usd is None and (c.input_tokens or c.output_tokens))
    return record(RunResponse, rows.run, task_run_id=run_id, history=history,
                  usage=record(Usage, rows.run, unpriced_calls=unpriced, cost_usd=rows.run["cost_usd"]))


def _by_seq(model: type[M], found: Iterable[dict[str, Any]]) -> dict[int, list[M]]:
    """Records of a step's children, grouped by the step's `seq` (in the rows' order)."""
    out: dict[int, list[M]] = {}
    for row in found:
        out.setdefault(row["seq"], []).append(record(model, row))
    return out


# ------------------------------------------------------------------ traces
_TRACE_SQL = """
    SELECT step, seq, idx, purpose, provider, model, started_at, latency_ms, input_tokens, output_tokens,
           cost_usd, finish_reason, error, logged, prompt_chars, system_prompt, messages_json, tools,
           reply_text, tool_calls_json, observation_start, observation_end
    FROM v_llm_traces WHERE run_id = ? {step} ORDER BY seq, idx
"""
# Calls asked again at a step (the playground) are the prompt engineer's, not the run's.
_PLAYGROUND = "'playground'"


def fetch_traces(con: Connection, run_id: int, step: int | None = None) -> list[dict[str, Any]]:
    """The traces of a run's own model calls (of one step, by its number), in order, as plain dicts."""
    where = f"AND purpose <> {_PLAYGROUND}" + (" AND step = ?" if step is not None else "")
    params = [run_id, step] if step is not None else [run_id]
    return [trace_dict(r) for r in dicts(con.execute(_TRACE_SQL.format(step=where), params))]


def fetch_playground(con: Connection, run_id: int, step: int) -> list[dict[str, Any]]:
    """The calls asked again at a run's step, newest question first (each question's samples in order)."""
    # Each question has its own seq, going down from -1: ordered by seq, the newest question comes first.
    sql = _TRACE_SQL.format(step=f"AND purpose = {_PLAYGROUND} AND step = ?")
    return [trace_dict(r) for r in dicts(con.execute(sql, [run_id, step]))]


def trace_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A v_llm_traces row as the trace route answers: what the model saw and said, and what it cost."""
    messages = loads(row["messages_json"]) or []
    system = row["system_prompt"]
    observation = observation_of(messages, row["observation_start"], row["observation_end"])
    return {
        "step": row["step"], "seq": row["seq"], "idx": row["idx"], "purpose": row["purpose"],
        "provider": row["provider"], "model": row["model"], "started_at": row["started_at"],
        "logged": row["logged"], "system_prompt": system,
        "messages": ([{"role": "system", "content": system}] if system is not None else []) + messages,
        "tools": [] if row["tools"] is None else list(row["tools"]),
        "reply": row["reply_text"], "tool_calls": loads(row["tool_calls_json"]) or [],
        "observation": observation, "error": row["error"],
        "usage": {"input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"],
                  "latency_ms": row["latency_ms"], "cost_usd": row["cost_usd"],
                  "finish_reason": row["finish_reason"], "prompt_chars": row["prompt_chars"]},
    }


def observation_of(messages: Any, start: Any, end: Any) -> str | None:
    """The page observation cut out of the last message (`messages` as stored, or already parsed)."""
    if isinstance(messages, str):
        messages = json.loads(messages)
    if not messages or not isinstance(start, int) or not isinstance(end, int):
        return None  # also a DataFrame's NaN for "not kept"
    return message_text(messages[-1])[start:end]
