"""The run log's searching reads: the runs list with its filters and totals, and the call traces.

A mixin of `agent.log.store.Store` (it uses the Store's connection, lock and what the Store found
at open); kept apart so the Store stays about opening, writing and publishing.
"""

from __future__ import annotations

import threading
from datetime import date
from typing import Any

import duckdb

from agent.log import rows
from agent.log.errors import InvalidQuery
from agent.models import STOP_REASONS

__all__ = ["MAX_PAGE", "STATUSES", "RunQueries", "check_page"]

STATUSES = ("success", "failure", "in_progress")
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

    def list_runs(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        task_id: int | None = None,
        q: str | None = None,
        model_contains: str | None = None,
        stop_reason: str | None = None,
        since: date | None = None,
        until: date | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of runs, newest first, and the total matching the filters (see `runs_summary`)."""
        check_page(limit, offset)
        clause, params = self._run_filter(status=status, provider=provider, model=model, task_id=task_id, q=q,
                                          model_contains=model_contains, stop_reason=stop_reason, since=since,
                                          until=until)
        cols = [*rows.RUN_LIST_COLS, "stop_reason"]
        with self._lock:
            self._check_open()
            total = rows.scalar(self._con, f"SELECT count(*) FROM runs {clause}", params)
            page = rows.dicts(
                self._con.execute(
                    f"SELECT {', '.join(cols)} FROM runs {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
                    [*params, limit, offset],
                )
            )
        return page, total

    def runs_summary(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        task_id: int | None = None,
        q: str | None = None,
        model_contains: str | None = None,
        stop_reason: str | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> dict[str, Any]:
        """Totals of the runs matching the filters: runs, finished, successes, success rate, tokens, cost.

        Filters: exact `status`, `provider`, `model`, `task_id`, `stop_reason`; `q`: text in the
        prompt, the result or the error (any case); `model_contains`: part of the model's name;
        `since`/`until`: first and last UTC day the run started on. Also `stop_reasons`: the
        values present in the whole log.
        """
        clause, params = self._run_filter(status=status, provider=provider, model=model, task_id=task_id, q=q,
                                          model_contains=model_contains, stop_reason=stop_reason, since=since,
                                          until=until)
        with self._lock:
            self._check_open()
            found = rows.dicts(self._con.execute(rows.SUMMARY_SQL.format(where=clause), params))[0]
            reasons = [r[0] for r in self._con.execute(rows.STOP_REASONS_SQL).fetchall()]
        return {**found, "stop_reasons": reasons}

    def _run_filter(self, **filters: Any) -> tuple[str, list[Any]]:
        """The WHERE clause of the runs filters (checked); InvalidQuery naming a bad one."""
        if filters.get("status") is not None and filters["status"] not in STATUSES:
            raise InvalidQuery(f"status must be one of {', '.join(STATUSES)}, got {filters['status']!r}")
        if filters.get("stop_reason") is not None and filters["stop_reason"] not in STOP_REASONS:
            raise InvalidQuery(f"stop_reason must be one of {', '.join(STOP_REASONS)}, got {filters['stop_reason']!r}")
        return rows.run_filter(**filters)

    def get_traces(self, run_id: int, *, step: int | None = None) -> list[dict[str, Any]]:
        """What the model saw and said in a run's calls (of one step by its number), in order."""
        with self._lock:
            self._check_open()
            return rows.fetch_traces(self._con, run_id, step)
