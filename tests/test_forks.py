"""Iterating at a step, against the real app: `python app.py` in a subprocess, runs on the bundled demo shop and
on the changeable workflow shop, real Chromium, the fake model. Asking the model again at a step (the step
playground: exactly the step's messages but for the system prompt, logged outside the run's totals, 409 without
messages) and forking a run from a step (no model call before it, the parent linked in the response, the log and
the history, a prefix that no longer fits named, healing), through REST, the viewer in a browser, the Gradio API
and the Python API."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from gradio_client import Client

from agent.engine.llm import KEY_VARS
from agent.engine.loop import arun
from agent.engine.playground import rebuild_messages
from agent.engine.prompts import SYSTEM_PROMPT
from agent.log import analysis as an
from agent.log.store import Store, open_snapshot
from agent.models import (
    ActionResult,
    HistoryItem,
    LLMCall,
    LLMTrace,
    NotAskable,
    RunFinished,
    RunRequest,
    RunResponse,
    StepFinished,
    utcnow,
)
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply
from agent.testing.forks import CABLE, cart_agent, cart_prompt, step_of, task_of
from agent.testing.workflow_site.script import order_prompt, shop_agent
from agent.testing.workflow_site.shop import ShopServer
from agent.workflows.fork import fork_from
from tests.apphelpers import App
from tests.test_ui import until, viewer

pytestmark = pytest.mark.slow

MODEL = "gpt-4.1-mini"
ORDER = dict(query="usb-c", qty=2, name="Ada Lovelace", email="ada@example.com", country="Germany")
SEARCH_INSTEAD = "Click the search button instead."  # a system prompt line the fake model obeys at step 3
BRIEF = "Be brief."


def _shop_or_cart(order: Any) -> Any:
    """The fake model: the workflow shop's order task (and its heals), else the demo shop's cart task; at step 3 of
    the cart task, a system prompt asking for the search button gets it."""

    def handler(body: dict[str, Any]) -> Any:
        text = last_user_text(body)
        if " buy " in text:
            return order(body)
        system = body["messages"][0]["content"] if body.get("messages") else ""
        if body.get("tools") and step_of(body) == 3 and SEARCH_INSTEAD in str(system):
            return reply("Search again.", call("click", index=find_index(body, "Search", tag="button")))
        return cart_agent(body)

    return handler


def previous_steps(body: dict[str, Any]) -> str:
    """The model's memory in a request (what `<previous_steps>` holds)."""
    return last_user_text(body).split("<previous_steps>")[1].split("</previous_steps>")[0]


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def shop() -> Iterator[ShopServer]:
    server = ShopServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def model() -> Iterator[FakeLLM]:
    fake = FakeLLM(_shop_or_cart(shop_agent(**ORDER)))
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, model: FakeLLM) -> Iterator[App]:
    no_keys = {name: "" for names in KEY_VARS.values() for name in names}
    env = {**no_keys, "OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "MAX_CONCURRENT_RUNS": "4"}
    app = App(tmp_path_factory.mktemp("forks") / "data", env).start()
    try:
        app.ready()
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def http(app: App) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.base, timeout=180) as client:
        yield client


@pytest.fixture(scope="module")
def parent(app: App, http: httpx.Client, model: FakeLLM) -> dict[str, Any]:
    """A finished five-step run on the demo shop, and the requests its model received (by step)."""
    before = len(model.requests)
    response = http.post("/api/runs", json={"prompt": cart_prompt(f"{app.base}/demo/", short=True), "model": MODEL})
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "success" and len(run["history"]) == 5, run
    sent = {step_of(b): b for b in model.requests[before:] if b.get("tools")}
    assert sorted(sent) == [1, 2, 3, 4, 5]
    return {"run": run, "id": run["task_run_id"], "sent": sent}


@pytest.fixture(scope="module")
def fork(http: httpx.Client, model: FakeLLM, parent: dict[str, Any]) -> dict[str, Any]:
    """The parent forked at step 3 over REST (only the fork and a system prompt line given), and what its model got."""
    before = len(model.requests)
    response = http.post("/api/runs", json={"fork": {"run_id": parent["id"], "step": 3},
                                            "extend_system_message": BRIEF})
    assert response.status_code == 200, response.text
    return {"run": response.json(), "sent": model.requests[before:]}


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Any) -> Any:
    chromium = await browser.start()
    ctx = await chromium.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(30_000)
    yield ctx
    await ctx.close()


