"""Finding a recorded element again: a scored cascade of its locators, run inside the page.

One script scores every plausible candidate (same tag, same kind of control, and whatever the
recorded id, test id, name, css and xpath point at, in the document and its shadow roots, closed
ones too) against the recorded locators: stable attributes (id, data-testid, name, placeholder, aria-label,
href), role + accessible name, text, css/xpath path and position among repeated siblings, class.
The best candidate wins when it scores enough, shows real evidence (not just "a button") and beats
the runner-up clearly; it is then marked `data-wb-idx=<mark>` so that `agent.engine.actions` can act on
it like on an observed element. Waiting is Playwright's `wait_for_function` with a bounded timeout:
no fixed sleeps. `read_text` re-reads a result value by the element that held it.

Errors: `LocateError` (the message says what was looked for and what came closest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Frame, Page

from agent.engine.page import DESCRIBE_JS
from agent.engine.provenance import TREES_JS

__all__ = ["FIRST_MARK", "LocateError", "Located", "locate"]

MIN_SCORE = 30
QUIET_MS = 800  # a loaded page unchanged this long will not show the element later
MIN_MARGIN = 6
VALUE_MIN_SCORE = 18
MAX_CANDIDATES = 1500
MAX_FRAMES = 20
FIRST_MARK = 1_000_001  # located elements are numbered from here: far above the indices observe() hands out


class LocateError(LookupError):
    """The recorded element could not be found (or not told apart from another) on the page."""


@dataclass(frozen=True)
class Located:
    """The element found: its mark (an index for agent.engine.actions), frame, score and why."""

    mark: int
    frame: Frame
    score: int
    why: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


FIND_JS = r"""(args) => {
  const describe = __DESCRIBE__;
  const R = args.loc || {};
  const RA = R.attributes || {};
  const VALUE = args.mode === 'value';
  const LIMIT = args.limit;
  const norm = (s) => (s == null ? '' : String(s)).replace(/\s+/g, ' ').trim();
  const low = (s) => norm(s).toLowerCase();
  const roots = (__TREES__)(false);  // the document and its shadow roots, closed ones too
  const pool = new Set();
  const add = (el) => { if (el && el.nodeType === 1 && pool.size < LIMIT) pool.add(el); };
  const q = (sel) => { for (const r of roots) { try { r.querySelectorAll(sel).forEach(add); } catch (e) { return; } } };
  const tag = low(R.tag);
  const role = low(R.role);
  const CLICK = 'a,button,input[type=submit],input[type=button],input[type=image],input[type=reset],' +
    '[role=button],[role=link],[role=menuitem],[role=tab],[role=option],summary,label,[onclick]';
  const FIELD = 'input:not([type=hidden]),textarea,select,[contenteditable=""],[contenteditable=true],' +
    '[role=textbox],[role=combobox],[role=searchbox],[role=spinbutton],[role=listbox]';
  const esc = (v) => { try { return CSS.escape(v); } catch (e) { return v; } };
  if (RA.id) q('#' + esc(RA.id));
  if (RA['data-testid']) q('[data-testid="' + esc(RA['data-testid']) + '"]');
  if (RA.name) q('[name="' + esc(RA.name) + '"]');
  if (R.css) q(R.css);
  if (R.xpath) {
    try {
      const it = document.evaluate(R.xpath, document, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
      for (let i = 0; i < Math.min(it.snapshotLength, 20); i++) add(it.snapshotItem(i));
    } catch (e) { /* an xpath the page no longer supports */ }
  }
  if (/^[a-z][a-z0-9-]*$/.test(tag)) q(tag);
  if (!VALUE) {
    const field = /^(textarea|select)$/.test(tag)
      || (tag === 'input' && !/^(submit|button|reset|image|checkbox|radio)$/.test(low(RA.type)))
      || /^(textbox|combobox|searchbox|spinbutton|listbox)$/.test(role);
    q(field ? FIELD : CLICK);
  }

  function visible(el) {
    try {
      if (!el.checkVisibility({ checkVisibilityCSS: true, visibilityProperty: true })) return false;
    } catch (e) { /* old engines */ }
    const r = el.getBoundingClientRect();
    return r.width > 0 || r.height > 0 || el.getClientRects().length > 0;
  }
  const words = (s) => new Set(low(s).split(/[^\p{L}\p{N}]+/u).filter(Boolean));
  function sim(a, b) {
    const A = words(a), B = words(b);
    if (!A.size || !B.size) return 0;
    let n = 0;
    for (const w of A) if (B.has(w)) n++;
    return n / Math.max(A.size, B.size);
  }
  function jaccard(a, b) {
    const A = new Set(norm(a).split(' ').filter(Boolean)), B = new Set(norm(b).split(' ').filter(Boolean));
    if (!A.size || !B.size) return 0;
    let n = 0;
    for (const w of A) if (B.has(w)) n++;
    return n / (A.size + B.size - n);
  }
  const sole = (xp) => (xp || '').replace(/\[1\]/g, '');  // li[1] of a list is li when it is the only one
  const indexed = (xp) => (xp || '').split('/').filter((s) => /\[\d+\]$/.test(s)).join('/');
  function hrefShape(h) {
    try {
      const u = new URL(h, location.href);
      return u.pathname + '?' + Array.from(new URLSearchParams(u.search).keys()).sort().join('&');
    } catch (e) { return null; }
  }
  const STRONG = new Set(['id', 'testid', 'name', 'placeholder', 'aria-label', 'title', 'href', 'href-shape',
    'accessible name', 'similar name', 'text', 'similar text', 'css', 'xpath', 'position']);
  function score(el) {
    let d;
    try { d = describe(el); } catch (e) { return null; }
    const A = d.attributes || {};
    let s = 0;
    const why = [];
    const plus = (n, w) => { if (n > 0) { s += n; why.push(w); } };
    if (RA.id && A.id === RA.id) plus(40, 'id');
    if (RA['data-testid'] && A['data-testid'] === RA['data-testid']) plus(40, 'testid');
    if (RA.name && A.name === RA.name) plus(25, 'name');
    if (RA.placeholder && norm(A.placeholder) === norm(RA.placeholder)) plus(15, 'placeholder');
    if (RA['aria-label'] && norm(A['aria-label']) === norm(RA['aria-label']) && !VALUE) plus(15, 'aria-label');
    if (RA.title && norm(A.title) === norm(RA.title) && !VALUE) plus(8, 'title');
    if (RA.href && A.href) {
      if (A.href === RA.href) plus(15, 'href');
      else if (hrefShape(A.href) === hrefShape(RA.href)) plus(6, 'href-shape');
    }
    if (RA.type && A.type === RA.type) plus(4, 'type');
    if (RA.value && A.value === RA.value) plus(5, 'value');
    if (tag && d.tag === tag) plus(6, 'tag');
    if (role && d.role === role) plus(6, 'role');
    if (!VALUE) {
      if (R.name && low(d.name) === low(R.name)) plus(25, 'accessible name');
      else if (R.name && d.name) {
        const x = sim(d.name, R.name); if (x >= 0.5) plus(Math.round(12 * x), 'similar name');
      }
      if (R.text && low(d.text) === low(R.text)) plus(15, 'text');
      else if (R.text && d.text) {
        const x = sim(d.text, R.text); if (x >= 0.5) plus(Math.round(6 * x), 'similar text');
      }
    }
    if (R.css && d.css === R.css) plus(12, 'css');
    if (R.xpath && sole(d.xpath) === sole(R.xpath)) {
      plus(12, 'xpath');
      // The first of a list that is now the only one: at the recorded place too.
      if (d.xpath !== R.xpath && indexed(R.xpath)) plus(8, 'position');
    } else if (R.xpath && indexed(R.xpath) && indexed(d.xpath) === indexed(R.xpath)) plus(8, 'position');
    if (RA.class && A.class) plus(Math.round(8 * jaccard(RA.class, A.class)), 'class');
    const strong = why.some((w) => STRONG.has(w));
    return { el, s, why, strong, d };
  }
  const scored = [];
  for (const el of pool) {
    if (!visible(el)) continue;
    const r = score(el);
    if (r && r.s > 0) scored.push(r);
  }
  scored.sort((a, b) => b.s - a.s);
  const best = scored[0], second = scored[1];
  const ok = !!best && best.strong && best.s >= args.min && (!second || best.s - second.s >= args.margin);
  if (args.wait && !ok) {
    // Keep polling while the page may still be building itself; give up early once it is loaded
    // and has not changed for a while (a static page will not grow the element later).
    const W = window;
    const now = performance.now();
    if (!W.__wbQuiet) {
      W.__wbQuiet = { last: now };
      try {
        new MutationObserver(() => { W.__wbQuiet.last = performance.now(); })
          .observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
      } catch (e) { /* no observer: the timeout still bounds the wait */ }
    }
    const quiet = now - W.__wbQuiet.last > args.quietMs;
    if (document.readyState === 'complete' && quiet) return { ok: false, settled: true };
    return null;  // wait_for_function polls again
  }
  if (ok && args.mark) best.el.setAttribute('data-wb-idx', String(args.mark));
  const brief = (r) => ({ score: r.s, why: r.why, tag: r.d.tag, name: norm(r.d.name).slice(0, 80),
                         text: norm(r.el.innerText || r.el.value || '').slice(0, 200) });
  return { ok, candidates: scored.length, top: scored.slice(0, 3).map(brief) };
}""".replace("__DESCRIBE__", DESCRIBE_JS).replace("__TREES__", TREES_JS)


async def _frame_for(page: Page, chain: list[str] | None) -> Frame | None:
    """The frame the element was recorded in (following its iframe selectors), if it is still there."""
    frame: Frame | None = page.main_frame
    for selector in chain or []:
        try:
            handle = await frame.query_selector(selector) if frame else None
            frame = await handle.content_frame() if handle else None
        except Exception:
            return None
        if frame is None:
            return None
    return frame


def element_label(locators: dict[str, Any]) -> str:
    """The element as a person would name it: `<button> 'Add to cart'` (tag, then its name or text)."""
    attrs = locators.get("attributes") or {}
    label = (locators.get("name") or locators.get("text") or attrs.get("placeholder") or attrs.get("name")
             or attrs.get("id") or "")
    return f"<{locators.get('tag') or 'element'}> {str(label)[:60]!r}".strip()



async def locate(page: Page, locators: dict[str, Any], *, mark: int, timeout_s: float = 3.0,
                 mode: str = "element") -> Located:
    """Find the recorded element, waiting (bounded) for it to appear; mark it `mark` for agent.engine.actions."""
    value_mode = mode == "value"
    args = {"loc": locators, "mark": mark, "mode": mode, "limit": MAX_CANDIDATES, "quietMs": QUIET_MS,
            "min": VALUE_MIN_SCORE if value_mode else MIN_SCORE, "margin": MIN_MARGIN, "wait": True}
    home = await _frame_for(page, locators.get("frame"))
    if home is not None:
        try:
            handle = await home.wait_for_function(FIND_JS, arg=args, polling=100, timeout=timeout_s * 1000)
            result = await handle.json_value()
            if result.get("ok"):
                top = (result.get("top") or [{}])[0]
                return Located(mark, home, int(top.get("score", 0)), list(top.get("why", [])), result)
        except Exception:
            pass  # not there in time (or the frame navigated): look everywhere once, then explain
    best: tuple[dict[str, Any], Frame] | None = None
    frames = [page.main_frame] + [f for f in page.frames if f is not page.main_frame]
    for frame in frames[:MAX_FRAMES]:
        if frame.is_detached():
            continue
        try:
            result = await frame.evaluate(FIND_JS, {**args, "wait": False, "mark": None})
        except Exception:
            continue
        if result and result.get("top") and (best is None or result["top"][0]["score"] > best[0]["top"][0]["score"]):
            best = (result, frame)
    if best is not None and best[0]["ok"]:
        result, frame = best
        marked = await frame.evaluate(FIND_JS, {**args, "wait": False})
        if marked and marked.get("ok"):
            top = marked["top"][0]
            return Located(mark, frame, int(top["score"]), list(top["why"]), marked)
    raise LocateError(_explain(locators, best[0] if best else None))


def _explain(locators: dict[str, Any], result: dict[str, Any] | None) -> str:
    what = element_label(locators)
    if not result or not result.get("top"):
        return f"no element like {what} on the page"
    top = result["top"]
    first = top[0]
    desc = f"<{first['tag']}> {first['name'] or first['text']!r} scored {first['score']} ({', '.join(first['why'])})"
    if len(top) > 1 and first["score"] - top[1]["score"] < MIN_MARGIN and first["score"] >= MIN_SCORE:
        second = top[1]
        return (f"{what} is ambiguous: {desc} and <{second['tag']}> {second['name'] or second['text']!r} "
                f"scored {second['score']}")
    return f"no element matches {what} well enough; closest: {desc}"


# ------------------------------------------------------------------ result values
READ_JS = r"""(mark) => {
  for (const root of (__TREES__)(false)) {  // a value may sit in a shadow root, open or closed
    const el = root.querySelector('[data-wb-idx="' + mark + '"]');
    if (el) return (el.innerText || el.textContent || '').replace(/\s+/g, ' ').trim();
  }
  return null;
}""".replace("__TREES__", TREES_JS)


async def read_text(page: Page, locators: dict[str, Any], *, mark: int, timeout_s: float = 1.5) -> str:
    """The text of the element these locators point at (found by structure, not by its old text)."""
    found = await locate(page, locators, mark=mark, timeout_s=timeout_s, mode="value")
    text = await found.frame.evaluate(READ_JS, found.mark)
    if text is None:
        raise LocateError(f"the element {element_label(locators)} vanished before it could be read")
    return text
