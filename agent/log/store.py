"""The run log: every task, run, step, action, LLM call, workflow and webhook attempt, in DuckDB.

The app process owns `<data_dir>/runs.duckdb` for its whole life (DuckDB allows one writing
process). Readers (notebooks, the export CLI, other processes) never open that file: the store
publishes a consistent copy to `<data_dir>/snapshot/runs.duckdb` after runs finish and on demand,
and `open_snapshot()` opens the latest copy read-only.

    store = Store("data")
    task_id = store.create_task(request)
    run_id = store.create_run(task_id, request)
    for event in engine_events:
        store.record(run_id, event)      # one transaction per event
    store.get_run(run_id)                # the RunResponse, rebuilt from the tables
    store.close()                        # publishes a final snapshot

    con = open_snapshot("data")          # elsewhere: read-only, never blocks the app
    con.sql("SELECT * FROM v_success_by_model").df()

Errors: `StoreError` is the base; `StoreLocked` (another process owns the file),
`SnapshotMissing` (nothing published yet), `InvalidQuery` (a bad argument, also a ValueError),
`MigrationError` (from agent.log.migrations). Every message names the fix.

CLI: `python -m agent.log.store export --data-dir data --out exports/`, `... snapshot`, `... schema`.

This is the only module that imports duckdb.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from agent.log.migrations import MIGRATIONS, MigrationError, migrate
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
    utcnow,
)

__all__ = [
    "DB_FILE",
    "InvalidQuery",
    "MigrationError",
    "SnapshotMissing",
    "Store",
    "StoreError",
    "StoreLocked",
    "TABLES",
    "describe_tables",
    "describe_views",
    "export_parquet",
    "open_snapshot",
    "schema_markdown",
    "snapshot_path",
]

T = TypeVar("T")
DB_FILE = "runs.duckdb"
TABLES = ("tasks", "runs", "steps", "actions", "llm_calls", "workflows", "webhook_deliveries")
STATUSES = ("success", "failure", "in_progress")
MAX_PAGE = 1000
REDACTED = "[redacted]"


class StoreError(Exception):
    """Base of the store's errors; the message says what to do."""


class StoreLocked(StoreError):
    """Another process (or another Store in this one) owns the live database file."""


class SnapshotMissing(StoreError):
    """No snapshot has been published in this data directory yet."""


class InvalidQuery(StoreError, ValueError):
    """A bad argument to a store method (a filter, a page size, an unknown id)."""


# ------------------------------------------------------------------ secrets
# Env var names that hold credentials; their values are scrubbed from everything written.
_SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
# Request fields that look like credentials are dropped from the stored request JSON.
_SECRET_FIELD = re.compile(
    r"^(.*api[_-]?key.*|.*secret.*|.*password.*|.*passwd.*|.*token|authorization|.*credentials?|access[_-]?key.*)$",
    re.IGNORECASE,
)


def _looks_secret(value: str) -> bool:
    """A value worth scrubbing: long, one token, not a path, with a digit unless very long.

    Guards against redacting ordinary words everywhere (`SOME_KEY=disabled`).
    """
    return (
        len(value) >= 12
        and not any(c.isspace() for c in value)
        and not value.startswith("/")
        and (len(value) >= 24 or any(c.isdigit() for c in value))
    )


def _secret_values() -> list[str]:
    """Values of secret-looking env vars, longest first (so a key containing another is caught whole)."""
    found = {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and _looks_secret(v)}
    return sorted(found, key=len, reverse=True)


def _scrub(text: str | None, secrets: Sequence[str]) -> str | None:
    """`text` with every secret value replaced by a marker."""
    if text is None or not secrets:
        return text
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _strip_secret_fields(value: Any) -> Any:
    """A copy of `value` without string entries whose key names a credential."""
    if isinstance(value, dict):
        return {
            k: _strip_secret_fields(v)
            for k, v in value.items()
            if not (isinstance(v, str) and v and _SECRET_FIELD.match(str(k)))
        }
    if isinstance(value, list):
        return [_strip_secret_fields(v) for v in value]
    return value


def _dumps(value: Any, secrets: Sequence[str]) -> str:
    """Compact JSON for a *_json column, secrets scrubbed."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return _scrub(text, secrets)  # type: ignore[return-value]


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _request_json(request: RunRequest, secrets: Sequence[str]) -> str:
    return _dumps(_strip_secret_fields(request.model_dump(mode="json")), secrets)


# ------------------------------------------------------------------ paths
def snapshot_path(data_dir: Path | str) -> Path:
    """Where the latest published snapshot of `data_dir`'s run log lives."""
    return Path(data_dir) / "snapshot" / DB_FILE


def _quote(path: Path) -> str:
    """`path` as a SQL string literal (ATTACH and COPY take no parameters)."""
    return "'" + str(path).replace("'", "''") + "'"


def _copy_from_fd(src_fd: int, dst: Path) -> None:
    """Copy the whole file behind `src_fd` into `dst` (kernel-side), leaving `src_fd` open."""
    size = os.fstat(src_fd).st_size
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        offset = 0
        while offset < size:  # bounded: every pass copies at least one byte or raises
            try:
                sent = os.sendfile(out, src_fd, offset, size - offset)
            except OSError:  # no file-to-file sendfile here (not Linux): plain reads
                chunk = os.pread(src_fd, min(size - offset, 1 << 20), offset)
                sent = os.write(out, chunk)
            if sent <= 0:
                raise StoreError(f"the copy of the run log stopped at byte {offset} of {size}; check free disk space")
            offset += sent
    finally:
        os.close(out)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ column lists
