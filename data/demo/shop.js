/* Demo Shop behaviour: cart in localStorage, page rendering, form validation.
   Deterministic on purpose (no randomness, no timers, no network): the agent's tests and the
   cached-workflow replays need the same page for the same inputs. User text is only ever set
   through textContent, never parsed as HTML. */
"use strict";

(function () {
  const PRODUCTS = window.DEMO_PRODUCTS || [];
  const CATEGORIES = window.DEMO_CATEGORIES || [];
  const CART_KEY = "demo-shop-cart";
  const MAX_PER_LINE = 10; // a bound on every cart line, whatever the stock
  const MAX_LINES = 50; // a bound on the stored cart, so a corrupt entry cannot grow without end
  const SHIPPING = {
    standard: { label: "Standard (3–5 working days)", price: 4.9 },
    express: { label: "Express (next working day)", price: 12.9 },
  };

  // Inline icons (24×24, stroke = currentColor): no image files, no network.
  const ICON_PATHS = {
    cables: '<path d="M7 3v4M11 3v4"/><rect x="5" y="7" width="8" height="6" rx="1"/><path d="M9 13v3a4 4 0 0 0 4 4h2a4 4 0 0 0 4-4V4"/>',
    chargers: '<path d="M13 2 4 14h7l-1 8 9-12h-7l1-8z"/>',
    headphones: '<path d="M4 17v-5a8 8 0 0 1 16 0v5"/><rect x="3" y="14" width="4" height="7" rx="1.5"/><rect x="17" y="14" width="4" height="7" rx="1.5"/>',
    keyboards: '<rect x="2" y="6" width="20" height="12" rx="2"/><path d="M6 10h.01M10 10h.01M14 10h.01M18 10h.01M7 14h10"/>',
    search: '<circle cx="11" cy="11" r="7"/><path d="m20 20-4-4"/>',
    cart: '<circle cx="9" cy="20" r="1.5"/><circle cx="18" cy="20" r="1.5"/><path d="M2 3h3l2.5 12h12L22 7H6.2"/>',
    trash: '<path d="M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6"/>',
  };

  function iconSvg(name, size) {
    const s = size || 24;
    return (
      '<svg class="icon" aria-hidden="true" focusable="false" width="' + s + '" height="' + s +
      '" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"' +
      ' stroke-linejoin="round">' + (ICON_PATHS[name] || "") + "</svg>"
    );
  }

  // ---------- small helpers ----------

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key === "html") node.innerHTML = value; // trusted static markup only (icons)
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children || []) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function cents(euros) {
    return Math.round(euros * 100);
  }

  function money(amountInCents) {
    // Fixed format, independent of the browser's locale: "€5.49".
    return "€" + (amountInCents / 100).toFixed(2);
  }

  function params() {
    return new URLSearchParams(window.location.search);
  }

  function productById(id) {
    return PRODUCTS.find((p) => p.id === id) || null;
  }

  function categoryById(id) {
    return CATEGORIES.find((c) => c.id === id) || null;
  }

  function maxQuantity(product) {
    return Math.min(product.stock, MAX_PER_LINE);
  }

  /** 32-bit FNV-1a over UTF-16 code units, as 8 upper-case hex digits (documented in docs/demo-shop.md). */
  function fnv1a(text) {
    let hash = 0x811c9dc5;
    for (let i = 0; i < text.length; i++) {
      hash ^= text.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    return hash.toString(16).toUpperCase().padStart(8, "0");
  }

  // ---------- cart (localStorage, with an in-memory fallback when storage is blocked) ----------

  let memoryCart = [];

  function loadCart() {
    let raw = null;
    try {
      raw = window.localStorage.getItem(CART_KEY);
    } catch (e) {
      return memoryCart.slice();
    }
    let data = [];
    try {
      data = JSON.parse(raw || "[]");
    } catch (e) {
      data = [];
    }
    if (!Array.isArray(data)) data = [];
    const lines = [];
    for (const item of data.slice(0, MAX_LINES)) {
      const product = item && productById(item.id);
      const qty = item && Number(item.qty);
      if (!product || !Number.isInteger(qty) || qty < 1) continue;
      if (lines.some((l) => l.id === product.id)) continue;
      lines.push({ id: product.id, qty: Math.min(qty, maxQuantity(product)) });
    }
    return lines;
  }

  function saveCart(lines) {
    memoryCart = lines.slice();
    try {
      window.localStorage.setItem(CART_KEY, JSON.stringify(lines));
    } catch (e) {
      /* storage blocked: the in-memory copy keeps this page working */
    }
    updateCartCount();
  }

  /** Add `qty` of product `id`; returns {qty, clamped} with the line's new quantity. */
  function addToCart(id, qty) {
    const product = productById(id);
    const lines = loadCart();
    const line = lines.find((l) => l.id === id);
    const wanted = (line ? line.qty : 0) + qty;
    const allowed = Math.min(wanted, maxQuantity(product));
    if (line) line.qty = allowed;
    else lines.push({ id: id, qty: allowed });
    saveCart(lines);
    return { qty: allowed, clamped: allowed < wanted };
  }

  function setQuantity(id, qty) {
    const lines = loadCart();
    const line = lines.find((l) => l.id === id);
    if (line) line.qty = qty;
    saveCart(lines);
  }

  function removeFromCart(id) {
    saveCart(loadCart().filter((l) => l.id !== id));
  }

  function clearCart() {
    saveCart([]);
  }

  function cartDetails() {
    const lines = loadCart().map((l) => {
      const product = productById(l.id);
      return { product: product, qty: l.qty, total: cents(product.price) * l.qty };
    });
    const subtotal = lines.reduce((sum, l) => sum + l.total, 0);
    const count = lines.reduce((sum, l) => sum + l.qty, 0);
    return { lines: lines, subtotal: subtotal, count: count };
  }

  function updateCartCount() {
    const count = cartDetails().count;
    for (const node of document.querySelectorAll("[data-cart-count]")) node.textContent = String(count);
  }

  // ---------- shared pieces ----------

  function ratingNode(rating) {
    const full = Math.round(rating);
    return el("span", { className: "rating" }, [
      el("span", { className: "stars", "aria-hidden": "true", text: "★".repeat(full) + "☆".repeat(5 - full) }),
      " " + rating.toFixed(1) + " out of 5",
    ]);
  }

  function stockNode(product) {
    if (product.stock === 0) return el("span", { className: "stock out", text: "Out of stock" });
    if (product.stock < 20) return el("span", { className: "stock low", text: "Only " + product.stock + " left" });
    return el("span", { className: "stock", text: "In stock" });
  }

  function productCard(product) {
    const status = el("p", { className: "card-status", role: "status" });
    const button = el("button", {
      type: "button",
      className: "button add-to-cart",
      "data-product-id": product.id,
      disabled: product.stock === 0,
      "aria-describedby": "name-" + product.id,
    }, [product.stock === 0 ? "Out of stock" : "Add to cart"]);
    button.addEventListener("click", () => {
      const result = addToCart(product.id, 1);
      status.textContent = result.clamped
        ? "Limit reached: " + result.qty + " in cart."
        : "Added to cart (" + result.qty + " in cart).";
    });
    return el("li", { className: "card", "data-product-id": product.id }, [
      el("div", { className: "card-art cat-" + product.category, html: iconSvg(product.category, 56) }),
      el("div", { className: "card-body" }, [
        el("h3", { className: "card-title", id: "name-" + product.id }, [
          el("a", { href: "product.html?id=" + encodeURIComponent(product.id), text: product.name }),
        ]),
        el("p", { className: "card-meta", text: product.brand }),
        el("p", { className: "card-meta" }, [ratingNode(product.rating)]),
        el("p", { className: "card-price" }, [el("span", { className: "price", text: money(cents(product.price)) }), " ", stockNode(product)]),
        button,
        status,
      ]),
    ]);
  }

  function fillIcons() {
    for (const node of document.querySelectorAll("[data-icon]")) {
      node.innerHTML = iconSvg(node.getAttribute("data-icon"), Number(node.getAttribute("data-size")) || 24);
    }
  }

  function markCurrentNav() {
    const page = document.body.getAttribute("data-page");
    const p = params();
    for (const link of document.querySelectorAll(".category-nav a")) {
      const url = new URL(link.getAttribute("href"), window.location.href);
      const isSearchLink = url.pathname.endsWith("/search.html");
      const current = isSearchLink
        ? page === "search" && !p.get("q") && (url.searchParams.get("category") || "") === (p.get("category") || "")
        : page === "contact" && url.pathname.endsWith("/contact.html");
      if (current) link.setAttribute("aria-current", "page");
    }
  }

  function setError(form, field, message) {
    const input = form.querySelector("#" + field) || form.querySelector('[name="' + field + '"]');
    const slot = form.querySelector("#" + field + "-error");
    if (slot) {
      slot.textContent = message || "";
      slot.hidden = !message;
    }
    const targets = field === "shipping" ? form.querySelectorAll('[name="shipping"]') : input ? [input] : [];
    for (const target of targets) {
      if (message) target.setAttribute("aria-invalid", "true");
      else target.removeAttribute("aria-invalid");
    }
  }

  function showErrorSummary(box, problems, intro) {
    box.replaceChildren();
    if (!problems.length) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const n = problems.length;
    box.append(el("p", { text: intro.replace("{n}", n + (n === 1 ? " problem" : " problems")) }));
    const list = el("ul");
    for (const p of problems) {
      list.append(el("li", {}, [el("a", { href: "#" + p.field, text: p.label + ": " + p.message })]));
    }
    box.append(list);
  }

  const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

  // ---------- pages ----------

  function initIndex() {
    const featured = document.getElementById("featured");
    for (const product of PRODUCTS.filter((p) => p.featured)) featured.append(productCard(product));
  }

  function tokens(text) {
    return text.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
  }

  /** True when every word of `query` is found in the product's name, brand, category or description.
      A word such as "usb-c" must match whole consecutive words ("USB-C", "USB C"); "usbc" matches
      them too; a plain word of 3+ characters may be the start of a word ("head" finds "headphones"),
      a shorter one must be a whole word (so "USB C" does not find "Micro-USB Cable"). */
  function matches(product, query) {
    const hay = tokens([product.name, product.brand, product.description, (categoryById(product.category) || {}).name || ""].join(" "));
    return query.split(/\s+/).filter(Boolean).every((word) => {
      const parts = tokens(word);
      if (parts.length === 0) return true;
      if (parts.length > 1) {
        for (let i = 0; i + parts.length <= hay.length; i++) {
          if (parts.every((part, j) => hay[i + j] === part)) return true;
        }
        return false;
      }
      const part = parts[0];
      for (let i = 0; i < hay.length; i++) {
        if (part.length < 3 ? hay[i] === part : hay[i].startsWith(part)) return true;
        if (i + 1 < hay.length && hay[i] + hay[i + 1] === part) return true;
      }
      return false;
    });
  }

  const SORTS = {
    relevance: null,
    price_asc: (a, b) => a.price - b.price,
    price_desc: (a, b) => b.price - a.price,
    rating: (a, b) => b.rating - a.rating || a.price - b.price,
  };

  function initSearch() {
    const p = params();
    const query = (p.get("q") || "").trim().slice(0, 100);
    const categoryId = p.get("category") || "";
    const sort = Object.prototype.hasOwnProperty.call(SORTS, p.get("sort")) ? p.get("sort") : "relevance";
    const category = categoryById(categoryId);

    const headerInput = document.getElementById("q");
    if (headerInput) headerInput.value = query;
    document.getElementById("sort").value = sort;
    document.getElementById("sort-q").value = query;
    document.getElementById("sort-category").value = categoryId;
    if (!query) document.getElementById("sort-q").disabled = true; // keep URLs short and clean
    if (!categoryId) document.getElementById("sort-category").disabled = true;
    document.getElementById("sort").addEventListener("change", () => document.getElementById("sort-form").requestSubmit());

    // Category filter links keep the query and the sort order.
    const filters = document.getElementById("category-filters");
    const options = [{ id: "", name: "All categories" }].concat(CATEGORIES);
    for (const option of options) {
      const next = new URLSearchParams();
      if (query) next.set("q", query);
      if (option.id) next.set("category", option.id);
      if (sort !== "relevance") next.set("sort", sort);
      const qs = next.toString();
      filters.append(el("li", {}, [
        el("a", { href: "search.html" + (qs ? "?" + qs : ""), "aria-current": option.id === categoryId ? "page" : null, text: option.name }),
      ]));
    }

    let results = [];
    if (!categoryId || category) {
      results = PRODUCTS.filter((prod) => (!category || prod.category === category.id) && (!query || matches(prod, query)));
    }
    if (SORTS[sort]) results = results.slice().sort(SORTS[sort]); // Array.prototype.sort is stable

    const title = document.getElementById("results-title");
    title.textContent = query ? "Search results" : category ? category.name : categoryId ? "Unknown category" : "All products";
    document.title = title.textContent + " – Demo Shop";

    const n = results.length;
    let countText;
    if (query) countText = n + (n === 1 ? " result" : " results") + " for “" + query + "”";
    else countText = n + (n === 1 ? " product" : " products");
    if (category) countText += " in " + category.name;
    else if (categoryId) countText += " in “" + categoryId + "”";
    document.getElementById("result-count").textContent = countText;

    const list = document.getElementById("results");
    for (const product of results) list.append(productCard(product));
    const none = document.getElementById("no-results");
    none.hidden = n > 0;
    if (categoryId && !category) {
      document.getElementById("no-results-text").textContent =
        "There is no category called “" + categoryId + "”. Pick one of the categories above.";
    }
  }

  function initProduct() {
    const product = productById(params().get("id") || "");
    if (!product) {
      document.getElementById("not-found").hidden = false;
      document.getElementById("product").hidden = true;
      document.title = "Product not found – Demo Shop";
      return;
    }
    const category = categoryById(product.category);
    document.title = product.name + " – Demo Shop";
    const crumbCategory = document.getElementById("crumb-category");
    crumbCategory.textContent = category.name;
    crumbCategory.setAttribute("href", "search.html?category=" + encodeURIComponent(category.id));
    document.getElementById("crumb-product").textContent = product.name;

    document.getElementById("product-art").className = "product-art cat-" + product.category;
    document.getElementById("product-art").innerHTML = iconSvg(product.category, 120);
    document.getElementById("product-name").textContent = product.name;
    document.getElementById("product-brand").textContent = "by " + product.brand;
    document.getElementById("product-rating").replaceChildren(ratingNode(product.rating));
    document.getElementById("product-price").textContent = money(cents(product.price));
    document.getElementById("product-stock").replaceChildren(stockNode(product));
    document.getElementById("product-description").textContent = product.description;

    const specs = document.getElementById("specs-body");
    specs.append(el("tr", {}, [el("th", { scope: "row", text: "Product code" }), el("td", { text: product.id })]));
    for (const [key, value] of Object.entries(product.specs)) {
      specs.append(el("tr", {}, [el("th", { scope: "row", text: key }), el("td", { text: value })]));
    }

    const form = document.getElementById("add-form");
    const qtyInput = document.getElementById("quantity");
    const message = document.getElementById("add-message");
    const max = maxQuantity(product);
    qtyInput.max = String(Math.max(max, 1));
    if (product.stock === 0) {
      qtyInput.disabled = true;
      form.querySelector("button").disabled = true;
      form.querySelector("button").textContent = "Out of stock";
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const qty = Number(qtyInput.value);
      message.replaceChildren();
      message.classList.remove("error");
      if (!Number.isInteger(qty) || qty < 1 || qty > max) {
        message.classList.add("error");
        message.textContent = "Enter a quantity from 1 to " + max + ".";
        qtyInput.setAttribute("aria-invalid", "true");
        return;
      }
      qtyInput.removeAttribute("aria-invalid");
      const result = addToCart(product.id, qty);
      const text = result.clamped
        ? "You can buy at most " + max + " of this item, so your cart now holds " + result.qty + ". "
        : "Added " + qty + " × " + product.name + " to your cart. ";
      message.append(text, el("a", { href: "cart.html", text: "View cart" }));
    });
  }

  function initCart() {
    const table = document.getElementById("cart-table");
    const body = document.getElementById("cart-body");
    const empty = document.getElementById("cart-empty");
    const actions = document.getElementById("cart-actions");

    function render() {
      const cart = cartDetails();
      body.replaceChildren();
      empty.hidden = cart.lines.length > 0;
      table.hidden = cart.lines.length === 0;
      actions.hidden = cart.lines.length === 0;
      for (const line of cart.lines) {
        const product = line.product;
        const qtyId = "qty-" + product.id;
        const qty = el("input", { type: "number", id: qtyId, name: qtyId, min: "1", max: String(maxQuantity(product)), value: String(line.qty), className: "qty" });
        qty.addEventListener("change", () => {
          const value = Math.trunc(Number(qty.value));
          // Out-of-range input snaps back into range instead of silently dropping the line.
          setQuantity(product.id, Math.min(Math.max(Number.isFinite(value) ? value : 1, 1), maxQuantity(product)));
          render();
        });
        const remove = el("button", { type: "button", className: "icon-button remove", "aria-label": "Remove " + product.name, title: "Remove " + product.name, html: iconSvg("trash", 20) });
        remove.addEventListener("click", () => {
          removeFromCart(product.id);
          render();
        });
        body.append(el("tr", { "data-product-id": product.id }, [
          el("td", { className: "line-name" }, [el("a", { href: "product.html?id=" + encodeURIComponent(product.id), text: product.name })]),
          el("td", { className: "num line-price", text: money(cents(product.price)) }),
          el("td", { className: "num" }, [el("label", { for: qtyId, className: "sr-only", text: "Quantity for " + product.name }), qty]),
          el("td", { className: "num line-total", text: money(line.total) }),
          el("td", { className: "num" }, [remove]),
        ]));
      }
      document.getElementById("cart-total").textContent = money(cart.subtotal);
      document.getElementById("cart-summary").textContent =
        cart.count + (cart.count === 1 ? " item" : " items") + ", total " + money(cart.subtotal);
    }
    render();
  }

  function initCheckout() {
    const form = document.getElementById("checkout-form");
    const layout = document.getElementById("checkout-layout");
    const empty = document.getElementById("checkout-empty");
    const errors = document.getElementById("form-errors");
    const confirmation = document.getElementById("confirmation");

    function selectedShipping() {
      const checked = form.querySelector('[name="shipping"]:checked');
      return checked ? checked.value : "";
    }

    function renderSummary() {
      const cart = cartDetails();
      const list = document.getElementById("summary-lines");
      list.replaceChildren();
      for (const line of cart.lines) {
        list.append(el("li", {}, [el("span", { text: line.qty + " × " + line.product.name }), " ", el("span", { className: "num", text: money(line.total) })]));
      }
      const shipping = SHIPPING[selectedShipping()];
      const shippingCents = shipping ? cents(shipping.price) : 0;
      document.getElementById("summary-subtotal").textContent = money(cart.subtotal);
      document.getElementById("summary-shipping").textContent = shipping ? money(shippingCents) : "Choose a method";
      document.getElementById("summary-total").textContent = money(cart.subtotal + shippingCents);
      return cart;
    }

    if (cartDetails().lines.length === 0) {
      empty.hidden = false;
      layout.hidden = true;
      return;
    }
    renderSummary();
    for (const radio of form.querySelectorAll('[name="shipping"]')) radio.addEventListener("change", renderSummary);

    const FIELDS = [
      { field: "name", label: "Full name" },
      { field: "email", label: "Email" },
      { field: "address", label: "Address" },
      { field: "city", label: "City" },
      { field: "country", label: "Country" },
      { field: "shipping", label: "Shipping method" },
      { field: "terms", label: "Terms" },
    ];

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const values = {
        name: form.elements.namedItem("name").value.trim(),
        email: form.elements.namedItem("email").value.trim(),
        address: form.elements.namedItem("address").value.trim(),
        city: form.elements.namedItem("city").value.trim(),
        country: form.elements.namedItem("country").value,
        shipping: selectedShipping(),
        notes: form.elements.namedItem("notes").value.trim(),
        terms: form.elements.namedItem("terms").checked,
      };
      const messages = {
        name: values.name ? "" : "Enter your full name.",
        email: !values.email ? "Enter your email address." : EMAIL_RE.test(values.email) ? "" : "Enter a valid email address, like name@example.com.",
        address: values.address ? "" : "Enter your street address.",
        city: values.city ? "" : "Enter your city.",
        country: values.country ? "" : "Choose a country.",
        shipping: values.shipping ? "" : "Choose a shipping method.",
        terms: values.terms ? "" : "Accept the terms and conditions to place your order.",
      };
      const problems = [];
      for (const f of FIELDS) {
        setError(form, f.field, messages[f.field]);
        if (messages[f.field]) problems.push({ field: f.field === "shipping" ? "shipping-standard" : f.field, label: f.label, message: messages[f.field] });
      }
      showErrorSummary(errors, problems, "Please fix {n} before placing your order:");
      if (problems.length) {
        const first = document.getElementById(problems[0].field);
        if (first) first.focus();
        return;
      }
      const cart = renderSummary();
      const shipping = SHIPPING[values.shipping];
      const orderNumber = "DS-" + fnv1a([
        values.name, values.email.toLowerCase(), values.address, values.city, values.country,
        values.shipping, values.notes, cart.lines.map((l) => l.product.id + "x" + l.qty).join(","),
      ].join("|"));
      const total = cart.subtotal + cents(shipping.price);

      document.getElementById("order-number").textContent = orderNumber;
      const dl = document.getElementById("order-details");
      dl.replaceChildren();
      const rows = [
        ["Order number", orderNumber],
        ["Name", values.name],
        ["Email", values.email],
        ["Address", values.address],
        ["City", values.city],
        ["Country", values.country],
        ["Shipping", shipping.label + ", " + money(cents(shipping.price))],
        ["Notes", values.notes || "None"],
        ["Items", cart.lines.map((l) => l.qty + " × " + l.product.name + " (" + money(l.total) + ")").join("; ")],
        ["Subtotal", money(cart.subtotal)],
        ["Total", money(total)],
      ];
      for (const [term, value] of rows) dl.append(el("dt", { text: term }), el("dd", { text: value }));
      clearCart();
      layout.hidden = true;
      confirmation.hidden = false;
      document.title = "Order placed – Demo Shop";
      confirmation.querySelector("h2").focus();
    });
  }

  function initContact() {
    const form = document.getElementById("contact-form");
    const errors = document.getElementById("form-errors");
    const thanks = document.getElementById("thanks");
    const FIELDS = [
      { field: "name", label: "Your name" },
      { field: "email", label: "Email" },
      { field: "topic", label: "Topic" },
      { field: "message", label: "Message" },
    ];
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const values = {
        name: form.elements.namedItem("name").value.trim(),
        email: form.elements.namedItem("email").value.trim(),
        topic: form.elements.namedItem("topic").value,
        message: form.elements.namedItem("message").value.trim(),
      };
      const messages = {
        name: values.name ? "" : "Enter your name.",
        email: !values.email ? "Enter your email address." : EMAIL_RE.test(values.email) ? "" : "Enter a valid email address, like name@example.com.",
        topic: values.topic ? "" : "Choose a topic.",
        message: values.message ? "" : "Write a message.",
      };
      const problems = [];
      for (const f of FIELDS) {
        setError(form, f.field, messages[f.field]);
        if (messages[f.field]) problems.push({ field: f.field, label: f.label, message: messages[f.field] });
      }
      showErrorSummary(errors, problems, "Please fix {n} before sending your message:");
      if (problems.length) {
        document.getElementById(problems[0].field).focus();
        return;
      }
      const reference = "CT-" + fnv1a([values.name, values.email.toLowerCase(), values.topic, values.message].join("|"));
      document.getElementById("thanks-name").textContent = values.name;
      document.getElementById("thanks-topic").textContent = values.topic;
      document.getElementById("thanks-email").textContent = values.email;
      document.getElementById("thanks-reference").textContent = reference;
      document.getElementById("thanks-message").textContent = values.message;
      form.hidden = true;
      thanks.hidden = false;
      document.title = "Message sent – Demo Shop";
      thanks.querySelector("h2").focus();
    });
  }

  const PAGES = { index: initIndex, search: initSearch, product: initProduct, cart: initCart, checkout: initCheckout, contact: initContact };

  fillIcons();
  markCurrentNav();
  updateCartCount();
  const page = document.body.getAttribute("data-page");
  const init = PAGES[page];
  if (init) init();
  // Back/forward cache: a restored page must not show a stale cart.
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    if (page === "cart" || page === "checkout") window.location.reload();
    else updateCartCount();
  });

  // A small read-only handle for tests and the curious; the pages do not depend on it.
  window.DemoShop = { fnv1a: fnv1a, loadCart: loadCart, SHIPPING: SHIPPING };
})();
