"""The run log's write transactions, one function per kind of write.

Each is `fn(con, secrets, ...)`: the Store's connection and the secret values to scrub (the same
signature for all, so `Store._write(fn, ...)` runs any of them). Each runs inside the one
transaction the Store opened under its lock and never begins or commits anything itself. Every
text that may carry a secret goes through `agent.log.redact` on its way in.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

import duckdb

from agent.log.errors import InvalidQuery
from agent.log.redact import dumps, redact_url, request_json, scrub
from agent.log.rows import insert_row, insert_sql, plan, scalar, values
from agent.models import (
    ActionResult,
    HistoryItem,
    LLMCall,
    LLMTrace,
    RunFinished,
    RunRequest,
    RunResponse,
    RunStarted,
    Usage,
    message_text,
    utcnow,
)

__all__ = [
    "add_step",
    "add_traced_step",
    "check_run",
    "delete_workflow",
    "end_webhook",
    "redact_outbox_url",
    "fail_run",
    "finish_run",
    "insert_llm_call",
    "insert_playground",
    "insert_run",
    "insert_run_workflow",
    "insert_task",
    "insert_webhook_attempt",
    "insert_workflow",
    "mark_interrupted",
    "set_task_workflow",
    "start_run",
]

Connection = duckdb.DuckDBPyConnection
Secrets = Sequence[str]

_MARK_INTERRUPTED = """
    UPDATE runs SET status = 'failure', error = 'interrupted', stop_reason = 'interrupted', is_done = false,
        is_successful = false,
        finished_at = greatest(started_at, coalesce(
            (SELECT max(s.finished_at) FROM steps s WHERE s.run_id = runs.id), started_at)),
        duration_ms = 1000 * epoch(greatest(started_at, coalesce(
            (SELECT max(s.finished_at) FROM steps s WHERE s.run_id = runs.id), started_at)) - started_at)
    WHERE status = 'in_progress'
    RETURNING id
