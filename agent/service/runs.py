"""The run service: the one place that wires the engine, the store, live viewers and webhooks.

`RunService.submit()` validates a request, creates the task and run rows at once, and starts the run
in the background; `run()` is submit then `wait()`: sync and background runs share one code path.
Each event the engine yields is written to the store as it happens, then shown to live viewers
(`subscribe()`). Every run ends as success or failure with a reason whatever goes wrong (engine bug,
browser crash, model outage, timeout, cancel, shutdown), and its webhook, if any, is delivered in a
separate task so that it never delays or changes the run.

Errors: `NotFound` (unknown run or task id), `ServiceBusy` (queue full), `ServiceClosed` (shutting
down); a bad request raises pydantic's `ValidationError` or `agent.models.RequestError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import os
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.engine.llm import litellm_model
from agent.engine.secrets import Secrets
from agent.log.protocol import RunLog
from agent.models import (
    Event,
    PageChecked,
    RunFinished,
    RunRequest,
    RunResponse,
    RunStarted,
    StepFinished,
    StopReason,
    Tally,
    WorkflowHealed,
)
from agent.service import webhooks
from agent.service.door import LogDoor, NotFound
from agent.service.iterate import StepDoor
from agent.service.live import LiveRun, describe
from agent.service.observers import Observer, Observers, RunScrubber
from agent.service.outbox import Outbox
from agent.service.ray_executor import RayExecutor, WorkerLost
from agent.service.warmup import WarmUp, start_warm_up

if TYPE_CHECKING:  # the engine imports jsonschema and playwright (seconds): loaded on the first run
    from agent.engine.browser import Browser
    from agent.engine.loop import EngineOptions

__all__ = ["NotFound", "RunService", "ServiceBusy", "ServiceClosed", "start_warm_up"]

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT = 4
DEFAULT_MAX_QUEUED = 100
CANCEL_GRACE_S = 20.0  # after a cancel, how long the engine may take to stop before the task is cut
SHUTDOWN_GRACE_S = 10.0
SUBSCRIBE_SLACK_S = 120.0  # a viewer waits at most the run's timeout plus this for the next event


class ServiceBusy(RuntimeError):
    """Too many runs are running or queued; try again when some have finished."""


class ServiceClosed(RuntimeError):
    """The service is shutting down and accepts no new runs."""


def _env_int(name: str, default: int, *, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number; set it to e.g. {default}") from None
    if value < minimum:
        raise ValueError(f"{name}={value} is too small; set it to at least {minimum}")
    return value


class RunService(LogDoor, StepDoor):
    """Runs requests in the background with bounded concurrency; records, streams and delivers them."""

    def __init__(
        self,
        store: RunLog,
        browser: Browser,
        *,
        data_dir: str | Path,
        max_concurrent: int | None = None,
        engine_options: EngineOptions | None = None,
        max_queued: int | None = None,
        webhook_secret: str | None = None,
        webhook_attempts: int = 5,
        webhook_timeout_s: float = 10.0,
        webhook_backoff_s: float = 1.0,
        log_prompts: bool | None = None,
        observers: list[Observer] | None = None,
    ) -> None:
        self._log = store
        # LOG_PROMPTS off: traces lose their content before the store, viewers or observers see them.
        self._observers = Observers(observers, log_prompts=log_prompts)
        self.log_prompts = self._observers.log_prompts
        self.browser = browser
        self.data_dir = Path(data_dir)
        self.max_concurrent = max_concurrent or _env_int("MAX_CONCURRENT_RUNS", DEFAULT_MAX_CONCURRENT)
        self.max_queued = (max_queued if max_queued is not None
                           else _env_int("MAX_QUEUED_RUNS", DEFAULT_MAX_QUEUED, minimum=0))
        self.engine_options = engine_options  # None: the engine's defaults
        # The secret is read once here and never logged; None means "unsigned".
        self._outbox = Outbox(store, secret=webhook_secret if webhook_secret is not None
                              else webhooks.webhook_secret_from_env(), max_attempts=webhook_attempts,
                              timeout_s=webhook_timeout_s, backoff_s=webhook_backoff_s)
        self._slots = asyncio.Semaphore(self.max_concurrent)
        # Batch runs (experiment cells) take one of these first: at least one slot stays for the form.
        self._batch_slots = asyncio.Semaphore(max(1, self.max_concurrent - 1))
        self._live: dict[int, LiveRun] = {}
        self._reserved = 0  # submissions past the limit check, not yet in _live
        self._closing = False
        self._ray: RayExecutor | None = None
        self._warmup: asyncio.Future[Any] | None = None
        self._browser_warmup: asyncio.Task[Any] | None = None
        self.warm_up = WarmUp(("model library", "browser"))  # /api/health says "warming" until each is done

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> list[int]:
        """Warm up in the background; report the runs a previous process left in progress (now "interrupted")."""
        # The engine and the model library load in a worker thread and the browser starts; a run that
        # comes earlier loads what it needs itself (on the same locks).
        self._warmup = asyncio.ensure_future(asyncio.wrap_future(start_warm_up()))
        self._warmup.add_done_callback(_log_failure)
        self._browser_warmup = asyncio.create_task(self.browser.start())
        self._browser_warmup.add_done_callback(_log_failure)
        self.warm_up.track("model library", self._warmup)
        self.warm_up.track("browser", self._browser_warmup)
        interrupted = list(self._log.interrupted_runs)
        if interrupted:
            log.warning("%d run(s) left in progress by a previous process were marked failed (interrupted): %s",
                        len(interrupted), ", ".join(map(str, interrupted[:20])))
        # Webhooks a previous process still owed (runs it ended, or that ended as interrupted) resume
        # from the outbox, counting the attempts it made.
        await self._outbox.resume()
        return interrupted

    async def close(self) -> None:
        """Stop accepting runs, cancel running ones (failure "shutdown"), let webhooks finish briefly."""
        self._closing = True
        lives = list(self._live.values())
        for live in lives:
            live.stop_reason = "shutdown"
            live.cancel.set()
        tasks = [live.task for live in lives if live.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_S)
        if self._ray is not None:
            await self._ray.close()
        await self._outbox.close()
        await self._observers.shutdown()  # the OpenTelemetry exporter sends its last spans (bounded)

    # ------------------------------------------------------------ submitting and waiting
    async def submit(self, request: RunRequest | dict[str, Any], *, task_id: int | None = None,
                     engine: dict[str, Any] | None = None, batch: bool = False,
                     executor: str = "local") -> tuple[int, int]:
        """Create the task (or reuse `task_id`) and the run, start it in the background; (task_id, run_id).

        `engine` sets engine options for this run only (e.g. `check_page`); `batch` marks a run of an
        experiment, which waits for a batch slot so that interactive runs always keep one; `executor`
        "ray" plays the run on a Ray worker (`agent.service.ray_executor`), its events streamed back here.
        """
        if self._closing:
            raise ServiceClosed("the server is shutting down and accepts no new runs; try again when it is back")
        # The slot is taken before the first await: requests arriving together cannot all pass the check.
        # A batch run (an experiment's cell) never takes the last place: the form always gets one.
        taken = len(self._live) + self._reserved
        limit = self.max_concurrent + self.max_queued
        if taken >= (limit - 1 if batch and limit > 1 else limit):
            raise ServiceBusy(
                f"{taken} runs are running or queued (limit {self.max_concurrent} running + "
                f"{self.max_queued} queued); try again when some have finished, or raise MAX_QUEUED_RUNS"
            )
        self._reserved += 1
        try:
            req = request if isinstance(request, RunRequest) else await validate_off_loop(request)
            prefix = await self.fork_prefix(req) if req.fork is not None else None
            if task_id is None:
                task_id = int(await asyncio.to_thread(self._log.create_task, req))
            elif await asyncio.to_thread(self._log.get_task, task_id) is None:
                raise NotFound("task", task_id)
            elif req.session_id is None:  # a saved task run again: its runs are one session in tracing tools
                req = req.model_copy(update={"session_id": f"task-{task_id}"})
            run_id = int(await asyncio.to_thread(self._log.create_run, task_id, req))
            live = LiveRun(task_id=task_id, run_id=run_id, request=req, tally=Tally(req), engine=dict(engine or {}),
                         batch=batch, executor=executor, scrubber=RunScrubber(req.sensitive_data), fork=prefix)
            self._live[run_id] = live
        finally:
            self._reserved -= 1
        if req.sensitive_data:  # the log scrubs them too, in case one slips past the engine
            self._log.add_secrets(run_id, Secrets(req.sensitive_data).values())
        live.task = asyncio.create_task(self._drive(live), name=f"run-{run_id}")
        return task_id, run_id

    async def run(self, request: RunRequest | dict[str, Any], *, task_id: int | None = None) -> RunResponse:
        """Submit and wait for the end: the final response with its ids."""
        _task_id, run_id = await self.submit(request, task_id=task_id)
        return await self.wait(run_id)

    async def wait(self, run_id: int, timeout: float | None = None) -> RunResponse:
        """The run's final response once it has ended (TimeoutError after `timeout` seconds)."""
        live = self._live.get(run_id)
        if live is not None:
            await asyncio.wait_for(live.done.wait(), timeout)
            assert live.final is not None
            return live.final
        response = await asyncio.to_thread(self._log.get_run, run_id)
        if response is None:
            raise NotFound("run", run_id)
        return response

    async def cancel(self, run_id: int) -> bool:
        """Ask a running or queued run to stop (failure, "cancelled"); False if it had already ended."""
        live = self._live.get(run_id)
        if live is None:
            if await asyncio.to_thread(self._log.get_run, run_id) is None:
                raise NotFound("run", run_id)
            return False
        if live.final is not None:
            return False
        live.cancel.set()
        # The engine stops at its next check; a step stuck outside its bounds is cut after a grace period.
        asyncio.get_running_loop().call_later(CANCEL_GRACE_S, self._cut, live)
        return True

    def _cut(self, live: LiveRun) -> None:
        if live.final is None and live.task is not None and not live.task.done():
            log.warning("run %d did not stop within %g s of its cancel; cutting it", live.run_id, CANCEL_GRACE_S)
            live.task.cancel()

    # ------------------------------------------------------------ reading
    def get(self, run_id: int) -> RunResponse | None:
        """The run: live state while it runs, else from the store; None if unknown."""
        live = self._live.get(run_id)
        if live is not None:
            return live.snapshot()
        return self._log.get_run(run_id)

    async def aget(self, run_id: int) -> RunResponse | None:
        """`get` for async callers (the store is read in a worker thread)."""
        live = self._live.get(run_id)
        if live is not None:
            return live.snapshot()
        return await super().aget(run_id)

    def active_runs(self) -> list[RunResponse]:
        """Runs running or queued in this process, oldest first."""
        return [live.snapshot() for _, live in sorted(self._live.items())]

    def webhook_pending(self, run_id: int) -> bool:
        """True while the run's webhook is still being delivered (attempts, retries, backoff)."""
        if run_id in self._live and self._live[run_id].request.webhook_url:
            return True  # the run has not ended: its delivery has not even started
        return self._outbox.sending(run_id)

    async def webhook_owed(self, run_id: int) -> bool:
        """True while the run's webhook is owed: the run has not ended, its delivery goes on, or the outbox
        holds it (ended, not yet picked up, or left by a crash for the next start)."""
        if self.webhook_pending(run_id):
            return True
        return bool(await asyncio.to_thread(self._log.pending_webhooks, run_id))

    def is_queued(self, run_id: int) -> bool:
        """True while the run waits for a free slot."""
        live = self._live.get(run_id)
        return live is not None and live.queued

    async def subscribe(self, run_id: int) -> AsyncGenerator[Event, None]:
        """The run's events so far, then live ones until RunFinished (a finished run: steps then the end)."""
        live = self._live.get(run_id)
        if live is None:
            response = await asyncio.to_thread(self._log.get_run, run_id)
            if response is None:
                raise NotFound("run", run_id)
            for item in response.history:
                yield StepFinished(item=item)
            if response.status != "in_progress":
                yield RunFinished(response=response)
            return
        # Each viewer keeps a cursor into the run's own event list: no per-viewer buffer can
        # overflow or drop a step, and the list is bounded by the run's max_steps.
        timeout_s = self.engine_options.timeout_s if self.engine_options else 600.0
        bound = timeout_s + SUBSCRIBE_SLACK_S
        deadline = time.monotonic() + bound
        cursor = 0
        while True:
            changed = live.changed
            while cursor < len(live.events):
                event = live.events[cursor]
                cursor += 1
                yield event
                if isinstance(event, RunFinished):
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("viewer of run %d gave up after %g s without the end of the run", run_id, bound)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    # ------------------------------------------------------------ one run, start to end
    def _options(self, live: LiveRun) -> EngineOptions:
        from agent.engine.loop import EngineOptions  # heavy (jsonschema, playwright): imported by the first run

        shots = self._log.screenshots_dir / str(live.run_id)
        base = self.engine_options or EngineOptions()
        return EngineOptions.model_validate({**base.model_dump(), **live.engine, "screenshot_dir": shots})

    async def _event_source(self, live: LiveRun, options: EngineOptions) -> AsyncGenerator[Event, None]:
        """Where a run's events come from: a replay when a cached workflow is asked for and known, else the agent.

        The workflow is the inline `cached_workflow`, else `workflow_id`, else the one linked to the task;
        none known yet means the agent does the task (and its run can be saved as one).
        """
        # Heavy (jsonschema, playwright): _consume imported them off the event loop before the first run.
        from agent.engine import loop as engine
        from agent.workflows.replay import replay

        request = live.request
        try:
            workflow = await self._cached_workflow(live) if request.use_cached_workflow else None
        except NotFound as exc:  # the id asked for is unknown: a replay that cannot start
            live.tally.mode = "replay"
            yield RunStarted(request=request, model=litellm_model(request.provider, request.model), mode="replay")
            yield RunFinished(response=live.tally.response(
                error=f"workflow_id: {exc}; list the saved ones with GET /api/workflows", stop_reason="replay_failed",
                workflow_id=request.workflow_id))
            return
        if workflow is None and live.executor == "ray" and live.fork is None:
            source = self.ray().stream(request, options, live.cancel, self._log.screenshots_dir / str(live.run_id))
        elif workflow is None:  # a fork replays its parent's steps first (agent.workflows.fork), in this process
            source = engine.stream(request, browser=self.browser, options=options, cancel=live.cancel, fork=live.fork)
        else:
            source = replay(request, workflow, browser=self.browser, options=options, cancel=live.cancel,
                            workflow_id=request.workflow_id)
        async with contextlib.aclosing(source) as events:
            async for event in events:
                yield event

    def ray(self) -> RayExecutor:
        """The Ray executor (created on first use; Ray itself starts when the first run asks for it)."""
        if self._ray is None:
            self._ray = RayExecutor(own_origin=getattr(self.browser, "own_origin", None))
        return self._ray

    async def _cached_workflow(self, live: LiveRun) -> dict[str, Any] | None:
        """The workflow to replay (a document or a stored record), or None; NotFound for an unknown id."""
        request = live.request
        if request.cached_workflow is not None:
            return request.cached_workflow
        if request.workflow_id is not None:
            found = await asyncio.to_thread(self._log.get_workflow, request.workflow_id)
            if found is None:
                raise NotFound("workflow", request.workflow_id)
            return found
        task = await asyncio.to_thread(self._log.get_task, live.task_id)
        linked = (task or {}).get("workflow_id")
        return None if linked is None else await asyncio.to_thread(self._log.get_workflow, int(linked))

    async def _save_healed(self, live: LiveRun, event: WorkflowHealed) -> None:
        """Store a replay's healed version (same id, next version; an inline workflow becomes a new one)."""
        try:
            live.healed_workflow_id, _version = await asyncio.to_thread(
                self._log.save_workflow, event.document, workflow_id=event.workflow_id, source_run_id=live.run_id,
                healed_from_version=event.version)
        except Exception:  # the run itself succeeded; the repair is lost, which the log must say
            log.exception("run %d: could not save the healed version of workflow %s", live.run_id, event.workflow_id)

    async def _drive(self, live: LiveRun) -> None:
        """Wait for a slot, consume the events, end the run whatever happens."""
        try:
            if live.batch and not await live.take(self._batch_slots):
                await self._finish(live, self._stopped(live))
                return
            try:
                if not await live.take(self._slots):
                    await self._finish(live, self._stopped(live))
                    return
                try:
                    live.queued = False
                    final = await self._consume(live)
                finally:
                    self._slots.release()
            finally:
                if live.batch:
                    self._batch_slots.release()
            await self._finish(live, final)
        except asyncio.CancelledError:
            # Cut after a cancel, or the loop is going down: the run still ends with a reason.
            if live.final is None:
                await live.drain()
                await self._finish(live, self._stopped(live))
            raise
        except Exception as exc:  # our own bug: the run must still end, with the reason
            log.exception("run %d: unexpected error in the run service", live.run_id)
            if live.final is None:
                await live.drain()
                await self._finish(live, self._failure(live, f"internal error: {describe(exc)}", "internal_error"))
        finally:
            self._live.pop(live.run_id, None)

    async def _consume(self, live: LiveRun) -> RunResponse:
        """Record and publish each event; the engine's final response, or a failure saying why."""
        try:
            # The first run imports the engine (seconds of jsonschema/playwright) off the event loop.
            await asyncio.to_thread(importlib.import_module, "agent.engine.loop")
            options = self._options(live)
            async with contextlib.aclosing(self._event_source(live, options)) as events:
                async for event in events:
                    if isinstance(event, RunFinished):
                        return event.response
                    if isinstance(event, WorkflowHealed):
                        await self._save_healed(live, event)
                    elif isinstance(event, PageChecked):  # for the experiment runner, not the run log
                        live.append(live.scrubber.event(event))
                    else:
                        await self._emit(live, event)
        except WorkerLost as exc:  # the Ray worker died: the run did not fail, it was interrupted
            log.warning("run %d: %s", live.run_id, exc)
            await live.drain()  # the steps it made are the run's
            return self._failure(live, f"interrupted: {exc}", "interrupted")
        except Exception as exc:  # an engine bug, a browser that died oddly, a store that failed
            log.exception("run %d: the run failed with an unexpected error", live.run_id)
            await live.drain()
            return self._failure(live, f"internal error: {describe(exc)}", "internal_error")
        await live.drain()
        return self._failure(live, "the run ended without a result", "internal_error")

    async def _emit(self, live: LiveRun, event: Any) -> None:
        """Prepare (scrub) the event once, hand it to the run's writer and go on (see `LiveRun.emit`): the store,
        viewers and observers all get that one prepared event."""
        await live.emit(self._observers.prepare(event, live.scrubber), self._log.record, self._observers)

    def _failure(self, live: LiveRun, reason: str, stop_reason: StopReason) -> RunResponse:
        """A failed end built from what the run did so far."""
        return live.tally.response(error=reason, stop_reason=stop_reason)

    def _stopped(self, live: LiveRun) -> RunResponse:
        """The end of a run the service stopped (cancelled, or the app shutting down) before the engine ended it."""
        why = live.stop_reason or "cancelled"
        return self._failure(live, why, why)

    async def _finish(self, live: LiveRun, response: RunResponse) -> None:
        """Stamp the ids, record the end, wake waiters and viewers, then send the webhook."""
        await live.drain()  # every event before the end is stored first
        if live.write_error is not None and response.status == "success":
            response = self._failure(live, f"internal error: {live.write_error}", "internal_error")
        update: dict[str, Any] = {"task_id": live.task_id, "task_run_id": live.run_id}
        if live.healed_workflow_id is not None:
            update["workflow_id"] = live.healed_workflow_id
        if live.stop_reason and response.stop_reason == "cancelled":  # the engine saw the cancel we sent
            update["error"] = update["stop_reason"] = live.stop_reason
        if response.duration_ms is not None and not math.isfinite(response.duration_ms):
            update["duration_ms"] = None
        # The end, scrubbed once like every event: what is stored, returned, shown, observed and sent by webhook.
        event = self._observers.prepare(RunFinished(response=response.model_copy(update=update)), live.scrubber)
        response = event.response
        try:
            await asyncio.to_thread(self._log.record, live.run_id, event)
        except Exception:
            log.exception("run %d: could not record the end of the run; marking it failed", live.run_id)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._log.fail_run, live.run_id,
                                        response.error or "the run log could not be written",
                                        response.stop_reason or "internal_error")
        live.final = response
        live.append(event)
        live.done.set()
        self._observers(live.run_id, event)
        log.info("run %d ended: %s%s", live.run_id, response.status, f" ({response.error})" if response.error else "")
        if live.request.webhook_url:
            await self._outbox.send(live.run_id, live.request.webhook_url, response)


async def validate_off_loop(data: dict[str, Any]) -> RunRequest:
    """RunRequest.model_validate in a worker thread: a large schema must not stall every other request."""
    return await asyncio.to_thread(RunRequest.model_validate, data)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("warming up (the engine, the model library, the browser) failed; runs will say why",
                  exc_info=task.exception())
