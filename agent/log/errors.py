"""The run log's errors; every message says what to do (no duckdb here: cheap to import).

`StoreError` is the base; `StoreLocked` (another process, or another Store in this one, owns the
live file), `SnapshotMissing` (nothing published yet), `InvalidQuery` (a bad argument, also a
ValueError), `VersionConflict` (a versioned record changed since the version an edit was based
on). `MigrationError` lives in agent.log.migrations.
"""

from __future__ import annotations

__all__ = ["InvalidQuery", "SnapshotMissing", "StoreError", "StoreLocked", "VersionConflict"]


class StoreError(Exception):
    """Base of the store's errors; the message says what to do."""


class StoreLocked(StoreError):
    """Another process (or another Store in this one) owns the live database file."""


class SnapshotMissing(StoreError):
    """No snapshot has been published in this data directory yet."""


class InvalidQuery(StoreError, ValueError):
    """A bad argument to a store method (a filter, a page size, an unknown id)."""


class VersionConflict(StoreError):
    """A versioned record (a task set) has a newer version than the one an edit was based on: read it again."""
