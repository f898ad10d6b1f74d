"""Browser sessions: one Chromium process (local or remote over CDP), one isolated context per run."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser as PWBrowser
from playwright.async_api import BrowserContext, Page, Playwright, ViewportSize, async_playwright

from agent.engine.guard import NavigationGuard, OwnOrigin
from agent.engine.mask import SecretMask
from agent.engine.mask import screenshot as masked_screenshot
from agent.engine.secrets import MASKED_ATTR, Secrets

# Flags that keep a headless Chromium quiet on a closed network and small on memory.
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
]
SCREENSHOT_MAX_BYTES = 400_000
FETCH_TYPES = frozenset({"fetch", "xhr", "document"})  # what a page waits for before it shows new content
FETCH_MAX_AGE_S = 3.0
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


class BrowserError(RuntimeError):
    """No browser could be started or reached; the message says what to install or set."""


def find_chromium() -> str | None:
    """The Chromium to launch: $CHROMIUM_PATH, else Playwright's own build, else the system's."""
    explicit = os.environ.get("CHROMIUM_PATH")
    if explicit:
        return explicit
    own = _playwright_chromium()
    if own:
        return own
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _playwright_chromium() -> str | None:
    """Path of the Chromium that `playwright install chromium` downloaded, if it is there."""
    root = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    if not root.is_dir():
        return None
    for pattern in ("chromium_headless_shell-*/chrome-*/headless_shell", "chromium-*/chrome-linux*/chrome"):
        for candidate in sorted(root.glob(pattern), reverse=True):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None


class Browser:
    """One shared browser process; `session()` hands out an isolated context per run."""

    def __init__(
        self,
        *,
        cdp_url: str | None = None,
        executable_path: str | None = None,
        headless: bool = True,
        own_origin: OwnOrigin | None = None,
    ) -> None:
        self.cdp_url = cdp_url if cdp_url is not None else os.environ.get("BROWSER_CDP_URL") or None
        self.own_origin = own_origin  # the workbench serving this browser's runs: refused to the agent
        self.executable_path = executable_path
        self.headless = headless
        self._pw: Playwright | None = None
        self._browser: PWBrowser | None = None
        self._lock = asyncio.Lock()

    @property
    def description(self) -> str:
        """Which browser this is, for start-up checks and logs."""
        if self.cdp_url:
            return f"remote browser over CDP ({_redact(self.cdp_url)})"
        return f"local Chromium ({self.executable_path or find_chromium() or 'not found'})"

    async def start(self) -> PWBrowser:
        """Launch (or connect to) the browser once; later calls return the same one."""
        async with self._lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if self._pw is None:
                from agent.engine.page import (  # finds elements in closed shadow roots
                    SELECTOR_ENGINE,
                    SELECTOR_ENGINE_JS,
                )

                self._pw = await async_playwright().start()
                await self._pw.selectors.register(SELECTOR_ENGINE, SELECTOR_ENGINE_JS)
            if self.cdp_url:
                try:
                    self._browser = await self._pw.chromium.connect_over_cdp(self.cdp_url, timeout=30_000)
                except Exception as exc:
                    raise BrowserError(
                        f"could not reach the browser at BROWSER_CDP_URL ({_redact(self.cdp_url)}): "
                        f"{str(exc).splitlines()[0]}; check the URL or unset BROWSER_CDP_URL to use a local Chromium"
                    ) from None
                return self._browser
            path = self.executable_path or find_chromium()
            if path is None:
                raise BrowserError(
                    "no Chromium found: run `make setup` (it tries `playwright install chromium`, then "
                    "`apt-get install chromium`), or set CHROMIUM_PATH to a Chromium binary"
                )
            try:
                from agent.rules.policy import chromium_args  # metadata hosts never resolve inside the browser

                self._browser = await self._pw.chromium.launch(
                    executable_path=path, headless=self.headless, args=CHROMIUM_ARGS + chromium_args()
                )
            except Exception as exc:
                raise BrowserError(
                    f"Chromium at {path} failed to start: {str(exc).splitlines()[0]}; "
                    "set CHROMIUM_PATH to a working Chromium"
                ) from None
            return self._browser

    @asynccontextmanager
    async def session(self, *, viewport: ViewportSize | None = None,
                      guard: NavigationGuard | None = None) -> AsyncIterator[BrowserSession]:
        """An isolated context for one run, closed at the end whatever happens.

        Every request of the context goes through `guard` (the run's navigation policy; by default
        the metadata, file: and own-origin blocks alone), local and remote browsers alike.
        """
        browser = await self.start()
        # Service workers blocked: one would serve the page from its cache and answer requests (and
        # navigations) without the guard seeing them, and could outlive the run's page in the context.
        context = await browser.new_context(
            viewport=viewport or VIEWPORT, ignore_https_errors=True, java_script_enabled=True,
            service_workers="block",
        )
        from agent.engine.page import INIT_SCRIPT  # marks clickables, keeps shadow roots, before any page script runs

        await context.add_init_script(INIT_SCRIPT)
        guard = guard or NavigationGuard()
        guard.own = guard.own or self.own_origin
        await guard.install(context)
        session = BrowserSession(context, guard=guard)
        try:
            await session.new_tab()
            yield session
        finally:
            try:
                await asyncio.wait_for(context.close(), timeout=10)
            except Exception:  # a crashed browser has nothing left to close
                pass

    async def close(self) -> None:
        """Close the browser process and Playwright."""
        async with self._lock:
            if self._browser is not None:
                try:
                    await self._browser.close()
                except Exception:
                    pass
                self._browser = None
            if self._pw is not None:
                await self._pw.stop()
                self._pw = None


class BrowserSession:
    """The tabs of one run. Tabs get small ids in the order they open; one is current."""

    def __init__(self, context: BrowserContext, *, guard: NavigationGuard | None = None) -> None:
        self.context = context
        self.guard = guard
        self.tabs: dict[int, Page] = {}
        self._next_id = 0
        self.current_id: int | None = None
        self._fetches: dict[Any, float] = {}  # requests in flight (fetch, xhr, documents) -> start time
        self._scripted: set[Any] = set()  # those of them a top document's own script made (its fetch, its XHR)
        self._no_fetches = asyncio.Event()  # set when the last recent request ends
        self.mask: SecretMask | None = None  # the secrets every screenshot paints over (`hide`)
        context.on("page", self._on_page)
        context.on("request", self._on_request)
        context.on("requestfinished", self._on_request_end)
        context.on("requestfailed", self._on_request_end)

    def _on_request(self, request: Any) -> None:
        if request.resource_type in FETCH_TYPES:
            if len(self._fetches) > 500:  # never let a page that opens endless streams grow this
                self._fetches.clear()
                self._scripted.clear()
            self._fetches[request] = time.monotonic()
            if request.resource_type != "document" and _top_frame(request):
                self._scripted.add(request)

    def _on_request_end(self, request: Any) -> None:
        self._fetches.pop(request, None)
        self._scripted.discard(request)
        self._no_fetches.set()  # waiters look again at what is still in flight

    def fetching(self, *, since: float | None = None, unseen: bool = False, documents: bool = False) -> bool:
        """Whether a fetch, XHR or document request started in the last FETCH_MAX_AGE_S (and at or after
        `since`, a time.monotonic()) is still in flight (older ones are long polls and streams that never end).
        `unseen`: leave out the fetches and XHRs of a tab's top document, which its own script counts
        (agent.engine.settle); `documents`: count documents only (a navigation on its way)."""
        now = time.monotonic()
        floor = max(now - FETCH_MAX_AGE_S, since if since is not None else -1.0)
        return any(t >= floor and not (unseen and r in self._scripted)
                   and not (documents and r.resource_type != "document") for r, t in self._fetches.items())

    async def fetches_done(self, *, timeout: float, since: float | None = None, unseen: bool = False,
                           documents: bool = False) -> None:
        """Wait, at most `timeout` seconds, until no recent request (started at or after `since`) is in flight."""
        deadline = time.monotonic() + max(0.0, timeout)
        while self.fetching(since=since, unseen=unseen, documents=documents):
            self._no_fetches.clear()
            try:
                await asyncio.wait_for(self._no_fetches.wait(), timeout=min(deadline - time.monotonic(),
                                                                            FETCH_MAX_AGE_S))
            except TimeoutError:  # a request still going (a slow server), or aged out of FETCH_MAX_AGE_S
                if time.monotonic() >= deadline:
                    return

    def _on_page(self, page: Page) -> None:
        if page in self.tabs.values():
            return
        tab_id = self._next_id
        self._next_id += 1
        self.tabs[tab_id] = page
        page.on("close", lambda _page: self._on_close(tab_id))
        # A page the site opened (target=_blank, window.open) becomes current, as a user would see.
        self.current_id = tab_id

    def _on_close(self, tab_id: int) -> None:
        self.tabs.pop(tab_id, None)
        if self.current_id == tab_id:
            self.current_id = max(self.tabs) if self.tabs else None

    @property
    def page(self) -> Page:
        """The current tab."""
        if self.current_id is None or self.current_id not in self.tabs:
            raise BrowserError("no tab is open")
        return self.tabs[self.current_id]

    async def new_tab(self, url: str | None = None) -> Page:
        """Open a tab, make it current, and optionally load `url`."""
        page = await self.context.new_page()
        self._on_page(page)
        if url:
            await page.goto(url, wait_until="domcontentloaded", timeout=30_000)
        return page

    async def ensure_page(self) -> Page:
        """The current tab, opening a blank one if the model closed them all."""
        if not self.tabs:
            return await self.new_tab()
        if self.current_id not in self.tabs:
            self.current_id = max(self.tabs)
        return self.page

    def tab_list(self) -> list[tuple[int, str]]:
        """(tab id, url) of every open tab."""
        return [(tab_id, page.url) for tab_id, page in sorted(self.tabs.items())]

    async def hide(self, secrets: Secrets) -> None:
        """Paint every visible occurrence of these secrets over in each later screenshot (agent.engine.mask)."""
        await secrets.prepare()  # compiles their spellings off the event loop
        values = [*(self.mask.values if self.mask else []), *secrets.values()]
        self.mask = await asyncio.to_thread(SecretMask, values) if values else None

    async def screenshot(self, path: Path, *, max_bytes: int = SCREENSHOT_MAX_BYTES) -> str | None:
        """Save a JPEG of the current viewport under `path`, every secret painted over, under max_bytes."""
        page = await self.ensure_page()
        try:
            # Fields typed into with a secret (agent.engine.secrets) are painted over whatever they show; a
            # session with no secret has typed none (finding none costs a query per shot: ~10 ms a step).
            also = [page.locator(f"[{MASKED_ATTR}]")] if self.mask else []
            data = await masked_screenshot(page, self.mask, max_bytes=max_bytes, also=also)
        except Exception:
            return None
        if data is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)


@asynccontextmanager
async def use_session(browser: Browser, given: BrowserSession | None, *,
                      guard: NavigationGuard | None = None) -> AsyncIterator[BrowserSession]:
    """`given` as it is (left open for its owner), else a new session of `browser` closed at the end."""
    if given is not None:
        yield given
        return
    async with browser.session(guard=guard) as session:
        yield session


def _top_frame(request: Any) -> bool:
    """Whether a request comes from a tab's top document (a service worker's has no frame)."""
    try:
        return request.frame.parent_frame is None
    except Exception:
        return False


def _redact(url: str) -> str:
    """A CDP URL without its token or credentials (they often carry an API key)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
