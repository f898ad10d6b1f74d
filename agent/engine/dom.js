// The page walker: one call renders what a model needs to read and act on a page.
// mode "observe": visible interactive elements get stable indices ([N]<tag attrs>text), interleaved
//   with the visible text in document order, limited to the viewport plus a margin.
// mode "text": the whole page's visible text, markdown-ish, links as [text](href), no indices.
// mode "cover": what a click on args.el would reach (see coverOf); mode "aim": the point to click as well.
// Bounded in time (args.timeBudgetMs) and size (args.maxChars); never throws on odd pages.
(args) => {
  'use strict';
  const TEXT = args.mode === 'text';
  const t0 = performance.now();
  const BUDGET = args.timeBudgetMs;
  // Room is kept for the closing notes (above/below/truncated), so the text stays within maxChars.
  const MAX = Math.max(1, args.maxChars - Math.min(260, Math.floor(args.maxChars / 4)));
  const ELEM_TEXT = 80;       // characters of an element's own text on its line
  const SINK_TEXT = 2000;     // characters collected per element (the rest is dropped)
  const MAX_DEPTH = 400;      // deeper nesting is not walked (keeps the JS stack safe)
  const W = window, D = document;
  const de = D.documentElement;
  const vw = W.innerWidth || (de && de.clientWidth) || 1280;
  const vh = W.innerHeight || (de && de.clientHeight) || 800;
  // The rendered band, in viewport coordinates: half a viewport above, one below.
  const TOP = TEXT ? -Infinity : -vh * args.above;
  const BOTTOM = TEXT ? Infinity : vh * (1 + args.below);
  // Subtrees of plain flow content this far outside the band are skipped without a visit.
  const FAR = 2 * vh;
  const FAR_BELOW = 1;        // walkEl's answer when it skipped flow content far below the band
  const sx = W.scrollX || 0, sy = W.scrollY || 0;
  const se = D.scrollingElement || de;
  const docW = Math.max(se ? se.scrollWidth : 0, vw);
  const HLEFT = -sx - 1, HRIGHT = docW - sx + 1;   // off-screen-left tricks (skip links) stay out
  const BIG = 0.5 * vw * vh;  // script-only clickables larger than this are page containers
  const ORIGIN = location.origin;

  let store = null;
  if (!TEXT) {
    store = W.__wbIdx;
    if (!store || !(store.map instanceof WeakMap)) {
      store = { map: new WeakMap(), next: 1 };
      try { Object.defineProperty(W, '__wbIdx', { value: store, enumerable: false, configurable: true }); } catch (e) { /* a locked window: indices just restart */ }
    }
  }

  const SKIP = new Set(['script', 'style', 'noscript', 'template', 'head', 'meta', 'link', 'title', 'base',
    'desc', 'defs', 'symbol', 'clippath', 'mask', 'lineargradient', 'radialgradient', 'pattern', 'filter', 'marker']);
  const BLOCK = new Set(['address', 'article', 'aside', 'blockquote', 'body', 'caption', 'center', 'dd', 'details',
    'dialog', 'dir', 'div', 'dl', 'dt', 'fieldset', 'figcaption', 'figure', 'footer', 'form', 'h1', 'h2', 'h3',
    'h4', 'h5', 'h6', 'header', 'hgroup', 'hr', 'html', 'legend', 'li', 'main', 'menu', 'nav', 'ol', 'p', 'pre',
    'section', 'summary', 'table', 'tbody', 'tfoot', 'thead', 'tr', 'ul', 'iframe', 'frame', 'search']);
  // Plain flow content: a fixed/absolute child far from its parent is implausible, so far-away
  // subtrees of these are skipped whole (the big saving on long documents).
  // Once one of these siblings lies far below the band, the flow siblings after it do too.
  const FLOW = new Set(['p', 'li', 'ul', 'ol', 'dl', 'dt', 'dd', 'pre', 'code', 'table', 'tbody', 'thead', 'tr',
    'td', 'th', 'blockquote', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'span', 'a', 'em', 'strong', 'b', 'i', 'img',
    'figure', 'figcaption', 'tt', 'kbd', 'var', 'samp', 'sup', 'sub', 'small', 'mark', 'abbr', 'cite', 'q', 'hr',
    'br', 'section', 'article', 'details', 'summary', 'caption', 'picture', 'dfn', 'del', 'ins', 's', 'u']);
  const LEAF = new Set(['input', 'select', 'textarea', 'img', 'video', 'audio', 'canvas', 'object', 'embed',
    'picture', 'meter', 'progress', 'math']);
  const CONTAINER = new Set(['html', 'body', 'main', 'article', 'section', 'pre', 'code', 'table', 'tbody', 'form',
    'nav', 'header', 'footer', 'aside', 'ul', 'ol', 'dl', 'dialog']);
  const ROLES = new Set(['button', 'link', 'checkbox', 'radio', 'tab', 'menuitem', 'menuitemcheckbox',
    'menuitemradio', 'option', 'switch', 'combobox', 'textbox', 'searchbox', 'slider', 'spinbutton', 'treeitem']);
  const FIELD = new Set(['input', 'select', 'textarea']);
  const BUTTONISH = new Set(['submit', 'button', 'reset', 'image']);
  const VISOPTS = { checkVisibilityCSS: true, visibilityProperty: true };

  const out = [];          // strings (plain lines) and element records, in document order
  let cur = '';            // the plain text line being built
  let prefix = '';         // '# ' inside headings, '- ' inside list items (text mode)
  let chars = 0, count = 0, nodes = 0, seen = 0;
  let stopped = null;      // 'time' | 'size'
  let scroller = null;     // the biggest inner scroll container, for pages that do not scroll themselves

  const norm = (s) => s.replace(/\s+/g, ' ').trim();
  const clip = (s, n) => (s.length > n ? s.slice(0, n - 1) + '…' : s);

  function styleOf(el) {
    try { return el.ownerDocument.defaultView.getComputedStyle(el); } catch (e) { return null; }
  }

  function emit(line) {
    if (stopped === 'size') return;
    if (chars + line.length + 1 > MAX) {
      line = line.slice(0, Math.max(0, MAX - chars - 1));
      const cut = line.lastIndexOf(' ');
      if (cut > line.length - 40) line = line.slice(0, cut);  // end on a word, not inside one
      if (line) out.push(line);
      chars = MAX;
      stopped = 'size';
      return;
    }
    out.push(line);
    chars += line.length + 1;
  }

  function flush() {
    if (!cur) return;
    const s = norm(cur);
    cur = '';
    if (s && s !== '|') emit(prefix + s.replace(/^\| | \|$/g, ''));
  }

  function addText(s, sink) {
    if (sink) {
      if (sink.text.length < SINK_TEXT) sink.text += s;
    } else {
      cur += s;
      if (cur.length > MAX) flush();
    }
    if (/\S/.test(s)) seen++;
  }

  // ---- element facts -------------------------------------------------------------------
  function stableId(id) {
    return id.length <= 40 && !/\d{4,}|^:|^[0-9]|[0-9a-f]{10,}|^(ember|ext-gen|yui_|gwt-|mui-|radix-|headlessui-|react-aria|rc[-_]|__)/i.test(id);
  }

  function shortHref(el) {
    const raw = el.getAttribute('href');
    if (raw === null) return null;
    if (/^\s*javascript:/i.test(raw)) return null;
    if (/^\s*#/.test(raw)) return clip(raw.trim(), 100);  // "#" is no link to the page itself: show it as written
    let h = raw;
    try {
      const u = new URL(raw, el.baseURI);
      if (u.origin !== ORIGIN) h = u.href;
      else if (u.hash && u.pathname === location.pathname && u.search === location.search) h = u.hash;  // same page
      else h = u.pathname + u.search + u.hash;
    } catch (e) { /* keep the raw value */ }
    return clip(h, 100);
  }

  function textOf(node, limit) {
    // Visible-ish text of a small subtree (labels), without the text of form controls in it.
    let s = '';
    let n = 0;
    (function rec(x) {
      for (let c = x.firstChild; c && n < 200 && s.length < limit * 2; c = c.nextSibling) {
        n++;
        if (c.nodeType === 3) s += c.data;
        else if (c.nodeType === 1) {
          const t = c.localName;
          if (t === 'select' || t === 'textarea' || t === 'option' || t === 'script' || t === 'style' || t === 'input') continue;
          rec(c);
          if (BLOCK.has(t)) s += ' ';
        }
      }
    })(node);
    return clip(norm(s), limit);
  }

  function fieldLabel(el) {
    const by = el.getAttribute('aria-labelledby');
    if (by) {
      const root = el.getRootNode();
      const parts = [];
      for (const id of by.split(/\s+/)) {
        const t = id && (root.getElementById ? root.getElementById(id) : D.getElementById(id));
        if (t) parts.push(textOf(t, 80));
      }
      const s = norm(parts.join(' '));
      if (s) return clip(s, 80);
    }
    const labels = el.labels;
    if (labels && labels.length) {
      for (const l of labels) { const s = textOf(l, 80); if (s) return s; }
    }
    return '';
  }

  const ICON_PREFIX = /^(?:[a-z]+-)?(?:icon|icons|ico|fa|fas|far|fab|fal|fad|bi|glyphicon|mdi|ti|lucide|octicon|ion|ionicon|ri|bx|bxs|feather|gg|la|las|lar|ph|codicon|dashicons|uil|oi|fe|svg)[-_]+([a-z][a-z0-9-]*)$/;
  const ICON_SUFFIX = /^([a-z][a-z0-9-]*?)[-_]+(?:icon|ico)$/;
  const BTN_PREFIX = /^(?:btn|button)[-_]+([a-z][a-z0-9-]*)$/;
  const MODIFIERS = new Set(['lg', 'xs', 'sm', 'md', 'xl', 'fw', 'solid', 'regular', 'light', 'thin', 'duotone',
    'brands', 'spin', 'pulse', 'inverse', 'stack', 'border', 'pull-left', 'pull-right', 'large', 'small', 'button',
    'btn', 'wrapper', 'container', 'primary', 'secondary', 'default', 'outline', 'outlined', 'filled', 'round',
    'rounded', 'sharp', 'two-tone', 'link', 'icon', 'only', 'sm-only', 'white', 'black', 'dark', 'active', 'text',
    'group', 'block', 'inline', 'wrap', 'base', 'svg', 'img', 'image', 'container', 'label', 'ghost', 'plain']);
  const VOCAB = new Set(['close', 'search', 'menu', 'hamburger', 'trash', 'delete', 'remove', 'edit', 'pencil',
    'settings', 'gear', 'cog', 'cart', 'basket', 'bag', 'user', 'account', 'profile', 'avatar', 'heart', 'like',
    'star', 'favorite', 'favourite', 'plus', 'add', 'minus', 'share', 'download', 'upload', 'filter', 'sort',
    'next', 'prev', 'previous', 'back', 'forward', 'home', 'bell', 'notifications', 'notification', 'help',
    'info', 'more', 'ellipsis', 'kebab', 'dots', 'refresh', 'reload', 'copy', 'print', 'save', 'send', 'play',
    'pause', 'stop', 'mute', 'volume', 'expand', 'collapse', 'check', 'calendar', 'mail', 'email', 'phone',
    'login', 'logout', 'lock', 'unlock', 'eye', 'zoom', 'camera', 'attach', 'paperclip', 'mic', 'bookmark',
    'grid', 'list', 'chevron', 'arrow', 'caret', 'x', 'times', 'cancel', 'clear', 'undo', 'redo', 'map',
    'location', 'globe', 'language', 'sun', 'moon', 'theme', 'chat', 'comment', 'message', 'bars', 'magnifier']);

  function iconHint(el) {
    // Names from icon-font and sprite conventions in the element and its first few descendants.
    const cands = [];
    const vocab = [];
    let n = 0;
    const visit = (e) => {
      if (n++ > 30) return;
      const cls = e.getAttribute('class');
      if (cls) {
        for (const tok of cls.toLowerCase().split(/\s+/)) {
          let m = tok.match(ICON_PREFIX) || tok.match(ICON_SUFFIX);
          if (m && !MODIFIERS.has(m[1]) && !/^\d+x$|^rotate|^flip/.test(m[1])) cands.push(m[1]);
          m = tok.match(BTN_PREFIX);
          if (m && VOCAB.has(m[1])) cands.push(m[1]);
          for (const w of tok.split(/[-_]+/)) if (VOCAB.has(w)) vocab.push(w);
        }
      }
      if (e.localName === 'use') {
        const ref = e.getAttribute('href') || e.getAttribute('xlink:href') || '';
        const frag = ref.split('#')[1];
        if (frag) cands.push(frag.toLowerCase().replace(/^(?:icon|ico|i|svg)[-_]+/, ''));
      }
      const id = e.id;
      if (id) for (const w of id.replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase().split(/[-_]+/)) if (VOCAB.has(w)) vocab.push(w);
      for (let c = e.firstElementChild; c; c = c.nextElementSibling) visit(c);
    };
    visit(el);
    const h = cands[0] || vocab[0] || '';
    return h.replace(/[-_]+icon$/, '').slice(0, 40);
  }

  function isStrong(el, tag) {
    switch (tag) {
      case 'a': if (el.hasAttribute('href')) return true; break;
      case 'button': case 'select': case 'textarea': case 'summary': return true;
      case 'input': return el.type !== 'hidden';
      case 'video': case 'audio': if (el.hasAttribute('controls')) return true; break;
    }
    const role = el.getAttribute('role');
    if (role && ROLES.has(role.trim().split(/\s+/)[0].toLowerCase())) return true;
    if (el.hasAttribute('contenteditable') && el.isContentEditable) {
      const p = el.parentElement;
      return !(p && p.isContentEditable);
    }
    return false;
  }

  function controlHidden(ctl) {
    if (!ctl) return false;
    let vis = true;
    try { vis = ctl.checkVisibility(VISOPTS); } catch (e) { /* old browsers */ }
    if (!vis) return true;
    const r = ctl.getBoundingClientRect();
    return r.width === 0 || r.height === 0;
  }

  // ---- what a click at an element's centre reaches ------------------------------------------
  function flatContains(el, node) {
    // node lies inside el in the flattened tree (through slots and shadow roots, closed ones too)
    for (let n = node, i = 0; n && i < 500; i++) {
      if (n === el) return true;
      n = n.assignedSlot || n.parentNode || n.host || null;
    }
    return false;
  }

  function coverName(hit) {
    // the overlay a covering element belongs to: its outermost positioned or dialog ancestor nearby
    let best = hit;
    for (let n = hit, i = 0; n && n.nodeType === 1 && i < 12; i++) {
      const s = styleOf(n);
      if (n.localName === 'dialog' || /^(alert)?dialog$/.test(n.getAttribute('role') || '')
          || (s && /^(fixed|absolute|sticky)$/.test(s.position))) best = n;
      n = n.parentElement || (n.parentNode && n.parentNode.host) || null;
    }
    let d = '<' + best.localName;
    if (best.id) d += ' id=' + quote(clip(best.id, 40));
    const cls = norm(best.getAttribute('class') || '');
    if (cls) d += ' class=' + quote(clip(cls, 40));
    const text = norm(best.innerText || best.textContent || '');
    return d + '>' + clip(text, 60);
  }

  function probe(el, x, y) {
    // what a click at (x, y) of el's own viewport reaches: { by: element } when something else takes it,
    // { out: true } when a frame around el hides the point; else the point in the top window's viewport
    // (top: false when a cross-origin frame hides the rest of the way up), `own` when el or a node inside
    // it is hit, not an ancestor (el lets clicks through with pointer-events: none, or the point falls
    // between its line boxes)
    const root = el.getRootNode();
    const hit = root.elementFromPoint ? root.elementFromPoint(x, y) : null;
    const own = !hit || flatContains(el, hit) || (el.localName === 'label' && el.control === hit);
    if (hit && !own && !flatContains(hit, el)) return { by: hit, inRoot: true };
    let tx = x, ty = y, top = true;
    for (let w = el.ownerDocument.defaultView, i = 0; w !== w.top && i < 10; i++) {
      let fe = null;
      try { fe = w.frameElement; } catch (e) { fe = null; }
      if (!fe) { top = false; break; }
      const fr = fe.getBoundingClientRect();
      tx += fr.left + fe.clientLeft; ty += fr.top + fe.clientTop;
      w = w.parent;
      if (tx < 0 || ty < 0 || tx > w.innerWidth || ty > w.innerHeight) return { out: true };
      const froot = fe.getRootNode();
      const fhit = froot.elementFromPoint ? froot.elementFromPoint(tx, ty) : null;
      if (fhit && !flatContains(fe, fhit)) return { by: fhit, inRoot: false };
    }
    return { x: tx, y: ty, lx: x, ly: y, top, own };
  }

  function visibleBox(q, win) {
    const l = Math.max(q.left, 0), t = Math.max(q.top, 0);
    const r = Math.min(q.right, win.innerWidth), b = Math.min(q.bottom, win.innerHeight);
    return r - l < 1 || b - t < 1 ? null : { l, t, r, b };
  }

  function boxesOf(el, win) {
    // el's visible boxes: one per line of an inline element (a link that wraps), else its border box
    const out = [];
    for (const q of Array.from(el.getClientRects()).slice(0, 8)) { const v = visibleBox(q, win); if (v) out.push(v); }
    if (!out.length) { const v = visibleBox(el.getBoundingClientRect(), win); if (v) out.push(v); }
    return out;
  }

  function showingPoint(el, boxes, n) {
    // a point of el's boxes (n x n samples each) that el itself takes: the one farthest from the samples
    // something else takes, the nearest the first box's centre among equals; else one its ancestor takes
    // (pointer-events: none); null when something else takes every sample
    const good = [], passed = [], bad = [];
    for (const v of boxes.slice(0, 4)) {
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          const x = Math.min(Math.max(v.l + (v.r - v.l) * (i + 0.5) / n, v.l + 0.5), v.r - 0.5);
          const y = Math.min(Math.max(v.t + (v.b - v.t) * (j + 0.5) / n, v.t + 0.5), v.b - 0.5);
          const p = probe(el, x, y);
          if (p.by || p.out) bad.push([x, y]); else (p.own ? good : passed).push(p);
        }
      }
    }
    if (!good.length) return passed[0] || null;
    const cx = (boxes[0].l + boxes[0].r) / 2, cy = (boxes[0].t + boxes[0].b) / 2;
    let best = null, bestScore = -1, bestNear = Infinity;
    for (const p of good) {
      let score = Infinity;
      for (const [x, y] of bad) score = Math.min(score, Math.hypot(p.lx - x, p.ly - y));
      const near = Math.hypot(p.lx - cx, p.ly - cy);
      if (score > bestScore + 0.01 || (Math.abs(score - bestScore) <= 0.01 && near < bestNear)) {
        best = p; bestScore = score; bestNear = near;
      }
    }
    return best;
  }

  function coverOf(el, aim) {
    // Where a click on el lands. null when a click at the centre of its (first) visible box reaches el
    // (with `aim`: that point, { x, y, top, dx, dy }); { disabled: true }; { out: true } when el is out of
    // view; { label: true } when el's own label takes the click (a styled checkbox). When something
    // covers that centre, another point of el that shows and takes the click will do (null, or with `aim`
    // that point and partly: true); only when none does, { by: what lies on top }.
    if (el.disabled === true || el.getAttribute('aria-disabled') === 'true') return { disabled: true };
    const win = el.ownerDocument.defaultView;
    const r = el.getBoundingClientRect();
    const boxes = boxesOf(el, win);
    if (!boxes.length) return { out: true };
    const v = boxes[0];
    const cx = (v.l + v.r) / 2, cy = (v.t + v.b) / 2;
    const labels = el.labels ? Array.from(el.labels) : [];
    if (labels.length) {
      const root = el.getRootNode();
      const hit = root.elementFromPoint ? root.elementFromPoint(cx, cy) : null;
      const s = styleOf(el);
      const hidden = r.width <= 1 || r.height <= 1 || (s && s.opacity === '0');
      if (hidden || (hit && hit !== el && labels.some((lb) => flatContains(lb, hit)))) return { label: true };
    }
    const point = (p, partly) => (aim ? { x: p.x, y: p.y, top: p.top, dx: p.lx - r.left, dy: p.ly - r.top, partly } : null);
    const centre = probe(el, cx, cy);
    if (centre.out) return { out: true };
    if (!centre.by && centre.own) return point(centre, false);
    // A cover whose box spans el's whole visible box (a cookie wall, a modal's backdrop) hides every point.
    const cb = centre.by && centre.inRoot ? centre.by.getBoundingClientRect() : null;
    const spans = cb && boxes.every((q) => cb.left <= q.l && cb.top <= q.t && cb.right >= q.r && cb.bottom >= q.b);
    if (!spans) {
      const shows = showingPoint(el, boxes, aim ? 5 : 3);
      if (shows) return point(shows, !!centre.by);
    }
    if (!centre.by) return point(centre, false);  // only its ancestor takes clicks here: as before, that will do
    return { by: coverName(centre.by) };
  }

  function movingNow(el) {
    // el or a box around it is being moved or resized by a running animation: its box is not where it will be
    for (let n = el, i = 0; n && n.nodeType === 1 && i < 12; i++) {
      let anims = [];
      try { anims = n.getAnimations(); } catch (e) { return false; }
      for (const a of anims) {
        if (a.playState !== 'running') continue;
        const prop = a.transitionProperty;
        if (prop === undefined || /^(transform|translate|scale|rotate|top|left|right|bottom|inset|margin.*|(max-|min-)?(width|height))$/.test(prop)) return true;
      }
      n = n.parentElement || (n.parentNode && n.parentNode.host) || null;
    }
    return false;
  }

  // ---- rendering -------------------------------------------------------------------------
  function quote(v) {
    v = String(v);
    return /^[^\s"'<>=`]+$/.test(v) ? v : '"' + v.replace(/"/g, '\\"') + '"';
  }

  function render(rec) {
    const el = rec.el, tag = rec.tag;
    const attrs = [];
    const add = (k, v) => { if (v !== null && v !== undefined && v !== '' && v !== false) attrs.push([k, v]); };
    const get = (k) => { const v = el.getAttribute(k); return v === null ? '' : norm(v); };
    let text = norm(rec.text);
    const id = el.id;
    if (id && stableId(id)) add('id', clip(id, 40));
    add('name', clip(get('name'), 40));
    let type = '';
    if (tag === 'input') { type = el.type; if (type !== 'text') add('type', type); }
    const role = get('role');
    add('role', role);
    const aria = clip(get('aria-label'), 80);
    add('aria-label', aria);
    const ph = clip(get('placeholder'), 60);
    add('placeholder', ph);
    const title = clip(get('title'), 80);
    add('title', title);
    let alt = '';
    if (tag === 'img' || type === 'image') { alt = clip(get('alt'), 80); add('alt', alt); }
    let label = '';
    if (FIELD.has(tag) || (role && /^(textbox|searchbox|combobox|checkbox|radio|switch|slider|spinbutton)$/.test(role))) {
      label = fieldLabel(el);
      if (label && label !== aria && label !== ph && label !== text) add('label', label);
    }
    let control = null;
    if (tag === 'label') control = el.control;
    const st = control || el;
    const stTag = control ? control.localName : tag;
    if (stTag === 'input') {
      const t = st.type;
      if (BUTTONISH.has(t)) { if (!text && st === el) text = norm(el.value || (t === 'submit' ? 'Submit' : t === 'reset' ? 'Reset' : '')); }
      else if (t === 'checkbox' || t === 'radio') {
        if (t === 'radio' && st.value && st.value !== 'on' && st === el) add('value', clip(st.value, 40));
        if (st.checked) add('checked', true);
      } else if (t === 'password') { if (st.value) add('value', '***'); }
      else if (t === 'file') { if (st.files && st.files.length) add('value', clip(Array.from(st.files).map((f) => f.name).join(', '), 60)); }
      else if (st === el) add('value', clip(norm(st.value || ''), 60));
    } else if (stTag === 'textarea' && st === el) add('value', clip(norm(el.value || ''), 80));
    else if (stTag === 'select' && st === el) {
      const chosen = Array.from(el.selectedOptions || []).map((o) => norm(o.label || o.text)).join(', ');
      add('value', clip(chosen, 60));
    }
    const ac = get('aria-checked');
    if (ac === 'true') add('checked', true); else if (ac === 'mixed') add('checked', 'mixed');
    if (get('aria-selected') === 'true' || (tag === 'option' && el.selected)) add('selected', true);
    const ae = get('aria-expanded');
    if (ae) add('expanded', ae);
    if (get('aria-pressed') === 'true') add('pressed', true);
    if (role === 'slider' || role === 'spinbutton' || role === 'progressbar') add('value', get('aria-valuetext') || get('aria-valuenow'));
    if (tag === 'a') {
      add('href', shortHref(el));
      if ((el.getAttribute('target') || '').toLowerCase() === '_blank') add('target', '_blank');
    }
    if (el.disabled || get('aria-disabled') === 'true' || (control && control.disabled)) add('disabled', true);
    const cover = coverOf(el);
    if (cover && cover.by) add('covered', true);  // a click would land on an overlay (a cookie wall, a modal)
    if (el.required) add('required', true);
    if (!FIELD.has(tag) && el.hasAttribute('contenteditable') && el.isContentEditable) add('contenteditable', true);
    if (!text && !aria && !title && !label && !alt && !ph) {
      if (rec.alt) add('alt', clip(norm(rec.alt), 80));
      else if (rec.svgTitle) add('title', clip(norm(rec.svgTitle), 80));
      else if (!FIELD.has(tag)) add('icon', iconHint(el));
    }
    let line = '[' + rec.idx + ']<' + tag;
    for (const [k, v] of attrs) line += ' ' + (v === true ? k : k + '=' + quote(v));
    line += '>';
    let extra = null;
    if (text.length > ELEM_TEXT + 10) {
      let cut = text.lastIndexOf(' ', ELEM_TEXT);
      if (cut < ELEM_TEXT / 2) cut = ELEM_TEXT;
      extra = text.slice(cut).trim();
      text = text.slice(0, cut) + '…';
    }
    return [line + text, extra];
  }

  function indexOf(el) {
    let idx = store.map.get(el);
    if (idx === undefined) { idx = store.next++; store.map.set(el, idx); }
    if (el.getAttribute('data-wb-idx') !== String(idx)) el.setAttribute('data-wb-idx', String(idx));
    return idx;
  }

  function finishScroll(rec) {
    // [N]<div id=x scrollable="40px above, 690px below">: where a scroll box has more to show
    const el = rec.el;
    const up = Math.round(el.scrollTop), down = Math.max(0, Math.round(el.scrollHeight - el.clientHeight - el.scrollTop));
    let line = '[' + rec.idx + ']<' + rec.tag;
    if (el.id && stableId(el.id)) line += ' id=' + quote(clip(el.id, 40));
    const role = norm(el.getAttribute('role') || ''), aria = norm(el.getAttribute('aria-label') || '');
    if (role) line += ' role=' + quote(role);
    if (aria) line += ' aria-label=' + quote(clip(aria, 80));
    line += ' scrollable=' + quote(up + 'px above, ' + down + 'px below') + '>';
    keep(rec, line, null);
  }

  function keep(rec, line, extra) {
    // an element line that would overflow the size bound is left out, and the walk stops
    const size = line.length + 1 + (extra ? extra.length + 1 : 0);
    if (chars + size > MAX) { rec.line = null; count--; stopped = stopped || 'size'; return; }
    rec.line = line;
    rec.extra = extra;
    chars += size;
  }

  function finish(rec, seenBefore) {
    // A box-less clickable counts only if something inside it rendered.
    if ((!rec.sized && seen === seenBefore)
        // a script-clickable wrapper with no text of its own around real controls adds nothing
        || (rec.weak && count > rec.nested && !/\S/.test(rec.text) && !rec.alt && !rec.svgTitle)) {
      rec.line = null;
      count--;
      rec.el.removeAttribute('data-wb-idx');  // not shown, so not clickable by index either
      return;
    }
    const [line, extra] = render(rec);
    keep(rec, line, extra);
  }

  // ---- the walk ---------------------------------------------------------------------------
  // fc: the frame context, replaced only at iframes and clipping containers:
  //   ox, oy = offset of the frame's viewport; lset = its clickable-listener WeakSet;
  //   t, b, l, r = the band where content counts as shown (viewport band, narrowed by clips).
  function shadowOf(el, fc) {
    // open roots through the DOM; closed ones through the map the init script keeps per frame
    return el.shadowRoot || (fc.sh ? fc.sh.get(el) || null : null);
  }

  function walkKids(el, fc, sink, ptr, show, depth) {
    const host = shadowOf(el, fc);
    if (host) { walkList(host.firstChild, fc, sink, ptr, show, depth); return; }
    if (el.localName === 'slot' && el.assignedNodes) {
      const nodes = el.assignedNodes({ flatten: true });
      if (nodes.length) {
        for (const n of nodes) {
          if (stopped) return;
          if (n.nodeType === 3) { if (show) addText(n.data, sink); }
          else if (n.nodeType === 1) walkEl(n, fc, sink, ptr, show, depth + 1);
        }
        return;
      }
    }
    walkList(el.firstChild, fc, sink, ptr, show, depth);
  }

  function walkList(first, fc, sink, ptr, show, depth) {
    let below = false;  // a flow sibling lay far below the band: later flow content does too
    for (let n = first; n; n = n.nextSibling) {
      if (stopped) return;
      if (n.nodeType === 3) { if (show && !below) addText(n.data, sink); }
      else if (n.nodeType === 1) {
        if (below && FLOW.has(n.localName)) {
          if ((++nodes & 127) === 0 && performance.now() - t0 > BUDGET) stopped = 'time';
          continue;
        }
        if (walkEl(n, fc, sink, ptr, show, depth + 1) === FAR_BELOW) below = true;
      }
    }
  }

  function walkFrame(el, r, fc, sink, depth) {
    let doc = null;
    try { doc = el.contentDocument; } catch (e) { doc = null; }
    if (!doc) {
      const src = el.src || el.getAttribute('src') || '';
      if (src && !/^(about|javascript|data):/i.test(src)) { if (!sink) flush(); emit('(cross-origin iframe: ' + clip(src, 150) + ')'); }
      return;
    }
    const root = doc.documentElement;
    if (!root) return;
    let lset = null, sh = null;
    try { lset = doc.defaultView && doc.defaultView.__wbClick; } catch (e) { lset = null; }
    try { sh = doc.defaultView && doc.defaultView.__wbShadow ? doc.defaultView.__wbShadow.map : null; } catch (e) { sh = null; }
    const ox = fc.ox + r.left + el.clientLeft, oy = fc.oy + r.top + el.clientTop;
    const top = fc.oy + r.top, bottom = fc.oy + r.bottom;
    // the frame scrolls on its own: its band is its box, widened like the viewport's
    const inner = {
      ox, oy, lset, sh,
      t: TEXT ? fc.t : Math.max(fc.t, top - r.height * args.above),
      b: TEXT ? fc.b : Math.min(fc.b, bottom + r.height * args.below),
      l: Math.max(fc.l, fc.ox + r.left - 1), r: Math.min(fc.r, fc.ox + r.right + 1),
    };
    if (!sink) flush();
    walkEl(root, inner, sink, false, true, depth + 1);
    if (!sink) flush();
  }

  function walkEl(el, fc, sink, ptr, pshow, depth) {
    const tag = el.localName;
    if (SKIP.has(tag) || depth > MAX_DEPTH) return 0;
    if ((++nodes & 127) === 0 && performance.now() - t0 > BUDGET) { stopped = 'time'; return 0; }
    if (!TEXT && el.hasAttribute('data-wb-idx') && store.map.get(el) === undefined) el.removeAttribute('data-wb-idx');

    const r = el.getBoundingClientRect();
    const top = r.top + fc.oy, bottom = r.bottom + fc.oy, left = r.left + fc.ox, right = r.right + fc.ox;
    const sized = r.width > 0 && r.height > 0;
    // Plain flow content far outside the band is skipped whole, before any style work.
    if (sized && FLOW.has(tag)) {
      if (top > fc.b + FAR) return FAR_BELOW;
      if (bottom < fc.t - FAR) return 0;
    }
    let vis = true;
    try { vis = el.checkVisibility(VISOPTS); } catch (e) { vis = true; }
    if (!vis) {
      // display:contents has no box of its own, but its children render
      const s = styleOf(el);
      if (s && s.display === 'contents') walkKids(el, fc, sink, ptr, pshow, depth);
      return 0;
    }
    let show;
    if (sized) {
      show = bottom >= fc.t && top <= fc.b && right > fc.l && left < fc.r;
    } else {
      if (!el.firstChild && !shadowOf(el, fc) && tag !== 'input') return 0;
      if (tag !== 'br' && tag !== 'span' && tag !== 'a' && tag !== 'slot' && (r.width === 0 || r.height === 0)) {
        // a collapsed box that clips (accordion panels at height 0) hides its content
        const s = styleOf(el);
        if (s && ((r.height === 0 && s.overflowY !== 'visible') || (r.width === 0 && s.overflowX !== 'visible'))) return 0;
      }
      show = pshow;
    }

    let rec = null;
    let ptrHere = ptr;
    let kfc = fc;
    let scrollable = false;
    let weak = false;  // clickable only by script or style, not by its nature
    let st = null;     // computed style, read only where it pays: shown, sized candidates
    if (!TEXT && show && !stopped) {
      let interactive = isStrong(el, tag);
      if (interactive) ptrHere = true;  // children of a control are part of it, not new pointer roots
      else if (tag !== 'html' && tag !== 'body') {
        const s = st = sized ? styleOf(el) : null;
        if (s) {
          ptrHere = s.cursor === 'pointer';
          const oy_ = s.overflowY, ox_ = s.overflowX;
          if (oy_ !== 'visible' || ox_ !== 'visible') {
            const scrollsY = oy_ === 'auto' || oy_ === 'scroll';
            const scrollsX = ox_ === 'auto' || ox_ === 'scroll';
            if (scrollsY && r.height >= vh / 2 && el.scrollHeight > el.clientHeight + 4
                && (!scroller || el.clientHeight > scroller.clientHeight)) scroller = el;
            // Content scrolled out of a scroll box, or cut by a positioned clipping box, is not shown.
            // (A static clipping box does not clip its absolute descendants, so it is left alone.)
            if (scrollsY || scrollsX || s.position !== 'static') {
              kfc = {
                ox: fc.ox, oy: fc.oy, lset: fc.lset, sh: fc.sh,
                t: oy_ === 'visible' ? fc.t : Math.max(fc.t, scrollsY ? top - r.height * args.above : top),
                b: oy_ === 'visible' ? fc.b : Math.min(fc.b, scrollsY ? bottom + r.height * args.below : bottom),
                l: ox_ === 'visible' || scrollsX ? fc.l : Math.max(fc.l, left),
                r: ox_ === 'visible' || scrollsX ? fc.r : Math.min(fc.r, right),
              };
            }
            // A box whose content scrolls gets an index of its own, so `scroll` can target it.
            if (scrollsY && !sink && el.scrollHeight > el.clientHeight + 4) scrollable = true;
          }
        }
        if (tag === 'label') {
          // a label is the thing to click when its control is hidden (custom checkboxes, switches)
          const ctl = el.control;
          interactive = ctl ? controlHidden(ctl) : false;
        } else {
          const listen = (fc.lset && fc.lset.has(el)) || el.onclick != null || el.onmousedown != null || el.hasAttribute('onclick');
          const tab = !CONTAINER.has(tag) && el.hasAttribute('tabindex') && el.tabIndex >= 0;
          const pointerRoot = ptrHere && !ptr && !sink;
          if ((listen || tab || pointerRoot) && !(sized && r.width * r.height > BIG)) interactive = weak = true;
        }
      }
      if (interactive || scrollable) {
        if (!sink) flush();
        rec = { el, tag, idx: indexOf(el), text: '', alt: '', svgTitle: '', sized: sized && show, line: null, extra: null,
          scroll: interactive ? null : 'scroll', weak: weak, nested: 0 };
        out.push(rec);
        count++;
        rec.nested = count;
      }
    }
    if (sized && show) seen++;
    const seenBefore = seen;
    // a scroll box's content stays plain page content; a control's text is its own
    const into = rec && !rec.scroll ? rec : sink;

    if (tag === 'iframe' || tag === 'frame') {
      if (show && sized) walkFrame(el, r, fc, into, depth);
    } else if (LEAF.has(tag)) {
      if (tag === 'img' && into && !into.alt && show) into.alt = el.getAttribute('alt') || '';
    } else if (tag === 'svg') {
      if (into) {
        const t = el.querySelector('title');
        if (t && !into.svgTitle) into.svgTitle = t.textContent || '';
      } else walkKids(el, kfc, null, ptrHere, show, depth);
    } else if (tag === 'br') {
      if (show) { if (into) addText(' ', into); else flush(); }
    } else if (TEXT && tag === 'a' && !into && show && el.hasAttribute('href')) {
      // page_text: links inline as [text](href)
      const link = { text: '', alt: '', svgTitle: '' };
      walkKids(el, kfc, link, ptrHere, show, depth);
      const t = norm(link.text) || norm(el.getAttribute('aria-label') || el.getAttribute('title') || link.alt || link.svgTitle || '');
      const raw = el.getAttribute('href') || '';
      if (t) {
        if (/^\s*(javascript:|#$)/i.test(raw)) cur += ' ' + t + ' ';
        else cur += ' [' + t.replace(/[[\]]/g, '') + '](' + clip(el.href || raw, 300) + ') ';
        seen++;
      }
    } else {
      // Line breaks follow the rendered display where it was read (a span made a block, React
      // markup with no whitespace between boxes), else the tag's usual display.
      if (!st && show && sized && (TEXT || into) && (tag === 'span' || tag === 'a' || tag === 'label' || tag.includes('-'))) st = styleOf(el);
      let block = BLOCK.has(tag);
      let spaced = false;  // inline-block and friends: a separate word, not a separate line
      if (st && tag !== 'td' && tag !== 'th') {
        const d = st.display;
        spaced = d.startsWith('inline-');
        block = !(d.startsWith('inline') || d === 'contents' || d === 'ruby' || d === 'table-cell');
      }
      const heading = !into && show && tag.length === 2 && tag[0] === 'h' && tag[1] >= '1' && tag[1] <= '6';
      const item = TEXT && !into && show && tag === 'li';
      const savedPrefix = prefix;
      if (block) { if (into) addText(' ', into); else flush(); }
      else if (spaced && show) addText(' ', into);
      if ((tag === 'td' || tag === 'th') && show) { if (into) addText(' ', into); else if (/\S/.test(cur)) cur += ' | '; }
      if (heading) prefix = '#'.repeat(+tag[1]) + ' ';
      else if (item) prefix = '- ';
      walkKids(el, kfc, into, ptrHere, show, depth);
      if (block || heading || item) { if (into) addText(' ', into); else flush(); }
      else if (spaced && show) addText(' ', into);
      prefix = savedPrefix;
    }
    if (rec) { if (rec.scroll) finishScroll(rec); else finish(rec, seenBefore); }
    return 0;
  }

  // ---- run --------------------------------------------------------------------------------
  if (args.mode === 'cover') return coverOf(args.el, false);  // actions ask before they click
  if (args.mode === 'aim') {  // ... and where to click: the point, whether it opens a tab, whether it moves
    const c = coverOf(args.el, true) || {};
    const a = args.el.closest('a[href]');
    return Object.assign(c, { opensTab: !!a && (a.target || '').toLowerCase() === '_blank', moving: movingNow(args.el) });
  }
  let error = null;
  try {
    const fc0 = { ox: 0, oy: 0, lset: W.__wbClick || null, sh: W.__wbShadow ? W.__wbShadow.map : null,
      t: TOP, b: BOTTOM, l: HLEFT, r: HRIGHT };
    if (de) walkEl(de, fc0, null, false, true, 0);
    flush();
  } catch (e) {
    error = String(e && e.message || e).slice(0, 200);
  }

  const lines = [];
  const docH = Math.max(se ? se.scrollHeight : 0, D.body ? D.body.scrollHeight : 0);
  let above = 0, below = 0;
  if (!TEXT) {
    let top = sy, height = docH, view = vh;
    if (docH <= vh + 2 && scroller) { top = scroller.scrollTop; height = scroller.scrollHeight; view = scroller.clientHeight; }
    above = Math.max(0, Math.round(top - view * args.above));
    below = Math.max(0, Math.round(height - (top + view + view * args.below)));
  }
  const pages = (px) => (px / vh).toFixed(1);
  if (above > 0) lines.push('... ' + above + ' pixels above (' + pages(above) + ' pages): scroll up to see more');
  let content = 0;
  for (const o of out) {
    if (typeof o === 'string') { lines.push(o); content++; }
    else if (o.line) { lines.push(o.line); content++; if (o.extra) lines.push(o.extra); }
  }
  if (content === 0) {
    // Never hand back an empty page: the raw text, else say so.
    let raw = '';
    try { raw = (D.body ? D.body.innerText : (de && de.textContent)) || ''; } catch (e) { raw = ''; }
    raw = raw.replace(/[ \t]+/g, ' ').replace(/\n\s*\n+/g, '\n').trim().slice(0, MAX);
    lines.push(raw || (error ? '(page could not be read: ' + error + ')' : '(empty page)'));
  }
  if (stopped) {
    lines.push(stopped === 'time'
      ? '(page truncated: stopped after ' + BUDGET + ' ms; scroll, or use find_text or extract for the rest)'
      : '(page truncated at ' + args.maxChars + ' characters; scroll, or use find_text or extract for the rest)');
  }
  if (below > 0) lines.push('... ' + below + ' pixels below (' + pages(below) + ' pages): scroll down to see more');
  return {
    text: lines.join('\n'), count, above, below, truncated: !!stopped, title: D.title || '', url: location.href,
    ms: performance.now() - t0, nodes, error,
    // A document still being parsed shows nothing yet (a navigation just committed): read it once it is.
    loading: content === 0 && D.readyState === 'loading',
  };
}
