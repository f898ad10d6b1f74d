"""Page observation: what the model reads (indexed elements + visible text) and how indices map back.

`observe(page)` runs one script (agent/dom.js) that walks the DOM, same-origin iframes and shadow
roots (closed ones too, through the init script's handles) included, and renders one line per
visible interactive element,
`[N]<tag attr=value>text`, interleaved with the page's visible text in reading order. Each indexed
element is marked `data-wb-idx="N"`; the element -> index map lives in a WeakMap on the top window,
so an element keeps its index for the life of its document. `find_element(page, N)` turns an index
back into a Playwright locator; `describe_element` records locators for replay; `page_text` is the
whole page as markdown-ish text for extract/find_text.

Errors: `ElementNotFound` (a LookupError) when an index is gone; nothing else escapes `observe`,
which always returns a non-empty observation.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Frame, Locator, Page
from pydantic import BaseModel

from agent.engine.settle import ACTIVITY_SCRIPT

__all__ = [
    "INIT_SCRIPT",
    "SELECTOR_ENGINE_JS",
    "ElementNotFound",
    "Observation",
    "aim_at",
    "cover_of",
    "describe_element",
    "find_element",
    "observe",
    "page_text",
]

# Loaded once: the walker is a function expression that page.evaluate calls with one argument.
WALKER_JS = (Path(__file__).with_name("dom.js")).read_text(encoding="utf-8")

# Rendered band around the viewport, in viewport heights: half above, one below.
VIEW_ABOVE = 0.5
VIEW_BELOW = 1.0
MAX_FRAMES = 50  # frames searched by find_element
TEXT_TIME_BUDGET_MS = 2_500
OUTER_SLACK_S = 5.0  # seconds observe() waits beyond its time budget before giving up on the page

# Runs before any page script, in every frame, from an isolated closure:
# - remembers elements that get pointer listeners, so the walk can index script-only clickables;
# - keeps a handle on every shadow root, closed ones included (`attachShadow({mode: "closed"})` hides
#   them from the DOM): the walk reads them through the map, element lookup searches the list.
# Both live on non-enumerable properties (invisible to `for (k in window)`) and hold elements weakly;
# any failure leaves the page's own addEventListener and attachShadow untouched.
INIT_SCRIPT = r"""(() => {
  try {
    if (Object.prototype.hasOwnProperty.call(window, '__wbClick')) return;
    const seen = new WeakSet();
    Object.defineProperty(window, '__wbClick', { value: seen, enumerable: false });
    const kinds = new Set(['click', 'mousedown', 'pointerdown', 'mouseup', 'touchstart']);
    const proto = EventTarget.prototype;
    const original = proto.addEventListener;
    proto.addEventListener = function addEventListener(type, listener, options) {
      try { if (this && this.nodeType === 1 && kinds.has(type)) seen.add(this); } catch (e) {}
      return original.call(this, type, listener, options);
    };
    const roots = { map: new WeakMap(), list: [], live: 0 };
    Object.defineProperty(window, '__wbShadow', { value: roots, enumerable: false });
    const attach = Element.prototype.attachShadow;
    if (attach) {
      Element.prototype.attachShadow = function attachShadow(init) {
        const root = attach.call(this, init);
        try {
          roots.map.set(this, root);
          roots.list.push(new WeakRef(root));
          if (roots.list.length > 2 * roots.live + 64) {  // drop collected roots now and then
            roots.list = roots.list.filter((ref) => ref.deref());
            roots.live = roots.list.length;
          }
        } catch (e) {}
        return root;
      };
    }
  } catch (e) {}
})();""" + "\n" + ACTIVITY_SCRIPT  # what the page starts (timers, requests, navigations): see agent.engine.settle

# A Playwright selector engine, `wbidx=N`: the element marked data-wb-idx="N" in the document or in
# any shadow root the init script saw (Playwright's css pierces open roots only, not closed ones).
# It runs in the page's main world to read that list; registered once per Playwright (agent.engine.browser).
SELECTOR_ENGINE = "wbidx"
SELECTOR_ENGINE_JS = r"""({
  queryAll(root, selector) {
    const css = '[data-wb-idx="' + String(selector).replace(/[^0-9]/g, '') + '"]';
    const out = Array.from(root.querySelectorAll(css));
    const doc = root.nodeType === 9 ? root : null;
    const reg = doc && doc.defaultView ? doc.defaultView.__wbShadow : null;
    if (reg) {
      for (const ref of reg.list) {
        const sr = ref.deref();
        if (!sr || !sr.host.isConnected || sr.host.ownerDocument !== doc) continue;
        for (const el of sr.querySelectorAll(css)) out.push(el);
      }
    }
    return out;
  },
  query(root, selector) { return this.queryAll(root, selector)[0] || null; },
})"""


class ElementNotFound(LookupError):
    """An index that no longer names an element on the page; the model should observe again."""

    def __init__(self, index: int) -> None:
        super().__init__(
            f"element [{index}] is not on the page any more; read the new page state and pick a current index"
        )
        self.index = index


class Observation(BaseModel, frozen=True):
    """What the model sees of a page at one moment."""

    url: str
    title: str
    text: str  # the rendered lines the model reads
    element_count: int  # indexed interactive elements included
    pixels_above: int  # scrollable content outside what was rendered
    pixels_below: int
    truncated: bool  # hit the time or size bound
    elapsed_ms: float


_NAVIGATING = ("Execution context was destroyed", "Cannot find context", "navigat")
# A navigation can destroy the script's context more than once (commit, then a client redirect).
NAVIGATION_RETRIES = 3


async def observe(page: Page, *, max_chars: int = 30_000, time_budget_ms: int = 600) -> Observation:
    """Render the page for the model: indexed interactive elements and visible text, bounded."""
    t0 = time.perf_counter()
    args = {
        "mode": "observe",
        "maxChars": max_chars,
        "timeBudgetMs": time_budget_ms,
        "above": VIEW_ABOVE,
        "below": VIEW_BELOW,
    }
    # The script bounds itself once it runs; this outer bound covers the wait for the page's main
    # thread, which a freshly loaded huge page keeps busy for seconds, and a page stuck in a loop.
    outer = time_budget_ms / 1000 + OUTER_SLACK_S
    raw: dict[str, Any] | None = None
    for attempt in range(NAVIGATION_RETRIES + 1):
        try:
            raw = await asyncio.wait_for(page.evaluate(WALKER_JS, args), timeout=outer)
            if not (raw and raw.get("loading")) or attempt == NAVIGATION_RETRIES:
                break
            await _parsed(page)  # an empty document still loading: the new page, once parsed
            continue
        except TimeoutError:
            break
        except Exception as exc:
            if attempt < NAVIGATION_RETRIES and any(s in str(exc) for s in _NAVIGATING):
                await _parsed(page)  # the page navigated under us: read the new document once parsed
                continue
            break
    elapsed = (time.perf_counter() - t0) * 1000
    if raw is not None and raw.get("text"):
        return Observation(
            url=raw.get("url") or page.url,
            title=raw.get("title") or "",
            text=raw["text"][:max_chars],
            element_count=int(raw.get("count") or 0),
            pixels_above=int(raw.get("above") or 0),
            pixels_below=int(raw.get("below") or 0),
            truncated=bool(raw.get("truncated")),
            elapsed_ms=elapsed,
        )
    text = await _inner_text(page, max_chars)
    return Observation(
        url=page.url,
        title=await _title(page),
        text=text or "(the page did not answer in time; wait, then observe again)",
        element_count=0,
        pixels_above=0,
        pixels_below=0,
        truncated=True,
        elapsed_ms=(time.perf_counter() - t0) * 1000,
    )


async def _parsed(page: Page) -> None:
    """Wait (bounded) for the current document to be parsed."""
    try:
        await page.wait_for_load_state("domcontentloaded", timeout=3_000)
    except Exception:
        pass


async def _inner_text(page: Page, max_chars: int) -> str:
    """The body's innerText, bounded in size and time; empty when the page does not answer."""
    try:
        text = await asyncio.wait_for(
            page.evaluate(
                "(n) => { const b = document.body || document.documentElement;"
                " return b ? (b.innerText || b.textContent || '').slice(0, n) : ''; }",
                max_chars,
            ),
            timeout=1.5,
        )
    except Exception:
        return ""
    lines = (" ".join(line.split()) for line in str(text).splitlines())
    return "\n".join(line for line in lines if line)[:max_chars]


