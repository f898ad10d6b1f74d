"""HTTP plumbing shared by every JSON route: the one body reader, client errors, the key check, handlers.

A client mistake is answered `{"detail": [{"field", "message"}]}` (422) naming the field and the fix,
an unknown id `{"detail": "run 12 not found"}` (404), a full queue 429 with Retry-After; never a 500
with a traceback.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.limits import MAX_BODY_BYTES, MAX_ID, MAX_JSON_DEPTH, json_depth
from agent.models import json_safe
from agent.service.door import Conflict, NotFound
from agent.service.runs import ServiceBusy, ServiceClosed

__all__ = ["ApiKeyMiddleware", "BODY_ERRORS", "ClientError", "ErrorBody", "KEY_NAME_STATE", "MAX_BODY_BYTES", "MAX_ID",
           "RequestGuard", "ValidationErrors", "error_responses", "install_error_handlers", "json_body",
           "json_response", "key_name", "read_json", "read_object", "unprocessable"]

log = logging.getLogger(__name__)

PROTECTED_PREFIXES = ("/api", "/gradio_api")
MAX_UPLOAD_BYTES = 10_000_000  # Gradio's own file uploads (the workbench's form has none)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Bodies that are not JSON, where Gradio's page or our login form really sends them.
OTHER_BODIES: dict[str, tuple[str, ...]] = {
    "/gradio_api/upload": ("multipart/form-data",),
    "/gradio_api/component_server": ("multipart/form-data",),
    "/gradio_api/component_server/": ("multipart/form-data",),
    "/login-key": ("application/x-www-form-urlencoded",),
}

RunId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The task_run_id returned when the run was created")]
TaskId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The task_id returned when the run was created")]
WorkflowId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The id returned when the workflow was saved")]


# ------------------------------------------------------------------ errors
class ClientError(Exception):
    """A request the client can fix: answered with `status` and the field-level details."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


def unprocessable(field: str, message: str) -> ClientError:
    return ClientError(422, [{"field": field, "message": message}])


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """`content` as a JSON response (NaN and infinities as null)."""
    return JSONResponse(json_safe(jsonable_encoder(content)), status_code=status, headers=headers)


# ------------------------------------------------------------------ the documented shapes (OpenAPI)
class ErrorBody(BaseModel):
    """Every error but a field-level 422: what went wrong and what to do."""

    detail: str


class FieldError(BaseModel):
    """One field that cannot be accepted, and how to fix it."""

    field: str
    message: str


class ValidationErrors(BaseModel):
    """A 422: every field that is wrong, each with the fix."""

    detail: list[FieldError]


