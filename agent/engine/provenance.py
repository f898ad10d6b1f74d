"""Where a run's result came from: the page elements that showed its values.

When an agent run succeeds, `trace_result()` splits its result (text or JSON) into the parts the
agent read off a page and its own wording. Each page value becomes a reference `{{page:N}}` in a
template, with what a replay needs to read it again: the element's locators on the final page, the
text around the value in that element (a label such as "Order number: "), how the agent wrote it
(upper-cased, lower-cased, title-cased) and its type. A value seen only on an earlier page keeps the
step it was seen on and no locators: a replay cannot read it again and must not reuse it.

What counts as read off a page, in any case and spacing: an element's whole text (punctuation
around it trimmed), the value after "Label: " in an element, any token holding a digit inside an
element's text, a JSON leaf found in an element's text; on earlier pages, a line of the page's text,
the value after "Label: " and digit tokens. Everything else is the agent's own wording, kept as is.

Elements inside shadow roots (open or closed) and same-origin iframes count like any other. Values
read from one item of a page (a list item, a table row, a card: the lowest common ancestor of their
elements, or its nearest ancestor that repeats) are grouped with that item, so that a replay reads
them again inside one item (agent.workflows.items).

`trace_result` never raises for a page it cannot read: the caller keeps the result without sources.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page

from agent.engine.page import DESCRIBE_JS

__all__ = ["PAGE_REF_RE", "TREES_JS", "describe_text", "number_pattern", "page_texts", "trace_result"]

PAGE_REF_RE = re.compile(r"\{\{page:(\d{1,4})\}\}")
MAX_RESULT_CHARS = 20_000
MAX_VALUES = 200
_TOKEN_RE = re.compile(r"[^\s\"'“”‘’()\[\]{}<>]*\d[^\s\"'“”‘’()\[\]{}<>]*")
_PUNCT = " .,;:!?\"'“”‘’()[]«»"
_ELEMENT_PREFIX_RE = re.compile(r"^\s*(?:\[\d+\]<[^>]*>|#+\s)")

# Every tree a value can sit in, as one JS function: the document, its shadow roots (closed ones through
# the init script's registry, agent.engine.page) and, with `frames`, same-origin iframes, recursively; bounded.
TREES_JS = r"""function trees(frames) {
  const out = [];
  const seen = new Set();
  (function add(root, win, depth) {
    if (!root || seen.has(root) || out.length >= 300 || depth > 8) return;
    seen.add(root);
    out.push(root);
    let reg = null;
    try { reg = win && win.__wbShadow; } catch (e) { /* a window that went away */ }
    for (const el of root.querySelectorAll('*')) {
      let sr = el.shadowRoot;
      if (!sr && reg) { try { sr = reg.map.get(el) || null; } catch (e) { sr = null; } }
      if (sr) add(sr, win, depth + 1);
      if (frames && (el.localName === 'iframe' || el.localName === 'frame')) {
        try {
          const d = el.contentDocument;
          if (d) add(d, el.contentWindow, depth + 1);
        } catch (e) { /* a cross-origin frame */ }
      }
    }
  })(document, window, 0);
  return out;
}"""

TEXTS_JS = r"""(args) => {
  // Short texts of the page's elements (the smallest element holding each), for finding result values:
  // the document's, its shadow roots' (open or closed) and its same-origin iframes'.
  const trees = __TREES__;
  const norm = (s) => (s == null ? '' : String(s)).replace(/\s+/g, ' ').trim();
  const out = [];
  let n = 0;
  for (const root of trees(true)) {
    const base = root.nodeType === 9 ? root.body : root;
    const all = base ? base.querySelectorAll('*') : [];
    for (const el of all) {
      if (out.length >= args.limit) break;
      if (/^(SCRIPT|STYLE|NOSCRIPT|TEMPLATE|svg|path)$/.test(el.tagName)) continue;
      let own = false;
      for (const c of el.childNodes) if (c.nodeType === 3 && norm(c.textContent)) { own = true; break; }
      if (!own && el.children.length) continue;
      if (!own && (el.shadowRoot || el.localName.includes('-'))) continue;  // a host: its text lives in its root
      const t = norm(el.innerText || el.textContent);
      if (!t || t.length > args.maxLen) continue;
      el.setAttribute('data-wb-val', String(n));
      // A leaf holds no other element with text: its text is one value, not a sentence built of several.
      let leaf = true;
      for (const c of el.children) if (norm(c.textContent)) { leaf = false; break; }
      out.push([t, leaf]);
      n++;
    }
  }
  return out;
}""".replace("__TREES__", TREES_JS)

DESCRIBE_MARKED_JS = r"""(args) => {
  const describe = __DESCRIBE__;
  const trees = __TREES__;
  for (const root of trees(true)) {
    const el = root.querySelector('[data-wb-val="' + args.n + '"]');
    if (el) return describe(el);
  }
  return null;
}""".replace("__DESCRIBE__", DESCRIBE_JS).replace("__TREES__", TREES_JS)

# Values read from one item of a page (a list item, a table row, a card) are grouped with that item:
# for each group, the item's locators and each value's place inside it, so that a replay reads them
# all inside one item and never answers with a mixture. Two values belong together when the lowest
# common ancestor of their elements has an ancestor-or-self that repeats (a sibling of its kind).
# An element's path inside its item ("div[1]/span[2]"): written at recording, followed at replay
# (agent.workflows.items), so both sides use this one function.
ITEM_PATH_JS = r"""function path(container, el) {
    const parts = [];
    for (let x = el; x !== container; x = x.parentNode) {
      if (!x || x.nodeType !== 1) return null;
      let i = 0, k = 0;
      for (const s of x.parentNode.children) if (s.localName === x.localName) { k++; if (s === x) i = k; }
      parts.unshift(x.localName + '[' + i + ']');
    }
    return parts.join('/');
  }"""

ITEMS_JS = r"""(args) => {
  const describe = __DESCRIBE__;
  const trees = __TREES__;
  const norm = (s) => (s == null ? '' : String(s)).replace(/\s+/g, ' ').trim();
  const roots = trees(true);
  const find = (n) => {
    for (const r of roots) { const el = r.querySelector('[data-wb-val="' + n + '"]'); if (el) return el; }
    return null;
  };
  const classes = (el) => new Set(norm(el.getAttribute('class')).split(' ').filter(Boolean));
  function alike(a, b) {
    if (a.localName !== b.localName) return false;
    if (/^(li|tr|article|dt|dd)$/.test(a.localName)) return true;
    const A = classes(a), B = classes(b);
    if (!A.size && !B.size) return true;
    let common = 0;
    for (const c of A) if (B.has(c)) common++;
    return common / (A.size + B.size - common) >= 0.5;
  }
  function repeats(el) {
    const p = el.parentNode;
    if (!p || el.localName === 'body' || el.localName === 'html') return false;
    for (const s of p.children) if (s !== el && alike(s, el)) return true;
    return false;
  }
  const chain = (el) => {
    const out = [];
    for (let x = el; x && x.nodeType === 1; x = x.parentNode) out.push(x);
    return out;
  };
  function common(els) {
    let shared = chain(els[0]);
    for (const el of els.slice(1)) { const up = new Set(chain(el)); shared = shared.filter((x) => up.has(x)); }
    return shared;  // lowest first
  }
  const item = (els) => common(els).find(repeats) || null;
  __ITEM_PATH__
  const els = args.ns.map(find);
  const parent = els.map((_, i) => i);
  const top = (i) => (parent[i] === i ? i : (parent[i] = top(parent[i])));
  for (let i = 0; i < els.length; i++) {
    for (let j = i + 1; j < els.length; j++) {
      if (els[i] && els[j] && els[i] !== els[j] && item([els[i], els[j]])) parent[top(i)] = top(j);
    }
  }
  const groups = new Map();
  els.forEach((el, i) => {
    if (!el) return;
    const g = top(i);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(i);
  });
  const out = [];
  for (const members of groups.values()) {
    const distinct = new Set(members.map((i) => els[i]));
    if (distinct.size < 2) continue;
    const container = item(members.map((i) => els[i]));
    if (!container) continue;
    out.push({ locators: describe(container), members: members.map((i) => {
      const el = els[i];
      return { n: args.ns[i], path: path(container, el), tag: el.localName, class: norm(el.getAttribute('class')),
               id: el.id || '' };
    }) });
  }
  return out;
}""".replace("__DESCRIBE__", DESCRIBE_JS).replace("__TREES__", TREES_JS).replace("__ITEM_PATH__", ITEM_PATH_JS)


async def page_elements(page: Page, *, limit: int = 4000, max_len: int = 160) -> list[tuple[str, bool]]:
    """(text, leaf) of the smallest elements holding text, each marked data-wb-val=i for `describe_text`;
    a leaf holds no other element with text."""
    found = await page.evaluate(TEXTS_JS, {"limit": limit, "maxLen": max_len})
    return [(str(t), bool(leaf)) for t, leaf in found]


async def page_texts(page: Page, *, limit: int = 4000, max_len: int = 160) -> list[str]:
    """Texts of the smallest elements holding text (each marked data-wb-val=i for `describe_text`)."""
    return [t for t, _leaf in await page_elements(page, limit=limit, max_len=max_len)]


async def describe_text(page: Page, n: int) -> dict[str, Any] | None:
    """Locators of the element that `page_texts` listed at position n."""
    found = await page.evaluate(DESCRIBE_MARKED_JS, {"n": n})
    return found if isinstance(found, dict) else None


def number_pattern(value: str) -> re.Pattern[str] | None:
    """A pattern for a number in the usual ways of writing it (5.49, 5,49, 1,234.00), or None if not a number."""
    m = re.fullmatch(r"([-+]?)(\d+)(?:[.,](\d+))?", value.strip())
    if not m:
        return None
    sign, whole, frac = m.groups()
    grouped = f"{int(whole):,}".replace(",", "[ ,.]?")
    body = re.escape(sign) + grouped + (f"[.,]{frac}" if frac else r"(?:[.,]0+)?")
    return re.compile(rf"(?<![\d.,]){body}(?![\d])")


def _norm(text: str) -> str:
    return " ".join(text.split())


def _pattern(value: str) -> re.Pattern[str]:
    """`value` in any case and spacing, not glued to letters or digits on either side."""
    number = number_pattern(value)
    if number is not None:
        return number
    body = r"\s+".join(re.escape(w) for w in value.split())
    lead = r"(?<![\w])" if value[:1].isalnum() else ""
    tail = r"(?![\w])" if value[-1:].isalnum() else ""
    return re.compile(lead + body + tail, re.IGNORECASE)


def _case(written: str, shown: str) -> str | None:
    """How the agent wrote a value it read: "upper", "lower", "title", or None (as shown)."""
    w, s = _norm(written), _norm(shown)
    if w == s:
        return None
    for name in ("upper", "lower", "title"):
        if w == getattr(s, name)() and s != getattr(s, name)():
            return name
    return None


def _may_hold(value: str, folded: str, digits: str) -> bool:
    """A cheap test before the regex: every word of `value` (or, for a number, its digits) is in the text."""
    if number_pattern(value) is not None:
        return re.sub(r"\D", "", value) in digits
    return all(word.casefold() in folded for word in value.split())


class _Unit:
    """A text that may stand in a result: `value`, inside its element (or page line) between before/after."""

    __slots__ = ("after", "before", "element", "step", "value")

    def __init__(self, value: str, before: str, after: str, element: int | None, step: int | None) -> None:
        self.value, self.before, self.after, self.element, self.step = value, before, after, element, step


def _element_units(texts: list[str], leaves: list[bool] | None = None) -> list[_Unit]:
    """Whole texts (punctuation trimmed) and the values after "Label: ": leaf elements' first (one value
    each, where a parent's text is a sentence built of several), longest first."""
    units: list[_Unit] = []
    order: list[int] = []
    for n, text in enumerate(texts):
        core = text.strip(_PUNCT)
        if len(core) >= 2 and any(c.isalnum() for c in core):
            start = text.index(core)
            units.append(_Unit(core, text[:start], text[start + len(core):], n, None))
        label, sep, rest = text.partition(": ")
        value = rest.strip(_PUNCT)
        if sep and value and any(c.isalnum() for c in value) and value != core:
            start = text.index(value, len(label) + 2)
            units.append(_Unit(value, text[:start], text[start + len(value):], n, None))
        order += [n] * (len(units) - len(order))
    leaf = leaves or [True] * len(texts)
    ranked = sorted(zip(units, order), key=lambda u: (not leaf[u[1]], -len(u[0].value)))
    return [unit for unit, _n in ranked]


