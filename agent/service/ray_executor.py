"""Runs on Ray: the engine on Ray workers, every event streamed back to the app, the one writer of the log.

`RayExecutor.stream(request, options, cancel)` yields a run's events like `engine.stream` does, but
the run happens in an `EngineWorker` actor on the cluster (`RAY_ADDRESS` joins one; otherwise a local
Ray starts with this machine's cores). Each worker keeps its own Chromium (or a remote one over
`BROWSER_CDP_URL`) and plays up to `runs_per_worker` runs at once; screenshots travel back with their
step and are written by the app. A worker that dies ends its runs as `interrupted` (the experiment
runner plays such a cell once more) and is replaced. Ray is optional: imported only here, when a run
asks for it (`pip install -r requirements-ray.txt`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import itertools
import logging
import os
import tempfile
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from agent.engine.secrets import revealed
from agent.models import Event, RunRequest, StepFinished
from agent.providers import REGISTRY

if TYPE_CHECKING:  # the engine's loop imports jsonschema and playwright: loaded in the Ray worker only
    from agent.engine.loop import EngineOptions

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
RUNS_PER_WORKER = 2
INIT_TIMEOUT_S = 120.0
# What a worker needs from the app's environment (keys go to the workers only, never to a log).
# Each provider's variables by their prefix (OPENAI_ORGANIZATION too), from the one registry (agent.providers).
FORWARDED_ENV_PREFIXES = (
    *sorted({var.split("_", 1)[0] + "_" for p in REGISTRY.values() for var in (*p.key_vars, *p.base_url_vars)}),
    "LITELLM_", "CHROMIUM_PATH", "BROWSER_CDP_URL", "WORKBENCH_ALLOWED_DOMAINS", "WORKBENCH_BLOCKED_DOMAINS")
_EVENT = TypeAdapter(Event)


class RayUnavailable(RuntimeError):
    """Ray is not installed or the cluster cannot be reached; the message says what to do."""


class WorkerLost(RuntimeError):
    """The Ray worker playing a run died; the run ends as interrupted."""


@functools.cache
def _worker_class() -> Any:
    """The EngineWorker actor class (defined on first use: `import ray` only when Ray is asked for)."""
    import ray

    class EngineWorker:
        """One process on the cluster with its own browser; plays runs and streams their events."""

        def __init__(self, own_origin: Any = None) -> None:
            from agent.engine.browser import Browser

            self.browser = Browser(own_origin=own_origin)  # the app's origin stays refused to the agent here too
            self.cancels: dict[str, asyncio.Event] = {}
            self.shots = Path(tempfile.mkdtemp(prefix="workbench-ray-"))

        def pid(self) -> int:
            return os.getpid()

        async def cancel(self, run_key: str) -> None:
            if run_key in self.cancels:
                self.cancels[run_key].set()

        async def run(self, request: dict[str, Any], options: dict[str, Any], run_key: str) -> Any:
            from agent.engine import loop as engine
            from agent.models import RunRequest

            cancel = self.cancels[run_key] = asyncio.Event()
            shots = self.shots / run_key
            opts = engine.EngineOptions.model_validate({**options, "screenshot_dir": shots})
            try:
                async for event in engine.stream(RunRequest.model_validate(request), browser=self.browser,
                                                 options=opts, cancel=cancel):
                    payload = event.model_dump(mode="json")
                    shot = event.item.screenshot if isinstance(event, StepFinished) else None
                    if shot and Path(shot).is_file():  # the image travels with its step; the app writes it
                        payload["screenshot_bytes"] = base64.b64encode(Path(shot).read_bytes()).decode()
                        Path(shot).unlink(missing_ok=True)
                    yield payload
            finally:
                self.cancels.pop(run_key, None)

    # ray's stubs type remote() for functions only; max_concurrency is an actor option (async actors).
    return ray.remote(num_cpus=1, max_concurrency=64)(EngineWorker)  # type: ignore[call-overload]


def _shipped(request: RunRequest) -> dict[str, Any]:
    """The request as the worker gets it: JSON, with the sensitive_data values themselves (a JSON dump masks
    them), since the worker's engine types them into pages. They travel in Ray's memory, never to disk or logs."""
    data = request.model_dump(mode="json")
    if request.sensitive_data:
        data["sensitive_data"] = revealed(request.sensitive_data)
    return data


class RayExecutor:
    """Plays runs on Ray workers; the app consumes their events as if the engine ran here."""

    def __init__(self, *, address: str | None = None, workers: int | None = None,
                 runs_per_worker: int = RUNS_PER_WORKER, own_origin: Any = None) -> None:
        self.own_origin = own_origin  # the app's OwnOrigin: workers refuse it to the agent like the app's browser
        self.address = address if address is not None else (os.environ.get("RAY_ADDRESS") or None)
        self.workers_wanted = workers
        self.runs_per_worker = runs_per_worker
        self._workers: list[Any] = []
        self._load: dict[int, int] = {}
        self._ready: asyncio.Task[None] | None = None
        self._keys = itertools.count(1)
        self._lock = asyncio.Lock()

    async def ensure_started(self) -> None:
        """Join or start Ray and create the workers (once; off the event loop)."""
        async with self._lock:
            if self._workers:
                return
            await asyncio.wait_for(asyncio.to_thread(self._init), INIT_TIMEOUT_S)

    def _init(self) -> None:
        try:
            import ray
        except ImportError:
            raise RayUnavailable("backend: Ray is not installed; install it with "
                                 "`.venv/bin/pip install -r requirements-ray.txt`, or use backend local") from None
        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "runtime_env": {"env_vars": env}}
            if self.address:
                kwargs["address"] = self.address
            else:  # a Ray of our own, never one left running by something else on this machine
                kwargs["address"], kwargs["num_cpus"] = "local", os.cpu_count() or 2
            try:
                ray.init(**kwargs)
            except Exception as exc:
                raise RayUnavailable(f"backend: Ray could not start or join the cluster at "
                                     f"{self.address or 'a new local one'} ({exc}); check RAY_ADDRESS") from None
        count = self.workers_wanted or max(1, int(ray.cluster_resources().get("CPU", 1)))
        worker_class = _worker_class()
        self._workers = [worker_class.remote(self.own_origin) for _ in range(count)]
        self._load = dict.fromkeys(range(count), 0)

    def _replace(self, index: int) -> None:
        """A new worker in the place of one that died."""
        self._workers[index] = _worker_class().remote(self.own_origin)

    async def stream(self, request: RunRequest, options: EngineOptions, cancel: asyncio.Event,
                     screenshot_dir: Path) -> AsyncGenerator[Event, None]:
        """The run's events as the worker produces them; WorkerLost if the worker dies under it."""
        import ray

        await self.ensure_started()
        index = min(self._load, key=lambda i: self._load[i])
        self._load[index] += 1
        worker, run_key = self._workers[index], f"run-{next(self._keys)}"
        opts = options.model_dump(mode="json", exclude={"screenshot_dir"})
        events = worker.run.options(num_returns="streaming").remote(_shipped(request), opts, run_key)
        stopper = asyncio.create_task(self._cancel_on(cancel, worker, run_key))
        try:
            async for ref in events:
                payload = await ref
                yield self._event(payload, screenshot_dir)
        except ray.exceptions.RayActorError as exc:
            self._replace(index)
            raise WorkerLost(f"the Ray worker playing this run died ({type(exc).__name__})") from None
        finally:
            stopper.cancel()
            self._load[index] -= 1

    @staticmethod
    async def _cancel_on(cancel: asyncio.Event, worker: Any, run_key: str) -> None:
        await cancel.wait()
        with contextlib.suppress(Exception):
            await worker.cancel.remote(run_key)

    @staticmethod
    def _event(payload: dict[str, Any], screenshot_dir: Path) -> Event:
        """Our event from a worker's payload, its screenshot written under the app's screenshots folder."""
        image = payload.pop("screenshot_bytes", None)
        event = _EVENT.validate_python(payload)
        if image is not None and isinstance(event, StepFinished):
            screenshot_dir.mkdir(parents=True, exist_ok=True)
            path = screenshot_dir / Path(event.item.screenshot or f"step-{event.item.step:03d}.jpg").name
            path.write_bytes(base64.b64decode(image))
            event = event.model_copy(update={"item": event.item.model_copy(update={"screenshot": str(path)})})
        return event

    async def worker_pids(self) -> list[int]:
        """The workers' process ids (tests kill one to see a run survive it)."""
        await self.ensure_started()
        return [int(p) for p in await asyncio.gather(*(w.pid.remote() for w in self._workers))]

    async def close(self) -> None:
        """Let the workers go (a local Ray started here is shut down)."""
        if not self._workers:
            return
        import ray

        for worker in self._workers:
            with contextlib.suppress(Exception):
                ray.kill(worker)
        self._workers = []
        if not self.address:
            await asyncio.to_thread(ray.shutdown)
