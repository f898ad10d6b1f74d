"""The Gradio workbench end to end: `python app.py` in a subprocess, its page in real headless Chromium
(Playwright), runs against the bundled demo shop with the fake OpenAI-compatible model, checked
against the run log through GET /api/runs."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from agent.engine.llm import KEY_VARS
from agent.models import PROVIDERS, RunRequest
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply
from tests.apphelpers import ROOT, App

pytestmark = pytest.mark.slow

STEP_RE = re.compile(r"Step (\d+) of at most")
TASK_RE = re.compile(r"<task>\n(.*?)\n</task>", re.S)
URL_RE = re.compile(r"https?://[^\s\]]+")
CHEAPEST = {"name": "USB-C to USB-C Cable 0.5 m", "price": 5.49}
GOALS = ["Open the demo shop.", "Search the shop for USB-C cables.", "Open the cheapest result.",
         "The product page confirms the name and price: report them."]
EXAMPLES = json.loads((ROOT / "data" / "demo" / "examples.json").read_text())
VIEWPORT = {"width": 1440, "height": 900}  # a common laptop window: what must be in reach is checked at this size
FORM_MODEL = "gpt-4.1-mini"  # the app's DEFAULT_MODEL in these tests
# Every request field has its form control (elem_id); the Gradio API test checks the parameter names.
FIELD_IDS = {
    "prompt": "wb-prompt", "model": "wb-model", "provider": "wb-provider", "wait_for_completion": "wb-wait",
    "webhook_url": "wb-webhook", "response_format": "wb-format", "json_schema": "wb-schema",
    "use_cached_workflow": "wb-use-cached", "cached_workflow": "wb-cached-workflow",
    "workflow_id": "wb-workflow-id", "workflow_params": "wb-workflow-params", "start_url": "wb-start-url",
    "max_steps": "wb-max-steps", "use_vision": "wb-use-vision", "allowed_domains": "wb-allowed-domains",
    "sensitive_data": "wb-sensitive-data",
    "extend_system_message": "wb-extend-system", "override_system_message": "wb-override-system",
    "max_cost_usd": "wb-max-cost", "price_per_mtok": "wb-price-per-mtok", "session_id": "wb-session-id",
    "fork": "wb-fork",
}


def shop_model(body: dict[str, Any]) -> Any:
    """The fake model, as a user would see a good one work the demo shop (elements found by text).

    Default: open the shop, search "usb-c", open the cheapest result, report it (as `data` when the
    run has a JSON schema).  [slow]: scroll for ever, 0.8 s a step (to cancel it).
    """
    if not body.get("tools"):
        return reply("nothing to extract")
    text = last_user_text(body)
    step = int(STEP_RE.search(text).group(1))  # type: ignore[union-attr]
    task = TASK_RE.search(text).group(1)  # type: ignore[union-attr]
    time.sleep(0.3)  # a model takes time: steps must be seen arriving one by one
    if "[slow]" in task:
        time.sleep(0.5)
        return reply(f"Keep looking (step {step}).", call("scroll", down=True))
    if step == 1:
        return reply(GOALS[0], call("navigate", url=URL_RE.findall(task)[0].rstrip(".,")))
    if step == 2:
        return reply(GOALS[1], call("input", index=find_index(body, "Search products", tag="input"), text="usb-c"),
                     call("click", index=find_index(body, "Search", tag="button")))
    if step == 3:
        return reply(GOALS[2], call("click", index=find_index(body, CHEAPEST["name"], tag="a")))
    done_params = next(t["function"]["parameters"] for t in body["tools"] if t["function"]["name"] == "done")
    if "data" in done_params.get("properties", {}):
        return reply(GOALS[3], call("done", data=CHEAPEST, success=True))
    return reply(GOALS[3], call("done", text=f"{CHEAPEST['name']}, €{CHEAPEST['price']}", success=True))


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The real app on a free port, its model the fake server; no other provider key is set."""
    model = FakeLLM(shop_model)
    no_keys = {name: "" for names in KEY_VARS.values() for name in names}
    # The operator's default model for the form (DEFAULT_MODEL); the API's default stays the contract's o3.
    env = {**no_keys, "OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "MAX_CONCURRENT_RUNS": "4",
           "DEFAULT_MODEL": FORM_MODEL}
    app = App(tmp_path_factory.mktemp("ui") / "data", env).start()
    try:
        app.ready()
        yield app
    finally:
        app.stop()
        model.close()


@pytest.fixture(scope="module")
def http(app: App) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.base, timeout=60) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Any, app: App) -> Any:
    """A fresh browser context on the workbench, its page loaded and its start-up events done."""
    chromium = await browser.start()
    context = await chromium.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    page = await context.new_page()
    try:
        await page.goto(app.base + "/")
        await until(lambda: page.locator("#wb-model input").input_value(), what="the model box to show the default",
                    check=lambda v: v == FORM_MODEL)
        yield page
    finally:
        await context.close()


