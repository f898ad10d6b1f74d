"""Helpers for end-to-end tests of the real app: start `python app.py` as a subprocess, a scripted
fake model keyed on markers in the prompt, and a webhook receiver on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from agent.testing.fakellm import call, last_user_text, reply

ROOT = Path(__file__).resolve().parent.parent
# Settings a developer may have exported that would change what these tests see.
SCRUBBED_ENV = ("WORKBENCH_API_KEY", "WORKBENCH_API_KEYS", "WEBHOOK_SECRET", "WEBHOOK_ALLOW_PRIVATE",
                "MAX_CONCURRENT_RUNS", "MAX_QUEUED_RUNS", "BROWSER_CDP_URL", "WORKBENCH_DATA_DIR", "OPENAI_API_BASE",
                "WORKBENCH_ALLOWED_DOMAINS", "WORKBENCH_BLOCKED_DOMAINS", "DEFAULT_PROVIDER", "DEFAULT_MODEL")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class App:
    """One `python app.py` process in its own process group, logging to a file."""

    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> App:
        """Launch the process (returns at once; call `ready()` to wait for it)."""
        self.starts += 1
        self.log_path = self.data_dir.parent / f"app-{self.data_dir.name}-{self.starts}.log"
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        env.update(self.env, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(self.port), "--data-dir", str(self.data_dir)],
            cwd=ROOT, env=env, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: Chromium goes down with it in the crash test
        )
        return self

    def ready(self, timeout: float = 120.0, headers: dict[str, str] | None = None) -> App:
        """Wait until /api/health says "ok": the UI mounted, the run service started, everything warm (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                answer = httpx.get(self.base + "/api/health", headers=headers, timeout=5)
                if answer.status_code == 200 and answer.json()["status"] == "ok":
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"app not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL to the group if it hangs; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap_group()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9 the app process (a crash), then whatever it left in its group (Chromium)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._reap_group()

    def _reap_group(self) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# ------------------------------------------------------------------ the scripted model
STEP_RE = re.compile(r"Step (\d+) of at most")
TASK_RE = re.compile(r"<task>\n(.*?)\n</task>", re.S)
URL_RE = re.compile(r"https?://[^\s\]]+")
# Task text -> a barrier its [shop] runs meet at step 2: a test that needs runs to overlap makes them
# overlap (each has started before any can finish), rather than hoping a pause is long enough.
RENDEZVOUS: dict[str, threading.Barrier] = {}


def agent_script(body: dict[str, Any]) -> Any:
    """The fake model: what it does depends on a marker in the task and the step number.

    [quick]  done at once;  [shop]  open the URL in the task, scroll, done;
    [seed]   open the URL, then done with JSON data;  [slow]  1 s per step, never done;
    [crash]  open the URL, scroll, then hang on step 3 (the test kills the app meanwhile).
    """
    if not body.get("tools"):  # an extract call
        return reply("nothing to extract")
    text = last_user_text(body)
    step = int(STEP_RE.search(text).group(1))  # type: ignore[union-attr]
    task = TASK_RE.search(text).group(1)  # type: ignore[union-attr]
    urls = URL_RE.findall(task)
    if "[quick]" in task:
        return reply("Answer at once.", call("done", text=f"quick answer to: {task}", success=True))
    if "[slow]" in task:
        time.sleep(1.0)
        return reply(f"Keep looking (step {step}).", call("scroll", down=True))
    if "[seed]" in task:
        if step == 1:
            return reply("Open the shop.", call("navigate", url=urls[0]))
        return reply("Report the cable.", call("done", data={"name": "USB-C cable 1 m", "price": 9.99}, success=True))
    if "[shop]" in task or "[crash]" in task:
        if step == 1:
            return reply("Open the shop.", call("navigate", url=urls[0]))
        if step == 2:
            if task in RENDEZVOUS:
                RENDEZVOUS[task].wait(timeout=60)
            else:
                time.sleep(0.5)  # a model takes a moment
            return reply("Look further down.", call("scroll", down=True))
        if "[crash]" in task:
            time.sleep(60)  # the test kills the app during this call
        return reply("Finish.", call("done", text=f"finished: {task}", success=True))
    return reply("Nothing to do.", call("done", text="unknown task", success=False))


# ------------------------------------------------------------------ a webhook receiver
@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Webhook receiver on 127.0.0.1: paths under /flaky fail twice then accept; others accept."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        receiver = self

        class _H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 20_000_000))
                with receiver.lock:
                    receiver.hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    seen = sum(1 for h in receiver.hits if h.path == self.path)
                status = 500 if self.path.startswith("/flaky") and seen <= 2 else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[Hit]:
        """Requests received on `path`, in order."""
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()


def poll(fn: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.2, what: str = "condition") -> Any:
    """Call `fn` until it returns something truthy (bounded); that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {json.dumps(last, default=str)[:2000]}")