async def open_run(context: Any, app: App, run_id: int) -> Any:
    page = await context.new_page()
    await page.goto(f"{app.base}/?run={run_id}")
    await until(lambda: viewer(page), what=f"run {run_id} in the viewer",
                check=lambda v: v["run_id"] == run_id and v["status"] in ("success", "failure"))
    return page


# ------------------------------------------------------------------ 1. ask again at a step, over REST
def test_asking_again_sends_the_step_s_messages_with_only_the_system_prompt_changed(
        http: httpx.Client, model: FakeLLM, parent: dict[str, Any]) -> None:
    run_id, original = parent["id"], parent["sent"][3]
    before = len(model.requests)
    answer = http.post(f"/api/runs/{run_id}/steps/3/ask", json={"extend_system_message": SEARCH_INSTEAD,
                                                                "samples": 2, "temperature": 0.4})
    assert answer.status_code == 200, answer.text
    sent = model.requests[before:]
    assert len(sent) == 2
    for body in sent:  # the step's messages exactly, the tools too; only the system prompt is another
        assert body["messages"][1:] == original["messages"][1:]
        assert body["tools"] == original["tools"] and body["tool_choice"] == original["tool_choice"]
        assert original["messages"][0]["content"] == SYSTEM_PROMPT
        assert body["messages"][0] == {"role": "system", "content": f"{SYSTEM_PROMPT}\n\n{SEARCH_INSTEAD}"}
        assert body["temperature"] == 0.4 and "temperature" not in original
    data = answer.json()
    assert (data["task_run_id"], data["step"], data["provider"], data["model"]) == (run_id, 3, "openai", MODEL)
    assert data["system_prompt_changed"] is True and data["screenshot"] is False and data["same"] == 0
    link = next(line for line in original["messages"][1]["content"].splitlines() if CABLE in line and "<a " in line)
    button = next(line for line in original["messages"][1]["content"].splitlines()
                  if re.match(r"^\[\d+\]<button", line) and "Search" in line)
    assert data["original"]["text"] == f"Open {CABLE}."
    assert [(a["name"], a["element"]) for a in data["original"]["actions"]] == [("click", link)]
    for r in data["replies"]:
        assert [(a["name"], a["element"]) for a in r["actions"]] == [("click", button)]
        assert r["same_as_original"] is False
        assert r["differences"] == [f"action 1 (click): element {button} instead of {link}"]
        assert (r["input_tokens"], r["output_tokens"], r["provider"], r["model"]) == (100, 20, "openai",
                                                                                     f"openai/{MODEL}")
        assert r["latency_ms"] > 0 and r["cost_usd"] is not None

    # The step's own system prompt, sent again unchanged: the same messages, the same action.
    before = len(model.requests)
    again = http.post(f"/api/runs/{run_id}/steps/3/ask", json={}).json()
    assert model.requests[before]["messages"] == original["messages"]
    assert again["same"] == 1 and again["replies"][0]["same_as_original"] and again["replies"][0]["differences"] == []
    assert again["system_prompt_changed"] is False

    # Logged as playground calls at the step, newest question first; outside the run's own totals.
    asked = http.get(f"/api/runs/{run_id}/steps/3/ask").json()["calls"]
    assert [(c["purpose"], c["step"]) for c in asked] == [("playground", 3)] * 3
    assert asked[0]["system_prompt"] == SYSTEM_PROMPT  # the newest question: no change
    assert asked[1]["system_prompt"] == asked[2]["system_prompt"] == f"{SYSTEM_PROMPT}\n\n{SEARCH_INSTEAD}"
    assert asked[1]["messages"][1:] == http.get(f"/api/runs/{run_id}/steps/3/trace").json()["messages"][1:]
    run = http.get(f"/api/runs/{run_id}").json()
    assert run["usage"] == parent["run"]["usage"] and run["usage"]["llm_calls"] == 5
    assert [len(i["llm_calls"]) for i in run["history"]] == [1, 1, 1, 1, 1]
    assert isinstance(http.get(f"/api/runs/{run_id}/steps/3/trace").json(), dict)  # still the step's one call
    totals = http.get("/api/runs", params={"q": "[short]"}).json()
    assert totals["totals"]["input_tokens"] == sum(r["usage"]["input_tokens"] for r in
                                                   [http.get(f"/api/runs/{x['id']}").json() for x in totals["runs"]])


