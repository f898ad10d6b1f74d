"""A replay's values (docs/workflows.md#the-values-a-replay-reads): values read from one item of a list read
together inside one item (or handed over, never a mixture), values in shadow roots and frames read again
with no model call, the new prompt said everywhere, and the request's model doing the healing.

Real Chromium, the demo shop and the workflow shop (its list and widget pages) over HTTP, the fake
OpenAI-compatible model (it records every request, the model named in each), and the real app over HTTP
for what the run log keeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agent.engine.loop import arun
from agent.models import RunFinished, RunRequest, RunResponse
from agent.testing.fakellm import FakeLLM, last_user_text
from agent.testing.workflow_site.script import (
    cheapest_agent,
    cheapest_prompt,
    find_prompt,
    list_agent,
    list_prompt,
    order_prompt,
    shop_agent,
    widget_agent,
    widget_prompt,
)
from agent.testing.workflow_site.shop import ShopServer
from agent.workflows.record import record_workflow
from agent.workflows.replay import replay

MODEL = "gpt-4o-mini"
OFF = 503  # the fake model "switched off": every request fails (and is counted)
A = dict(query="usb-c", qty=2, name="Ada Lovelace", email="ada@example.com", country="Germany")
B = dict(query="hdmi", qty=3, name="Grace Hopper", email="grace@example.com", country="France")


@pytest.fixture(scope="module")
def shop() -> Iterator[ShopServer]:
    server = ShopServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def base_site(shop: ShopServer) -> Iterator[None]:
    shop.variant = "base"
    yield
    shop.variant = "base"


async def record(prompt: str, agent: Any, fake: FakeLLM, browser: Any) -> tuple[RunRequest, dict[str, Any]]:
    """The scripted agent's run of `prompt`, and the workflow recorded from it."""
    fake.reset(agent)
    request = RunRequest(prompt=prompt, model=MODEL)
    response = await arun(request, browser=browser)
    assert response.status == "success", response.error
    return request, record_workflow(request, response)


async def replayed(request: RunRequest, doc: dict[str, Any], browser: Any) -> RunResponse:
    events = [e async for e in replay(request, doc, browser=browser)]
    assert isinstance(events[-1], RunFinished)
    return events[-1].response


def heal_tasks(fake: FakeLLM) -> list[str]:
    """The task each healing request gave the model (the first line of the prompt after 'Task:')."""
    return [m.group(1) for body in fake.requests
            if (m := re.search(r"(?:Overall task \(for context only\)|Task): (.*)", last_user_text(body)))]


# ------------------------------------------------------------------ one item, never a mixture
async def test_the_demo_shops_cheapest_cable_is_read_from_one_card_or_handed_over(demo_url: str, browser: Any,
                                                                                   fake_llm: FakeLLM) -> None:
    """The issue's case: "the cheapest USB-C cable" recorded (sorted by price, the first card's name and price),
    replayed with "Cable". The recorded product's name is found by its own id (now the second card), its price
    by its place (the first card): they are not read together, so the agent reads the result, right."""
    request, doc = await record(cheapest_prompt(demo_url, "USB-C"), cheapest_agent("USB-C"), fake_llm, browser)
    done = doc["steps"][-1]["actions"][0]
    assert done["params"]["text"] == "The cheapest is {{page:0}} at {{page:1}}."
    assert [v["item"]["group"] for v in done["locators"]["page_values"]] == [0, 0]
    assert done["locators"]["items"][0]["locators"]["tag"] == "li"

    fake_llm.reset(lambda body: OFF)  # the model down: an honest failure naming why, never a mixture
    cable = request.model_copy(update={"workflow_params": {"search_products": "Cable"}})
    failed = await replayed(cable, doc, browser)
    assert (failed.status, failed.stop_reason, failed.result) == ("failure", "model_error", None)
    assert ("could not be replayed or healed: the recorded run read 'USB-C to USB-C Cable 0.5 m' and '€5.49' from one item (a <li>) of a list; on "
            "this page they cannot be read together: their locators point at different items (its place in the "
            "list: item 1 of 7; its own locators: item 1 of 7; 'USB-C to USB-C Cable 0.5 m': item 2 of 7; "
            "'€5.49': item 1 of 7)") in failed.error

    fake_llm.reset(cheapest_agent("Cable"))
    healed = await replayed(cable, doc, browser)
    assert (healed.status, healed.result, healed.healed_steps) == (
        "success", "The cheapest is Micro-USB Cable 1 m at €3.99.", 1)
    assert heal_tasks(fake_llm) == [cheapest_prompt(demo_url, "Cable")]  # the task with the new value

    fake_llm.reset(lambda body: OFF)  # the recorded product is not listed: the first card, no model call
    hdmi = await replayed(request.model_copy(update={"workflow_params": {"search_products": "HDMI"}}), doc, browser)
    assert (hdmi.status, hdmi.result, hdmi.usage.llm_calls) == (
        "success", "The cheapest is HDMI 2.1 Cable 2 m at €11.99.", 0)
    assert fake_llm.requests == []


