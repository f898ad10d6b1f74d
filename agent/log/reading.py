"""Reading the run log from a notebook: where it is, a read-only connection on its latest snapshot,
and the small helpers every notebook module shares (`agent.log.analysis`, `compare`,
`experiment_analysis`).

This module imports neither duckdb (agent.log.snapshots does, when `connect` is first called) nor
pandas at import time: `import agent.log.analysis` stays instant in a notebook's first cell.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DATA_ENV", "EXPORTS_ENV", "Connection", "NoRunLog", "check_run_id", "connect", "data_dir",
           "exports_dir", "query_df", "ready", "resolve_dir", "screenshot_file", "using"]

ROOT = Path(__file__).resolve().parents[2]
DATA_ENV = "WORKBENCH_DATA_DIR"
EXPORTS_ENV = "WORKBENCH_EXPORTS_DIR"

# A DuckDB connection from agent.log.snapshots (typed loosely: this module never imports duckdb).
Connection = Any


class NoRunLog(FileNotFoundError):
    """Nothing has been published in the data directory yet; the message says what to do."""


# ------------------------------------------------------------------ connecting
def data_dir() -> Path:
    """The workbench's data directory: env WORKBENCH_DATA_DIR, else `data/` at the repo root."""
    raw = os.environ.get(DATA_ENV, "").strip()
    return Path(raw).expanduser().resolve() if raw else ROOT / "data"


def exports_dir() -> Path:
    """Where `make export` writes Parquet: env WORKBENCH_EXPORTS_DIR, else `exports/` at the repo root."""
    raw = os.environ.get(EXPORTS_ENV, "").strip()
    return Path(raw).expanduser().resolve() if raw else ROOT / "exports"


def resolve_dir(given: Path | str | None) -> Path:
    """`given` as an absolute path; None: data_dir()."""
    return Path(given).expanduser().resolve() if given is not None else data_dir()


def connect(data_dir: Path | str | None = None) -> Connection:
    """A new read-only connection on the latest snapshot (views ready): pass it as `con=`, close it when done."""
    from agent.log.snapshots import DB_FILE, open_snapshot, snapshot_path  # duckdb: only once connecting

    where = resolve_dir(data_dir)
    if not snapshot_path(where).exists():
        hint = ""
        if (where / DB_FILE).exists():
            hint = (f" (the app has not published a snapshot yet; publish one with "
                    f"`python -m agent.log snapshot --data-dir {where}`)")
        raise NoRunLog(
            f"no run log yet at {where}: start the workbench with `make run` and run a task, "
            f"or set {DATA_ENV}{hint}"
        )
    return open_snapshot(where)


def ready(data_dir: Path | str | None = None) -> bool:
    """For a notebook's first cell: True when there are runs to show, else print why and return False."""
    try:
        con = connect(data_dir)
    except NoRunLog as exc:
        print(exc)
        return False
    try:
        runs = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    finally:
        con.close()
    if runs == 0:
        print(f"the run log at {resolve_dir(data_dir)} has no runs yet: run a task in the workbench (`make run`), "
              "then re-run this cell")
        return False
    return True


@contextmanager
def using(con: Connection | None) -> Iterator[Connection]:
    """`con` itself, or (None) a connection on the latest snapshot of data_dir() for this one call."""
    if con is not None:
        yield con
        return
    own = connect()
    try:
        yield own
    finally:
        own.close()


def query_df(con: Connection | None, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
    """`sql` as a DataFrame, on `con` or (None) on the latest snapshot for this one call."""
    with using(con) as c:
        return c.execute(sql, list(params)).df()


def check_run_id(run_id: Any) -> int:
    """`run_id` as an int (numpy integers from a DataFrame cell too); ValueError naming the fix otherwise."""
    if isinstance(run_id, bool) or not isinstance(run_id, int):
        try:
            return int(run_id)  # numpy integers from a DataFrame cell
        except (TypeError, ValueError):
            raise ValueError(f"run_id must be a run's integer id (see runs().id), got {run_id!r}") from None
    return run_id


def screenshot_file(path: Any, base: Path) -> str | None:
    """The screenshot file on disk, or None; a data folder that moved is found through `screenshots/`."""
    if not isinstance(path, str) or not path:
        return None
    p = Path(path)
    candidates = [p] if p.is_absolute() else [base / p]
    parts = p.parts
    if "screenshots" in parts:
        candidates.append(base.joinpath(*parts[parts.index("screenshots"):]))
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return None
