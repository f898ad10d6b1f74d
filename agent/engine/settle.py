"""Waiting for a page to settle after an action, on evidence: as long as it is still changing, no longer.

`settle(session)` ends as soon as two animation frames pass with no DOM mutation, no fetch/XHR the page
started since the action in flight, no timer it set since then about to fire within the bound, no
finite layout animation running and no navigation pending; it extends while any of these goes on, up
to a bound. It returns a `Settled` saying why it ended and how long it took.

A page that never stops costs the bound once per document. Timers and requests belong to the chain
they were started in, so a poll or an animation loop started by one action never holds the wait of a
later one. DOM mutations carry no such origin: when a wait hits the bound while the DOM still changes,
the nodes that kept mutating through its last part (a ticker, a carousel driven every frame) are
remembered on the page (`window.__wbRestless`) and later waits on the same document ignore their
mutations; when no such nodes stand out (churn everywhere), the document is marked restless and later
waits ignore its DOM mutations (they still wait for its requests, timers and navigations). A DOM that
changed in only one frame of that last part (a clock's tick) is neither reported nor learned. A request
still open at the bound (a long poll asked again as each answer comes) has its URL, without the query,
remembered the same way.

`ACTIVITY_SCRIPT` (part of the init script, agent.engine.page.INIT_SCRIPT) gives the page's own view of
what it started: it wraps setTimeout, fetch and XMLHttpRequest to count them, noting for each the
start of its chain (a timer set from a timer's callback belongs to the chain of that timer: a clock
re-arming itself since before the action is not the action's doing), and notes cross-document
navigations through the Navigation API.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # a type only: the browser imports the page's scripts, which import this module's
    from agent.engine.browser import BrowserSession

__all__ = ["ACTIVITY_SCRIPT", "CLICK_SETTLE_MS", "LOAD_WAIT_MS", "SETTLE_MAX_MS", "Settled", "settle"]

SETTLE_MAX_MS = 800  # the bound of one wait
CLICK_SETTLE_MS = 600  # a click's (and a select's): their effects are mostly synchronous
LOAD_WAIT_MS = 3_000  # a wait that sees a navigation begin gets this long in all for the new document

# Runs in every frame before the page's scripts (appended to agent.engine.page.INIT_SCRIPT).
ACTIVITY_SCRIPT = r"""(() => {
  try {
    const W = window;
    if (Object.prototype.hasOwnProperty.call(W, '__wbActivity')) return;
    const now = () => performance.now();
    const act = { timers: new Map(), fetches: new Map(), seq: 0, chain: null, leaving: null,
                  setTimeout: W.setTimeout.bind(W) };
    Object.defineProperty(W, '__wbActivity', { value: act, enumerable: false });
    const setT = W.setTimeout, clearT = W.clearTimeout, clearI = W.clearInterval;
    const LONGEST = 10000;  // a timer set further ahead never holds a wait (the bound is shorter)
    const root = () => (act.chain !== null ? act.chain : now());
    W.setTimeout = function setTimeout(fn, delay, ...rest) {
      let rec = null;
      try {
        const d = Number(delay) || 0;
        if (typeof fn === 'function' && d <= LONGEST) rec = { due: now() + Math.max(0, d), root: root() };
      } catch (e) { rec = null; }
      if (!rec) return setT.call(W, fn, delay, ...rest);
      let id = 0;
      const run = function () {
        act.timers.delete(id);
        const saved = act.chain;
        act.chain = rec.root;
        try { return fn.apply(this, arguments); } finally { act.chain = saved; }
      };
      id = setT.call(W, run, delay, ...rest);
      if (act.timers.size >= 2000) act.timers.clear();  // a page that leaks timers: forget, never grow
      act.timers.set(id, rec);
      return id;
    };
    W.clearTimeout = function clearTimeout(id) { act.timers.delete(id); return clearT.call(W, id); };
    W.clearInterval = function clearInterval(id) { act.timers.delete(id); return clearI.call(W, id); };
    const where = (u) => {  // a request's URL without its query: what a poll repeats
      try { return String(u && u.url !== undefined ? u.url : u).split(/[?#]/)[0].slice(0, 300); }
      catch (e) { return ''; }
    };
    const begin = (u) => {
      const key = ++act.seq;
      if (act.fetches.size >= 500) act.fetches.clear();
      act.fetches.set(key, { root: root(), url: where(u) });
      return key;
    };
    const origFetch = W.fetch;
    if (typeof origFetch === 'function') {
      W.fetch = function fetch(...args) {
        const key = begin(args[0]);
        let p;
        try { p = origFetch.apply(W, args); } catch (e) { act.fetches.delete(key); throw e; }
        const end = () => { act.fetches.delete(key); };
        try { p.then(end, end); } catch (e) { end(); }
        return p;
      };
    }
    const XP = W.XMLHttpRequest && W.XMLHttpRequest.prototype;
    if (XP && typeof XP.send === 'function' && typeof XP.open === 'function') {
      const origSend = XP.send, origOpen = XP.open, listen = EventTarget.prototype.addEventListener;
      const urls = new WeakMap();
      XP.open = ({ open(...args) {
        try { urls.set(this, args[1]); } catch (e) {}
        return origOpen.apply(this, args);
      } }).open;
      XP.send = ({ send(...args) {
        const key = begin(urls.get(this));
        try { listen.call(this, 'loadend', () => { act.fetches.delete(key); }); } catch (e) { act.fetches.delete(key); }
        try { return origSend.apply(this, args); } catch (e) { act.fetches.delete(key); throw e; }
      } }).send;
    }
    if (W.navigation && typeof W.navigation.addEventListener === 'function') {
      W.navigation.addEventListener('navigate', (e) => {
        try { if (e.destination && e.destination.sameDocument === false) act.leaving = now(); } catch (x) {}
      });
    }
  } catch (e) {}
})();"""

# One wait in the page: resolves with why it ended. `sinceMs` is how long ago the action began (what the
# page started since then is the action's doing); `maxMs` bounds the wait.
_SETTLE_JS = r"""({sinceMs, maxMs}) => new Promise((resolve) => {
  const W = window, D = document, now = () => performance.now();
  const t0 = now(), start = t0 - sinceMs - 5, end = t0 + maxMs;
  const learnFrom = t0 + maxMs * 0.6;  // what keeps mutating through the last part of a bound is restless
  const SOON = 100;  // a timer due this soon after the bound keeps the page busy to the end (a loop re-arming)
  let memo = W.__wbRestless;
  if (!memo) {
    memo = { nodes: new WeakSet(), count: 0, page: false, urls: new Set() };
    try { Object.defineProperty(W, '__wbRestless', { value: memo, enumerable: false }); } catch (e) {}
  }
  // Same-origin frames' windows and every shadow root the init script kept, closed ones too.
  const wins = [W];
  for (let i = 0; i < wins.length && wins.length < 20; i++) {
    let kids = null;
    try { kids = wins[i].frames; } catch (e) { kids = null; }
    for (let k = 0; kids && k < kids.length && wins.length < 20; k++) {
      try { if (kids[k].document) wins.push(kids[k]); } catch (e) { /* cross-origin */ }
    }
  }
  const restless = (n) => {
    if (!memo.count) return false;
    for (let i = 0; n && i < 300; i++) {
      if (memo.nodes.has(n)) return true;
      n = n.parentNode || n.host || null;
    }
    return false;
  };
  let dirty = false;
  const seen = new Map();  // node -> frames it mutated in, during the last part of the wait
  let frame = 0;
  const mo = new MutationObserver((records) => {
    if (memo.page) return;
    for (const r of records) {
      if (restless(r.target)) continue;
      dirty = true;
      if (now() >= learnFrom && seen.size < 500) {
        const f = seen.get(r.target);
        if (!f || f.last !== frame) seen.set(r.target, { n: f ? f.n + 1 : 1, last: frame });
      }
    }
  });
  const opts = { subtree: true, childList: true, attributes: true, characterData: true };
  let roots = 0;
  for (const w of wins) {
    try {
      mo.observe(w.document, opts);
      const sh = w.__wbShadow;
      for (const ref of sh ? sh.list : []) {
        const r = ref.deref();
        if (r && r.host.isConnected && roots++ < 1000) mo.observe(r, opts);
      }
    } catch (e) {}
  }
  const act0 = W.__wbActivity;
  const st = act0 ? act0.setTimeout : W.setTimeout.bind(W);
  const nextFrame = () => new Promise((r) => {
    let done = false;
    const go = () => { if (!done) { done = true; r(); } };
    requestAnimationFrame(go);
    st(go, 100);  // a hidden page paints no frames: a frame is then 100 ms
  });
  // Animations that move, show or resize things (a colour fading on hover is not the page changing).
  const LAYOUT = new RegExp('^(opacity|transform|translate|scale|rotate|visibility|display|clip-path'
    + '|(max-|min-)?(height|width)|top|left|right|bottom|inset|margin.*|padding.*)$');
  const moving = () => {
    let anims = [];
    try { anims = D.getAnimations(); } catch (e) { return false; }
    for (const a of anims.slice(0, 200)) {
      try {
        if (a.playState !== 'running') continue;
        const tm = a.effect && a.effect.getComputedTiming();
        if (!tm || !isFinite(tm.endTime) || tm.endTime - (tm.localTime || 0) > end - now()) continue;
        const prop = a.transitionProperty;
        if (prop !== undefined) { if (LAYOUT.test(prop)) return true; continue; }
        const kf = a.effect.getKeyframes ? a.effect.getKeyframes() : [];
        if (kf.some((k) => Object.keys(k).some((p) => LAYOUT.test(p.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())))))
          return true;
      } catch (e) {}
    }
    return false;
  };
  const pending = () => {
    const why = [];
    const add = (k) => { if (!why.includes(k)) why.push(k); };
    for (const w of wins) {
      const a = w.__wbActivity;
      if (!a) continue;
      if (a.leaving !== null && a.leaving >= start) add('navigation');
      for (const f of a.fetches.values()) {
        if (f.root >= start && !memo.urls.has(f.url)) { add('fetch'); break; }
      }
      for (const t of a.timers.values()) {  // set since the action, to fire within the bound (or about then)
        if (t.root >= start && t.due <= end + SOON) { add('timer'); break; }
      }
    }
    try { if (W.navigation && W.navigation.transition) add('navigation'); } catch (e) {}  // a router's own
    if (D.readyState === 'loading') add('loading');
    if (moving()) add('animation');
    return why;
  };
  const learn = (why) => {
    let learned = 0;
    if (why.includes('dom')) {
      const big = new Set([D, D.documentElement, D.body, D.head]);
      let found = false;
      for (const [node, f] of seen) {
        if (f.n < 2) continue;  // restless: it mutated in frames apart through the last part of the bound
        found = true;
        if (big.has(node)) { memo.page = true; continue; }
        memo.nodes.add(node);
        memo.count++;
        learned++;
      }
      if (!found) memo.page = true;  // churn everywhere and nowhere in particular
      if (memo.page) learned++;
    }
    if (why.includes('fetch')) {  // a request still open at the bound (a long poll): later waits leave its URL out
      for (const w of wins) {
        const a = w.__wbActivity;
        for (const f of a ? a.fetches.values() : []) {
          if (f.root < start || !f.url || memo.urls.size >= 50 || memo.urls.has(f.url)) continue;
          memo.urls.add(f.url);
          learned++;
        }
      }
    }
    return learned;
  };
  let quiet = 0, last = [];  // last: what went on in the latest frame that was not quiet
  let domFrames = 0;  // frames of the last part of the wait in which the DOM changed
  const finish = (ended, why) => {
    mo.disconnect();
    // One change near the bound (a clock's tick once a second) is not what held the wait: neither said nor
    // learned (it would mark the whole page restless).
    if (ended === 'bound' && domFrames < 2) why = why.filter((k) => k !== 'dom');
    const learned = ended === 'bound' ? learn(why) : 0;
    if (ended === 'leaving') for (const w of wins) { try { w.__wbActivity.leaving = null; } catch (e) {} }
    resolve({ ended, busy: why, frames: frame, ms: now() - t0, learned, restless: memo.page });
  };
  const tick = () => {
    nextFrame().then(() => {
      frame++;
      const why = pending();
      if (dirty) { why.unshift('dom'); if (now() >= learnFrom) domFrames++; }
      dirty = false;
      if (why.includes('navigation')) return finish('leaving', why);
      if (why.length === 0) { if (++quiet >= 2) return finish('still', why); }
      else { quiet = 0; last = why; }
      if (now() >= end) return finish('bound', last);
      tick();
    });
  };
  tick();
})"""

_NAVIGATING = ("Execution context was destroyed", "Cannot find context", "navigat", "Target page, context or browser")


@dataclass(frozen=True)
class Settled:
    """Why a wait for the page ended and how long it took.

    reason: "still" (two frames with nothing going on), "bound" (still changing when the bound came) or
    "gone" (the page closed or could not be read). busy: what was still going on at the bound ("dom",
    "fetch", "timer", "animation", "loading", "request", "script"). learned: restless nodes remembered
    at the bound (later waits on this document ignore their mutations); restless_page: the whole
    document's mutations are ignored from now on. navigated: a new document came meanwhile.
    """

    reason: Literal["still", "bound", "gone"]
    ms: float
    bound_ms: float
    busy: tuple[str, ...] = ()
    navigated: bool = False
    learned: int = 0
    frames: int = 0
    restless_page: bool = False
    rounds: int = 1


async def settle(session: BrowserSession, *, since: float | None = None, max_ms: int = SETTLE_MAX_MS) -> Settled:
    """Wait, at most max_ms (LOAD_WAIT_MS once a navigation begins), until the current page has stopped
    changing since `since` (time.monotonic() when the action began; default now). Never raises."""
    t0 = time.monotonic()
    start = since if since is not None else t0
    deadline = t0 + max_ms / 1000
    navigated, rounds, frames = False, 0, 0

    def ended(reason: Literal["still", "bound", "gone"], state: dict | None = None,
              busy: tuple[str, ...] = ()) -> Settled:
        state = state or {}
        return Settled(reason=reason, ms=(time.monotonic() - t0) * 1000, bound_ms=round((deadline - t0) * 1000),
                       busy=tuple(state.get("busy") or busy), navigated=navigated, learned=int(state.get("learned", 0)),
                       frames=frames, restless_page=bool(state.get("restless")), rounds=rounds)

    def navigating() -> None:
        nonlocal deadline, navigated
        if not navigated:  # a new document on its way: bounded as a page load is, not as a change in place
            deadline = max(deadline, time.monotonic() + LOAD_WAIT_MS / 1000)
        navigated = True

    while True:
        left = deadline - time.monotonic()
        if left <= 0.005:
            return ended("bound", busy=("request",) if session.fetching(since=start, unseen=True) else ())
        if session.fetching(since=start, documents=True):  # a navigation's document is on its way
            navigating()
            await session.fetches_done(timeout=deadline - time.monotonic(), since=start, documents=True)
            await _loaded(session, deadline)
            continue
        rounds += 1
        try:
            page = await session.ensure_page()
            state = await asyncio.wait_for(
                page.evaluate(_SETTLE_JS, {"sinceMs": (time.monotonic() - start) * 1000, "maxMs": left * 1000}),
                timeout=left + 1.0)
        except TimeoutError:  # the page's main thread is too busy to answer (or a navigation holds it)
            if session.fetching(since=start, documents=True):
                continue
            return ended("bound", busy=("script",))
        except Exception as exc:
            if not any(s in str(exc) for s in _NAVIGATING):
                return ended("gone")
            navigating()  # the document went away under the wait: let the next one parse
            await _loaded(session, deadline)
            continue
        frames += int(state.get("frames", 0))
        if state["ended"] == "bound":
            return ended("bound", state)
        if state["ended"] == "leaving":  # a navigation began: wait for its document, then for the new page
            navigating()
            await session.fetches_done(timeout=deadline - time.monotonic(), since=start, documents=True)
            await _loaded(session, deadline)
            continue
        # Still, as far as the page's scripts know; a request they cannot see (a frame's, a worker's) is
        # waited for, then the page looked at again.
        if session.fetching(since=start, unseen=True):
            await session.fetches_done(timeout=deadline - time.monotonic(), since=start, unseen=True)
            continue
        return ended("still", state)


async def _loaded(session: BrowserSession, deadline: float) -> None:
    """Wait (until `deadline` at most) for the current tab's document to be parsed."""
    left = deadline - time.monotonic()
    if left <= 0:
        return
    try:
        page = await session.ensure_page()
        await page.wait_for_load_state("domcontentloaded", timeout=left * 1000)
    except Exception:  # closed or still loading at the bound: the caller's bound decides
        pass
