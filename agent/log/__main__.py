"""`python -m agent.log {export,snapshot,schema}`: the run log from the command line.

    python -m agent.log export --data-dir data --out exports   # the latest snapshot as Parquet
    python -m agent.log snapshot --data-dir data               # publish one (or, while the app runs, show the latest)
    python -m agent.log schema                                 # the tables and views, as markdown

None of these opens the live database while the app owns it: export reads the latest snapshot.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from agent.log.errors import SnapshotMissing, StoreLocked
from agent.log.export import export_parquet
from agent.log.schema import schema_markdown
from agent.log.snapshots import open_snapshot, snapshot_path
from agent.log.store import Store

PROG = "python -m agent.log"


def parser() -> argparse.ArgumentParser:
    """The CLI's arguments."""
    out = argparse.ArgumentParser(prog=PROG, description="The run log: export, snapshot, schema.")
    sub = out.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="export the latest snapshot as day-partitioned Parquet")
    exp.add_argument("--data-dir", default="data", help="the app's data directory (default: data)")
    exp.add_argument("--out", default="exports", help="output folder (default: exports)")
    snap = sub.add_parser("snapshot", help="publish a snapshot (or report the latest while the app runs)")
    snap.add_argument("--data-dir", default="data", help="the app's data directory (default: data)")
    sub.add_parser("schema", help="print the tables and views as markdown")
    return out


def export(data_dir: str, out: str) -> int:
    """Export the latest snapshot of `data_dir` as Parquet under `out`; the exit code."""
    try:
        con = open_snapshot(data_dir)
    except SnapshotMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        files = export_parquet(con, out)
    finally:
        con.close()
    print(f"wrote {len(files)} Parquet files under {Path(out).resolve()} (from the snapshot {snapshot_path(data_dir)})")
    return 0


def snapshot(data_dir: str) -> int:
    """Publish a snapshot of `data_dir`, or report the app's latest if the app owns the file; the exit code."""
    path = snapshot_path(data_dir)
    try:
        store = Store(data_dir, snapshot_interval_s=None)
    except StoreLocked:
        if path.exists():
            age = time.time() - path.stat().st_mtime
            print(f"the app owns the run log and publishes after each run; latest snapshot: {path} ({age:.0f} s old)")
            return 0
        print(f"error: the app owns the run log and has not published a snapshot at {path} yet; "
              "it does when it starts and after each run", file=sys.stderr)
        return 2
    store.close()  # close() publishes
    print(f"published {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` (default: the command line); the exit code."""
    args = parser().parse_args(argv)
    if args.command == "schema":
        print(schema_markdown())
        return 0
    if args.command == "export":
        return export(args.data_dir, args.out)
    return snapshot(args.data_dir)


if __name__ == "__main__":
    raise SystemExit(main())
