"""The prompt engineer's loop against the real app: `python app.py` in a subprocess, its page in real
headless Chromium, runs on the bundled demo shop with the fake model. What the model saw and said (REST
and viewer), the system prompt the user changes, the share link, the export (JSON, and HTML opened
offline in Chromium), comparing two runs, and the history's search, filters, paging and totals."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from agent.engine.llm import KEY_VARS
from agent.engine.prompts import SYSTEM_PROMPT
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply
from tests.apphelpers import App, poll
from tests.test_ui import VIEWPORT, until, viewer

pytestmark = pytest.mark.slow

STEP_RE = re.compile(r"Step (\d+) of at most")
TASK_RE = re.compile(r"<task>\n(.*?)\n</task>", re.S)
URL_RE = re.compile(r"https?://[^\s\]]+")
CHEAPEST = "USB-C to USB-C Cable 0.5 m"
OTHER = "USB-C to USB-C Cable 1 m"
EXTEND = "Prices on this shop include VAT: say so in the answer."
# The arguments of the search step as the model writes them (spacing kept in the trace).
SEARCH_ARGS = '{"index": %d,  "text": "usb-c"}'


def shop_model(body: dict[str, Any]) -> Any:
    """Open the demo shop, search "usb-c", open the cheapest result ([other]: the next one), report it.

    [extract]: read the product page with extract before reporting.  [quick]: done at once.
    """
    if not body.get("tools"):
        return reply(f"The page shows {CHEAPEST} at €5.49.", usage=(60, 12))
    text = last_user_text(body)
    step = int(STEP_RE.search(text).group(1))  # type: ignore[union-attr]
    task = TASK_RE.search(text).group(1)  # type: ignore[union-attr]
    if "[quick]" in task:
        return reply("Answer at once.", call("done", text=f"quick answer to: {task}", success=True))
    if step == 1:
        return reply("Open the demo shop.", call("navigate", url=URL_RE.findall(task)[0].rstrip(".,")))
    if step == 2:
        return reply("Search for USB-C cables.",
                     call("input", SEARCH_ARGS % find_index(body, "Search products", tag="input")),
                     call("click", index=find_index(body, "Search", tag="button")))
    if step == 3:
        name = OTHER if "[other]" in task else CHEAPEST
        return reply(f"Open {name}.", call("click", index=find_index(body, name, tag="a")))
    if step == 4 and "[extract]" in task:
        return reply("Read the price.", call("extract", query="the product's name and price"))
    return reply("Report it.", call("done", text=f"{CHEAPEST}, €5.49", success=True))


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def model() -> Iterator[FakeLLM]:
    fake = FakeLLM(shop_model)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, model: FakeLLM) -> Iterator[App]:
    """The real app on a free port, its model the fake server."""
    no_keys = {name: "" for names in KEY_VARS.values() for name in names}
    env = {**no_keys, "OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "MAX_CONCURRENT_RUNS": "4"}
    app = App(tmp_path_factory.mktemp("loop") / "data", env).start()
    try:
        app.ready()
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def http(app: App) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.base, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def runs(app: App, http: httpx.Client) -> dict[str, dict[str, Any]]:
    """Three finished runs: the cheapest with an extended system prompt and an extract, the same task going
    to another product, and a plain one; each the response of POST /api/runs."""
    shop = f"{app.base}/demo/"
    bodies = {
        "extended": {"prompt": f"Go to {shop} and find the cheapest USB-C cable [extract]",
                     "extend_system_message": EXTEND},
        "other": {"prompt": f"Go to {shop} and find the cheapest USB-C cable [extract] [other]"},
        "plain": {"prompt": f"Go to {shop} and find the cheapest USB-C cable"},
    }
    out = {}
    for name, body in bodies.items():
        response = http.post("/api/runs", json=body)
        assert response.status_code == 200, response.text
        out[name] = response.json()
        assert out[name]["status"] == "success", out[name]
    return out


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Any) -> Any:
    chromium = await browser.start()
    ctx = await chromium.new_context(viewport=VIEWPORT, accept_downloads=True)
    ctx.set_default_timeout(30_000)
    yield ctx
    await ctx.close()


async def open_page(context: Any, url: str) -> Any:
    """The workbench at `url`, its start-up events done."""
    page = await context.new_page()
    await page.goto(url)
    await until(lambda: page.locator("#wb-model input").input_value(), what="the page's start-up",
                check=lambda v: v == "o3")
    return page


# ------------------------------------------------------------------ 1. the trace, over REST
def test_the_trace_route_gives_what_the_model_saw_and_said(app: App, http: httpx.Client, model: FakeLLM,
                                                           runs: dict[str, dict[str, Any]]) -> None:
    run_id = runs["extended"]["task_run_id"]
    trace = http.get(f"/api/runs/{run_id}/steps/2/trace").json()
    assert set(trace) >= {"system_prompt", "messages", "reply", "tool_calls", "observation", "usage"}
    assert trace["system_prompt"] == f"{SYSTEM_PROMPT}\n\n{EXTEND}"
    assert [m["role"] for m in trace["messages"]] == ["system", "user"]
    # What the model server received for that step (litellm sends o3's system message with the user role:
    # the trace keeps the messages as the engine wrote them).
    sent = next(b for b in model.requests if b.get("tools") and "Step 2 of at most" in last_user_text(b)
                and EXTEND in b["messages"][0]["content"])
    assert [m["content"] for m in trace["messages"]] == [m["content"] for m in sent["messages"]]
    assert trace["observation"] in trace["messages"][1]["content"] and "Search products" in trace["observation"]
    assert trace["reply"] == "Search for USB-C cables."
    assert [c["name"] for c in trace["tool_calls"]] == ["input", "click"]
    assert trace["tool_calls"][0]["arguments"] == SEARCH_ARGS % find_index(sent, "Search products", tag="input")
    assert trace["usage"] | {"latency_ms": 0} == {"input_tokens": 100, "output_tokens": 20, "latency_ms": 0,
                                                  "cost_usd": trace["usage"]["cost_usd"], "finish_reason": "tool_calls",
                                                  "prompt_chars": len(trace["messages"][0]["content"])
                                                  + len(trace["messages"][1]["content"])}
    # A step that made two calls (the step and an extract) answers a list.
    both = http.get(f"/api/runs/{run_id}/steps/4/trace").json()
    assert [(t["purpose"], t["reply"]) for t in both] == [
        ("step", "Read the price."), ("extract", f"The page shows {CHEAPEST} at €5.49.")]
    # Clear errors for what does not exist.
    missing = http.get(f"/api/runs/{run_id}/steps/9/trace")
    assert (missing.status_code, missing.json()) == (404, {"detail": f"run {run_id} has no step 9 (it has 5 so far)"})
    assert http.get("/api/runs/999999/steps/1/trace").status_code == 404
    bad = http.get(f"/api/runs/{run_id}/steps/0/trace")
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "step"


# ------------------------------------------------------------------ 5. export
async def test_export_json_and_an_html_file_that_opens_offline(app: App, http: httpx.Client, context: Any,
                                                               runs: dict[str, dict[str, Any]],
                                                               tmp_path: Path) -> None:
    run = runs["extended"]
    run_id = run["task_run_id"]
    exported = await asyncio.to_thread(http.get, f"/api/runs/{run_id}/export", params={"format": "json"})
    assert exported.headers["content-disposition"] == f'attachment; filename="run-{run_id}.json"'
    data = exported.json()
    assert set(data) == {"format", "response", "request", "traces", "webhook_attempts"}
    assert data["response"] == (await asyncio.to_thread(http.get, f"/api/runs/{run_id}")).json()
    assert data["request"]["extend_system_message"] == EXTEND
    assert [(t["step"], t["purpose"]) for t in data["traces"]] == [
        (1, "step"), (2, "step"), (3, "step"), (4, "step"), (4, "extract"), (5, "step")]
    assert data["webhook_attempts"] == []
    assert (await asyncio.to_thread(http.get, f"/api/runs/{run_id}/export", params={"format": "pdf"})).status_code == 422

    page_file = tmp_path / f"run-{run_id}.html"
    page_file.write_bytes((await asyncio.to_thread(http.get, f"/api/runs/{run_id}/export", params={"format": "html"})).content)
    page = await context.new_page()
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url))
    await context.set_offline(True)
    try:
        await page.goto(page_file.as_uri())
        shown = await viewer_in(page, "body")
        images = await page.evaluate("""async () => {
            const imgs = [...document.querySelectorAll('.wb-shot img')];
            await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
            return imgs.map(i => [i.getAttribute('src').slice(0, 23), i.naturalWidth]);
        }""")
    finally:
        await context.set_offline(False)
        await page.close()
    assert fetched == [page_file.as_uri()]  # nothing but the file itself: it stands alone
    assert shown["status"] == "success" and shown["run_id"] == run_id
    assert [s["goal"] for s in shown["steps"]] == [i["description"] for i in run["history"]]
    assert images and all(src == "data:image/jpeg;base64," and width > 0 for src, width in images)
    assert shown["traces"] == [1, 1, 1, 2, 1]  # "What the model saw / said" per step: its calls
    assert shown["system"] == "true"


async def viewer_in(page: Any, root: str) -> dict[str, Any]:
    """The run as rendered under `root`: status, id, step goals, calls per step, system prompt changed."""
    return await page.evaluate("""(root) => {
        const run = document.querySelector(root + ' .wb-run');
        const steps = [...document.querySelectorAll(root + ' .wb-step:not(.wb-pending)')];
        const system = document.querySelector(root + ' .wb-system');
        return {
            status: run ? run.dataset.status : null,
            run_id: run && run.dataset.runId ? Number(run.dataset.runId) : null,
            steps: steps.map(s => ({goal: s.querySelector('.wb-goal').textContent})),
            traces: steps.map(s => s.querySelectorAll('.wb-trace-call').length),
            system: system ? system.dataset.changed : null,
            share: (document.querySelector(root + ' .wb-share') || {}).textContent || null,
        };
    }""", root)


# ------------------------------------------------------------------ 2. the viewer, 5. the share link
async def test_a_shared_link_opens_the_run_with_what_the_model_saw(app: App, context: Any,
                                                                   runs: dict[str, dict[str, Any]]) -> None:
    run = runs["extended"]
    run_id = run["task_run_id"]
    page = await open_page(context, f"{app.base}/?run={run_id}")
    shown = await until(lambda: viewer_in(page, "#wb-viewer"), what="the linked run in the viewer",
                        check=lambda v: v["run_id"] == run_id and v["status"] == "success")
    assert shown["share"] == f"{app.base}/?run={run_id}"  # the viewer shows its own link
    assert [s["goal"] for s in shown["steps"]] == [i["description"] for i in run["history"]]
    assert shown["traces"] == [1, 1, 1, 2, 1] and shown["system"] == "true"
    # The system prompt used, with its diff against the default.
    system = page.locator("#wb-viewer .wb-system")
    await system.locator("summary").click()
    assert await system.locator(".wb-system-text").inner_text() == f"{SYSTEM_PROMPT}\n\n{EXTEND}"
    added = await system.locator(".wb-diff .wb-add").all_inner_texts()
    assert added == [f"+{EXTEND}"] or added == ["+", f"+{EXTEND}"]
    # Step 3: what the model saw (the page it read) and said (its text and tool calls as written).
    step = page.locator('#wb-viewer .wb-step[data-step="3"]')
    await step.locator(".wb-trace > summary").click()
    call_part = step.locator(".wb-trace-call")
    saw = await call_part.locator(".wb-obs").inner_text()
    assert "Search results" in saw and CHEAPEST in saw
    assert await call_part.locator(".wb-reply").inner_text() == f"Open {CHEAPEST}."
    assert [t.strip() for t in await call_part.locator(".wb-tool-call").all_inner_texts()][0].startswith('click {"index":')
    usage = await call_part.locator(".wb-usage").inner_text()
    assert re.fullmatch(r"step · openai/o3 · 100 in / 20 out tokens · latency (\d+ ms|\d+\.\d s) · [\d,]+ prompt "
                        r"characters · finish: tool_calls", usage), usage
    # The trace part links to the full JSON of that step.
    href = await step.locator(".wb-trace-link").get_attribute("href")
    assert href == f"api/runs/{run_id}/steps/3/trace"
    # A run left at its default prompt says so; an unknown id in a link is a clear warning.
    plain = runs["plain"]["task_run_id"]
    await page.goto(f"{app.base}/?run={plain}")
    shown = await until(lambda: viewer_in(page, "#wb-viewer"), what="the plain run",
                        check=lambda v: v["run_id"] == plain)
    assert shown["system"] == "false"
    await page.goto(f"{app.base}/?run=987654")
    await page.get_by_text("The link asks for run '987654', which does not exist.").wait_for()
    await page.close()


async def test_a_shared_run_link_fills_the_form_with_that_runs_settings(app: App, context: Any,
                                                                        http: httpx.Client) -> None:
    """A link to a run opens it in the viewer, in sight, with the form holding that run's own settings (its
    model, not the form's default), ready to change one thing and run again."""
    body = {"prompt": f"Report {app.base}/demo/ [quick]", "model": "gpt-4.1-mini", "max_steps": 7,
            "extend_system_message": EXTEND}
    run = (await asyncio.to_thread(http.post, "/api/runs", json=body)).json()
    page = await context.new_page()
    await page.goto(f"{app.base}/?run={run['task_run_id']}")
    await until(lambda: viewer(page), what="the linked run", check=lambda v: v["run_id"] == run["task_run_id"])
    form = await until(lambda: page.evaluate("""() => ({
        prompt: document.querySelector('#wb-prompt textarea').value,
        model: document.querySelector('#wb-model input').value,
        provider: document.querySelector('#wb-provider input').value})"""),
        what="the run's settings in the form", check=lambda v: v["model"] == "gpt-4.1-mini")
    assert form == {"prompt": body["prompt"], "model": "gpt-4.1-mini", "provider": "openai"}
    box = await page.locator("#wb-viewer .wb-run").bounding_box()
    assert box and 0 <= box["y"] < VIEWPORT["height"] / 3  # the viewer is in sight
    await page.locator("#wb-advanced .label-wrap").first.click()
    assert await page.locator("#wb-extend-system textarea").input_value() == EXTEND
    assert await page.locator("#wb-max-steps textarea, #wb-max-steps input").first.input_value() == "7"
    # A fresh page without a link starts from the default model (this app sets no DEFAULT_MODEL: o3).
    await page.goto(app.base + "/")
    await until(lambda: page.locator("#wb-model input").input_value(), what="the default model",
                check=lambda v: v == "o3")
    await page.close()


