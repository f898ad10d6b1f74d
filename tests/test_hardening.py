"""Smaller refusals: the Host header parsed strictly (table-driven, over a real socket), and the agent's
browser contexts refusing service workers (local Chromium and a remote one over CDP)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from agent.engine.browser import Browser
from agent.service.http import RequestGuard, host_name
from tests.apphelpers import free_port
from tests.secretsite import SecretSite
from tests.test_guard import cdp_url  # noqa: F401  (a fixture: a Chromium of its own, reached over CDP)

ALLOWED = frozenset({"127.0.0.1", "localhost", "::1", "workbench.lan"})
# (Host header, the name it gives or None for a 400)
HOSTS = [
    ("127.0.0.1", "127.0.0.1"), ("127.0.0.1:7860", "127.0.0.1"), ("LOCALHOST:80", "localhost"),
    ("localhost", "localhost"), ("[::1]", "::1"), ("[::1]:7860", "::1"), ("[0:0:0:0:0:0:0:1]:1", "::1"),
    ("workbench.lan:8443", "workbench.lan"), ("evil.example", "evil.example"),
    ("127.0.0.1:7860@evil", None), ("localhost:evil", None), ("[::1]evil.com", None), ("user@localhost", None),
    ("user:pw@127.0.0.1:7860", None), ("localhost:0", None), ("localhost:65536", None), ("localhost:", None),
    ("localhost:80:80", None), ("localhost:123456", None), ("[::1", None), ("::1", None), ("[zz::1]", None),
    ("local host", None), ("localhost/evil", None), ("localhost?x", None), ("localhost#x", None),
    ("localhost.", None), (".localhost", None), ("a..b", None), ("-a.example", None), ("", None),
    ("127.0.0.1\\@evil", None), ("localhost%00", None),
]


@pytest.mark.parametrize(("header", "name"), HOSTS)
def test_host_header_is_parsed_strictly(header: str, name: str | None) -> None:
    assert host_name(header) == name


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("hello")(scope, receive, send)


@pytest.fixture(scope="module")
def guarded() -> Iterator[int]:
    """The request guard in front of a page, served by uvicorn on a real socket."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(RequestGuard(_hello, allowed_hosts=ALLOWED), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(10)


def status_for(port: int, host: str) -> int:
    """The status answered to a GET / carrying exactly this Host header (raw bytes: no client rewrites it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("latin-1"))
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_the_guard_answers_each_host_over_a_real_socket(guarded: int) -> None:
    got = {header: status_for(guarded, header) for header, _name in HOSTS if header}
    want = {header: 200 if name in ALLOWED else 400 for header, name in HOSTS if header}
    # A server may refuse a malformed header itself before the app sees it: a 400 either way.
    assert got == want


async def _registration(browser: Browser, site: SecretSite) -> str:
    async with browser.session() as session:
        await session.page.goto(f"{site.url}/worker", wait_until="load")
        await session.page.wait_for_function("document.title !== 'Worker'")
        return await session.page.title()


@pytest.fixture(scope="module")
def site() -> Iterator[SecretSite]:
    s = SecretSite()
    yield s
    s.close()


async def test_service_workers_are_refused_on_a_local_browser(browser: Browser, site: SecretSite) -> None:
    assert await _registration(browser, site) in ("registrations: 0", "refused: NotSupportedError")


async def test_service_workers_are_refused_on_a_remote_cdp_browser(cdp_url: str, site: SecretSite) -> None:  # noqa: F811
    remote = Browser(cdp_url=cdp_url)
    try:
        assert await _registration(remote, site) in ("registrations: 0", "refused: NotSupportedError")
    finally:
        await remote.close()