"""
# Columns the writer gives (where a row sits, what it counts); every other column takes the record's
# field of its name (agent.log.rows).
_CHILD_GIVEN = ("run_id", "seq", "step", "idx")
_STEP_GIVEN = ("run_id", "seq", "finished_at", "actions", "llm_calls")
_TRACE_GIVEN = (*_CHILD_GIVEN, "system_hash", "messages_json", "observation_start", "observation_end")
# A run's end writes every runs column that a RunResponse field of its name fills, except these:
# the task never changes, and a None in the response keeps what the run's start recorded.
_NOT_AT_FINISH = ("task_id",)
_KEPT_IF_NONE = ("model", "provider", "workflow_id", "parent_run_id", "forked_at_step")
# Computed here rather than taken from the response as it is.
_FINISH_GIVEN = ("started_at", "finished_at", "duration_ms", "notes_json", *Usage.model_fields)


def mark_interrupted(con: Connection, secrets: Secrets) -> list[int]:
    """End runs left in progress by a previous process (it crashed or was killed); their ids."""
    # The run ended at its last sign of life, not now: keeps durations honest.
    ended = sorted(r[0] for r in con.execute(_MARK_INTERRUPTED).fetchall())
    # Their end is a terminal status too: their webhooks are now owed.
    con.execute("UPDATE webhook_outbox SET state = 'pending' WHERE state = 'waiting' "
                "AND run_id NOT IN (SELECT id FROM runs WHERE status = 'in_progress')")
    return ended


# ------------------------------------------------------------------ tasks and runs
def insert_task(con: Connection, secrets: Secrets, request: RunRequest, workflow_id: int | None) -> int:
    """A new task for `request`; its id."""
    return scalar(
        con,
        "INSERT INTO tasks (prompt, request_json, created_at, workflow_id) VALUES (?, ?, ?, ?) RETURNING id",
        [scrub(request.prompt, secrets), request_json(request, secrets), utcnow(), workflow_id],
    )


def insert_run(con: Connection, secrets: Secrets, task_id: int, request: RunRequest, mode: str) -> int:
    """A new run of `task_id`, in progress and started now; its id."""
    if scalar(con, "SELECT 1 FROM tasks WHERE id = ?", [task_id]) is None:
        raise InvalidQuery(f"task {task_id} does not exist; create it with create_task(request) first")
    now = utcnow()
    run_id: int = insert_row(con, "runs", {
        "task_id": task_id, "status": "in_progress", "mode": mode, "provider": request.provider,
        "model": request.model, "prompt": scrub(request.prompt, secrets), "created_at": now, "started_at": now,
        "request_json": request_json(request, secrets), "workflow_id": request.workflow_id,
        "webhook_url": None if request.webhook_url is None else redact_url(request.webhook_url),
        "parent_run_id": request.fork.run_id if request.fork else None,
        "forked_at_step": request.fork.step if request.fork else None,
    }, returning="id")
    if request.webhook_url:  # owed once the run ends; the full URL is kept beside the database (Store)
        insert_row(con, "webhook_outbox", {
            "run_id": run_id, "url": redact_url(request.webhook_url), "delivery_id": uuid.uuid4().hex,
            "event": "run.finished", "state": "waiting", "created_at": now})
    return run_id


def check_run(con: Connection, secrets: Secrets, run_id: int) -> None:
    """InvalidQuery, naming the fix, unless run `run_id` exists."""
    _run_row(con, run_id, "1")


def _run_row(con: Connection, run_id: int, cols: str) -> tuple[Any, ...]:
    """`cols` of run `run_id`; InvalidQuery (naming the fix) if there is no such run."""
    row = con.execute(f"SELECT {cols} FROM runs WHERE id = ?", [run_id]).fetchone()
    if row is None:
        raise InvalidQuery(f"run {run_id} does not exist; create it with create_run(task_id, request) first")
    return row


def start_run(con: Connection, secrets: Secrets, run_id: int, event: RunStarted) -> None:
    """Note the engine's start: the model it resolved, the mode, the start time, and the prompt it runs
    under (a replay's says the parameter values it uses)."""
    updated = scalar(
        con,
        "UPDATE runs SET litellm_model = ?, mode = ?, started_at = ?, prompt = ?, request_json = ? "
        "WHERE id = ? RETURNING id",
        [event.model, event.mode, event.at, scrub(event.request.prompt, secrets),
         request_json(event.request, secrets), run_id],
    )
    if updated is None:
        check_run(con, secrets, run_id)


def add_step(con: Connection, secrets: Secrets, run_id: int, seq: int | None, item: HistoryItem, at: datetime) -> int:
    """Write one step (its actions and LLM calls) and bump its run's totals; the step's `seq`.

    `seq` is the run's step count when the caller knows it (None: read it, which also checks
    that the run exists).
    """
    if seq is None:
        seq = _run_row(con, run_id, "steps")[0]
    _add_totals(con, run_id, [item])
    _insert_steps(con, secrets, run_id, [(seq, item, at)])
    return seq


def add_traced_step(con: Connection, secrets: Secrets, run_id: int, seq: int | None, item: HistoryItem,
                    at: datetime, traces: Sequence[LLMTrace], known_prompts: Collection[str]) -> tuple[int, list[str]]:
    """`add_step` and the step's call traces in the same transaction: (seq, system prompt hashes added).

    `known_prompts` are hashes already stored (the Store's cache): their text is not written again.
    """
    seq = add_step(con, secrets, run_id, seq, item, at)
    return seq, _insert_traces(con, secrets, run_id, seq, item, traces, at, known_prompts)


def finish_run(con: Connection, secrets: Secrets, run_id: int, event: RunFinished) -> None:
    """End a run as the engine reported it, keeping any history step it never announced."""
    r = event.response
    recorded, started_at = _run_row(con, run_id, "steps, started_at")
    # A history step the engine never announced (e.g. a replay that only reports its end)
    # is still kept, so get_run() returns the whole response.
    missing = r.history[recorded:]
    if missing:
        _insert_steps(con, secrets, run_id, [(recorded + i, item, event.at) for i, item in enumerate(missing)])
        _add_totals(con, run_id, missing)
    started = r.started_at or started_at
    finished = r.finished_at or event.at
    duration = r.duration_ms
    if duration is None:
        duration = max(0.0, (finished - started).total_seconds() * 1000)
    # The engine's usage total is authoritative when it has one (it may count calls that
    # belong to no step); otherwise the running totals stand.
    usage = r.usage.model_dump() if r.usage != Usage() else dict.fromkeys(Usage.model_fields)
    given = {**usage, "started_at": started, "finished_at": finished, "duration_ms": duration,
             "notes_json": dumps(r.notes, secrets) if r.notes else None}
    how = plan(con, "runs", RunResponse, _FINISH_GIVEN, exclude=_NOT_AT_FINISH)
    con.execute(_finish_sql(how.cols), [*values(how, r, secrets, given), run_id])
    con.execute("UPDATE webhook_outbox SET state = 'pending' WHERE run_id = ?", [run_id])


@functools.cache
def _finish_sql(cols: tuple[str, ...]) -> str:
    kept = (*_KEPT_IF_NONE, *Usage.model_fields)
    sets = ", ".join(f'"{c}" = coalesce(?, "{c}")' if c in kept else f'"{c}" = ?' for c in cols)
    return f"UPDATE runs SET {sets} WHERE id = ?"


def fail_run(con: Connection, secrets: Secrets, run_id: int, error: str, stop_reason: str) -> None:
    """End run `run_id` as a failure now (for `stop_reason`), if it is still in progress."""
    check_run(con, secrets, run_id)
    now = utcnow()
    con.execute(
        """
        UPDATE runs SET status = 'failure', error = ?, stop_reason = ?, is_done = false, is_successful = false,
            finished_at = ?, duration_ms = greatest(0, 1000 * epoch(?::TIMESTAMPTZ - started_at))
        WHERE id = ? AND status = 'in_progress'
        """,
        [scrub(error, secrets), stop_reason, now, now, run_id],
    )
    con.execute("UPDATE webhook_outbox SET state = 'pending' WHERE run_id = ?", [run_id])


def insert_webhook_attempt(
    con: Connection, secrets: Secrets, run_id: int, *, url: str, attempt: int, at: datetime,
    status_code: int | None, ok: bool, error: str | None, duration_ms: float, event: str,
) -> None:
    """One webhook delivery attempt (each retry is its own row)."""
    insert_row(con, "webhook_deliveries", {
        "run_id": run_id, "url": redact_url(url), "attempt": attempt, "at": at, "status_code": status_code,
        "ok": ok, "error": scrub(error, secrets), "duration_ms": duration_ms, "event": event})


def insert_llm_call(con: Connection, secrets: Secrets, run_id: int, call: LLMCall,
                    trace: LLMTrace | None = None) -> None:
    """A model call made for a run outside its steps (e.g. an experiment's judge): step 0, after the last seq,
    with its trace (what it was asked and answered) when given and logged.

    It is kept apart from the run's totals, which count what the agent itself spent.
    """
    check_run(con, secrets, run_id)
    seq = scalar(con, "SELECT coalesce(max(seq), -1) + 1 FROM llm_calls WHERE run_id = ?", [run_id])
    how = plan(con, "llm_calls", LLMCall, _CHILD_GIVEN)
    con.execute(insert_sql("llm_calls", how.cols, 1),
                values(how, call, secrets, {"run_id": run_id, "seq": seq, "step": 0, "idx": 0}))
    if trace is not None:
        item = HistoryItem(step=0, description=call.purpose, llm_calls=[call])
        _insert_traces(con, secrets, run_id, seq, item, [trace], call.started_at, ())


def insert_playground(con: Connection, secrets: Secrets, run_id: int, step: int,
                      calls: Sequence[tuple[LLMCall, LLMTrace | None]]) -> int:
    """Calls asked again at a run's step (purpose "playground"), with their traces: one question, its samples as
    idx 0, 1, ...; its seq.

    The seq is negative (the first question -1, the next -2, ...): no step of the run has it, so the calls
    never join a step, its history or its totals, and a run still going keeps its own seqs.
    """
    check_run(con, secrets, run_id)
    seq = scalar(con, "SELECT least(coalesce(min(seq), 0), 0) - 1 FROM llm_calls WHERE run_id = ?", [run_id])
    how = plan(con, "llm_calls", LLMCall, _CHILD_GIVEN)
    rows: list[Any] = []
    for idx, (call, _trace) in enumerate(calls):
        rows += values(how, call, secrets, {"run_id": run_id, "seq": seq, "step": step, "idx": idx})
    if calls:
        con.execute(insert_sql("llm_calls", how.cols, len(calls)), rows)
    traces = [t for _c, t in calls if t is not None]
    if traces:
        item = HistoryItem(step=step, description="playground", llm_calls=[c for c, _t in calls])
        _insert_traces(con, secrets, run_id, seq, item, traces, utcnow(), ())
    return int(seq)


def redact_outbox_url(con: Connection, secrets: Secrets, run_id: int, url: str) -> None:
    """Keep only the redacted form of an owed webhook's URL in the table (the Store keeps the full one)."""
    con.execute("UPDATE webhook_outbox SET url = ? WHERE run_id = ?", [redact_url(url), run_id])


def end_webhook(con: Connection, secrets: Secrets, run_id: int) -> None:
    """The run's webhook is no longer owed (delivered, refused or out of attempts): forget its URL."""
    con.execute("DELETE FROM webhook_outbox WHERE run_id = ?", [run_id])


# ------------------------------------------------------------------ tasks' workflows
def set_task_workflow(con: Connection, secrets: Secrets, task_id: int, workflow_id: int | None) -> None:
    """Link task `task_id` to a workflow (None unlinks)."""
    if scalar(con, "UPDATE tasks SET workflow_id = ? WHERE id = ? RETURNING id", [workflow_id, task_id]) is None:
        raise InvalidQuery(f"task {task_id} does not exist; pick an id from list_tasks()")


def insert_workflow(
    con: Connection, secrets: Secrets, document: dict[str, Any], workflow_id: int | None,
    source_run_id: int | None, healed_from_version: int | None,
) -> tuple[int, int]:
    """Store a workflow document as a new workflow, or as the next version of `workflow_id`: (id, version)."""
    if workflow_id is None:
        wid, version = scalar(con, "SELECT nextval('workflows_id')"), 1
    else:
        last = scalar(con, "SELECT max(version) FROM workflows WHERE id = ?", [workflow_id])
        if last is None:
            raise InvalidQuery(f"workflow {workflow_id} does not exist; omit workflow_id to save a new workflow")
        wid, version = workflow_id, last + 1
    name, prompt = document.get("name"), document.get("prompt")
    insert_row(con, "workflows", {
        "id": wid, "version": version, "name": scrub(name if isinstance(name, str) else None, secrets),
        "prompt": scrub(prompt if isinstance(prompt, str) else None, secrets),
        "document_json": dumps(document, secrets), "created_at": utcnow(), "source_run_id": source_run_id,
        "healed_from_version": healed_from_version})
    return wid, version


def insert_run_workflow(con: Connection, secrets: Secrets, document: dict[str, Any], run_id: int
                        ) -> tuple[int, int, bool]:
    """The workflow recorded from run `run_id`: the one saved before, else this document as a new one.

    (id, version, created). Checked and written in one transaction: saving the same run twice (a
    double click, a retried request) gives one workflow.
    """
    found = con.execute(
        "SELECT id, max(version) FROM workflows WHERE id = (SELECT min(id) FROM workflows "
        "WHERE source_run_id = ? AND version = 1 AND healed_from_version IS NULL) GROUP BY id",
        [run_id],
    ).fetchone()
    if found is not None:
        return int(found[0]), int(found[1]), False
    wid, version = insert_workflow(con, secrets, document, None, run_id, None)
    return wid, version, True


def delete_workflow(con: Connection, secrets: Secrets, workflow_id: int) -> bool:
    """Delete every version of a workflow and unlink the tasks saved to it; False if there was none."""
    if scalar(con, "SELECT count(*) FROM workflows WHERE id = ?", [workflow_id]) == 0:
        return False
    con.execute("DELETE FROM workflows WHERE id = ?", [workflow_id])
    con.execute("UPDATE tasks SET workflow_id = NULL WHERE workflow_id = ?", [workflow_id])
    return True


# ------------------------------------------------------------------ steps
def _insert_steps(
    con: Connection, secrets: Sequence[str], run_id: int, items: Iterable[tuple[int, HistoryItem, datetime]]
) -> None:
    """Insert steps `(seq, item, finished_at)`, their actions and LLM calls: one multi-row INSERT per table."""
    step_plan = plan(con, "steps", HistoryItem, _STEP_GIVEN)
    action_plan = plan(con, "actions", ActionResult, (*_CHILD_GIVEN, "created_at"))
    call_plan = plan(con, "llm_calls", LLMCall, _CHILD_GIVEN)
    steps: list[Any] = []
    actions: list[Any] = []
    calls: list[Any] = []
    n_steps = n_actions = n_calls = 0
    for seq, item, at in items:
        n_steps += 1
        steps += values(step_plan, item, secrets, {"run_id": run_id, "seq": seq, "finished_at": at,
                                                   "actions": len(item.actions), "llm_calls": len(item.llm_calls)})
        for idx, a in enumerate(item.actions):
            n_actions += 1
            actions += values(action_plan, a, secrets,
                              {"run_id": run_id, "seq": seq, "step": item.step, "idx": idx, "created_at": at})
        for idx, c in enumerate(item.llm_calls):
            n_calls += 1
            calls += values(call_plan, c, secrets, {"run_id": run_id, "seq": seq, "step": item.step, "idx": idx})
    if n_steps:
        con.execute(insert_sql("steps", step_plan.cols, n_steps), steps)
    if n_actions:
        con.execute(insert_sql("actions", action_plan.cols, n_actions), actions)
    if n_calls:
        con.execute(insert_sql("llm_calls", call_plan.cols, n_calls), calls)


def _cost(calls: Sequence[LLMCall]) -> float | None:
    """What the calls cost; None (unknown, and NULL keeps the run's total unknown) when one that used tokens
    has no price: never a made-up 0 (agent.models.Usage)."""
    if any(c.cost_usd is None and (c.input_tokens or c.output_tokens) for c in calls):
        return None
    return sum(c.cost_usd or 0.0 for c in calls)


def _add_totals(con: Connection, run_id: int, items: Sequence[HistoryItem]) -> None:
    """Add steps' counts, tokens and cost to their run's running totals."""
    calls = [c for item in items for c in item.llm_calls]
    # No RETURNING: it costs as much as the rest of the update (the Store caches the step count).
    con.execute(
        """
        UPDATE runs SET steps = steps + ?, actions = actions + ?, llm_calls = llm_calls + ?,
            input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,
            cost_usd = cost_usd + ?
        WHERE id = ?
        """,
        [
            len(items), sum(len(i.actions) for i in items), len(calls), sum(c.input_tokens for c in calls),
            sum(c.output_tokens for c in calls), _cost(calls), run_id,
        ],
    )


# ------------------------------------------------------------------ traces
def _insert_traces(con: Connection, secrets: Secrets, run_id: int, seq: int, item: HistoryItem,
                   traces: Sequence[LLMTrace], at: datetime, known_prompts: Collection[str]) -> list[str]:
    """The step's call traces whose content was kept, each on the row of its llm_calls entry; system
    prompts once by hash (the hashes added are returned). A trace without content (LOG_PROMPTS=0)
    writes nothing: llm_calls has its usage."""
    how = plan(con, "llm_traces", LLMTrace, _TRACE_GIVEN)
    rows: list[Any] = []
    prompts: dict[str, str] = {}
    kept = [(position, t) for position, t in enumerate(traces) if t.logged]
    for position, t in kept:
        # The trace's own call locates its llm_calls row (robust to a call that has no trace).
        idx = next((i for i, c in enumerate(item.llm_calls) if c == t.call), position)
        system_hash = None
        if t.system_prompt is not None:
            text = scrub(t.system_prompt, secrets)
            system_hash = hashlib.sha256(text.encode()).hexdigest()
            if system_hash not in known_prompts:
                prompts[system_hash] = text
        start, end = _observation(t, secrets) if t.observation else (None, None)
        rows += values(how, t, secrets, {
            "run_id": run_id, "seq": seq, "step": item.step, "idx": idx, "system_hash": system_hash,
            "messages_json": dumps([_scrub_message(m, secrets) for m in t.messages], secrets),
            "observation_start": start, "observation_end": end})
    if prompts:
        con.execute(
            "INSERT INTO system_prompts (hash, text, first_seen) VALUES "
            + ", ".join(["(?, ?, ?)"] * len(prompts)) + " ON CONFLICT DO NOTHING",
            [v for h, text in prompts.items() for v in (h, text, at)],
        )
    if kept:
        con.execute(insert_sql("llm_traces", how.cols, len(kept)), rows)
    return list(prompts)


def _scrub_message(message: dict[str, Any], secrets: Secrets) -> dict[str, Any]:
    """A message with every text scrubbed (part by part, so that its structure stays)."""
    content = message.get("content")
    if isinstance(content, list):
        content = [{**p, "text": scrub(str(p.get("text", "")), secrets)} if p.get("type") == "text" else p
                   for p in content if isinstance(p, dict)]
    elif isinstance(content, str):
        content = scrub(content, secrets)
    return {**message, "content": content}


def _observation(trace: LLMTrace, secrets: Secrets) -> tuple[int, int]:
    """The observation's place in the last message once scrubbed (a secret replaced shifts it)."""
    assert trace.observation is not None
    start, end = trace.observation
    text = message_text(trace.messages[-1]) if trace.messages else ""
    new_start = len(scrub(text[:start], secrets))
    return new_start, new_start + len(scrub(text[start:end], secrets))