async def test_export_button_downloads_the_run(app: App, context: Any, runs: dict[str, dict[str, Any]]) -> None:
    run_id = runs["plain"]["task_run_id"]
    page = await open_page(context, f"{app.base}/?run={run_id}")
    await until(lambda: viewer(page), what="the run", check=lambda v: v["run_id"] == run_id)
    await until(lambda: page.locator("#wb-export").is_enabled(), what="the Export button")
    async with page.expect_download() as info:
        await page.click("#wb-export")
    download = await info.value
    assert download.suggested_filename == f"run-{run_id}.html"
    text = Path(await download.path()).read_text(encoding="utf-8")
    assert f'data-run-id="{run_id}"' in text and "data:image/jpeg;base64," in text
    await page.close()


# ------------------------------------------------------------------ 3. the system prompt is the user's
async def test_the_form_extends_the_system_prompt_and_run_again_keeps_it(app: App, context: Any, model: FakeLLM,
                                                                         http: httpx.Client) -> None:
    page = await open_page(context, app.base + "/")
    await page.locator("#wb-advanced .label-wrap").first.click()
    await page.locator("#wb-default-system-box .label-wrap").first.click()
    assert await page.locator("#wb-default-system textarea").input_value() == SYSTEM_PROMPT
    prompt = "Answer from memory [quick]"
    await page.locator("#wb-prompt textarea").fill(prompt)
    await page.locator("#wb-extend-system textarea").fill("Answer in one word.")
    await page.locator("#wb-override-system textarea").fill("You are a careful shopper.")
    await page.locator("#wb-max-steps textarea, #wb-max-steps input").first.fill("5")
    await page.click("#wb-run")
    shown = await until(lambda: viewer(page), what="the run's end", check=lambda v: v["status"] == "success")
    sent = [b for b in model.requests if b.get("tools") and prompt in last_user_text(b)]
    assert sent[-1]["messages"][0]["content"] == "You are a careful shopper.\n\nAnswer in one word."
    task_id = (await asyncio.to_thread(http.get, f"/api/runs/{shown['run_id']}")).json()["task_id"]
    request = (await asyncio.to_thread(http.get, f"/api/tasks/{task_id}")).json()["request"]
    assert (request["extend_system_message"], request["override_system_message"]) == (
        "Answer in one word.", "You are a careful shopper.")
    # "Run again" puts them back.
    await page.locator("#wb-extend-system textarea").fill("")
    await page.locator("#wb-override-system textarea").fill("")
    await page.click("#wb-rerun")
    await until(lambda: page.locator("#wb-extend-system textarea").input_value(), what="the refilled extension",
                check=lambda v: v == "Answer in one word.")
    assert await page.locator("#wb-override-system textarea").input_value() == "You are a careful shopper."
    await page.close()


