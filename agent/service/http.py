"""HTTP plumbing shared by every JSON route: the one body reader, client errors, the key check, handlers.

A client mistake is answered `{"detail": [{"field", "message"}]}` (422) naming the field and the fix,
an unknown id `{"detail": "run 12 not found"}` (404), a full queue 429 with Retry-After; never a 500
with a traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.models import json_safe
from agent.service.door import NotFound
from agent.service.runs import ServiceBusy, ServiceClosed

__all__ = ["ApiKeyMiddleware", "ClientError", "MAX_BODY_BYTES", "MAX_ID", "install_error_handlers", "read_json",
           "read_object", "unprocessable", "json_response"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000  # a run request is a prompt and a schema; a megabyte is plenty
MAX_ID = 2**63 - 1  # DuckDB BIGINT: larger ids cannot exist, and must not reach the database
PROTECTED_PREFIXES = ("/api", "/gradio_api")
JSON_TYPES = ("application/json",)

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
    from fastapi.encoders import jsonable_encoder

    return JSONResponse(json_safe(jsonable_encoder(content)), status_code=status, headers=headers)


# ------------------------------------------------------------------ auth
class ApiKeyMiddleware:
    """Requires the API key on /api and /gradio_api (pure ASGI: streaming responses stay untouched)."""

    def __init__(self, app: ASGIApp, *, api_key: str, prefixes: tuple[str, ...] = PROTECTED_PREFIXES) -> None:
        self.app = app
        self._key = api_key.encode("utf-8")
        self.prefixes = prefixes

    def _protected(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)

    def _authorized(self, scope: Scope) -> bool:
        given: list[bytes] = []
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given.append(token.strip())
            elif name == b"x-api-key":
                given.append(value.strip())
        # compare_digest on every candidate: no early exit that would leak timing.
        ok = False
        for token in given:
            ok |= hmac.compare_digest(token, self._key)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] in ("http", "websocket") and self._protected(scope.get("path", ""))
        if not guarded or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401})
            return
        response = JSONResponse(
            {"detail": "missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                       "or 'X-API-Key: <key>' with the key set in WORKBENCH_API_KEY"},
            status_code=401, headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


# ------------------------------------------------------------------ body parsing
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_REQUIRED: Any = object()


async def read_json(request: Request, *, empty: Any = _REQUIRED) -> Any:
    """The body as a JSON value, bounded in size (`empty` when there is none and that is allowed)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in JSON_TYPES and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise unprocessable(
            "content-type", f"is {ctype!r}; send the body as JSON with the header 'Content-Type: application/json'"
        )
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
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise unprocessable(
            "body", f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                    'send a JSON object such as {"prompt": "find the cheapest cable"}'
        ) from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise unprocessable("body", f"is not valid JSON ({reason}); send a plain JSON object") from None


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

