"""The workbench as a separate process, for benchmarks: `python app.py` on a free port, and its memory.

`WorkbenchProcess(data_dir, env).start()` launches it (its own process group, so that its Chromium
goes down with it), waits until /api/health says "ok", and `pss_mb()` sums the proportional set size of the app
and every process it started (Chromium included), the honest measure of what it costs the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return found


def own_pss_mb(pid: int) -> float:
    """Proportional set size of `pid` alone, in MB (Linux /proc; 0 where unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0) / 1024
    except OSError:
        return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size of `pid` and all its descendants, in MB (Linux /proc; 0 where unreadable)."""
    return sum(own_pss_mb(each) for each in _children(pid))


class WorkbenchProcess:
    """One `python app.py` on a free port, its output in a log file."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir, self.env = Path(data_dir), env
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        """The app's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout_s: float = 120.0) -> WorkbenchProcess:
        """Launch it and wait (bounded) until /api/health says "ok" (the UI up, everything warm)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir.parent / f"app-{self.port}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(self.port), "--data-dir",
                                      str(self.data_dir)], cwd=ROOT, env={**os.environ, **self.env},
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}; see {log.name}")
            try:
                answer = httpx.get(self.base + "/api/health", timeout=5)
                if answer.status_code == 200 and answer.json()["status"] == "ok":
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"the app did not answer within {timeout_s:g} s; see {log.name}")

    def pss_mb(self) -> float:
        """What the app and its Chromium take now (PSS, MB)."""
        return pss_mb(self.proc.pid) if self.proc is not None else 0.0

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to the whole group."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