async def _title(page: Page) -> str:
    """The page title, or empty when the page does not answer within a second."""
    try:
        return await asyncio.wait_for(page.title(), timeout=1.0)
    except Exception:
        return ""


async def page_text(page: Page, *, max_chars: int = 60_000) -> str:
    """The whole page's visible text (markdown-ish, links as [text](href)), for extract/find_text."""
    args = {
        "mode": "text",
        "maxChars": max_chars,
        "timeBudgetMs": TEXT_TIME_BUDGET_MS,
        "above": VIEW_ABOVE,
        "below": VIEW_BELOW,
    }
    try:
        raw = await asyncio.wait_for(
            page.evaluate(WALKER_JS, args), timeout=TEXT_TIME_BUDGET_MS / 1000 + OUTER_SLACK_S
        )
        text = str(raw.get("text") or "")[:max_chars]
    except Exception:
        text = ""
    if not text:
        text = await _inner_text(page, max_chars) or "(empty page)"
    return text


async def find_element(page: Page, index: int) -> Locator:
    """The locator of the element shown as [index] in the last observation (main frame, then iframes;
    css first, which pierces open shadow roots, then the `wbidx` engine, which sees closed ones too)."""
    frames: list[Frame] = [page.main_frame] + [f for f in page.frames if f is not page.main_frame]
    for selector in (f'[data-wb-idx="{int(index)}"]', f"{SELECTOR_ENGINE}={int(index)}"):
        for frame in frames[:MAX_FRAMES]:
            if frame.is_detached():
                continue
            locator = frame.locator(selector)
            try:
                # count() > 0 means the element is still attached to a live document
                if await locator.count() > 0:
                    return locator.first
            except Exception:  # a frame that navigated or closed meanwhile; an engine not registered
                continue
    raise ElementNotFound(index)


