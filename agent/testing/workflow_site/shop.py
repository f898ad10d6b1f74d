"""A small server-rendered shop for the cached-workflow tests and benchmark, with page variants.

Pages: home (search form), search results (cheapest first), product (quantity + add to cart),
cart (cookie), checkout (name, email, country) and the order confirmation (a GET page whose
order number is a hash of what was ordered, so the same order always shows the same page); list
pages and a widget page built of components (agent.testing.workflow_site.lists).

`ShopServer.variant` switches the markup that every page is served with, the way a site changes
under a recorded workflow:
- base: as written;
- renamed: every id and class renamed;
- wrapped: extra wrapper elements around forms, buttons, links and list items;
- reordered: results, navigation links, form fields and dropdown options in another order;
- reworded: other wording on buttons and links (ids intact);
- redesign: renamed + wrapped + reworded at once (some steps need the agent);
- broken: the search form is gone (a step nobody can do);
and changes the data its pages show, the way a shop's data changes between a recording and a replay:
- prices: every price one euro higher;
- names: every product renamed ("Cable" becomes "Lead", "1 m" becomes "100 cm", ...);
- codes: order numbers written with letters only (a code without a digit);
- status: orders show another status word ("Pending review" instead of "Confirmed").
Variants combine with "+" ("redesign+names": the new layout and the renamed products at once).
`expected_order()` says what a correct order shows under each variant (the ground truth of tests
and the workflow benchmark).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from agent.testing.workflow_site import lists

LAYOUT_VARIANTS = ("renamed", "wrapped", "reordered", "reworded", "redesign", "broken")
DATA_VARIANTS = ("prices", "names", "codes", "status")
VARIANTS = ("base", *LAYOUT_VARIANTS, *DATA_VARIANTS)
NAME_CHANGES = {"Cable": "Lead", " 1 m": " 100 cm", " 2 m": " 200 cm", " 5 m": " 500 cm", "Hub": "Dock",
                "Charger": "Power Brick"}

PRODUCTS: list[dict[str, Any]] = [
    {"id": "usbc-1m", "name": "USB-C Cable 1 m", "price": 5.49, "tags": "usb-c cable"},
    {"id": "usbc-2m-braided", "name": "Braided USB-C Cable 2 m", "price": 12.99, "tags": "usb-c cable braided"},
    {"id": "usbc-hub", "name": "USB-C Hub 7-in-1", "price": 34.00, "tags": "usb-c hub adapter"},
    {"id": "hdmi-2m", "name": "HDMI 2.1 Cable 2 m", "price": 7.99, "tags": "hdmi cable"},
    {"id": "hdmi-5m", "name": "HDMI Cable 5 m", "price": 15.49, "tags": "hdmi cable long"},
    {"id": "lightning-1m", "name": "Lightning Cable 1 m", "price": 9.49, "tags": "lightning cable apple"},
    {"id": "charger-65w", "name": "GaN Charger 65 W", "price": 39.90, "tags": "charger usb-c power"},
]
COUNTRIES = ["Austria", "France", "Germany", "Ireland", "Spain"]


def money(value: float) -> str:
    """Prices as the shop shows them: €5.49."""
    return f"€{value:.2f}"


def has(variant: str, part: str) -> bool:
    """Whether `variant` (maybe a combination "a+b") includes `part`."""
    return part in variant.split("+")


def catalog(variant: str = "base") -> list[dict[str, Any]]:
    """The products as the shop serves them under `variant` (prices or names changed by data variants)."""
    out = []
    for p in PRODUCTS:
        p = dict(p)
        if has(variant, "prices"):
            p["price"] = round(p["price"] + 1.0, 2)
        if has(variant, "names"):
            for old, new in NAME_CHANGES.items():
                p["name"] = p["name"].replace(old, new)
        out.append(p)
    return out


def order_number(items: str, name: str, email: str, country: str, variant: str = "base") -> str:
    """The order number the shop shows for an order: a hash of what was ordered (letters only for "codes")."""
    digest = hashlib.sha256(json.dumps([items, name, email.lower(), country]).encode()).hexdigest()[:8].upper()
    if has(variant, "codes"):
        digest = digest.translate(str.maketrans("0123456789", "GHJKMNPQRS"))
    return "WS-" + digest


def order_status(variant: str = "base") -> str:
    """The status word an order page shows."""
    return "Pending review" if has(variant, "status") else "Confirmed"


def expected_order(query: str, qty: int, name: str, email: str, country: str,
                   variant: str = "base") -> dict[str, Any]:
    """What a correct order of the cheapest `query` product shows under `variant`: the ground truth."""
    matching = sorted((p for p in catalog(variant) if _matches(p, query)), key=lambda p: p["price"])
    product = matching[0]
    return {"order": order_number(f"{product['id']}:{qty}", name, email, country, variant),
            "product": product["name"], "quantity": qty, "total": round(product["price"] * qty, 2),
            "name": name, "status": order_status(variant)}


def _page(title: str, body: str, cart_count: int) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} – Cable Corner</title>
<style>body{{font-family:sans-serif;margin:1em}} .btn{{padding:4px 10px}} li{{margin:4px 0}}</style></head>
<body>
<header id="top" class="site-header">
<a id="logo" class="logo" href="/">Cable Corner</a>
<form id="search-form" class="search-form" action="/search" method="get">
<label for="q">Search products</label>
<input id="q" name="q" type="search" placeholder="Search products">
<button type="submit" id="search-btn" class="btn btn-primary">Search</button>
</form>
<nav id="main-nav" class="nav"><ul class="nav-list">
<li class="nav-item"><a class="nav-link" href="/">Home</a></li>
<li class="nav-item"><a class="nav-link" href="/cart">Cart ({cart_count})</a></li>
<li class="nav-item"><a class="nav-link" href="/contact">Contact</a></li>
</ul></nav>
</header>
<main id="content" class="content">
{body}
</main>
</body></html>"""