@pytest.mark.parametrize("layout, cable", [
    # A product-specific id on each name (cards) or row (table) points at the recorded product, now second:
    # handed over. Without ids (nested sections) the first entry is read whole.
    ("cards", "healed"), ("table", "healed"), ("nested", "right"),
])
async def test_lists_tables_and_nested_entries_answer_from_one_item(shop: ShopServer, browser: Any,
                                                                    fake_llm: FakeLLM, layout: str,
                                                                    cable: str) -> None:
    request, doc = await record(list_prompt(shop.url, "hdmi", layout), list_agent(), fake_llm, browser)
    stock = " (92 left)" if layout == "table" else ""
    assert doc["steps"][-1]["actions"][0]["params"]["text"] == (
        "The cheapest is {{page:0}} at {{page:1}}" + (" ({{page:2}})" if stock else "") + ".")
    # The recorded product is not listed: every locator agrees on the first item; no model call.
    fake_llm.reset(lambda body: OFF)
    lightning = await replayed(RunRequest(prompt=list_prompt(shop.url, "lightning", layout), model=MODEL), doc,
                               browser)
    assert (lightning.status, lightning.result, lightning.healed_steps) == (
        "success", f"The cheapest is Lightning Cable 1 m at €9.49{' (97 left)' if stock else ''}.", 0)
    assert fake_llm.requests == []
    # The recorded product is listed second, the cheapest cable first.
    fake_llm.reset(list_agent())
    answer = await replayed(RunRequest(prompt=list_prompt(shop.url, "cable", layout), model=MODEL), doc, browser)
    assert (answer.status, answer.result) == (
        "success", f"The cheapest is USB-C Cable 1 m at €5.49{' (12 left)' if stock else ''}.")
    assert ("healed" if answer.healed_steps else "right") == cable
    assert len(fake_llm.requests) == (1 if cable == "healed" else 0)


@pytest.mark.parametrize("layout", ["cards", "nested"])
async def test_the_only_item_left_is_found_at_its_recorded_place(shop: ShopServer, browser: Any, fake_llm: FakeLLM,
                                                                 layout: str) -> None:
    """Recorded as the first of several items, replayed where one item is left and ids and classes were renamed:
    its place (li[1] now li) still finds it, with no model call."""
    _, doc = await record(list_prompt(shop.url, "hdmi", layout), list_agent(), fake_llm, browser)
    shop.variant = "renamed"
    fake_llm.reset(lambda body: OFF)
    answer = await replayed(RunRequest(prompt=list_prompt(shop.url, "lightning", layout), model=MODEL), doc, browser)
    assert (answer.status, answer.error, answer.result, answer.usage.llm_calls) == (
        "success", None, "The cheapest is Lightning Cable 1 m at €9.49.", 0)


async def test_a_reordered_list_with_the_same_values_is_handed_over(shop: ShopServer, browser: Any,
                                                                    fake_llm: FakeLLM) -> None:
    """The same search, the list now most expensive first: the recorded product (by its id) is last, the first
    place holds another one; the replay cannot know which the task meant and lets the agent answer."""
    request, doc = await record(list_prompt(shop.url, "usb-c", "cards"), list_agent(), fake_llm, browser)
    shop.variant = "reordered"
    fake_llm.reset(list_agent())
    answer = await replayed(request, doc, browser)
    assert (answer.status, answer.result, answer.healed_steps) == (
        "success", "The cheapest is USB-C Cable 1 m at €5.49.", 1)


@pytest.mark.parametrize("layout", ["table", "cards"])
async def test_the_item_showing_the_new_value_is_the_one_read(shop: ShopServer, browser: Any, fake_llm: FakeLLM,
                                                             layout: str) -> None:
    """"Find HDMI 2.1 Cable 2 m and report its price": the name is a parameter the item showed (its key), so a
    replay with another name reads the price in the item that shows that name, wherever it is listed."""
    request, doc = await record(find_prompt(shop.url, "HDMI 2.1 Cable 2 m", layout), list_agent(), fake_llm, browser)
    done = doc["steps"][-1]["actions"][0]
    assert done["params"]["text"].startswith("{{find}} costs {{page:0}}")
    assert [k["param"] for k in done["locators"]["items"][0]["keys"]] == ["find"]
    fake_llm.reset(lambda body: OFF)
    for name, price, left in (("Lightning Cable 1 m", "€9.49", "97 left"), ("USB-C Cable 1 m", "€5.49", "12 left")):
        answer = await replayed(RunRequest(prompt=find_prompt(shop.url, name, layout), model=MODEL), doc, browser)
        assert (answer.status, answer.result, answer.healed_steps) == (
            "success", f"{name} costs {price}{f' ({left})' if layout == 'table' else ''}.", 0)
    assert fake_llm.requests == []