_STEP_COLS = (
    "run_id", "seq", "step", "description", "url", "title", "screenshot_path", "started_at",
    "finished_at", "duration_ms", "llm_ms", "browser_ms", "executed_by", "actions", "llm_calls",
)
_ACTION_COLS = (
    "run_id", "seq", "step", "idx", "name", "params_json", "success", "is_done", "error",
    "extracted_content", "include_in_memory", "locators_json", "data_json", "executed_by",
    "duration_ms", "created_at",
)
_LLM_COLS = (
    "run_id", "seq", "step", "idx", "model", "provider", "purpose", "started_at", "latency_ms",
    "input_tokens", "output_tokens", "cost_usd", "finish_reason", "error",
)
_RUN_LIST_COLS = (
    "id", "task_id", "status", "prompt", "provider", "model", "mode", "steps", "duration_ms",
    "cost_usd", "started_at", "error",
)
_WORKFLOW_COLS = (
    "id", "version", "name", "prompt", "document_json", "created_at", "source_run_id",
    "healed_from_version",
)
_WEBHOOK_COLS = (
    "id", "run_id", "url", "attempt", '"at"', "status_code", "ok", "error", "duration_ms", "event",
)

_INSERT_SQL: dict[tuple[str, int], str] = {}


def _insert_sql(table: str, cols: Sequence[str], rows: int) -> str:
    """A multi-row INSERT (one statement per batch: DuckDB's executemany is row by row)."""
    key = (table, rows)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        one = "(" + ", ".join("?" * len(cols)) + ")"
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES " + ", ".join([one] * rows)
        _INSERT_SQL[key] = sql
    return sql


