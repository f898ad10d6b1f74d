"""Cached workflows end to end: record a real agent run, replay it without the model, heal a changed page.

Real Chromium, the workflow shop (tests/workflow_site) served over HTTP with page variants, the
demo shop, the fake OpenAI-compatible model (it counts every request), real DuckDB stores.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
import pytest_asyncio

from agent.engine.loop import arun
from agent.models import (
    ActionResult,
    HistoryItem,
    RunFinished,
    RunRequest,
    RunResponse,
    StepFinished,
    Usage,
    WorkflowHealed,
)
from agent.testing.fakellm import FakeLLM, call, last_user_text, reply
from agent.testing.sites import serve_dir
from agent.testing.workflow_site.script import demo_agent, order_answer, order_prompt, shop_agent
from agent.testing.workflow_site.shop import DATA_VARIANTS, ShopServer, expected_order
from agent.workflows.document import NotRecordable, Parameter, WorkflowError, edit_workflow, load_workflow
from agent.workflows.locate import FIRST_MARK
from agent.workflows.params import match_prompt
from agent.workflows.record import record_workflow
from agent.workflows.replay import replay
from agent.workflows.template import render, render_url, url_matches
from tests.conftest import DEMO

A = dict(query="usb-c", qty=2, name="Ada Lovelace", email="ada@example.com", country="Germany")
B = dict(query="hdmi", qty=3, name="Grace Hopper", email="grace@example.com", country="France")
MODEL = "gpt-4o-mini"
OFF = 503  # the fake model "switched off": every request fails (and is counted)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def shop() -> Iterator[ShopServer]:
    """The workflow shop on 127.0.0.1; tests set `.variant`."""
    server = ShopServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def base_site(shop: ShopServer) -> Iterator[None]:
    shop.variant = "base"
    yield
    shop.variant = "base"


def order_request(shop: ShopServer, values: dict[str, Any], **extra: Any) -> RunRequest:
    return RunRequest(prompt=order_prompt(shop.url, **values), model=MODEL, **extra)


async def record_order(shop: ShopServer, browser: Any, *, json_result: bool = False,
                       style: str = "plain") -> tuple[RunRequest, RunResponse]:
    """The agent (scripted fake model) orders with the values of A; returns its request and response."""
    fake = FakeLLM(shop_agent(**A, json_result=json_result, style=style))
    mp = pytest.MonkeyPatch()
    mp.setenv("OPENAI_BASE_URL", fake.url)
    mp.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    schema = {"type": "object", "required": ["order", "product", "quantity", "total", "name"],
              "properties": {"order": {"type": "string"}, "product": {"type": "string"},
                             "quantity": {"type": "integer"}, "total": {"type": "number"}, "name": {"type": "string"}}}
    try:
        request = order_request(shop, A, start_url=shop.url + "/", json_schema=schema if json_result else None)
        response = await arun(request, browser=browser)
    finally:
        mp.undo()
        fake.close()
    assert response.status == "success", response.error
    return request, response


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def recorded(shop: ShopServer, browser: Any) -> tuple[RunRequest, RunResponse, dict[str, Any]]:
    """The order run of A and the workflow recorded from it."""
    request, response = await record_order(shop, browser)
    return request, response, record_workflow(request, response, name="Order the cheapest product")


async def run_replay(request: RunRequest, workflow: dict[str, Any], browser: Any, **kwargs: Any) -> tuple[list[Any], RunFinished]:
    events = [e async for e in replay(request, workflow, browser=browser, **kwargs)]
    assert isinstance(events[-1], RunFinished)
    return events, events[-1]


def healed_of(events: list[Any]) -> dict[str, Any] | None:
    """The healed version a replay handed to the run service (just before its end), if any."""
    healed = [e.document for e in events if isinstance(e, WorkflowHealed)]
    assert len(healed) <= 1 and (not healed or isinstance(events[-2], WorkflowHealed))
    return healed[0] if healed else None


def expected_text(shop: ShopServer, values: dict[str, Any], product: str, item: str, price: float) -> str:
    number = shop.order_number(f"{item}:{values['qty']}", values["name"], values["email"], values["country"])
    return (f"Order {number} placed: {values['qty']} × {product} for {values['name']}, "
            f"total €{values['qty'] * price:.2f}.")


def who(response: RunResponse) -> list[str]:
    return [item.executed_by for item in response.history]


def marks_shown(history: list[Any]) -> list[str]:
    """Every place a replay's internal element mark (numbered from FIRST_MARK) shows in a history: an `index`
    parameter, a number of that size in a parameter, or `[<mark>]` in a text the viewer and the log show."""
    found = []
    for item in history:
        texts = [("description", item.description)]
        for a in item.actions:
            texts += [(f"{a.name}.extracted_content", a.extracted_content), (f"{a.name}.error", a.error)]
            found += [f"{a.name}.params[{k}] = {v}" for k, v in a.params.items()
                      if k == "index" or (isinstance(v, int) and not isinstance(v, bool) and v >= FIRST_MARK)]
            texts += [(f"{a.name}.params[{k}]", v) for k, v in a.params.items() if isinstance(v, str)]
        found += [f"{where}: [{m}]" for where, text in texts if text
                  for m in re.findall(r"\[(\d+)\]", text) if int(m) >= FIRST_MARK]
    return found


# ------------------------------------------------------------------ templating and parameter values (no browser)
def test_values_substitute_literally_in_text_urls_and_json() -> None:
    nasty = 'O\'Brien "Z" \\1 \\\\ {{name}} {x} Zoë 😀 100%'
    values = {"name": nasty, "qty": 3, "flag": True, "price": 2.5}
    assert render("Hi {{name}}, {{ qty }} × {{unknown}}", values) == f"Hi {nasty}, 3 × {{{{unknown}}}}"
    assert render({"who": "{{name}}", "n": "{{qty}}", "f": "{{flag}}", "list": ["{{price}} €"]}, values, typed=True) == \
        {"who": nasty, "n": 3, "f": True, "list": ["2.5 €"]}
    url = render_url("http://shop/p/{{name}}?q={{name}}&n={{qty}}#{{qty}}", values)
    assert url.startswith("http://shop/p/O%27Brien%20%22Z%22%20%5C1%20")
    assert url_matches(render_url("http://shop/search?q={{name}}&sort=*", values),
                       "http://shop/search?" + urlencode({"sort": "price", "q": nasty}))
    assert url_matches(render_url("http://shop/search?q={{name}}", values), "http://shop/search?q=" + quote(nasty, safe=""))
    assert not url_matches("http://shop/search?q=a", "http://shop/search?q=b")
    assert url_matches("http://shop/product?id=*", "http://shop/product?id=hdmi-2m&x=1")
    assert not url_matches("http://shop/product?id=*", "http://other/product?id=1")


def test_values_read_from_a_new_prompt_without_a_model() -> None:
    params = [Parameter(name="query", example="usb-c"), Parameter(name="qty", type="integer", example=2),
              Parameter(name="name", example="Ada Lovelace")]
    recorded = "Buy 2 of the cheapest usb-c cables for Ada Lovelace, please"
    assert match_prompt(recorded, params, "Buy 3 of the cheapest hdmi cables for Grace Hopper, please") == \
        {"qty": "3", "query": "hdmi", "name": "Grace Hopper"}
    assert match_prompt(recorded, params, "buy  10 of the CHEAPEST lightning 2m cables for Zoë O'Brien, please!") == \
        {"qty": "10", "query": "lightning 2m", "name": "Zoë O'Brien"}
    # Reworded around the values: the word alignment still finds them.
    assert match_prompt(recorded, params, "Could you buy 4 of the cheapest hdmi cables for Alan Turing") == \
        {"qty": "4", "query": "hdmi", "name": "Alan Turing"}
    assert match_prompt(recorded, params, "something else entirely") == {}


def test_what_the_agent_read_off_a_page_is_a_page_value_in_any_case_or_spacing() -> None:
    """The tracing rules on a final page's element texts and an earlier page's text (no browser needed)."""
    from agent.engine.provenance import _Tracer

    final = [("Order number: WS-ABCDEFGH", False), ("WS-ABCDEFGH", True), ("Thank you, Ada Lovelace!", False),
             ("Ada Lovelace", True), ("2 × USB-C Cable 1 m", False), ("2", True), ("USB-C Cable 1 m", True),
             ("Total: €10.98", False), ("€10.98", True), ("Status: Confirmed.", False), ("Confirmed.", True)]
    earlier = [(3, "[7]<a href=/p?id=1>Braided Cable 2 m\nPrice: €12.99\nSKU: AB-XY")]
    tracer = _Tracer(final, earlier)
    template = tracer.text("Order WS-ABCDEFGH placed: 2 × “USB-C CABLE 1 M” for Ada  Lovelace, total €10.98, "
                           "status confirmed; it was braided cable 2 m before, sku ab-xy, all in 3 steps.")
    assert template == ("Order {{page:0}} placed: {{page:1}} × “{{page:2}}” for {{page:3}}, total {{page:4}}, "
                        "status {{page:5}}; it was {{page:6}} before, sku {{page:7}}, all in 3 steps.")
    assert [(v["example"], v["shown"], v["case"], v["before"], v["after"], v["step"]) for v in tracer.values] == [
        ("WS-ABCDEFGH", "WS-ABCDEFGH", None, "", "", None),
        ("2", "2", None, "", "", None),
        ("USB-C CABLE 1 M", "USB-C Cable 1 m", "upper", "", "", None),  # upper-cased, quoted
        ("Ada  Lovelace", "Ada Lovelace", None, "", "", None),  # other spacing
        ("€10.98", "€10.98", None, "", "", None),
        ("confirmed", "Confirmed", "lower", "", ".", None),  # lower-cased, the page's full stop trimmed
        ("braided cable 2 m", "Braided Cable 2 m", "lower", "", "", 3),  # seen on an earlier page only
        ("ab-xy", "AB-XY", "lower", "SKU: ", "", 3),
    ]
    json_tracer = _Tracer(final, [])
    assert json_tracer.walk({"order": "ws-abcdefgh", "total": 10.98, "qty": 2, "note": "paid"}) == {
        "order": "{{page:0}}", "total": "{{page:1}}", "qty": "{{page:2}}", "note": "paid"}
    assert [(v["example"], v["type"], v["before"]) for v in json_tracer.values] == [
        ("ws-abcdefgh", "string", ""), ("10.98", "number", "€"), ("2", "integer", "")]


def test_a_failed_run_is_not_recorded() -> None:
    request = RunRequest(prompt="find the cheapest usb-c cable")
    failed = RunResponse(task_run_id=7, status="failure", error="stopped after 3 consecutive failures", history=[
        HistoryItem(description="Search", actions=[ActionResult(name="input", params={"index": 1, "text": "usb-c"})])])
    with pytest.raises(NotRecordable) as err:
        record_workflow(request, failed)
    assert (err.value.field, err.value.message) == (
        "task_run_id", "run 7 ended with status 'failure': stopped after 3 consecutive failures; only a successful "
                       "run can be saved as a workflow")


def test_failed_and_noop_actions_are_left_out() -> None:
    request = RunRequest(prompt="Search the shop for usb-c")
    loc = {"tag": "input", "name": "Search", "attributes": {"name": "q"}}
    history = [
        HistoryItem(step=1, description="Look around", url="http://shop/", actions=[
            ActionResult(name="wait", params={"seconds": 1}, extracted_content="waited 1 s"),
            ActionResult(name="scroll", params={"down": True}, extracted_content="scrolled down but nothing moved (at the end)"),
            ActionResult(name="extract", params={"query": "prices"}, extracted_content="none"),
            ActionResult(name="click", params={"index": 9}, success=False, error="element [9] is not on the page any more"),
        ]),
        HistoryItem(step=2, description="Search for usb-c", url="http://shop/", actions=[
            ActionResult(name="input", params={"index": 2, "text": "usb-c"}, locators=loc, extracted_content="typed"),
            ActionResult(name="send_keys", params={"keys": "Enter"}, extracted_content="pressed Enter"),
        ]),
        HistoryItem(step=3, description="Report", url="http://shop/search?q=usb-c", actions=[
            ActionResult(name="done", params={"text": "Found 4 usb-c products", "success": True}, is_done=True,
                         success=True, extracted_content="Found 4 usb-c products")]),
    ]
    doc = record_workflow(request, RunResponse(status="success", is_done=True, is_successful=True, history=history))
    assert doc == {
        "format": "workbench-workflow/1", "name": "Search the shop for usb-c", "description": "",
        "prompt": "Search the shop for usb-c", "start_url": None, "result_format": "text", "json_schema": None,
        "parameters": [{"name": "search", "type": "string", "description": "typed into the 'Search' field",
                        "example": "usb-c"}],
        "steps": [
            {"description": "Search for {{search}}", "url": "http://shop/", "healed": False, "actions": [
                {"name": "input", "params": {"index": 2, "text": "{{search}}"}, "locators": loc,
                 "expect": {"url": None, "value": "{{search}}", "selected": None}},
                {"name": "send_keys", "params": {"keys": "Enter"}, "locators": None,
                 "expect": {"url": "http://shop/search?q={{search}}", "value": None, "selected": None}}]},
            {"description": "Report", "url": "http://shop/search?q=usb-c", "healed": False, "actions": [
                {"name": "done", "params": {"text": "Found 4 {{search}} products", "success": True},
                 "locators": None, "expect": None}]},
        ],
        "source_run_id": None,
    }


def test_each_actions_traits_are_said_with_it_and_recording_follows_them() -> None:
    """What the recorder and the replay used to know by lists of action names comes from each action's traits."""
    from agent.engine.actions import ACTIONS, ELEMENT_ACTIONS, NO_ACTION, traits_of
    from agent.workflows.document import URL_PARAMS, Expect
    from agent.workflows.record import action_expect, kept_action

    assert {n for n, a in ACTIONS.items() if a.traits.replay_noop} == {"wait", "dropdown_options", "extract",
                                                                       "find_text"}
    assert {n for n, a in ACTIONS.items() if "index" in a.params.model_fields} == ELEMENT_ACTIONS
    # The actions that fill a field (a replay checks the field holds the value; a heal's redone copy replaces them).
    assert {n for n, a in ACTIONS.items() if a.traits.fills_field} == {"input", "select_dropdown"}
    assert URL_PARAMS == {"navigate": ("url",)}
    assert traits_of(NO_ACTION) == traits_of("no-such-action") == type(traits_of("click"))()
    for name, action in ACTIONS.items():
        worked = ActionResult(name=name, success=True, extracted_content="did it")
        assert kept_action(worked) is not action.traits.replay_noop, name
        assert not kept_action(worked.model_copy(update={"success": False})), name
        for words in action.traits.void_when:  # e.g. a scroll that moved nothing
            assert not kept_action(worked.model_copy(update={"extracted_content": f"then {words} at all"})), name
    checks = [
        (ActionResult(name="input", params={"index": 1, "text": "usb-c"}), Expect(value="usb-c")),
        (ActionResult(name="input", params={"index": 1, "text": "-c", "clear": False}), None),
        (ActionResult(name="select_dropdown", params={"index": 1, "text": "Red"}), Expect(selected="Red")),
        (ActionResult(name="click", params={"index": 1}, extracted_content="clicked [1] 'Go'; now at http://shop/p/1"),
         Expect(url="http://shop/p/1")),
        (ActionResult(name="search", params={"query": "x"}, extracted_content="opened https://duckduckgo.com/"), None),
    ]
    for action, expected in checks:
        assert action_expect(action, action.params, {}) == expected, action.name


