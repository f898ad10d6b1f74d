"""The bundled demo shop (data/demo) in real Chromium: search, sort, product, cart, checkout, contact.

The catalogue facts and order/reference numbers asserted here are the right answers of the
workbench's example tasks (data/demo/examples.json); docs/demo-shop.md lists the same ones, and is
checked here against the shop.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page

from agent.models import RunRequest, parse_json_schema

DEMO = Path(__file__).resolve().parent.parent / "data" / "demo"
DEMO_DOCS = Path(__file__).resolve().parent.parent / "docs" / "demo-shop.md"
PAGES = ("index.html", "search.html", "product.html", "cart.html", "checkout.html", "contact.html")

# Catalogue facts the examples' answers depend on (also documented in docs/demo-shop.md).
USB_C_RESULTS = [  # relevance order = catalogue order
    ("cab-01", "USB-C to USB-C Cable 0.5 m", "€5.49"),
    ("cab-02", "USB-C to USB-C Cable 1 m", "€8.99"),
    ("cab-03", "USB-C to USB-C Braided Cable 2 m", "€14.49"),
    ("cab-04", "USB-A to USB-C Cable 1 m", "€6.79"),
    ("chg-01", "20 W USB-C Wall Charger", "€12.49"),
]
CONTACT = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "topic": "Returns and refunds",
    "message": "My keyboard arrived with a broken key. Can I exchange it?",
}
CONTACT_REFERENCE = "CT-26CF798D"
ORDER = {
    "name": "Grace Hopper",
    "email": "grace@example.com",
    "address": "1 Harbour Street",
    "city": "Dublin",
    "country": "Ireland",
}
ORDER_NUMBER = "DS-B3A5098E"


def fnv1a(text: str) -> str:
    """The shop's 32-bit FNV-1a over UTF-16 code units, as 8 upper-case hex digits."""
    value = 0x811C9DC5
    data = text.encode("utf-16-le")
    for i in range(0, len(data), 2):
        value ^= data[i] | (data[i + 1] << 8)
        value = (value * 0x01000193) & 0xFFFFFFFF
    return f"{value:08X}"


