"""The workflow shop's list pages (values read from one item of a list) and its widget page (values in
shadow roots and a frame), for the tests and the benchmark of reading result values again.

- `/list?q=&layout=&find=`: the products matching `q` (all without it), cheapest first (most expensive
  first under the "reordered" variant), as `cards` (each name with a product-specific id, like the demo
  shop's), a `table` (each row with a product-specific id) or `nested` (entries inside one section per
  category); its Find box (`find`) marks the item of that name (the list stays whole).
- `/widget?id=`: one product's name in an open shadow root, its price in a closed one, its stock in a
  same-origin iframe (`/widget-frame?id=`).
"""

from __future__ import annotations

import html
from typing import Any, Protocol

LAYOUTS = ("cards", "table", "nested")


class Request(Protocol):
    """What these pages need of the shop's request (agent.testing.workflow_site.shop._Request)."""

    @property
    def variant(self) -> str: ...

    @property
    def products(self) -> list[dict[str, Any]]: ...

    def one(self, key: str) -> str: ...

    def product(self, pid: str) -> dict[str, Any] | None: ...

    def page(self, title: str, body: str, status: int = 200) -> tuple[int, str, dict[str, str]]: ...


def stock(product: dict[str, Any]) -> int:
    """How many the shop has of a product (fixed per product)."""
    return 10 + sum(map(ord, product["id"])) % 90


def _money(value: float) -> str:
    return f"€{value:.2f}"


def listed(r: Request) -> list[dict[str, Any]]:
    """The products the list shows, in its order."""
    query = r.one("q").strip().lower()
    found = [p for p in r.products if all(w in (p["name"] + " " + p["tags"]).lower() for w in query.split())]
    return sorted(found, key=lambda p: p["price"], reverse="reordered" in r.variant.split("+"))


def _cards(items: list[dict[str, Any]], find: str) -> str:
    cards = "\n".join(
        f'<li class="item{" found" if p["name"] == find else ""}"><div class="item-art"></div><div class="item-body">'
        f'<h3 class="item-name" id="name-{html.escape(p["id"])}">{html.escape(p["name"])}</h3>'
        f'<p class="item-meta">{html.escape(p["tags"])}</p>'
        f'<p class="item-price"><span class="amount">{_money(p["price"])}</span></p></div></li>' for p in items)
    return f'<ul id="items" class="items">\n{cards}\n</ul>'


def _table(items: list[dict[str, Any]], find: str) -> str:
    rows = "\n".join(
        f'<tr class="row{" found" if p["name"] == find else ""}" id="row-{html.escape(p["id"])}">'
        f'<td class="name">{html.escape(p["name"])}</td><td class="price">{_money(p["price"])}</td>'
        f'<td class="stock">{stock(p)} left</td></tr>' for p in items)
    return ('<table id="items" class="items"><thead><tr><th>Product</th><th>Price</th><th>Stock</th></tr></thead>'
            f"<tbody>\n{rows}\n</tbody></table>")


def _nested(items: list[dict[str, Any]], find: str) -> str:
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in items:
        groups.setdefault("Cables" if "cable" in p["tags"] else "Hubs and chargers", []).append(p)
    sections = []
    for title, members in groups.items():
        entries = "\n".join(
            f'<li class="entry{" found" if p["name"] == find else ""}"><div class="entry-body">'
            f'<span class="entry-name">{html.escape(p["name"])}</span> · '
            f'<span class="entry-price">{_money(p["price"])}</span></div></li>' for p in members)
        sections.append(f'<section class="group"><h2 class="group-title">{title}</h2>'
                        f'<ol class="entries">\n{entries}\n</ol></section>')
    return "\n".join(sections)


def list_page(r: Request) -> tuple[int, str, dict[str, str]]:
    """The list of products matching `q`, cheapest first, in the layout asked for."""
    layout = r.one("layout") if r.one("layout") in LAYOUTS else "cards"
    items = listed(r)
    body = {"cards": _cards, "table": _table, "nested": _nested}[layout](items, r.one("find"))
    query = html.escape(r.one("q"))
    find = (f'<form id="find-form" action="/list" method="get"><input type="hidden" name="q" value="{query}">'
            f'<input type="hidden" name="layout" value="{layout}"><label for="find">Find a product</label> '
            f'<input id="find" name="find" type="search" value="{html.escape(r.one("find"))}"> '
            '<button type="submit" id="find-btn">Find</button></form>')
    return r.page(f"List {query}", f'<h1 id="list-title" class="headline">Products{": " + query if query else ""}</h1>'
                                   f'{find}<p id="list-count" class="count">{len(items)} products, cheapest first</p>\n'
                                   f"{body}")


WIDGET_JS = """<script>
customElements.define('product-name', class extends HTMLElement {
  connectedCallback() {
    this.attachShadow({ mode: 'open' }).innerHTML = '<h2 class="name"></h2>';
    this.shadowRoot.querySelector('h2').textContent = this.dataset.name;
  }
});
customElements.define('price-box', class extends HTMLElement {
  connectedCallback() {
    const root = this.attachShadow({ mode: 'closed' });
    root.innerHTML = '<p class="price-line">Price: <b class="amount"></b></p>';
    root.querySelector('b').textContent = this.dataset.price;
  }
});
</script>"""


def widget_page(r: Request) -> tuple[int, str, dict[str, str]]:
    """One product as a page built of components: name (open shadow root), price (closed), stock (an iframe)."""
    p = r.product(r.one("id"))
    if p is None:
        return r.page("Not found", '<h1 class="headline">Product not found</h1>', 404)
    pid = html.escape(p["id"])
    return r.page(p["name"], f"""<h1 id="widget-title" class="headline">Product card</h1>
<product-name data-name="{html.escape(p["name"])}"></product-name>
<price-box data-price="{_money(p["price"])}"></price-box>
<iframe id="stock-frame" title="Stock" src="/widget-frame?id={pid}" width="300" height="60"></iframe>
{WIDGET_JS}""")


def widget_frame(r: Request) -> tuple[int, str, dict[str, str]]:
    """The widget's stock, as its own small page."""
    p = r.product(r.one("id"))
    text = f'<span id="stock">{stock(p)} left</span>' if p else "unknown"
    return 200, (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Stock</title></head>'
                 f'<body><p class="stock-line">Stock: {text}</p></body></html>'), {}
