"""How actions touch a page as a person would: click where the control shows, type with key events, and
wait for the page to settle before the next observation (agent.engine.settle).

`reach()` finds a point of the element that shows and takes the click (its centre, else another point
of its boxes when something covers the centre) and returns an `Aim` to click or hover there; it raises
`Unreachable` (covered everywhere, disabled) at once, with a message for the model that names what is
in the way; `type_text()` raises `Untypable`. Everything is bounded in time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import ElementHandle, Locator

from agent.engine.page import aim_at
from agent.engine.settle import Settled, settle

__all__ = ["Aim", "Settled", "Unreachable", "Untypable", "reach", "settle", "type_text"]

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


@dataclass(frozen=True)
class Aim:
    """Where a click or hover on an element goes: a point of it that shows and takes the click, or its label."""

    target: Locator | ElementHandle
    via_label: bool = False
    point: tuple[float, float] | None = None  # in the top window's viewport: the mouse goes straight there
    offset: tuple[float, float] | None = None  # from the element's top-left corner, for Playwright's own click
    partly: bool = False  # its centre is covered: the point is another one of its own
    opens_tab: bool = False
    locators: dict[str, Any] = field(default_factory=dict)

    async def click(self, *, timeout: float) -> None:
        """Click there: the mouse straight at the point; Playwright's click (which waits for a moving element to
        stand still and checks the point again) for labels, moving elements and cross-origin frames."""
        if self.point is not None and isinstance(self.target, Locator):
            await self.target.page.mouse.click(*self.point)
        elif self.offset is not None:
            await self.target.click(timeout=timeout, position={"x": self.offset[0], "y": self.offset[1]})
        else:
            await self.target.click(timeout=timeout)

    async def hover(self, *, timeout: float) -> None:
        """Move the mouse there (as `click` chooses how)."""
        if self.point is not None and isinstance(self.target, Locator):
            await self.target.page.mouse.move(*self.point)
        elif self.offset is not None:
            await self.target.hover(timeout=timeout, position={"x": self.offset[0], "y": self.offset[1]})
        else:
            await self.target.hover(timeout=timeout)


async def reach(locator: Locator, *, index: int, verb: str) -> Aim:
    """Where to click or hover the element: a point of it that shows and takes the click (its centre, else the
    one farthest from what covers it), or its label when the label takes its clicks (a visually hidden input
    inside a styled checkbox). Raises Unreachable, naming the cover, when no point of it shows."""
    aim = await aim_at(locator, index=index)
    locators = aim.get("locators") or {}
    if aim.get("out"):  # scroll it into view first, as a person would
        try:
            await locator.scroll_into_view_if_needed(timeout=2_000)
        except Exception:  # cannot be scrolled into view: the action itself says what is wrong
            pass
        aim = await aim_at(locator, index=index)
    if aim.get("by"):  # a sticky bar may cover it at the edge of the view: try it centred
        await locator.evaluate("el => el.scrollIntoView({block: 'center', inline: 'center'})", timeout=2_000)
        aim = await aim_at(locator, index=index)
    if aim.get("disabled"):
        raise Unreachable(f"could not {verb} [{index}]: it is disabled; do what enables it first "
                          "(e.g. fill the required fields)")
    if aim.get("by"):
        raise Unreachable(f"could not {verb} [{index}]: it is covered by {aim['by']}; close or accept that "
                          f"first, then {verb} [{index}] again")
    opens_tab = bool(aim.get("opensTab"))
    if aim.get("label"):
        handle = await locator.evaluate_handle("el => (el.labels && el.labels[0]) || el.closest('label')")
        label = handle.as_element()
        if label is not None:
            return Aim(label, via_label=True, opens_tab=opens_tab, locators=locators)
    if "x" not in aim:  # out of view still: Playwright's own click scrolls and says what is wrong
        return Aim(locator, opens_tab=opens_tab, locators=locators)
    offset = (float(aim["dx"]), float(aim["dy"]))
    straight = bool(aim.get("top")) and not aim.get("moving")
    return Aim(locator, point=(float(aim["x"]), float(aim["y"])) if straight else None, offset=offset,
               partly=bool(aim.get("partly")), opens_tab=opens_tab, locators=locators)


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
