"""The navigation policy on every request of a run's browser context, not only on `navigate`.

`NavigationGuard.install(context)` routes every request the context makes (any tab, any frame, any
cause: a click, a form, a script, a popup) through one check:
- every request: cloud metadata addresses and `file:` are aborted, and so is the workbench's own
  origin except the paths it opens to the agent (`OwnOrigin`: by default only the demo shop), so a
  page the agent visits cannot read the run log through /api;
- document requests (main frame and sub-frames): `check_navigation` with the run's allowed and
  blocked domains.
A refused request is aborted and its reason kept; `take()` hands the reasons to the action that
caused them, which fails with them. Playwright does not route the later hops of a server redirect;
those are caught when the browser reports them (`request` event): the hop has been sent, but the
tab is taken off the refused page (`leave_refused`) before the model ever sees it. Local Chromium
also never resolves metadata hosts (launch flags), redirects included.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

from pydantic import BaseModel

from agent.rules.policy import PolicyError, check_navigation, request_blocked
from agent.rules.urls import WEB_SCHEMES, clean_url, parse_web

__all__ = ["MAX_REFUSALS", "NavigationGuard", "OwnOrigin"]

R = TypeVar("R", bound=BaseModel)
MAX_REFUSALS = 20  # reasons kept between two actions (a page may retry a refused request in a loop)


@dataclass(frozen=True)
class OwnOrigin:
    """The workbench's own origin(s): the names it answers to, its port, and the paths the agent may open."""

    hosts: frozenset[str]
    port: int
    open_paths: tuple[str, ...] = ("/demo/",)

    def refuses(self, url: str) -> str | None:
        """Why the agent may not load `url` from the workbench itself, or None."""
        try:
            parsed = parse_web(clean_url(url))
        except PolicyError:
            return None
        if parsed.scheme not in WEB_SCHEMES:
            return None
        port = parsed.port if parsed.port is not None else (443 if parsed.scheme == "https" else 80)
        ours = parsed.key in self.hosts or (parsed.ip is not None and parsed.ip.is_loopback)
        if not ours or port != self.port:
            return None
        path = posixpath.normpath(unquote(parsed.rest.split("?", 1)[0].split("#", 1)[0]))
        path = path.replace("//", "/")
        for allowed in self.open_paths:
            if path == allowed.rstrip("/") or path.startswith(allowed if allowed.endswith("/") else allowed + "/"):
                return None
        opened = ", ".join(self.open_paths) or "none"
        return (f"{parsed.key}:{port}{path} is the workbench itself (its UI, API and run log are not for the agent; "
                f"paths it may open there: {opened}; WORKBENCH_AGENT_PATHS sets them)")


class NavigationGuard:
    """One run's navigation policy, applied to every request of its browser context."""

    def __init__(self, *, allowed_domains: Sequence[str] | None = None,
                 blocked_domains: Sequence[str] | None = None, own: OwnOrigin | None = None) -> None:
        self.allowed_domains = list(allowed_domains) if allowed_domains is not None else None
        self.blocked_domains = list(blocked_domains) if blocked_domains is not None else None
        self.own = own
        self._refusals: list[str] = []

    def refusal(self, url: str, *, document: bool) -> str | None:
        """Why a request to `url` is refused (documents also by the domain lists), or None."""
        if request_blocked(url):
            return f"{url[:200]} is a cloud metadata address or a local file, which is always refused"
        if self.own is not None:
            why = self.own.refuses(url)
            if why:
                return why
        if not document or not url.startswith(("http:", "https:")):
            return None  # data:, blob:, about: documents carry no host to check
        try:
            check_navigation(url, allowed_domains=self.allowed_domains, blocked_domains=self.blocked_domains)
        except PolicyError as exc:
            return str(exc)
        return None

    async def install(self, context: Any) -> None:
        """Route every request of `context` through the policy (before its first tab opens)."""
        await context.route("**/*", self._route)
        context.on("request", self._on_request)

    def take(self) -> list[str]:
        """The reasons of the requests refused since the last call (oldest first), and forget them."""
        taken, self._refusals = self._refusals, []
        return taken

    async def settle(self, tabs: dict[int, Any], result: R, outcome: Any) -> tuple[R, Any]:
        """An action's result failed with the reasons of what was refused while it ran (and the tabs taken off
        refused pages); unchanged when nothing was."""
        refused = self.take()
        if not refused:
            return result, outcome
        await self.leave_refused(tabs)
        error = "navigation refused: " + "; ".join(refused)
        earlier = getattr(result, "error", None)
        if earlier and not earlier.startswith("navigation refused"):
            error += f" (and: {earlier})"
        return result.model_copy(update={"success": False, "error": error[:1000], "include_in_memory": True}), None

    async def leave_refused(self, tabs: dict[int, Any]) -> None:
        """Take every tab off a page the policy refuses (a redirect got there): back, else about:blank."""
        for page in list(tabs.values()):
            if not self.refusal(page.url, document=True):
                continue
            try:
                await page.go_back(wait_until="commit", timeout=5_000)
            except Exception:
                pass
            if self.refusal(page.url, document=True):
                try:
                    await page.goto("about:blank", timeout=5_000)
                except Exception:
                    pass

    def _refuse(self, reason: str) -> None:
        if len(self._refusals) < MAX_REFUSALS and reason not in self._refusals:
            self._refusals.append(reason)

    async def _route(self, route: Any) -> None:
        request = route.request
        reason = self.refusal(request.url, document=request.resource_type == "document")
        if reason is None:
            await route.continue_()
            return
        self._refuse(reason)
        await route.abort("blockedbyclient")

    def _on_request(self, request: Any) -> None:
        # Redirect hops never reach the route: note them here; the action's end takes the tab off.
        if request.redirected_from is None or request.resource_type != "document":
            return
        reason = self.refusal(request.url, document=True)
        if reason is not None:
            self._refuse(f"a redirect went to a refused page: {reason}")