def _serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    """Serve `directory` on 127.0.0.1 (a second server, for the path-prefix test)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(directory)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def prefixed_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo served as http://host/demo/ (a parent folder holding a `demo` link to data/demo)."""
    root = tmp_path_factory.mktemp("prefix")
    (root / "demo").symlink_to(DEMO, target_is_directory=True)
    server, url = _serve(root)
    yield url + "/demo/"
    server.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Any) -> AsyncIterator[Page]:
    """A fresh tab in its own browser session (so an empty cart), as the agent gets one."""
    async with browser.session() as session:
        page = session.page
        page.set_default_timeout(5_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
    assert errors == [], f"script errors on the demo pages: {errors}"


async def cards(page: Page) -> list[tuple[str, str, str]]:
    """(id, name, price) of every result card, in page order."""
    rows = await page.eval_on_selector_all(
        "#results .card",
        "cs => cs.map(c => [c.dataset.productId, c.querySelector('h3').textContent, c.querySelector('.price').textContent])",
    )
    return [tuple(r) for r in rows]


async def definitions(page: Page, selector: str) -> dict[str, str]:
    """A <dl>'s dt -> dd texts."""
    pairs = await page.eval_on_selector(
        selector, "dl => [...dl.querySelectorAll('dt')].map(dt => [dt.textContent, dt.nextElementSibling.textContent])"
    )
    return dict(pairs)


async def visible_errors(page: Page) -> dict[str, str]:
    """Field id -> error text of every error shown next to a field."""
    pairs = await page.eval_on_selector_all(
        ".field-error:not([hidden])", "ps => ps.map(p => [p.id.replace(/-error$/, ''), p.textContent])"
    )
    return dict(pairs)


# ---------- catalogue and examples ----------


async def test_catalogue_is_complete_and_unambiguous(page: Page, demo_url: str) -> None:
    """24 products, 6 per category, every field present, all prices distinct with 2 decimals."""
    await page.goto(f"{demo_url}/index.html")
    products = await page.evaluate("window.DEMO_PRODUCTS")
    categories = await page.evaluate("window.DEMO_CATEGORIES.map(c => c.id)")
    assert categories == ["cables", "chargers", "headphones", "keyboards"]
    assert len(products) == 24
    assert {c: sum(p["category"] == c for p in products) for c in categories} == dict.fromkeys(categories, 6)
    fields = {"id", "name", "category", "brand", "price", "rating", "stock", "featured", "description", "specs"}
    for p in products:
        assert set(p) == fields, p["id"]
        assert round(p["price"], 2) == p["price"] and p["price"] > 0, p["id"]
        assert 0 <= p["rating"] <= 5 and isinstance(p["stock"], int) and p["specs"], p["id"]
    assert len({p["id"] for p in products}) == 24
    assert len({p["name"] for p in products}) == 24
    assert len({p["price"] for p in products}) == 24
    usb_c_cables = [p for p in products if p["category"] == "cables" and "USB-C" in p["name"]]
    cheapest = min(usb_c_cables, key=lambda p: p["price"])
    assert (cheapest["name"], cheapest["price"], cheapest["stock"] > 0) == ("USB-C to USB-C Cable 0.5 m", 5.49, True)
    # The featured products on the home page, in catalogue order.
    featured = await page.eval_on_selector_all("#featured .card h3", "hs => hs.map(h => h.textContent)")
    assert featured == [p["name"] for p in products if p["featured"]]
    assert await page.text_content("#cart-count") == "0"


def test_examples_are_valid_run_requests() -> None:
    """Every example is a valid run request once {DEMO_URL} is filled in; the required kinds are there."""
    examples = json.loads((DEMO / "examples.json").read_text())
    assert 5 <= len(examples) <= 6
    assert len({e["title"] for e in examples}) == len(examples)
    for example in examples:
        assert set(example) == {"title", "prompt", "response_format", "json_schema"}, example["title"]
        assert "{DEMO_URL}" in example["prompt"], example["title"]
        request = RunRequest(
            prompt=example["prompt"].replace("{DEMO_URL}", "http://127.0.0.1:7860/demo/"),
            response_format=example["response_format"],
            json_schema=parse_json_schema(example["json_schema"]),
        )
        assert "http://127.0.0.1:7860/demo/" in request.prompt
        assert (example["response_format"] == "json") == (example["json_schema"] is not None)
    schemas = [e["json_schema"] for e in examples if e["json_schema"]]
    assert any(set(s["required"]) == {"name", "price"} for s in schemas)
    prompts = " ".join(e["prompt"] for e in examples)
    assert "Contact page" in prompts and "cart" in prompts and "check out" in prompts


async def test_demo_docs_list_the_catalogue_and_the_right_answers(page: Page, demo_url: str) -> None:
    """docs/demo-shop.md's catalogue table is the shop's catalogue; its answers are the ones asserted here."""
    await page.goto(f"{demo_url}/index.html")
    products = await page.evaluate("window.DEMO_PRODUCTS")
    shop = [(p["id"], p["name"], p["category"], f"€{p['price']:.2f}", f"{p['rating']:.1f}", str(p["stock"]))
            for p in products]
    text = DEMO_DOCS.read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([a-z]+-\d+) \| (.+?) \| (\w+) \| (€[\d.]+) \| ([\d.]+) \| (\d+) \|$", text, re.M)
    assert [tuple(r) for r in rows] == shop, "docs/demo-shop.md's catalogue table differs from data/demo/products.js"
    titles = [e["title"] for e in json.loads((DEMO / "examples.json").read_text())]
    missing = [t for t in titles if not re.search(rf"^\| {re.escape(t)}\b", text, re.M)]
    assert missing == [], f"docs/demo-shop.md has no answer row for the examples {missing}"
    for fact in (CONTACT_REFERENCE, ORDER_NUMBER, *(f"{name}**, **{price}" for _, name, price in USB_C_RESULTS[:1])):
        assert fact in text, f"docs/demo-shop.md does not state {fact!r}"


# ---------- search, sort, product ----------


async def test_search_usb_c_lists_the_right_products(page: Page, demo_url: str) -> None:
    """The header search finds exactly the five products that mention USB-C."""
    await page.goto(f"{demo_url}/index.html")
    await page.get_by_placeholder("Search products").fill("usb-c")
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_url(re.compile(r"/search\.html\?q=usb-c$"))
    assert await page.text_content("#result-count") == "5 results for “usb-c”"
    assert await cards(page) == USB_C_RESULTS
    assert await page.is_hidden("#no-results")
    assert await page.input_value("#q") == "usb-c"
    # Spelling variants find the same products; a Micro-USB cable is not a USB-C cable.
    for variant in ("USB C", "usbc"):
        await page.goto(f"{demo_url}/search.html?q={variant.replace(' ', '+')}")
        assert [c[0] for c in await cards(page)] == [c[0] for c in USB_C_RESULTS], variant


async def test_sort_by_price_and_rating(page: Page, demo_url: str) -> None:
    """Choosing a sort order reloads the listing in that order, keeping the query and category."""
    await page.goto(f"{demo_url}/search.html?q=usb-c&category=cables")
    assert await page.text_content("#result-count") == "4 results for “usb-c” in Cables"
    await page.select_option("#sort", "price_asc")
    await page.wait_for_url(re.compile(r"sort=price_asc"))
    assert await cards(page) == [
        ("cab-01", "USB-C to USB-C Cable 0.5 m", "€5.49"),
        ("cab-04", "USB-A to USB-C Cable 1 m", "€6.79"),
        ("cab-02", "USB-C to USB-C Cable 1 m", "€8.99"),
        ("cab-03", "USB-C to USB-C Braided Cable 2 m", "€14.49"),
    ]
    assert await page.input_value("#sort") == "price_asc"
    await page.select_option("#sort", label="Price: high to low")
    await page.wait_for_url(re.compile(r"sort=price_desc"))
    assert [c[0] for c in await cards(page)] == ["cab-03", "cab-02", "cab-04", "cab-01"]
    assert "q=usb-c" in page.url and "category=cables" in page.url

    # Best-rated keyboard (an example's answer): category link, then "Best rated".
    await page.get_by_role("navigation", name="Categories").get_by_role("link", name="Keyboards").click()
    await page.wait_for_url(re.compile(r"category=keyboards$"))
    assert await page.text_content("#result-count") == "6 products in Keyboards"
    await page.select_option("#sort", label="Best rated")
    await page.wait_for_url(re.compile(r"sort=rating"))
    top = (await cards(page))[0]
    assert top == ("kb-02", "Full-Size Mechanical Keyboard", "€94.90")
    assert await page.text_content(".card[data-product-id=kb-02] .rating") == "★★★★★ 4.7 out of 5"


async def test_no_results_and_unknown_category(page: Page, demo_url: str) -> None:
    """A search with no match says so; an unknown category is named, not silently ignored."""
    await page.goto(f"{demo_url}/search.html?q=toaster")
    assert await page.text_content("#result-count") == "0 results for “toaster”"
    assert await page.is_visible("#no-results") and await cards(page) == []
    await page.goto(f"{demo_url}/search.html?category=toasters")
    assert await page.text_content("#no-results-text") == (
        "There is no category called “toasters”. Pick one of the categories above."
    )
    await page.goto(f"{demo_url}/search.html")
    assert await page.text_content("#result-count") == "24 products"


async def test_product_page(page: Page, demo_url: str) -> None:
    """Name, price, description, specs and a breadcrumb back to the category; unknown ids are reported."""
    await page.goto(f"{demo_url}/search.html?q=usb-c")
    await page.get_by_role("link", name="USB-C to USB-C Cable 0.5 m").click()
    await page.wait_for_url(re.compile(r"/product\.html\?id=cab-01$"))
    assert await page.text_content("h1#product-name") == "USB-C to USB-C Cable 0.5 m"
    assert await page.text_content("#product-price") == "€5.49"
    assert await page.title() == "USB-C to USB-C Cable 0.5 m – Demo Shop"
    assert await page.text_content("#product-description") == (
        "Short USB-C cable for phones, tablets and power banks. Charges at up to 60 W."
    )
    specs = await page.eval_on_selector_all(
        "#specs tr", "rs => rs.map(r => [r.querySelector('th').textContent, r.querySelector('td').textContent])"
    )
    assert dict(specs) == {
        "Product code": "cab-01", "Connector A": "USB-C", "Connector B": "USB-C", "Length": "0.5 m",
        "Max power": "60 W", "Data rate": "480 Mbit/s", "Colour": "Black",
    }
    assert await page.get_attribute("#quantity", "type") == "number"
    crumbs = page.get_by_role("navigation", name="Breadcrumb")
    await crumbs.get_by_role("link", name="Cables").click()
    await page.wait_for_url(re.compile(r"/search\.html\?category=cables$"))
    assert await page.text_content("#result-count") == "6 products in Cables"

    await page.goto(f"{demo_url}/product.html?id=nope")
    assert await page.is_visible("#not-found") and await page.is_hidden("#product")
    # An out-of-stock product cannot be added.
    await page.goto(f"{demo_url}/product.html?id=hp-06")
    assert await page.text_content("#add-form button") == "Out of stock"
    assert await page.is_disabled("#add-form button")


# ---------- cart ----------


async def test_add_to_cart_then_cart_shows_lines_and_total(page: Page, demo_url: str) -> None:
    """Quantities from the product page and the listing add up; the cart edits and removes lines."""
    await page.goto(f"{demo_url}/product.html?id=cab-05")
    await page.get_by_label("Quantity").fill("2")
    await page.get_by_role("button", name="Add to cart").click()
    assert await page.text_content("#add-message") == "Added 2 × HDMI 2.1 Cable 2 m to your cart. View cart"
    assert await page.text_content("#cart-count") == "2"
    await page.get_by_label("Quantity").fill("0")
    await page.get_by_role("button", name="Add to cart").click()
    assert await page.text_content("#add-message") == "Enter a quantity from 1 to 10."
    assert await page.text_content("#cart-count") == "2"

    await page.goto(f"{demo_url}/search.html?category=chargers")
    card = page.locator(".card[data-product-id=chg-03]")
    await card.get_by_role("button", name="Add to cart").click()
    assert await card.locator(".card-status").text_content() == "Added to cart (1 in cart)."
    assert await page.text_content("#cart-count") == "3"

    await page.get_by_role("link", name="Cart (3)").click()
    await page.wait_for_url(re.compile(r"/cart\.html$"))
    lines = await page.eval_on_selector_all(
        "#cart-body tr",
        "rs => rs.map(r => [r.querySelector('.line-name').textContent, r.querySelector('.line-price').textContent,"
        " r.querySelector('input').value, r.querySelector('.line-total').textContent])",
    )
    assert lines == [
        ["HDMI 2.1 Cable 2 m", "€11.99", "2", "€23.98"],
        ["Wireless Charging Pad 15 W", "€19.95", "1", "€19.95"],
    ]
    assert await page.text_content("#cart-total") == "€43.93"
    assert await page.text_content("#cart-summary") == "3 items, total €43.93"

    await page.get_by_label("Quantity for Wireless Charging Pad 15 W").fill("3")
    await page.get_by_label("Quantity for Wireless Charging Pad 15 W").press("Enter")
    assert await page.text_content("#cart-total") == "€83.83"
    await page.get_by_role("button", name="Remove HDMI 2.1 Cable 2 m").click()
    assert await page.text_content("#cart-total") == "€59.85"
    assert await page.text_content("#cart-count") == "3"
    await page.reload()  # the cart lives in localStorage
    assert await page.text_content("#cart-summary") == "3 items, total €59.85"
    await page.get_by_role("button", name="Remove Wireless Charging Pad 15 W").click()
    assert await page.is_visible("#cart-empty") and await page.is_hidden("#cart-table")
    assert await page.text_content("#cart-count") == "0"


# ---------- checkout and contact ----------


async def test_checkout_validates_then_confirms(page: Page, demo_url: str) -> None:
    """Missing fields get errors next to them; a complete form shows the order number and summary."""
    await page.goto(f"{demo_url}/checkout.html")
    assert await page.is_visible("#checkout-empty") and await page.is_hidden("#checkout-form")

    await page.goto(f"{demo_url}/product.html?id=cab-06")
    await page.get_by_role("button", name="Add to cart").click()
    await page.goto(f"{demo_url}/cart.html")
    await page.get_by_role("link", name="Checkout").click()
    await page.wait_for_url(re.compile(r"/checkout\.html$"))

    await page.get_by_label("Email").fill("grace@")
    await page.get_by_role("button", name="Place order").click()
    assert await visible_errors(page) == {
        "name": "Enter your full name.",
        "email": "Enter a valid email address, like name@example.com.",
        "address": "Enter your street address.",
        "city": "Enter your city.",
        "country": "Choose a country.",
        "shipping": "Choose a shipping method.",
        "terms": "Accept the terms and conditions to place your order.",
    }
    assert (await page.text_content("#form-errors p")) == "Please fix 7 problems before placing your order:"
    assert await page.get_attribute("#name", "aria-invalid") == "true"
    assert await page.evaluate("document.activeElement.id") == "name"
    assert await page.is_hidden("#confirmation")

    await page.get_by_label("Full name").fill(ORDER["name"])
    await page.get_by_label("Email").fill(ORDER["email"])
    await page.get_by_label("Address").fill(ORDER["address"])
    await page.get_by_label("City").fill(ORDER["city"])
    await page.get_by_label("Country").select_option(ORDER["country"])
    await page.get_by_label("Express (next working day), €12.90").check()
    assert await page.text_content("#summary-total") == "€16.89"
    await page.get_by_role("button", name="Place order").click()
    assert await visible_errors(page) == {"terms": "Accept the terms and conditions to place your order."}
    await page.get_by_label("I accept the terms and conditions").check()
    await page.get_by_role("button", name="Place order").click()

    assert await page.is_visible("#confirmation") and await page.is_hidden("#checkout-layout")
    expected_number = "DS-" + fnv1a("|".join([*ORDER.values(), "express", "", "cab-06x1"]))
    assert expected_number == ORDER_NUMBER
    assert await page.text_content("#order-number") == ORDER_NUMBER
    assert await definitions(page, "#order-details") == {
        "Order number": ORDER_NUMBER,
        "Name": "Grace Hopper",
        "Email": "grace@example.com",
        "Address": "1 Harbour Street",
        "City": "Dublin",
        "Country": "Ireland",
        "Shipping": "Express (next working day), €12.90",
        "Notes": "None",
        "Items": "1 × Micro-USB Cable 1 m (€3.99)",
        "Subtotal": "€3.99",
        "Total": "€16.89",
    }
    assert await page.text_content("#cart-count") == "0"  # the order empties the cart


async def test_contact_form_thanks_with_the_values(page: Page, demo_url: str) -> None:
    """Empty fields are flagged; a sent message is echoed back with a deterministic reference."""
    await page.goto(f"{demo_url}/index.html")
    await page.get_by_role("link", name="Contact").first.click()
    await page.wait_for_url(re.compile(r"/contact\.html$"))
    await page.get_by_role("button", name="Send message").click()
    assert await visible_errors(page) == {
        "name": "Enter your name.",
        "email": "Enter your email address.",
        "topic": "Choose a topic.",
        "message": "Write a message.",
    }
    await page.get_by_label("Your name").fill(CONTACT["name"])
    await page.get_by_label("Email").fill(CONTACT["email"])
    await page.get_by_label("Topic").select_option(label=CONTACT["topic"])
    await page.get_by_label("Message").fill(CONTACT["message"])
    await page.get_by_role("button", name="Send message").click()
    assert await page.is_visible("#thanks") and await page.is_hidden("#contact-form")
    assert "CT-" + fnv1a("|".join(CONTACT.values())) == CONTACT_REFERENCE
    thanks = [line for line in (await page.inner_text("#thanks")).splitlines() if line.strip()]
    assert thanks[:4] == [
        "Thank you, Ada Lovelace!",
        "We received your message about “Returns and refunds” and will reply to ada@example.com.",
        f"Your reference number is {CONTACT_REFERENCE}.",
        "Your message:",
    ]
    assert await page.text_content("#thanks-message") == CONTACT["message"]


# ---------- served under a prefix, self-contained ----------


async def test_works_under_a_path_prefix_without_leaving_it(page: Page, prefixed_url: str) -> None:
    """At http://host/demo/ every link, form and asset stays under /demo/ and nothing else is fetched."""
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await page.goto(prefixed_url)
    assert await page.title() == "Home – Demo Shop"
    await page.get_by_placeholder("Search products").fill("hdmi")
    await page.get_by_placeholder("Search products").press("Enter")
    await page.wait_for_url(prefixed_url + "search.html?q=hdmi")
    assert await cards(page) == [("cab-05", "HDMI 2.1 Cable 2 m", "€11.99")]
    await page.get_by_role("link", name="HDMI 2.1 Cable 2 m").click()
    await page.wait_for_url(prefixed_url + "product.html?id=cab-05")
    await page.get_by_role("button", name="Add to cart").click()
    await page.get_by_role("link", name="View cart").click()
    await page.wait_for_url(prefixed_url + "cart.html")
    assert await page.text_content("#cart-total") == "€11.99"
    await page.get_by_role("link", name="Checkout").click()
    await page.wait_for_url(prefixed_url + "checkout.html")
    await page.get_by_role("link", name="Demo Shop").click()
    await page.wait_for_url(prefixed_url + "index.html")

    for name in PAGES:  # every link of every page resolves under the prefix
        await page.goto(prefixed_url + name)
        hrefs = await page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
        outside = [h for h in hrefs if not h.startswith(prefixed_url) and not h.startswith(page.url + "#")]
        assert outside == [], name
    outside = [u for u in requests if not u.startswith(prefixed_url) and not u.startswith("data:")]
    assert outside == []


def test_pages_reference_no_external_or_absolute_urls() -> None:
    """No CDN, web font or root-relative path anywhere in the site's files."""
    for path in sorted(DEMO.iterdir()):
        text = path.read_text()
        assert not re.search(r"""(?:src|href|action)\s*=\s*["'](?:/|https?:|//)""", text), path.name
        assert not re.search(r"https?://", text) or path.suffix == ".json", path.name
        assert "@import" not in text and "url(" not in text, path.name
        assert "Math.random" not in text and "setTimeout" not in text and "setInterval" not in text, path.name
        assert "Date" not in text or path.suffix != ".js", path.name