def _dicts(cursor: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


# One Store per database file per process: a second one would share DuckDB's instance and
# race the first on migrations and the "interrupted" sweep.
_OPEN: set[Path] = set()
_OPEN_LOCK = threading.Lock()


class _Publisher:
    """Publishes snapshots in a background thread, at most once every `interval` seconds."""

    def __init__(self, publish: Any, interval: float) -> None:
        self._publish = publish
        self._interval = max(0.0, interval)
        self._cond = threading.Condition()
        self._pending = False
        self._stopping = False
        self._last = 0.0
        self.last_error: BaseException | None = None
        self.published = 0
        self._thread = threading.Thread(target=self._loop, name="store-snapshot", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask for a snapshot soon (requests within one interval collapse into one publish)."""
        with self._cond:
            self._pending = True
            self._cond.notify()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the thread (a publish in progress finishes first, bounded by `timeout`)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                # Debounce: wait out the rest of the interval since the last publish.
                while not self._stopping:
                    delay = self._last + self._interval - time.monotonic()
                    if delay <= 0:
                        break
                    self._cond.wait(delay)
                if self._stopping:
                    return  # close() publishes the final snapshot itself
                self._pending = False
            try:
                self._publish()
                self.published += 1
                self.last_error = None
            except BaseException as exc:  # keep the thread alive: the next run retries
                self.last_error = exc
            self._last = time.monotonic()


class Store:
    """The run log in one DuckDB file; thread-safe (one lock), each write one transaction."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        snapshot_interval_s: float | None = 2.0,
        snapshot_method: str = "checkpoint",
    ) -> None:
        if snapshot_method not in ("checkpoint", "copy"):
            raise InvalidQuery(f"snapshot_method must be 'checkpoint' or 'copy', got {snapshot_method!r}")
        self.data_dir = Path(data_dir).resolve()
        self.path = self.data_dir / DB_FILE
        self.screenshots_dir = self.data_dir / "screenshots"
        self.snapshot_interval_s = snapshot_interval_s
        self.snapshot_method = snapshot_method
        for d in (self.data_dir, self.screenshots_dir, snapshot_path(self.data_dir).parent):
            d.mkdir(parents=True, exist_ok=True)
        with _OPEN_LOCK:
            if self.path in _OPEN:
                raise StoreLocked(
                    f"{self.path} is already open by a Store in this process; share that Store "
                    "instead of opening a second one"
                )
            _OPEN.add(self.path)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.Error as exc:
            with _OPEN_LOCK:
                _OPEN.discard(self.path)
            if "lock" in str(exc).lower():
                raise StoreLocked(
                    f"cannot open {self.path}: another process owns it ({exc}). Only the app writes "
                    f"the run log; read it with open_snapshot({str(self.data_dir)!r}) or "
                    f"`python -m agent.log.store export --data-dir {self.data_dir}`"
                ) from None
            raise StoreError(
                f"cannot open {self.path} ({exc}); check the data directory's path and permissions"
            ) from None
        self._lock = threading.RLock()
        self._publish_lock = threading.Lock()
        self._closed = False
        # run id -> steps recorded, for runs in progress: the next step's `seq` without a query.
        # Exact because this Store is the only writer; an entry is set only after its commit.
        self._steps_seen: dict[int, int] = {}
        # Snapshots copy the file through this descriptor, held open for the store's life: DuckDB
        # locks the file with fcntl, and closing *any* descriptor of it in this process would
        # silently drop that lock and let a second process open the live file.
        self._file_fd = os.open(self.path, os.O_RDONLY)
        try:
            # Timestamps come back as UTC-aware datetimes whatever the machine's zone.
            self._con.execute("SET TimeZone = 'UTC'")
            self._db = self._con.execute("SELECT current_database()").fetchone()[0]
            self.migrations_applied = migrate(self._con)
            self.interrupted_runs = self._mark_interrupted()
            self._clean_snapshot_dir()
        except BaseException:
            self._con.close()
            os.close(self._file_fd)
            with _OPEN_LOCK:
                _OPEN.discard(self.path)
            raise
        self.last_publish_ms: float | None = None
        self.last_publish_lock_ms: float | None = None
        self.last_publish_method: str | None = None
        # None: no background publishing (a CLI, a benchmark); snapshots on demand and at close.
        self._publisher: _Publisher | None = None
        if snapshot_interval_s is not None:
            self._publisher = _Publisher(lambda: self.publish_snapshot(method=snapshot_method), snapshot_interval_s)
            self._publisher.request()  # readers get a snapshot even before the first run ends

    # ----------------------------------------------------------- plumbing
    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store on {self.path} is closed; open a new Store(data_dir)")

    def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(secrets, *args)` in one transaction under the lock."""
        secrets = _secret_values()
        with self._lock:
            self._check_open()
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                out = fn(secrets, *args)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return out

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            self._check_open()
            return _dicts(self._con.execute(sql, params))

    def _mark_interrupted(self) -> list[int]:
        """End runs left in progress by a previous process (it crashed or was killed)."""
        self._con.execute("BEGIN TRANSACTION")
        try:
            # The run ended at its last sign of life, not now: keeps durations honest.
            rows = self._con.execute(
                """
                UPDATE runs SET status = 'failure', error = 'interrupted', is_done = false,
                    is_successful = false,
                    finished_at = greatest(started_at, coalesce(
                        (SELECT max(s.finished_at) FROM steps s WHERE s.run_id = runs.id), started_at)),
                    duration_ms = 1000 * epoch(greatest(started_at, coalesce(
                        (SELECT max(s.finished_at) FROM steps s WHERE s.run_id = runs.id), started_at))
                        - started_at)
                WHERE status = 'in_progress'
                RETURNING id
                """
            ).fetchall()
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        return sorted(r[0] for r in rows)

    def _clean_snapshot_dir(self) -> None:
        """Remove temp files a crashed publish left behind."""
        for leftover in snapshot_path(self.data_dir).parent.glob(".runs-*.tmp*"):
            leftover.unlink(missing_ok=True)

    # ----------------------------------------------------------- tasks and runs
    def create_task(self, request: RunRequest, *, workflow_id: int | None = None) -> int:
        """Record what was asked; returns the new task id."""

        def tx(secrets: Sequence[str]) -> int:
            return self._con.execute(
                "INSERT INTO tasks (prompt, request_json, created_at, workflow_id) VALUES (?, ?, ?, ?) RETURNING id",
                [_scrub(request.prompt, secrets), _request_json(request, secrets), utcnow(), workflow_id],
            ).fetchone()[0]

        return self._write(tx)

    def create_run(self, task_id: int, request: RunRequest, *, mode: str = "agent") -> int:
        """Start a run of `task_id` (status in_progress, started now); returns the run id."""
        if mode not in ("agent", "replay"):
            raise InvalidQuery(f"mode must be 'agent' or 'replay', got {mode!r}")

        def tx(secrets: Sequence[str]) -> int:
            if self._con.execute("SELECT 1 FROM tasks WHERE id = ?", [task_id]).fetchone() is None:
                raise InvalidQuery(f"task {task_id} does not exist; create it with create_task(request) first")
            now = utcnow()
            return self._con.execute(
                """
                INSERT INTO runs (task_id, status, mode, provider, model, prompt, created_at,
                                  started_at, request_json, workflow_id, webhook_url)
                VALUES (?, 'in_progress', ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id
                """,
                [
                    task_id, mode, request.provider, request.model, _scrub(request.prompt, secrets),
                    now, now, _request_json(request, secrets), request.workflow_id,
                    _scrub(request.webhook_url, secrets),
                ],
            ).fetchone()[0]

        return self._write(tx)

    def record(self, run_id: int, event: RunStarted | StepStarted | StepFinished | RunFinished) -> None:
        """Persist one engine event in one transaction (a crash loses at most the step in flight)."""
        if isinstance(event, StepFinished):
            with self._lock:  # the cache moves with the commit, never between two writers
                seq = self._write(self._step_tx, run_id, event.item, event.at)
                self._steps_seen[run_id] = seq + 1  # only once committed
        elif isinstance(event, RunStarted):
            self._write(self._started_tx, run_id, event)
        elif isinstance(event, RunFinished):
            with self._lock:
                self._write(self._finished_tx, run_id, event)
                self._steps_seen.pop(run_id, None)
            self._request_snapshot()
        elif isinstance(event, StepStarted):
            # Nothing to keep: the step's row is written whole when it finishes. Still check the
            # run exists, so a wrong id fails at the first event, not the first finished step.
            self._write(self._exists_tx, run_id)
        else:
            raise TypeError(f"record() takes an engine event, got {type(event).__name__}")

    def _exists_tx(self, secrets: Sequence[str], run_id: int) -> None:
        if self._con.execute("SELECT 1 FROM runs WHERE id = ?", [run_id]).fetchone() is None:
            raise InvalidQuery(f"run {run_id} does not exist; create it with create_run(task_id, request) first")

    def _started_tx(self, secrets: Sequence[str], run_id: int, event: RunStarted) -> None:
        row = self._con.execute(
            "UPDATE runs SET litellm_model = ?, mode = ?, started_at = ? WHERE id = ? RETURNING id",
            [event.model, event.mode, event.at, run_id],
        ).fetchone()
        if row is None:
            self._exists_tx(secrets, run_id)

    def _step_tx(self, secrets: Sequence[str], run_id: int, item: HistoryItem, at: datetime) -> int:
        """Write one step with its actions and LLM calls, and bump the run's running totals."""
        con = self._con
        seq = self._steps_seen.get(run_id)
        if seq is None:  # first step of this run in this process; also checks the run exists
            row = con.execute("SELECT steps FROM runs WHERE id = ?", [run_id]).fetchone()
            if row is None:
                self._exists_tx(secrets, run_id)
            seq = row[0]
        calls = item.llm_calls
        # No RETURNING: it costs as much as the rest of the update (the count is cached instead).
        con.execute(
            """
            UPDATE runs SET steps = steps + 1, actions = actions + ?, llm_calls = llm_calls + ?,
                input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,
                cost_usd = cost_usd + ?
            WHERE id = ?
            """,
            [
                len(item.actions), len(calls), sum(c.input_tokens for c in calls),
                sum(c.output_tokens for c in calls), sum(c.cost_usd or 0.0 for c in calls), run_id,
            ],
        )
        self._insert_steps(secrets, run_id, [(seq, item, at)])
        return seq

    def _insert_steps(
        self, secrets: Sequence[str], run_id: int, items: Iterable[tuple[int, HistoryItem, datetime]]
    ) -> None:
        """Insert steps, their actions and their LLM calls: one multi-row INSERT per table."""
        steps: list[Any] = []
        actions: list[Any] = []
        calls: list[Any] = []
        n_steps = n_actions = n_calls = 0
        for seq, item, at in items:
            n_steps += 1
            steps += (
                run_id, seq, item.step, _scrub(item.description, secrets), _scrub(item.url, secrets),
                _scrub(item.title, secrets), item.screenshot, item.started_at, at, item.duration_ms,
                item.llm_ms, item.browser_ms, item.executed_by, len(item.actions), len(item.llm_calls),
            )
            for idx, a in enumerate(item.actions):
                n_actions += 1
                actions += (
                    run_id, seq, item.step, idx, a.name, _dumps(a.params, secrets), a.success,
                    a.is_done, _scrub(a.error, secrets), _scrub(a.extracted_content, secrets),
                    a.include_in_memory,
                    None if a.locators is None else _dumps(a.locators, secrets),
                    None if a.data is None else _dumps(a.data, secrets),
                    a.executed_by, a.duration_ms, at,
                )
            for idx, c in enumerate(item.llm_calls):
                n_calls += 1
                calls += (
                    run_id, seq, item.step, idx, c.model, c.provider, c.purpose, c.started_at,
                    c.latency_ms, c.input_tokens, c.output_tokens, c.cost_usd, c.finish_reason,
                    _scrub(c.error, secrets),
                )
        con = self._con
        if n_steps:
            con.execute(_insert_sql("steps", _STEP_COLS, n_steps), steps)
        if n_actions:
            con.execute(_insert_sql("actions", _ACTION_COLS, n_actions), actions)
        if n_calls:
            con.execute(_insert_sql("llm_calls", _LLM_COLS, n_calls), calls)

    def _finished_tx(self, secrets: Sequence[str], run_id: int, event: RunFinished) -> None:
        con = self._con
        r = event.response
        row = con.execute("SELECT steps, started_at FROM runs WHERE id = ?", [run_id]).fetchone()
        if row is None:
            self._exists_tx(secrets, run_id)
        recorded, started_at = row
        # A history step the engine never announced (e.g. a replay that only reports its end)
        # is still kept, so get_run() returns the whole response.
        missing = r.history[recorded:]
        if missing:
            self._insert_steps(
                secrets, run_id, [(recorded + i, item, event.at) for i, item in enumerate(missing)]
            )
            calls = [c for item in missing for c in item.llm_calls]
            con.execute(
                """
                UPDATE runs SET steps = steps + ?, actions = actions + ?, llm_calls = llm_calls + ?,
                    input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,
                    cost_usd = cost_usd + ?
                WHERE id = ?
                """,
                [
                    len(missing), sum(len(i.actions) for i in missing), len(calls),
                    sum(c.input_tokens for c in calls), sum(c.output_tokens for c in calls),
                    sum(c.cost_usd or 0.0 for c in calls), run_id,
                ],
            )
        started = r.started_at or started_at
        finished = r.finished_at or event.at
        duration = r.duration_ms
        if duration is None:
            duration = max(0.0, (finished - started).total_seconds() * 1000)
        # The engine's usage total is authoritative when it has one (it may count calls that
        # belong to no step); otherwise the running totals stand.
        usage: list[Any] = [None] * 4
        if r.usage != Usage():
            usage = [r.usage.llm_calls, r.usage.input_tokens, r.usage.output_tokens, r.usage.cost_usd]
        con.execute(
            """
            UPDATE runs SET status = ?, error = ?, is_done = ?, is_successful = ?, result_json = ?,
                mode = ?, model = coalesce(?, model), provider = coalesce(?, provider),
                started_at = ?, finished_at = ?, duration_ms = ?,
                llm_calls = coalesce(?, llm_calls), input_tokens = coalesce(?, input_tokens),
                output_tokens = coalesce(?, output_tokens), cost_usd = coalesce(?, cost_usd),
                workflow_id = coalesce(?, workflow_id), replayed_steps = ?, healed_steps = ?, notes_json = ?
            WHERE id = ?
            """,
            [
                r.status, _scrub(r.error, secrets), r.is_done, r.is_successful,
                None if r.result is None else _dumps(r.result, secrets), r.mode, r.model, r.provider,
                started, finished, duration, *usage, r.workflow_id, r.replayed_steps, r.healed_steps,
                _dumps(r.notes, secrets) if r.notes else None, run_id,
            ],
        )

    def fail_run(self, run_id: int, error: str) -> None:
        """End a run still in progress as a failure (the engine could not even finish it)."""

        def tx(secrets: Sequence[str]) -> None:
            self._exists_tx(secrets, run_id)
            now = utcnow()
            self._con.execute(
                """
                UPDATE runs SET status = 'failure', error = ?, is_done = false, is_successful = false,
                    finished_at = ?, duration_ms = greatest(0, 1000 * epoch(?::TIMESTAMPTZ - started_at))
                WHERE id = ? AND status = 'in_progress'
                """,
                [_scrub(error, secrets), now, now, run_id],
            )

        with self._lock:
            self._write(tx)
            self._steps_seen.pop(run_id, None)
        self._request_snapshot()

    def record_webhook_attempt(
        self,
        run_id: int,
        *,
        url: str,
        attempt: int,
        at: datetime,
        status_code: int | None,
        ok: bool,
        error: str | None,
        duration_ms: float,
        event: str = "run.finished",
    ) -> None:
        """Keep one webhook delivery attempt (each retry is its own row)."""

        def tx(secrets: Sequence[str]) -> None:
            self._con.execute(
                _insert_sql("webhook_deliveries", _WEBHOOK_COLS[1:], 1),
                [
                    run_id, _scrub(url, secrets), attempt, at, status_code, ok, _scrub(error, secrets),
                    duration_ms, event,
                ],
            )

        self._write(tx)

    # ----------------------------------------------------------- reads
    def get_run(self, run_id: int) -> RunResponse | None:
        """The run as the contract's response, rebuilt from the tables; None if unknown."""
        with self._lock:
            self._check_open()
            con = self._con
            run = con.execute(
                """
                SELECT task_id, status, error, mode, provider, model, started_at, finished_at,
                       duration_ms, llm_calls, input_tokens, output_tokens, cost_usd, is_done,
                       is_successful, result_json, workflow_id, replayed_steps, healed_steps, notes_json
                FROM runs WHERE id = ?
                """,
                [run_id],
            ).fetchone()
            if run is None:
                return None
            steps = con.execute(
                f"SELECT {', '.join(_STEP_COLS[1:])} FROM steps WHERE run_id = ? ORDER BY seq", [run_id]
            ).fetchall()
            actions = con.execute(
                f"SELECT {', '.join(_ACTION_COLS[1:])} FROM actions WHERE run_id = ? ORDER BY seq, idx", [run_id]
            ).fetchall()
            calls = con.execute(
                f"SELECT {', '.join(_LLM_COLS[1:])} FROM llm_calls WHERE run_id = ? ORDER BY seq, idx", [run_id]
            ).fetchall()
        by_seq_actions: dict[int, list[ActionResult]] = {}
        for (seq, _step, _idx, name, params, success, is_done, error, extracted, in_memory,
             locators, data, executed_by, duration_ms, _at) in actions:
            by_seq_actions.setdefault(seq, []).append(
                ActionResult(
                    name=name, params=_loads(params), is_done=is_done, success=success,
                    extracted_content=extracted, error=error, include_in_memory=in_memory,
                    locators=_loads(locators), executed_by=executed_by, duration_ms=duration_ms,
                    data=_loads(data),
                )
            )
        by_seq_calls: dict[int, list[LLMCall]] = {}
        for (seq, _step, _idx, model, provider, purpose, started_at, latency_ms, tin, tout, cost,
             finish, error) in calls:
            by_seq_calls.setdefault(seq, []).append(
                LLMCall(
                    model=model, provider=provider, purpose=purpose, started_at=started_at,
                    latency_ms=latency_ms, input_tokens=tin, output_tokens=tout, cost_usd=cost,
                    finish_reason=finish, error=error,
                )
            )
        history = [
            HistoryItem(
                description=description, actions=by_seq_actions.get(seq, []), step=step, url=url,
                title=title, screenshot=screenshot, started_at=started_at, duration_ms=duration_ms,
                llm_ms=llm_ms, browser_ms=browser_ms, llm_calls=by_seq_calls.get(seq, []),
                executed_by=executed_by,
            )
            for (seq, step, description, url, title, screenshot, started_at, _finished, duration_ms,
                 llm_ms, browser_ms, executed_by, _na, _nc) in steps
        ]
        (task_id, status, error, mode, provider, model, started_at, finished_at, duration_ms,
         n_calls, tin, tout, cost, is_done, is_successful, result_json, workflow_id, replayed,
         healed, notes_json) = run
        return RunResponse(
            task_id=task_id, task_run_id=run_id, history=history, result=_loads(result_json),
            is_done=is_done, is_successful=is_successful, status=status, error=error, mode=mode,
            model=model, provider=provider, started_at=started_at, finished_at=finished_at,
            duration_ms=duration_ms,
            usage=Usage(llm_calls=n_calls, input_tokens=tin, output_tokens=tout, cost_usd=cost),
            workflow_id=workflow_id, replayed_steps=replayed, healed_steps=healed, notes=_loads(notes_json) or [],
        )

    def get_run_request(self, run_id: int) -> RunRequest | None:
        """The request a run was started with (secret-looking fields stripped); None if unknown."""
        rows = self._query("SELECT request_json FROM runs WHERE id = ?", [run_id])
        return RunRequest.model_validate(json.loads(rows[0]["request_json"])) if rows else None

    def list_runs(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        task_id: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of runs, newest first, and the total matching the filters."""
        _check_page(limit, offset)
        if status is not None and status not in STATUSES:
            raise InvalidQuery(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        where, params = [], []
        for col, value in (("status", status), ("provider", provider), ("model", model), ("task_id", task_id)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            self._check_open()
            total = self._con.execute(f"SELECT count(*) FROM runs {clause}", params).fetchone()[0]
            rows = _dicts(
                self._con.execute(
                    f"SELECT {', '.join(_RUN_LIST_COLS)} FROM runs {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
                    [*params, limit, offset],
                )
            )
        return rows, total

    _TASK_SQL = """
        SELECT t.id, t.prompt, t.created_at, t.workflow_id, count(r.id) AS runs,
               max(r.id) AS last_run_id, arg_max(r.status, r.id) AS last_status
        FROM tasks t LEFT JOIN runs r ON r.task_id = t.id
        {where}
        GROUP BY t.id, t.prompt, t.created_at, t.workflow_id
        ORDER BY t.id DESC
    """

    def get_task(self, task_id: int) -> dict[str, Any] | None:
        """A task with its request, run count and last run's status; None if unknown."""
        with self._lock:
            self._check_open()
            rows = _dicts(self._con.execute(self._TASK_SQL.format(where="WHERE t.id = ?"), [task_id]))
            if not rows:
                return None
            req = self._con.execute("SELECT request_json FROM tasks WHERE id = ?", [task_id]).fetchone()[0]
        return {**rows[0], "request": json.loads(req)}

    def list_tasks(self, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of tasks, newest first (with run count and last status), and the total."""
        _check_page(limit, offset)
        with self._lock:
            self._check_open()
            total = self._con.execute("SELECT count(*) FROM tasks").fetchone()[0]
            rows = _dicts(self._con.execute(self._TASK_SQL.format(where="") + " LIMIT ? OFFSET ?", [limit, offset]))
        return rows, total

    def set_task_workflow(self, task_id: int, workflow_id: int | None) -> None:
        """Link a task to the cached workflow saved from it (or unlink with None)."""

        def tx(secrets: Sequence[str]) -> None:
            if self._con.execute(
                "UPDATE tasks SET workflow_id = ? WHERE id = ? RETURNING id", [workflow_id, task_id]
            ).fetchone() is None:
                raise InvalidQuery(f"task {task_id} does not exist; pick an id from list_tasks()")

        self._write(tx)

    def webhook_attempts(self, run_id: int) -> list[dict[str, Any]]:
        """Every delivery attempt for a run, oldest first."""
        return self._query(
            f"SELECT {', '.join(_WEBHOOK_COLS)} FROM webhook_deliveries WHERE run_id = ? ORDER BY id", [run_id]
        )

    # ----------------------------------------------------------- workflows
    def save_workflow(
        self,
        document: dict[str, Any],
        *,
        workflow_id: int | None = None,
        source_run_id: int | None = None,
        healed_from_version: int | None = None,
    ) -> tuple[int, int]:
        """Store a workflow document: a new id, or the next version of `workflow_id`."""
        if not isinstance(document, dict):
            raise InvalidQuery(f"document must be a workflow object (a dict), got {type(document).__name__}")

        def tx(secrets: Sequence[str]) -> tuple[int, int]:
            con = self._con
            if workflow_id is None:
                wid, version = con.execute("SELECT nextval('workflows_id')").fetchone()[0], 1
            else:
                last = con.execute("SELECT max(version) FROM workflows WHERE id = ?", [workflow_id]).fetchone()[0]
                if last is None:
                    raise InvalidQuery(
                        f"workflow {workflow_id} does not exist; omit workflow_id to save a new workflow"
                    )
                wid, version = workflow_id, last + 1
            name, prompt = document.get("name"), document.get("prompt")
            con.execute(
                f"INSERT INTO workflows ({', '.join(_WORKFLOW_COLS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    wid, version, _scrub(name if isinstance(name, str) else None, secrets),
                    _scrub(prompt if isinstance(prompt, str) else None, secrets),
                    _dumps(document, secrets), utcnow(), source_run_id, healed_from_version,
                ],
            )
            return wid, version

        return self._write(tx)

    def get_workflow(self, workflow_id: int, version: int | None = None) -> dict[str, Any] | None:
        """One version of a workflow (the latest if `version` is None); None if unknown."""
        cols = ", ".join(_WORKFLOW_COLS)
        if version is None:
            rows = self._query(
                f"SELECT {cols} FROM workflows WHERE id = ? ORDER BY version DESC LIMIT 1", [workflow_id]
            )
        else:
            rows = self._query(f"SELECT {cols} FROM workflows WHERE id = ? AND version = ?", [workflow_id, version])
        return _workflow(rows[0]) if rows else None

    def list_workflows(self) -> list[dict[str, Any]]:
        """The latest version of each workflow (with `versions`, the count), newest id first."""
        rows = self._query(
            f"""
            SELECT {', '.join(_WORKFLOW_COLS)}, count(*) OVER (PARTITION BY id) AS versions
            FROM workflows
            QUALIFY row_number() OVER (PARTITION BY id ORDER BY version DESC) = 1
            ORDER BY id DESC
            """
        )
        return [_workflow(r) for r in rows]

    # ----------------------------------------------------------- snapshots and export
    def publish_snapshot(self, *, method: str | None = None) -> Path:
        """Publish a consistent copy of the log for readers (atomic replace); returns its path.

        `method` defaults to the store's `snapshot_method`. `checkpoint`: under the write lock,
        CHECKPOINT then copy the file's bytes; cheap (tens of ms per million actions) but writes
        wait while it runs. `copy`: COPY FROM DATABASE on its own connection; never holds the
        write lock but costs seconds of CPU per million actions. `last_publish_ms` and
        `last_publish_lock_ms` say what the last publish cost.
        """
        method = method or self.snapshot_method
        if method not in ("checkpoint", "copy"):
            raise InvalidQuery(f"method must be 'checkpoint' or 'copy', got {method!r}")
        with self._publish_lock:
            target = snapshot_path(self.data_dir)
            token = uuid.uuid4().hex[:12]
            tmp = target.with_name(f".runs-{token}.tmp")
            t0 = time.perf_counter()
            try:
                lock_ms = 0.0
                if method == "checkpoint":
                    lock_ms = self._checkpoint_copy(tmp)
                    if lock_ms < 0:  # the WAL survived the checkpoint: take the slow, sure path
                        method, lock_ms = "copy", 0.0
                if method == "copy":
                    self._copy_database(tmp)
                _fsync(tmp)  # outside the lock: a slow disk delays only the snapshot
                os.replace(tmp, target)
                _fsync(target.parent)  # the rename itself survives a power cut
            except BaseException:
                for leftover in target.parent.glob(f".runs-{token}.tmp*"):
                    leftover.unlink(missing_ok=True)
                raise
            self.last_publish_ms = (time.perf_counter() - t0) * 1000
            self.last_publish_lock_ms = lock_ms
            self.last_publish_method = method
            return target

    def _checkpoint_copy(self, tmp: Path) -> float:
        """Copy the checkpointed file under the write lock; ms the lock was held, -1 if not possible."""
        with self._lock:
            self._check_open()
            t = time.perf_counter()
            # After a checkpoint every committed write is in the file and the WAL is empty; with
            # the lock held no write can start, so the file's bytes are the whole, consistent log.
            self._con.execute("CHECKPOINT")
            wal = self.path.with_name(self.path.name + ".wal")
            if wal.exists() and wal.stat().st_size > 0:
                return -1.0
            _copy_from_fd(self._file_fd, tmp)
            return (time.perf_counter() - t) * 1000

    def _copy_database(self, tmp: Path) -> None:
        """COPY FROM DATABASE into `tmp` on its own connection, beside writes, without the lock."""
        with self._lock:
            self._check_open()
            cur = self._con.cursor()
        alias = f"snapshot_{tmp.stem.replace('.', '').replace('-', '_')}"
        try:
            cur.execute(f"ATTACH {_quote(tmp)} AS {alias}")
            try:
                # One transaction: every table is copied as of the same instant.
                cur.execute("BEGIN TRANSACTION")
                cur.execute(f"COPY FROM DATABASE {self._db} TO {alias}")
                cur.execute("COMMIT")
            finally:
                cur.execute(f"DETACH {alias}")
        finally:
            cur.close()

    def export_parquet(self, out_dir: Path | str) -> list[Path]:
        """Write every table as Parquet partitioned by day (`<table>/day=YYYY-MM-DD/*.parquet`)."""
        with self._lock:
            self._check_open()
            cur = self._con.cursor()
        try:
            return export_parquet(cur, out_dir)
        finally:
            cur.close()

    def _request_snapshot(self) -> None:
        if self._publisher is not None:
            self._publisher.request()

    @property
    def snapshot_error(self) -> BaseException | None:
        """The error of the last background publish, if it failed (the next run retries)."""
        return None if self._publisher is None else self._publisher.last_error

    def close(self) -> None:
        """Publish a final snapshot and release the database file."""
        if self._closed:
            return
        if self._publisher is not None:
            self._publisher.stop()
        try:
            self.publish_snapshot()
        finally:
            with self._lock:
                self._closed = True
                self._con.close()
                os.close(self._file_fd)  # after DuckDB let go of the file (see __init__)
            with _OPEN_LOCK:
                _OPEN.discard(self.path)


def _check_page(limit: int, offset: int) -> None:
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
    if not isinstance(offset, int) or offset < 0:
        raise InvalidQuery(f"offset must be an integer >= 0, got {offset!r}")


def _workflow(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["document"] = json.loads(row.pop("document_json"))
    return row


# ------------------------------------------------------------------ readers
def open_snapshot(data_dir: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection on the latest snapshot (reconnect to see newer runs)."""
    path = snapshot_path(data_dir)
    if not path.exists():
        raise SnapshotMissing(
            f"no snapshot at {path} yet: the app publishes one when it starts and after each run; "
            f"without the app running, run `python -m agent.log.store snapshot --data-dir {data_dir}`"
        )
    # A fresh in-memory database that ATTACHes the file: duckdb.connect(path) would reuse a
    # cached instance of an older snapshot still open in this process.
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {_quote(path)} AS runlog (READ_ONLY)")
        con.execute("USE runlog")
        con.execute("SET TimeZone = 'UTC'")
    except BaseException:
        con.close()
        raise
    return con


# Each table's own timestamp; child tables are partitioned by their run's start day instead, so
# one day's folder holds whole runs.
_OWN_TIME = {
    "tasks": "created_at", "runs": "started_at", "steps": "finished_at", "actions": "created_at",
    "llm_calls": "started_at", "workflows": "created_at", "webhook_deliveries": '"at"',
}


def export_parquet(con: duckdb.DuckDBPyConnection, out_dir: Path | str) -> list[Path]:
    """Export every table of `con` (live store or snapshot) as day-partitioned Parquet."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staged: list[tuple[Path, Path]] = []
    try:
        con.execute("BEGIN TRANSACTION")  # every table as of the same instant
        try:
            for table in TABLES:
                own = f"t.{_OWN_TIME[table]}"
                if table in ("tasks", "runs", "workflows"):
                    source, when = f"{table} t", own
                else:
                    source, when = f"{table} t LEFT JOIN runs r ON r.id = t.run_id", f"coalesce(r.started_at, {own})"
                day = f"CAST(timezone('UTC', {when}) AS DATE)"
                if con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0:
                    continue  # no rows, no folder: an empty folder trips up readers
                tmp = out / f".{table}-{token}.tmp"
                con.execute(
                    f"COPY (SELECT t.*, {day} AS day FROM {source}) TO {_quote(tmp)} "
                    "(FORMAT parquet, PARTITION_BY (day), OVERWRITE)"
                )
                staged.append((tmp, out / table))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        # Swap each table's folder whole, so a reader never sees half of an export.
        for table in TABLES:
            shutil.rmtree(out / table, ignore_errors=True)
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            shutil.rmtree(tmp, ignore_errors=True)
    return sorted(p for _, final in staged for p in final.rglob("*.parquet"))


# ------------------------------------------------------------------ schema docs
def _describe(kind: str) -> dict[str, list[tuple[str, str]]]:
    con = duckdb.connect()
    try:
        migrate(con)
        if kind == "view":
            names = [r[0] for r in con.execute(
                "SELECT view_name FROM duckdb_views() "
                "WHERE NOT internal AND database_name = current_database() ORDER BY view_name"
            ).fetchall()]
        else:
            names = list(TABLES)
        out = {}
        for name in names:
            out[name] = [
                (c, t) for c, t in con.execute(
                    "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                    "AND database_name = current_database() ORDER BY column_index",
                    [name],
                ).fetchall()
            ]
        return out
    finally:
        con.close()


def describe_views() -> dict[str, list[tuple[str, str]]]:
    """Each view's (column, type) list, from a freshly migrated in-memory database."""
    return _describe("view")


def describe_tables() -> dict[str, list[tuple[str, str]]]:
    """Each table's (column, type) list, from a freshly migrated in-memory database."""
    return _describe("table")


def schema_markdown() -> str:
    """The README's schema section, generated from code so it cannot go stale."""
    lines = [f"Migrations: {', '.join(fn.__name__ for fn in MIGRATIONS)}.", ""]
    for title, described in (("Views", describe_views()), ("Tables", describe_tables())):
        lines += [f"#### {title}", ""]
        for name, cols in described.items():
            lines.append(f"- `{name}`: " + ", ".join(f"`{c}` {t.lower()}" for c, t in cols))
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------ CLI
def main(argv: Sequence[str] | None = None) -> int:
    """`python -m agent.log.store {export,snapshot,schema}`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m agent.log.store", description="The run log store.")
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="export the latest snapshot as day-partitioned Parquet")
    exp.add_argument("--data-dir", default="data", help="the app's data directory (default: data)")
    exp.add_argument("--out", default="exports", help="output folder (default: exports)")
    snap = sub.add_parser("snapshot", help="publish a snapshot (or report the latest while the app runs)")
    snap.add_argument("--data-dir", default="data", help="the app's data directory (default: data)")
    sub.add_parser("schema", help="print the tables and views as markdown")
    args = parser.parse_args(argv)

    if args.command == "schema":
        print(schema_markdown())
        return 0
    if args.command == "export":
        try:
            con = open_snapshot(args.data_dir)
        except SnapshotMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            files = export_parquet(con, args.out)
        finally:
            con.close()
        print(f"wrote {len(files)} Parquet files under {Path(args.out).resolve()} "
              f"(from the snapshot {snapshot_path(args.data_dir)})")
        return 0
    # snapshot
    path = snapshot_path(args.data_dir)
    try:
        store = Store(args.data_dir, snapshot_interval_s=None)
    except StoreLocked:
        if path.exists():
            age = time.time() - path.stat().st_mtime
            print(f"the app owns the run log and publishes after each run; latest snapshot: {path} "
                  f"({age:.0f} s old)")
            return 0
        print(f"error: the app owns the run log and has not published a snapshot at {path} yet; "
              "it does when it starts and after each run", file=sys.stderr)
        return 2
    store.close()  # close() publishes
    print(f"published {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