_ERRORS: dict[int, str] = {
    400: "The Host header is not a name the app is served as (--host, localhost, 127.0.0.1, ALLOWED_HOSTS)",
    401: "WORKBENCH_API_KEY (or WORKBENCH_API_KEYS) is set and the request carries no (or a wrong) key",
    403: "The request comes from another origin or site (Origin / Sec-Fetch-Site)",
    404: "No such run, task, workflow, experiment, task set (or version, or task of it) or screenshot",
    409: "The run (or experiment) has already ended, or (a review) has not ended yet, or a task set of that name "
         "exists",
    413: "The body is over the size limit",
    415: "The body is not JSON (send Content-Type: application/json)",
    422: "A field (or the body) cannot be accepted; each entry names it and the fix",
    429: "Too many runs are running or queued; retry after Retry-After seconds",
    503: "The server is shutting down; retry after Retry-After seconds",
}
GUARD_ERRORS = (400, 401, 403)  # any route: the request guard and the key check
BODY_ERRORS = (413, 415, 422)  # any route that reads a body


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: the guard's errors and `codes`, each with its real body shape."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted({*GUARD_ERRORS, 422, *codes}):
        out[code] = {"model": ValidationErrors if code == 422 else ErrorBody, "description": _ERRORS[code]}
        if code in (429, 503):
            out[code]["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return out


def json_body(schema_name: str, *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself (through `read_json`)."""
    return {"requestBody": {"required": required, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}}}}


# ------------------------------------------------------------------ auth
KEY_NAME_STATE = "api_key_name"  # request.state's attribute: the name of the key the request carried, if any


def key_name(request: Request) -> str | None:
    """The name of the API key the request carried (WORKBENCH_API_KEYS), or None (no key, or the unnamed one)."""
    return getattr(request.state, KEY_NAME_STATE, None)


class ApiKeyMiddleware:
    """Requires an API key on /api and /gradio_api (pure ASGI: streaming responses stay untouched).

    `api_key` is WORKBENCH_API_KEY (no name); `named_keys` WORKBENCH_API_KEYS' (name, key) pairs: a request
    carrying one of those is marked with its name (`key_name(request)`), which a review takes as its reviewer.
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None = None, named_keys: Sequence[tuple[str, str]] = (),
                 prefixes: tuple[str, ...] = PROTECTED_PREFIXES) -> None:
        self.app = app
        unnamed = [(api_key.encode("utf-8"), None)] if api_key else []
        self._keys: list[tuple[bytes, str | None]] = unnamed + [(k.encode("utf-8"), n) for n, k in named_keys]
        self.prefixes = prefixes

    def _protected(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)

    def _holder(self, scope: Scope) -> tuple[bool, str | None]:
        """(a key matched, the name of the key that did)."""
        given: list[bytes] = []
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given.append(token.strip())
            elif name == b"x-api-key":
                given.append(value.strip())
        # compare_digest on every candidate and every key: no early exit that would leak timing.
        ok, holder = False, None
        for token in given:
            for key, key_holder in self._keys:
                if hmac.compare_digest(token, key):
                    ok, holder = True, holder or key_holder
        return ok, holder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] in ("http", "websocket") and self._protected(scope.get("path", ""))
        if not guarded:
            await self.app(scope, receive, send)
            return
        ok, holder = self._holder(scope)
        if ok:
            state = dict(scope.get("state") or {})
            state[KEY_NAME_STATE] = holder
            await self.app({**scope, "state": state}, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401})
            return
        response = JSONResponse(
            {"detail": "missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                       "or 'X-API-Key: <key>' with a key set in WORKBENCH_API_KEY (or WORKBENCH_API_KEYS)"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


# ------------------------------------------------------------------ host, origin, content type, size
class RequestGuard:
    """What every request must be before any route sees it (pure ASGI, so Gradio's routes are covered too).

    - Host: one of the names the app is served as (`allowed_hosts`), else 400: a DNS-rebinding page
      cannot talk to the app through a name of its own.
    - Origin: a request whose `Origin` is another origin (another port counts) or whose
      `Sec-Fetch-Site` is cross-site / same-site is refused (403): pages the user or the agent visits
      cannot start runs, read the log or ride on the login cookie.
    - Content type: a body must be JSON (415), except Gradio's uploads and the login form.
    - Size: a body over the cap is refused (413) before it is read.
    """

    def __init__(self, app: ASGIApp, *, allowed_hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts  # None: any host (an app that is not served, e.g. in tests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers") or []}
        refusal = self._refusal(scope, headers)
        if refusal is None and scope["type"] == "http":
            refusal, receive = await self._body(scope, headers, receive)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4400 if status == 400 else 4403})
            return
        await json_response({"detail": detail}, status)(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        name = host_name(host)
        if self.allowed_hosts is not None and name is None:
            return 400, (f"the Host header {host[:100]!r} is not a host name with an optional port; send the "
                         "address the app is served at, e.g. 127.0.0.1:7860")
        if self.allowed_hosts is not None and name not in self.allowed_hosts:
            return 400, (f"host {name!r} is not served here; use one of "
                         f"{', '.join(sorted(self.allowed_hosts))}, or add it to ALLOWED_HOSTS")
        origin = headers.get("origin")
        if origin is not None and not same_origin(origin, host):
            return 403, (f"cross-origin request refused (Origin {origin[:100]!r}); call the API from a program, "
                         "or from the workbench's own page")
        site = headers.get("sec-fetch-site", "").lower()
        unsafe = scope["type"] == "websocket" or scope.get("method", "GET") not in SAFE_METHODS
        if unsafe and site in ("cross-site", "same-site"):
            return 403, f"request from another site refused (Sec-Fetch-Site: {site}); send it from the workbench itself"
        return None

    async def _body(self, scope: Scope, headers: dict[str, str],
                    receive: Receive) -> tuple[tuple[int, str] | None, Receive]:
        """The content type and size check; a chunked body is read here (bounded) and handed on."""
        path = scope.get("path", "")
        if scope.get("method", "GET") in SAFE_METHODS:
            return None, receive
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        declared = headers.get("content-length")
        if declared is not None and not declared.strip().isdigit():
            return (400, "Content-Length is not a number"), receive
        size = int(declared) if declared is not None else 0
        if not chunked and size == 0:
            return None, receive  # no body: nothing to type-check (e.g. POST .../cancel)
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        others = OTHER_BODIES.get(path, ())
        if not (is_json_type(ctype) or ctype in others):
            allowed = " or ".join(("application/json", *others))
            return (415, f"the body is {ctype or 'untyped'}: send it as JSON with the header "
                         f"'Content-Type: {allowed}'"), receive
        cap = MAX_UPLOAD_BYTES if others and ctype in others else MAX_BODY_BYTES
        if size > cap:
            return (413, f"the body is {size} bytes; the limit is {cap}"), receive
        if declared is not None:
            return None, receive
        body, total = [], 0
        while True:  # chunked: read it whole, bounded, then replay it to the route
            message = await receive()
            if message["type"] != "http.request":
                break
            total += len(message.get("body", b""))
            if total > cap:
                return (413, f"the body is over {cap} bytes; send a smaller request"), receive
            body.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(body), "more_body": False}

        return None, replay


def is_json_type(ctype: str) -> bool:
    """application/json, or a JSON-based type such as application/merge-patch+json."""
    return ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json"))


# A Host header is `host [":" port]` and nothing else (RFC 9110 7.2): a name (letters, digits, "-", "_",
# dots between labels), an IPv4 address, or an IPv6 address in brackets; no userinfo, no path, no junk.
_NAME_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*")
_HOST_RE = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]]+))(?::(?P<port>[0-9]{1,5}))?")