def _line_units(step: int, page_text: str) -> list[_Unit]:
    """The same units from an earlier page's text (lines instead of elements: no locators)."""
    lines = [_norm(line) for line in page_text.splitlines()]
    units = _element_units([line for line in lines if line])
    for unit in units:
        unit.element, unit.step = None, step
    return units


class _Tracer:
    """Finds the page values of one result against the final page's elements and earlier pages' text."""

    def __init__(self, elements: list[tuple[str, bool]], seen: list[tuple[int, str]]) -> None:
        self.texts = [text for text, _leaf in elements]
        self.units = _element_units(self.texts, [leaf for _text, leaf in elements])
        # Every page seen, the final one too: a value shown there in no element of page_texts (a long
        # paragraph) was still read off a page, and a replay must not reuse it.
        self.earlier = [(step, "\n".join(_ELEMENT_PREFIX_RE.sub("", line) for line in text.splitlines()))
                        for step, text in seen]  # the pages' own text, without the observation's [n]<tag> marks
        self.earlier_units = [u for step, text in self.earlier for u in _line_units(step, text)]
        self.values: list[dict[str, Any]] = []

    def ref(self, written: str, unit: _Unit, core: str, kind: str) -> str:
        """Record one page value; its reference for the template."""
        if len(self.values) >= MAX_VALUES:
            raise OverflowError("too many page values")
        self.values.append({
            "element": unit.element, "step": unit.step, "before": unit.before, "after": unit.after,
            "case": _case(written, core), "type": kind, "example": written, "shown": core, "locators": None,
        })
        return f"{{{{page:{len(self.values) - 1}}}}}"

    def text(self, text: str) -> str:
        """`text` with each page value in it replaced by a reference."""
        spans: list[tuple[int, int, _Unit, str]] = []

        def free(s: int, e: int) -> bool:
            return not any(s < e2 and s2 < e for s2, e2, _u, _c in spans)

        folded = text.casefold()
        digits = re.sub(r"\D", "", text)
        # Whole texts first (the final page's, then earlier pages'): a number inside "Cable 2 m" belongs
        # to that name, not to an element "2" elsewhere.
        for unit in (*self.units, *self.earlier_units):
            if not _may_hold(unit.value, folded, digits):
                continue
            for m in _pattern(unit.value).finditer(text):
                if free(m.start(), m.end()):
                    spans.append((m.start(), m.end(), unit, unit.value))
        # Then tokens holding a digit inside a longer text: "Cart (2)" holds "2", "Total: €10.98" holds "10.98".
        for earlier in (False, True):
            for m in _TOKEN_RE.finditer(text):
                token = m.group(0).strip(_PUNCT)
                if not token:
                    continue
                s = m.start() + m.group(0).index(token)
                if not free(s, s + len(token)):
                    continue
                found = self._holding(token, earlier=earlier)
                if found is not None:
                    spans.append((s, s + len(token), found[0], found[1]))
        out, pos = [], 0
        for s, e, unit, core in sorted(spans, key=lambda x: x[0]):
            out.append(text[pos:s])
            out.append(self.ref(text[s:e], unit, core, "string"))
            pos = e
        out.append(text[pos:])
        return "".join(out)

    def _holding(self, token: str, *, earlier: bool) -> tuple[_Unit, str] | None:
        """The smallest element (or earlier page line) whose text holds `token`, with the text around it."""
        pattern = _pattern(token)
        if earlier:
            for step, page in self.earlier:
                if pattern.search(page):
                    return _Unit(token, "", "", None, step), token
            return None
        best: tuple[int, _Unit, str] | None = None
        for n, text in enumerate(self.texts):
            m = pattern.search(text)
            if m and (best is None or len(text) < best[0]):
                best = (len(text), _Unit(m.group(0), text[:m.start()], text[m.end():], n, None), m.group(0))
        return (best[1], best[2]) if best else None

    def leaf(self, value: Any) -> Any:
        """A JSON leaf: a whole page value (typed reference), a string with page values inside, or as is."""
        if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
            return value
        written = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
        kind = "integer" if isinstance(value, int) else "number" if isinstance(value, float) else "string"
        if not written.strip():
            return value
        key = _norm(written).casefold()
        for unit in self.units:
            if _norm(unit.value).casefold() == key:
                return self.ref(written, unit, unit.value, kind)
        found = self._holding(written.strip(), earlier=False)
        if found is None:
            earlier = next((u for u in self.earlier_units if _norm(u.value).casefold() == key), None)
            found = (earlier, earlier.value) if earlier else self._holding(written.strip(), earlier=True)
        if found is not None:
            return self.ref(written, found[0], found[1], kind)
        return self.text(value) if isinstance(value, str) else value

    def walk(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        return self.leaf(value)


async def trace_result(page: Page, value: Any, seen: list[tuple[int, str]]) -> dict[str, Any] | None:
    """{"template", "page_values"[, "items"]} for a run's result read on `page`; None when there is nothing
    to trace.

    `seen` is (step, page text) of every page the run observed, the final one last. Values found in the
    final page's elements (shadow roots, open or closed, and same-origin iframes included) carry their
    locators; values read from one item of a list ("items") say where in that item they sit.
    """
    if value is None or (isinstance(value, str) and (not value.strip() or len(value) > MAX_RESULT_CHARS)):
        return None
    tracer = _Tracer(await page_elements(page), seen)
    try:
        template = tracer.text(value) if isinstance(value, str) else tracer.walk(value)
    except OverflowError:
        return None
    elements = {}  # page value -> its element on the final page
    for i, item in enumerate(tracer.values):
        n = item.pop("element")
        if n is not None:
            item["locators"] = await describe_text(page, n)
            item["step"] = None  # the final page
            elements[i] = n
    traced: dict[str, Any] = {"template": template, "page_values": tracer.values}
    items = await _items(page, elements, tracer.values)
    if items:
        traced["items"] = items
    return traced


async def _items(page: Page, elements: dict[int, int], values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items (list items, rows, cards) that several page values were read from: each item's locators, and
    on each of those values its place in the item (`item`: group, path, tag, class, id)."""
    if len(elements) < 2:
        return []
    groups = await page.evaluate(ITEMS_JS, {"ns": sorted(set(elements.values()))})
    items: list[dict[str, Any]] = []
    for group in groups if isinstance(groups, list) else []:
        places = {int(m["n"]): m for m in group.get("members") or [] if m.get("path") is not None}
        owners = [i for i, n in elements.items() if n in places]
        if len(owners) < 2 or not isinstance(group.get("locators"), dict):
            continue
        for i in owners:
            m = places[elements[i]]
            values[i]["item"] = {"group": len(items), "path": m["path"], "tag": m["tag"], "class": m["class"],
                                 "id": m["id"]}
        items.append({"locators": group["locators"]})
    return items
