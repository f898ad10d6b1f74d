"""The run endpoint through Gradio's API, as programs use it: `gradio_client` (predict, streamed
submit), the raw `/gradio_api/call/run` protocol over HTTP, parallel calls, and the API key (headers for
programs, a login cookie for browsers). The real app in a subprocess, the fake model, real Chromium."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from gradio_client import Client
from gradio_client.exceptions import AuthenticationError

from agent.models import RunRequest
from agent.testing.fakellm import FakeLLM
from tests.apphelpers import App, agent_script

pytestmark = pytest.mark.slow

API_KEY = "wb-gradio-key-4c1d"
HEADERS = {"X-API-Key": API_KEY}
CONTRACT_FIELDS = {"task_id", "task_run_id", "history", "result", "is_done", "is_successful", "status"}
ACTION_FIELDS = {"name", "params", "is_done", "success", "extracted_content", "error", "include_in_memory"}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
          "required": ["name", "price"]}
# The form's defaults, which are the API's: every field but the prompt may be left out.
DEFAULTS = {"model": "", "provider": "openai", "wait_for_completion": True, "webhook_url": "",
            "response_format": "text", "json_schema": "", "use_cached_workflow": False, "cached_workflow": "",
            "workflow_id": "", "workflow_params": "", "start_url": "", "max_steps": "", "use_vision": False,
            "allowed_domains": "", "sensitive_data": "", "extend_system_message": "", "override_system_message": "",
            "max_cost_usd": "", "price_per_mtok": "", "session_id": "", "fork": ""}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The app with an API key; its model is the scripted fake ([shop]: 3 steps, [seed]: JSON result)."""
    model = FakeLLM(agent_script)
    model.delay_s = 0.2  # steps take a moment, as with a real model
    env = {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "MAX_CONCURRENT_RUNS": "4",
           "WORKBENCH_API_KEY": API_KEY}
    app = App(tmp_path_factory.mktemp("gradio") / "data", env).start()
    try:
        app.ready(headers=HEADERS)
        yield app
    finally:
        app.stop()
        model.close()


@pytest.fixture(scope="module")
def client(app: App) -> Client:
    return Client(app.base + "/", headers=HEADERS, verbose=False)


@pytest.fixture(scope="module")
def http(app: App) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.base, headers=HEADERS, timeout=120) as c:
        yield c


def check_contract(body: dict[str, Any]) -> None:
    """Every field of the contract is there with its type."""
    assert set(body) >= CONTRACT_FIELDS
    assert isinstance(body["task_id"], int) and isinstance(body["task_run_id"], int)
    assert body["status"] in ("success", "failure", "in_progress")
    for item in body["history"]:
        assert isinstance(item["description"], str)
        for action in item["actions"]:
            assert set(action) >= ACTION_FIELDS


def actions(body: dict[str, Any]) -> list[str]:
    return [a["name"] for item in body["history"] for a in item["actions"]]


def sse_events(response: httpx.Response) -> list[tuple[str, Any]]:
    """(event, data) pairs of a server-sent event stream, read to its end."""
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: "):])))
    return events


def run_total(http: httpx.Client) -> int:
    return http.get("/api/runs", params={"limit": 1}).json()["total"]


# ------------------------------------------------------------------ gradio_client
def test_run_endpoint_takes_the_request_fields(client: Client) -> None:
    info = client.view_api(return_format="dict", print_info=False)
    # The run, the experiment (docs/experiments.md) and asking again at a step (docs/prompts.md); every other
    # event is private.
    assert sorted(info["named_endpoints"]) == ["/ask_step", "/experiment", "/run"] and info["unnamed_endpoints"] == {}
    endpoint = info["named_endpoints"]["/run"]
    params = endpoint["parameters"]
    assert [p["parameter_name"] for p in params] == list(RunRequest.model_fields)
    assert [p["parameter_name"] for p in params if not p["parameter_has_default"]] == ["prompt"]
    assert {p["parameter_name"]: p["parameter_default"] for p in params if p["parameter_has_default"]} == DEFAULTS
    assert [(r["label"], r["component"]) for r in endpoint["returns"]] == [("Run response", "Json")]


