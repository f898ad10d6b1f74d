"""The run log: every task, run, step, action, LLM call, workflow and webhook attempt, in DuckDB.

The app process owns `<data_dir>/runs.duckdb` for its whole life (DuckDB allows one writing
process). Readers (notebooks, the export CLI, other processes) never open that file: the store
publishes a consistent copy to `<data_dir>/snapshot/runs.duckdb` after runs finish and on demand,
and `agent.log.snapshots.open_snapshot()` opens the latest copy read-only.

    store = Store("data")
    task_id = store.create_task(request)
    run_id = store.create_run(task_id, request)
    for event in engine_events:
        store.record(run_id, event)      # one transaction per event
    store.get_run(run_id)                # the RunResponse, rebuilt from the tables
    store.close()                        # publishes a final snapshot

    con = open_snapshot("data")          # elsewhere: read-only, never blocks the app
    con.sql("SELECT * FROM v_success_by_model").df()

`Store` implements `agent.log.protocol.RunLog`, the surface the run service holds. Errors (in
agent.log.errors): `StoreError` is the base; `StoreLocked` (another process owns the file),
`SnapshotMissing` (nothing published yet), `InvalidQuery` (a bad argument, also a ValueError);
`MigrationError` comes from agent.log.migrations. Every message names the fix.

The rest of the run log, one module each: `writes` (the write transactions), `rows` (records to rows
and back, by column name), `queries` (the runs list and its filters), `outbox` (webhooks owed and
their attempts), `experiments` (experiments' tables), `tasksets` (task sets and their versions),
`grades` (every check's, judge's and person's verdict on a run; reviews), `redact` (secrets kept out),
`snapshots` (publishing and opening copies), `export` (Parquet), `schema` (generated docs), `analysis` (the
notebooks' helpers), and `python -m agent.log {export,snapshot,schema}` (the CLI).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import duckdb

from agent.log import rows, writes
from agent.log.errors import InvalidQuery, SnapshotMissing, StoreError, StoreLocked
from agent.log.experiments import ExperimentLog
from agent.log.export import export_parquet
from agent.log.grades import GradeLog
from agent.log.migrations import MigrationError, migrate
from agent.log.outbox import WebhookOutbox
from agent.log.protocol import LogEvent
from agent.log.queries import RunQueries, check_page
from agent.log.redact import secret_values
from agent.log.snapshots import (
    DB_FILE,
    METHODS,
    Publisher,
    checkpoint_copy,
    copy_database,
    open_snapshot,
    publish_atomically,
    remove_leftovers,
    snapshot_path,
)
from agent.log.tasksets import TaskSetLog
from agent.models import (
    STOP_REASONS,
    LLMCall,
    LLMTrace,
    RunFinished,
    RunRequest,
    RunResponse,
    RunStarted,
    StepFinished,
    StepStarted,
)

# The errors and the reader's entry points are re-exported: callers that hold a Store catch its
# errors and open its snapshots from here.
__all__ = [
    "InvalidQuery",
    "MigrationError",
    "SnapshotMissing",
    "Store",
    "StoreError",
    "StoreLocked",
    "open_snapshot",
    "snapshot_path",
]

T = TypeVar("T")
MAX_KNOWN_PROMPTS = 10_000

# One Store per database file per process: a second one would share DuckDB's instance and
# race the first on migrations and the "interrupted" sweep.
_OPEN: set[Path] = set()
_OPEN_LOCK = threading.Lock()

_TASK_SQL = """
    SELECT t.id, t.prompt, t.created_at, t.workflow_id, count(r.id) AS runs,
           max(r.id) AS last_run_id, arg_max(r.status, r.id) AS last_status
    FROM tasks t LEFT JOIN runs r ON r.task_id = t.id
    {where}
    GROUP BY t.id, t.prompt, t.created_at, t.workflow_id
    ORDER BY t.id DESC