def host_name(host: str) -> str | None:
    """The name in a Host header (lower case, an IPv6 address without brackets), or None unless the whole
    header is a host with an optional port: `127.0.0.1:7860@evil`, `localhost:evil`, `[::1]evil.com` are None."""
    match = _HOST_RE.fullmatch(host.strip().lower())
    if match is None:
        return None
    port = match.group("port")
    if port is not None and not 0 < int(port) <= 65535:
        return None
    if match.group("ip6") is not None:
        try:
            return ipaddress.IPv6Address(match.group("ip6")).compressed
        except ValueError:
            return None
    name = match.group("name")
    return name if len(name) <= 253 and _NAME_RE.fullmatch(name) else None


def same_origin(origin: str, host: str) -> bool:
    """True when the Origin header names the host (and port) this request was sent to."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False  # "null", file:, extensions
    default = {"http": 80, "https": 443}[parts.scheme]
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = name if port in (None, default) else f"{name}:{port}"
    given = host.strip().lower()
    for scheme_port in (":80", ":443"):  # a client may spell the default port out
        if given.endswith(scheme_port) and scheme_port == f":{default}":
            given = given[: -len(scheme_port)]
    return netloc == given


# ------------------------------------------------------------------ body parsing
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_REQUIRED: Any = object()


async def read_json(request: Request, *, empty: Any = _REQUIRED) -> Any:
    """The body as a JSON value, bounded in size (`empty` when there is none and that is allowed)."""
    # The content type was checked by RequestGuard, for every route at once.
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise unprocessable("content-length", "is not a number") from None
        if size > MAX_BODY_BYTES:
            raise ClientError(413, f"the body is {size} bytes; the limit is {MAX_BODY_BYTES}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():  # also bounds chunked bodies, which have no length header
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise ClientError(413, f"the body is over {MAX_BODY_BYTES} bytes; send a smaller request")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if empty is not _REQUIRED:
            return empty
        raise unprocessable("body", 'is empty; send a JSON object such as {"prompt": "find the cheapest cable"}')
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise unprocessable("body", f"is not UTF-8 (bad byte at position {exc.start}); send UTF-8 JSON") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise unprocessable(
            "body", f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                    'send a JSON object such as {"prompt": "find the cheapest cable"}'
        ) from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise unprocessable("body", f"is not valid JSON ({reason}); send a plain JSON object") from None
    if json_depth(value) > MAX_JSON_DEPTH:  # later code (pydantic, json.dumps) recurses: refuse it here
        raise unprocessable("body", f"nests deeper than {MAX_JSON_DEPTH} levels; send a flatter JSON object")
    return value


async def read_object(request: Request, what: str, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object ({} when optional and empty); ClientError naming the fix otherwise."""
    return as_object(await read_json(request, empty={} if not required else _REQUIRED), what)


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number",
                type(None): "null"}.get(type(value), type(value).__name__)
        raise unprocessable("body", f"must be a JSON object with {what}, got {kind}")
    return value


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the API's shape: client mistakes name the fix, our bugs stay in the log."""

    @app.exception_handler(ClientError)
    async def _client_error(_request: Request, exc: ClientError) -> JSONResponse:
        return json_response({"detail": exc.detail}, exc.status)

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return json_response({"detail": str(exc)}, 404)

    @app.exception_handler(Conflict)
    async def _conflict(_request: Request, exc: Conflict) -> JSONResponse:
        return json_response({"detail": str(exc)}, 409)

    @app.exception_handler(ServiceBusy)
    async def _busy(_request: Request, exc: ServiceBusy) -> JSONResponse:
        return json_response({"detail": str(exc)}, 429, headers={"Retry-After": "5"})

    @app.exception_handler(ServiceClosed)
    async def _closed(_request: Request, exc: ServiceClosed) -> JSONResponse:
        return json_response({"detail": str(exc)}, 503, headers={"Retry-After": "10"})

    @app.exception_handler(RequestValidationError)
    async def _bad_params(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body", "header")]
            field = ".".join(loc) or "request"
            msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
            if err.get("type") in ("int_parsing", "int_type"):
                msg = "must be a whole number"
            elif err.get("type") in ("greater_than_equal", "less_than_equal"):
                ctx = err.get("ctx") or {}
                low, high = ctx.get("ge"), ctx.get("le")
                msg = f"must be between {low if low is not None else '...'} and {high if high is not None else '...'}"
                if field in ("task_run_id", "task_id", "run_id") and high == MAX_ID:
                    msg = "must be a positive id (a whole number from 1)"
            elif err.get("type") == "literal_error":
                msg = msg.replace("Input should be", "must be")
            details.append({"field": field, "message": msg})
        return json_response({"detail": details}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        return json_response({"detail": exc.detail}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Our bug, never the client's: the traceback goes to the server log, not to the client.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return json_response({"detail": "internal error; the server log has the details"}, 500)

