"""Reading values that came from one item of a page (a list item, a table row, a card) together.

When the recorded run read several values off one item ("USB-C Cable 1 m" and "€5.49" from the same
result card), the trace (agent.engine.provenance) kept that item's locators and each value's place
inside it. A replay must answer with values of one item, never with the name of one product and the
price of another. So it first decides which item of today's page is meant, then reads every value
inside that item:

- a parameter's value that the item showed when recorded (the name the task asked about, bound to
  `{{name}}` by the recorder: the item's *key*) picks the item that shows the new value;
- else everything that points at an item must agree: the item's place in the list when recorded (the
  first result), the item's own locators and each value's own (an id such as `name-cab-01` points at
  one product wherever it is listed). When they point at different items (the recorded product is now
  second), the replay cannot know which one the task meant: `ItemUnavailable`, and the final step
  goes to the agent (or fails), never a mixture.

Errors: `ItemUnavailable` (a LookupError) saying which values, which item and why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from playwright.async_api import Frame, Page

from agent.engine.provenance import ITEM_PATH_JS, TREES_JS
from agent.workflows.locate import Located, LocateError, element_label, locate

__all__ = ["ItemUnavailable", "read_item"]

ITEM_TIMEOUT_S = 1.5
VALUE_TIMEOUT_S = 0.6  # a value's own locators are evidence only: a short wait


class ItemUnavailable(LookupError):
    """The values read together from one item cannot be read together again on this page."""


READ_ITEM_JS = r"""(args) => {
  const trees = __TREES__;
  const norm = (s) => (s == null ? '' : String(s)).replace(/\s+/g, ' ').trim();
  const fold = (s) => norm(s).toLowerCase();
  const roots = trees(false);
  const byMark = (m) => {
    if (m == null) return null;
    for (const r of roots) { const el = r.querySelector('[data-wb-idx="' + m + '"]'); if (el) return el; }
    return null;
  };
  const classes = (s) => new Set(norm(s).split(' ').filter(Boolean));
  function sim(a, b) {
    const A = classes(a), B = classes(b);
    if (!A.size && !B.size) return 1;
    if (!A.size || !B.size) return 0;
    let n = 0;
    for (const x of A) if (B.has(x)) n++;
    return n / (A.size + B.size - n);
  }
  const text = (el) => norm(el.innerText || el.textContent);
  const tag = args.tag;
  const c0 = byMark(args.cmark);
  const hasTwin = (el) => { for (const s of (el.parentNode ? el.parentNode.children : [])) {
    if (s !== el && s.localName === el.localName) return true; } return false; };
  // The item holding `el`: a sibling of the located item (same tag), else the nearest repeating ancestor
  // with the recorded item's tag.
  function itemOf(el) {
    for (let x = el; x && x.nodeType === 1; x = x.parentNode) {
      if (c0 ? (x.parentNode === c0.parentNode && x.localName === c0.localName) : (x.localName === tag && hasTwin(x))) {
        return x;
      }
    }
    return null;
  }
  const members = args.members.map((m) => ({ ...m, el: m.elsewhere ? null : byMark(m.mark) }));
  let anchor = c0;
  for (const m of members) if (!anchor && m.el) anchor = itemOf(m.el);
  if (!anchor) return { ok: false, why: 'the item is not on the page' };
  let items = [...anchor.parentNode.children].filter((x) => x.localName === anchor.localName);
  const alike = items.filter((x) => sim(x.getAttribute('class'), anchor.getAttribute('class')) >= 0.5);
  if (alike.length) items = alike;
  const place = (x) => (x === 'elsewhere' ? 'outside the list'
    : 'item ' + (items.indexOf(x) + 1) + ' of ' + items.length);
  __ITEM_PATH__
  function trailing(a, b) {
    const A = a.split('/').reverse(), B = b.split('/').reverse();
    let n = 0;
    while (n < A.length && n < B.length && A[n] === B[n]) n++;
    return n;
  }
  // The element in `item` at a value's recorded place: its path, class, id and (when it is inside) the element
  // its own locators found. null: none; 'ambiguous': two fit as well.
  function resolve(item, d, hint) {
    if (!d.path) return item;
    const scored = [];
    for (const c of item.querySelectorAll('*')) {
      if (c.localName !== d.tag) continue;
      const p = path(item, c) || '';
      let s = p === d.path ? 20 : 4 * Math.min(trailing(p, d.path), 4);
      s += Math.round(10 * sim(c.getAttribute('class'), d.class));
      if (d.id && c.id === d.id) s += 15;
      if (hint && c === hint) s += 10;
      scored.push({ c, s });
    }
    scored.sort((a, b) => b.s - a.s);
    if (!scored.length) return null;
    if (scored.length > 1 && scored[0].s - scored[1].s < 5) return 'ambiguous';
    return scored[0].c;
  }
  const shows = (el, k) => {
    const t = fold(text(el));
    return t === fold(k.value) || t === fold(k.before + k.value + k.after);
  };
  const evidence = [];
  const twins = [...anchor.parentNode.children].filter((x) => x.localName === anchor.localName);
  if (args.position && twins[args.position - 1]) evidence.push(['its place in the list', twins[args.position - 1]]);
  if (c0) evidence.push(['its own locators', c0]);
  for (const m of members) {
    if (m.elsewhere) evidence.push([m.label, 'elsewhere']);
    else if (m.el) evidence.push([m.label, itemOf(m.el) || 'elsewhere']);
  }
  let chosen = null;
  if (args.keys.length) {
    const matching = items.filter((it) => args.keys.every((k) => {
      const el = resolve(it, k, null);
      return el && el !== 'ambiguous' && shows(el, k);
    }));
    const wanted = args.keys.map((k) => JSON.stringify(k.value)).join(' and ');
    if (!matching.length) return { ok: false, why: 'no item of the list (' + items.length + ') shows ' + wanted };
    if (matching.length === 1) chosen = matching[0];
    else {
      const picked = [...new Set(evidence.map((e) => e[1]).filter((x) => matching.includes(x)))];
      if (picked.length !== 1) return { ok: false, why: matching.length + ' items show ' + wanted };
      chosen = picked[0];
    }
  } else {
    const distinct = [...new Set(evidence.map((e) => e[1]))];
    if (!distinct.length) return { ok: false, why: 'the item is not on the page' };
    if (distinct.length > 1 || distinct[0] === 'elsewhere') {
      return { ok: false, why: 'their locators point at different items ('
        + evidence.map(([label, it]) => label + ': ' + place(it)).join('; ') + ')' };
    }
    chosen = distinct[0];
  }
  const out = [];
  for (const m of members) {
    const el = resolve(chosen, m, m.el);
    if (!el || el === 'ambiguous') {
      return { ok: false, why: m.label + (el ? ' is ambiguous' : ' is not') + ' in ' + place(chosen) };
    }
    out.push(text(el));
  }
  return { ok: true, texts: out, item: items.indexOf(chosen) + 1, items: items.length };
}""".replace("__TREES__", TREES_JS).replace("__ITEM_PATH__", ITEM_PATH_JS)


def _position(locators: dict[str, Any]) -> int:
    """The item's place among its like siblings when recorded (1 = first), from its xpath's last step."""
    m = re.search(r"\[(\d+)\]$", str(locators.get("xpath") or ""))
    return int(m.group(1)) if m else 1


async def _located(page: Page, locators: Any, mark: int, timeout_s: float) -> Located | None:
    """The element these locators find now (a short, bounded wait), or None."""
    if not isinstance(locators, dict):
        return None
    try:
        return await locate(page, locators, mark=mark, timeout_s=timeout_s, mode="value")
    except LocateError:
        return None


async def read_item(page: Page, item: dict[str, Any], members: list[dict[str, Any]], keys: list[dict[str, Any]],
                    *, marks: Iterator[int]) -> list[str]:
    """The texts of `members` (page values with their `item` place and `locators`), read inside one item of
    `page`: the item showing the `keys` (each {path, tag, class, id, value, before, after}), else the one every
    locator agrees on; ItemUnavailable otherwise."""
    where = element_label(item.get("locators") or {})
    container = await _located(page, item.get("locators"), next(marks), ITEM_TIMEOUT_S)
    frame: Frame | None = container.frame if container else None
    described = []
    for value in members:
        found = await _located(page, value.get("locators"), next(marks), VALUE_TIMEOUT_S)
        frame = frame or (found.frame if found else None)
        elsewhere = found is not None and found.frame is not frame
        described.append({**value["item"], "label": repr(value.get("example")),
                          "mark": found.mark if found and not elsewhere else None, "elsewhere": elsewhere})
    if frame is None:
        raise ItemUnavailable(f"the item they were read from ({where}) is not on the page")
    locators = item.get("locators") or {}
    args = {"tag": locators.get("tag") or "", "cmark": container.mark if container else None,
            "position": _position(locators), "members": described, "keys": keys}
    try:
        answer = await frame.evaluate(READ_ITEM_JS, args)
    except Exception as exc:  # the page navigated away meanwhile
        raise ItemUnavailable(f"the page changed while it was read ({str(exc).splitlines()[0][:200]})") from None
    if not answer or not answer.get("ok"):
        raise ItemUnavailable(str((answer or {}).get("why") or "the item could not be read"))
    return [str(t) for t in answer["texts"]]
