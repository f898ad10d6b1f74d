"""Parquet export: every table of the run log as day-partitioned Parquet files for other tools.

    <out>/<table>/day=YYYY-MM-DD/*.parquet

`python -m agent.log export` exports the latest snapshot (the app keeps running); `Store.export_parquet`
exports the live log from inside the app.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import duckdb

from agent.log.schema import TABLES
from agent.log.snapshots import sql_literal

__all__ = ["export_parquet"]

# Each table's own timestamp; child tables are partitioned by their run's start day instead, so
# one day's folder holds whole runs.
_OWN_TIME = {
    "tasks": "created_at", "runs": "started_at", "steps": "finished_at", "actions": "created_at",
    "llm_calls": "started_at", "workflows": "created_at", "webhook_deliveries": '"at"',
    "system_prompts": "first_seen", "gradings": "created_at",  # llm_traces has no time of its own: its run's day
}
_TOP_LEVEL = ("tasks", "runs", "workflows", "system_prompts")  # tables with no run_id to follow


def export_parquet(con: duckdb.DuckDBPyConnection, out_dir: Path | str) -> list[Path]:
    """Export every table of `con` (live store or snapshot) as day-partitioned Parquet; the files written."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staged: list[tuple[Path, Path]] = []
    try:
        con.execute("BEGIN TRANSACTION")  # every table as of the same instant
        try:
            for table in TABLES:
                tmp = out / f".{table}-{token}.tmp"
                if _copy_table(con, table, tmp):
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


def _copy_table(con: duckdb.DuckDBPyConnection, table: str, folder: Path) -> bool:
    """Write `table` into `folder` partitioned by day; False (nothing written) when it has no rows."""
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    if row is None or row[0] == 0:
        return False  # no rows, no folder: an empty folder trips up readers
    own = f"t.{_OWN_TIME[table]}" if table in _OWN_TIME else "NULL"
    if table in _TOP_LEVEL:
        source, when = f"{table} t", own
    else:
        source, when = f"{table} t LEFT JOIN runs r ON r.id = t.run_id", f"coalesce(r.started_at, {own})"
    day = f"CAST(timezone('UTC', {when}) AS DATE)"
    con.execute(
        f"COPY (SELECT t.*, {day} AS day FROM {source}) TO {sql_literal(folder)} "
        "(FORMAT parquet, PARTITION_BY (day), OVERWRITE)"
    )
    return True
