"""A scripted model for the workflow shop: it reads the observation the engine sends, like a model would.

`shop_agent(...)` answers the agent's step requests (search, open the cheapest result, add to cart,
check out, report the order) and the replay's heal requests (do the one step asked, then `done`).
It is a handler for agent.testing.fakellm.FakeLLM; `calls` counts what it answered, by kind.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from agent.testing.fakellm import call, find_index, last_user_text, reply

LABELS = {
    "search": ("Search", "Find"),
    "add": ("Add to cart", "Put in basket"),
    "checkout": ("Proceed to checkout", "Go to checkout"),
    "order": ("Place order", "Buy now"),
}


def index_of(text: str, *labels: str, tag: str | None = None, contains: str | None = None) -> int:
    """Index of the first element line whose visible text is one of `labels` (or that contains `contains`)."""
    for line in text.splitlines():
        m = re.match(r"^\s*\[(\d+)\]<(\w[\w-]*)([^>]*)>(.*)$", line)
        if not m or (tag and m.group(2) != tag):
            continue
        if contains is not None and contains in line:
            return int(m.group(1))
        if m.group(4).strip() in labels:
            return int(m.group(1))
    raise LookupError(f"no element {labels or contains!r} in the observation")


def found(pattern: str, text: str) -> str:
    """The first group of `pattern` in `text`; LookupError (a failed script) when the page lacks it."""
    m = re.search(pattern, text)
    if m is None:
        raise LookupError(f"{pattern!r} is not in the observation")
    return m.group(1)


def page_url(text: str) -> str:
    m = re.search(r'<page url="([^"]*)"', text)
    return m.group(1) if m else ""


def order_answer(order: dict[str, Any], *, style: str = "plain", json_result: bool = False) -> Any:
    """What the scripted agent reports for an order page showing `order` (see shop.expected_order).

    style "plain": the values as shown; "echo": the product name upper-cased and quoted, the status
    word lower-cased (values the agent read off the page, transformed as a model may write them).
    """
    if json_result:
        return {key: order[key] for key in ("order", "product", "quantity", "total", "name")}
    total = f"€{order['total']:.2f}"
    if style == "echo":
        return (f"Order {order['order']} placed: {order['quantity']} × “{order['product'].upper()}” for "
                f"{order['name']}, total {total}, status {order['status'].lower()}.")
    return (f"Order {order['order']} placed: {order['quantity']} × {order['product']} for {order['name']}, "
            f"total {total}.")


def shop_agent(*, query: str, qty: int, name: str, email: str, country: str, json_result: bool = False,
               heal_gives_up: bool = False, style: str = "plain") -> Callable[[dict[str, Any]], Any]:
    """The scripted model for the order task (and for healing one step of it); `style` as in order_answer."""
    counts: Counter[str] = Counter()

    def handler(body: dict[str, Any]) -> Any:
        text = last_user_text(body)
        url = page_url(text)
        healing = "You are repairing ONE step" in text or "You are finishing a recorded workflow" in text
        kind = "heal" if healing else ("step" if body.get("tools") else "other")
        counts[kind] += 1
        handler.counts = counts  # type: ignore[attr-defined]
        if kind == "other":
            return reply('{"query": "hdmi"}')
        if healing:
            if heal_gives_up:
                return reply("I cannot do this.",
                             call("done", text="the page has no way to do this step", success=False))
            previous = text.split("<previous_steps>")[1].split("</previous_steps>")[0]
            if "click" in previous and "You are repairing" in text:
                return reply("The step is done.", call("done", text="did the step", success=True))
        if "/order" in url:
            order = {"order": found(r"Order number:\s*(WS-[0-9A-Z]{8})", text),
                     "total": float(found(r"Total:\s*€([\d.]+)", text)),
                     "product": found(r"\d+ × ([^\n]+)", text).strip(), "quantity": qty, "name": name,
                     "status": found(r"Status:\s*([^\n]+)", text).strip()}
            answer = order_answer(order, style=style, json_result=json_result)
            key = "data" if json_result else "text"
            return reply("Report the order.", call("done", **{key: answer}, success=True))
        if "/checkout" in url:
            return reply("Fill in the order form and place the order.",
                         call("input", index=index_of(text, contains="name=name"), text=name),
                         call("input", index=index_of(text, contains="name=email"), text=email),
                         call("select_dropdown", index=index_of(text, contains="name=country"), text=country),
                         call("click", index=index_of(text, *LABELS["order"], tag="button")))
        if "/cart" in url:
            return reply("Go to the checkout.", call("click", index=index_of(text, *LABELS["checkout"], tag="a")))
        if "/product" in url:
            return reply(f"Add {qty} to the cart.",
                         call("input", index=index_of(text, contains="name=qty"), text=str(qty)),
                         call("click", index=index_of(text, *LABELS["add"], tag="button")))
        if "/search" in url:
            cheapest = index_of(text, contains='href="/product', tag="a")
            return reply("Open the cheapest result.", call("click", index=cheapest))
        if "name=q" not in text:  # no search box: a model would give up
            return reply("There is no search box.", call("done", text="the shop has no search box", success=False))
        return reply(f"Search for {query}.",
                     call("input", index=index_of(text, contains="name=q"), text=query),
                     call("click", index=index_of(text, *LABELS["search"], tag="button")))

    handler.counts = counts  # type: ignore[attr-defined]
    return handler


def order_prompt(base: str, query: str, qty: int, name: str, email: str, country: str) -> str:
    """The task text the workflow is recorded from (and replayed with other values)."""
    return (f"On {base} buy {qty} of the cheapest {query} product for {name} ({email}), "
            f"shipping to {country}, and report the order number and total")


def demo_agent(query: str) -> Callable[[dict[str, Any]], Any]:
    """Search the demo shop, open the first result, report its name and price."""

    def handler(body: dict[str, Any]) -> Any:
        text = last_user_text(body)
        url = text.split('<page url="')[1].split('"')[0]
        if "/product.html" in url:
            name = text.split("\n# ")[1].split("\n")[0]
            price = found(r"Price:\s*(€[\d.]+)", text)
            answer = f"The first {query} result is {name} at {price}."
            return reply("Report it.", call("done", text=answer, success=True))
        if "search.html" in url:
            return reply("Open the first result.", call("click", index=find_index(body, 'href="/product.html')))
        return reply(f"Search for {query}.", call("input", index=find_index(body, "name=q"), text=query),
                     call("click", index=find_index(body, "Search", tag="button")))

    return handler


def cheapest_prompt(base: str, query: str) -> str:
    """The demo shop's first example task, with its search words as a parameter."""
    return f"Go to {base}/index.html and find the cheapest {query} cable. Return its name and price."


