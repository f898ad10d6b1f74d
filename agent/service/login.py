"""Browser login when WORKBENCH_API_KEY (or WORKBENCH_API_KEYS) is set: a one-time form, then a cookie derived
from the key given.

`install_ui_login(app, keys)` is called by `agent.service.api.create_api` beside the key check
(`agent.service.http.ApiKeyMiddleware`): a browser cannot send the header, so its cookie stands for it. Each key
has its own cookie value, so a browser logged in with a named key acts (and reviews) as that name.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

__all__ = ["UI_LOGIN_PATH", "UI_SESSION_COOKIE", "UiSessionMiddleware", "install_ui_login", "ui_session_token"]

UI_SESSION_COOKIE = "workbench_session"
UI_LOGIN_PATH = "/login-key"
UI_LOGIN_FAIL_DELAY_S = 0.5  # slows down guessing the key through the login form


def ui_session_token(api_key: str) -> str:
    """The browser's session cookie value: derived from the key, so the cookie never holds the key."""
    return hmac.new(api_key.encode("utf-8"), b"workbench-ui-session-v1", hashlib.sha256).hexdigest()


class UiSessionMiddleware:
    """With an API key set: a browser logs in once with a key, then its cookie stands for that key.

    Requests carrying a session cookie get that key's header added (inside this process only), so the
    Gradio UI (/ and /gradio_api) and its screenshots (/api/...) work from a browser; pages without key
    or cookie redirect to the login form. The demo shop stays public; programs keep sending the header.
    """

    PUBLIC_PREFIXES = ("/demo", UI_LOGIN_PATH, "/favicon.ico")

    def __init__(self, app: Any, *, keys: Sequence[str]) -> None:
        self.app = app
        self._tokens = [(ui_session_token(key).encode("ascii"), key.encode("utf-8")) for key in keys]

    def _cookie_key(self, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """The key whose session cookie the request carries, or None."""
        found = None
        for name, value in headers:
            if name != b"cookie":
                continue
            try:
                jar = SimpleCookie(value.decode("latin-1"))
            except CookieError:
                continue
            morsel = jar.get(UI_SESSION_COOKIE)
            if morsel is None:
                continue
            given = morsel.value.encode("latin-1", "replace")
            for token, key in self._tokens:  # every token compared: no early exit that would leak timing
                if hmac.compare_digest(given, token):
                    found = key
        return found

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = list(scope.get("headers") or [])
        has_key = any(name in (b"authorization", b"x-api-key") for name, _ in headers)
        if not has_key:
            key = self._cookie_key(headers)
            if key is not None:
                scope = dict(scope, headers=[*headers, (b"x-api-key", key)])
                has_key = True
        public = any(path == p or path.startswith(p + "/") for p in self.PUBLIC_PREFIXES)
        # /api and /gradio_api answer for themselves (401 naming the header); the UI pages go to the login.
        protected_elsewhere = any(path == p or path.startswith(p + "/") for p in ("/api", "/gradio_api"))
        if not has_key and not public and not protected_elsewhere and scope["type"] == "http":
            if scope.get("method") == "GET" and path in ("/", ""):
                response: Any = RedirectResponse(UI_LOGIN_PATH, status_code=303)
            else:
                response = JSONResponse({"detail": f"log in at {UI_LOGIN_PATH} with your API key (WORKBENCH_API_KEY "
                                                   "or WORKBENCH_API_KEYS), or send 'X-API-Key: <key>'"},
                                        status_code=401)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


_LOGIN_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Workbench: log in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:420px;margin:12vh auto;padding:0 16px}}
input{{width:100%;padding:8px;margin:8px 0;box-sizing:border-box}}button{{padding:8px 16px}}
.err{{color:#b91c1c}}</style>
</head><body><h2>LLM web-agent workbench</h2>
<p>This server requires an API key (WORKBENCH_API_KEY, or yours from WORKBENCH_API_KEYS).</p>
{error}<form method="post" action="{path}"><label>API key<input type="password" name="key" autofocus
autocomplete="current-password"></label><button type="submit">Log in</button></form></body></html>"""


def install_ui_login(app: FastAPI, keys: Sequence[str]) -> None:
    """The login form for browsers when an API key is set, and the cookie middleware behind it."""
    encoded = [key.encode("utf-8") for key in keys]

    @app.get(UI_LOGIN_PATH, include_in_schema=False)
    async def login_form() -> HTMLResponse:
        return HTMLResponse(_LOGIN_HTML.format(error="", path=UI_LOGIN_PATH))

    @app.post(UI_LOGIN_PATH, include_in_schema=False, response_model=None)
    async def login(request: Request) -> HTMLResponse | RedirectResponse:
        body = (await request.body())[:4096]  # a key, not a document
        given = (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0].strip().encode("utf-8")
        matched = None
        for key in encoded:  # every key compared: no early exit that would leak timing
            if hmac.compare_digest(given, key):
                matched = key
        if matched is None:
            await asyncio.sleep(UI_LOGIN_FAIL_DELAY_S)
            return HTMLResponse(_LOGIN_HTML.format(error='<p class="err">Wrong key.</p>', path=UI_LOGIN_PATH),
                                status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(UI_SESSION_COOKIE, ui_session_token(matched.decode("utf-8")), httponly=True,
                            samesite="strict", max_age=7 * 24 * 3600, secure=request.url.scheme == "https")
        return response

    app.add_middleware(UiSessionMiddleware, keys=list(keys))