# ------------------------------------------------------------------ helpers
async def until(fn: Callable[[], Awaitable[Any]], *, what: str, timeout: float = 60.0,
                check: Callable[[Any], bool] = bool) -> Any:
    """Await `fn` until `check` accepts its value (bounded); that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await fn()
        if check(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


async def viewer(page: Any) -> dict[str, Any]:
    """The viewer in one snapshot: status, run id, finished steps and what each shows."""
    return await page.evaluate("""() => {
        const run = document.querySelector('#wb-viewer .wb-run');
        const steps = [...document.querySelectorAll('#wb-viewer .wb-step:not(.wb-pending)')];
        return {
            status: run ? run.dataset.status : null,
            run_id: run && run.dataset.runId ? Number(run.dataset.runId) : null,
            pending: document.querySelectorAll('#wb-viewer .wb-pending').length,
            result: (document.querySelector('#wb-viewer .wb-result pre') || {}).textContent || null,
            error: (document.querySelector('#wb-viewer .wb-run-error') || {}).textContent || null,
            metrics: (document.querySelector('#wb-viewer .wb-metrics') || {}).textContent || null,
            steps: steps.map(s => ({
                step: Number(s.dataset.step),
                goal: s.querySelector('.wb-goal').textContent,
                actions: [...s.querySelectorAll('.wb-action .wb-name')].map(a => a.textContent),
                params: [...s.querySelectorAll('.wb-action')].map(a => (a.querySelector('.wb-params') || {}).textContent || null),
                ok: [...s.querySelectorAll('.wb-action')].map(a => a.classList.contains('wb-ok')),
                url: (s.querySelector('.wb-url') || {}).textContent || null,
                title: (s.querySelector('.wb-title') || {}).textContent || null,
                shot: s.querySelector('.wb-shot img') ? s.querySelector('.wb-shot img').getAttribute('src') : null,
            })),
        };
    }""")


async def set_code(page: Any, elem_id: str, text: str) -> None:
    """Replace the text of a gr.Code editor as a user would (select all, type)."""
    shown_error = page.locator(f"#{elem_id} .validation-error button").first
    if await shown_error.count() and await shown_error.is_visible():
        await shown_error.click()  # the error shown over the editor is dismissed first, as a user would
    editor = page.locator(f"#{elem_id} .cm-content")
    await editor.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(text)


def box(page: Any, elem_id: str) -> Any:
    """The text box of a gr.Textbox (an input or a textarea, depending on its lines)."""
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first


async def open_folded(page: Any, elem_id: str) -> None:
    """Open a folded part of the form (an accordion) as a user would."""
    await page.locator(f"#{elem_id} > button, #{elem_id} .label-wrap").first.click()


async def pick(page: Any, elem_id: str, option: str) -> None:
    """Choose an option of a gr.Dropdown."""
    await page.locator(f"#{elem_id} input").click()
    await page.locator(f'[role=listbox] [role=option][aria-label="{option}"]').click()


async def run_total(http: httpx.Client) -> int:
    return (await asyncio.to_thread(http.get, "/api/runs", params={"limit": 1})).json()["total"]


async def images_loaded(page: Any) -> list[int]:
    """naturalWidth of every screenshot in the viewer (0: not loaded), once each has settled."""
    return await page.evaluate("""async () => {
        const imgs = [...document.querySelectorAll('#wb-viewer .wb-shot img')];
        await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
        return imgs.map(i => i.naturalWidth);
    }""")


# ------------------------------------------------------------------ the form <-> request mapping
def test_the_form_round_trips_every_request_field() -> None:
    from agent.ui.form import FORM_FIELDS, form_request, request_form_values

    assert FORM_FIELDS == tuple(RunRequest.model_fields) == tuple(FIELD_IDS)
    request = RunRequest(
        prompt="Find {{product}} on the shop", model="claude-3-5-haiku-latest", provider="anthropic",
        wait_for_completion=False, webhook_url="https://example.com/hook", response_format="json",
        json_schema={"type": "object", "properties": {"price": {"type": "number"}}}, use_cached_workflow=True,
        cached_workflow={"name": "w", "steps": []}, workflow_id=3, workflow_params={"product": "HDMI cable"},
        start_url="https://shop.example/", max_steps=12, use_vision=True, allowed_domains=["shop.example", "cdn.example"],
        extend_system_message="Prices are per pack.", override_system_message="You are a careful shopper.",
        max_cost_usd=0.5, price_per_mtok={"input": 1.0, "output": 2.0}, session_id="cable-study",
        fork={"run_id": 12, "step": 8, "heal": True},
    )
    assert request.model_fields_set == set(FORM_FIELDS) - {"sensitive_data"}  # every field but the never-refilled one
    values = request_form_values(request)
    assert all(isinstance(v, (str, bool, int)) for v in values)  # what the form's controls hold
    assert form_request(dict(zip(FORM_FIELDS, values))) == request
    # Empty controls mean the defaults; the model follows the provider.
    empty = dict(zip(FORM_FIELDS, ["Find a cable", "", "deepseek", True, "", "text", "", False, "", None, "", "",
                                   None, False, "", "", "", "", "", "", "", ""], strict=True))
    assert form_request(empty) == RunRequest(prompt="Find a cable", provider="deepseek")
    assert form_request(empty).model == "deepseek-chat"


async def test_every_request_field_has_its_control_and_its_api_parameter() -> None:
    """The form's controls and the `run` endpoint's parameters are made from RunRequest's fields: a field
    added there gets both (a control with its About's id and the form's default; a parameter by its name)."""
    import inspect

    import gradio as gr

    from agent.models import FIELDS, PROVIDERS
    from agent.ui.app import _form
    from agent.ui.form import FORM_FIELDS, form_default
    from agent.ui.handlers import api_endpoint

    with gr.Blocks():
        form = _form([])
    assert list(form.controls) != [] and set(form.controls) == set(RunRequest.model_fields)
    for name, control in form.controls.items():
        assert (control.elem_id, control.value) == (FIELDS[name].elem_id, form_default(name)), name
    assert form.controls["provider"].choices == [(p, p) for p in PROVIDERS]
    received: list[tuple[dict[str, Any], Any]] = []

    async def target(values: dict[str, Any], request: Any) -> Any:
        received.append((values, request))
        yield {"status": "in_progress"}

    endpoint = api_endpoint(target)
    params = list(inspect.signature(endpoint).parameters.values())
    assert [p.name for p in params] == [*RunRequest.model_fields, "request"]
    assert [p.name for p in params if p.default is inspect.Parameter.empty] == ["prompt"]
    assert all(p.default == form_default(p.name) for p in params[1:-1]) and form_default("prompt") is None
    values = [f"value of {name}" for name in FORM_FIELDS]
    assert [x async for x in endpoint(*values, "the request")] == [{"status": "in_progress"}]
    assert received == [(dict(zip(FORM_FIELDS, values)), "the request")]


def test_the_viewer_shows_the_runs_notes() -> None:
    """A run's notes (which model healed a replay's steps) show under its totals, escaped; none: no list."""
    from agent.ui.render import render_run_html

    run = {"task_run_id": 7, "status": "success", "mode": "replay", "history": [], "usage": {}, "result": "ok",
           "notes": ["the agent that healed steps 2, 4 ran on openai model 'gpt-4.1-nano', the model this request "
                     "names", "<b>not html</b>"]}
    html = render_run_html(run, links=False)
    assert ('<ul class="wb-notes"><li>the agent that healed steps 2, 4 ran on openai model &#x27;gpt-4.1-nano&#x27;, '
            'the model this request names</li><li>&lt;b&gt;not html&lt;/b&gt;</li></ul>') in html
    assert "wb-notes" not in render_run_html({**run, "notes": []}, links=False)


def test_the_form_names_every_bad_field() -> None:
    from agent.ui.form import FormError, form_request

    with pytest.raises(FormError) as caught:
        form_request({"prompt": "ab", "json_schema": '{"type": ', "max_steps": 0, "workflow_params": "[1, 2]",
                      "webhook_url": "ftp://example.com/hook", "workflow_id": 2.5})
    assert {e["field"]: e["message"] for e in caught.value.errors} == {
        "prompt": "must be at least 3 characters of task description",
        "json_schema": "is not valid JSON (Expecting value at line 1 column 9); give a JSON Schema object such as "
                       '{"type": "object", "properties": {...}}',
        "max_steps": "must be between 1 and 200 (empty: the default, 25), got 0",
        "workflow_params": 'must be a JSON object such as {"product": "HDMI cable"}',
        "webhook_url": "must be an http:// or https:// URL with a host, e.g. https://example.com/hook",
        "workflow_id": "must be a whole number, got 2.5",
    }


# ------------------------------------------------------------------ the page
async def test_page_has_every_request_field_and_the_provider_hint(page: Any) -> None:
    for elem_id in ("wb-workflow-box", "wb-advanced"):  # open the folded parts
        await page.locator(f"#{elem_id} > button, #{elem_id} .label-wrap").first.click()
    for field, elem_id in FIELD_IDS.items():
        assert await page.locator(f"#{elem_id}").is_visible(), f"{field} ({elem_id}) is not on the page"
    for elem_id in ("wb-run", "wb-cancel", "wb-viewer", "wb-history", "wb-rerun", "wb-save-workflow"):
        assert await page.locator(f"#{elem_id}").is_visible(), elem_id
    assert await page.locator("#wb-prompt textarea").input_value() == ""
    assert await page.locator("#wb-wait input").is_checked()
    assert await page.locator("#wb-format input[value=text]").is_checked()
    assert not await page.locator("#wb-use-cached input").is_checked()
    assert await page.locator("#wb-cancel").is_disabled()
    assert await page.locator("#wb-key-hint").inner_text() == "✓ OPENAI_API_KEY is set"
    examples = await page.locator("#wb-examples button").all_inner_texts()
    assert [e.strip() for e in examples] == [e["title"] for e in EXAMPLES]

    await page.locator("#wb-provider input").click()
    options = await page.locator("[role=listbox] [role=option]").evaluate_all("os => os.map(o => o.ariaLabel)")
    assert options == list(PROVIDERS)  # agent.providers' records, in their order
    await page.locator('[role=listbox] [role=option][aria-label="anthropic"]').click()
    await until(lambda: page.locator("#wb-model input").input_value(), what="anthropic's default model",
                check=lambda v: v == "claude-sonnet-4-5")
    hint = await until(lambda: page.locator("#wb-key-hint").inner_text(), what="the key hint for anthropic",
                       check=lambda v: "anthropic" in v)
    assert hint == ("⚠ No API key for provider 'anthropic': set ANTHROPIC_API_KEY, or point ANTHROPIC_BASE_URL at "
                    "a proxy or gateway, then restart the app.")
    # A model litellm marks as lacking function calling is named in the hint.
    await pick(page, "wb-provider", "deepseek")
    await until(lambda: page.locator("#wb-model input").input_value(), what="deepseek's default model",
                check=lambda v: v == "deepseek-chat")
    await page.locator("#wb-model input").fill("deepseek-reasoner")
    await page.locator("#wb-model input").press("Enter")
    hint = await until(lambda: page.locator("#wb-key-hint").inner_text(), what="the hint for deepseek-reasoner",
                       check=lambda v: "function calling" in v)
    assert "litellm marks 'deepseek-reasoner' as lacking function calling" in hint
    await pick(page, "wb-provider", "openai")
    await until(lambda: page.locator("#wb-key-hint").inner_text(), what="the openai hint",
                check=lambda v: v == "✓ OPENAI_API_KEY is set")
    # The model box takes any name, not only the suggestions.
    model = page.locator("#wb-model input")
    await model.fill("my-local-model")
    await model.press("Enter")
    assert await model.input_value() == "my-local-model"


async def test_run_streams_each_step_then_the_result(page: Any, app: App, http: httpx.Client) -> None:
    before = await run_total(http)
    await page.locator("#wb-examples button", has_text="Cheapest USB-C cable as JSON").click()
    prompt = await until(lambda: page.locator("#wb-prompt textarea").input_value(), what="the example's prompt")
    assert prompt == EXAMPLES[1]["prompt"].replace("{DEMO_URL}", f"{app.base}/demo/")
    assert await page.locator("#wb-format input[value=json]").is_checked()
    schema = await until(lambda: page.locator("#wb-schema .cm-content").inner_text(), what="the schema")
    assert json.loads(schema) == EXAMPLES[1]["json_schema"]
    await until(lambda: page.locator("#wb-schema-status").inner_text(), what="the live schema check",
                check=lambda v: v.strip() == "✓ valid JSON Schema: the result will be checked against it.")

    await page.click("#wb-run")
    seen: list[tuple[str | None, int]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = await viewer(page)
        if not seen or seen[-1] != (state["status"], len(state["steps"])):
            seen.append((state["status"], len(state["steps"])))
        if state["status"] in ("success", "failure"):
            break
        await asyncio.sleep(0.03)
    # Steps arrived one by one while the run was still going, then the end.
    running = [n for status, n in seen if status == "running"]
    assert running[0] == 0 and running == sorted(running) and len(set(running) - {0}) >= 3, seen
    assert seen[-1] == ("success", 4), seen
    assert await page.locator("#wb-cancel").is_disabled()  # offered only while a run is going

    shown = await viewer(page)
    run = (await asyncio.to_thread(http.get, f"/api/runs/{shown['run_id']}")).json()
    assert await run_total(http) == before + 1
    assert (run["status"], run["result"], run["is_successful"]) == ("success", CHEAPEST, True)
    assert json.loads(shown["result"]) == CHEAPEST
    demo = f"{app.base}/demo/"
    assert [(s["step"], s["goal"], s["actions"], s["ok"], s["url"], s["title"]) for s in shown["steps"]] == [
        (1, GOALS[0], ["navigate"], [True], "about:blank", "(no title)"),
        (2, GOALS[1], ["input", "click"], [True, True], demo, "Home – Demo Shop"),
        (3, GOALS[2], ["click"], [True], f"{demo}search.html?q=usb-c", "Search results – Demo Shop"),
        (4, GOALS[3], ["done"], [True], f"{demo}product.html?id=cab-01", "USB-C to USB-C Cable 0.5 m – Demo Shop"),
    ]
    assert [s["description"] for s in run["history"]] == GOALS
    assert shown["steps"][0]["params"] == [json.dumps({"url": demo})]
    assert shown["steps"][1]["params"][0] == json.dumps(run["history"][1]["actions"][0]["params"])
    usage = run["usage"]
    assert shown["metrics"] == (
        f"duration {run['duration_ms'] / 1000:.1f} s · 4 steps · 4 LLM calls · "
        f"{usage['input_tokens']:,} in / {usage['output_tokens']:,} out tokens · cost ${usage['cost_usd']:.4f}"
    )
    assert usage["llm_calls"] == 4 and usage["input_tokens"] == 400 and usage["output_tokens"] == 80
    # Each step's screenshot is served and shown.
    assert [s["shot"] for s in shown["steps"]] == [None] + [  # step 1 looked at a blank tab
        f"api/runs/{run['task_run_id']}/screenshots/{n}" for n in (2, 3, 4)]
    assert [w > 0 for w in await images_loaded(page)] == [True, True, True]
    # The contract's JSON is there too, as the API returns it.
    await page.locator("#wb-response-box").first.click()
    raw = await until(lambda: page.locator("#wb-response").inner_text(), what="the response JSON",
                      check=lambda v: "task_run_id" in v)
    assert f"{run['task_run_id']}" in raw and "USB-C to USB-C Cable 0.5 m" in raw


async def test_open_a_run_from_history_then_run_it_again(page: Any, http: httpx.Client) -> None:
    runs = (await asyncio.to_thread(http.get, "/api/runs", params={"status": "success"})).json()["runs"]
    assert runs, "the previous test made a successful run"
    target = runs[0]
    stored = (await asyncio.to_thread(http.get, f"/api/runs/{target['id']}")).json()
    ids = await until(lambda: page.locator('#wb-history [role=gridcell][data-col="0"]').all_inner_texts(),
                      what="the history rows", check=lambda v: str(target["id"]) in [x.strip() for x in v])
    row = [x.strip() for x in ids].index(str(target["id"]))
    cells = await page.locator(f'#wb-history [role=gridcell][data-row="{row}"]').all_inner_texts()
    assert [c.strip() for c in cells[:2]] + [c.strip() for c in cells[3:5]] == [
        str(target["id"]), "success", f"openai / {FORM_MODEL}", "4"]
    await page.locator(f'#wb-history [data-testid="cell-{row}-2"]').click()

    shown = await until(lambda: viewer(page), what="the run opened from history",
                        check=lambda v: v["run_id"] == target["id"])
    assert shown["status"] == "success" and shown["pending"] == 0
    assert [s["goal"] for s in shown["steps"]] == [item["description"] for item in stored["history"]]
    assert json.loads(shown["result"]) == stored["result"]
    assert len(shown["steps"]) == 4 and [w > 0 for w in await images_loaded(page)] == [True, True, True]
    assert await page.locator("#wb-rerun").is_enabled() and await page.locator("#wb-save-workflow").is_enabled()

    # Saved as a cached workflow, linked to the run's task.
    await page.click("#wb-save-workflow")
    toast = page.get_by_text(re.compile(r"Saved as workflow \d+ \(version 1; parameters: "))
    await toast.wait_for()
    workflow_id = int(re.search(r"Saved as workflow (\d+)", await toast.inner_text()).group(1))  # type: ignore[union-attr]
    task = (await asyncio.to_thread(http.get, f"/api/tasks/{stored['task_id']}")).json()
    assert task["workflow_id"] == workflow_id

    # Start from an empty, different form: "Run again" puts the run's request back.
    await page.locator("#wb-prompt textarea").fill("something else")
    await page.locator("#wb-format input[value=text]").check()
    await page.click("#wb-rerun")
    await until(lambda: page.locator("#wb-prompt textarea").input_value(), what="the refilled prompt",
                check=lambda v: v != "something else")
    request = await page.evaluate("""() => ({
        prompt: document.querySelector('#wb-prompt textarea').value,
        model: document.querySelector('#wb-model input').value,
        provider: document.querySelector('#wb-provider input').value,
        json: document.querySelector('#wb-format input[value=json]').checked,
        wait: document.querySelector('#wb-wait input').checked,
    })""")
    assert request == {"prompt": target["prompt"], "model": FORM_MODEL, "provider": "openai", "json": True,
                       "wait": True}
    schema = await page.locator("#wb-schema .cm-content").inner_text()
    assert json.loads(schema) == EXAMPLES[1]["json_schema"]

    # The saved workflow replays the same task without the model.
    await page.locator("#wb-workflow-box .label-wrap").first.click()
    await page.locator("#wb-use-cached input").check()
    await box(page, "wb-workflow-id").fill(str(workflow_id))
    await page.click("#wb-run")
    replayed = await until(lambda: viewer(page), what="the replay's end",
                           check=lambda v: v["run_id"] not in (None, target["id"]) and v["status"] != "running")
    run = (await asyncio.to_thread(http.get, f"/api/runs/{replayed['run_id']}")).json()
    assert (run["status"], run["mode"], run["workflow_id"], run["usage"]["llm_calls"]) == (
        "success", "replay", workflow_id, 0)
    assert json.loads(replayed["result"]) == CHEAPEST == run["result"]
    assert "· 0 LLM calls ·" in replayed["metrics"] and f"{run['replayed_steps']} replayed" in replayed["metrics"]
    assert [s["goal"] for s in replayed["steps"]] == [item["description"] for item in run["history"]]


async def test_invalid_json_schema_shows_the_error_and_starts_nothing(page: Any, http: httpx.Client) -> None:
    before = await run_total(http)
    shown_before = await viewer(page)
    await page.locator("#wb-prompt textarea").fill("Find the cheapest cable in the demo shop")
    await set_code(page, "wb-schema", '{"type": "objekt"}')
    status = await until(lambda: page.locator("#wb-schema-status").inner_text(), what="the live schema check",
                         check=lambda v: v.strip().startswith("✗"))
    assert "json_schema is not a valid JSON Schema at type" in status
    await page.click("#wb-run")
    error = await until(lambda: page.locator("#wb-schema .validation-error").all_inner_texts(),
                        what="the error next to the schema")
    assert error[0].strip().startswith("is not a valid JSON Schema at type: 'objekt'")
    # The validator runs inside the run event and answers before the handler would: the error shown
    # means that event is over without the handler, so the log can be checked at once.
    assert await run_total(http) == before
    assert await viewer(page) == shown_before

    await set_code(page, "wb-schema", '{"type": "object", ')  # not even JSON
    await page.click("#wb-run")
    error = await until(lambda: page.locator("#wb-schema .validation-error").all_inner_texts(),
                        what="the JSON error", check=lambda v: v and "not valid JSON" in v[0])
    assert "give a JSON Schema object" in error[0]
    assert await run_total(http) == before


async def test_background_run_streams_and_cancel_stops_it(page: Any, app: App, http: httpx.Client) -> None:
    prompt = f"Look around {app.base}/demo/ until told to stop [slow]"
    await page.locator("#wb-prompt textarea").fill(prompt)
    await page.locator("#wb-wait input").uncheck()
    await page.locator("#wb-advanced .label-wrap").first.click()
    await box(page, "wb-max-steps").fill("40")
    await page.locator("#wb-allowed-domains input, #wb-allowed-domains textarea").first.fill("127.0.0.1")
    await page.click("#wb-run")

    shown = await until(lambda: viewer(page), what="two steps of the background run", timeout=60,
                        check=lambda v: v["status"] == "running" and len(v["steps"]) >= 2)
    run = (await asyncio.to_thread(http.get, f"/api/runs/{shown['run_id']}")).json()
    assert run["status"] == "in_progress"
    assert await page.locator("#wb-cancel").is_enabled()
    await page.click("#wb-cancel")
    shown = await until(lambda: viewer(page), what="the cancelled end", check=lambda v: v["status"] != "running")
    run = (await asyncio.to_thread(http.get, f"/api/runs/{shown['run_id']}")).json()
    assert (shown["status"], shown["error"]) == ("failure", "cancelled")
    assert (run["status"], run["error"], run["is_successful"]) == ("failure", "cancelled", False)
    assert len(shown["steps"]) == len(run["history"]) >= 2
    assert await page.locator("#wb-cancel").is_disabled()

    # Its request, Advanced part included, comes back with "Run again".
    await page.locator("#wb-prompt textarea").fill("x")
    await page.locator("#wb-wait input").check()
    await page.click("#wb-rerun")
    await until(lambda: page.locator("#wb-prompt textarea").input_value(), what="the refilled prompt",
                check=lambda v: v == prompt)
    assert not await page.locator("#wb-wait input").is_checked()
    assert await box(page, "wb-max-steps").input_value() == "40"
    assert await page.locator("#wb-allowed-domains input, #wb-allowed-domains textarea").first.input_value() == "127.0.0.1"


# ------------------------------------------------------------------ rough edges (issue 10)
async def labels_of(page: Any) -> list[str]:
    """The accessible names of the page's form controls, as a screen reader lists them (a file input Gradio keeps
    hidden behind a table or an upload area is not listed: a screen reader skips what is not displayed)."""
    return await page.evaluate("""() => [...document.querySelectorAll('input, textarea, select')]
        .filter(el => el.type !== 'file' || el.checkVisibility())
        .map(el => el.getAttribute('aria-label') || (el.labels && el.labels[0] ? el.labels[0].innerText : ''))
        .map(t => t.trim()).filter(Boolean)""")


async def test_empty_numbers_stay_empty_and_errors_show_next_to_run(page: Any, app: App, http: httpx.Client) -> None:
    """Opening the folded parts leaves Max steps and Workflow id empty (not 0), so Run starts the run; a bad
    field inside a closed part is named next to the Run button, and its part opens."""
    for elem_id in ("wb-advanced", "wb-workflow-box"):
        await open_folded(page, elem_id)
    assert await box(page, "wb-max-steps").input_value() == ""
    assert await box(page, "wb-workflow-id").input_value() == ""
    for elem_id in ("wb-advanced", "wb-workflow-box"):  # closed again, as a user leaves them
        await open_folded(page, elem_id)
    before = await run_total(http)
    await page.locator("#wb-prompt textarea").fill(f"Report {app.base}/demo/ [quick]")
    await page.click("#wb-run")
    shown = await until(lambda: viewer(page), what="the run started", check=lambda v: v["status"] == "success")
    assert await run_total(http) == before + 1 and shown["run_id"]
    assert not await page.locator("#wb-run-errors").is_visible()

    await open_folded(page, "wb-advanced")
    await box(page, "wb-max-steps").fill("0")
    await open_folded(page, "wb-advanced")  # closed: the field's own message is out of sight
    assert not await box(page, "wb-max-steps").is_visible()
    await page.click("#wb-run")
    summary = await until(lambda: page.locator("#wb-run-errors").inner_text(), what="the errors next to Run",
                          check=lambda v: "max_steps" in v)
    assert "✗ Nothing started: fix this field:" in summary
    assert "max_steps (under Advanced): must be between 1 and 200 (empty: the default, 25), got 0" in summary
    await until(lambda: box(page, "wb-max-steps").is_visible(), what="Advanced opened on its error")
    await until(lambda: page.locator("#wb-max-steps .validation-error, #wb-max-steps [data-testid=block-info] + *")
                .count(), what="the message at the field")
    assert await run_total(http) == before + 1
    await box(page, "wb-max-steps").fill("")
    await page.click("#wb-run")
    await until(lambda: page.locator("#wb-run-errors").is_visible(), what="the summary gone",
                check=lambda visible: not visible)
    await until(lambda: run_total(http), what="the run started", check=lambda n: n == before + 2)


async def test_the_schema_error_shows_below_the_editor(page: Any) -> None:
    """The JSON-schema error never covers the editor: it sits below it, and the editor stays usable."""
    await page.locator("#wb-prompt textarea").fill("Find the cheapest cable in the demo shop")
    await set_code(page, "wb-schema", '{"type": "objekt"}')
    await page.click("#wb-run")
    error = page.locator("#wb-schema .validation-error").first
    await error.wait_for()
    editor = await page.locator("#wb-schema .cm-editor").bounding_box()
    shown = await error.bounding_box()
    assert editor and shown and shown["y"] >= editor["y"] + editor["height"] - 1, (editor, shown)
    # A click in the middle of the editor reaches the editor (nothing lies over it), and typing fixes the schema.
    x, y = editor["x"] + editor["width"] / 2, editor["y"] + editor["height"] / 2
    inside = await page.evaluate("([x, y]) => !!document.elementFromPoint(x, y).closest('#wb-schema .cm-editor')",
                                 [x, y])
    assert inside
    await page.locator("#wb-schema .cm-content").click()  # no need to dismiss the message first
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text('{"type": "object"}')
    await until(lambda: page.locator("#wb-schema-status").inner_text(), what="the schema accepted",
                check=lambda v: v.strip().startswith("✓"))


async def test_run_while_a_run_is_shown_starts_the_new_run(page: Any, app: App, http: httpx.Client) -> None:
    """Run pressed while the viewer follows a run starts the new one and follows it; the first goes on."""
    await page.locator("#wb-prompt textarea").fill(f"Look around {app.base}/demo/ until told to stop [slow]")
    await page.click("#wb-run")
    first = await until(lambda: viewer(page), what="the first run's first step",
                        check=lambda v: v["status"] == "running" and len(v["steps"]) >= 1)
    before = await run_total(http)
    await page.locator("#wb-prompt textarea").fill(f"Report {app.base}/demo/ [quick]")
    await page.click("#wb-run")
    second = await until(lambda: viewer(page), what="the new run in the viewer",
                         check=lambda v: v["run_id"] not in (None, first["run_id"]) and v["status"] == "success")
    assert await run_total(http) == before + 1
    await page.get_by_text(re.compile(rf"Run {second['run_id']} started; run {first['run_id']} goes on")).wait_for()
    still = (await asyncio.to_thread(http.get, f"/api/runs/{first['run_id']}")).json()
    assert still["status"] == "in_progress"
    # Two more steps of the first run arrive: the viewer stays on the new run.
    async def first_steps() -> int:
        return len((await asyncio.to_thread(http.get, f"/api/runs/{first['run_id']}")).json()["history"])

    await until(first_steps, what="two more steps of the first run", check=lambda n: n >= len(still["history"]) + 2)
    assert (await viewer(page))["run_id"] == second["run_id"]
    cancelled = await asyncio.to_thread(http.post, f"/api/runs/{first['run_id']}/cancel")
    assert cancelled.json()["stop_reason"] == "cancelled"


async def test_the_history_refreshes_when_the_followed_run_ends(page: Any, app: App, http: httpx.Client) -> None:
    """A run opened from the history while it runs: when it ends, its row says so without pressing Refresh."""
    started = (await asyncio.to_thread(http.post, "/api/runs", json={
        "prompt": f"Look around {app.base}/demo/ until told to stop [slow]", "wait_for_completion": False})).json()
    run_id = started["task_run_id"]
    await page.click("#wb-refresh")
    cell = page.locator('#wb-history [role=gridcell][data-col="0"]', has_text=re.compile(rf"^\s*{run_id}\s*$"))
    await cell.first.wait_for()
    row = int(await cell.first.get_attribute("data-row"))
    status = page.locator(f'#wb-history [role=gridcell][data-row="{row}"][data-col="1"]')
    assert (await status.inner_text()).strip() == "in_progress"
    await page.locator(f'#wb-history [data-testid="cell-{row}-2"]').click()
    await until(lambda: viewer(page), what="the opened run followed",
                check=lambda v: v["run_id"] == run_id and v["status"] == "running")
    await asyncio.to_thread(http.post, f"/api/runs/{run_id}/cancel")
    await until(lambda: viewer(page), what="its end in the viewer", check=lambda v: v["status"] == "failure")
    row_now = page.locator('#wb-history [role=gridcell][data-col="0"]', has_text=re.compile(rf"^\s*{run_id}\s*$"))
    async def status_of_run() -> str:
        r = int(await row_now.first.get_attribute("data-row"))
        return (await page.locator(f'#wb-history [role=gridcell][data-row="{r}"][data-col="1"]').inner_text()).strip()
    assert await until(status_of_run, what="the history row updated", check=lambda v: v == "failure") == "failure"
    # The run's stop reason shows beside its status.
    assert (await page.locator("#wb-viewer .wb-stop").inner_text()).strip() == "cancelled"


async def test_every_control_has_its_own_label(page: Any) -> None:
    """No two controls share a name (the form's Provider and the history's provider filter were both "Provider")."""
    names = await labels_of(page)
    assert names.count("Provider") == 1 and "Filter by provider" in names and "Filter by status" in names
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


async def test_webhook_attempts_show_in_the_viewer(page: Any, app: App) -> None:
    """A webhook refused at delivery (a loopback receiver, not allowed by default) says so in the viewer."""
    await page.locator("#wb-prompt textarea").fill(f"Report {app.base}/demo/ [quick]")
    await box(page, "wb-webhook").fill("http://127.0.0.1:9/hook")
    await page.click("#wb-run")
    await until(lambda: viewer(page), what="the run's end", check=lambda v: v["status"] == "success")
    hooks = page.locator("#wb-webhooks .wb-webhooks")
    await until(lambda: hooks.get_attribute("data-state"), what="the delivery's outcome",
                check=lambda v: v == "failed")
    text = await hooks.inner_text()
    assert "✗ not delivered after 1 attempt" in text and "attempt 1: no answer" in text and "refused" in text


async def test_the_last_model_is_remembered_with_its_price(page: Any, app: App) -> None:
    """The model of the last run comes back on the next visit (this browser); each model shows its price."""
    await until(lambda: page.locator("#wb-price-hint").inner_text(), what="the default model's price",
                check=lambda v: v.startswith(f"{FORM_MODEL}: $") and "per million input tokens" in v)
    model = page.locator("#wb-model input")
    await model.fill("gpt-4.1-nano")
    await model.press("Enter")
    hint = await until(lambda: page.locator("#wb-price-hint").inner_text(), what="gpt-4.1-nano's price",
                       check=lambda v: v.startswith("gpt-4.1-nano: $"))
    assert "per million output tokens (litellm's price map)" in hint
    await page.locator("#wb-prompt textarea").fill(f"Report {app.base}/demo/ [quick]")
    await page.click("#wb-run")
    await until(lambda: viewer(page), what="the run's end", check=lambda v: v["status"] == "success")
    await page.reload()
    await until(lambda: page.locator("#wb-model input").input_value(), what="the remembered model",
                check=lambda v: v == "gpt-4.1-nano")
    await model.fill("no-such-model-xyz")
    await model.press("Enter")
    await until(lambda: page.locator("#wb-price-hint").inner_text(), what="an unknown price",
                check=lambda v: "price unknown" in v)


async def test_workflows_section_lists_opens_replays_and_deletes(page: Any, app: App, http: httpx.Client) -> None:
    """A saved workflow is listed with its versions; it replays with new values into the viewer; it deletes."""
    await page.locator("#wb-examples button", has_text="Cheapest USB-C cable as JSON").click()
    await until(lambda: page.locator("#wb-schema-status").inner_text(), what="the example's schema",
                check=lambda v: v.strip().startswith("✓"))
    await page.click("#wb-run")
    shown = await until(lambda: viewer(page), what="the run's end", check=lambda v: v["status"] == "success")
    await page.click("#wb-save-workflow")
    toast = page.get_by_text(re.compile(r"Saved as workflow \d+ \(version 1"))
    await toast.wait_for()
    wid = int(re.search(r"Saved as workflow (\d+)", await toast.inner_text()).group(1))  # type: ignore[union-attr]
    await page.click("#wb-save-workflow")  # a second click: the same workflow, said so
    await page.get_by_text(re.compile(rf"Run {shown['run_id']} is already saved as workflow {wid}")).wait_for()
    listed = (await asyncio.to_thread(http.get, "/api/workflows")).json()
    assert [w["id"] for w in listed["workflows"]].count(wid) == 1

    await open_folded(page, "wb-workflows")
    cell = page.locator('#wb-workflows-table [role=gridcell][data-col="0"]', has_text=re.compile(rf"^\s*{wid}\s*$"))
    await cell.first.wait_for()
    row = int(await cell.first.get_attribute("data-row"))
    cells = [c.strip() for c in await page.locator(
        f'#wb-workflows-table [role=gridcell][data-row="{row}"]').all_inner_texts()]
    assert cells[2:6] == ["1", "1", "search_products", str(shown["run_id"])]
    await page.locator(f'#wb-workflows-table [data-testid="cell-{row}-1"]').click()
    detail = page.locator("#wb-workflow-detail .wb-workflow")
    await detail.wait_for()
    text = await detail.inner_text()
    assert f"Workflow {wid}" in text and "search_products" in text and "Versions" in text
    values = await until(lambda: page.locator("#wb-workflow-values .cm-content").inner_text(),
                         what="the example values", check=lambda v: "search_products" in v)
    assert json.loads(values) == {"search_products": "usb-c"}

    await set_code(page, "wb-workflow-values", '{"search_products": "usb-c"}')
    await page.click("#wb-workflow-replay")
    # The toast names the model a step needing healing would run on: the form's (the operator's DEFAULT_MODEL).
    await page.get_by_text(re.compile(rf"Replaying workflow {wid} as run \d+; a step that needs healing runs on "
                                      rf"openai model {re.escape(FORM_MODEL)} \(the form's\)\.")).wait_for()
    replayed = await until(lambda: viewer(page), what="the replay in the viewer",
                           check=lambda v: v["run_id"] not in (None, shown["run_id"]) and v["status"] != "running")
    run = (await asyncio.to_thread(http.get, f"/api/runs/{replayed['run_id']}")).json()
    assert (run["status"], run["mode"], run["workflow_id"], run["usage"]["llm_calls"]) == ("success", "replay", wid, 0)
    assert json.loads(replayed["result"]) == CHEAPEST
    # Replayed actions show the element's label, never the replay's internal index.
    params = [p for s in replayed["steps"] for p in s["params"] if p]
    assert not any("10000" in p for p in params) and any("element" in p for p in params)

    await page.click("#wb-workflow-delete")
    await page.get_by_text(f"Deleted workflow {wid} (every version).").wait_for()
    assert (await asyncio.to_thread(http.get, f"/api/workflows/{wid}")).status_code == 404
    await until(lambda: cell.count(), what="the row gone", check=lambda n: n == 0)


# ------------------------------------------------------------------ in reach at 1,440 x 900 (issue 22)
async def in_window(page: Any, selector: str, *, clickable: bool = False) -> bool:
    """Whether the element lies wholly inside the window (and, `clickable`, is what a click at its centre hits)."""
    return await page.evaluate("""([sel, clickable]) => {
        const el = document.querySelector(sel);
        if (!el) return false;
        const r = el.getBoundingClientRect();
        if (r.height === 0 || r.top < 0 || r.bottom > window.innerHeight) return false;
        if (!clickable) return true;
        const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
        return !!hit && (hit === el || el.contains(hit));
    }""", [selector, clickable])


# Whether the newest finished step of the viewer lies wholly inside the window.
NEWEST_IN_SIGHT_JS = """() => {
    const steps = document.querySelectorAll('#wb-viewer .wb-step:not(.wb-pending)');
    const last = steps[steps.length - 1];
    if (!last) return false;
    const r = last.getBoundingClientRect();
    return r.top >= -1 && r.bottom <= window.innerHeight + 1;
}"""
# The page's scroll position once it has stopped moving (no scroll event for 300 ms; 3 s at most).
SCROLL_SETTLED_JS = """() => new Promise((resolve) => {
    const done = () => { window.removeEventListener('scroll', moved); resolve(window.scrollY); };
    let timer = setTimeout(done, 300);
    const moved = () => { clearTimeout(timer); timer = setTimeout(done, 300); };
    window.addEventListener('scroll', moved);
    setTimeout(done, 3000);
})"""


async def test_run_and_cancel_stay_in_reach_and_the_viewer_follows_the_steps(page: Any, app: App) -> None:
    """At 1,440 x 900 the form is taller than the window: Run and Cancel stay in reach wherever the page is
    scrolled, and the viewer brings each new step into sight, until the user scrolls elsewhere."""
    await page.locator("#wb-prompt textarea").fill(f"Look around {app.base}/demo/ until told to stop [slow]")
    assert await page.evaluate("document.documentElement.scrollHeight") > 2 * VIEWPORT["height"]
    for y in (0, 450, 900):
        await page.evaluate("(y) => window.scrollTo(0, y)", y)
        assert await in_window(page, "#wb-run", clickable=True), f"Run out of reach at scroll {y}"
        assert await in_window(page, "#wb-cancel", clickable=True), f"Cancel out of reach at scroll {y}"
    # Pressed with the page scrolled to the bottom of the form (the viewer above the window): each new step
    # comes into sight as it arrives.
    await page.evaluate("window.scrollTo(0, 900)")
    await page.click("#wb-run")
    for n in (1, 3, 6):
        await until(lambda: viewer(page), what=f"step {n}", check=lambda v, n=n: len(v["steps"]) >= n)
        await until(lambda: page.evaluate(NEWEST_IN_SIGHT_JS), what=f"the newest step (at least {n}) in sight")
    assert (await viewer(page))["status"] == "running"
    assert await page.evaluate("window.scrollY") > 300  # the steps outgrew the window: the page followed them
    # The user scrolls up to read: the next steps leave the page where they put it.
    await page.mouse.move(900, 400)
    await page.mouse.wheel(0, -600)
    parked = await page.evaluate(SCROLL_SETTLED_JS)
    count = len((await viewer(page))["steps"])
    await until(lambda: viewer(page), what="two more steps", check=lambda v: len(v["steps"]) >= count + 2)
    assert await page.evaluate("window.scrollY") == parked
    # Cancel is in reach there too.
    assert await in_window(page, "#wb-cancel", clickable=True)
    await page.click("#wb-cancel")
    ended = await until(lambda: viewer(page), what="the cancelled end", check=lambda v: v["status"] == "failure")
    assert ended["error"] == "cancelled"


async def test_the_form_starts_with_the_operators_model_and_the_api_keeps_the_contracts(
        page: Any, app: App, http: httpx.Client) -> None:
    """DEFAULT_MODEL sets the model a fresh browser's form shows (not the contract's o3, the costliest); a
    request that names no model still gets o3."""
    assert await page.locator("#wb-model input").input_value() == FORM_MODEL
    await until(lambda: page.locator("#wb-price-hint").inner_text(), what="its price",
                check=lambda v: v.startswith(f"{FORM_MODEL}: $"))
    await pick(page, "wb-provider", "anthropic")
    await until(lambda: page.locator("#wb-model input").input_value(), what="anthropic's default",
                check=lambda v: v not in ("", FORM_MODEL))
    await pick(page, "wb-provider", "openai")
    await until(lambda: page.locator("#wb-model input").input_value(), what="the operator's model again",
                check=lambda v: v == FORM_MODEL)
    run = (await asyncio.to_thread(http.post, "/api/runs", json={"prompt": f"Report {app.base}/demo/ [quick]"})).json()
    assert (run["status"], run["provider"], run["model"]) == ("success", "openai", "o3")