def test_edit_renames_parameters_everywhere_and_checks_names() -> None:
    request = RunRequest(prompt="Search the shop for usb-c")
    history = [
        HistoryItem(step=1, description="Search for usb-c", url="http://shop/", actions=[
            ActionResult(name="navigate", params={"url": "http://shop/search?q=usb-c"},
                         extracted_content="opened http://shop/search?q=usb-c")]),
        HistoryItem(step=2, description="Report", actions=[
            ActionResult(name="done", params={"text": "usb-c: 4 products"}, is_done=True, success=True)]),
    ]
    doc = record_workflow(request, RunResponse(status="success", is_done=True, is_successful=True, history=history))
    assert [p["name"] for p in doc["parameters"]] == ["query"]
    edited = edit_workflow(doc, name="Search", parameters={"query": {"name": "product", "description": "what to find"}})
    assert edited["name"] == "Search"
    assert edited["parameters"] == [{"name": "product", "type": "string", "description": "what to find", "example": "usb-c"}]
    assert edited["steps"][0]["actions"][0]["params"] == {"url": "http://shop/search?q={{product}}"}
    assert edited["steps"][0]["description"] == "Search for {{product}}"
    assert edited["steps"][1]["actions"][0]["params"]["text"] == "{{product}}: 4 products"
    for change, field in (({"nope": {"name": "x"}}, "parameters.nope"), ({"query": {"name": "1bad"}}, "parameters.query.name"),
                          ({"query": {"type": "date"}}, "parameters.query.type")):
        with pytest.raises(WorkflowError) as err:
            edit_workflow(doc, parameters=change)
        assert err.value.field == field
    typo = {**doc, "steps": [{**doc["steps"][0], "description": "Search for {{prodcut}}"}, doc["steps"][1]]}
    with pytest.raises(WorkflowError) as err:
        edit_workflow(typo, name="x")
    assert (err.value.field, err.value.message) == (
        "document.parameters",
        "the steps use {{prodcut}} but no such parameter is declared; declare it under parameters")
    assert load_workflow(typo)[0].steps[0].description == "Search for {{prodcut}}"  # a replay keeps it literally
    with pytest.raises(WorkflowError) as err:
        load_workflow({**doc, "steps": doc["steps"][:1]})
    assert err.value.field == "cached_workflow" and "last action of the last step must be `done`" in err.value.message


