"""Shared fixtures: local HTTP sites, one real Chromium, and the fake OpenAI-compatible model."""

from __future__ import annotations

import os
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tests.fakellm import FakeLLM  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "tests" / "site"
DEMO = ROOT / "data" / "demo"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        # `?delay_ms=300` answers late, as a real server across a network does (bounded to 2 s)
        delay = parse_qs(urlsplit(self.path).query).get("delay_ms", ["0"])[0]
        if delay.isdigit():
            time.sleep(min(int(delay), 2000) / 1000)
        super().do_GET()


def serve_dir(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    """Serve `directory` over HTTP on 127.0.0.1; returns the server and its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    """Base URL of the engine's test pages (tests/site)."""
    server, url = serve_dir(SITE)
    yield url
    server.shutdown()


@pytest.fixture(scope="session")
def demo_url() -> Iterator[str]:
    """Base URL of the bundled demo shop (data/demo), served on its own."""
    server, url = serve_dir(DEMO)
    yield url
    server.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser():
    """One real headless Chromium for the whole test session."""
    from agent.engine.browser import Browser

    b = Browser()
    await b.start()
    yield b
    await b.close()


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    """A fake OpenAI-compatible server, wired in through OPENAI_BASE_URL as a user would."""
    fake = FakeLLM()
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    yield fake
    fake.close()
