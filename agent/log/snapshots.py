"""Snapshots: consistent read-only copies of the run log, so readers never touch the live file.

The app owns `<data_dir>/runs.duckdb` for its whole life (DuckDB allows one writing process). The
Store publishes a copy to `<data_dir>/snapshot/runs.duckdb` (written aside, then an atomic rename)
after runs finish and on demand; `open_snapshot()` opens the latest copy read-only, so a notebook
left open never blocks a write and never sees half a run.

Two ways to make the copy (`Store.publish_snapshot(method=...)` picks one):
- `checkpoint_copy`: CHECKPOINT, then copy the file's bytes, under the store's write lock;
- `copy_database`: COPY FROM DATABASE on a connection of its own, beside writes.
`Publisher` runs publishes in a background thread, at most one per interval.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from agent.log.errors import SnapshotMissing, StoreError

__all__ = [
    "DB_FILE",
    "METHODS",
    "Publisher",
    "checkpoint_copy",
    "copy_database",
    "data_dir_of",
    "open_snapshot",
    "publish_atomically",
    "remove_leftovers",
    "snapshot_path",
    "sql_literal",
]

T = TypeVar("T")
DB_FILE = "runs.duckdb"  # the live file's name, and its snapshot's
SNAPSHOT_DIR = "snapshot"
METHODS = ("checkpoint", "copy")
_TMP_GLOB = ".runs-*.tmp*"


def snapshot_path(data_dir: Path | str) -> Path:
    """Where the latest published snapshot of `data_dir`'s run log lives."""
    return Path(data_dir) / SNAPSHOT_DIR / DB_FILE


def sql_literal(path: Path) -> str:
    """`path` as a SQL string literal (ATTACH and COPY take no parameters)."""
    return "'" + str(path).replace("'", "''") + "'"


def open_snapshot(data_dir: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection on the latest snapshot (reconnect to see newer runs)."""
    path = snapshot_path(data_dir)
    if not path.exists():
        raise SnapshotMissing(
            f"no snapshot at {path} yet: the app publishes one when it starts and after each run; "
            f"without the app running, run `python -m agent.log snapshot --data-dir {data_dir}`"
        )
    # A fresh in-memory database that ATTACHes the file: duckdb.connect(path) would reuse a
    # cached instance of an older snapshot still open in this process.
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {sql_literal(path)} AS runlog (READ_ONLY)")
        con.execute("USE runlog")
        con.execute("SET TimeZone = 'UTC'")
    except BaseException:
        con.close()
        raise
    return con


def data_dir_of(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The data directory behind `con` (a snapshot's or the live file's); None for an in-memory one."""
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    if row is None or not row[0]:
        return None
    path = Path(row[0]).resolve()
    return path.parent.parent if path.parent.name == SNAPSHOT_DIR else path.parent


# ------------------------------------------------------------------ publishing
def publish_atomically(target: Path, write: Callable[[Path], T]) -> T:
    """Call `write(tmp)` on a temp file beside `target`, then rename it over `target` durably."""
    token = uuid.uuid4().hex[:12]
    tmp = target.with_name(f".runs-{token}.tmp")
    try:
        out = write(tmp)
        _fsync(tmp)  # outside the store's lock: a slow disk delays only the snapshot
        os.replace(tmp, target)
        _fsync(target.parent)  # the rename itself survives a power cut
    except BaseException:
        for leftover in target.parent.glob(f".runs-{token}.tmp*"):
            leftover.unlink(missing_ok=True)
        raise
    return out


def remove_leftovers(data_dir: Path) -> None:
    """Remove temp files a crashed publish left behind."""
    for leftover in snapshot_path(data_dir).parent.glob(_TMP_GLOB):
        leftover.unlink(missing_ok=True)


def checkpoint_copy(con: duckdb.DuckDBPyConnection, file_fd: int, db_path: Path, tmp: Path) -> bool:
    """CHECKPOINT, then copy the live file into `tmp`; False (nothing copied) if the WAL survived.

    The caller holds the store's write lock: after a checkpoint every committed write is in the
    file and the WAL is empty, and with no write able to start the file's bytes are the whole,
    consistent log.
    """
    con.execute("CHECKPOINT")
    wal = db_path.with_name(db_path.name + ".wal")
    if wal.exists() and wal.stat().st_size > 0:
        return False
    _copy_from_fd(file_fd, tmp)
    return True


def copy_database(cur: duckdb.DuckDBPyConnection, database: str, tmp: Path) -> None:
    """COPY FROM DATABASE `database` into a new file `tmp`, on the caller's own cursor, without the lock."""
    alias = f"snapshot_{tmp.stem.replace('.', '').replace('-', '_')}"
    cur.execute(f"ATTACH {sql_literal(tmp)} AS {alias}")
    try:
        # One transaction: every table is copied as of the same instant.
        cur.execute("BEGIN TRANSACTION")
        cur.execute(f"COPY FROM DATABASE {database} TO {alias}")
        cur.execute("COMMIT")
    finally:
        cur.execute(f"DETACH {alias}")


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


class Publisher:
    """Publishes snapshots in a background thread, at most once every `interval` seconds."""

    def __init__(self, publish: Callable[[], object], interval: float) -> None:
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
            except BaseException as exc:
                self.last_error = exc
            self._last = time.monotonic()
