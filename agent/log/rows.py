"""The run log's rows: column lists, multi-row INSERTs, and a run read back as the contract's response.

Functions here take the Store's connection and run under the Store's lock; they never open,
begin or commit anything themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any, NamedTuple

import duckdb

from agent.models import ActionResult, HistoryItem, LLMCall, RunResponse, Usage, message_text

__all__ = [
    "ACTION_COLS",
    "LLM_COLS",
    "RUN_LIST_COLS",
    "STEP_COLS",
    "TRACE_COLS",
    "WEBHOOK_COLS",
    "WORKFLOW_COLS",
    "RunRows",
    "run_filter",
    "dicts",
    "fetch_run",
    "fetch_traces",
    "observation_of",
    "insert_sql",
    "loads",
    "run_response",
    "scalar",
    "trace_dict",
    "workflow",
]

Connection = duckdb.DuckDBPyConnection

STEP_COLS = (
    "run_id", "seq", "step", "description", "url", "title", "screenshot_path", "started_at",
    "finished_at", "duration_ms", "llm_ms", "browser_ms", "own_ms", "executed_by", "actions", "llm_calls",
)
ACTION_COLS = (
    "run_id", "seq", "step", "idx", "name", "params_json", "success", "is_done", "error",
    "extracted_content", "include_in_memory", "locators_json", "data_json", "executed_by",
    "duration_ms", "created_at",
)
LLM_COLS = (
    "run_id", "seq", "step", "idx", "model", "provider", "purpose", "started_at", "latency_ms",
    "input_tokens", "output_tokens", "cost_usd", "finish_reason", "error",
)
TRACE_COLS = (
    "run_id", "seq", "step", "idx", "system_hash", "messages_json", "tools", "reply_text",
    "tool_calls_json", "observation_start", "observation_end", "prompt_chars",
)
RUN_LIST_COLS = (
    "id", "task_id", "status", "prompt", "provider", "model", "mode", "steps", "duration_ms",
    "cost_usd", "started_at", "error", "stop_reason",
)
WORKFLOW_COLS = (
    "id", "version", "name", "prompt", "document_json", "created_at", "source_run_id",
    "healed_from_version",
)
WEBHOOK_COLS = (
    "id", "run_id", "url", "attempt", '"at"', "status_code", "ok", "error", "duration_ms", "event",
)
_RUN_COLS = (
    "task_id", "status", "error", "stop_reason", "mode", "provider", "model", "started_at", "finished_at",
    "duration_ms", "llm_calls", "input_tokens", "output_tokens", "cost_usd", "is_done",
    "is_successful", "result_json", "workflow_id", "replayed_steps", "healed_steps", "notes_json",
)

# ------------------------------------------------------------------ filtering runs
STOP_REASONS_SQL = "SELECT DISTINCT stop_reason FROM runs WHERE stop_reason IS NOT NULL ORDER BY 1"
# Runs in progress have no outcome yet: the success rate counts finished runs only.
SUMMARY_SQL = """
    SELECT count(*) AS runs,
           count(*) FILTER (WHERE status <> 'in_progress') AS finished,
           count(*) FILTER (WHERE status = 'success') AS successes,
           count(*) FILTER (WHERE status = 'success') / nullif(count(*) FILTER (WHERE status <> 'in_progress'), 0)
               AS success_rate,
           coalesce(sum(input_tokens), 0)::BIGINT AS input_tokens,
           coalesce(sum(output_tokens), 0)::BIGINT AS output_tokens,
           coalesce(sum(cost_usd), 0) AS cost_usd
    FROM runs {where}