def _cart(cookie: str | None, variant: str = "base") -> list[dict[str, Any]]:
    if not cookie:
        return []
    m = re.search(r"(?:^|;\s*)cart=([^;]*)", cookie)
    if not m:
        return []
    try:
        from urllib.parse import unquote

        data = json.loads(unquote(m.group(1)))
    except ValueError:
        return []
    lines = []
    for item in data if isinstance(data, list) else []:
        product = next((p for p in catalog(variant) if p["id"] == item.get("id")), None)
        if product and isinstance(item.get("qty"), int) and 1 <= item["qty"] <= 10:
            lines.append({"product": product, "qty": item["qty"]})
    return lines[:20]


def _matches(product: dict[str, Any], query: str) -> bool:
    hay = (product["name"] + " " + product["tags"]).lower()
    return all(word in hay for word in query.lower().split())


Answer = tuple[int, str, dict[str, str]]  # (status, html, extra headers)


@dataclass(frozen=True)
class _Request:
    """One request: its query, the cart from its cookie, and the variant whose data the pages show."""

    query: dict[str, list[str]]
    cart: list[dict[str, Any]]
    variant: str = "base"

    @property
    def products(self) -> list[dict[str, Any]]:
        """The catalogue under this request's variant."""
        return catalog(self.variant)

    def product(self, pid: str) -> dict[str, Any] | None:
        """A product by id, as this variant shows it."""
        return next((p for p in self.products if p["id"] == pid), None)

    def one(self, key: str) -> str:
        """The first value of a query parameter ("" when absent)."""
        return (self.query.get(key) or [""])[0]

    @property
    def count(self) -> int:
        """Items in the cart (shown in the header)."""
        return sum(line["qty"] for line in self.cart)

    def page(self, title: str, body: str, status: int = 200) -> Answer:
        """A whole page with the site's header."""
        return status, _page(title, body, self.count), {}


def _home(r: _Request) -> Answer:
    return r.page("Home", """<h1 id="welcome" class="headline">Welcome to Cable Corner</h1>
<p class="intro">Cables, hubs and chargers. Use the search box above.</p>""")


def _search(r: _Request) -> Answer:
    q = r.one("q").strip()[:100]
    results = sorted((p for p in r.products if q and _matches(p, q)), key=lambda p: p["price"])
    items = "\n".join(
        f'<li class="result"><a class="result-link" href="/product?id={quote(p["id"])}">'
        f'{html.escape(p["name"])}</a>'
        f' <span class="result-price price">{money(p["price"])}</span></li>'
        for p in results
    )
    return r.page(f"Search {q}", f'<h1 id="results-title" class="headline">Results for “{html.escape(q)}”</h1>\n'
                                 f'<p id="result-count" class="count">{len(results)} products, cheapest first</p>\n'
                                 f'<ul id="results" class="results">\n{items}\n</ul>')


