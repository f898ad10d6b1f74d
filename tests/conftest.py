"""Shared fixtures: local HTTP sites, one real Chromium, and the fake OpenAI-compatible model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agent.testing.fakellm import FakeLLM
from agent.testing.sites import serve_dir

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "tests" / "site"
DEMO = ROOT / "data" / "demo"


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