def test_predict_returns_the_contract_response(app: App, client: Client, http: httpx.Client) -> None:
    body = client.predict(
        prompt=f"Open {app.base}/demo/ and report the cheapest USB-C cable [seed]", model="gpt-4o-mini",
        response_format="json", json_schema=json.dumps(SCHEMA), api_name="/run",
    )
    check_contract(body)
    assert (body["status"], body["is_done"], body["is_successful"]) == ("success", True, True)
    assert body["result"] == {"name": "USB-C cable 1 m", "price": 9.99}
    assert actions(body) == ["navigate", "done"]
    assert (body["provider"], body["model"]) == ("openai", "gpt-4o-mini")
    # The same record the run log gives back, field for field.
    assert http.get(f"/api/runs/{body['task_run_id']}").json() == body


def test_streamed_submit_gives_an_update_per_step(app: App, client: Client) -> None:
    job = client.submit(prompt=f"open {app.base}/demo/ [shop]", model="gpt-4o-mini", api_name="/run")
    updates = [(out["status"], len(out["history"])) for out in job]
    # The start (with the ids), one update per finished step, then the final response.
    assert updates == [("in_progress", 0), ("in_progress", 1), ("in_progress", 2), ("in_progress", 3),
                       ("success", 3)]
    final = job.result()
    check_contract(final)
    assert final == job.outputs()[-1]
    assert actions(final) == ["navigate", "scroll", "done"]
    assert final["result"] == f"finished: open {app.base}/demo/ [shop]"
    assert len({out["task_run_id"] for out in job.outputs()}) == 1


def test_background_call_returns_at_once_with_the_ids(app: App, client: Client, http: httpx.Client) -> None:
    body = client.predict(prompt=f"open {app.base}/demo/ [shop]", model="gpt-4o-mini", wait_for_completion=False,
                          api_name="/run")
    check_contract(body)
    assert (body["status"], body["history"]) == ("in_progress", [])
    deadline = time.monotonic() + 60
    while (run := http.get(f"/api/runs/{body['task_run_id']}").json())["status"] == "in_progress":
        assert time.monotonic() < deadline, "the background run did not end"
        time.sleep(0.2)
    assert (run["task_id"], run["status"], actions(run)) == (body["task_id"], "success", ["navigate", "scroll", "done"])


def test_the_system_prompt_is_changed_through_the_api(client: Client, http: httpx.Client) -> None:
    from agent.engine.prompts import SYSTEM_PROMPT

    body = client.predict(prompt="answer at once [quick]", extend_system_message="Answer in one word.",
                          api_name="/run")
    trace = http.get(f"/api/runs/{body['task_run_id']}/steps/1/trace").json()
    assert trace["system_prompt"] == SYSTEM_PROMPT + "\n\nAnswer in one word."
    body = client.predict(prompt="answer at once [quick]", override_system_message="You are terse.",
                          api_name="/run")
    assert http.get(f"/api/runs/{body['task_run_id']}/steps/1/trace").json()["system_prompt"] == "You are terse."
    request = http.get(f"/api/tasks/{body['task_id']}").json()["request"]
    assert request["override_system_message"] == "You are terse."


def test_bad_fields_are_named_and_start_nothing(client: Client, http: httpx.Client) -> None:
    before = run_total(http)
    with pytest.raises(Exception) as caught:
        client.predict(prompt="ab", json_schema='{"type": ', webhook_url="ftp://example.com/hook", api_name="/run")
    message = str(caught.value)
    assert "prompt: must be at least 3 characters of task description" in message
    assert "json_schema: is not valid JSON" in message
    assert "webhook_url: must be an http:// or https:// URL with a host" in message
    assert run_total(http) == before


