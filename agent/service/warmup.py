"""Warming up at start, after the server answers: the UI, the engine with the model library, the browser.

The app answers `/api/health` (and `/`, with a page that reloads itself) within a second or two of its
start; what takes seconds comes after, in the background. `start_warm_up()` imports the engine and
litellm (~3-10 s of CPU) in a thread, once per process; `WarmUp` tracks each part so that
`/api/health` says "warming" until every part is ready; `LateApp` stands in for the Gradio UI at "/"
until it is built. A run that arrives meanwhile waits for what it needs (the engine's own imports and
the browser's start take the same locks) and is not slower for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Literal

__all__ = ["LateApp", "PartState", "WarmUp", "after", "start_warm_up", "wind_down"]

log = logging.getLogger(__name__)

_WARM_UP: concurrent.futures.Future[None] | None = None
_WARM_UP_LOCK = threading.Lock()

PartState = Literal["waiting", "warming", "ready", "failed"]
LATE_WAIT_S = 120.0  # how long a request for the UI waits for it to be built


def start_warm_up() -> concurrent.futures.Future[None]:
    """Load the engine and the model library (litellm) in a background thread, once per process.

    The run service calls it when it starts (after the app's UI is up); a run that comes earlier
    imports what it needs itself, on the same import locks, so the work is never done twice.
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


class WarmUp:
    """What the process warms up, part by part: each part is waiting (not begun), warming, ready or failed."""

    def __init__(self, parts: Iterable[str] = ()) -> None:
        self._parts: dict[str, asyncio.Future[Any] | None] = dict.fromkeys(parts)

    def expect(self, name: str) -> None:
        """Declare a part that will be tracked later (health says "warming" until it is done)."""
        self._parts.setdefault(name, None)

    def track(self, name: str, future: asyncio.Future[Any]) -> None:
        """The part `name` is ready (or failed) when `future` is done."""
        self._parts[name] = future

    def states(self) -> dict[str, PartState]:
        """Each part's state, in the order they were declared."""
        out: dict[str, PartState] = {}
        for name, future in self._parts.items():
            if future is None:
                out[name] = "waiting"
            elif not future.done():
                out[name] = "warming"
            else:
                out[name] = "failed" if future.cancelled() or future.exception() is not None else "ready"
        return out

    @property
    def done(self) -> bool:
        """Whether no part is still waiting or warming (a failed part says why elsewhere: in the log, in runs)."""
        return all(state in ("ready", "failed") for state in self.states().values())


STARTING_PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="1">
<title>Web-agent workbench: starting</title></head>
<body style="font-family: system-ui, sans-serif; margin: 40px">
<h1>Web-agent workbench</h1>
<p>Starting: the page appears in a moment (this one reloads itself).
The API answers already: <a href="api/docs">API docs</a>, <a href="api/health">health</a>.</p>
</body></html>"""


class LateApp:
    """An ASGI app mounted now for one built later (the Gradio UI, seconds of imports).

    Until `ready(app)`, GET / answers a small page that reloads itself every second, and every other
    request waits (at most LATE_WAIT_S) for the app, then goes to it; after `failed(message)` they get 503
    with the message. Once ready, everything goes straight to the app.
    """

    def __init__(self, *, name: str = "the UI", wait_s: float = LATE_WAIT_S) -> None:
        self.name, self.wait_s = name, wait_s
        self.app: Callable[..., Awaitable[None]] | None = None
        self.error: str | None = None
        self._done: asyncio.Event | None = None  # made on the serving loop, at the first request

    def _event(self) -> asyncio.Event:
        if self._done is None:
            self._done = asyncio.Event()
        return self._done

    def ready(self, app: Callable[..., Awaitable[None]]) -> None:
        """From now on requests go to `app`; those waiting go now."""
        self.app = app
        self._event().set()

    def failed(self, message: str) -> None:
        """The app could not be built: requests get 503 saying so."""
        self.error = message
        self._event().set()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[MutableMapping[str, Any]], Awaitable[None]]) -> None:
        """Serve the request: from the app when it is there, else as the class says."""
        if self.app is None and self.error is None and scope["type"] in ("http", "websocket"):
            if scope["type"] == "http" and scope.get("path") in ("/", "") and scope.get("method") in ("GET", "HEAD"):
                await _answer(send, 200, STARTING_PAGE, "text/html; charset=utf-8")
                return
            try:
                await asyncio.wait_for(self._event().wait(), self.wait_s)
            except TimeoutError:
                pass
        if self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            why = self.error or f"still starting after {self.wait_s:g} s"
            body = json.dumps({"detail": f"{self.name} is not up ({why}); see the server log, or try again"})
            await _answer(send, 503, body.encode(), "application/json")
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})


async def _answer(send: Callable[[MutableMapping[str, Any]], Awaitable[None]], status: int, body: bytes,
                  content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    if status == 503:
        headers.append((b"retry-after", b"2"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def after(first: asyncio.Future[Any], then: Awaitable[Any]) -> None:
    """Await `then` once `first` is done, however it ended (the run service starts after the UI, built or not)."""
    await asyncio.wait({first})
    await then


async def wind_down(*tasks: asyncio.Future[Any], grace_s: float = 10.0) -> None:
    """At shutdown: wait a little for start-up tasks still going, then cut them; log how any of them failed."""
    _done, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:
        task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("a start-up task failed: %s", task.exception())
