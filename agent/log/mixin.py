"""What the Store's method groups (experiments, task sets, gradings) call on the Store they are mixed into."""

from __future__ import annotations

from typing import Any

__all__ = ["StorePart"]


class StorePart:
    """A group of the Store's methods (mixed into `agent.log.store.Store`); each write is one transaction."""

    def _write(self, fn: Any, *args: Any, **kwargs: Any) -> Any:  # provided by Store
        raise NotImplementedError

    def _read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:  # provided by Store
        raise NotImplementedError

    def _request_snapshot(self) -> None:  # provided by Store
        raise NotImplementedError
