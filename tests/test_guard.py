"""The navigation policy on every navigation (clicks, forms, scripts, redirects, frames) and secrets the
model never sees: real Chromium (local, and remote over CDP) on pages served over HTTP, the fake model."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from agent.engine.browser import Browser, find_chromium
from agent.engine.guard import NavigationGuard, OwnOrigin
from agent.engine.loop import arun
from agent.models import RunRequest, RunResponse
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply

FORBIDDEN = "Forbidden page: the agent must never read this"


class Site:
    """Pages on 127.0.0.1 that try to leave for `localhost` (another host) in every way a page can."""

    def __init__(self) -> None:
        self.hits: list[str] = []  # path?query of every request received
        site = self

        class _H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                site.hits.append(self.path)
                path = urlsplit(self.path).path
                if path == "/bounce":
                    self.send_response(302)
                    self.send_header("Location", f"http://localhost:{site.port}/away?via=redirect")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = site.page(path, parse_qs(urlsplit(self.path).query)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, path: str, query: dict[str, list[str]]) -> str:
        away = f"http://localhost:{self.port}/away"
        pages = {
            "/start": f"""<title>Start</title><h1>Start</h1>
<p><a href="{away}?via=link">Go away</a></p>
<form action="{away}" method="get"><input type="hidden" name="via" value="form"><button>Send form</button></form>
<p><button onclick="location.href='{away}?via=script'">Run script</button></p>
<p><a href="/bounce">Bounce</a></p><p><a href="/framed">Framed</a></p><p><a href="/inside">Inside</a></p>""",
            "/framed": f"""<title>Framed</title><h1>Framed</h1><iframe src="{away}?via=frame"></iframe>""",
            "/inside": "<title>Inside</title><h1>Inside page</h1><p>Allowed content.</p>",
            "/away": f"<title>Away</title><h1>{FORBIDDEN}</h1>",
            "/login": """<title>Login</title><h1>Log in</h1><form action="/welcome" method="get">