async def test_a_model_may_name_and_describe_the_parameters(fake_llm: FakeLLM) -> None:
    from agent.engine.llm import LLM
    from agent.workflows.params import describe_params

    request = RunRequest(prompt="Search the shop for usb-c")
    history = [
        HistoryItem(step=1, description="Search", url="http://shop/", actions=[
            ActionResult(name="navigate", params={"url": "http://shop/search?q=usb-c"}, extracted_content="opened")]),
        HistoryItem(step=2, description="Report", actions=[
            ActionResult(name="done", params={"text": "found usb-c"}, is_done=True, success=True)]),
    ]
    doc = record_workflow(request, RunResponse(status="success", is_done=True, is_successful=True, history=history))
    fake_llm.reset(lambda body: reply('{"query": {"name": "Product Kind", "description": "the kind of product"}}'))
    named, llm_call = await describe_params(LLM("openai", MODEL), doc)
    assert named["parameters"] == [{"name": "product_kind", "type": "string", "description": "the kind of product",
                                    "example": "usb-c"}]
    assert named["steps"][1]["actions"][0]["params"]["text"] == "found {{product_kind}}"
    assert (llm_call.purpose, len(fake_llm.requests)) == ("params", 1)
    assert "usb-c" in last_user_text(fake_llm.requests[0])