def test_asking_again_refuses_what_it_cannot_send(http: httpx.Client, parent: dict[str, Any]) -> None:
    run_id = parent["id"]

    def ask(body: Any, step: int = 3, run: int = run_id) -> httpx.Response:
        return http.post(f"/api/runs/{run}/steps/{step}/ask", json=body)

    for body, field in (({"samples": 11}, "samples"), ({"samples": 0}, "samples"), ({"provider": "acme"}, "provider"),
                        ({"temperature": 3}, "temperature"), ({"colour": "red"}, "colour")):
        bad = ask(body)
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == field, (body, bad.text)
    assert ask({"colour": "red"}).json()["detail"][0]["message"].endswith("temperature, samples")  # what it takes
    no_key = ask({"provider": "anthropic"})
    assert no_key.status_code == 422 and no_key.json()["detail"][0]["field"] == "provider"
    assert "ANTHROPIC_API_KEY" in no_key.json()["detail"][0]["message"]
    missing = ask({}, step=9)
    assert (missing.status_code, missing.json()) == (404, {"detail": f"run {run_id} has no step 9 (it has 5 so far)"})
    assert ask({}, run=987654).status_code == 404
    assert http.post(f"/api/runs/{run_id}/steps/3/ask", content=b"[1]",
                     headers={"Content-Type": "application/json"}).status_code == 422


# ------------------------------------------------------------------ 2. fork a run from a step, over REST
def test_a_fork_replays_the_steps_before_it_without_the_model_and_links_its_parent(
        http: httpx.Client, parent: dict[str, Any], fork: dict[str, Any]) -> None:
    run, sent = fork["run"], fork["sent"]
    assert run["status"] == "success", run
    assert (run["parent_run_id"], run["forked_at_step"]) == (parent["id"], 3)
    assert [i["executed_by"] for i in run["history"]] == ["replay", "replay", "agent", "agent", "agent"]
    assert [len(i["llm_calls"]) for i in run["history"]] == [0, 0, 1, 1, 1] and run["usage"]["llm_calls"] == 3
    # No model call for steps 1-2; steps 3-5 asked with the fork's system prompt and the parent's task.
    assert [step_of(b) for b in sent] == [3, 4, 5]
    assert all(b["messages"][0]["content"] == f"{SYSTEM_PROMPT}\n\n{BRIEF}" for b in sent)
    assert task_of(sent[0]) == task_of(parent["sent"][3])
    # Its memory of steps 1-2 is the parent's, as the parent's model read it at step 3.
    assert previous_steps(sent[0]) == previous_steps(parent["sent"][3])
    assert [i["description"] for i in run["history"][:2]] == [i["description"] for i in parent["run"]["history"][:2]]
    # The log keeps the link: the run read back, the forks of the parent, the history's rows.
    stored = http.get(f"/api/runs/{run['task_run_id']}").json()
    assert (stored["parent_run_id"], stored["forked_at_step"]) == (parent["id"], 3)
    forks = http.get("/api/runs", params={"parent_run_id": parent["id"]}).json()
    assert [(r["id"], r["parent_run_id"], r["forked_at_step"]) for r in forks["runs"]] == [
        (run["task_run_id"], parent["id"], 3)]
    rows = {r["id"]: r for r in http.get("/api/runs").json()["runs"]}
    assert rows[parent["id"]]["forks"] >= 1 and rows[run["task_run_id"]]["forks"] == 0
    # A replayed step made no model call: nothing to ask again there.
    replayed = http.post(f"/api/runs/{run['task_run_id']}/steps/2/ask", json={})
    assert replayed.status_code == 409 and "made no model call (executed by replay)" in replayed.json()["detail"]