async def cover_of(locator: Locator) -> dict[str, Any] | None:
    """What a click on the element would reach: None (the element itself, at its centre or at another
    point that shows), {"disabled": True}, {"out": True} (out of view), {"label": True} (its own label
    takes the click) or {"by": "<div id=cookie-wall>We use cookies…"} (an overlay hides every point)."""
    return await locator.evaluate(f"(el, args) => ({WALKER_JS})({{...args, el}})",
                                  {"mode": "cover", "maxChars": 1000, "timeBudgetMs": 100, "above": VIEW_ABOVE,
                                   "below": VIEW_BELOW}, timeout=3_000)


# The element marked [N] in the top document or in any shadow root of it (closed ones through the init
# script's list), as the `wbidx` selector engine finds it; null when it is in a frame.
_BY_INDEX_JS = r"""(n) => {
  const css = '[data-wb-idx="' + n + '"]';
  const found = document.querySelector(css);
  if (found) return found;
  const reg = window.__wbShadow;
  for (const ref of reg ? reg.list : []) {
    const sr = ref.deref();
    if (!sr || !sr.host.isConnected || sr.host.ownerDocument !== document) continue;
    const el = sr.querySelector(css);
    if (el) return el;
  }
  return null;
}"""


async def aim_at(locator: Locator, *, index: int | None = None) -> dict[str, Any]:
    """One evaluate before a click or hover: what `cover_of` says, plus where to click when the element takes it
    (x, y in the top window's viewport, `top` False when a cross-origin frame hides the way up; dx, dy from the
    element's top-left corner; `partly` when its centre is covered), `opensTab`, `moving` (an animation moves
    it), and its locators for replay (`describe_element`) under "locators". With `index`, an element of the
    top document is reached by its mark, without the locator's own round trips (a frame's through the locator)."""
    args = {"mode": "aim", "maxChars": 1000, "timeBudgetMs": 100, "above": VIEW_ABOVE, "below": VIEW_BELOW}
    aim = f"Object.assign(({WALKER_JS})({{...args, el}}), {{locators: ({DESCRIBE_JS})(el)}})"
    if index is not None:
        found = await asyncio.wait_for(locator.page.main_frame.evaluate(
            f"(args) => {{ const el = ({_BY_INDEX_JS})(args.index); return el ? {aim} : null; }}",
            {**args, "index": int(index)}), timeout=3.0)
        if found is not None:
            return found
    return await locator.evaluate(f"(el, args) => {aim}", args, timeout=3_000)