<label for="user">User</label><input id="user" name="user">
<label for="token">Token</label><input id="token" name="token">
<label for="pw">Password</label><input id="pw" name="pw" type="password">
<button>Log in</button></form>""",
            "/welcome": "<title>Welcome</title><h1>Welcome {user}</h1><p>Your token is {token}.</p>".format(
                user=(query.get("user") or [""])[0], token=(query.get("token") or [""])[0]),
        }
        return "<!doctype html><html><body>" + pages.get(path, "<h1>Not here</h1>") + "</body></html>"

    def received(self, path: str) -> list[dict[str, list[str]]]:
        """The query strings of the requests received on `path`."""
        return [parse_qs(urlsplit(h).query) for h in self.hits if urlsplit(h).path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


@pytest.fixture(scope="module")
def cdp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Chromium of its own, reached over CDP as a remote browser (Browserless, Steel...) would be."""
    path = find_chromium()
    if path is None or not shutil.which(path) and not Path(path).exists():
        pytest.skip("no Chromium to start as a remote browser")
    profile = tmp_path_factory.mktemp("cdp-profile")
    proc = subprocess.Popen(
        [str(path), "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        url = None
        assert proc.stderr is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            url = m.group(1) if m else None
        assert url, "the remote Chromium did not start"
        yield url
    finally:
        proc.kill()
        proc.wait(10)


def clicking(targets: list[str], start: str) -> Callable[[dict[str, Any]], Any]:
    """The model: click each target in turn (opening `start` again when it is not on the page), then done."""
    todo = list(targets)

    def handler(body: dict[str, Any]) -> Any:
        if not todo:
            return reply("All tried.", call("done", text="tried every way out", success=True))
        try:
            index = find_index(body, todo[0])
        except LookupError:
            return reply("Back to the start.", call("navigate", url=start))
        todo.pop(0)
        return reply(f"Try {todo and todo[0]}.", call("click", index=index))

    return handler


WAYS_OUT = ["Go away", "Send form", "Run script", "Bounce", "Framed", "Inside"]


async def escape_attempts(browser: Browser, site: Site, fake: FakeLLM) -> RunResponse:
    fake.reset(clicking(WAYS_OUT, f"{site.url}/start"))
    request = RunRequest(prompt="Try every way out of the start page", model="gpt-4o-mini",
                         start_url=f"{site.url}/start", allowed_domains=["127.0.0.1"], max_steps=16)
    return await arun(request, browser=browser)


def clicks(response: RunResponse) -> list[tuple[str, str | None]]:
    """(the page the click started on, its error) for each click."""
    return [(item.url or "", a.error) for item in response.history for a in item.actions if a.name == "click"]


def check_refused(response: RunResponse, site: Site, fake: FakeLLM) -> None:
    assert response.status == "success", response.error
    outcomes = clicks(response)
    assert len(outcomes) == len(WAYS_OUT)
    for (url, error), way in zip(outcomes, WAYS_OUT, strict=True):
        assert url.startswith(f"{site.url}/"), (way, url)  # every attempt started on an allowed page
        if way == "Inside":
            assert error is None
            continue
        assert error is not None and error.startswith("navigation refused:"), (way, error)
        assert "host 'localhost' is not in allowed_domains (127.0.0.1)" in error, (way, error)
    # Nothing of the forbidden page ever reached the model.
    sent = json.dumps(fake.requests)
    assert FORBIDDEN not in sent
    # A link, a form, a script and a frame never even left the browser; a redirect's later hop is only
    # seen once sent (Playwright does not route it): the tab is taken off the page before anyone reads it.
    assert sorted(q["via"][0] for q in site.received("/away")) == ["redirect"]


async def test_every_way_out_is_refused_on_a_local_browser(browser: Browser, site: Site, fake_llm: FakeLLM) -> None:
    site.hits.clear()
    check_refused(await escape_attempts(browser, site, fake_llm), site, fake_llm)


async def test_every_way_out_is_refused_on_a_remote_cdp_browser(cdp_url: str, site: Site,
                                                                fake_llm: FakeLLM) -> None:
    remote = Browser(cdp_url=cdp_url)
    try:
        site.hits.clear()
        response = await escape_attempts(remote, site, fake_llm)
    finally:
        await remote.close()
    check_refused(response, site, fake_llm)


async def test_the_workbench_itself_is_refused_but_its_open_paths(browser: Browser, site: Site) -> None:
    """A page the agent opens cannot reach the workbench's API (its origin is refused but for /demo/)."""
    own = OwnOrigin(hosts=frozenset({"127.0.0.1", "localhost"}), port=site.port, open_paths=("/inside",))
    guard = NavigationGuard(own=own)
    async with browser.session(guard=guard) as session:
        page = session.page
        await page.goto(f"{site.url}/inside")
        assert guard.take() == []
        for path in ("/start", "/api/runs", "/%61pi/runs", "/inside/../api/runs"):
            site.hits.clear()
            status = await page.evaluate("url => fetch(url).then(r => r.status, e => 'blocked')", f"{site.url}{path}")
            assert status == "blocked" and site.hits == [], path
            (reason,) = guard.take()
            assert "is the workbench itself" in reason and "paths it may open there: /inside" in reason
        assert await page.evaluate("url => fetch(url).then(r => r.status)", f"{site.url}/inside") == 200


# ------------------------------------------------------------------ sensitive_data
TOKEN, PASSWORD = "tok-8f3a91c2-live", "Pa55word!zx9"


def logging_in(site: Site) -> Callable[[dict[str, Any]], Any]:
    """The model: type the user, the token and the password by placeholder, log in, then report."""
    def handler(body: dict[str, Any]) -> Any:
        text = last_user_text(body)
        if "Welcome" in text:
            return reply("Logged in.", call("done", text="logged in as <secret>tok</secret>? no: as admin", success=True))
        return reply("Log in with the secrets.",
                     call("input", index=find_index(body, "User", tag="input"), text="admin"),
                     call("input", index=find_index(body, "Token", tag="input"), text="<secret>tok</secret>"),
                     call("input", index=find_index(body, "Password", tag="input"), text="<secret>pw</secret>"),
                     call("click", index=find_index(body, "Log in", tag="button")))
    return handler


async def test_secrets_are_typed_but_never_shown(browser: Browser, site: Site, fake_llm: FakeLLM,
                                                 tmp_path: Path) -> None:
    from agent.workflows.record import record_workflow
    from agent.workflows.replay import replay

    fake_llm.reset(logging_in(site))
    request = RunRequest(prompt="Log in as admin with token <secret>tok</secret> and password <secret>pw</secret>",
                         model="gpt-4o-mini", start_url=f"{site.url}/login",
                         sensitive_data={"tok": TOKEN, "https://127.0.0.1": {"pw": PASSWORD}})
    response = await arun(request, browser=browser, screenshot_dir=tmp_path)
    assert response.status == "success", response.error
    # The page got the real values...
    assert site.received("/welcome")[-1] == {"user": ["admin"], "token": [TOKEN], "pw": [PASSWORD]}
    # ...nothing else did: not the model, not the history (URLs, titles, results, locators).
    everything = json.dumps(fake_llm.requests) + response.model_dump_json() + repr(request)
    for value in (TOKEN, PASSWORD):
        assert value not in everything
    typed = [a for item in response.history for a in item.actions if a.name == "input"]
    assert [a.params["text"] for a in typed] == ["admin", "<secret>tok</secret>", "<secret>pw</secret>"]
    assert [a.extracted_content for a in typed][1:] == ["typed '<secret>tok</secret>' into [2]",
                                                      "typed '<secret>pw</secret>' into [3]"]
    after = last_user_text(fake_llm.requests[-1])
    assert "Your token is <secret>tok</secret>." in after and "token=<secret>tok</secret>" in after
    first = last_user_text(fake_llm.requests[0])
    assert "Secrets for this page: <secret>pw</secret>, <secret>tok</secret>" in first
    assert response.history[-1].url and "<secret>pw</secret>" in response.history[-1].url
    assert "sensitive_data" not in request.model_dump()  # never dumped, so never stored

    # A workflow keeps the placeholders; its replay asks for the secrets again.
    doc = record_workflow(request, response)
    assert TOKEN not in json.dumps(doc) and "<secret>tok</secret>" in json.dumps(doc)
    assert "tok" not in {p["name"] for p in doc["parameters"]}
    fake_llm.reset(lambda body: 500)  # a replay needs no model
    without = RunRequest(prompt=request.prompt, model="gpt-4o-mini", use_cached_workflow=True)
    ended = [e async for e in replay(without, doc, browser=browser)][-1].response
    assert ended.status == "failure"
    assert ended.error == ("sensitive_data: the workflow types <secret>pw</secret>, <secret>tok</secret>; "
                           "give their values in sensitive_data")
    site.hits.clear()
    again = request.model_copy(update={"use_cached_workflow": True})
    replayed = [e async for e in replay(again, doc, browser=browser)][-1].response
    assert (replayed.status, replayed.healed_steps) == ("success", 0), replayed.error
    assert site.received("/welcome") == [{"user": ["admin"], "token": [TOKEN], "pw": [PASSWORD]}]
    assert TOKEN not in replayed.model_dump_json() and PASSWORD not in replayed.model_dump_json()
    assert fake_llm.requests == []


async def test_a_secret_is_typed_only_where_it_belongs(browser: Browser, site: Site, fake_llm: FakeLLM) -> None:
    fake_llm.reset(lambda body: reply("Type it.", call("input", index=find_index(body, "Token", tag="input"),
                                                       text="<secret>tok</secret>"))
                   if "Log in" in last_user_text(body) and len(fake_llm.requests) == 1
                   else reply("Stop.", call("done", text="stopped", success=False)))
    request = RunRequest(prompt="Type the token", model="gpt-4o-mini", start_url=f"{site.url}/login",
                         sensitive_data={"https://*.example.com": {"tok": TOKEN}})
    response = await arun(request, browser=browser)
    typed = response.history[1].actions[0]
    assert typed.error == "<secret>tok</secret> is not for this site (usable here: none)"
