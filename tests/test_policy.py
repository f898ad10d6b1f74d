"""URL policy: what the agent may open, checked against tables and against Chromium's own parser."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import pytest_asyncio

from agent.rules.policy import (
    CLOUD_METADATA_HOSTS,
    PolicyError,
    check_navigation,
    chromium_args,
    is_metadata_address,
    is_public_address,
    request_blocked,
    resolve_public,
)

METADATA = "is a cloud metadata address; it is always refused"
ONLY_WEB = "the agent opens only http:// and https:// URLs (and about:blank)"

# (what was asked, the URL opened)
ALLOWED = [
    ("https://example.com", "https://example.com/"),
    ("HTTPS://Example.COM/Path?Q=1#Frag", "https://example.com/Path?Q=1#Frag"),
    ("http://example.com:8080/a", "http://example.com:8080/a"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("  https://exa\tmple.com/a\\b?c\\d  ", "https://example.com/a/b?c\\d"),
    ("https://user:pw@example.com:8443/p", "https://user:pw@example.com:8443/p"),
    ("http://ExAmPle.com./a", "http://example.com./a"),
    ("https://exa%6dple.com/", "https://example.com/"),
    ("https://bücher.de/x", "https://xn--bcher-kva.de/x"),
    ("https://faß.de/", "https://xn--fa-hia.de/"),
    ("http://127.0.0.1:8000/page", "http://127.0.0.1:8000/page"),  # local test sites are fine
    ("http://localhost:3000/", "http://localhost:3000/"),
    ("http://[::1]:8000/x", "http://[::1]:8000/x"),
    ("http://0x7f.1/", "http://127.0.0.1/"),
    ("http://1.2.3/", "http://1.2.0.3/"),
    ("about:blank", "about:blank"),
    ("ABOUT:BLANK", "about:blank"),
    # bare addresses get a scheme: https, or http for the local machine
    ("example.com/path", "https://example.com/path"),
    ("example.com", "https://example.com/"),
    ("www.example.com:8443/x?y=1", "https://www.example.com:8443/x?y=1"),
    ("//example.com/a", "https://example.com/a"),
    ("localhost:8000/x", "http://localhost:8000/x"),
    ("127.0.0.1:5000", "http://127.0.0.1:5000/"),
    ("[::1]:8000/x", "http://[::1]:8000/x"),
]

# (what was asked, reason, part of the message)
REFUSED = [
    ("file:///etc/passwd", "scheme", "scheme 'file:' is not allowed (it reads the machine's own files)"),
    ("FILE:///C:/Windows/win.ini", "scheme", "scheme 'file:'"),
    ("javascript:alert(1)", "scheme", "scheme 'javascript:' is not allowed (it runs script"),
    (" java\tscript:alert(1)", "scheme", "scheme 'javascript:'"),
    ("chrome://settings", "scheme", "scheme 'chrome:' is not allowed (it opens the browser's internal pages)"),
    ("chrome-extension://abc/page.html", "scheme", "scheme 'chrome-extension:'"),
    ("data:text/html,<script>alert(1)</script>", "scheme", "scheme 'data:' is not allowed"),
    ("about:config", "scheme", "only about:blank is allowed"),
    ("view-source:https://example.com", "scheme", "scheme 'view-source:'"),
    ("ftp://example.com/file", "scheme", "scheme 'ftp:'"),
    ("blob:https://example.com/uuid", "scheme", "scheme 'blob:'"),
    ("mailto:someone@example.com", "scheme", "scheme 'mailto:'"),
    ("vbscript:msgbox", "scheme", "scheme 'vbscript:' is not allowed (it is not a web address)"),
    ("ws://example.com/socket", "scheme", "scheme 'ws:'"),
    # cloud metadata, by every spelling Chromium accepts
    ("http://169.254.169.254/latest/meta-data/", "metadata", f"'169.254.169.254' {METADATA}"),
    ("http://2852039166/", "metadata", f"'169.254.169.254' {METADATA}"),  # decimal
    ("http://0xA9FEA9FE/", "metadata", f"'169.254.169.254' {METADATA}"),  # hex
    ("http://0xa9.0xfe.0xa9.0xfe/", "metadata", f"'169.254.169.254' {METADATA}"),
    ("http://0251.0376.0251.0376/", "metadata", f"'169.254.169.254' {METADATA}"),  # octal
    ("http://169.254.43518/", "metadata", f"'169.254.169.254' {METADATA}"),  # a.b.c form
    ("http://169.254.169.254./", "metadata", f"'169.254.169.254' {METADATA}"),
    ("http://%31%36%39.254.169.254/", "metadata", f"'169.254.169.254' {METADATA}"),  # percent-encoded
    ("http://１６９．２５４．１６９．２５４/", "metadata", f"'169.254.169.254' {METADATA}"),  # full-width
    ("http://[::ffff:169.254.169.254]/", "metadata", f"'::ffff:a9fe:a9fe' {METADATA}"),
    ("http://[::ffff:a9fe:a9fe]/", "metadata", f"'::ffff:a9fe:a9fe' {METADATA}"),
    ("http://[0:0:0:0:0:ffff:a9fe:a9fe]/", "metadata", f"'::ffff:a9fe:a9fe' {METADATA}"),
    ("http://[64:ff9b::a9fe:a9fe]/", "metadata", f"'64:ff9b::a9fe:a9fe' {METADATA}"),  # NAT64
    ("http://[fd00:ec2::254]/latest/meta-data/", "metadata", f"'fd00:ec2::254' {METADATA}"),
    ("http://169.254.170.2/v2/credentials", "metadata", f"'169.254.170.2' {METADATA}"),
    ("http://100.100.100.200/latest/meta-data/", "metadata", f"'100.100.100.200' {METADATA}"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata", f"'metadata.google.internal' {METADATA}"),
    ("http://METADATA.google.internal./", "metadata", f"'metadata.google.internal' {METADATA}"),
    ("http://ＭＥＴＡＤＡＴＡ.google.internal/", "metadata", f"'metadata.google.internal' {METADATA}"),
    ("http://meta\u00addata.google.internal/", "metadata", f"'metadata.google.internal' {METADATA}"),  # soft hyphen
    ("http://metadata/computeMetadata/v1/", "metadata", f"'metadata' {METADATA}"),
    ("metadata.google.internal/computeMetadata/v1/", "metadata", f"'metadata.google.internal' {METADATA}"),
    ("169.254.169.254/latest", "metadata", f"'169.254.169.254' {METADATA}"),
    # parser tricks: the host is what Chromium would connect to, not what urllib thinks
    ("http://example.com@169.254.169.254/", "metadata", f"'169.254.169.254' {METADATA}"),
    ("http:\\\\169.254.169.254\\@example.com/", "metadata", f"'169.254.169.254' {METADATA}"),
    ("http:169.254.169.254/x", "metadata", f"'169.254.169.254' {METADATA}"),
    ("http:///169.254.169.254/x", "metadata", f"'169.254.169.254' {METADATA}"),
    # malformed
    ("", "invalid", "url is empty: give a web address such as https://example.com"),
    ("   ", "invalid", "url is empty"),
    ("http://", "invalid", "the URL has no host"),
    ("http://exa mple.com/", "invalid", "host 'exa mple.com' contains characters a host name cannot have"),
    ("http://999.1.1.1/", "invalid", "looks like an IPv4 address but is not a valid one"),
    ("http://a.b.c.1/", "invalid", "looks like an IPv4 address but is not a valid one"),
    ("http://[::1/", "invalid", "unclosed '['"),
    ("http://[fe80::1%25eth0]/", "invalid", "is not a valid IPv6 address"),
    ("https://example.com:99999/", "invalid", "port '99999' is not a number from 0 to 65535"),
    ("https://example.com:8o/", "invalid", "port '8o' is not a number"),
    ("https://example.com/" + "a" * 20_000, "invalid", "the limit is 16384"),
]


@pytest.mark.parametrize("url, expected", ALLOWED)
def test_allowed_urls_are_normalised(url: str, expected: str) -> None:
    assert check_navigation(url, allowed_domains=[], blocked_domains=[]) == expected


@pytest.mark.parametrize("url, reason, message", REFUSED)
def test_refused_urls_say_why(url: str, reason: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        check_navigation(url, allowed_domains=[], blocked_domains=[])
    assert caught.value.reason == reason
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


# (url, allowed, blocked, None if opened else (reason, message))
DOMAIN_LISTS = [
    ("https://example.com/a", ["example.com"], None, None),
    ("https://shop.example.com/a", ["example.com"], None, None),
    ("https://a.b.example.com/a", ["example.com"], None, None),
    ("https://EXAMPLE.com./a", ["Example.COM"], None, None),
    ("https://notexample.com/", ["example.com"], None,
     ("not_allowed", "host 'notexample.com' is not in allowed_domains (example.com); add it (e.g. 'notexample.com') "
                     "to allowed_domains to let the agent open it")),
    ("https://example.com.evil.net/", ["example.com"], None, ("not_allowed", "'example.com.evil.net' is not in")),
    ("https://shop.example.com/", ["*.example.com"], None, None),
    ("https://example.com/", ["*.example.com"], None, ("not_allowed", "is not in allowed_domains (*.example.com)")),
    ("https://docs.python.org/3/", ["https://docs.python.org/3/", "example.com"], None, None),
    ("http://localhost:8000/", ["localhost:8000"], None, None),
    ("http://127.0.0.1:8000/", ["127.0.0.1"], None, None),
    ("http://0x7f000001/", ["127.0.0.1"], None, None),
    ("http://127.0.0.2/", ["127.0.0.1"], None, ("not_allowed", "host '127.0.0.2' is not in")),
    ("https://bücher.de/", ["bücher.de"], None, None),
    ("https://xn--bcher-kva.de/", ["bücher.de"], None, None),
    ("https://example.com/", None, ["example.com"],
     ("blocked", "host 'example.com' is blocked by the blocked_domains entry 'example.com'; remove that entry "
                 "from blocked_domains to allow it")),
    ("https://ads.example.com/", None, ["example.com"], ("blocked", "entry 'example.com'")),
    ("https://example.com/", None, ["*.example.com"], None),
    ("https://ads.example.com/", None, ["*.example.com"], ("blocked", "entry '*.example.com'")),
    ("https://ads.example.com/", ["example.com"], ["ads.example.com"], ("blocked", "entry 'ads.example.com'")),
    ("https://www.example.com/", ["example.com"], ["ads.example.com"], None),
    ("https://example.org/", [], [], None),  # empty lists: no restriction
    # metadata stays refused even when listed as allowed
    ("http://169.254.169.254/", ["169.254.169.254"], None, ("metadata", METADATA)),
    ("http://metadata.google.internal/", ["google.internal"], None, ("metadata", METADATA)),
]


@pytest.mark.parametrize("url, allowed, blocked, refused", DOMAIN_LISTS)
def test_domain_lists(
    monkeypatch: pytest.MonkeyPatch, url: str, allowed: list[str] | None, blocked: list[str] | None,
    refused: tuple[str, str] | None,
) -> None:
    monkeypatch.delenv("WORKBENCH_ALLOWED_DOMAINS", raising=False)
    monkeypatch.delenv("WORKBENCH_BLOCKED_DOMAINS", raising=False)
    if refused is None:
        assert check_navigation(url, allowed_domains=allowed, blocked_domains=blocked).startswith("http")
        return
    with pytest.raises(PolicyError) as caught:
        check_navigation(url, allowed_domains=allowed, blocked_domains=blocked)
    assert (caught.value.reason, refused[1] in str(caught.value)) == (refused[0], True), str(caught.value)


def test_env_lists_apply_when_arguments_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_ALLOWED_DOMAINS", "example.com, *.example.org")
    monkeypatch.setenv("WORKBENCH_BLOCKED_DOMAINS", "ads.example.com")
    assert check_navigation("https://www.example.com/") == "https://www.example.com/"
    assert check_navigation("https://a.example.org/") == "https://a.example.org/"
    with pytest.raises(PolicyError) as caught:
        check_navigation("https://other.net/")
    assert str(caught.value) == (
        "host 'other.net' is not in WORKBENCH_ALLOWED_DOMAINS (example.com, *.example.org); add it "
        "(e.g. 'other.net') to WORKBENCH_ALLOWED_DOMAINS to let the agent open it"
    )
    with pytest.raises(PolicyError, match="blocked by the WORKBENCH_BLOCKED_DOMAINS entry 'ads.example.com'"):
        check_navigation("https://ads.example.com/")
    # explicit arguments win over the environment, an empty list included
    assert check_navigation("https://other.net/", allowed_domains=[]) == "https://other.net/"
    assert check_navigation("https://ads.example.com/", blocked_domains=[]) == "https://ads.example.com/"


@pytest.mark.parametrize(
    "entry, message",
    [
        ("foo.*.com", "allowed_domains entry 'foo.*.com' is not a domain: write 'example.com' (it and its "
                      "subdomains) or '*.example.com' (subdomains only)"),
        ("*", "allowed_domains entry '*' is not a domain"),
        ("*.127.0.0.1", "allowed_domains entry '*.127.0.0.1': an IP address has no subdomains; drop the '*.'"),
        ("exa mple.com", "allowed_domains entry 'exa mple.com': host 'exa mple.com' contains characters"),
    ],
)
def test_bad_list_entries_name_the_fix(entry: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        check_navigation("https://example.com/", allowed_domains=[entry])
    assert caught.value.reason == "config" and str(caught.value).startswith(message)


def test_bad_env_entry_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_BLOCKED_DOMAINS", "good.com,bad.*.com")
    with pytest.raises(PolicyError, match="^WORKBENCH_BLOCKED_DOMAINS entry 'bad.\\*.com' is not a domain"):
        check_navigation("https://example.com/")


@pytest.mark.parametrize(
    "url, blocked",
    [
        ("http://169.254.169.254/latest/meta-data/", True),
        ("http://[::ffff:a9fe:a9fe]/x", True),
        ("https://metadata.google.internal/computeMetadata/v1/", True),
        ("http://100.100.100.200/", True),
        ("ws://169.254.169.254/socket", True),
        ("file:///etc/passwd", True),
        ("https://example.com/app.js", False),
        ("http://127.0.0.1:8000/api", False),
        ("http://10.0.0.1/", False),  # intranet sites are the operator's call (use blocked_domains)
        ("data:image/png;base64,AAAA", False),
        ("blob:https://example.com/0f1e", False),
        ("about:blank", False),
        ("chrome-extension://abc/x.js", False),
        ("http://[::1/", False),  # unparseable: Chromium never sends it
    ],
)
def test_request_blocked(url: str, blocked: bool) -> None:
    assert request_blocked(url) is blocked


@pytest.mark.parametrize(
    "ip, public",
    [
        ("8.8.8.8", True), ("93.184.216.34", True), ("2606:4700::1111", True), ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True), ("2002:808:808::1", True),
        ("127.0.0.1", False), ("127.8.9.10", False), ("10.0.0.1", False), ("172.16.5.4", False),
        ("192.168.1.1", False), ("100.64.0.1", False), ("169.254.169.254", False), ("169.254.1.1", False),
        ("0.0.0.0", False), ("255.255.255.255", False), ("224.0.0.251", False), ("240.0.0.1", False),
        ("192.0.2.1", False), ("198.18.0.1", False), ("100.100.100.200", False), ("168.63.129.16", False),
        ("::1", False), ("::", False), ("fe80::1", False), ("fe80::1%eth0", False), ("fc00::1", False),
        ("fd00:ec2::254", False), ("ff02::1", False), ("2001:db8::1", False), ("2001::1", False),
        ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False), ("::ffff:169.254.169.254", False),
        ("64:ff9b::a9fe:a9fe", False), ("2002:a9fe:a9fe::", False), ("::127.0.0.1", False),
        ("[::1]", False), ("not an ip", False), ("", False), ("2852039166", False),
    ],
)
def test_is_public_address(ip: str, public: bool) -> None:
    assert is_public_address(ip) is public


@pytest.mark.parametrize(
    "ip, metadata",
    [
        ("169.254.169.254", True), ("169.254.1.2", True), ("fd00:ec2::254", True), ("[fd00:ec2::23]", True),
        ("::ffff:169.254.169.254", True), ("64:ff9b::a9fe:a9fe", True), ("100.100.100.200", True),
        ("168.63.129.16", True), ("192.0.0.192", True),
        ("127.0.0.1", False), ("10.0.0.1", False), ("100.64.0.1", False), ("8.8.8.8", False), ("::1", False),
        ("metadata.google.internal", False),  # a name, not an address: check_navigation covers names
    ],
)
def test_is_metadata_address(ip: str, metadata: bool) -> None:
    assert is_metadata_address(ip) is metadata


async def test_resolve_public_accepts_public_literals_without_dns() -> None:
    assert await resolve_public("8.8.8.8", 443) == ["8.8.8.8"]
    assert await resolve_public("[2606:4700::1111]", 443) == ["2606:4700::1111"]


@pytest.mark.parametrize(
    "host, reason, message",
    [
        ("localhost", "not_public", "host 'localhost' resolves to a non-public address (127.0.0.1"),
        ("127.0.0.1", "not_public", "(127.0.0.1: loopback, private, link-local or metadata); use a public URL, "
                                    "or set WEBHOOK_ALLOW_PRIVATE=1"),
        ("2130706433", "not_public", "(127.0.0.1:"),  # the resolver reads numeric hosts too
        ("[::1]", "not_public", "(::1:"),
        ("10.0.0.1", "not_public", "(10.0.0.1:"),
        ("169.254.169.254", "not_public", "(169.254.169.254:"),
        ("metadata.google.internal", "metadata", "is a cloud metadata service and is always refused"),
    ],
)
async def test_resolve_public_refuses(host: str, reason: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        await resolve_public(host, 80)
    assert caught.value.reason == reason and message in str(caught.value)


async def test_resolve_public_dns_failure_is_a_network_error() -> None:
    with pytest.raises(OSError, match="could not resolve host 'no-such-host.invalid'"):
        await resolve_public("no-such-host.invalid", 80, timeout_s=3)


def test_metadata_hosts_constant() -> None:
    assert {"169.254.169.254", "fd00:ec2::254", "metadata.google.internal", "100.100.100.200"} <= CLOUD_METADATA_HOSTS
    for host in CLOUD_METADATA_HOSTS:
        target = f"http://[{host}]/" if ":" in host else f"http://{host}/"
        assert request_blocked(target), host


# ------------------------------------------------------------------ against a real Chromium
class _Site(BaseHTTPRequestHandler):
    """/to?u=X redirects to X; /page embeds metadata subresources; anything else is a plain page."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(self.path)
        if parts.path == "/to":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["u"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"<html><body><h1>ok</h1></body></html>"
        if parts.path == "/page":
            body = (b'<html><body><img src="http://0xA9FEA9FE/latest/meta-data/x.png">'
                    b'<script>fetch("http://[::ffff:a9fe:a9fe]/latest/").catch(() => 0)</script>'
                    b'<img src="/pixel.png"></body></html>')
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def guarded_chromium() -> AsyncIterator[object]:
    """A Chromium launched with the policy's flags, as the engine's browser should be."""
    from playwright.async_api import async_playwright

    from agent.engine.browser import CHROMIUM_ARGS, find_chromium

    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium installed")
    pw = await async_playwright().start()
    browser = await pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS + chromium_args())
    yield browser
    await browser.close()
    await pw.stop()