# ------------------------------------------------------------------ recording a real run
async def test_recorded_workflow_has_parameters_placeholders_and_checks(recorded: Any, shop: ShopServer) -> None:
    request, response, doc = recorded
    assert doc["parameters"] == [
        {"name": "search_products", "type": "string", "description": "typed into the 'Search products' field", "example": "usb-c"},
        {"name": "qty", "type": "integer", "description": "typed into the 'Quantity' field", "example": 2},
        {"name": "name", "type": "string", "description": "typed into the 'Full name' field", "example": "Ada Lovelace"},
        {"name": "email", "type": "string", "description": "typed into the 'Email' field", "example": "ada@example.com"},
        {"name": "country", "type": "string", "description": "option chosen in 'Country'", "example": "Germany"},
    ]
    assert [(s["description"], [a["name"] for a in s["actions"]]) for s in doc["steps"]] == [
        ("Open the start page", ["navigate"]),
        ("Search for {{search_products}}.", ["input", "click"]),
        ("Open the cheapest result.", ["click"]),
        ("Add {{qty}} to the cart.", ["input", "click"]),
        ("Go to the checkout.", ["click"]),
        ("Fill in the order form and place the order.", ["input", "input", "select_dropdown", "click"]),
        ("Report the order.", ["done"]),
    ]
    search = doc["steps"][1]["actions"]
    assert search[0] == {
        "name": "input", "params": {"index": 2, "text": "{{search_products}}"},
        "locators": {"xpath": "/html/body/header/form/input", "css": "#q", "role": "searchbox", "name": "Search products",
                     "text": "", "tag": "input", "frame": [], "shadow": False,
                     "attributes": {"id": "q", "name": "q", "type": "search", "placeholder": "Search products"}},
        "expect": {"url": None, "value": "{{search_products}}", "selected": None},
    }
    assert search[1]["expect"]["url"] == shop.url + "/search?q={{search_products}}"
    assert doc["steps"][2]["actions"][0]["expect"]["url"] == shop.url + "/product?id=*"
    form = doc["steps"][5]["actions"]
    assert [a["params"].get("text") for a in form] == ["{{name}}", "{{email}}", "{{country}}", None]
    assert form[2]["expect"] == {"url": None, "value": None, "selected": "{{country}}"}
    assert form[3]["expect"]["url"] == (shop.url + "/order?items=*&name={{name}}&email={{email}}&country={{country}}")
    number = shop.order_number("usbc-1m:2", "Ada Lovelace", "ada@example.com", "Germany")
    assert response.result == f"Order {number} placed: 2 × USB-C Cable 1 m for Ada Lovelace, total €10.98."
    # What the agent read off the page is a page reference (read again by a replay), never kept as text.
    done = doc["steps"][-1]["actions"][0]
    assert done["params"] == {
        "text": "Order {{page:0}} placed: {{qty}} × {{page:1}} for {{name}}, total {{page:2}}.", "success": True}
    values = done["locators"]["page_values"]
    assert [(v["example"], v["locators"]["css"], v["before"], v["after"], v["type"], v["step"]) for v in values] == [
        (number, "#order-number", "", "", "string", None),
        ("USB-C Cable 1 m", "#order-items > li > span:nth-of-type(2)", "", "", "string", None),
        ("€10.98", "#order-total", "", "", "string", None),
    ]
    assert doc["source_run_id"] is None and doc["start_url"] == shop.url + "/"
    assert load_workflow(json.dumps(doc))[0].model_dump(mode="json") == doc  # the JSON round-trips


# ------------------------------------------------------------------ replaying without the model
async def test_replay_with_other_values_makes_no_model_call(recorded: Any, shop: ShopServer, browser: Any,
                                                           fake_llm: FakeLLM) -> None:
    _, _, doc = recorded
    fake_llm.reset(lambda body: OFF)
    events, final = await run_replay(order_request(shop, B, use_cached_workflow=True), doc, browser, workflow_id=4)
    response = final.response
    assert fake_llm.requests == []
    assert [e.kind for e in events] == ["run_started"] + ["step_started", "step_finished"] * 7 + ["run_finished"]
    assert events[0].mode == "replay"
    assert (response.status, response.error, response.is_done, response.is_successful, response.mode,
            response.workflow_id, response.replayed_steps, response.healed_steps, response.usage) == \
        ("success", None, True, True, "replay", 4, 7, 0, Usage())
    assert response.result == expected_text(shop, B, "HDMI 2.1 Cable 2 m", "hdmi-2m", 7.99)
    assert who(response) == ["replay"] * 7
    actions = [a for item in response.history for a in item.actions]
    assert [(a.name, a.executed_by, a.error, a.success) for a in actions] == [
        (name, "replay", None, True) for name in
        ["navigate", "input", "click", "click", "input", "click", "click", "input", "input", "select_dropdown", "click", "done"]]
    assert [a.params.get("text") for a in actions if a.name in ("input", "select_dropdown")] == \
        ["hdmi", "3", "Grace Hopper", "grace@example.com", "France"]
    # Elements are shown by their label, never by the replay's internal marks (numbered from 1000001).
    assert [a.params.get("element") for a in actions if a.name in ("input", "click")][:3] == [
        "<input> 'Search products'", "<button> 'Search'", "<a> 'USB-C Cable 1 m'"]
    assert all("index" not in a.params for a in actions if a.locators)
    assert marks_shown(response.history) == []
    assert actions[1].extracted_content == "typed 'hdmi' into <input> 'Search products'"
    assert all(a.locators for a in actions if a.name in ("input", "click", "select_dropdown"))
    assert healed_of(events) is None
    assert response.history[-1].actions[-1].is_done


@pytest.mark.parametrize("variant, product, item, price", [
    ("renamed", "HDMI 2.1 Cable 2 m", "hdmi-2m", 7.99),
    ("wrapped", "HDMI 2.1 Cable 2 m", "hdmi-2m", 7.99),
    # Results listed most expensive first: "the cheapest result" was the first one when recorded,
    # so the replay opens the first one; the result says honestly which product was ordered.
    ("reordered", "HDMI Cable 5 m", "hdmi-5m", 15.49),
    ("reworded", "HDMI 2.1 Cable 2 m", "hdmi-2m", 7.99),
])
async def test_changed_pages_replay_untouched(recorded: Any, shop: ShopServer, browser: Any, fake_llm: FakeLLM,
                                              variant: str, product: str, item: str, price: float) -> None:
    _, _, doc = recorded
    shop.variant = variant
    fake_llm.reset(lambda body: OFF)
    events, final = await run_replay(order_request(shop, B, use_cached_workflow=True), doc, browser)
    response = final.response
    assert (response.status, response.error, response.replayed_steps, response.healed_steps) == ("success", None, 7, 0)
    assert response.result == expected_text(shop, B, product, item, price)
    assert fake_llm.requests == [] and healed_of(events) is None