def test_a_fork_request_names_what_is_wrong(http: httpx.Client, parent: dict[str, Any]) -> None:
    def field(body: dict[str, Any]) -> tuple[int, str]:
        r = http.post("/api/runs", json=body)
        return r.status_code, (r.json()["detail"][0]["field"] if r.status_code == 422 else r.text)

    assert field({"fork": {"run_id": 987654, "step": 1}}) == (422, "fork.run_id")
    assert field({"fork": {"run_id": parent["id"], "step": 6}}) == (422, "fork.step")
    assert field({"fork": {"run_id": parent["id"], "step": 0}}) == (422, "fork.step")
    assert field({"fork": {"run_id": parent["id"], "step": 3, "at": 2}}) == (422, "fork.at")
    assert field({"fork": {"run_id": parent["id"], "step": 4}, "max_steps": 3}) == (422, "max_steps")
    assert field({"fork": {"run_id": parent["id"], "step": 2}, "use_cached_workflow": True}) == (
        422, "use_cached_workflow")
    message = http.post("/api/runs", json={"fork": {"run_id": parent["id"], "step": 6}}).json()["detail"][0]["message"]
    assert message == f"run {parent['id']} has 5 steps: give a step from 1 to 5"


def test_a_fork_whose_prefix_no_longer_fits_the_page_says_which_step(
        app: App, http: httpx.Client, shop: ShopServer, model: FakeLLM) -> None:
    shop.variant = "base"
    try:
        parent = http.post("/api/runs", json={"prompt": order_prompt(shop.url, **ORDER), "model": MODEL,
                                              "start_url": shop.url + "/"}).json()
        assert parent["status"] == "success" and len(parent["history"]) >= 5, parent
        shop.variant = "broken"  # the search form is gone: step 2 (search) cannot be done again
        before = len(model.requests)
        broken = http.post("/api/runs", json={"fork": {"run_id": parent["task_run_id"], "step": 4}}).json()
        assert (broken["status"], broken["stop_reason"]) == ("failure", "replay_failed"), broken
        assert broken["error"].startswith(f"step 2 of run {parent['task_run_id']} ('Search for usb-c.') could not be "
                                          "replayed: ")
        assert '"heal": true' in broken["error"]
        assert [i["executed_by"] for i in broken["history"]] == ["replay", "replay"]
        assert broken["history"][1]["actions"][0]["error"]
        assert len(model.requests) == before  # the model was never asked
        # Allowed to heal, the agent does a step the recorded way cannot (here: a new layout), then goes on.
        shop.variant = "redesign"
        healed = http.post("/api/runs", json={"fork": {"run_id": parent["task_run_id"], "step": 4, "heal": True}})
        healed = healed.json()
        assert healed["status"] == "success", healed
        by = [i["executed_by"] for i in healed["history"]]
        assert "heal" in by[:3] and by[3:] == ["agent"] * (len(by) - 3), by
        assert healed["forked_at_step"] == 4 and healed["parent_run_id"] == parent["task_run_id"]
    finally:
        shop.variant = "base"


# ------------------------------------------------------------------ 3. the viewer in a browser
async def test_try_this_step_again_in_the_viewer(app: App, context: Any, model: FakeLLM,
                                                 parent: dict[str, Any]) -> None:
    page = await open_run(context, app, parent["id"])
    step = page.locator('#wb-viewer .wb-step[data-step="3"]')
    await step.locator(".wb-trace > summary").click()
    panel = step.locator(".wb-ask")
    await panel.locator("summary").click()
    # The panel starts from the run's own provider, model and system prompt fields.
    assert await panel.locator("select[name=provider]").input_value() == "openai"
    assert await panel.locator("input[name=model]").input_value() == MODEL
    await panel.locator("textarea[name=extend_system_message]").fill(SEARCH_INSTEAD)
    await panel.locator("input[name=samples]").fill("2")
    before = len(model.requests)
    await panel.locator(".wb-ask-btn").click()
    await until(lambda: panel.locator(".wb-ask-result").get_attribute("data-state"), what="the answer",
                check=lambda v: v == "answered")
    states = await panel.locator(".wb-ask-reply").evaluate_all("els => els.map(e => e.dataset.state)")
    assert states == ["original", "differs", "differs"]
    assert len(model.requests) - before == 2
    assert model.requests[-1]["messages"][0]["content"] == f"{SYSTEM_PROMPT}\n\n{SEARCH_INSTEAD}"
    differences = await panel.locator(".wb-ask-differences li").all_inner_texts()
    assert len(differences) == 2 and all(d.startswith("action 1 (click): element [") for d in differences)
    assert await panel.locator(".wb-ask-action.wb-ask-differs").count() == 2  # the differing actions marked
    assert "0 of 2 replies would have done the same" in await panel.locator(".wb-ask-answer").inner_text()
    # Every step can be forked; every step the model answered can be asked again.
    assert await page.locator("#wb-viewer .wb-fork-btn").count() == 5
    assert await page.locator("#wb-viewer .wb-ask-form").count() == 5
    await page.close()


