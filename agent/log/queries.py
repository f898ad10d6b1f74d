"""The run log's searching reads: the runs list with its filters and totals, and the call traces.

A mixin of `agent.log.store.Store` (it uses the Store's connection, lock and what the Store found
at open); kept apart so the Store stays about opening, writing and publishing.
"""

from __future__ import annotations

import threading
from typing import Any

import duckdb

from agent.filters import RunFilter
from agent.log import rows
from agent.log.errors import InvalidQuery

__all__ = ["MAX_PAGE", "RunQueries", "check_page"]

MAX_PAGE = 1000


def check_page(limit: int, offset: int) -> None:
    """InvalidQuery, naming the fix, unless `limit` and `offset` make a page."""
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
    if not isinstance(offset, int) or offset < 0:
        raise InvalidQuery(f"offset must be an integer >= 0, got {offset!r}")


class RunQueries:
    """Listing, searching and totalling runs; reading call traces (Store's reads for the history)."""

    _con: duckdb.DuckDBPyConnection
    _lock: threading.RLock

    def _check_open(self) -> None:
        raise NotImplementedError

    def list_runs(self, filters: RunFilter | None = None, *, limit: int = 50,
                  offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of runs, newest first (each with how many forks it has, and the experiment, its name and the
        variant it played, if any), and the total matching the filters (see `runs_summary`)."""
        check_page(limit, offset)
        clause, params = rows.run_filter(filters)
        with self._lock:
            self._check_open()
            total = rows.scalar(self._con, f"SELECT count(*) FROM {rows.RUNS_FROM} {clause}", params)
            cols = ", ".join((*rows.RUN_LIST_COLS, *rows.RUN_EXPERIMENT_COLS))
            page = rows.dicts(
                self._con.execute(
                    f"SELECT {cols} FROM {rows.RUNS_FROM} {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
                    [*params, limit, offset],
                )
            )
            forks = rows.fork_counts(self._con, [r["id"] for r in page])
        return [{**r, "forks": forks.get(r["id"], 0)} for r in page], total

    def runs_summary(self, filters: RunFilter | None = None) -> dict[str, Any]:
        """Totals of the runs matching the filters: runs, finished, successes, success rate, tokens, cost.

        Also `stop_reasons`: the values present in the whole log (what a filter on it can pick from).
        """
        clause, params = rows.run_filter(filters)
        with self._lock:
            self._check_open()
            found = rows.dicts(self._con.execute(rows.SUMMARY_SQL.format(where=clause), params))[0]
            reasons = [r[0] for r in self._con.execute(rows.STOP_REASONS_SQL).fetchall()]
        return {**found, "stop_reasons": reasons}

    def get_traces(self, run_id: int, *, step: int | None = None) -> list[dict[str, Any]]:
        """What the model saw and said in a run's calls (of one step by its number), in order."""
        with self._lock:
            self._check_open()
            return rows.fetch_traces(self._con, run_id, step)

    def get_playground(self, run_id: int, step: int) -> list[dict[str, Any]]:
        """The calls asked again at a run's step (purpose "playground"), newest question first."""
        with self._lock:
            self._check_open()
            return rows.fetch_playground(self._con, run_id, step)