async def test_redesigned_page_heals_then_the_new_version_replays_clean(recorded: Any, shop: ShopServer, browser: Any,
                                                                       fake_llm: FakeLLM) -> None:
    _, _, doc = recorded
    shop.variant = "redesign"  # ids, classes, wrappers and button wording all changed at once
    fake_llm.reset(shop_agent(**B))
    events, final = await run_replay(order_request(shop, B, use_cached_workflow=True,
                                                   extend_system_message="Keep the cart as it is."), doc, browser)
    response = final.response
    assert (response.status, response.error) == ("success", None)
    assert response.result == expected_text(shop, B, "HDMI 2.1 Cable 2 m", "hdmi-2m", 7.99)
    assert who(response) == ["replay", "heal", "replay", "heal", "replay", "heal", "replay"]
    # The agent that heals works under the run's own system prompt.
    assert {b["messages"][0]["content"].endswith("\n\nKeep the cart as it is.") for b in fake_llm.requests} == {True}
    assert (response.replayed_steps, response.healed_steps) == (4, 3)
    # Every model call was made by a heal and is counted: 2 per healed step (act, then done).
    assert len(fake_llm.requests) == response.usage.llm_calls == 6
    assert [c.purpose for item in response.history for c in item.llm_calls] == ["step"] * 6
    # Each healing call's trace rides on the step it healed, one per call, as the model got it.
    traces = [e.traces for e in events if isinstance(e, StepFinished)]
    assert [[t.call for t in ts] for ts in traces] == [item.llm_calls for item in response.history]
    assert [t.messages[-1]["content"] for ts in traces for t in ts] == [
        b["messages"][-1]["content"] for b in fake_llm.requests]
    search = response.history[1]
    assert [(a.name, a.executed_by) for a in search.actions] == [
        ("input", "replay"), ("click", "replay"), ("input", "heal"), ("click", "heal")]
    assert search.actions[1].error.startswith("no element matches <button> 'Search' well enough; closest: <button> 'Find'")
    healed = healed_of(events)
    assert healed is not None
    assert [s["healed"] for s in healed["steps"]] == [False, True, False, True, False, True, False]
    assert [a["locators"]["name"] for a in healed["steps"][1]["actions"]] == ["Search products", "Find"]
    assert healed["steps"][1]["actions"][0]["params"]["text"] == "{{search_products}}"
    assert healed["parameters"] == doc["parameters"]

    fake_llm.reset(lambda body: OFF)
    again_events, again = await run_replay(order_request(shop, A, use_cached_workflow=True), healed, browser)
    assert fake_llm.requests == []
    assert (again.response.status, again.response.replayed_steps, again.response.healed_steps) == ("success", 7, 0)
    assert again.response.result == expected_text(shop, A, "USB-C Cable 1 m", "usbc-1m", 5.49)
    assert healed_of(again_events) is None


# ------------------------------------------------------------------ page values are never stale
STYLES = {"text": ("plain", False), "echo": ("echo", False), "json": ("plain", True)}
_RECORDINGS: dict[str, tuple[RunRequest, dict[str, Any]]] = {}


async def recording(shop: ShopServer, browser: Any, kind: str) -> tuple[RunRequest, dict[str, Any]]:
    """The order run of A recorded as a workflow, once per kind of result: plain text; text echoing page
    values transformed (upper-cased and quoted product, lower-cased status word); JSON."""
    if kind not in _RECORDINGS:
        style, json_result = STYLES[kind]
        shop.variant = "base"
        request, response = await record_order(shop, browser, json_result=json_result, style=style)
        _RECORDINGS[kind] = request, record_workflow(request, response)
    return _RECORDINGS[kind]


def truth(values: dict[str, Any], variant: str, kind: str) -> Any:
    """What a correct replay answers: the scripted agent's report of the order the shop shows under `variant`."""
    style, json_result = STYLES[kind]
    return order_answer(expected_order(**values, variant=variant), style=style, json_result=json_result)


@pytest.mark.parametrize("kind", list(STYLES))
@pytest.mark.parametrize("variant", DATA_VARIANTS)
async def test_data_changes_are_read_again_never_kept(recorded: Any, shop: ShopServer, browser: Any,
                                                     fake_llm: FakeLLM, variant: str, kind: str) -> None:
    """New prices, product names, letter-only order codes, another status word: every value the recorded
    run read off the page (also upper-cased, quoted, lower-cased) is read again, never returned stale."""
    request, doc = await recording(shop, browser, kind)
    shop.variant = variant
    fake_llm.reset(lambda body: OFF)
    _, final = await run_replay(order_request(shop, B, use_cached_workflow=True, json_schema=request.json_schema),
                                doc, browser)
    response = final.response
    assert (response.status, response.error, response.healed_steps) == ("success", None, 0)
    assert response.result == truth(B, variant, kind)
    assert fake_llm.requests == []


async def test_a_healed_result_keeps_placeholders_and_page_references(shop: ShopServer, browser: Any,
                                                                      fake_llm: FakeLLM) -> None:
    """A new layout and renamed products at once: the result's elements are found neither by their recorded
    locators nor on the recorded page (its text changed), so the agent reads the result; the healed version
    keeps {{parameters}} and {{page:N}} references, never this replay's text, and replays A right again."""
    _, doc = await recording(shop, browser, "echo")
    variant = "redesign+names"
    shop.variant = variant
    fake_llm.reset(shop_agent(**B, style="echo"))
    events, final = await run_replay(order_request(shop, B, use_cached_workflow=True), doc, browser)
    response = final.response
    assert (response.status, response.error) == ("success", None)
    assert response.result == truth(B, variant, "echo")
    assert who(response)[-1] == "heal"
    healed = healed_of(events)
    assert healed is not None and healed["steps"][-1]["healed"] is True
    done = healed["steps"][-1]["actions"][0]
    assert done["params"]["text"] == ("Order {{page:0}} placed: {{qty}} × “{{page:1}}” for {{name}}, total {{page:2}}, "
                                      "status {{page:3}}.")
    literal = json.dumps(done["params"])
    for value in ("Grace", "HDMI", "LEAD", "23.97", expected_order(**B, variant=variant)["order"]):
        assert value not in literal

    fake_llm.reset(lambda body: OFF)
    _, again = await run_replay(order_request(shop, A, use_cached_workflow=True), healed, browser)
    assert (again.response.status, again.response.healed_steps) == ("success", 0)
    assert again.response.result == truth(A, variant, "echo")  # the original values give the original answer
    assert fake_llm.requests == []