async def test_fork_from_here_fills_the_form_and_runs_a_linked_fork(app: App, context: Any, http: httpx.Client,
                                                                    parent: dict[str, Any]) -> None:
    page = await open_run(context, app, parent["id"])
    await page.locator('#wb-viewer .wb-step[data-step="3"] .wb-fork-btn').click()
    fork_box = await until(lambda: page.locator("#wb-fork .cm-content").inner_text(), what="the fork in the form",
                           check=lambda v: bool(v.strip()))
    assert json.loads(fork_box) == {"run_id": parent["id"], "step": 3, "heal": False}
    assert await page.locator("#wb-prompt textarea").input_value() == cart_prompt(f"{app.base}/demo/", short=True)
    assert await page.locator("#wb-model input").input_value() == MODEL
    await page.locator("#wb-extend-system textarea").fill(BRIEF)
    await page.click("#wb-run")
    shown = await until(lambda: viewer(page), what="the fork's end",
                        check=lambda v: v["status"] == "success" and v["run_id"] not in (None, parent["id"]))
    fork_id = shown["run_id"]
    assert (await page.locator("#wb-viewer .wb-parent").get_attribute("data-parent")) == str(parent["id"])
    assert await page.locator("#wb-viewer .wb-step.wb-prefix").count() == 2
    assert [s["step"] for s in shown["steps"]] == [1, 2, 3, 4, 5]
    # Replayed steps asked no model: nothing to ask again there. The export (offline) has no buttons.
    assert await page.locator("#wb-viewer .wb-ask-form").evaluate_all("els => els.map(e => e.dataset.step)") == [
        "3", "4", "5"]
    export = (await asyncio.to_thread(http.get, f"/api/runs/{fork_id}/export", params={"format": "html"})).text
    assert "fork of run #" in export and 'class="wb-fork-btn"' not in export and 'class="wb-ask-form"' not in export
    # The parent lists its forks; the history says who is whose.
    await page.goto(f"{app.base}/?run={parent['id']}")
    forks = await until(lambda: page.locator("#wb-viewer .wb-forks .wb-fork").evaluate_all(
        "els => els.map(e => Number(e.dataset.run))"), what="the parent's forks", check=lambda v: fork_id in v)
    assert all(f != parent["id"] for f in forks)
    cells = await until(lambda: page.locator('#wb-history [role=gridcell][data-col="9"]').all_inner_texts(),
                        what="the lineage column", check=lambda v: f"fork of #{parent['id']} at 3" in
                        [x.strip() for x in v])
    assert any(re.fullmatch(r"\d+ forks?", x.strip()) for x in cells)
    # The compare view aligns the fork with its parent, the replayed steps marked.
    await page.goto(f"{app.base}/?compare={parent['id']},{fork_id}")
    rows = await until(lambda: page.locator("#wb-compare tr.wb-cmp-step").evaluate_all(
        "els => els.map(e => e.className)"), what="the comparison", check=lambda v: len(v) == 5)
    assert ["wb-replayed" in r for r in rows] == [True, True, False, False, False]
    assert all("wb-same" in r for r in rows)
    text = await page.locator("#wb-compare .wb-compare p").first.inner_text()
    assert text.startswith(f"Run #{fork_id} is a fork of run #{parent['id']} at step 3: steps before it were replayed")
    stored = (await asyncio.to_thread(http.get, f"/api/runs/{fork_id}")).json()
    assert (stored["parent_run_id"], stored["forked_at_step"]) == (parent["id"], 3)
    await page.close()