# Chromium's canonical form is what we must produce (so the host we check is the host it opens).
CHROMIUM_AGREES = [url for url, _ in ALLOWED if "://" in url] + [
    url for url, reason, _ in REFUSED if reason == "metadata" and "://" in url
] + ["http://a.b.c.1/", "http://999.1.1.1/", "https://example.com:99999/"]


async def test_our_parser_agrees_with_chromium(guarded_chromium) -> None:
    page = await guarded_chromium.new_page()
    try:
        hrefs = await page.evaluate(
            "urls => urls.map(u => { try { return new URL(u).href } catch (e) { return null } })", CHROMIUM_AGREES
        )
    finally:
        await page.close()
    for url, href in zip(CHROMIUM_AGREES, hrefs):
        try:
            ours = check_navigation(url, allowed_domains=[], blocked_domains=[])
        except PolicyError as exc:
            if exc.reason == "metadata":  # Chromium reads the same metadata host, which the route blocks
                assert href is not None and request_blocked(href), (url, href)
            else:
                assert href is None, (url, href, str(exc))  # Chromium rejects what we reject as invalid
            continue
        assert ours == href, url


async def test_chromium_never_reaches_metadata_even_through_redirects(guarded_chromium, site: str) -> None:
    from urllib.parse import quote

    context = await guarded_chromium.new_context()
    aborted: list[str] = []

    async def guard(route) -> None:  # the wiring the engine uses: abort what request_blocked flags
        if request_blocked(route.request.url):
            aborted.append(route.request.url)
            await route.abort("blockedbyclient")
        else:
            await route.continue_()

    await context.route("**/*", guard)
    page = await context.new_page()
    try:
        # Subresources the page requests itself are aborted by the route.
        await page.goto(f"{site}/page", wait_until="load", timeout=10_000)
        await page.wait_for_timeout(300)
        assert sorted(aborted) == ["http://169.254.169.254/latest/meta-data/x.png", "http://[::ffff:a9fe:a9fe]/latest/"]
        # A server redirect is invisible to routes; the host rules make Chromium refuse it itself.
        targets = ["http://169.254.169.254/latest/meta-data/", "http://0xA9FEA9FE/", "http://[::ffff:a9fe:a9fe]/",
                   "http://[64:ff9b::a9fe:a9fe]/", "http://[fd00:ec2::254]/", "http://100.100.100.200/",
                   "http://169.254.170.2/v2/credentials", "http://metadata.google.internal/computeMetadata/v1/"]
        for target in targets:
            with pytest.raises(Exception, match="ERR_NAME_NOT_RESOLVED"):
                await page.goto(f"{site}/to?u={quote(target, safe='')}", timeout=10_000)
        # ...while ordinary redirects keep working (a fresh tab: the last one shows an error page).
        page = await context.new_page()
        response = await page.goto(f"{site}/to?u={quote(site + '/final', safe='')}", timeout=10_000)
        assert response is not None and response.status == 200 and page.url == f"{site}/final"
    finally:
        await context.close()