def _product_page(r: _Request) -> Answer:
    p = r.product(r.one("id"))
    if p is None:
        return r.page("Not found", '<h1 class="headline">Product not found</h1>', 404)
    return r.page(p["name"], f"""<h1 id="product-name" class="headline product-title">{html.escape(p["name"])}</h1>
<p class="price-line">Price: <span id="price" class="price">{money(p["price"])}</span></p>
<form id="add-form" class="add-form" action="/cart/add" method="get">
<input type="hidden" name="id" value="{html.escape(p["id"])}">
<label for="qty">Quantity</label>
<input id="qty" name="qty" type="number" value="1" min="1" max="10">
<button type="submit" id="add-btn" class="btn btn-primary">Add to cart</button>
</form>""")


def _cart_add(r: _Request) -> Answer:
    p = r.product(r.one("id"))
    try:
        qty = int(r.one("qty"))
    except ValueError:
        qty = 0
    if p is None or not 1 <= qty <= 10:
        return r.page("Error", '<h1 class="headline">Enter a quantity from 1 to 10</h1>', 400)
    kept = [{"id": line["product"]["id"], "qty": line["qty"]} for line in r.cart if line["product"]["id"] != p["id"]]
    kept.append({"id": p["id"], "qty": qty})
    return 303, "", {"Location": "/cart", "Set-Cookie": f"cart={quote(json.dumps(kept))}; Path=/"}


def _cart_page(r: _Request) -> Answer:
    rows = "\n".join(
        f'<tr class="cart-line"><td class="line-name">{html.escape(line["product"]["name"])}</td>'
        f'<td class="line-qty">{line["qty"]}</td>'
        f'<td class="line-total">{money(line["qty"] * line["product"]["price"])}</td></tr>'
        for line in r.cart
    )
    total = sum(line["qty"] * line["product"]["price"] for line in r.cart)
    return r.page("Cart", f"""<h1 id="cart-title" class="headline">Your cart</h1>
<table id="cart-table" class="cart"><tbody>{rows}</tbody></table>
<p class="total-line">Total: <span id="cart-total" class="total">{money(total)}</span></p>
<p><a id="checkout-link" class="btn btn-primary" href="/checkout">Proceed to checkout</a></p>""")


def _checkout(r: _Request) -> Answer:
    items = ",".join(f'{line["product"]["id"]}:{line["qty"]}' for line in r.cart)
    options = "\n".join(f'<option value="{c}">{c}</option>' for c in COUNTRIES)
    return r.page("Checkout", f"""<h1 id="checkout-title" class="headline">Checkout</h1>
<form id="checkout-form" class="checkout-form" action="/order" method="get">
<input type="hidden" name="items" value="{html.escape(items)}">
<div class="field field-name"><label for="name">Full name</label>
<input id="name" name="name" type="text"></div>
<div class="field field-email"><label for="email">Email</label>
<input id="email" name="email" type="email"></div>
<div class="field field-country"><label for="country">Country</label>
<select id="country" name="country">
<option value="">Choose a country</option>
{options}
</select></div>
<button type="submit" id="place-order" class="btn btn-primary">Place order</button>
</form>""")


def _order(r: _Request) -> Answer:
    lines: list[tuple[dict[str, Any], int]] = []
    for part in r.one("items").split(","):
        pid, _, qty = part.partition(":")
        p = r.product(pid)
        if p and qty.isdigit():
            lines.append((p, int(qty)))
    name, email, country = r.one("name").strip(), r.one("email").strip(), r.one("country")
    if not lines or not name or "@" not in email or country not in COUNTRIES:
        return r.page("Order failed", '<h1 class="headline">Your order could not be placed</h1>'
                                      '<p class="error">Fill in every field.</p>')
    number = order_number(r.one("items"), name, email, country, r.variant)
    total = sum(p["price"] * q for p, q in lines)
    items = "\n".join(
        f'<li class="order-line"><span class="line-qty">{q}</span> × '
        f'<span class="item-name">{html.escape(p["name"])}</span></li>'
        for p, q in lines
    )
    thanks = f'<h1 id="thanks" class="headline">Thank you, <span id="customer">{html.escape(name)}</span>!</h1>'
    return r.page("Order placed", f"""{thanks}
<p class="order-line-number">Order number: <strong id="order-number">{number}</strong></p>
<ul id="order-items" class="order-items">
{items}
</ul>
<p class="total-line">Total: <span id="order-total" class="total">{money(total)}</span></p>
<p class="status-line">Status: <span id="order-status" class="status">{order_status(r.variant)}</span></p>
<p class="note">A confirmation goes to <span id="order-email">{html.escape(email)}</span>, shipping to
<span id="order-country">{html.escape(country)}</span>.</p>""")


ROUTES: dict[str, Callable[[_Request], Answer]] = {
    "/": _home, "/search": _search, "/product": _product_page, "/cart/add": _cart_add, "/cart": _cart_page,
    "/checkout": _checkout, "/order": _order,
    "/list": lists.list_page, "/widget": lists.widget_page, "/widget-frame": lists.widget_frame,
}