def first_card(text: str) -> tuple[str, str]:
    """(name, price) of the first product card in an observation of the demo shop's search page."""
    m = re.search(r'<a href="?/?product\.html\?id=[^>]*>([^\n]+)\n(?:.*\n)*?[^\n]*?(€\d+\.\d\d)', text)
    if m is None:
        raise LookupError("no product card in the observation")
    return m.group(1).strip(), m.group(2)


def cheapest_agent(query: str) -> Callable[[dict[str, Any]], Any]:
    """Search the demo shop, sort by price (low to high), report the first card's name and price; a heal of
    the last step reads the same card off the page it is on."""

    def handler(body: dict[str, Any]) -> Any:
        text = last_user_text(body)
        url = page_url(text)
        if "search.html" in url and ("sort=price_asc" in url or "You are finishing" in text):
            name, price = first_card(text)
            return reply("Report the first (cheapest) result.",
                         call("done", text=f"The cheapest is {name} at {price}.", success=True))
        if not url.startswith("http"):  # a blank tab: open the shop named in the task
            shop = found(r"Go to (\S+/index\.html)", text)
            return reply("Open the shop.", call("navigate", url=shop))
        if "search.html" in url:
            return reply("Sort by price, lowest first.",
                         call("select_dropdown", index=find_index(body, "name=sort"), text="Price: low to high"))
        return reply(f"Search for {query}.", call("input", index=find_index(body, "name=q"), text=query),
                     call("click", index=find_index(body, "Search", tag="button")))

    return handler


LIST_ITEM_RES = (re.compile(r"^### (.+)\n.*\n(€[\d.]+)$", re.M),  # cards: name, tags, price
                 re.compile(r"^(.+?) \| (€[\d.]+) \| (\d+ left)$", re.M),  # table rows
                 re.compile(r"^(.+?) · (€[\d.]+)$", re.M))  # nested entries


def list_items(text: str) -> list[tuple[str, ...]]:
    """(name, price[, stock]) of each item of a list page of the workflow shop, in the page's order."""
    for pattern in LIST_ITEM_RES:
        found = [m.groups() for m in pattern.finditer(text)]
        if found:
            return found
    raise LookupError("no list item in the observation")


def list_prompt(base: str, query: str, layout: str) -> str:
    """The task of reading the cheapest product off a list page."""
    return f"Open {base}/list?q={query}&layout={layout} and report the cheapest {query} product with its price"


def find_prompt(base: str, name: str, layout: str) -> str:
    """The task of reading one named product's values off a list page."""
    return f"Open {base}/list?layout={layout} and find {name} there; report its price"


def list_agent() -> Callable[[dict[str, Any]], Any]:
    """Open the list page named in the task, report the item asked for (the cheapest, or the one named) with its
    values; a heal of the last step reads the same off the page it is on."""

    def handler(body: dict[str, Any]) -> Any:
        text = last_user_text(body)
        task = text.split("<task>")[1].split("</task>")[0] if "<task>" in text else text
        if not page_url(text).startswith("http"):
            return reply("Open the list.", call("navigate", url=found(r"Open (\S+)", task)))
        named = re.search(r" and find (.+?) there; report its price", task)
        if named and "find=" not in page_url(text):
            return reply("Find the product.", call("input", index=find_index(body, "name=find"), text=named.group(1)),
                         call("click", index=find_index(body, "Find", tag="button")))
        items = list_items(text)
        price = lambda i: float(i[1].strip("€"))  # noqa: E731 - the sort key
        item = next(i for i in items if i[0] == named.group(1).strip()) if named else min(items, key=price)
        extra = f" ({item[2]})" if len(item) > 2 else ""
        answer = f"{item[0]} costs {item[1]}{extra}." if named else f"The cheapest is {item[0]} at {item[1]}{extra}."
        return reply("Report it.", call("done", text=answer, success=True))

    return handler


def widget_prompt(base: str, pid: str) -> str:
    """The task of reading a product widget's name, price and stock."""
    return f"Open {base}/widget?id={pid} and report the product's name, price and stock"


def widget_agent() -> Callable[[dict[str, Any]], Any]:
    """Open the widget page named in the task, report what its components show."""

    def handler(body: dict[str, Any]) -> Any:
        text = last_user_text(body)
        if not page_url(text).startswith("http"):
            return reply("Open the widget.", call("navigate", url=found(r"Open (\S+)", text)))
        name, price = found(r"\n## (.+)", text), found(r"Price: (€[\d.]+)", text)
        left = found(r"Stock: (\d+ left)", text)
        return reply("Report it.", call("done", text=f"{name} costs {price}; {left}.", success=True))

    return handler
