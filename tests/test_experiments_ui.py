"""Experiments through the workbench page (real Chromium at 1,440 px), Gradio's API (gradio_client), the CLI
(its CI flags too), and a kill -9 of the app in the middle of one (it resumes after the restart, never stuck).
Reading one back: a link opens it, a click on a past one opens it, a visible progress bar, tables that fit
or scroll, cancelled cells shown as such, each repeat's grade and reason, the viewer's grade of a run."""

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
# Six tasks: enough for a difference over tasks to reach p < 0.05 (2/64 when all six agree).
JSONL6 = "\n".join(json.dumps({"id": f"{what}{i}", "prompt": f"Say the colour of the {what} ({i})",
                                "check": {"equals": colour}})
                    for what, colour in (("sky", "blue"), ("grass", "green")) for i in range(3))


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
    # Before Start, the button's preview: the default demo-shop set, 14 tasks × 2 variants × 3 repeats.
    estimate = await until(lambda: page.locator("#wb-exp-estimate").inner_text(), what="the dry run's preview",
                           check=lambda text: "runs" in text)
    assert re.match(r"Start: 84 runs, about \$[\d.]+; differences under about \d+ points would likely go unseen "
                    r"with 14 tasks × 3 repeats", estimate), estimate
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
        marks: [...td.querySelectorAll('a.wb-exp-mark')].map(a => ({run: Number(a.getAttribute('href').slice(5)),
            title: a.getAttribute('title'), text: a.textContent, repeat: Number(a.dataset.repeat)})),
        compare: [...td.querySelectorAll('a.wb-exp-compare')].map(a => a.getAttribute('href')),
    }))""")
    by = {(c["task"], c["variant"]): c for c in cells}
    # the default variants: A is gpt-4.1-mini (always wrong), B is gpt-4.1 (always right)
    assert {k: c["text"] for k, c in by.items()} == {("sky", "A"): "0/2", ("sky", "B"): "2/2",
                                                     ("grass", "A"): "0/2", ("grass", "B"): "2/2"}
    assert by[("sky", "B")]["colour"] == "rgb(187, 247, 208)" and by[("sky", "A")]["colour"] == "rgb(254, 202, 202)"
    # Each repeat: its run, its grade and the reason on hover.
    assert [m["title"] for m in by[("sky", "A")]["marks"]] == [
        "repeat 1: failed: differs from 'blue'", "repeat 2: failed: differs from 'blue'"]
    assert [m["text"] for m in by[("sky", "B")]["marks"]] == ["✓", "✓"]
    exp_id = int(await page.locator("#wb-exp-view .wb-exp").get_attribute("data-experiment-id"))
    report = (await asyncio.to_thread(httpx.get, f"{app.base}/api/experiments/{exp_id}")).json()
    run_of = {(c["task_id"], c["variant"], c["repeat"]): c["run_id"] for c in report["cells"]}
    assert [m["run"] for m in by[("sky", "B")]["marks"]] == [run_of[("sky", "B", 1)], run_of[("sky", "B", 2)]]
    # B's run compared with the baseline A's run of the same task and repeat (not two repeats of B).
    assert by[("sky", "B")]["compare"] == [f"?compare={run_of[('sky', 'A', r)]},{run_of[('sky', 'B', r)]}"
                                           for r in (1, 2)]
    assert by[("sky", "A")]["compare"] == []  # the baseline itself
    verdict = await page.locator("#wb-exp-view .wb-verdicts li").first.inner_text()
    assert verdict == report["comparisons"][0]["verdict"]
    assert verdict.startswith("not enough evidence that B differs from A: +100 points [") and verdict.endswith(
        "]; with 2 tasks no difference can reach p < 0.05 in a test over tasks: add tasks")
    rates = await page.evaluate("""() => [...document.querySelectorAll('#wb-exp-view .wb-variants tbody tr')].map(
        tr => [...tr.children].map(td => td.textContent))""")
    b = report["variants"][1]
    assert rates[1][:4] == ["B", "4/4", "100%", f"{100 * b['ci_low']:.0f}–100%"]
    assert re.fullmatch(r"\$\d+\.\d{4}", rates[1][10])  # litellm prices gpt-4.1
    # A visible progress bar, and tables that fit the 1,440 px page or scroll inside it (never cut off).
    bar = await page.evaluate("""() => { const p = document.querySelector('#wb-exp-view .wb-progress');
        const fill = p.querySelector('.wb-progress-played'); return {height: p.getBoundingClientRect().height,
        width: fill.getBoundingClientRect().width, full: p.getBoundingClientRect().width,
        colour: getComputedStyle(fill).backgroundColor}; }""")
    assert bar["height"] >= 8 and bar["width"] == pytest.approx(bar["full"], abs=1) and bar["colour"] != "rgba(0, 0, 0, 0)"
    fits = await page.evaluate("""() => [...document.querySelectorAll('#wb-exp-view table')].map(t => {
        const box = t.parentElement; const r = box.getBoundingClientRect();
        return {right: r.right, page: document.documentElement.clientWidth, scrolls: getComputedStyle(box).overflowX,
                fits: t.scrollWidth <= box.clientWidth + 1}; })""")
    assert all(f["right"] <= f["page"] and (f["fits"] or f["scrolls"] == "auto") for f in fits), fits
    past = await until(lambda: page.locator("#wb-exp-past").inner_text(), what="the past experiments list",
                       check=lambda text: "colours" in text)
    assert "done" in past and "A 0/4 · B 4/4" in past
    # The viewer shows the grade of a run an experiment played: a "success" run that failed its check.
    await page.goto(f"{app.base}/?run={run_of[('sky', 'A', 1)]}")
    banner = await until(lambda: page.locator("#wb-viewer .wb-grade").all_inner_texts(), what="the grade banner",
                         check=lambda texts: bool(texts))
    assert f"Experiment #{exp_id}: colours · task sky · variant A · repeat 1: failed — differs from 'blue'" in banner[0]


async def test_an_experiment_opens_from_a_link_and_a_click_and_cancelled_cells_say_so(page: Any, app: App) -> None:
    def start(body: dict[str, Any]) -> int:
        return int(httpx.post(f"{app.base}/api/experiments", json=body).json()["experiment_id"])

    slow = [{"id": f"w{i}", "prompt": f"Walk then say the colour of the sky [walk] {i}", "check": {"equals": "blue"}}
            for i in range(6)]
    cancelled = await asyncio.to_thread(start, {"name": "cut short", "tasks": slow, "repeats": 2, "concurrency": 1,
                                                "variants": [{"name": "B", "model": "gpt-4.1"}]})
    await asyncio.to_thread(poll, lambda: (p := httpx.get(f"{app.base}/api/experiments/{cancelled}/progress").json()[
        "progress"])["played"] and p["running"], timeout=90, what="a played cell and a running one")
    assert (await asyncio.to_thread(httpx.post, f"{app.base}/api/experiments/{cancelled}/cancel",
                                    timeout=90)).status_code == 200
    other = await asyncio.to_thread(start, {"name": "quick one", "tasks_jsonl": JSONL,
                                            "variants": [{"name": "B", "model": "own-model"}]})
    await asyncio.to_thread(poll, lambda: httpx.get(f"{app.base}/api/experiments/{other}/progress").json()[
        "status"] == "done", timeout=120, what="the quick experiment")
    await page.goto(f"{app.base}/?experiment={cancelled}")
    view = page.locator("#wb-exp-view .wb-exp")
    await until(lambda: view.get_attribute("data-experiment-id"), what="the linked experiment",
                check=lambda v: v == str(cancelled))
    counts = await page.locator("#wb-exp-view .wb-exp-counts").inner_text()
    assert re.fullmatch(r"([1-9]|1[01]) played, ([1-9]|1[01]) cancelled of 12", counts), counts
    played = int(counts.split()[0])
    marks = await page.locator("#wb-exp-view .wb-exp-mark.wb-cancelled").count()
    assert marks == 12 - played
    assert "not played" in (await page.locator("#wb-exp-view .wb-exp-mark.wb-cancelled").first.get_attribute("title"))
    # A click on a past experiment opens it.
    ids = await until(lambda: page.locator('#wb-exp-past [role=gridcell][data-col="0"]').all_inner_texts(),
                      what="the past experiments", check=lambda v: str(other) in [x.strip() for x in v])
    row = [x.strip() for x in ids].index(str(other))
    await page.locator(f'#wb-exp-past [data-testid="cell-{row}-1"]').click()
    await until(lambda: view.get_attribute("data-experiment-id"), what="the clicked experiment",
                check=lambda v: v == str(other))
    cost = await page.locator("#wb-exp-view .wb-variants tbody tr td").nth(9).inner_text()
    assert cost == "unknown"  # litellm has no price for own-model: unknown, never $0.0000
    await page.goto(f"{app.base}/?experiment=12x")  # never an id: a warning that does not echo it
    await page.get_by_text("?experiment= takes an experiment id (digits), e.g. ?experiment=3").wait_for()


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


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.experiments", "run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_the_cli_against_a_running_workbench_with_its_ci_flags(app: App, tmp_path: Any) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(JSONL6)
    both = ["--server", app.base, "--variant", "mini=openai:gpt-4.1-mini", "--variant", "full=openai:gpt-4.1",
            "--concurrency", "3"]
    dry = cli(str(tasks), *both, "--repeats", "2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert re.match(r"24 runs, about \$[\d.]+; differences under about \d+ points would likely go unseen with 6 "
                    r"tasks × 2 repeats", dry.stdout), dry.stdout
    out = cli(str(tasks), *both, "--baseline", "full", "--fail-under", "0.8", "--fail-on-regression")
    assert out.returncode == 1, out.stderr  # mini is at 0% and significantly worse than full
    assert re.search(r"^full\s+6/6\s+100%", out.stdout, re.M) and re.search(r"^mini\s+0/6\s+0%", out.stdout, re.M)
    assert "mini − full = −100 points [" in out.stdout and "p = 0.031 (Holm), 6 tasks" in out.stdout
    assert "fail: mini: success rate 0% is under --fail-under 0.8" in out.stderr
    assert "fail: mini is significantly worse than full: mini − full = −100 points" in out.stderr
    passing = cli(str(tasks), "--server", app.base, "--variant", "full=openai:gpt-4.1", "--fail-under", "0.8",
                  "--fail-on-regression")
    assert passing.returncode == 0, passing.stderr
    bad = cli(str(tasks), "--server", app.base, "--variant", "nocolon", timeout=60)
    assert bad.returncode == 2 and "--variant: 'nocolon'" in bad.stderr
    keyless = cli(str(tasks), "--server", app.base, "--variant", "k=anthropic:claude-x", timeout=60)
    assert keyless.returncode == 2 and "variants[0].provider: variant 'k': No API key for provider 'anthropic'" \
        in keyless.stderr


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
            assert (report["status"], report["progress"]["played"]) == ("done", 3)
            assert all(c["passed"] for c in report["cells"])
            for cell in report["cells"]:
                old = before.get(cell["task_id"])
                if old is not None:  # played again, as a new run; the killed one stays interrupted
                    assert cell["run_id"] != old
                    assert http.get(f"/api/runs/{old}").json()["error"] == "interrupted"
    finally:
        victim.stop()