# ------------------------------------------------------------------ 4. the Gradio API
def test_the_gradio_api_asks_again_and_forks(app: App, http: httpx.Client, parent: dict[str, Any]) -> None:
    client = Client(app.base + "/", verbose=False)
    answer = client.predict(parent["id"], 3, "", "", SEARCH_INSTEAD, None, None, 1, api_name="/ask_step")
    assert answer["step"] == 3 and answer["replies"][0]["differences"] and answer["same"] == 0
    forked = client.predict(prompt=cart_prompt(f"{app.base}/demo/", short=True), model=MODEL,
                            fork=json.dumps({"run_id": parent["id"], "step": 4}), api_name="/run")
    assert forked["status"] == "success" and (forked["parent_run_id"], forked["forked_at_step"]) == (parent["id"], 4)
    assert [i["executed_by"] for i in forked["history"]] == ["replay"] * 3 + ["agent"] * 2
    with pytest.raises(Exception, match="has no step 9"):
        client.predict(parent["id"], 9, api_name="/ask_step")


# ------------------------------------------------------------------ 5. the Python API (no run log)
async def test_the_python_api_forks_a_response(browser: Any, demo_url: str, fake_llm: FakeLLM) -> None:
    fake_llm.reset(cart_agent)
    request = RunRequest(prompt=cart_prompt(demo_url + "/index.html", short=True), model=MODEL)
    first = await arun(request, browser=browser)
    assert first.status == "success" and len(first.history) == 5
    parent_sent = {step_of(b): b for b in fake_llm.requests}
    fake_llm.reset(cart_agent)
    child = await arun(request.model_copy(update={"extend_system_message": BRIEF}), browser=browser,
                       fork=fork_from(first, step=4))
    assert child.status == "success" and child.forked_at_step == 4 and child.parent_run_id is None
    assert [step_of(b) for b in fake_llm.requests] == [4, 5]
    assert previous_steps(fake_llm.requests[0]) == previous_steps(parent_sent[4])
    with pytest.raises(ValueError, match="fork.step"):
        fork_from(first, step=6)
    with pytest.raises(ValueError, match="fork: the engine has no run log"):
        await arun(RunRequest(prompt="abc", fork={"run_id": 3, "step": 2}), browser=browser)


def test_a_fork_of_a_run_that_typed_a_secret_needs_its_value_again() -> None:
    typed = ActionResult(name="input", params={"index": 3, "text": "<secret>password</secret>"}, success=True,
                         locators={"css": "#pw"})
    parent = RunResponse(task_run_id=7, history=[HistoryItem(description="log in", step=1, actions=[typed]),
                                                 HistoryItem(description="read", step=2)])
    prefix = fork_from(parent, step=2)
    assert prefix.secret_names() == ["password"]
    assert prefix.missing_secrets(RunRequest(prompt="abc")) == ["password"]
    assert prefix.missing_secrets(RunRequest(prompt="abc", sensitive_data={"password": "hunter2!"})) == []
    assert prefix.missing_secrets(RunRequest(prompt="abc", sensitive_data={"https://*.example.com": {"password": "hunter2!"}})) == []
    assert fork_from(parent, step=1).secret_names() == []  # nothing replayed, nothing typed