# ------------------------------------------------------------------ 4. compare two runs
async def compared(page: Any) -> dict[str, Any]:
    return await page.evaluate("""() => {
        const box = document.querySelector('#wb-compare .wb-compare');
        const rows = [...document.querySelectorAll('#wb-compare tr.wb-cmp-step')];
        const totals = Object.fromEntries([...document.querySelectorAll('#wb-compare tr[data-total]')].map(
            r => [r.dataset.total, [...r.querySelectorAll('td')].slice(1).map(c => c.textContent)]));
        return {
            state: box ? box.dataset.state : null,
            first: box ? box.dataset.firstDivergence : null,
            rows: rows.map(r => ({cls: r.className.replace('wb-cmp-step ', ''),
                                  goals: [...r.querySelectorAll('.wb-goal')].map(g => g.textContent),
                                  shots: r.querySelectorAll('img').length})),
            totals,
        };
    }""")


async def test_compare_two_runs_side_by_side(app: App, context: Any, http: httpx.Client,
                                            runs: dict[str, dict[str, Any]]) -> None:
    a, b = runs["extended"], runs["other"]
    page = await open_page(context, f"{app.base}/?compare={a['task_run_id']},{b['task_run_id']}")
    shown = await until(lambda: compared(page), what="the compare view", check=lambda v: v["state"] == "shown")
    assert await page.locator("#wb-compare").is_visible()  # the link opened the compare part
    # ...and the page scrolled to it: the comparison starts in the top third of the window, far down the page.
    top = await until(lambda: page.evaluate("document.querySelector('#wb-compare .wb-compare')"
                                            ".getBoundingClientRect().top"),
                      what="the comparison in sight", check=lambda t: -2 <= t < VIEWPORT["height"] / 3)
    assert await page.evaluate("window.scrollY") + top > 1.5 * VIEWPORT["height"]
    # The system prompts: run A's extended ours, run B's is ours; the diff from A's to B's, each in full.
    system = page.locator("#wb-compare .wb-cmp-system")
    assert await system.get_attribute("data-same") == "false"
    assert (await system.locator("h4").inner_text()).startswith("System prompt: differs")
    assert f"-{EXTEND}" in await system.locator(".wb-diff .wb-del").all_inner_texts()
    assert await system.locator(".wb-diff .wb-add").count() == 0
    await system.locator(".wb-cmp-prompts > summary").click()
    assert await system.locator(".wb-cmp-prompts .wb-system-text").all_inner_texts() == [
        f"{SYSTEM_PROMPT}\n\n{EXTEND}", SYSTEM_PROMPT]
    assert await system.locator(".wb-cmp-prompts th").all_inner_texts() == [
        f"Run #{a['task_run_id']} (changed from the default)", f"Run #{b['task_run_id']} (the default)"]
    assert shown["first"] == "3"  # same start, same search; then another product
    assert [r["cls"] for r in shown["rows"]] == ["wb-same", "wb-same", "wb-diverge", "wb-differs", "wb-differs"]
    assert [r["goals"] for r in shown["rows"]][2] == [f"Open {CHEAPEST}.", f"Open {OTHER}."]
    assert [r["shots"] for r in shown["rows"]] == [0, 2, 2, 2, 2]  # step 1 looked at a blank tab
    widths = await page.evaluate("""async () => {
        const imgs = [...document.querySelectorAll('#wb-compare img')];
        imgs.forEach(i => { i.loading = 'eager'; });
        await Promise.all(imgs.map(i => i.complete && i.naturalWidth ? null
                                        : new Promise(r => { i.onload = i.onerror = r; })));
        return imgs.map(i => i.naturalWidth);
    }""")
    assert len(widths) == 8 and all(w > 0 for w in widths)  # the screenshots are served and shown
    assert await page.locator("#wb-compare .wb-diverge .wb-diverge-mark").inner_text() == "first difference"
    usage = (a["usage"], b["usage"])
    assert shown["totals"]["status"] == ["success", "success"]
    assert shown["totals"]["steps"] == ["5", "5"]
    assert shown["totals"]["input_tokens"] == [f"{u['input_tokens']:,}" for u in usage]
    assert shown["totals"]["cost_usd"] == [f"${u['cost_usd']:.4f}" for u in usage]
    assert shown["totals"]["duration_s"] == [f"{r['duration_ms'] / 1000:.1f} s" for r in (a, b)]
    assert shown["totals"]["stop_reason"] == [str(r.get("stop_reason") or "–") for r in (a, b)]

    # From the history: the last two rows selected fill the boxes; Compare shows them.
    await page.goto(app.base + "/")
    ids = await until(lambda: page.locator('#wb-history [role=gridcell][data-col="0"]').all_inner_texts(),
                      what="the history rows", check=lambda v: str(a["task_run_id"]) in [x.strip() for x in v])
    ids = [x.strip() for x in ids]
    for run in (runs["plain"], b):
        await page.locator(f'#wb-history [data-testid="cell-{ids.index(str(run["task_run_id"]))}-2"]').click()
        await until(lambda: viewer(page), what="the selected run", check=lambda v, r=run: v["run_id"] == r["task_run_id"])
    await page.locator("#wb-compare-box .label-wrap").first.click()
    boxes = await until(lambda: asyncio.gather(page.locator("#wb-compare-a input").input_value(),
                                               page.locator("#wb-compare-b input").input_value()),
                        what="the compare boxes", check=lambda v: v == [str(runs["plain"]["task_run_id"]),
                                                                      str(b["task_run_id"])])
    await page.click("#wb-compare-btn")
    shown = await until(lambda: compared(page), what="the comparison", check=lambda v: v["state"] == "shown")
    assert shown["first"] == "3" and len(shown["rows"]) == 5, boxes
    # Two boxes holding one run: a clear warning, no view.
    await page.locator("#wb-compare-b input").fill(str(runs["plain"]["task_run_id"]))
    await page.click("#wb-compare-btn")
    await page.get_by_text(f"Both boxes hold run {runs['plain']['task_run_id']}: pick two different runs.").wait_for()
    await page.close()