def test_parallel_calls_run_at_the_same_time(app: App, client: Client) -> None:
    jobs = [client.submit(prompt=f"open {app.base}/demo/ [shop] (caller {i})", model="gpt-4o-mini", api_name="/run")
            for i in range(2)]
    results = [job.result(timeout=120) for job in jobs]
    assert [r["status"] for r in results] == ["success", "success"]
    windows = [(datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"])) for r in results]
    # Run one way, the second starts after the first ends; here each starts before the other ends.
    assert max(start for start, _ in windows) < min(end for _, end in windows), windows


# ------------------------------------------------------------------ raw HTTP
def test_raw_call_protocol_streams_then_completes(app: App, http: httpx.Client) -> None:
    values = [f"open {app.base}/demo/ [shop]", "gpt-4o-mini", *list(DEFAULTS.values())[1:]]
    assert len(values) == len(RunRequest.model_fields)
    started = http.post("/gradio_api/call/run", json={"data": values})
    assert started.status_code == 200, started.text
    event_id = started.json()["event_id"]
    with http.stream("GET", f"/gradio_api/call/run/{event_id}") as stream:
        events = sse_events(stream)
    seen = [(name, data[0]["status"], len(data[0]["history"])) for name, data in events]
    assert seen == [("generating", "in_progress", 0), ("generating", "in_progress", 1),
                    ("generating", "in_progress", 2), ("generating", "in_progress", 3),
                    ("generating", "success", 3), ("complete", "success", 3)]
    final = events[-1][1][0]
    check_contract(final)
    assert http.get(f"/api/runs/{final['task_run_id']}").json() == final

    # The named form: only the fields you need, the others take their defaults.
    started = http.post("/gradio_api/call/v2/run", json={"prompt": f"Report {app.base}/demo/ [quick]"})
    assert started.status_code == 200, started.text
    with http.stream("GET", f"/gradio_api/call/run/{started.json()['event_id']}") as stream:
        events = sse_events(stream)
    assert events[-1][0] == "complete"
    final = events[-1][1][0]
    assert (final["status"], final["model"], final["result"]) == (
        "success", "o3", f"quick answer to: Report {app.base}/demo/ [quick]")


def test_raw_call_with_bad_fields_is_422_naming_them(http: httpx.Client) -> None:
    before = run_total(http)
    answer = http.post("/gradio_api/call/v2/run", json={"prompt": "find cables", "max_steps": 500,
                                                         "json_schema": '{"type": "objekt"}'})
    assert answer.status_code == 422
    refused = {d["parameter_name"]: d["message"] for d in answer.json()["detail"] if not d["is_valid"]}
    assert refused == {
        "max_steps": "must be between 1 and 200 (empty: the default, 25), got 500",
        "json_schema": "is not a valid JSON Schema at type: 'objekt' is not valid under any of the given schemas",
    }
    assert run_total(http) == before


# ------------------------------------------------------------------ the API key
def test_the_gradio_api_needs_the_key(app: App) -> None:
    with pytest.raises(AuthenticationError):
        Client(app.base + "/", verbose=False)
    answer = httpx.post(app.base + "/gradio_api/call/v2/run", json={"prompt": "find cables"})
    assert answer.status_code == 401 and "X-API-Key" in answer.json()["detail"]
    wrong = httpx.post(app.base + "/gradio_api/call/v2/run", json={"prompt": "find cables"},
                       headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    page = httpx.get(app.base + "/", follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/login-key")
    assert httpx.get(app.base + "/demo/").status_code == 200  # the demo shop stays public


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Any) -> Any:
    chromium = await browser.start()
    ctx = await chromium.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(30_000)
    try:
        yield ctx
    finally:
        await ctx.close()


async def test_a_browser_logs_in_once_with_the_key(app: App, context: Any, http: httpx.Client) -> None:
    page = await context.new_page()
    await page.goto(app.base + "/")
    assert page.url == app.base + "/login-key"
    await page.fill("input[name=key]", "not-the-key")
    await page.click("button[type=submit]")
    assert await page.locator(".err").inner_text() == "Wrong key."
    await page.fill("input[name=key]", API_KEY)
    await page.click("button[type=submit]")
    await page.wait_for_url(app.base + "/")
    cookies = {c["name"]: c for c in await context.cookies()}
    session = cookies["workbench_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and API_KEY not in session["value"]

    # The UI works behind the key: its events (/gradio_api) and the screenshots (/api) pass.
    total = await asyncio.to_thread(run_total, http)
    label = page.locator("#wb-history [role=grid]")
    deadline = time.monotonic() + 60
    while (await label.get_attribute("aria-label") or "") != f"Run history (runs 1–{total} of {total}, newest first)":
        assert time.monotonic() < deadline, await label.get_attribute("aria-label")
        await asyncio.sleep(0.1)
    runs = (await asyncio.to_thread(http.get, "/api/runs", params={"status": "success"})).json()["runs"]
    shop_run = next(r["id"] for r in runs if "[shop]" in r["prompt"])  # its steps show the demo shop
    ids = [x.strip() for x in await page.locator('#wb-history [role=gridcell][data-col="0"]').all_inner_texts()]
    await page.locator(f'#wb-history [data-testid="cell-{ids.index(str(shop_run))}-2"]').click()
    await page.wait_for_selector(f"#wb-viewer .wb-run[data-run-id='{shop_run}'] .wb-shot img")
    widths = await page.evaluate("""async () => {
        const imgs = [...document.querySelectorAll('#wb-viewer .wb-shot img')];
        await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
        return imgs.map(i => i.naturalWidth);
    }""")
    assert widths and all(w > 0 for w in widths)