# Scroll the window; app layouts whose document does not scroll get their biggest scroll box scrolled.
SCROLL_PAGE_JS = """(f) => {
  const s = window.scrollY; window.scrollBy(0, window.innerHeight * f);
  if (window.scrollY !== s) return window.scrollY - s;
  let best = null, room = 0;
  for (const el of document.querySelectorAll('body *')) {
    const extra = el.scrollHeight - el.clientHeight;
    if (extra > room && el.clientHeight > 100 && /(auto|scroll)/.test(getComputedStyle(el).overflowY)) {
      best = el; room = extra;
    }
  }
  if (!best) return 0;
  const t = best.scrollTop; best.scrollBy(0, best.clientHeight * f); return best.scrollTop - t;
}"""


# The options of a <select>, or of the listbox an ARIA combobox controls.
OPTIONS_JS = """el => {
  if (el.tagName === 'SELECT') return Array.from(el.options).map(o => o.text.trim());
  const id = el.getAttribute('aria-controls') || el.getAttribute('aria-owns');
  const box = (id && document.getElementById(id)) || el.querySelector('[role=listbox]') || el;
  return Array.from(box.querySelectorAll('[role=option]')).map(o => (o.innerText || o.textContent).trim());
}"""


# One evaluate in the element's own frame: everything a replay needs to find it again.
DESCRIBE_JS = r"""(el) => {
  const norm = (s) => (s || '').replace(/\s+/g, ' ').trim();
  const clip = (s, n) => (s.length > n ? s.slice(0, n) : s);
  const generatedId = new RegExp('\\d{4,}|^:|^[0-9]|[0-9a-f]{10,}'
    + '|^(ember|ext-gen|yui_|gwt-|mui-|radix-|headlessui-|react-aria|rc[-_]|__)', 'i');
  const stableId = (id) => id.length <= 40 && !generatedId.test(id);
  const isShadow = (root) => root && root.nodeType === 11 && !!root.host;
  function xpath(node) {
    const parts = [];
    for (let n = node; n && n.nodeType === 1; n = n.parentNode) {
      const tag = n.localName;
      let i = 1, same = 0;
      for (let s = n.parentNode && n.parentNode.firstElementChild; s; s = s.nextElementSibling) {
        if (s.localName === tag) { same++; if (s === n) i = same; }
      }
      const name = n.namespaceURI === 'http://www.w3.org/1999/xhtml' ? tag : "*[name()='" + tag + "']";
      parts.unshift(same > 1 ? name + '[' + i + ']' : name);
    }
    return '/' + parts.join('/');
  }
  function cssIn(node) {
    // css path inside node's own tree (document or shadow root)
    const root = node.getRootNode();
    const parts = [];
    for (let n = node; n && n.nodeType === 1; n = n.parentElement) {
      if (n.id && stableId(n.id)) {
        const sel = '#' + CSS.escape(n.id);
        let unique = false;
        try { unique = root.querySelectorAll(sel).length === 1; } catch (e) {}
        if (unique) { parts.unshift(sel); break; }
      }
      const tag = n.localName;
      let i = 1, same = 0;
      const p = n.parentNode;
      for (let s = p && p.firstElementChild; s; s = s.nextElementSibling) {
        if (s.localName === tag) { same++; if (s === n) i = same; }
      }
      const esc = /^[a-z][a-z0-9-]*$/.test(tag) ? tag : CSS.escape(tag);
      parts.unshift(same > 1 ? esc + ':nth-of-type(' + i + ')' : esc);
    }
    return parts.join(' > ');
  }
  function css(node) {
    // Playwright's css pierces open shadow roots through the descendant combinator
    const root = node.getRootNode();
    const own = cssIn(node);
    return isShadow(root) ? css(root.host) + ' ' + own : own;
  }
  const tag = el.localName;
  const attr = (k) => el.getAttribute(k);
  const type = tag === 'input' ? (el.type || 'text') : '';
  function implicitRole() {
    switch (tag) {
      case 'a': case 'area': return el.hasAttribute('href') ? 'link' : null;
      case 'button': return 'button';
      case 'summary': return 'button';
      case 'select': return (el.multiple || el.size > 1) ? 'listbox' : 'combobox';
      case 'textarea': return 'textbox';
      case 'option': return 'option';
      case 'img': return attr('alt') === '' ? 'presentation' : 'img';
      case 'h1': case 'h2': case 'h3': case 'h4': case 'h5': case 'h6': return 'heading';
      case 'li': return 'listitem';
      case 'ul': case 'ol': return 'list';
      case 'nav': return 'navigation';
      case 'form': return 'form';
      case 'table': return 'table';
      case 'dialog': return 'dialog';
      case 'input':
        if (el.hasAttribute('list') && /^(text|search|email|tel|url)$/.test(type)) return 'combobox';
        return ({ checkbox: 'checkbox', radio: 'radio', range: 'slider', number: 'spinbutton', search: 'searchbox',
          submit: 'button', button: 'button', reset: 'button', image: 'button', email: 'textbox', tel: 'textbox',
          text: 'textbox', url: 'textbox' })[type] || null;
    }
    return null;
  }
  const explicit = norm(attr('role')).split(' ')[0];
  const role = explicit || implicitRole();
  const root = el.getRootNode();
  const byId = (id) => (root.getElementById ? root.getElementById(id) : document.getElementById(id));
  function name() {
    const by = attr('aria-labelledby');
    if (by) {
      const s = norm(by.split(/\s+/)
        .map((id) => { const t = id && byId(id); return t ? t.textContent : ''; }).join(' '));
      if (s) return s;
    }
    const aria = norm(attr('aria-label'));
    if (aria) return aria;
    if (el.labels && el.labels.length) {
      const s = norm(Array.from(el.labels).map((l) => l.innerText || l.textContent).join(' '));
      if (s) return s;
    }
    if (tag === 'img' || type === 'image') { const a = norm(attr('alt')); if (a) return a; }
    if (tag === 'input' && /^(submit|button|reset)$/.test(type)) {
      return norm(el.value) || (type === 'submit' ? 'Submit' : type === 'reset' ? 'Reset' : '');
    }
    const fromContent = new RegExp('^(button|link|tab|option|menuitem|menuitemcheckbox|menuitemradio|treeitem|heading|'
      + 'cell|gridcell|columnheader|rowheader|checkbox|radio|switch|tooltip|listitem)$');
    if (role && fromContent.test(role) && !/^(input|select|textarea)$/.test(tag)) {
      const s = norm(el.innerText || el.textContent);
      if (s) return s;
      const img = el.querySelector('img[alt]');
      if (img && norm(img.alt)) return norm(img.alt);
      const t = el.querySelector('svg title');
      if (t && norm(t.textContent)) return norm(t.textContent);
    }
    return norm(attr('title')) || norm(attr('placeholder')) || '';
  }
  const attributes = {};
  for (const k of ['id', 'name', 'type', 'placeholder', 'aria-label', 'title', 'href', 'data-testid', 'class']) {
    const v = attr(k);
    if (v !== null && v !== '') attributes[k] = k === 'class' ? norm(v) : v;
  }
  if ((tag === 'button' && attr('value')) || (tag === 'input' && /^(submit|button|reset)$/.test(type) && el.value)) {
    attributes.value = tag === 'button' ? attr('value') : el.value;
  }
  const frames = [];
  try {
    let w = el.ownerDocument.defaultView;
    while (w && w !== w.top) {
      const fe = w.frameElement;  // null when the parent is cross-origin
      if (!fe) break;
      frames.unshift(css(fe));
      w = w.parent;
    }
  } catch (e) { /* a cross-origin ancestor ends the chain */ }
  return {
    xpath: xpath(el),
    css: css(el),
    role: role || null,
    name: clip(name(), 100),
    text: clip(tag === 'select' ? norm(Array.from(el.selectedOptions || []).map((o) => o.text).join(', '))
      : norm(el.innerText || ''), 100),
    tag,
    attributes,
    frame: frames,
    shadow: isShadow(root),
  };
}"""


async def describe_element(locator: Locator) -> dict[str, Any]:
    """Locators for replay: xpath, css, role + accessible name, text, tag, key attributes, frames, shadow."""
    return await locator.evaluate(DESCRIBE_JS, timeout=5_000)