# ------------------------------------------------------------------ 6. the history
def test_history_search_filters_and_totals_over_rest(http: httpx.Client, runs: dict[str, dict[str, Any]]) -> None:
    everything = http.get("/api/runs").json()
    totals = everything["totals"]
    assert totals["runs"] == everything["total"] >= 3
    found = http.get("/api/runs", params={"q": "[OTHER]"}).json()  # any case, the brackets taken literally
    assert [r["id"] for r in found["runs"]] == [runs["other"]["task_run_id"]]
    assert found["totals"] | {"cost_usd": 0} == {
        "runs": 1, "finished": 1, "successes": 1, "success_rate": 1.0, "graded": 0, "claimed_successes": 1,
        "input_tokens": runs["other"]["usage"]["input_tokens"], "output_tokens": runs["other"]["usage"]["output_tokens"],
        "cost_usd": 0, "stop_reasons": ["done"]}
    by_result = http.get("/api/runs", params={"q": "€5.49", "model_contains": "O3"}).json()  # the result's text
    assert by_result["total"] >= 3
    # The UTC days the runs started on, from the runs themselves (not the clock: a run may start before midnight).
    days = sorted({datetime.fromisoformat(r["started_at"]).astimezone(UTC).date() for r in everything["runs"]})
    first, last = days[0], days[-1]
    assert http.get("/api/runs", params={"since": str(last + timedelta(days=1))}).json()["total"] == 0
    assert http.get("/api/runs", params={"until": str(first - timedelta(days=1))}).json()["total"] == 0
    assert http.get("/api/runs", params={"since": str(first), "until": str(last)}).json()["total"] == everything["total"]
    bad = http.get("/api/runs", params={"since": str(last), "until": str(last - timedelta(days=2))})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "since"
    assert http.get("/api/runs", params={"since": "yesterday"}).json()["detail"][0]["field"] == "since"
    assert http.get("/api/runs", params={"stop_reason": "done"}).json()["total"] == totals["successes"]
    unknown = http.get("/api/runs", params={"stop_reason": "finished"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "stop_reason"
    assert "max_steps" in unknown.json()["detail"][0]["message"]  # the values it takes


async def history_state(page: Any) -> dict[str, Any]:
    """The history as shown: the ids of the rows rendered (the table draws only what is in view), its label,
    the totals line, the page label and which paging buttons work."""
    return await page.evaluate("""() => ({
        ids: [...document.querySelectorAll('#wb-history [role=gridcell][data-col="0"]')].map(c => c.textContent.trim()),
        label: ([...document.querySelectorAll('#wb-history *')].find(
            e => e.children.length === 0 && e.textContent.startsWith('Run history (')) || {}).textContent || '',
        totals: (document.querySelector('#wb-history-totals') || {}).textContent || '',
        page: (document.querySelector('#wb-page-label') || {}).textContent || '',
        next: !(document.querySelector('#wb-page-next') || {}).disabled,
        prev: !(document.querySelector('#wb-page-prev') || {}).disabled,
    })""")


async def test_history_pages_past_the_first_rows_with_search_and_totals(app: App, context: Any,
                                                                       http: httpx.Client) -> None:
    # Enough quick runs for two pages of 25.
    started = [await asyncio.to_thread(http.post, "/api/runs", json={"prompt": f"Note number {n} [quick]", "wait_for_completion": False})
               for n in range(28)]
    ids = [r.json()["task_run_id"] for r in started]
    await asyncio.to_thread(poll, lambda: all(http.get(f"/api/runs/{i}").json()["status"] != "in_progress"
                                              for i in ids), timeout=180, what="the quick runs to end")
    total = (await asyncio.to_thread(http.get, "/api/runs")).json()["total"]
    page = await open_page(context, app.base + "/")
    await page.locator("#wb-page-size input").click()
    await page.locator('[role=listbox] [role=option][aria-label="25"]').click()
    state = await until(lambda: history_state(page), what="the first page of 25",
                        check=lambda v: v["label"] == f"Run history (runs 1–25 of {total}, newest first)")
    assert state["page"].strip() == f"page 1 of {(total - 1) // 25 + 1}"
    assert state["next"] and not state["prev"]
    assert state["ids"][0] == str(max(ids))  # newest first
    await page.click("#wb-page-next")
    state = await until(lambda: history_state(page), what="the second page",
                        check=lambda v: v["page"].strip().startswith("page 2 of"))
    assert state["label"] == f"Run history (runs 26–{min(50, total)} of {total}, newest first)" and state["prev"]
    assert state["ids"][0] == str(max(ids) - 25)
    # Search (back to the first page), then the totals of what matches.
    await page.locator("#wb-filter-q textarea, #wb-filter-q input").first.fill("note number 1")
    await page.locator("#wb-filter-q textarea, #wb-filter-q input").first.press("Enter")
    matching = sorted(i for i, n in zip(ids, range(28)) if str(n).startswith("1"))  # 1, 10-19
    state = await until(lambda: history_state(page), what="the search results",
                        check=lambda v: sorted(int(x) for x in v["ids"]) == matching)
    assert state["page"].strip() == "page 1 of 1"
    summary = (await asyncio.to_thread(http.get, "/api/runs", params={"q": "note number 1"})).json()["totals"]
    assert state["totals"].strip() == (
        f"{len(matching)} runs match · success rate 100% ({len(matching)} of {len(matching)} finished; as the agents "
        "claimed) · "
        f"{summary['input_tokens']:,} in / {summary['output_tokens']:,} out tokens · cost ${summary['cost_usd']:.4f}")
    # A date range that holds nothing, then a bad date: said clearly.
    await page.locator("#wb-filter-since textarea, #wb-filter-since input").first.fill(
        str(datetime.now(UTC).date() + timedelta(days=1)))
    await page.locator("#wb-filter-since textarea, #wb-filter-since input").first.press("Enter")
    state = await until(lambda: history_state(page), what="no run from tomorrow", check=lambda v: v["ids"] == [])
    assert state["totals"].strip().startswith("0 runs match · no finished run")
    await page.locator("#wb-filter-since textarea, #wb-filter-since input").first.fill("31/12/2025")
    await page.locator("#wb-filter-since textarea, #wb-filter-since input").first.press("Enter")
    await until(lambda: history_state(page), what="the bad date named",
                check=lambda v: "From date '31/12/2025' is not a day: write it as YYYY-MM-DD" in v["totals"])
    await page.close()
