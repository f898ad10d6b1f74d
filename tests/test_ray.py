"""The Ray backend for real, on a local Ray (2 CPUs): runs played by Ray workers with their own Chromium,
their events streamed back to this process (the one writer of the run log), a worker killed in the
middle of a run (the run ends interrupted; the experiment plays that cell once more), and the app
joining a cluster it did not start (`ray start --head` on loopback, then RAY_ADDRESS)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agent.engine.browser import Browser
from agent.experiments.runner import ExperimentRunner
from agent.log.store import Store
from agent.service.runs import RunService
from agent.testing.fakellm import FakeLLM, call, last_user_text, reply

ray = pytest.importorskip("ray", reason="the Ray backend needs requirements-ray.txt (make test installs it)")
pytestmark = pytest.mark.slow
TASK_RE = re.compile(r"<task>\n(.*?)\n</task>", re.S)
STEP_RE = re.compile(r"Step (\d+) of at most")


def walker(body: dict[str, Any]) -> Any:
    """After the start page, three unhurried scroll steps (time for a worker to die mid-run), then the sky is blue."""
    text = last_user_text(body)
    step = int(STEP_RE.search(text).group(1))  # type: ignore[union-attr]
    if step <= 4:
        time.sleep(0.6)
        return reply("Look around.", call("scroll", down=True))
    return reply("Answer.", call("done", text="blue", success=True))


@pytest.fixture(scope="module")
def model() -> Iterator[FakeLLM]:
    fake = FakeLLM(walker)
    with pytest.MonkeyPatch.context() as mp:  # the workers inherit these through Ray's runtime env
        mp.setenv("OPENAI_BASE_URL", fake.url)
        mp.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        yield fake
    fake.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(model: FakeLLM, browser: Browser, site_url: str, tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[RunService]:
    store = Store(tmp_path_factory.mktemp("ray") / "data", snapshot_interval_s=None)
    running = RunService(store, browser, data_dir=store.data_dir, max_concurrent=3)
    await running.start()
    try:
        yield running
    finally:
        await running.close()  # closes the Ray workers and the local Ray too
        store.close()


def worker_pids() -> list[int]:
    """Processes whose title says they are our Ray workers."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"EngineWorker" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


async def test_a_run_on_a_ray_worker_streams_its_events_to_the_one_writer(service: RunService, site_url: str) -> None:
    task_id, run_id = await service.submit({"prompt": "Walk around and say the colour of the sky",
                                            "model": "gpt-4o-mini", "start_url": f"{site_url}/long.html"},
                                           executor="ray")
    seen = [type(e).__name__ async for e in service.subscribe(run_id)]
    assert seen[0] == "RunStarted" and seen[-1] == "RunFinished"
    assert seen.count("StepFinished") == 5 and seen.index("StepStarted") < seen.index("StepFinished")
    final = await service.wait(run_id)
    assert (final.status, final.result, len(final.history)) == ("success", "blue", 5)
    stored = await service.aget(run_id)
    assert stored == final
    shots = [Path(item.screenshot) for item in stored.history if item.screenshot]
    assert shots and all(p.is_file() and p.is_relative_to(service._log.screenshots_dir) for p in shots)
    pids = worker_pids()
    assert pids and os.getpid() not in pids
    for pid in pids:  # the workers never opened the run log: the app is its one writer
        fds = [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir() if f.is_symlink()]
        assert not any("runs.duckdb" in target for target in fds), pid


