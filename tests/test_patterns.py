"""Hard but common page patterns, driven through the real engine by a model that reads only the observation.

Each page under tests/site is the realistic version of a pattern (a cookie wall over the page, a
hover menu, a keyup-filtered table, nested closed shadow roots around an iframe, a styled checkbox,
an infinite feed, an autocomplete, a contenteditable editor, date and range inputs). The fake model
picks indices from the observation text, as a model would (agent/testing/fakellm.py `find_index`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.engine.browser import Browser
from agent.engine.loop import stream
from agent.experiments.miniwob import REWARD_JS, SETUP_JS, html_dir
from agent.models import PageChecked, RunFinished, RunResponse
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply
from agent.testing.sites import serve_dir

Step = Callable[[str, dict[str, Any]], Any]


def model(*rules: tuple[Callable[[str], bool], Step]) -> Callable[[dict[str, Any]], Any]:
    """A model that answers with the first rule whose condition holds for the observation."""

    def handler(body: dict[str, Any]) -> Any:
        page = last_user_text(body)
        for condition, act in rules:
            if condition(page):
                return act(page, body)
        return reply("Nothing to do", call("done", text="stuck", success=False))

    return handler


async def run(fake: FakeLLM, browser: Browser, url: str, handler: Any, *, events: list[Any] | None = None,
              **options: Any) -> RunResponse:
    fake.handler = handler
    seen = [e async for e in stream({"prompt": "Do the task on this page", "model": "gpt-4.1-mini",
                                     "start_url": url}, browser=browser, **options)]
    if events is not None:
        events.extend(seen)
    assert isinstance(seen[-1], RunFinished)
    return seen[-1].response


def actions(response: RunResponse) -> list[tuple[str, dict[str, Any], str | None, str | None]]:
    return [(a.name, a.params, a.extracted_content, a.error) for h in response.history for a in h.actions]


async def test_cookie_wall_blocks_clicks_until_accepted(browser: Browser, site_url: str, fake_llm: FakeLLM) -> None:
    handler = model(
        (lambda p: "1 item in cart" in p, lambda p, b: reply("Added", call("done", text="added", success=True))),
        (lambda p: "covered by" in p and "<button id=accept>" in p,
         lambda p, b: reply("Accept the cookies", call("click", index=find_index(b, "Accept all")))),
        (lambda p: "Add to cart" in p, lambda p, b: reply("Add it", call("click", index=find_index(b, "Add to cart")))),
    )
    response = await run(fake_llm, browser, f"{site_url}/cookie-wall.html", handler)
    assert response.status == "success", response.error
    got = actions(response)
    assert [a[0] for a in got] == ["navigate", "click", "click", "click", "done"]
    assert got[1][3] == ("could not click [3]: it is covered by <div id=consent-wall class=cmp-overlay>We value "
                         "your privacy We and our partners use cookies to pe…; close or accept that first, "
                         "then click [3] again")
    assert got[2][2] == "clicked [5] 'Accept all'" and got[3][2] == "clicked [3] 'Add to cart'"
    first_look = last_user_text(fake_llm.requests[0])
    assert "[3]<button id=add covered>Add to cart" in first_look and "[5]<button id=accept>Accept all" in first_look
    assert "[3]<button id=add>Add to cart" in last_user_text(fake_llm.requests[2])  # the wall is gone


async def test_hover_opens_a_menu(browser: Browser, site_url: str, fake_llm: FakeLLM) -> None:
    handler = model(
        (lambda p: "Showing chargers" in p, lambda p, b: reply("Done", call("done", text="chargers", success=True))),
        (lambda p: "Chargers" in p, lambda p, b: reply("Open chargers", call("click", index=find_index(b, "Chargers")))),
        (lambda p: "Products" in p, lambda p, b: reply("Open the menu", call("hover", index=find_index(b, "Products")))),
    )
    response = await run(fake_llm, browser, f"{site_url}/hover-menu.html", handler)
    assert response.status == "success", response.error
    got = actions(response)
    assert [(a[0], a[2]) for a in got[1:3]] == [("hover", "hovered [1] 'Products'"), ("click", "clicked [4] 'Chargers'")]
    assert got[1][0] == "hover" and response.history[1].actions[0].locators["attributes"]["id"] == "products"
    assert "[3]<a href=#cables>Cables" in last_user_text(fake_llm.requests[1])


async def test_typing_fires_the_key_events_a_filter_listens_to(browser: Browser, site_url: str,
                                                               fake_llm: FakeLLM) -> None:
    handler = model(
        (lambda p: "1 of 200 parts" in p,
         lambda p, b: reply("Read it", call("done", text=next(line for line in p.split("<page")[1].splitlines()
                                                              if line.startswith("Part 137 |"))))),
        (lambda p: "200 of 200 parts" in p,
         lambda p, b: reply("Filter", call("input", index=find_index(b, "Filter parts"), text="Part 137"))),
    )
    response = await run(fake_llm, browser, f"{site_url}/filter-table.html", handler)
    assert (response.status, response.result) == ("success", "Part 137 | 21 | EUR 9.99"), response.error
    assert actions(response)[1][2] == "typed 'Part 137' into [1]"


async def test_nested_closed_shadow_roots_with_an_iframe(browser: Browser, site_url: str, fake_llm: FakeLLM) -> None:
    handler = model(
        (lambda p: "Saved nickname Ada" in p and "Fox avatar chosen" in p,
         lambda p, b: reply("Done", call("done", text="saved", success=True))),
        (lambda p: "Fox avatar chosen" in p,
         lambda p, b: reply("Save", call("click", index=find_index(b, "Save settings")))),
        (lambda p: "value=Ada" in p,
         lambda p, b: reply("Pick the fox", call("click", index=find_index(b, "Pick the fox avatar")))),
        (lambda p: "Nickname" in p,
         lambda p, b: reply("Name", call("input", index=find_index(b, "Nickname", tag="input"), text="Ada"))),
    )
    response = await run(fake_llm, browser, f"{site_url}/closed-shadow.html", handler)
    assert response.status == "success", response.error
    assert [a[0] for a in actions(response)] == ["navigate", "input", "click", "click", "done"]
    assert all(a[3] is None for a in actions(response))


async def test_styled_checkbox_is_clicked_through_its_label(browser: Browser, site_url: str, fake_llm: FakeLLM) -> None:
    handler = model(
        (lambda p: "Account created" in p, lambda p, b: reply("Done", call("done", text="created", success=True))),
        (lambda p: "checked" in p, lambda p, b: reply("Create", call("click", index=find_index(b, "Create account")))),
        (lambda p: "I agree" in p, lambda p, b: reply("Agree", call("click", index=find_index(b, "I agree", tag="input")))),
    )
    response = await run(fake_llm, browser, f"{site_url}/consent-form.html", handler)
    assert response.status == "success", response.error
    got = actions(response)
    assert got[1][2] == "clicked [2] 'I agree to the terms' (through its label)"
    assert '[2]<input id=terms name=terms type=checkbox label="I agree to the terms" checked>' in \
        last_user_text(fake_llm.requests[1])


async def test_content_appended_on_scroll_shows_in_the_next_observation(browser: Browser, site_url: str,
                                                                        fake_llm: FakeLLM) -> None:
    handler = model(
        (lambda p: "Story 17" in p,
         lambda p, b: reply("Found", call("done", text=p.split("Story 17: ")[1].splitlines()[1]))),
        (lambda p: "Story 1:" in p or "Story 5:" in p, lambda p, b: reply("More", call("scroll", down=True, pages=2))),
    )
    response = await run(fake_llm, browser, f"{site_url}/feed.html", handler, max_steps=4)
    assert (response.status, response.result) == ("success", "The winning robot sorted 42 parcels a minute."), \
        response.error
    assert [a[0] for a in actions(response)] == ["navigate", "scroll", "done"]  # one scroll was enough
    assert "Story 1: Harbour reopens" in last_user_text(fake_llm.requests[0])  # fetched after load, observed


async def test_autocomplete_suggestions_show_after_typing(browser: Browser, site_url: str, fake_llm: FakeLLM) -> None:
    handler = model(
        (lambda p: "Destination: Lisbon" in p, lambda p, b: reply("Done", call("done", text="Lisbon", success=True))),
        (lambda p: "role=option>Lisbon" in p,
         lambda p, b: reply("Pick", call("click", index=find_index(b, "Lisbon", tag="li")))),
        (lambda p: "No destination yet" in p,
         lambda p, b: reply("Type", call("input", index=find_index(b, "Destination", tag="input"), text="Lis"))),
    )
    response = await run(fake_llm, browser, f"{site_url}/autocomplete.html", handler)
    assert response.status == "success", response.error
    after_typing = last_user_text(fake_llm.requests[1])
    assert "[2]<li role=option>Lisbon" in after_typing and "[3]<li role=option>Lismore" in after_typing
    assert "expanded=true" in after_typing


async def test_contenteditable_editor_long_text_and_appending(browser: Browser, site_url: str,
                                                              fake_llm: FakeLLM) -> None:
    long_text = " ".join(f"word{i}" for i in range(300))  # 2,289 characters: inserted, then its tail keyed
    handler = model(
        (lambda p: "302 words (draft saved)" in p, lambda p, b: reply("Done", call("done", text="written"))),
        (lambda p: "300 words (draft saved)" in p,
         lambda p, b: reply("More", call("input", index=find_index(b, "Post body"), text=" the end", clear=False))),
        (lambda p: "0 words" in p, lambda p, b: reply("Write", call("input", index=find_index(b, "Post body"),
                                                                    text=long_text))),
    )
    response = await run(fake_llm, browser, f"{site_url}/compose.html", handler)
    assert response.status == "success", response.error
    got = actions(response)
    assert got[1][2] == f"typed {long_text!r} into [2]" and got[2][2] == "typed ' the end' into [2]"


async def test_date_and_range_inputs_take_values(browser: Browser, site_url: str, fake_llm: FakeLLM) -> None:
    handler = model(
        (lambda p: "Check-in 2030-06-07 for 5 guests" in p, lambda p, b: reply("Done", call("done", text="booked"))),
        (lambda p: "Nothing chosen" in p, lambda p, b: reply("Fill", call("input", index=find_index(b, "Check-in"),
                                                                          text="2030-06-07"),
                                                             call("input", index=find_index(b, "Guests"), text="5"))),
    )
    response = await run(fake_llm, browser, f"{site_url}/booking.html", handler)
    assert response.status == "success", response.error
    assert [a[2] for a in actions(response)][1:3] == ["typed '2030-06-07' into [1]", "typed '5' into [2]"]


@pytest.mark.parametrize(("text", "error"), [
    ("June 7th", "could not type into [1]: it did not take 'June 7th': a date field takes values like 2030-06-07"),
])
async def test_a_value_a_field_refuses_is_an_error(text: str, error: str, browser: Browser, site_url: str,
                                                   fake_llm: FakeLLM) -> None:
    handler = model((lambda p: "Nothing chosen" in p and "Malformed" not in p,
                     lambda p, b: reply("Fill", call("input", index=find_index(b, "Check-in"), text=text))))
    response = await run(fake_llm, browser, f"{site_url}/booking.html", handler, max_steps=2)
    assert actions(response)[1][3] == error


# The episodes of MiniWoB++'s click-test-2 whose button TWO lies over the centre of ONE but not over all
# of it, found by the page's own generator under the seeds the MiniWoB++ task set gives its repeats.
OVERLAPS_JS = """(n) => {
  const out = [];
  for (let r = 0; r < n && out.length < 2; r++) {
    Math.seedrandom('workbench-click-test-2-' + r);
    genProblem();
    const one = document.getElementById('subbtn').getBoundingClientRect();
    const two = document.getElementById('subbtn2').getBoundingClientRect();
    const cx = (one.left + one.right) / 2, cy = (one.top + one.bottom) / 2;
    const centre = two.left <= cx && cx <= two.right && two.top <= cy && cy <= two.bottom;
    const all = two.left <= one.left && two.right >= one.right && two.top <= one.top && two.bottom >= one.bottom;
    if (centre && !all) out.push(r);
  }
  return out;
}"""


@pytest.mark.skipif(html_dir() is None, reason="the miniwob package is not installed")
async def test_miniwob_click_test_2_button_one_is_clicked_where_it_shows(browser: Browser, fake_llm: FakeLLM) -> None:
    assert html_dir() is not None
    server, base = serve_dir(html_dir())
    url = f"{base}/miniwob/click-test-2.html"
    try:
        async with browser.session() as session:
            await session.page.goto(url, wait_until="load")
            repeats = await session.page.evaluate(OVERLAPS_JS, 300)
        assert repeats, "no episode puts TWO over ONE's centre"
        handler = model((lambda p: "Click button ONE" in p,
                         lambda p, b: reply("Click ONE", call("click", index=find_index(b, "ONE", tag="button")))))
        for repeat in repeats:
            setup = SETUP_JS.replace("{task}", "click-test-2").replace("{repeat}", str(repeat)) % {"ms": 300_000}
            events: list[Any] = []
            response = await run(fake_llm, browser, url, handler, events=events, setup_script=setup,
                                 check_page=REWARD_JS, max_steps=2)
            click = actions(response)[1]
            assert (click[0], click[3]) == ("click", None), (repeat, click)
            reward = next(e for e in events if isinstance(e, PageChecked))
            assert reward.value == 1.0, (repeat, reward)  # the page's own reward: ONE was clicked, not TWO
    finally:
        server.shutdown()