def test_playground_calls_stay_out_of_the_run_s_totals_and_views(tmp_path: Any) -> None:
    """Through a real run log: a question's calls sit at the step (a seq of their own, below the steps'), listed
    by get_playground, and counted by no total, trace list or view of the run's own calls."""
    store = Store(tmp_path / "data", snapshot_interval_s=None)
    try:
        request = RunRequest(prompt="find the cable", model=MODEL)
        run_id = store.create_run(store.create_task(request), request)
        own = LLMCall(model=f"openai/{MODEL}", provider="openai", started_at=utcnow(), latency_ms=100.0,
                      input_tokens=50, output_tokens=5, cost_usd=0.01)
        trace = LLMTrace(call=own, system_prompt="sys", messages=[{"role": "user", "content": "page"}])
        store.record(run_id, StepFinished(item=HistoryItem(description="look", step=1, llm_calls=[own]),
                                          traces=[trace]))
        store.record(run_id, RunFinished(response=RunResponse(status="success", stop_reason="done", is_done=True,
                                                              is_successful=True, history=[])))
        before = store.get_run(run_id)
        asked = own.model_copy(update={"purpose": "playground", "provider": "anthropic", "latency_ms": 5000.0,
                                       "model": "anthropic/claude", "cost_usd": 1.0, "input_tokens": 900})
        failed = asked.model_copy(update={"error": "server: boom", "cost_usd": None})
        assert store.record_playground(run_id, 1, [(asked, trace.model_copy(update={"call": asked})),
                                                   (failed, None)]) == -1
        assert store.record_playground(run_id, 1, [(asked, trace.model_copy(update={"call": asked}))]) == -2
        assert store.get_run(run_id) == before  # usage, cost, history: the run's own
        assert [t["purpose"] for t in store.get_traces(run_id)] == ["step"]
        assert [(c["seq"], c["idx"], c["logged"]) for c in store.get_playground(run_id, 1)] == [
            (-2, 0, True), (-1, 0, True), (-1, 1, False)]
        assert store.runs_summary()["cost_usd"] == pytest.approx(0.01)
        store.publish_snapshot()
        con = open_snapshot(tmp_path / "data")
        try:
            assert con.execute("SELECT count(*) FROM v_model_errors").fetchone()[0] == 0
            assert con.execute("SELECT llm_calls, cost_usd FROM v_runs").fetchall() == [(1, pytest.approx(0.01))]
            latency = an.cost_latency_by_model(con=con)
            assert latency.llm_latency_p50_ms.tolist() == [100.0]
            assert sorted(con.execute("SELECT purpose FROM v_llm_calls").fetchall()) == [
                ("playground",), ("playground",), ("playground",), ("step",)]
        finally:
            con.close()
    finally:
        store.close()


def test_the_step_s_screenshot_goes_along_when_the_original_call_had_one(tmp_path: Any) -> None:
    shot = tmp_path / "step-003.jpg"
    shot.write_bytes(b"\xff\xd8\xff\xe0 a jpeg")
    trace = {"step": 3, "logged": True, "messages": [
        {"role": "system", "content": "old"},
        {"role": "user", "content": [{"type": "text", "text": "the page"}, {"type": "image", "screenshot_step": 3}]}]}
    messages, image = rebuild_messages(trace, "new", shot)
    assert image and messages == [{"role": "system", "content": "new"}, {"role": "user", "content": [
        {"type": "text", "text": "the page"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4CBhIGpwZWc="}}]}]
    with pytest.raises(NotAskable, match="screenshot of step 3, which is no longer in the data folder"):
        rebuild_messages(trace, "new", tmp_path / "gone.jpg")
    text_only = {"messages": [{"role": "user", "content": "the page"}], "logged": True}
    assert rebuild_messages(text_only, "new", None) == ([{"role": "system", "content": "new"},
                                                         {"role": "user", "content": "the page"}], False)
    with pytest.raises(NotAskable, match="LOG_PROMPTS=0"):
        rebuild_messages({"messages": [], "logged": False}, "new", shot)


# ------------------------------------------------------------------ 6. LOG_PROMPTS=0: nothing to send again
def test_a_run_logged_without_its_messages_cannot_be_asked_again(app: App, http: httpx.Client) -> None:
    app.stop()
    app.env["LOG_PROMPTS"] = "0"
    app.start().ready()
    run = http.post("/api/runs", json={"prompt": cart_prompt(f"{app.base}/demo/", short=True), "model": MODEL,
                                       "max_steps": 1}).json()
    assert run["history"] and run["history"][0]["llm_calls"]
    refused = http.post(f"/api/runs/{run['task_run_id']}/steps/1/ask", json={})
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith("this step's messages were not kept (the run was logged with "
                                               "LOG_PROMPTS=0)")