def render(path: str, query: dict[str, list[str]], cookie: str | None, variant: str = "base") -> Answer:
    """(status, html, extra headers) for a request, with the data of `variant` (the markup as written)."""
    r = _Request(query, _cart(cookie, variant), variant)
    route = ROUTES.get(path)
    if route is None:
        return r.page("Not found", '<h1 class="headline">Page not found</h1>', 404)
    return route(r)


# ------------------------------------------------------------------ variants
def _rename(markup: str) -> str:
    markup = re.sub(r'\b(id|for)="([^"]+)"', lambda m: f'{m.group(1)}="x-{m.group(2)}-7"', markup)
    return re.sub(r'\bclass="([^"]+)"', lambda m: 'class="' + " ".join(f"c7-{c}" for c in m.group(1).split()) + '"',
                  markup)


def _wrap(markup: str) -> str:
    markup = re.sub(r"(<form\b.*?</form>)", r'<div class="panel"><div class="panel-body">\1</div></div>', markup,
                    flags=re.DOTALL)
    markup = re.sub(r"(<button\b.*?</button>)", r'<span class="control">\1</span>', markup, flags=re.DOTALL)
    markup = re.sub(r'(<li class="[^"]*">)(.*?)(</li>)', r'\1<div class="cell">\2</div>\3', markup, flags=re.DOTALL)
    markup = re.sub(r"(<h1\b)", r'<div class="title-bar">\1', markup)
    return re.sub(r"(</h1>)", r"\1</div>", markup)


WORDING = {">Search</button>": ">Find</button>", ">Add to cart</button>": ">Put in basket</button>",
           ">Proceed to checkout</a>": ">Go to checkout</a>", ">Place order</button>": ">Buy now</button>"}


def _reword(markup: str) -> str:
    for old, new in WORDING.items():
        markup = markup.replace(old, new)
    return markup


def _reorder(markup: str) -> str:
    def reverse_block(m: re.Match[str]) -> str:
        items = re.findall(r"<li\b.*?</li>", m.group(2), flags=re.DOTALL)
        return m.group(1) + "\n" + "\n".join(reversed(items)) + "\n" + m.group(3)

    markup = re.sub(r'(<ul id="(?:results|main-nav)"[^>]*>|<ul class="nav-list">)(.*?)(</ul>)', reverse_block, markup,
                    flags=re.DOTALL)
    fields = re.findall(r'<div class="field field-(?:name|email)">.*?</div>', markup, flags=re.DOTALL)
    if len(fields) == 2:
        joined = fields[0] + "\n" + fields[1]
        markup = markup.replace(joined, fields[1] + "\n" + fields[0])
    options = re.findall(r'<option value="[A-Z][^"]*">[^<]*</option>', markup)
    if options:
        block = "\n".join(options)
        markup = markup.replace(block, "\n".join(reversed(options)))
    return markup


def _break(markup: str) -> str:
    return re.sub(r'<form id="search-form".*?</form>', '<p class="notice">Search is down for maintenance.</p>', markup,
                  flags=re.DOTALL)


def transform(markup: str, variant: str) -> str:
    """The page as served by `variant` (each layout part of a combination, in order)."""
    for part in variant.split("+"):
        markup = _transform(markup, part)
    return markup


def _transform(markup: str, variant: str) -> str:
    if variant == "renamed":
        return _rename(markup)
    if variant == "wrapped":
        return _wrap(markup)
    if variant == "reordered":
        return _reorder(markup)
    if variant == "reworded":
        return _reword(markup)
    if variant == "redesign":
        return _rename(_wrap(_reword(markup)))
    if variant == "broken":
        return _break(markup)
    return markup


class ShopServer:
    """The shop on 127.0.0.1 (a free port); set `.variant` to change every page from now on."""

    def __init__(self) -> None:
        self.variant = "base"
        self.hits: list[str] = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                shop.hits.append(self.path)
                status, markup, headers = render(parts.path, parse_qs(parts.query), self.headers.get("Cookie"),
                                                 shop.variant)
                data = transform(markup, shop.variant).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def order_number(self, items: str, name: str, email: str, country: str) -> str:
        """The order number the shop shows now for an order (for assertions)."""
        return order_number(items, name, email, country, self.variant)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def order_url(base: str, items: str, name: str, email: str, country: str) -> str:
    """The confirmation page's URL for an order."""
    return f"{base}/order?{urlencode({'items': items, 'name': name, 'email': email, 'country': country})}"
