"""How actions touch a page as a person would: see where a click lands, type with key events, and
wait for the page to settle before the next observation.

`reach()` raises `Unreachable` (covered, disabled) at once, with a message for the model that names
what is in the way; `type_text()` raises `Untypable`. Everything is bounded in time.
"""

from __future__ import annotations

import time
from typing import Any

from playwright.async_api import ElementHandle, Locator

from agent.engine.browser import BrowserSession
from agent.engine.page import cover_of, wait_for_quiet

# Inputs a person fills through a picker, not key by key (typing "2030-06-07" into a date field
# goes into the wrong segments): these get the value set as the picker would set it.
PICKER_FORMATS = {"date": "2030-06-07", "time": "14:30", "datetime-local": "2030-06-07T14:30", "month": "2030-06",
                  "week": "2030-W23", "color": "#ff8800", "range": "5 (a number between its min and max)"}
PICKER_TYPES = frozenset(PICKER_FORMATS)
KEYED_CHARS = 48  # text up to this long is typed key by key
KEYED_TAIL = 8  # longer text is inserted at once, then its last characters typed: key listeners still fire


class Unreachable(Exception):
    """The element cannot take a click or the mouse now; the message says why and what to do."""


class Untypable(Exception):
    """The element cannot take text; the message says why."""


async def reach(locator: Locator, *, index: int, verb: str) -> tuple[Locator | ElementHandle, bool]:
    """What to click or hover for the element: itself, or its label when the label takes its clicks
    (a visually hidden input inside a styled checkbox). True as second item when it is the label."""
    cover = await cover_of(locator)
    if cover and cover.get("out"):  # scroll it into view first, as a person would
        try:
            await locator.scroll_into_view_if_needed(timeout=2_000)
        except Exception:  # cannot be scrolled into view: the action itself says what is wrong
            pass
        cover = await cover_of(locator)
    if cover and cover.get("by"):  # a sticky bar may cover it at the edge of the view: try it centred
        await locator.evaluate("el => el.scrollIntoView({block: 'center', inline: 'center'})", timeout=2_000)
        cover = await cover_of(locator)
    if cover and cover.get("disabled"):
        raise Unreachable(f"could not {verb} [{index}]: it is disabled; do what enables it first "
                          "(e.g. fill the required fields)")
    if cover and cover.get("by"):
        raise Unreachable(f"could not {verb} [{index}]: it is covered by {cover['by']}; close or accept that "
                          f"first, then {verb} [{index}] again")
    if cover and cover.get("label"):
        handle = await locator.evaluate_handle("el => (el.labels && el.labels[0]) || el.closest('label')")
        label = handle.as_element()
        if label is not None:
            return label, True
    return locator, False


_FIELD_JS = """el => {
  const tag = el.localName;
  const editable = !['input', 'textarea', 'select'].includes(tag) && el.isContentEditable;
  return { tag, type: tag === 'input' ? (el.type || 'text') : '', editable, readonly: !!el.readOnly,
           value: editable ? el.innerText : ('value' in el ? String(el.value) : null) };
}"""
_VALUE_JS = ("el => el.isContentEditable && el.localName !== 'input' && el.localName !== 'textarea'"
             " ? el.innerText : el.value")
# Focus with the caret after the current content, as a click at the end of the field would.
_CARET_END_JS = """el => {
  el.focus();
  if (typeof el.setSelectionRange === 'function' && typeof el.value === 'string') {
    try { el.setSelectionRange(el.value.length, el.value.length); } catch (e) {}
  } else if (el.isContentEditable) {
    const r = document.createRange(); r.selectNodeContents(el); r.collapse(false);
    const s = getSelection(); s.removeAllRanges(); s.addRange(r);
  }
}"""


async def type_text(locator: Locator, text: str, *, clear: bool) -> tuple[str | None, str | None, str]:
    """Type `text` into a field as a person would (key events for each key; fast for long text).

    Returns (value before, value after, input type); values are None for custom widgets that have none.
    """
    field: dict[str, Any] = await locator.evaluate(_FIELD_JS, timeout=3_000)
    if field["readonly"]:
        raise Untypable("is read-only")
    if field["type"] in PICKER_TYPES:
        refused = f"did not take {text!r}: a {field['type']} field takes values like {PICKER_FORMATS[field['type']]}"
        try:
            await locator.fill(text, timeout=5_000)
        except Exception:
            raise Untypable(refused) from None
        after = await locator.evaluate(_VALUE_JS)
        if text and not after:
            raise Untypable(refused)
        return field["value"], after, field["type"]
    if field["tag"] not in ("input", "textarea") and not field["editable"]:
        # A wrapper around a field or an editor: click into it and type where the focus lands.
        await locator.click(timeout=3_000)
        await locator.page.keyboard.type(text)
        return None, None, ""
    if clear:
        await locator.fill("", timeout=5_000)
    else:
        await locator.evaluate(_CARET_END_JS)
    bulk, keyed = (text[:-KEYED_TAIL], text[-KEYED_TAIL:]) if len(text) > KEYED_CHARS else ("", text)
    if bulk:
        await locator.focus(timeout=3_000)
        await locator.page.keyboard.insert_text(bulk)
    if keyed:
        await locator.press_sequentially(keyed, timeout=10_000)
    return field["value"], await locator.evaluate(_VALUE_JS), field["type"]


async def settle(session: BrowserSession, *, quiet_ms: int = 150, max_ms: int = 800) -> None:
    """Wait, at most max_ms, until the page stops changing: no DOM change for quiet_ms and no fetch in
    flight, so content that an action makes appear (suggestions, a feed's next page) is observed."""
    page = await session.ensure_page()
    deadline = time.monotonic() + max_ms / 1000
    while (left := deadline - time.monotonic()) > 0.02:
        await wait_for_quiet(page, quiet_ms=quiet_ms, max_ms=int(left * 1000))
        if not session.fetching():
            return
        await session.fetches_done(timeout=deadline - time.monotonic())  # then look for the DOM it changes
