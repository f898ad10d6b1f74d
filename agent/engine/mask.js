// Where a frame shows a secret: the rectangles (in this frame's viewport, CSS pixels) to paint over
// before a screenshot is kept. Called by agent/engine/mask.py with {pattern, maxChars, budgetMs}:
// `pattern` is every spelling of every secret (agent/engine/spellings.py, JS flavour).
// Reads the page only: text nodes (a match may span several, e.g. "<b>hun</b>ter2"), the values of
// fields, and the attributes a page shows (placeholder, value, title, alt, aria-label, label, or any
// attribute a ::before/::after rule shows), in the document and every shadow root, closed ones too
// (through the init script's registry, agent/engine/page.py). Returns {rects, complete}: complete is
// false when the page was too large to read within the budget (the caller then paints the whole frame).
(args) => {
  const t0 = performance.now();
  const re = new RegExp(args.pattern, 'g');
  const W = window.innerWidth, H = window.innerHeight;
  const rects = [];
  let complete = true;
  const over = () => performance.now() - t0 > args.budgetMs;
  const add = (r, pad) => {
    if (!(r.width > 0 && r.height > 0)) return;
    if (r.right < 0 || r.bottom < 0 || r.left > W || r.top > H) return;
    rects.push([r.left - pad, r.top - pad, r.width + 2 * pad, r.height + 2 * pad]);
  };
  const hit = (text) => {
    if (!text) return false;
    re.lastIndex = 0;
    return re.test(text);
  };
  const registry = window.__wbShadow;
  const shadowOf = (el) => el.shadowRoot || (registry && registry.map.get(el)) || null;
  const SHOWN = ['placeholder', 'value', 'title', 'alt', 'aria-label', 'label'];
  const SKIP = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE']);
  const FIELD_TYPES = new Set(['hidden', 'checkbox', 'radio', 'file', 'image', 'range', 'color']);
  const pseudo = (el) => ['::before', '::after'].some((p) => {
    const c = getComputedStyle(el, p).content;
    return c && c !== 'none' && c !== 'normal';
  });

  const scanText = (root) => {
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const nodes = [], starts = [];
    let text = '';
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const parent = n.parentNode;
      if (parent && SKIP.has(parent.nodeName)) continue;
      nodes.push(n);
      starts.push(text.length);
      text += n.data;
      if (text.length > args.maxChars || (nodes.length % 2000 === 0 && over())) { complete = false; return; }
    }
    if (!text) return;
    const locate = (offset, end) => {  // the text node holding `offset`, and the offset in it
      let lo = 0, hi = starts.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (starts[mid] < offset || (!end && starts[mid] === offset)) lo = mid; else hi = mid - 1;
      }
      return [nodes[lo], offset - starts[lo]];
    };
    re.lastIndex = 0;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      if (m[0].length === 0) { re.lastIndex++; continue; }
      const range = document.createRange();
      const [sn, so] = locate(m.index, false);
      const [en, eo] = locate(m.index + m[0].length, true);
      try {
        range.setStart(sn, Math.min(so, sn.data.length));
        range.setEnd(en, Math.min(eo, en.data.length));
        for (const r of range.getClientRects()) add(r, 2);
      } catch (e) {}
      if (over()) { complete = false; return; }
    }
  };

  const scanElements = (root, roots) => {
    const all = root.querySelectorAll('*');
    for (let i = 0; i < all.length; i++) {
      const el = all[i];
      const sr = shadowOf(el);
      if (sr) roots.push(sr);
      if (i % 1000 === 0 && over()) { complete = false; return; }
      const tag = el.tagName;
      let shown = false;
      if (tag === 'INPUT') shown = !FIELD_TYPES.has((el.type || '').toLowerCase()) && hit(el.value);
      else if (tag === 'TEXTAREA') shown = hit(el.value);
      else if (tag === 'SELECT') shown = Array.from(el.selectedOptions || []).some((o) => hit(o.text));
      if (!shown && el.attributes.length) {
        for (const a of el.attributes) {
          if (hit(a.value) && (SHOWN.includes(a.name) || pseudo(el))) { shown = true; break; }
        }
      }
      if (shown) add(el.getBoundingClientRect(), 1);
    }
  };

  const roots = [document];
  for (let i = 0; i < roots.length && complete; i++) {
    scanElements(roots[i], roots);
    if (complete) scanText(roots[i]);
  }
  return { rects, complete, width: W, height: H };
}