async def test_values_in_shadow_roots_and_frames_are_read_again_without_a_model(shop: ShopServer, browser: Any,
                                                                                fake_llm: FakeLLM) -> None:
    """A name in an open shadow root, a price in a closed one, the stock in a same-origin iframe."""
    request, doc = await record(widget_prompt(shop.url, "usbc-1m"), widget_agent(), fake_llm, browser)
    values = doc["steps"][-1]["actions"][0]["locators"]["page_values"]
    assert [(v["example"], v["locators"]["shadow"], v["locators"]["frame"]) for v in values] == [
        ("USB-C Cable 1 m", True, []), ("€5.49", True, []), ("12 left", False, ["#stock-frame"])]
    fake_llm.reset(lambda body: OFF)
    answer = await replayed(RunRequest(prompt=widget_prompt(shop.url, "hdmi-2m"), model=MODEL), doc, browser)
    assert (answer.status, answer.error, answer.result, answer.usage.llm_calls) == (
        "success", None, "HDMI 2.1 Cable 2 m costs €7.99; 92 left.", 0)
    assert fake_llm.requests == []


# ------------------------------------------------------------------ the new prompt, the request's model (the app)
@pytest.fixture(scope="module")
def app_model() -> Iterator[FakeLLM]:
    fake = FakeLLM(shop_agent(**A))
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def app(app_model: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.apphelpers import App

    server = App(tmp_path_factory.mktemp("values") / "data",
                 {"OPENAI_BASE_URL": app_model.url, "OPENAI_API_KEY": "sk-test-not-a-real-key"}).start()
    try:
        yield server.ready()
    finally:
        server.stop()


@pytest.mark.slow
def test_a_replay_with_new_values_says_them_everywhere_and_heals_on_the_requests_model(
        app: Any, app_model: FakeLLM, shop: ShopServer) -> None:
    """Replayed as the Workflows section does (the recorded prompt, new workflow_params) on a redesigned shop:
    the run is logged, searched for and healed under the prompt with the new values, and every healing call
    asks the model the request names."""
    recorded = order_prompt(shop.url, **A)
    with httpx.Client(base_url=app.base, timeout=180) as http:
        app_model.reset(shop_agent(**A))
        agent_run = http.post("/api/runs", json={"prompt": recorded, "model": MODEL, "start_url": shop.url + "/"})
        assert agent_run.json()["status"] == "success", agent_run.text
        wid = http.post(f"/api/runs/{agent_run.json()['task_run_id']}/workflow").json()["id"]
        shop.variant = "redesign"
        app_model.reset(shop_agent(**B))
        values = {"search_products": "hdmi", "qty": 3, "name": "Grace Hopper", "email": "grace@example.com",
                  "country": "France"}
        run = http.post("/api/runs", json={"prompt": recorded, "model": "gpt-4.1-nano", "use_cached_workflow": True,
                                           "workflow_id": wid, "workflow_params": values}).json()
        assert (run["status"], run["healed_steps"]) == ("success", 3), run["error"]
        new_prompt = order_prompt(shop.url, **B)
        assert run["notes"] == ["the agent that healed steps 2, 4, 6 ran on openai model 'gpt-4.1-nano', "
                                "the model this request names"]
        assert {body["model"] for body in app_model.requests} == {"gpt-4.1-nano"}
        assert heal_tasks(app_model) == [new_prompt] * len(app_model.requests)
        # The run log keeps the prompt with the new values: the run's request, the history and its search.
        stored = http.get(f"/api/runs/{run['task_run_id']}/export").json()["request"]
        assert (stored["prompt"], stored["model"]) == (new_prompt, "gpt-4.1-nano")
        found = http.get("/api/runs", params={"q": "Grace Hopper"}).json()["runs"]
        assert [(r["id"], r["prompt"]) for r in found] == [(run["task_run_id"], new_prompt)]
        assert run["task_run_id"] not in [r["id"] for r in http.get("/api/runs", params={"q": "Ada"}).json()["runs"]]
