"""The run service in process: live viewers, queueing, engine failures, shutdown; real Chromium,
the fake model through litellm, a real DuckDB store in tmp_path."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.engine.browser import Browser
from agent.log.store import Store
from agent.models import RunFinished, RunStarted, StepFinished, StepStarted, validation_errors
from agent.service.runs import NotFound, RunService, ServiceBusy, ServiceClosed
from agent.testing.fakellm import FakeLLM, call, last_user_text, reply


def script(body: dict[str, Any]) -> Any:
    """Scroll on the first model step, done on the next; [slow] tasks scroll forever, 0.5 s a step."""
    text = last_user_text(body)
    step = int(re.search(r"Step (\d+) of at most", text).group(1))  # type: ignore[union-attr]
    if "[slow]" in text:
        import time

        time.sleep(0.5)
        return reply("Keep scrolling.", call("scroll", down=True))
    if step <= 2:
        return reply("Look down the page.", call("scroll", down=True))
    return reply("Finish.", call("done", text="seen it", success=True))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
def model(fake_llm: FakeLLM) -> FakeLLM:
    fake_llm.reset(script)
    return fake_llm


async def collect(events: AsyncIterator[Any]) -> list[Any]:
    return [e async for e in events]


async def test_viewers_get_every_event_live_and_after_the_end(
    model: FakeLLM, browser: Browser, store: Store, site_url: str
) -> None:
    service = RunService(store, browser, data_dir=store.data_dir)
    request = {"prompt": "look at the page", "model": "gpt-4o-mini", "start_url": f"{site_url}/index.html"}
    task_id, run_id = await service.submit(request)
    assert service.get(run_id).status == "in_progress"  # type: ignore[union-attr]
    viewers = [asyncio.create_task(collect(service.subscribe(run_id))) for _ in range(3)]
    final = await service.wait(run_id, timeout=90)
    seen = await asyncio.wait_for(asyncio.gather(*viewers), 30)
    kinds = [type(e).__name__ for e in seen[0]]
    assert kinds == ["RunStarted", "StepStarted", "StepFinished", "StepStarted", "StepFinished",
                     "StepStarted", "StepFinished", "RunFinished"]
    assert seen[0] == seen[1] == seen[2]  # every viewer saw the same events, none dropped
    assert isinstance(seen[0][0], RunStarted) and seen[0][0].model == "openai/gpt-4o-mini"
    assert [e.step for e in seen[0] if isinstance(e, StepStarted)] == [1, 2, 3]
    assert [e.item for e in seen[0] if isinstance(e, StepFinished)] == final.history
    assert seen[0][-1] == RunFinished(response=final, at=seen[0][-1].at)
    assert (final.task_id, final.task_run_id, final.status, final.result) == (task_id, run_id, "success", "seen it")
    assert store.get_run(run_id) == final  # recorded as it happened, read back whole
    late = await collect(service.subscribe(run_id))  # after the end: the steps, then the end, from the store
    assert [e.item for e in late[:-1]] == final.history and late[-1].response == final
    assert service.get(run_id) == final and service.active_runs() == []
    shots = sorted(p.name for p in (store.screenshots_dir / str(run_id)).iterdir())
    assert shots == ["step-002.jpg", "step-003.jpg"]  # step 1 only opened the start URL
    assert [Path(i.screenshot).name for i in final.history if i.screenshot] == shots
    await service.close()


class ExplodingService(RunService):
    """The real engine, with a bug injected after its first step (as a broken replay source would be)."""

    def _event_source(self, live: Any, options: Any) -> AsyncIterator[Any]:
        source = super()._event_source(live, options)

        async def events() -> AsyncIterator[Any]:
            async for event in source:
                yield event
                if isinstance(event, StepFinished):
                    raise RuntimeError("boom after the first step")

        return events()


async def test_an_exception_in_the_event_source_ends_the_run_with_the_reason(
    model: FakeLLM, browser: Browser, store: Store, site_url: str
) -> None:
    service = ExplodingService(store, browser, data_dir=store.data_dir)
    request = {"prompt": "look at the page", "model": "gpt-4o-mini", "start_url": f"{site_url}/index.html"}
    final = await asyncio.wait_for(service.run(request), 90)
    assert (final.status, final.is_done, final.is_successful) == ("failure", False, False)
    assert final.error == "internal error: RuntimeError: boom after the first step"
    assert final.stop_reason == "internal_error"
    assert [item.description for item in final.history] == ["Open the start page"]
    assert store.get_run(final.task_run_id) == final  # type: ignore[arg-type]
    # The browser context was closed and the slot freed: the next run goes through.
    ok = await asyncio.wait_for(RunService(store, browser, data_dir=store.data_dir).run(request), 90)
    assert ok.status == "success"
    await service.close()


async def test_queue_limit_cancel_and_shutdown(model: FakeLLM, browser: Browser, store: Store, site_url: str) -> None:
    service = RunService(store, browser, data_dir=store.data_dir, max_concurrent=1, max_queued=1)
    slow = {"prompt": "scroll for ever [slow]", "model": "gpt-4o-mini", "start_url": f"{site_url}/long.html"}
    _, running = await service.submit(slow)
    _, queued = await service.submit(slow)
    with pytest.raises(ServiceBusy, match="MAX_QUEUED_RUNS"):
        await service.submit(slow)
    assert service.is_queued(queued) and not service.is_queued(running)
    assert await service.cancel(queued) is True
    cancelled = await service.wait(queued, timeout=10)
    assert (cancelled.status, cancelled.error, cancelled.stop_reason, cancelled.history) == (
        "failure", "cancelled", "cancelled", [])
    assert store.get_run(queued).stop_reason == "cancelled"  # type: ignore[union-attr]
    assert await service.cancel(queued) is False  # already ended
    async for event in service.subscribe(running):  # bounded by the run's timeout
        if isinstance(event, StepFinished) and event.item.step >= 2:
            break
    await asyncio.wait_for(service.close(), 30)
    ended = store.get_run(running)
    assert ended is not None and (ended.status, ended.error, ended.stop_reason) == ("failure", "shutdown", "shutdown")
    assert len(ended.history) >= 2 and ended.history[0].description == "Open the start page"
    with pytest.raises(ServiceClosed):
        await service.submit(slow)


async def test_bad_submissions_raise_before_anything_is_stored(browser: Browser, store: Store) -> None:
    service = RunService(store, browser, data_dir=store.data_dir)
    with pytest.raises(ValidationError):
        await service.submit({"prompt": "ab"})
    with pytest.raises(ValidationError, match="metadata") as info:
        await service.submit({"prompt": "tell me", "webhook_url": "http://metadata.google.internal/x"})
    assert [e["field"] for e in validation_errors(info.value)] == ["webhook_url"]
    with pytest.raises(NotFound, match="^task 77 not found$"):
        await service.submit({"prompt": "tell me"}, task_id=77)
    with pytest.raises(NotFound, match="^run 5 not found$"):
        await service.wait(5)
    with pytest.raises(NotFound, match="^run 5 not found$"):
        await service.cancel(5)
    assert store.list_runs() == ([], 0) and store.list_tasks() == ([], 0)
    await service.close()


async def test_concurrency_setting_from_the_environment(
    browser: Browser, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_CONCURRENT_RUNS", "7")
    assert RunService(store, browser, data_dir=store.data_dir).max_concurrent == 7
    monkeypatch.setenv("MAX_CONCURRENT_RUNS", "lots")
    with pytest.raises(ValueError, match="MAX_CONCURRENT_RUNS='lots' is not a whole number"):
        RunService(store, browser, data_dir=store.data_dir)
