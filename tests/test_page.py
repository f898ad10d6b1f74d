"""Page observation on real Chromium: rendered lines, stable indices, element lookup, locators, bounds."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import Page

from agent.engine import actions
from agent.engine.browser import BrowserSession
from agent.engine.page import (
    ElementNotFound,
    Observation,
    aim_at,
    cover_of,
    describe_element,
    find_element,
    observe,
    page_text,
)
from agent.engine.settle import LOAD_WAIT_MS, Settled, settle
from agent.testing.sites import serve_dir


@asynccontextmanager
async def opened(browser, url: str) -> AsyncIterator[Page]:
    """A fresh browser context with one tab at `url`."""
    async with browser.session() as session:
        await session.page.goto(url, wait_until="load")
        yield session.page


def lines(obs: Observation) -> list[str]:
    return obs.text.split("\n")


# ------------------------------------------------------------------ rendered pages
async def test_form_page_lines(browser, site_url):
    async with opened(browser, f"{site_url}/form.html") as page:
        obs = await observe(page)
    assert obs.text == "\n".join([
        "# Sign up",
        "Full name",
        '[1]<input id=full-name name=full_name placeholder="Ada Lovelace" label="Full name">',
        "Email",
        "[2]<input id=email name=email type=email label=Email>",
        "Password",
        "[3]<input id=password name=password type=password label=Password>",
        "Message",
        "[4]<textarea id=message name=message label=Message>",
        '[5]<input name=newsletter type=checkbox label="Send me the newsletter">',
        "Send me the newsletter",
        "Plan:",
        "[6]<input name=plan type=radio label=Basic value=basic checked>",
        "Basic",
        "[7]<input name=plan type=radio label=Pro value=pro>",
        "Pro",
        "T-shirt size",
        '[8]<select id=size name=size label="T-shirt size" value=Medium>',
        "[9]<button id=submit>Create account",
    ])
    assert obs.model_dump(exclude={"text", "elapsed_ms", "url"}) == {
        "title": "Sign-up form",
        "element_count": 9,
        "pixels_above": 0,
        "pixels_below": 0,
        "truncated": False,
    }
    assert obs.url == f"{site_url}/form.html"


async def test_links_page_lines(browser, site_url):
    async with opened(browser, f"{site_url}/links.html") as page:
        obs = await observe(page)
    assert obs.text == "\n".join([
        "# Links",
        "Read the",
        "[1]<a href=/page2.html>second page",
        "for details.",
        "[2]<a href=/index.html>Back to the index",
        "[3]<a id=deep-link href=/page2.html#part-two>Part two of page 2",
        "[4]<a href=/page2.html target=_blank>Open page 2 in a new tab",
        "[5]<a href=https://example.com/outside>An outside link",
    ])


async def test_icon_only_controls_get_labels(browser, site_url):
    async with opened(browser, f"{site_url}/icons.html") as page:
        obs = await observe(page)
    assert obs.text == "\n".join([
        "# Icon buttons",
        '[1]<button id=b-aria aria-label="Close dialog">×',
        "[2]<button id=b-title title=Settings>",
        '[3]<button id=b-img alt="Shopping cart">',
        '[4]<button id=b-svg title="Download file">',
        "[5]<button id=b-class icon=search>",
        "[6]<button id=b-fa icon=trash>",
        "[7]<div id=listener-div>Listener card",
        "[8]<span id=onclick-span>Onclick span",
        "[9]<div id=pointer-div>Pointer box with bold part",
        "Nothing clicked",
    ])


async def test_calendar_keeps_single_digit_days(browser, site_url):
    async with opened(browser, f"{site_url}/datepicker.html") as page:
        obs = await observe(page)
        assert lines(obs)[:5] == [
            "# Pick a date",
            "Arrival date",
            '[1]<input id=date name=date placeholder=YYYY-MM-DD label="Arrival date">',
            "June 2030",
            "[2]<div>1",
        ]
        assert lines(obs)[5:] == [f"[{day + 1}]<div>{day}" for day in range(2, 31)]
        # day 7 is [8]: clicking it fills the input, which the next observation shows
        await (await find_element(page, 8)).click()
        after = await observe(page)
    assert '[1]<input id=date name=date placeholder=YYYY-MM-DD label="Arrival date" value=2030-06-07>' in lines(after)


async def test_same_origin_iframe_is_walked_and_usable(browser, site_url):
    async with opened(browser, f"{site_url}/iframe.html") as page:
        obs = await observe(page)
        assert obs.text == "\n".join([
            "# Iframe host",
            "The frame below is on the same origin.",
            "Inside the frame",
            '[1]<input id=frame-input name=frame_input placeholder="Type in the frame">',
            "[2]<button id=frame-button>Frame button",
            "Frame button not clicked",
            "Text after the frame",
        ])
        await (await find_element(page, 1)).fill("hello frame")
        await (await find_element(page, 2)).click()
        after = await observe(page)
    assert "Frame button clicked with hello frame" in lines(after)
    assert '[1]<input id=frame-input name=frame_input placeholder="Type in the frame" value="hello frame">' in lines(after)


async def test_cross_origin_iframe_gets_a_line(browser, site_url, tmp_path):
    other = f"{site_url}/frame-inner.html"  # the site server is another origin than tmp_path's
    (tmp_path / "host.html").write_text(
        f'<!doctype html><title>Host</title><p>Before</p><iframe src="{other}"></iframe><p>After</p>'
    )
    server, url = serve_dir(tmp_path)
    try:
        async with opened(browser, f"{url}/host.html") as page:
            obs = await observe(page)
    finally:
        server.shutdown()
    assert obs.text == f"Before\n(cross-origin iframe: {other})\nAfter"
    assert obs.element_count == 0


async def test_open_shadow_root_is_walked_and_usable(browser, site_url):
    async with opened(browser, f"{site_url}/shadow.html") as page:
        obs = await observe(page)
        assert obs.text == "\n".join([
            "# Shadow DOM",
            "Shadow search box",
            '[1]<input id=shadow-query placeholder="Search inside shadow">',
            "[2]<button id=shadow-go>Go shadow",
            "Slotted hint text",
            "Nothing searched yet",
        ])
        await (await find_element(page, 1)).fill("deep")
        await (await find_element(page, 2)).click()
        after = await observe(page)
    assert "Searched for deep" in lines(after)


async def test_dropdowns_native_and_aria(browser, site_url):
    async with opened(browser, f"{site_url}/dropdown.html") as page:
        obs = await observe(page)
        assert obs.text == "\n".join([
            "# Dropdowns",
            "Fruit",
            "[1]<select id=fruit name=fruit label=Fruit value=Apple>",
            "Color",
            "[2]<input id=color role=combobox label=Color expanded=false>",
            "No color chosen",
        ])
        await (await find_element(page, 1)).select_option(label="Cherry")
        await (await find_element(page, 2)).click()
        opened_list = await observe(page)
        assert opened_list.text == "\n".join([
            "# Dropdowns",
            "Fruit",
            "[1]<select id=fruit name=fruit label=Fruit value=Cherry>",
            "Color",
            "[2]<input id=color role=combobox label=Color expanded=true>",
            "[3]<li id=opt-red role=option>Red",
            "[4]<li id=opt-green role=option>Green",
            "[5]<li id=opt-blue role=option>Blue",
            "No color chosen",
        ])
        await (await find_element(page, 4)).click()
        chosen = await observe(page)
    assert chosen.text == "\n".join([
        "# Dropdowns",
        "Fruit",
        "[1]<select id=fruit name=fruit label=Fruit value=Cherry>",
        "Color",
        "[2]<input id=color role=combobox label=Color value=Green expanded=false>",
        "Chosen color: Green",
    ])


async def test_tabs_show_selection_and_panel(browser, site_url):
    async with opened(browser, f"{site_url}/tabs.html") as page:
        first = await observe(page)
        assert first.text == "\n".join([
            "# Account",
            "[1]<button id=tab-profile role=tab selected>Profile",
            "[2]<button id=tab-billing role=tab>Billing",
            "[3]<button id=tab-security role=tab>Security",
            "Profile panel: your name is Ada.",
        ])
        await (await find_element(page, 2)).click()
        after = await observe(page)
    assert after.text == "\n".join([
        "# Account",
        "[1]<button id=tab-profile role=tab>Profile",
        "[2]<button id=tab-billing role=tab selected>Billing",
        "[3]<button id=tab-security role=tab>Security",
        "Billing panel: the card ends in 4242.",
    ])


async def test_tricky_widgets(browser, site_url):
    async with opened(browser, f"{site_url}/tricky.html") as page:
        obs = await observe(page)
        body = lines(obs)
        assert body[:-1] == [
            "# Tricky widgets",                       # the off-screen skip link is not shown
            "[1]<label checked>Dark mode",            # the label stands in for its hidden checkbox
            "[2]<button id=accordion-toggle expanded=false>Shipping details",  # collapsed panel hidden
            "[3]<button id=in-contents>Button in display contents",
            "[4]<div id=product-card>Walnut desk Solid walnut, 140 cm wide.",  # onclick card...
            "[5]<button id=buy>Buy now",                                        # ...and its own button
            "Card closed",
            "[6]<div id=note contenteditable>Editable note",
            "[7]<button id=disabled-action disabled>Disabled action",
            "[8]<a id=long-link href=/page2.html>This link has a very long text that goes on and on well past the eighty…",
            "character limit of a line",
            "Plan | Price",
            "Basic | 9 EUR",
            "[10]<a id=row-link href=/page2.html>Row link",  # [9], its cursor:pointer row, adds nothing
            "First slide shown",                      # the clipped second slide is not
            '[11]<div id=scrollbox scrollable="0px above, 780px below">',
            *[f"Scroll row {i}" for i in range(1, 10)],
            "We use cookies.",                        # a fixed banner at the end of the DOM
            "[12]<button id=accept-cookies>Accept cookies",
        ]
        assert re.fullmatch(r"\.\.\. \d+ pixels below \(\d+\.\d pages\): scroll down to see more", body[-1])
        # page-wide click listeners (body, #app) did not become elements
        marked = await page.evaluate("() => [...document.querySelectorAll('[data-wb-idx]')].map(e => e.id || e.localName)")
        assert marked == ["label", "accordion-toggle", "in-contents", "product-card", "buy",
                          "note", "disabled-action", "long-link", "row-link", "scrollbox", "accept-cookies"]
        await (await find_element(page, 4)).click()
        assert "Card opened" in lines(await observe(page))
        await (await find_element(page, 1)).click()
        assert await page.is_checked("#dark-mode") is False
        with pytest.raises(ElementNotFound):
            await find_element(page, 9)


async def test_observe_a_document_still_being_parsed_waits_for_it(browser, site_url):
    """A navigation has committed but the server still holds the body: the observation is the new page once
    parsed, never "(empty page)" (the model would act on nothing)."""
    async with opened(browser, f"{site_url}/links.html") as page:
        await page.evaluate("location.href = 'page2.html?stall_ms=800'")
        await page.wait_for_url("**/page2.html?stall_ms=800", wait_until="commit")
        obs = await observe(page)
        assert obs.text == "# Page two\nThis is the second page.\n## Part two\nThe second part of page two.\n" \
                           "[1]<a href=/links.html>Back to links"


async def test_observe_while_the_page_navigates(browser, site_url):
    async with opened(browser, f"{site_url}/links.html") as page:
        await page.evaluate("setTimeout(() => { location.href = 'page2.html'; }, 0)")
        obs = await observe(page)  # whichever document answers, the answer is a real page
        assert obs.text in (
            "# Links\nRead the\n[1]<a href=/page2.html>second page\nfor details.\n[2]<a href=/index.html>Back to "
            "the index\n[3]<a id=deep-link href=/page2.html#part-two>Part two of page 2\n[4]<a href=/page2.html "
            "target=_blank>Open page 2 in a new tab\n[5]<a href=https://example.com/outside>An outside link",
            "# Page two\nThis is the second page.\n## Part two\nThe second part of page two.\n"
            "[1]<a href=/links.html>Back to links",
        )


# ------------------------------------------------------------------ indices
async def test_indices_are_stable_across_observations_and_dom_changes(browser, site_url):
    async with opened(browser, f"{site_url}/tabs.html") as page:
        first = await observe(page)
        second = await observe(page)
        assert second.text == first.text
        await page.evaluate(
            """() => {
              const b = document.createElement('button');
              b.textContent = 'New first button';
              document.body.prepend(b);
              document.getElementById('tab-security').remove();
            }"""
        )
        changed = await observe(page)
        assert changed.text == "\n".join([
            "[4]<button>New first button",
            "# Account",
            "[1]<button id=tab-profile role=tab selected>Profile",
            "[2]<button id=tab-billing role=tab>Billing",
            "Profile panel: your name is Ada.",
        ])
        with pytest.raises(ElementNotFound) as err:
            await find_element(page, 3)
        assert str(err.value) == (
            "element [3] is not on the page any more; read the new page state and pick a current index"
        )
        with pytest.raises(ElementNotFound):
            await find_element(page, 99)
        assert await (await find_element(page, 4)).text_content() == "New first button"


async def test_cloned_element_gets_its_own_index(browser, site_url):
    async with opened(browser, f"{site_url}/tabs.html") as page:
        await observe(page)
        # a page that clones a marked element copies data-wb-idx with it
        await page.evaluate(
            """() => { const c = document.getElementById('tab-billing').cloneNode(true);
                       c.id = 'tab-billing-copy'; c.textContent = 'Billing copy';
                       document.querySelector('[role=tablist]').append(c); }"""
        )
        obs = await observe(page)
        assert "[4]<button id=tab-billing-copy role=tab>Billing copy" in lines(obs)
        assert await (await find_element(page, 2)).get_attribute("id") == "tab-billing"
        assert await (await find_element(page, 4)).get_attribute("id") == "tab-billing-copy"


async def test_form_filled_through_indices(browser, site_url):
    async with opened(browser, f"{site_url}/form.html") as page:
        await observe(page)
        await (await find_element(page, 1)).fill("Grace Hopper")
        await (await find_element(page, 2)).fill("grace@example.com")
        await (await find_element(page, 3)).fill("s3cret")
        await (await find_element(page, 4)).fill("Hello there")
        await (await find_element(page, 5)).check()
        await (await find_element(page, 7)).check()
        await (await find_element(page, 8)).select_option(label="Large")
        filled = await observe(page)
        assert lines(filled)[2:19] == [
            '[1]<input id=full-name name=full_name placeholder="Ada Lovelace" label="Full name" value="Grace Hopper">',
            "Email",
            "[2]<input id=email name=email type=email label=Email value=grace@example.com>",
            "Password",
            "[3]<input id=password name=password type=password label=Password value=***>",  # never the secret
            "Message",
            '[4]<textarea id=message name=message label=Message value="Hello there">',
            '[5]<input name=newsletter type=checkbox label="Send me the newsletter" checked>',
            "Send me the newsletter",
            "Plan:",
            "[6]<input name=plan type=radio label=Basic value=basic>",
            "Basic",
            "[7]<input name=plan type=radio label=Pro value=pro checked>",
            "Pro",
            "T-shirt size",
            '[8]<select id=size name=size label="T-shirt size" value=Large>',
            "[9]<button id=submit>Create account",
        ]
        await (await find_element(page, 9)).click()
        await page.wait_for_url("**/result.html?*")
        await page.wait_for_load_state("load")
        result = await observe(page)
    assert result.text == "\n".join([
        "# Thank you",
        "You submitted:",
        "full_name", "Grace Hopper",
        "email", "grace@example.com",
        "password", "******",
        "message", "Hello there",
        "newsletter", "yes",
        "plan", "pro",
        "size", "l",
    ])
    assert result.title == "Submitted"


# ------------------------------------------------------------------ locators for replay
async def test_describe_element_records(browser, site_url):
    async with opened(browser, f"{site_url}/form.html") as page:
        await observe(page)
        email = await describe_element(await find_element(page, 2))
        newsletter = await describe_element(await find_element(page, 5))
        size = await describe_element(await find_element(page, 8))
        for record in (email, newsletter, size):
            assert await page.locator(record["css"]).count() == 1
            assert await page.locator(f"xpath={record['xpath']}").count() == 1
    assert email == {
        "xpath": "/html/body/form/p[2]/input", "css": "#email", "role": "textbox", "name": "Email", "text": "",
        "tag": "input", "attributes": {"id": "email", "name": "email", "type": "email"}, "frame": [], "shadow": False,
    }
    assert newsletter == {
        "xpath": "/html/body/form/p[5]/label/input", "css": "#signup > p:nth-of-type(5) > label > input",
        "role": "checkbox", "name": "Send me the newsletter", "text": "", "tag": "input",
        "attributes": {"name": "newsletter", "type": "checkbox"}, "frame": [], "shadow": False,
    }
    assert size == {
        "xpath": "/html/body/form/p[7]/select", "css": "#size", "role": "combobox", "name": "T-shirt size",
        "text": "Medium", "tag": "select", "attributes": {"id": "size", "name": "size"}, "frame": [], "shadow": False,
    }


async def test_describe_element_in_shadow_iframe_and_icons(browser, site_url):
    async with opened(browser, f"{site_url}/shadow.html") as page:
        await observe(page)
        go = await describe_element(await find_element(page, 2))
        assert await page.locator(go["css"]).count() == 1  # Playwright css pierces the shadow root
    assert go == {
        "xpath": "/div/button", "css": "#widget #shadow-go", "role": "button", "name": "Go shadow",
        "text": "Go shadow", "tag": "button", "attributes": {"id": "shadow-go"}, "frame": [], "shadow": True,
    }
    async with opened(browser, f"{site_url}/iframe.html") as page:
        await observe(page)
        button = await describe_element(await find_element(page, 2))
        assert await page.frame_locator(button["frame"][0]).locator(button["css"]).count() == 1
    assert button == {
        "xpath": "/html/body/button", "css": "#frame-button", "role": "button", "name": "Frame button",
        "text": "Frame button", "tag": "button", "attributes": {"id": "frame-button", "type": "button"},
        "frame": ["#inner"], "shadow": False,
    }
    async with opened(browser, f"{site_url}/icons.html") as page:
        await observe(page)
        cart = await describe_element(await find_element(page, 3))
        card = await describe_element(await find_element(page, 7))
    assert cart == {
        "xpath": "/html/body/div[1]/button[3]", "css": "#b-img", "role": "button", "name": "Shopping cart",
        "text": "", "tag": "button", "attributes": {"id": "b-img"}, "frame": [], "shadow": False,
    }
    assert card == {
        "xpath": "/html/body/div[2]", "css": "#listener-div", "role": None, "name": "", "text": "Listener card",
        "tag": "div", "attributes": {"id": "listener-div", "class": "card"}, "frame": [], "shadow": False,
    }


async def test_clicks_reach_script_only_clickables(browser, site_url):
    async with opened(browser, f"{site_url}/icons.html") as page:
        await observe(page)
        for index, status in [(7, "Clicked listener card"), (8, "Clicked onclick span"), (6, "Clicked b-fa")]:
            await (await find_element(page, index)).click()
            assert status in lines(await observe(page))


# ------------------------------------------------------------------ viewport and bounds
async def test_long_page_above_and_below(browser, site_url):
    async with opened(browser, f"{site_url}/long.html") as page:
        top = await observe(page)
        height, view = await page.evaluate("() => [document.documentElement.scrollHeight, innerHeight]")
        assert lines(top)[:3] == [
            "# Long page",
            "The first item is at the top; the last is far below the fold.",
            "Item number 1",
        ]
        below = height - 2 * view  # rendered: the viewport and one more viewport below it
        assert (top.pixels_above, top.pixels_below) == (0, below)
        assert lines(top)[-1] == f"... {below} pixels below ({below / view:.1f} pages): scroll down to see more"
        assert "The purple giraffe sleeps at the bottom of the page." not in top.text

        await page.evaluate("window.scrollTo(0, 3100)")
        middle = await observe(page)
        above = 3100 - view // 2
        below = height - (3100 + 2 * view)
        assert (middle.pixels_above, middle.pixels_below) == (above, below)
        assert lines(middle)[0] == f"... {above} pixels above ({above / view:.1f} pages): scroll up to see more"
        assert lines(middle)[-1] == f"... {below} pixels below ({below / view:.1f} pages): scroll down to see more"
        assert "Item number 1" not in lines(middle)
        assert "Item number 35" in lines(middle)

        await page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        bottom = await observe(page)
        assert bottom.pixels_below == 0
        assert lines(bottom)[-2] == "The purple giraffe sleeps at the bottom of the page."
        # new elements take the next numbers, in document order
        indices = [int(m) for m in re.findall(r"^\[(\d+)\]", bottom.text, flags=re.M)]
        assert indices == sorted(indices) and min(indices) > 14
        assert lines(bottom)[-1] == f"[{indices[-1]}]<button id=bottom-button>Bottom button"
        assert await (await find_element(page, indices[-1])).get_attribute("id") == "bottom-button"
        # the indices of the first items survived the scrolling
        assert "[1]<a id=item-1 href=#item-1>Details of item 1" in lines(top)


async def test_page_text_is_the_whole_page(browser, site_url):
    async with opened(browser, f"{site_url}/long.html") as page:
        text = await page_text(page)
    assert text.startswith("# Long page\nThe first item is at the top; the last is far below the fold.\nItem number 1\n")
    assert f"[Details of item 80]({site_url}/long.html#item-80)" in text.split("\n")
    assert text.endswith("The purple giraffe sleeps at the bottom of the page.\nBottom button")


async def test_page_text_links_lists_and_frames(browser, site_url):
    async with opened(browser, f"{site_url}/links.html") as page:
        text = await page_text(page)
    assert text == "\n".join([
        "# Links",
        f"Read the [second page]({site_url}/page2.html) for details.",
        f"- [Back to the index]({site_url}/index.html)",
        f"- [Part two of page 2]({site_url}/page2.html#part-two)",
        f"- [Open page 2 in a new tab]({site_url}/page2.html)",
        "- [An outside link](https://example.com/outside)",
    ])
    async with opened(browser, f"{site_url}/iframe.html") as page:
        text = await page_text(page)
    assert "Frame button not clicked" in text.split("\n")


def make_doc_page(target_bytes: int) -> str:
    """A documentation-like page: a fixed sidebar of links, then sections of prose, code and tables."""
    rnd = random.Random(3)
    words = ["the", "of", "function", "returns", "value", "parameter", "object", "request", "response", "module", "class", "method"]
    sections = max(1, target_bytes // 5_000)
    parts = ["<!doctype html><title>Generated docs</title><style>nav{position:fixed;left:0;top:0;width:200px;"
             "height:100vh;overflow:auto} main{margin-left:220px}</style><nav><ul>"]
    parts += [f'<li><a href="#s{i}">Section {i}</a></li>' for i in range(sections)]
    parts.append("</ul></nav><main><h1>Generated reference</h1>")
    size, i = sum(map(len, parts)), 0
    while size < target_bytes:
        prose = "".join(f"<p>{' '.join(rnd.choice(words) for _ in range(30))} <a href='#s{i}'>link</a></p>" for _ in range(4))
        code = "<pre><code>" + "\n".join(f"<span>def</span> <span>f{i}_{j}</span>(x): return x" for j in range(10)) + "</code></pre>"
        table = "<table>" + "".join(f"<tr><td>p{j}</td><td>str</td><td>value {j}</td></tr>" for j in range(5)) + "</table>"
        chunk = f"<section id=s{i}><h2>Section {i}</h2>{prose}{code}{table}</section>"
        parts.append(chunk)
        size += len(chunk)
        i += 1
    parts.append("<p>Last words of the generated reference.</p></main>")
    return "".join(parts)


async def test_huge_page_is_bounded_and_never_empty(browser, tmp_path):
    html = make_doc_page(3_000_000)
    assert len(html) > 3_000_000
    (tmp_path / "doc.html").write_text(html)
    server, url = serve_dir(tmp_path)
    try:
        async with opened(browser, f"{url}/doc.html") as page:
            # the renderer lays out and paints a huge page for seconds after `load`; wait for it
            await page.evaluate("1")
            obs = await observe(page)
            assert obs.elapsed_ms < 1_500
            assert not obs.truncated
            nav_below = await page.evaluate("() => document.querySelector('nav').scrollHeight - innerHeight")
            assert lines(obs)[:3] == [
                f'[1]<nav scrollable="0px above, {nav_below}px below">',
                "[2]<a href=#s0>Section 0",
                "[3]<a href=#s1>Section 1",
            ]
            assert "# Generated reference" in lines(obs)
            assert "Last words of the generated reference." not in obs.text
            assert obs.pixels_below > 500_000

            hurried = await observe(page, time_budget_ms=1)
            assert hurried.truncated
            assert hurried.text.endswith(
                "(page truncated: stopped after 1 ms; scroll, or use find_text or extract for the rest)\n"
                f"... {hurried.pixels_below} pixels below ({hurried.pixels_below / 800:.1f} pages): scroll down to see more"
            )
            assert len(lines(hurried)) >= 3  # something of the page came before the stop

            small = await observe(page, max_chars=1_000)
            assert small.truncated
            assert 700 < len(small.text) <= 1_000
            assert small.text.split("\n")[-2] == (
                "(page truncated at 1000 characters; scroll, or use find_text or extract for the rest)"
            )

            t0 = time.perf_counter()
            text = await page_text(page)
            assert time.perf_counter() - t0 < 6
            assert 59_000 < len(text) <= 60_000
    finally:
        server.shutdown()


async def test_empty_and_text_only_pages_are_never_empty(browser, site_url):
    async with browser.session() as session:
        page = session.page
        await page.set_content("<html><head><title>Nothing</title></head><body></body></html>")
        empty = await observe(page)
        assert (empty.text, empty.title, empty.element_count) == ("(empty page)", "Nothing", 0)
        await page.goto("about:blank")
        assert (await observe(page)).text == "(empty page)"
        assert await page_text(page) == "(empty page)"
        # text sitting straight in a fixed-size body, nothing else
        await page.set_content("<body style='margin:0'>Just one line of text</body>")
        assert (await observe(page)).text == "Just one line of text"


async def test_stuck_page_still_returns_an_observation(browser, site_url):
    async with opened(browser, f"{site_url}/index.html") as page:
        # the page's main thread spins for 9 s: no script of ours can run meanwhile
        await page.evaluate("setTimeout(() => { const end = Date.now() + 9000; while (Date.now() < end) {} }, 0)")
        await asyncio.sleep(0.2)
        t0 = time.perf_counter()
        obs = await observe(page, time_budget_ms=100)
        waited = time.perf_counter() - t0
        assert obs.text == "(the page did not answer in time; wait, then observe again)"
        assert obs.truncated and obs.element_count == 0
        assert waited < 9
        # Readable again once the page is free (the spin ends 9 s after it began): wait for that, bounded.
        for _attempt in range(60):  # each observe() is bounded (budget + slack): at most ~30 s in all
            again = await observe(page, time_budget_ms=100)
            if again.element_count:
                break
            await asyncio.sleep(0.1)
        assert again.element_count == 10


async def test_init_script_is_invisible_to_the_page(browser, site_url):
    async with opened(browser, f"{site_url}/icons.html") as page:
        await observe(page)
        seen = await page.evaluate(
            "() => [Object.keys(window).filter(k => k.startsWith('__wb')), '__wbClick' in window, '__wbIdx' in window,"
            " window.__wbClick.has(document.getElementById('listener-div'))]"
        )
    assert seen == [[], True, True, True]


# ------------------------------------------------------------------ closed shadow roots, covers, fragments
async def test_closed_shadow_roots_nested_with_an_iframe_are_walked_and_usable(browser, site_url):
    async with opened(browser, f"{site_url}/closed-shadow.html") as page:
        obs = await observe(page)
        assert obs.text == "\n".join([
            "# Account settings",
            "Nickname",
            "[1]<input id=nick name=nick label=Nickname>",
            "Avatar preview",
            "[2]<button id=pick>Pick the fox avatar",  # in an iframe inside a closed root inside a closed root
            "No avatar chosen",
            "[3]<button id=save>Save settings",
            "Not saved",
        ])
        # Playwright's css cannot see into closed roots; the lookup still finds every element
        assert await page.locator('[data-wb-idx="1"]').count() == 0
        await (await find_element(page, 1)).fill("Ada")
        await (await find_element(page, 2)).click()
        await (await find_element(page, 3)).click()
        after = await observe(page)
    assert "Saved nickname Ada" in lines(after) and "Fox avatar chosen" in lines(after)
    assert "[1]<input id=nick name=nick label=Nickname value=Ada>" in lines(after)


async def test_covered_elements_are_marked_and_fragment_links_shown_as_written(browser, site_url):
    async with opened(browser, f"{site_url}/cookie-wall.html") as page:
        obs = await observe(page)
        assert obs.text == "\n".join([
            "Cable shop",
            "[1]<a href=# covered>Home",  # href="#" is no link to the page itself
            "[2]<a href=/page2.html covered>Cables",
            "# Today's deal",
            "## USB-C cable, 1 m",
            "EUR 9.99, braided, 60 W.",
            "[3]<button id=add covered>Add to cart",
            "Your cart is empty",
            "## We value your privacy",
            "We and our partners use cookies to personalise content and measure audiences.",
            "[4]<button id=reject>Reject all",
            "[5]<button id=accept>Accept all",
        ])
        assert await cover_of(await find_element(page, 3)) == {
            "by": "<div id=consent-wall class=cmp-overlay>We value your privacy We and our partners use cookies to pe…"}
        assert await cover_of(await find_element(page, 5)) is None
        await (await find_element(page, 5)).click()
        assert "covered" not in (await observe(page)).text
    async with opened(browser, f"{site_url}/consent-form.html") as page:
        await observe(page)
        # the invisible checkbox under its drawn box: its label takes the click
        assert await cover_of(await find_element(page, 2)) == {"label": True}
        assert await cover_of(await find_element(page, 1)) is None


async def test_init_script_keeps_shadow_roots_out_of_sight(browser, site_url):
    async with opened(browser, f"{site_url}/closed-shadow.html") as page:
        seen = await page.evaluate(
            "() => [Object.keys(window).filter(k => k.startsWith('__wb')), Element.prototype.attachShadow.name,"
            " document.querySelector('settings-panel').shadowRoot, window.__wbShadow.list.length]"
        )
    assert seen == [[], "attachShadow", None, 2]  # closed stays closed for the page itself


# ------------------------------------------------------------------ clicking where a control shows
async def test_a_control_whose_centre_is_covered_is_clicked_where_it_shows(browser, site_url):
    async with browser.session() as session:
        await session.page.goto(f"{site_url}/partly-covered.html", wait_until="load")
        page = session.page
        obs = await observe(page)
        assert lines(obs)[1:6] == [
            "[1]<button id=one>ONE",  # TWO lies over its centre; its ends show
            "[2]<button id=two>TWO",
            "[3]<button id=three covered>THREE",  # wholly under the lid
            "A lid over three",
            "[4]<button id=five>FIVE",  # in a closed shadow root, its badge over its centre
        ], obs.text
        one = await aim_at(await find_element(page, 1))
        assert one["partly"] is True and await cover_of(await find_element(page, 1)) is None
        log = page.locator("#log")
        ctx = actions.Context(session=session)
        clicked, _ = await actions.execute(ctx, "click", {"index": 1})
        assert (clicked.error, clicked.extracted_content) == (None, "clicked [1] 'ONE'")
        assert await log.inner_text() == "Clicked one"  # the click landed on ONE, not on TWO above it
        inside, _ = await actions.execute(ctx, "click", {"index": 4})
        assert (inside.error, await log.inner_text()) == (None, "Clicked five")
        refused, _ = await actions.execute(ctx, "click", {"index": 3})
        assert refused.error == ("could not click [3]: it is covered by <div id=lid>A lid over three; close or "
                                 "accept that first, then click [3] again")
        assert await log.inner_text() == "Clicked five"  # nothing was clicked


# ------------------------------------------------------------------ settling after an action
async def _after(session: BrowserSession, act, **kwargs) -> Settled:
    """Do `act` (a coroutine function of the page), then wait for the page to settle since it began."""
    began = time.monotonic()
    await act(session.page)
    return await settle(session, since=began, **kwargs)


async def test_a_page_still_changing_is_waited_for(browser, site_url):
    async with browser.session() as session:
        await session.page.goto(f"{site_url}/settle.html", wait_until="load")
        page = session.page
        later = await _after(session, lambda p: p.click("#later"))  # a timer shows it 300 ms after the click
        assert later.reason == "still" and "Shown after 300 ms" in (await observe(page)).text, later
        fetched = await _after(session, lambda p: p.click("#fetch"))  # a request answered 300 ms late brings it
        assert fetched.reason == "still" and "Fetched: Harbour reopens" in (await observe(page)).text, fetched
        menu = await _after(session, lambda p: p.hover("#help-link"))  # the menu opens 300 ms after the hover
        assert menu.reason == "still" and "Contact us" in (await observe(page)).text, menu
        # A clock ticking every second and a timer chain re-arming since the page loaded hold nothing.
        calm = await _after(session, lambda p: p.click("#plain"))
        assert (calm.reason, calm.busy, calm.navigated) == ("still", (), False), calm


async def test_one_change_at_the_bound_does_not_make_the_page_restless(browser, site_url):
    """A timer chain holds a wait to its bound and the DOM changes once, in its last frames (a clock's tick):
    that change is not what held it, and the page is not marked restless (later changes are still waited for)."""
    async with browser.session() as session:
        await session.page.goto(f"{site_url}/settle.html", wait_until="load")
        held = await _after(session, lambda p: p.click("#once-late"), max_ms=400)
        assert (held.reason, held.busy, held.restless_page, held.learned) == ("bound", ("timer",), False, 0), held
        later = await _after(session, lambda p: p.click("#later"))  # a change 300 ms later is still waited for
        assert later.reason == "still" and "Shown after 300 ms" in (await observe(session.page)).text, later


async def test_a_page_that_never_stops_costs_the_bound_once(browser, site_url):
    async with browser.session() as session:
        await session.page.goto(f"{site_url}/settle.html", wait_until="load")
        page = session.page
        ticking = await _after(session, lambda p: p.click("#ticker-start"), max_ms=400)
        assert (ticking.reason, ticking.busy[:1], ticking.bound_ms) == ("bound", ("dom",), 400), ticking
        assert ticking.learned >= 1  # the ticker is remembered as restless on this document
        before = await page.inner_text("#ticker")
        calm = await _after(session, lambda p: p.click("#plain"))
        assert calm.reason == "still", calm  # the ticker no longer holds a wait ...
        assert await page.inner_text("#ticker") != before  # ... though it still ticks
        polling = await _after(session, lambda p: p.click("#poll-start"), max_ms=400)
        assert (polling.reason, polling.busy) == ("bound", ("timer",)), polling
        calm = await _after(session, lambda p: p.click("#plain"))
        assert calm.reason == "still", calm  # a poll an earlier action started is not this action's doing
        # Requests asked again as each is answered (a long poll) carry no timer chain: their URL is remembered.
        asking = await _after(session, lambda p: p.click("#longpoll-start"), max_ms=400)
        assert (asking.reason, asking.busy, asking.learned) == ("bound", ("fetch",), 1), asking
        # The next wait outlasts the poll's next request (a 300 ms timer): the remembered URL does not hold it.
        later = await _after(session, lambda p: p.click("#later"))
        assert later.reason == "still" and "Shown after 300 ms" in (await observe(page)).text, later
        # Navigating: the new document is waited for (as long as a page load, past a click's bound: its server
        # answers in 0.9 s) and read afresh, the feed it fetches after loading included.
        moved = await _after(session, lambda p: p.evaluate("location.href = 'feed.html?delay_ms=900'"), max_ms=600)
        assert (moved.reason, moved.navigated, moved.bound_ms >= LOAD_WAIT_MS) == ("still", True, True), moved
        assert page.url.endswith("/feed.html?delay_ms=900")
        assert "Story 1: Harbour reopens" in (await observe(page)).text
