"""Warming up at start: the engine and the model library load in a background thread, once per process.

Importing litellm takes ~10 s of CPU; a first model call loads more of it (~1 s). The app starts the
warm-up before it builds its UI, the run service when it starts: the first run pays for neither.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import threading

__all__ = ["start_warm_up"]

_WARM_UP: concurrent.futures.Future[None] | None = None
_WARM_UP_LOCK = threading.Lock()


def start_warm_up() -> concurrent.futures.Future[None]:
    """Load the engine and the model library (litellm: ~10 s) in a background thread, once per process.

    The app calls it before it builds the UI (so the two overlap) and the run service when it starts;
    otherwise the first run pays for the import before its first model call.
    """
    global _WARM_UP
    with _WARM_UP_LOCK:
        if _WARM_UP is None:
            _WARM_UP = concurrent.futures.Future()
            threading.Thread(target=_warm_up, args=(_WARM_UP,), name="warm-up", daemon=True).start()
        return _WARM_UP


def _warm_up(done: concurrent.futures.Future[None]) -> None:
    """Import the engine and litellm, then take litellm's call path once without the network."""
    try:
        importlib.import_module("agent.engine.loop")
        from agent.engine.llm import warm_call

        warm_call()
    except BaseException as exc:  # reported by the run service; runs then fail with the reason
        done.set_exception(exc)
    else:
        done.set_result(None)