"""


def _like(text: str) -> str:
    """`text` as an ILIKE pattern that matches it anywhere, its own % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def run_filter(
    *, status: str | None = None, provider: str | None = None, model: str | None = None, task_id: int | None = None,
    q: str | None = None, model_contains: str | None = None, stop_reason: str | None = None,
    since: date | None = None, until: date | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause and parameters of the runs filters (None: no filter)."""
    where: list[str] = []
    params: list[Any] = []
    for col, value in (("status", status), ("provider", provider), ("model", model), ("task_id", task_id),
                       ("stop_reason", stop_reason)):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    if q:
        where.append("(prompt ILIKE ? ESCAPE '\\' OR CAST(result_json AS VARCHAR) ILIKE ? ESCAPE '\\' "
                     "OR error ILIKE ? ESCAPE '\\')")
        params += [_like(q)] * 3
    if model_contains:
        where.append("model ILIKE ? ESCAPE '\\'")
        params.append(_like(model_contains))
    # Days are UTC days, as in the views' `day` column.
    if since is not None:
        where.append("CAST(timezone('UTC', started_at) AS DATE) >= ?")
        params.append(since)
    if until is not None:
        where.append("CAST(timezone('UTC', started_at) AS DATE) <= ?")
        params.append(until)
    return ("WHERE " + " AND ".join(where)) if where else "", params


_INSERT_SQL: dict[tuple[str, int], str] = {}


def insert_sql(table: str, cols: Sequence[str], rows: int) -> str:
    """A multi-row INSERT (one statement per batch: DuckDB's executemany is row by row)."""
    key = (table, rows)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        one = "(" + ", ".join("?" * len(cols)) + ")"
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES " + ", ".join([one] * rows)
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


# ------------------------------------------------------------------ reading a run back
class RunRows(NamedTuple):
    """A run's row and its children's rows, read in one go under the store's lock."""

    run: tuple[Any, ...]
    steps: list[tuple[Any, ...]]
    actions: list[tuple[Any, ...]]
    calls: list[tuple[Any, ...]]


def fetch_run(con: Connection, run_id: int) -> RunRows | None:
    """The rows of run `run_id`, children in order; None if unknown."""
    run = con.execute(f"SELECT {', '.join(_RUN_COLS)} FROM runs WHERE id = ?", [run_id]).fetchone()
    if run is None:
        return None
    steps = con.execute(
        f"SELECT {', '.join(STEP_COLS[1:])} FROM steps WHERE run_id = ? ORDER BY seq", [run_id]
    ).fetchall()
    actions = con.execute(
        f"SELECT {', '.join(ACTION_COLS[1:])} FROM actions WHERE run_id = ? ORDER BY seq, idx", [run_id]
    ).fetchall()
    calls = con.execute(
        f"SELECT {', '.join(LLM_COLS[1:])} FROM llm_calls WHERE run_id = ? ORDER BY seq, idx", [run_id]
    ).fetchall()
    return RunRows(run, steps, actions, calls)


def run_response(run_id: int, rows: RunRows) -> RunResponse:
    """The run as the contract's response, rebuilt from its rows (outside the lock: pure)."""
    actions = _actions_by_seq(rows.actions)
    calls = _calls_by_seq(rows.calls)
    history = [
        HistoryItem(
            description=description, actions=actions.get(seq, []), step=step, url=url,
            title=title, screenshot=screenshot, started_at=started_at, duration_ms=duration_ms,
            llm_ms=llm_ms, browser_ms=browser_ms, own_ms=own_ms, llm_calls=calls.get(seq, []),
            executed_by=executed_by,
        )
        for (seq, step, description, url, title, screenshot, started_at, _finished, duration_ms,
             llm_ms, browser_ms, own_ms, executed_by, _na, _nc) in rows.steps
    ]
    (task_id, status, error, stop_reason, mode, provider, model, started_at, finished_at, duration_ms,
     n_calls, tin, tout, cost, is_done, is_successful, result_json, workflow_id, replayed,
     healed, notes_json) = rows.run
    return RunResponse(
        task_id=task_id, task_run_id=run_id, history=history, result=loads(result_json),
        is_done=is_done, is_successful=is_successful, status=status, error=error, stop_reason=stop_reason, mode=mode,
        model=model, provider=provider, started_at=started_at, finished_at=finished_at,
        duration_ms=duration_ms,
        usage=Usage(llm_calls=n_calls, input_tokens=tin, output_tokens=tout, cost_usd=cost,
                    unpriced_calls=sum(1 for cs in calls.values() for c in cs
                                       if c.cost_usd is None and (c.input_tokens or c.output_tokens))),
        workflow_id=workflow_id, replayed_steps=replayed, healed_steps=healed, notes=loads(notes_json) or [],
    )


def _actions_by_seq(rows: Iterable[tuple[Any, ...]]) -> dict[int, list[ActionResult]]:
    out: dict[int, list[ActionResult]] = {}
    for (seq, _step, _idx, name, params, success, is_done, error, extracted, in_memory,
         locators, data, executed_by, duration_ms, _at) in rows:
        out.setdefault(seq, []).append(
            ActionResult(
                name=name, params=loads(params), is_done=is_done, success=success,
                extracted_content=extracted, error=error, include_in_memory=in_memory,
                locators=loads(locators), executed_by=executed_by, duration_ms=duration_ms,
                data=loads(data),
            )
        )
    return out


def _calls_by_seq(rows: Iterable[tuple[Any, ...]]) -> dict[int, list[LLMCall]]:
    out: dict[int, list[LLMCall]] = {}
    for (seq, _step, _idx, model, provider, purpose, started_at, latency_ms, tin, tout, cost,
         finish, error) in rows:
        out.setdefault(seq, []).append(
            LLMCall(
                model=model, provider=provider, purpose=purpose, started_at=started_at,
                latency_ms=latency_ms, input_tokens=tin, output_tokens=tout, cost_usd=cost,
                finish_reason=finish, error=error,
            )
        )
    return out


# ------------------------------------------------------------------ traces
_TRACE_SQL = """
    SELECT step, seq, idx, purpose, provider, model, started_at, latency_ms, input_tokens, output_tokens,
           cost_usd, finish_reason, error, logged, prompt_chars, system_prompt, messages_json, tools,
           reply_text, tool_calls_json, observation_start, observation_end
    FROM v_llm_traces WHERE run_id = ? {step} ORDER BY seq, idx
"""


def fetch_traces(con: Connection, run_id: int, step: int | None = None) -> list[dict[str, Any]]:
    """The traces of a run's model calls (of one step, by its number), in order, as plain dicts."""
    where, params = ("AND step = ?", [run_id, step]) if step is not None else ("", [run_id])
    return [trace_dict(r) for r in dicts(con.execute(_TRACE_SQL.format(step=where), params))]


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