"""


class Store(RunQueries, WebhookOutbox, ExperimentLog, TaskSetLog, GradeLog):
    """The run log in one DuckDB file; thread-safe (one lock), each write one transaction."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        snapshot_interval_s: float | None = 2.0,
        snapshot_method: str = "checkpoint",
    ) -> None:
        _check_method("snapshot_method", snapshot_method)
        self.data_dir = Path(data_dir).resolve()
        self.path = self.data_dir / DB_FILE
        self.screenshots_dir = self.data_dir / "screenshots"
        self.snapshot_interval_s = snapshot_interval_s
        self.snapshot_method = snapshot_method
        for d in (self.data_dir, self.screenshots_dir, snapshot_path(self.data_dir).parent):
            d.mkdir(parents=True, exist_ok=True)
        self._con = self._connect()
        self._lock = threading.RLock()
        self._publish_lock = threading.Lock()
        self._closed = False
        # run id -> steps recorded, for runs in progress: the next step's `seq` without a query.
        # Exact because this Store is the only writer; an entry is set only after its commit.
        self._steps_seen: dict[int, int] = {}
        # run id -> the run's sensitive values, scrubbed from every write while the run lasts.
        self._run_secrets: dict[int, list[str]] = {}
        # Hashes of the system prompts stored: a run's prompt is written once, not checked every step.
        self._prompt_hashes: set[str] = set()
        # Snapshots copy the file through this descriptor, held open for the store's life: DuckDB
        # locks the file with fcntl, and closing *any* descriptor of it in this process would
        # silently drop that lock and let a second process open the live file.
        self._file_fd = os.open(self.path, os.O_RDONLY)
        try:
            self._db, self.migrations_applied, self.interrupted_runs = self._prepare()
        except BaseException:
            self._con.close()
            os.close(self._file_fd)
            _release(self.path)
            raise
        self.last_publish_ms: float | None = None
        self.last_publish_lock_ms: float | None = None
        self.last_publish_method: str | None = None
        # None: no background publishing (a CLI, a benchmark); snapshots on demand and at close.
        self._publisher: Publisher | None = None
        if snapshot_interval_s is not None:
            self._publisher = Publisher(lambda: self.publish_snapshot(method=snapshot_method), snapshot_interval_s)
            self._publisher.request()  # readers get a snapshot even before the first run ends

    # ----------------------------------------------------------- opening and plumbing
    def _connect(self) -> duckdb.DuckDBPyConnection:
        """Claim the file for this process and open it; the errors say who owns it instead."""
        with _OPEN_LOCK:
            if self.path in _OPEN:
                raise StoreLocked(
                    f"{self.path} is already open by a Store in this process; share that Store "
                    "instead of opening a second one"
                )
            _OPEN.add(self.path)
        try:
            return duckdb.connect(str(self.path))
        except duckdb.Error as exc:
            _release(self.path)
            if "lock" in str(exc).lower():
                raise StoreLocked(
                    f"cannot open {self.path}: another process owns it ({exc}). Only the app writes "
                    f"the run log; read it with open_snapshot({str(self.data_dir)!r}) or "
                    f"`python -m agent.log export --data-dir {self.data_dir}`"
                ) from None
            raise StoreError(
                f"cannot open {self.path} ({exc}); check the data directory's path and permissions"
            ) from None

    def _prepare(self) -> tuple[str, list[str], list[int]]:
        """Migrate, end runs a dead process left in progress, clean up: (database name, migrations, interrupted)."""
        # Timestamps come back as UTC-aware datetimes whatever the machine's zone.
        self._con.execute("SET TimeZone = 'UTC'")
        db = rows.scalar(self._con, "SELECT current_database()")
        applied = migrate(self._con)
        self._spill_outbox()
        interrupted = self._write(writes.mark_interrupted)
        remove_leftovers(self.data_dir)
        return db, applied, interrupted

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store on {self.path} is closed; open a new Store(data_dir)")

    def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(con, secrets, *args, **kwargs)` (one of agent.log.writes) in one transaction under the lock."""
        with self._lock:
            secrets = secret_values()
            if self._run_secrets:
                extra = {v for values in self._run_secrets.values() for v in values}
                secrets = sorted(set(secrets) | extra, key=len, reverse=True)
            self._check_open()
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                out = fn(con, secrets, *args, **kwargs)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return out

    def _read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(con, *args, **kwargs)` (a read) under the lock."""
        with self._lock:
            self._check_open()
            return fn(self._con, *args, **kwargs)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            self._check_open()
            return rows.dicts(self._con.execute(sql, params))

    # ----------------------------------------------------------- tasks and runs
    def create_task(self, request: RunRequest, *, workflow_id: int | None = None) -> int:
        """Record what was asked; returns the new task id."""
        return self._write(writes.insert_task, request, workflow_id)

    def create_run(self, task_id: int, request: RunRequest, *, mode: str = "agent") -> int:
        """Start a run of `task_id` (status in_progress, started now); returns the run id."""
        if mode not in ("agent", "replay"):
            raise InvalidQuery(f"mode must be 'agent' or 'replay', got {mode!r}")
        run_id = self._write(writes.insert_run, task_id, request, mode)
        if request.webhook_url:
            self._keep_webhook_url(run_id, request.webhook_url)
        return run_id

    def record(self, run_id: int, event: LogEvent) -> None:
        """Persist one engine event in one transaction (a crash loses at most the step in flight)."""
        if isinstance(event, StepFinished):
            with self._lock:  # the caches move with the commit, never between two writers
                seen = self._steps_seen.get(run_id)
                if event.traces:
                    seq, added = self._write(writes.add_traced_step, run_id, seen, event.item, event.at,
                                             event.traces, self._prompt_hashes)
                    if len(self._prompt_hashes) > MAX_KNOWN_PROMPTS:  # bounded; a miss only costs an insert
                        self._prompt_hashes.clear()
                    self._prompt_hashes.update(added)
                else:
                    seq = self._write(writes.add_step, run_id, seen, event.item, event.at)
                self._steps_seen[run_id] = seq + 1  # only once committed
        elif isinstance(event, RunStarted):
            self._write(writes.start_run, run_id, event)
        elif isinstance(event, RunFinished):
            with self._lock:
                self._write(writes.finish_run, run_id, event)
                self._steps_seen.pop(run_id, None)
                self._run_secrets.pop(run_id, None)
            self._request_snapshot()
        elif isinstance(event, StepStarted):
            # Nothing to keep: the step's row is written whole when it finishes. Still check the
            # run exists, so a wrong id fails at the first event, not the first finished step.
            self._write(writes.check_run, run_id)
        else:
            raise TypeError(f"record() takes an engine event, got {type(event).__name__}")

    def fail_run(self, run_id: int, error: str, stop_reason: str = "internal_error") -> None:
        """End a run still in progress as a failure (the engine could not even finish it), for `stop_reason`."""
        if stop_reason not in STOP_REASONS:
            raise InvalidQuery(f"stop_reason must be one of {', '.join(STOP_REASONS)}, got {stop_reason!r}")
        with self._lock:
            self._write(writes.fail_run, run_id, error, stop_reason)
            self._steps_seen.pop(run_id, None)
            self._run_secrets.pop(run_id, None)
        self._request_snapshot()

    def record_llm_call(self, run_id: int, call: LLMCall, trace: LLMTrace | None = None) -> None:
        """Log a model call made for a run outside its steps (e.g. an experiment's judge), with its trace."""
        self._write(writes.insert_llm_call, run_id, call, trace)

    def record_playground(self, run_id: int, step: int, calls: Sequence[tuple[LLMCall, LLMTrace | None]]) -> int:
        """Log the calls of one question asked again at a run's step (purpose "playground"), apart from the run's
        totals; the question's seq (negative)."""
        return self._write(writes.insert_playground, run_id, step, calls)

    def add_secrets(self, run_id: int, values: Sequence[str]) -> None:
        """Scrub these values (a run's sensitive_data) from every write until the run ends."""
        with self._lock:
            self._run_secrets[run_id] = [v for v in values if v]

    # ----------------------------------------------------------- reads
    def get_run(self, run_id: int) -> RunResponse | None:
        """The run as the contract's response, rebuilt from the tables; None if unknown."""
        with self._lock:
            self._check_open()
            found = rows.fetch_run(self._con, run_id)
        return None if found is None else rows.run_response(run_id, found)

    def get_run_request(self, run_id: int) -> RunRequest | None:
        """The request a run was started with (secret-looking fields stripped); None if unknown."""
        found = self._query("SELECT request_json FROM runs WHERE id = ?", [run_id])
        if not found:
            return None
        stored = json.loads(found[0]["request_json"])
        stored.pop("webhook_url", None)  # kept redacted, so no longer a place to deliver to
        return RunRequest.model_validate(stored)

    def get_task(self, task_id: int) -> dict[str, Any] | None:
        """A task with its request, run count and last run's status; None if unknown."""
        with self._lock:
            self._check_open()
            found = rows.dicts(self._con.execute(_TASK_SQL.format(where="WHERE t.id = ?"), [task_id]))
            if not found:
                return None
            req = rows.scalar(self._con, "SELECT request_json FROM tasks WHERE id = ?", [task_id])
        return {**found[0], "request": json.loads(req)}

    def list_tasks(self, *, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of tasks, newest first (with run count and last status), and the total."""
        check_page(limit, offset)
        with self._lock:
            self._check_open()
            total = rows.scalar(self._con, "SELECT count(*) FROM tasks")
            page = rows.dicts(self._con.execute(_TASK_SQL.format(where="") + " LIMIT ? OFFSET ?", [limit, offset]))
        return page, total

    def set_task_workflow(self, task_id: int, workflow_id: int | None) -> None:
        """Link a task to the cached workflow saved from it (or unlink with None)."""
        self._write(writes.set_task_workflow, task_id, workflow_id)

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

        return self._write(writes.insert_workflow, document, workflow_id, source_run_id, healed_from_version)

    def save_run_workflow(self, document: dict[str, Any], run_id: int) -> tuple[int, int, bool]:
        """The workflow recorded from run `run_id`: (id, latest version, created); saved only the first time."""
        if not isinstance(document, dict):
            raise InvalidQuery(f"document must be a workflow object (a dict), got {type(document).__name__}")
        return self._write(writes.insert_run_workflow, document, run_id)

    def delete_workflow(self, workflow_id: int) -> bool:
        """Delete every version of a workflow (tasks saved to it are unlinked); False if unknown."""
        return self._write(writes.delete_workflow, workflow_id)

    def get_workflow(self, workflow_id: int, version: int | None = None) -> dict[str, Any] | None:
        """One version of a workflow (the latest if `version` is None); None if unknown."""
        if version is None:
            found = self._query("SELECT * FROM workflows WHERE id = ? ORDER BY version DESC LIMIT 1", [workflow_id])
        else:
            found = self._query("SELECT * FROM workflows WHERE id = ? AND version = ?", [workflow_id, version])
        return rows.workflow(found[0]) if found else None

    def workflow_versions(self, workflow_id: int) -> list[dict[str, Any]]:
        """Every version of a workflow, oldest first ([] if unknown)."""
        found = self._query("SELECT * FROM workflows WHERE id = ? ORDER BY version", [workflow_id])
        return [rows.workflow(r) for r in found]

    def list_workflows(self) -> list[dict[str, Any]]:
        """The latest version of each workflow (with `versions`, the count), newest id first."""
        found = self._query(
            """
            SELECT *, count(*) OVER (PARTITION BY id) AS versions
            FROM workflows
            QUALIFY row_number() OVER (PARTITION BY id ORDER BY version DESC) = 1
            ORDER BY id DESC
            """
        )
        return [rows.workflow(r) for r in found]

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
        _check_method("method", method)
        with self._publish_lock:
            t0 = time.perf_counter()
            target = snapshot_path(self.data_dir)
            used, lock_ms = publish_atomically(target, lambda tmp: self._write_snapshot(tmp, method))
            self.last_publish_ms = (time.perf_counter() - t0) * 1000
            self.last_publish_lock_ms = lock_ms
            self.last_publish_method = used
            return target

    def _write_snapshot(self, tmp: Path, method: str) -> tuple[str, float]:
        """Write a consistent copy of the log into `tmp`: the method used, and ms the write lock was held."""
        if method == "checkpoint":
            with self._lock:
                self._check_open()
                t = time.perf_counter()
                if checkpoint_copy(self._con, self._file_fd, self.path, tmp):
                    return method, (time.perf_counter() - t) * 1000
            # The WAL survived the checkpoint: take the slow, sure path below.
        with self._lock:
            self._check_open()
            cur = self._con.cursor()
        try:
            copy_database(cur, self._db, tmp)
        finally:
            cur.close()
        return "copy", 0.0

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
            _release(self.path)


def _release(path: Path) -> None:
    """Let another Store in this process open `path` again."""
    with _OPEN_LOCK:
        _OPEN.discard(path)


def _check_method(name: str, method: str) -> None:
    if method not in METHODS:
        raise InvalidQuery(f"{name} must be 'checkpoint' or 'copy', got {method!r}")