async def test_a_worker_killed_mid_run_interrupts_the_run_and_the_cell_is_played_again(
        service: RunService, site_url: str) -> None:
    runner = ExperimentRunner(service, base_url=site_url)
    exp_id = await runner.start({"name": "on ray", "backend": "ray", "concurrency": 1, "repeats": 1,
                                 "tasks": [{"id": "walk", "prompt": "Walk around and say the colour of the sky",
                                            "start_url": "{BASE_URL}/long.html", "check": {"equals": "blue"}}],
                                 "variants": [{"name": "A", "model": "gpt-4o-mini"}]})

    async def first_run_two_steps_in() -> int:
        for _ in range(300):
            cells = (await service.get_experiment(exp_id))["cells"]
            run_id = cells[0]["run_id"]
            if run_id and len((await service.aget(run_id)).history) >= 2:  # type: ignore[union-attr]
                return int(run_id)
            await asyncio.sleep(0.1)
        raise AssertionError("the cell's run never got two steps in")

    killed_run = await first_run_two_steps_in()
    for pid in worker_pids():
        os.kill(pid, signal.SIGKILL)
    for _ in range(600):
        if not runner.is_running(exp_id):
            break
        await asyncio.sleep(0.2)
    report = await service.get_experiment(exp_id)
    (cell,) = report["cells"]
    assert (report["status"], cell["status"], cell["attempts"], cell["passed"]) == ("done", "done", 2, True)
    assert cell["run_id"] != killed_run
    lost = await service.aget(killed_run)
    assert lost is not None and (lost.status, lost.stop_reason, lost.error.split(":")[0]) == (
        "failure", "interrupted", "interrupted")
    assert "the Ray worker playing this run died" in lost.error
    assert 2 <= len(lost.history) < 5  # what it did before the worker died is kept
    again = await service.aget(cell["run_id"])
    assert again is not None and (again.status, again.result) == ("success", "blue")


async def test_an_unknown_backend_is_refused_naming_the_field(service: RunService, site_url: str) -> None:
    from agent.experiments.tasks import TaskError

    runner = ExperimentRunner(service, base_url=site_url)
    with pytest.raises(TaskError) as info:
        await runner.start({"tasks": [{"id": "t", "prompt": "abc"}], "variants": [{"name": "A"}], "backend": "mars"})
    assert (info.value.field, info.value.message) == ("backend", "Input should be 'local' or 'ray'")


# ------------------------------------------------------------------ a cluster the app did not start
def _session_pids(sid: int) -> list[int]:
    """Processes of the session `sid` (the `ray start` we launched and everything Ray started under it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:  # after "pid (comm)": state, ppid, pgrp, session
                found.append(int(entry.name))
    return found


@pytest.fixture
def cluster() -> Iterator[tuple[str, int]]:
    """`ray start --head` on loopback in its own session, with ports of its own; stopped (that session only) after."""
    import shutil
    import subprocess
    import sys
    import tempfile

    from tests.apphelpers import free_port

    temp = tempfile.mkdtemp(prefix="rayj-", dir="/tmp")  # short: Ray's socket paths must fit in 107 characters
    port = free_port()
    flags = {f"--{name}": str(free_port()) for name in (
        "node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")}
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats",
         "--temp-dir", temp, *[x for kv in flags.items() for x in kv]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        yield f"127.0.0.1:{port}", head.pid
    finally:
        head.send_signal(signal.SIGTERM)  # --block: it stops the processes it started
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            head.kill()
        for pid in _session_pids(head.pid):  # whatever of that session outlived it, by id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def test_an_experiment_on_a_cluster_the_app_did_not_start(cluster: tuple[str, int], tmp_path: Path) -> None:
    import httpx

    from tests.apphelpers import App, poll

    address, head_pid = cluster
    fake = FakeLLM(lambda body: reply("Answer.", call("done", text="blue", success=True)))
    app = App(tmp_path / "data", {"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test", "RAY_ADDRESS": address,
                                  "MAX_CONCURRENT_RUNS": "3"})
    try:
        app.start().ready()
        with httpx.Client(base_url=app.base, timeout=180) as http:
            started = http.post("/api/experiments", json={
                "backend": "ray", "concurrency": 2, "repeats": 2, "variants": [{"name": "A", "model": "gpt-4o-mini"}],
                "tasks": [{"id": "sky", "prompt": "Say the colour of the sky", "check": {"equals": "blue"}}]})
            assert started.status_code == 202, started.text
            exp_id = started.json()["experiment_id"]
            report = poll(lambda: (r := http.get(f"/api/experiments/{exp_id}").json())["status"] != "running" and r,
                          timeout=240, what="the experiment on the joined cluster")
        assert (report["status"], report["variants"][0]["passes"]) == ("done", 2), report
        # The workers are the cluster's (its session), not processes the app started.
        workers = [pid for pid in worker_pids() if pid in _session_pids(head_pid)]
        assert workers and all(pid not in _session_pids(os.getsid(app.proc.pid)) for pid in workers)  # type: ignore[union-attr]
    finally:
        app.stop()
        fake.close()
