"""What every migration takes: the connection they run on, and the error when one cannot run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Connection", "Migration", "MigrationError"]


class Connection(Protocol):
    """The part of a DuckDB connection that migrations use."""

    def execute(self, query: str, parameters: Any = ...) -> Any:
        ...


class MigrationError(RuntimeError):
    """The database cannot be brought to the schema this code expects."""


Migration = Callable[[Connection], None]
