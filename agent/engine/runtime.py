"""What every run shares, agent or replay: its clock (cancel + deadline) and the session skeleton.

`RunClock` bounds everything a run awaits; `in_session()` opens (or continues in) a browser
session, passes a loop's events on and always ends with exactly one `RunFinished`, whatever
happens to the browser, the clock or the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any, TypedDict

from playwright.async_api import Error as PlaywrightError

from agent.engine.browser import Browser, BrowserError, BrowserSession, use_session
from agent.engine.guard import NavigationGuard
from agent.models import Event, RunFinished, StopReason


class RunStopped(Exception):
    """The run must end now (cancelled or out of time); the message is the reason, `stop_reason` its kind."""

    def __init__(self, message: str, stop_reason: StopReason) -> None:
        super().__init__(message)
        self.stop_reason: StopReason = stop_reason


class RunClock:
    """A run's cancel event and wall-clock deadline, applied to everything the run awaits."""

    def __init__(self, timeout_s: float, cancel: asyncio.Event | None) -> None:
        self.timeout_s, self.cancel = timeout_s, cancel
        self.deadline = time.monotonic() + timeout_s

    def check(self) -> None:
        """Raise RunStopped when the run was cancelled or is out of time."""
        if self.cancel is not None and self.cancel.is_set():
            raise RunStopped("cancelled", "cancelled")
        if time.monotonic() >= self.deadline:
            raise RunStopped(f"timed out after {self.timeout_s:g} s", "timeout")

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
        raise RunStopped(f"timed out after {self.timeout_s:g} s", "timeout")


async def in_session(
    loop: Callable[[BrowserSession], AsyncGenerator[Event, None]],
    finish: Callable[[str, StopReason], RunFinished],
    *,
    browser: Browser | None,
    session: BrowserSession | None,
    guard: NavigationGuard | None = None,
) -> AsyncGenerator[Event, None]:
    """Run `loop` in `session` (or a new context of `browser`, or of a browser of its own) and end once.

    The loop's own RunFinished is the end; a browser failure, a stop (cancel or timeout) or a loop
    that ended without one becomes `finish(reason, stop_reason)`. A browser started here is closed here.
    A new session routes every request through `guard` (the run's navigation policy).
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
    except RunStopped as exc:
        final = finish(str(exc), exc.stop_reason)
    except BrowserError as exc:
        final = finish(str(exc), "browser_error")
    except PlaywrightError as exc:  # the browser crashed or was closed under us
        final = finish(f"browser error: {str(exc).splitlines()[0]}", "browser_error")
    finally:
        if own_browser:
            await browser.close()
    yield final or finish("the run ended without a result", "internal_error")


class StepTimes(TypedDict):
    """A step's duration and its three parts, in ms (HistoryItem's fields of the same names)."""

    duration_ms: float
    llm_ms: float
    browser_ms: float
    own_ms: float


class StepClock:
    """A step's wall time split into the model's, the browser's and our own, each measured.

    Time goes to the innermost part running (`with clock.part("llm")`): a model call made inside an
    action (extract) counts as the model's, not the browser's. What is in no part is our own work.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.parts: dict[str, float] = {"llm": 0.0, "browser": 0.0}
        self._stack: list[str] = []
        self._since = self.started

    def _switch(self) -> float:
        now = time.perf_counter()
        if self._stack:
            self.parts[self._stack[-1]] += now - self._since
        self._since = now
        return now

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Count the time inside the block as `name` ("llm" or "browser")."""
        self._switch()
        self._stack.append(name)
        try:
            yield
        finally:
            self._switch()
            self._stack.pop()

    def add(self, *, llm_ms: float = 0.0, browser_ms: float = 0.0) -> None:
        """Count time measured elsewhere inside this step (a heal's own steps) as the model's or the browser's."""
        self.parts["llm"] += llm_ms / 1000
        self.parts["browser"] += browser_ms / 1000

    def split(self) -> StepTimes:
        """duration_ms, llm_ms, browser_ms and own_ms (the rest) so far; the four add up."""
        duration = (self._switch() - self.started) * 1000
        llm, browser = self.parts["llm"] * 1000, self.parts["browser"] * 1000
        return StepTimes(duration_ms=duration, llm_ms=llm, browser_ms=browser,
                         own_ms=max(0.0, duration - llm - browser))
