"""What every run shares, agent or replay: its clock (cancel + deadline) and the session skeleton.

`RunClock` bounds everything a run awaits; `in_session()` opens (or continues in) a browser
session, passes a loop's events on and always ends with exactly one `RunFinished`, whatever
happens to the browser, the clock or the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from playwright.async_api import Error as PlaywrightError

from agent.engine.browser import Browser, BrowserError, BrowserSession, use_session
from agent.engine.guard import NavigationGuard
from agent.models import Event, RunFinished


class RunStopped(Exception):
    """The run must end now (cancelled or out of time); the message is the reason."""


class RunClock:
    """A run's cancel event and wall-clock deadline, applied to everything the run awaits."""

    def __init__(self, timeout_s: float, cancel: asyncio.Event | None) -> None:
        self.timeout_s, self.cancel = timeout_s, cancel
        self.deadline = time.monotonic() + timeout_s

    def check(self) -> None:
        """Raise RunStopped when the run was cancelled or is out of time."""
        if self.cancel is not None and self.cancel.is_set():
            raise RunStopped("cancelled")
        if time.monotonic() >= self.deadline:
            raise RunStopped(f"timed out after {self.timeout_s:g} s")

    async def bounded(self, coro: Any) -> Any:
        """Await `coro`, giving up when the run is cancelled or out of time."""
        self.check()
        task = asyncio.ensure_future(coro)
        waiters: set[asyncio.Future[Any]] = {task}
        stopper = asyncio.ensure_future(self.cancel.wait()) if self.cancel is not None else None
        if stopper is not None:
            waiters.add(stopper)
        try:
            done, _ = await asyncio.wait(waiters, timeout=max(0.0, self.deadline - time.monotonic()),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stopper is not None:
                stopper.cancel()
        if task in done:
            return task.result()
        task.cancel()
        # A cancelled gather() stores CancelledError as its exception: retrieve it, or asyncio logs
        # "_GatheringFuture exception was never retrieved" on every cancel.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self.check()
        raise RunStopped(f"timed out after {self.timeout_s:g} s")


async def in_session(
    loop: Callable[[BrowserSession], AsyncGenerator[Event, None]],
    finish: Callable[[str], RunFinished],
    *,
    browser: Browser | None,
    session: BrowserSession | None,
    guard: NavigationGuard | None = None,
) -> AsyncGenerator[Event, None]:
    """Run `loop` in `session` (or a new context of `browser`, or of a browser of its own) and end once.

    The loop's own RunFinished is the end; a browser failure, a stop (cancel or timeout) or a loop
    that ended without one becomes `finish(reason)`. A browser started here is closed here. A new
    session routes every request through `guard` (the run's navigation policy).
    """
    own_browser = browser is None and session is None
    browser = browser or Browser()
    final: RunFinished | None = None
    try:
        async with use_session(browser, session, guard=guard) as tabs, contextlib.aclosing(loop(tabs)) as events:
            async for event in events:
                if isinstance(event, RunFinished):
                    final = event
                    break
                yield event
    except (BrowserError, RunStopped) as exc:
        final = finish(str(exc))
    except PlaywrightError as exc:  # the browser crashed or was closed under us
        final = finish(f"browser error: {str(exc).splitlines()[0]}")
    finally:
        if own_browser:
            await browser.close()
    yield final or finish("the run ended without a result")