async def test_a_step_nobody_can_do_fails_with_the_reason(recorded: Any, shop: ShopServer, browser: Any,
                                                          fake_llm: FakeLLM) -> None:
    _, _, doc = recorded
    shop.variant = "broken"  # the search form is gone
    fake_llm.reset(shop_agent(**B))
    events, final = await run_replay(order_request(shop, B, use_cached_workflow=True), doc, browser)
    response = final.response
    assert (response.status, response.is_successful, response.result) == ("failure", False, None)
    assert response.error == ("step 2 'Search for hdmi.' could not be replayed or healed: no element like "
                              "<input> 'Search products' on the page; healing: the agent reported that it could not "
                              "complete the task")
    assert who(response) == ["replay", "heal"]
    assert len(fake_llm.requests) == response.usage.llm_calls == 1
    assert healed_of(events) is None


async def test_without_a_model_a_changed_step_fails_saying_what_to_set(recorded: Any, shop: ShopServer, browser: Any,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, doc = recorded
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(var, raising=False)
    shop.variant = "redesign"
    _, final = await run_replay(order_request(shop, B, use_cached_workflow=True), doc, browser)
    assert final.response.status == "failure"
    assert final.response.error.startswith("step 2 'Search for hdmi.' could not be replayed or healed: "
                                           "no element matches <button> 'Search' well enough")
    assert final.response.error.endswith("healing: no model to heal with (No API key for provider 'openai': set "
                                         "OPENAI_API_KEY, or point OPENAI_BASE_URL at a local OpenAI-compatible server "
                                         "(vLLM, Ollama: http://localhost:11434/v1, llama.cpp))")


async def test_quotes_backslashes_braces_numbers_and_unicode_replay_literally(recorded: Any, shop: ShopServer,
                                                                             browser: Any, fake_llm: FakeLLM) -> None:
    _, _, doc = recorded
    odd = {"query": "hub", "qty": 4, "name": 'Zoë "Z" O\'Brien \\ {{name}} 😀', "email": "z.o'brien+1@example.com",
           "country": "Spain"}
    fake_llm.reset(lambda body: OFF)
    request = order_request(shop, A, use_cached_workflow=True, workflow_params={
        "search_products": "hub", "qty": "4", "name": odd["name"], "email": odd["email"], "country": "Spain"})
    _, final = await run_replay(request, doc, browser)
    response = final.response
    assert (response.status, response.error) == ("success", None)
    assert response.result == expected_text(shop, odd, "USB-C Hub 7-in-1", "usbc-hub", 34.00)
    typed = [a.params["text"] for item in response.history for a in item.actions if a.name == "input"]
    assert typed == ["hub", "4", odd["name"], odd["email"]]
    assert fake_llm.requests == []


async def test_bad_parameter_values_fail_naming_the_field(recorded: Any, shop: ShopServer, browser: Any) -> None:
    _, _, doc = recorded
    for params, message in (
        ({"colour": "red"}, "workflow_params.colour: unknown parameter; this workflow takes: search_products, qty, name, "
                            "email, country"),
        ({"qty": "lots"}, "workflow_params.qty: must be an integer, got 'lots'"),
        ({"qty": "2.5"}, "workflow_params.qty: must be a whole number, got '2.5'"),
    ):
        _, final = await run_replay(order_request(shop, B, use_cached_workflow=True, workflow_params=params), doc, browser)
        assert (final.response.status, final.response.error, final.response.history) == ("failure", message, [])


async def test_cancel_and_unusable_workflows_end_with_the_reason(recorded: Any, shop: ShopServer, browser: Any) -> None:
    import asyncio

    _, _, doc = recorded
    cancel = asyncio.Event()
    events = []
    async for event in replay(order_request(shop, B), doc, browser=browser, cancel=cancel):
        events.append(event)
        if event.kind == "step_finished":
            cancel.set()  # a viewer pressed "cancel" after the first step
    final = events[-1].response
    assert (final.status, final.error, len(final.history), final.replayed_steps) == ("failure", "cancelled", 1, 1)
    _, broken = await run_replay(order_request(shop, B), {**doc, "steps": doc["steps"][:2]}, browser)
    assert (broken.response.status, broken.response.error) == (
        "failure", "the workflow cannot be replayed: cached_workflow: the last action of the last step must be `done` "
                   "(the result template)")


async def test_values_come_from_one_model_call_when_the_prompt_is_reworded(recorded: Any, shop: ShopServer,
                                                                         browser: Any, fake_llm: FakeLLM) -> None:
    _, _, doc = recorded
    answer = {"search_products": "hdmi", "qty": 3, "name": "Grace Hopper", "email": "grace@example.com", "country": "France"}
    fake_llm.reset(lambda body: OFF if body.get("tools") else reply(f"```json\n{json.dumps(answer)}\n```"))
    request = RunRequest(prompt="Grace Hopper (grace@example.com, France) needs three hdmi cables; get the cheapest",
                         model=MODEL, use_cached_workflow=True)
    events, final = await run_replay(request, doc, browser)
    response = final.response
    assert (response.status, response.error) == ("success", None)
    assert response.result == expected_text(shop, B, "HDMI 2.1 Cable 2 m", "hdmi-2m", 7.99)
    assert len(fake_llm.requests) == response.usage.llm_calls == 1
    assert [c.purpose for c in response.history[0].llm_calls] == ["params"]
    assert "Grace Hopper (grace@example.com, France)" in last_user_text(fake_llm.requests[0])
    # The parameter call's trace rides on the first step: the question as sent, the answer as written.
    [trace] = next(e for e in events if isinstance(e, StepFinished)).traces
    assert (trace.call, trace.messages, trace.reply_text) == (
        response.history[0].llm_calls[0], fake_llm.requests[0]["messages"], f"```json\n{json.dumps(answer)}\n```")


async def test_json_result_is_read_again_and_validated(shop: ShopServer, browser: Any, fake_llm: FakeLLM,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    request, response = await record_order(shop, browser, json_result=True)
    doc = record_workflow(request, response)
    assert doc["result_format"] == "json"
    number = shop.order_number("usbc-1m:2", "Ada Lovelace", "ada@example.com", "Germany")
    assert doc["steps"][-1]["actions"][0]["params"]["data"] == {
        "order": "{{page:0}}", "product": "{{page:1}}", "quantity": "{{qty}}", "total": "{{page:2}}", "name": "{{name}}"}
    values = doc["steps"][-1]["actions"][0]["locators"]["page_values"]
    assert [(v["example"], v["before"], v["type"]) for v in values] == [
        (number, "", "string"), ("USB-C Cable 1 m", "", "string"), ("10.98", "€", "number")]
    fake_llm.reset(lambda body: OFF)
    _, final = await run_replay(order_request(shop, B, use_cached_workflow=True, json_schema=request.json_schema),
                                doc, browser)
    assert (final.response.status, final.response.error) == ("success", None)
    assert final.response.result == {
        "order": shop.order_number("hdmi-2m:3", "Grace Hopper", "grace@example.com", "France"),
        "product": "HDMI 2.1 Cable 2 m", "quantity": 3, "total": 23.97, "name": "Grace Hopper"}
    assert final.response.history[-1].actions[-1].data == final.response.result
    assert fake_llm.requests == []
    # A schema the recorded result cannot meet (and no model to ask): the replay says so instead of returning it.
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    strict = {"type": "object", "required": ["order", "eta"], "properties": {"eta": {"type": "string"}}}
    _, bad = await run_replay(order_request(shop, B, use_cached_workflow=True, json_schema=strict), doc, browser)
    assert bad.response.status == "failure"
    assert bad.response.error.startswith("step 7 'Report the order.' could not be replayed or healed: the result does "
                                         "not match the JSON schema: (root): 'eta' is a required property")


# ------------------------------------------------------------------ the bundled demo shop
async def test_demo_shop_search_recorded_and_replayed(browser: Any, fake_llm: FakeLLM) -> None:
    server, url = serve_dir(DEMO)
    try:
        fake_llm.reset(demo_agent("usb-c"))
        request = RunRequest(prompt=f"Search {url} for usb-c and give the first result's name and price", model=MODEL,
                             start_url=url + "/index.html")
        response = await arun(request, browser=browser)
        assert response.result == "The first usb-c result is USB-C to USB-C Cable 0.5 m at €5.49."
        doc = record_workflow(request, response)
        assert [s["description"] for s in doc["steps"]] == [
            "Open the start page", "Search for {{search_products}}.", "Open the first result.", "Report it."]
        fake_llm.reset(lambda body: OFF)
        _, final = await run_replay(RunRequest(prompt=f"Search {url} for keyboard and give the first result's name and "
                                                      "price", model=MODEL), doc, browser)
        assert (final.response.status, final.response.result, final.response.healed_steps) == \
            ("success", "The first keyboard result is Compact Mechanical Keyboard 75% at €69.00.", 0)
        assert fake_llm.requests == []
    finally:
        server.shutdown()


# ------------------------------------------------------------------ routes and the run service
async def test_routes_record_list_get_edit_and_replay_through_the_service(tmp_path: Path, shop: ShopServer,
                                                                          browser: Any, fake_llm: FakeLLM) -> None:
    from agent.log.store import Store
    from agent.service.api import create_api
    from agent.service.runs import RunService

    store = Store(tmp_path / "data", snapshot_interval_s=60)
    service = RunService(store, browser, data_dir=tmp_path / "data")
    try:
        fake_llm.reset(shop_agent(**A))
        agent_run = await service.run(order_request(shop, A, start_url=shop.url + "/"))
        assert agent_run.status == "success"
        app = create_api(service)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            saved = await client.post(f"/api/runs/{agent_run.task_run_id}/workflow", json={"name": "Order"})
            assert saved.status_code == 201, saved.text
            body = saved.json()
            wid = body["id"]
            assert (body["version"], body["document"]["name"], body["document"]["source_run_id"]) == (1, "Order", agent_run.task_run_id)
            assert saved.headers["location"] == f"/api/workflows/{wid}"
            assert store.get_task(agent_run.task_id)["workflow_id"] == wid
            # Saving the same run again (a double click, a retry) gives the same workflow, not a second one.
            again = await client.post(f"/api/runs/{agent_run.task_run_id}/workflow", json={"name": "Order"})
            assert again.status_code == 200 and (again.json()["id"], again.json()["created"]) == (wid, False)
            both = await asyncio.gather(*(service.save_run_as_workflow(agent_run.task_run_id) for _ in range(2)))
            assert [(w, v, created) for w, v, _doc, created in both] == [(wid, 1, False), (wid, 1, False)]

            listed = (await client.get("/api/workflows")).json()
            assert listed["total"] == 1
            assert {k: listed["workflows"][0][k] for k in ("id", "version", "versions", "name", "steps")} == \
                {"id": wid, "version": 1, "versions": 1, "name": "Order", "steps": 7}
            got = (await client.get(f"/api/workflows/{wid}")).json()
            assert got["document"] == body["document"]

            edited = await client.put(f"/api/workflows/{wid}", json={
                "name": "Order a product", "parameters": {"search_products": {"name": "product", "description": "what to buy"}}})
            assert edited.status_code == 200, edited.text
            assert edited.json()["version"] == 2
            doc2 = edited.json()["document"]
            assert doc2["steps"][1]["description"] == "Search for {{product}}."
            assert (await client.get(f"/api/workflows/{wid}", params={"version": 1})).json()["document"] == body["document"]

            problems = [
                (await client.post("/api/runs/999/workflow"), 404, {"detail": "run 999 not found"}),
                (await client.get("/api/workflows/999"), 404, {"detail": "workflow 999 not found"}),
                (await client.get(f"/api/workflows/{wid}", params={"version": 9}), 404,
                 {"detail": f"workflow {wid} has no version 9"}),
                (await client.put(f"/api/workflows/{wid}", json={"parameters": {"qty": {"name": "product"}}}), 422,
                 {"detail": [{"field": "parameters", "message": "two parameters would be called 'product'; pick different names"}]}),
                (await client.put(f"/api/workflows/{wid}", json={"colour": 1}), 422,
                 {"detail": [{"field": "colour", "message": "unknown field; use name, description, parameters or document"}]}),
                (await client.post(f"/api/runs/{agent_run.task_run_id}/workflow", content=b"{oops",
                                   headers={"content-type": "application/json"}), 422, None),
            ]
            for answer, status, detail in problems:
                assert answer.status_code == status, answer.text
                if detail is not None:
                    assert answer.json() == detail
            assert answer.json()["detail"][0]["field"] == "body"

        # Replay by id through the run service: no model call, the run is logged as a replay.
        fake_llm.reset(lambda body: OFF)
        replayed = await service.run(order_request(shop, B, use_cached_workflow=True, workflow_id=wid))
        assert (replayed.status, replayed.mode, replayed.workflow_id, replayed.replayed_steps) == ("success", "replay", wid, 7)
        assert replayed.result == expected_text(shop, B, "HDMI 2.1 Cable 2 m", "hdmi-2m", 7.99)
        stored = store.get_run(replayed.task_run_id)
        assert stored.model_dump(exclude={"duration_ms"}) == replayed.model_dump(exclude={"duration_ms"})
        assert fake_llm.requests == []

        missing = await service.run(order_request(shop, B, use_cached_workflow=True, workflow_id=999))
        assert (missing.status, missing.mode, missing.error) == (
            "failure", "replay", "workflow_id: workflow 999 not found; list the saved ones with GET /api/workflows")

        # A failed run cannot be saved.
        fake_llm.reset(lambda body: reply("Give up.", call("done", text="cannot", success=False)))
        failed = await service.run(RunRequest(prompt="do something impossible", model=MODEL))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            refused = await client.post(f"/api/runs/{failed.task_run_id}/workflow")
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["field"] == "task_run_id"

        # The task the workflow was saved from replays it when run again with use_cached_workflow;
        # on the redesigned page it heals, and the healed version is saved as version 3.
        shop.variant = "redesign"
        fake_llm.reset(shop_agent(**B))
        again = await service.run(order_request(shop, B, use_cached_workflow=True), task_id=agent_run.task_id)
        assert (again.status, again.mode, again.healed_steps, again.workflow_id) == ("success", "replay", 3, wid)
        latest = store.get_workflow(wid)
        assert (latest["version"], latest["healed_from_version"], latest["source_run_id"]) == (3, 2, again.task_run_id)
        assert [s["healed"] for s in latest["document"]["steps"]] == [False, True, False, True, False, True, False]
        assert latest["document"]["steps"][1]["description"] == "Search for {{product}}."

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            deleted = await client.delete(f"/api/workflows/{wid}")
            assert (deleted.status_code, deleted.json()) == (200, {"deleted": wid})
            assert (await client.get(f"/api/workflows/{wid}")).status_code == 404
            assert (await client.delete(f"/api/workflows/{wid}")).json() == {"detail": f"workflow {wid} not found"}
        assert store.get_task(agent_run.task_id)["workflow_id"] is None and store.list_workflows() == []
    finally:
        await service.close()
        store.close()


# ------------------------------------------------------------------ the real app over HTTP
@pytest.fixture(scope="module")
def app_model(shop: ShopServer) -> Iterator[FakeLLM]:
    """The fake model the app process talks to: it orders with A, and heals with B's values."""
    fake = FakeLLM(shop_agent(**A))
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def app(app_model: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`python app.py` on a free port with its own data folder, pointed at the fake model."""
    from tests.apphelpers import App

    server = App(tmp_path_factory.mktemp("wfapp") / "data",
                 {"OPENAI_BASE_URL": app_model.url, "OPENAI_API_KEY": "sk-test-not-a-real-key"}).start()
    try:
        yield server.ready()
    finally:
        server.stop()


def _agent_run_over_http(http: httpx.Client, shop: ShopServer, app_model: FakeLLM) -> tuple[dict[str, Any], dict[str, Any]]:
    app_model.reset(shop_agent(**A))
    body = {"prompt": order_prompt(shop.url, **A), "model": MODEL, "start_url": shop.url + "/"}
    answer = http.post("/api/runs", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "success", answer.json()["error"]
    return body, answer.json()


@pytest.mark.slow
def test_app_replays_an_inline_workflow_over_http(app: Any, shop: ShopServer, app_model: FakeLLM) -> None:
    with httpx.Client(base_url=app.base, timeout=180) as http:
        body, agent_run = _agent_run_over_http(http, shop, app_model)
        doc = record_workflow(RunRequest.model_validate(body), RunResponse.model_validate(agent_run))
        app_model.reset(lambda b: OFF)
        answer = http.post("/api/runs", json={"prompt": order_prompt(shop.url, **B), "model": MODEL,
                                              "use_cached_workflow": True, "cached_workflow": doc})
        assert answer.status_code == 200, answer.text
        replayed = answer.json()
        assert (replayed["status"], replayed["mode"], replayed["replayed_steps"], replayed["healed_steps"],
                replayed["usage"]["llm_calls"]) == ("success", "replay", 7, 0, 0)
        assert replayed["result"] == expected_text(shop, B, "HDMI 2.1 Cable 2 m", "hdmi-2m", 7.99)
        assert {a["executed_by"] for item in replayed["history"] for a in item["actions"]} == {"replay"}
        assert http.get(f"/api/runs/{replayed['task_run_id']}").json() == replayed
        assert app_model.requests == []


@pytest.mark.slow
def test_app_saves_replays_and_heals_a_workflow_by_id_over_http(app: Any, shop: ShopServer, app_model: FakeLLM) -> None:
    with httpx.Client(base_url=app.base, timeout=180) as http:
        _, agent_run = _agent_run_over_http(http, shop, app_model)
        saved = http.post(f"/api/runs/{agent_run['task_run_id']}/workflow", json={"name": "Order"})
        assert saved.status_code == 201, saved.text
        wid = saved.json()["id"]
        app_model.reset(lambda b: OFF)
        replayed = http.post("/api/runs", json={"prompt": order_prompt(shop.url, **B), "model": MODEL,
                                                "use_cached_workflow": True, "workflow_id": wid}).json()
        assert (replayed["status"], replayed["mode"], replayed["workflow_id"], replayed["usage"]["llm_calls"]) == \
            ("success", "replay", wid, 0)
        shop.variant = "redesign"
        app_model.reset(shop_agent(**B))
        healed = http.post("/api/runs", json={"prompt": order_prompt(shop.url, **B), "model": MODEL,
                                              "use_cached_workflow": True, "workflow_id": wid}).json()
        assert (healed["status"], healed["healed_steps"], healed["usage"]["llm_calls"]) == ("success", 3, 6)
        versions = http.get(f"/api/workflows/{wid}").json()
        assert (versions["version"], versions["healed_from_version"]) == (2, 1)
