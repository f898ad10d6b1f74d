"""Experiments through the workbench page (real Chromium), Gradio's API (gradio_client), the CLI, and a
kill -9 of the app in the middle of one (it resumes after the restart, never stuck)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from agent.testing.fakellm import FakeLLM, call, last_user_text, reply
from tests.apphelpers import ROOT, App, poll
from tests.test_ui import set_code, until

pytestmark = pytest.mark.slow
TASK_RE = re.compile(r"<task>\n(.*?)\n</task>", re.S)
STEP_RE = re.compile(r"Step (\d+) of at most")
JSONL = "\n".join(json.dumps(t) for t in [
    {"id": "sky", "prompt": "Say the colour of the sky", "check": {"equals": "blue"}},
    {"id": "grass", "prompt": "Say the colour of grass", "check": {"contains": ["green"]}},
])


def colours(body: dict[str, Any]) -> Any:
    """A mini model answers "red" to everything; the others know their colours. [walk]: 3 slow steps first."""
    text = last_user_text(body)
    task = TASK_RE.search(text).group(1)  # type: ignore[union-attr]
    step = int(STEP_RE.search(text).group(1))  # type: ignore[union-attr]
    if "[walk]" in task and step <= 3:
        time.sleep(0.5)
        return reply("Look around.", call("scroll", down=True))
    right = "blue" if "sky" in task else "green"
    return reply("Answer.", call("done", text="red" if "mini" in str(body.get("model")) else right, success=True))


@pytest.fixture(scope="module")
def model() -> Iterator[FakeLLM]:
    fake = FakeLLM(colours)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def app(model: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    running = App(tmp_path_factory.mktemp("expui") / "data",
                  {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "MAX_CONCURRENT_RUNS": "3"})
    running.start().ready()
    yield running
    running.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Any, app: App) -> Any:
    chromium = await browser.start()
    context = await chromium.new_context(viewport={"width": 1400, "height": 1400})
    context.set_default_timeout(30_000)
    page = await context.new_page()
    try:
        await page.goto(app.base + "/")
        await page.locator("#wb-exp-start").wait_for()
        yield page
    finally:
        await context.close()


async def test_the_matrix_fills_in_live_in_the_browser(page: Any, app: App) -> None:
    await set_code(page, "wb-exp-jsonl", JSONL)
    await until(lambda: page.locator("#wb-exp-taskset input").input_value(), what="the pasted set to be picked",
                check=lambda v: v.startswith("(uploaded"))
    await page.locator("#wb-exp-repeats input").fill("2")
    await page.locator("#wb-exp-name textarea, #wb-exp-name input").first.fill("colours")
    await page.click("#wb-exp-start")
    status = await until(lambda: page.locator("#wb-exp-view .wb-exp").get_attribute("data-status"),
                         what="the experiment to end", timeout=180, check=lambda v: v in ("done", "failed"))
    assert status == "done"
    cells = await page.evaluate("""() => [...document.querySelectorAll('#wb-exp-view .wb-matrix td')].map(td => ({
        task: td.dataset.task, variant: td.dataset.variant, text: td.querySelector('b').textContent,
        colour: getComputedStyle(td).backgroundColor,
        runs: [...td.querySelectorAll('a[href^="?run="]')].map(a => Number(a.getAttribute('href').slice(5))),
        compare: (td.querySelector('a.wb-exp-compare') || {}).getAttribute ? td.querySelector('a.wb-exp-compare').getAttribute('href') : null,
    }))""")
    by = {(c["task"], c["variant"]): c for c in cells}
    # the default variants: A is gpt-4.1-mini (always wrong), B is gpt-4.1 (always right)
    assert {k: c["text"] for k, c in by.items()} == {("sky", "A"): "0/2", ("sky", "B"): "2/2",
                                                     ("grass", "A"): "0/2", ("grass", "B"): "2/2"}
    assert by[("sky", "B")]["colour"] == "rgb(187, 247, 208)" and by[("sky", "A")]["colour"] == "rgb(254, 202, 202)"
    exp_id = int(await page.locator("#wb-exp-view .wb-exp").get_attribute("data-experiment-id"))
    report = (await asyncio.to_thread(httpx.get, f"{app.base}/api/experiments/{exp_id}")).json()
    api_runs = sorted(c["run_id"] for c in report["cells"] if c["task_id"] == "sky" and c["variant"] == "B")
    assert sorted(by[("sky", "B")]["runs"]) == api_runs
    assert by[("sky", "B")]["compare"] == f"?compare={api_runs[0]},{api_runs[1]}"
    verdict = await page.locator("#wb-exp-view .wb-verdicts li").first.inner_text()
    assert verdict.startswith("no detectable difference between A and B at n = 4 (B better on 2, worse on 0")
    rates = await page.evaluate("""() => [...document.querySelectorAll('#wb-exp-view .wb-variants tbody tr')].map(
        tr => [...tr.children].map(td => td.textContent))""")
    assert rates[1][:4] == ["B", "4/4", "100%", "51–100%"]  # Wilson 4/4: (0.510, 1)
    past = await until(lambda: page.locator("#wb-exp-past").inner_text(), what="the past experiments list",
                       check=lambda text: "colours" in text)
    assert "done" in past


async def test_the_experiment_endpoint_of_the_gradio_api_streams_progress(app: App) -> None:
    from gradio_client import Client

    spec = {"name": "via gradio", "tasks_jsonl": JSONL, "repeats": 1, "variants": [{"name": "B", "model": "gpt-4.1"}]}

    def stream() -> list[dict[str, Any]]:
        job = Client(app.base + "/", verbose=False).submit(json.dumps(spec), api_name="/experiment")
        return [json.loads(json.dumps(o)) for o in job]

    outputs = await asyncio.to_thread(stream)
    assert outputs[-1]["status"] == "done" and outputs[-1]["progress"]["done"] == 2
    assert [o["progress"]["done"] for o in outputs] == sorted(o["progress"]["done"] for o in outputs)
    assert outputs[-1]["variants"][0]["passes"] == 2


def test_the_cli_against_a_running_workbench(app: App, tmp_path: Any) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(JSONL)
    out = subprocess.run([sys.executable, "-m", "agent.experiments", "run", str(tasks), "--server", app.base,
                          "--variant", "mini=openai:gpt-4.1-mini", "--variant", "full=openai:gpt-4.1",
                          "--repeats", "1", "--concurrency", "2"], cwd=ROOT, capture_output=True, text=True,
                         timeout=240, check=False)
    assert out.returncode == 0, out.stderr
    assert re.search(r"^full\s+2/2\s+100%", out.stdout, re.M) and re.search(r"^mini\s+0/2\s+0%", out.stdout, re.M)
    assert "no detectable difference between mini and full at n = 2" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "agent.experiments", "run", str(tasks), "--server", app.base,
                          "--variant", "nocolon"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--variant: 'nocolon'" in bad.stderr


def test_kill_mid_experiment_resumes_after_the_restart(model: FakeLLM, tmp_path: Any) -> None:
    victim = App(tmp_path / "data", {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test",
                                     "MAX_CONCURRENT_RUNS": "3"}).start().ready()
    try:
        tasks = [{"id": f"walk{i}", "prompt": f"Walk then say the colour of the sky [walk] {i}",
                  "check": {"equals": "blue"}} for i in range(3)]
        with httpx.Client(base_url=victim.base, timeout=60) as http:
            exp_id = http.post("/api/experiments", json={"tasks": tasks, "concurrency": 2, "variants": [
                {"name": "B", "model": "gpt-4.1"}]}).json()["experiment_id"]
            poll(lambda: http.get(f"/api/experiments/{exp_id}").json()["progress"]["running"] == 2, timeout=60,
                 what="two cells running")
            before = {c["task_id"]: c["run_id"] for c in http.get(f"/api/experiments/{exp_id}").json()["cells"]}
        victim.kill()
        victim.start().ready()
        assert f"experiments resumed after the last stop: {exp_id}" in victim.log()
        with httpx.Client(base_url=victim.base, timeout=60) as http:
            report = poll(lambda: (r := http.get(f"/api/experiments/{exp_id}").json())["status"] != "running" and r,
                          timeout=180, what="the resumed experiment to end")
            assert (report["status"], report["progress"]["done"]) == ("done", 3)
            assert all(c["passed"] for c in report["cells"])
            for cell in report["cells"]:
                old = before.get(cell["task_id"])
                if old is not None:  # played again, as a new run; the killed one stays interrupted
                    assert cell["run_id"] != old
                    assert http.get(f"/api/runs/{old}").json()["error"] == "interrupted"
    finally:
        victim.stop()
