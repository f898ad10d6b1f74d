"""The JSON routes under /api: run, poll, cancel, list, re-run tasks, health.

`create_api(service, api_key=...)` returns a FastAPI app. Every route answers in the contract's
shape (`RunResponse`); a client mistake is a 422 `{"detail": [{"field", "message"}]}` that names the
field and the fix, an unknown id a 404 `{"detail": "run 12 not found"}`, never a 500. With an API key
set, every /api and /gradio_api route needs `Authorization: Bearer <key>` or `X-API-Key: <key>`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from fastapi import FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.models import PROVIDERS, RequestError, RunRequest, json_safe, validation_errors
from agent.service.runs import NotFound, RunService, ServiceBusy, ServiceClosed

__all__ = ["ApiKeyMiddleware", "MAX_BODY_BYTES", "create_api"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_000_000  # a run request is a prompt and a schema; a megabyte is plenty
MAX_ID = 2**63 - 1  # DuckDB BIGINT: larger ids cannot exist, and must not reach the database
MAX_PAGE = 1000
CANCEL_WAIT_S = 5.0
PROTECTED_PREFIXES = ("/api", "/gradio_api")
JSON_TYPES = ("application/json",)

RunId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The task_run_id returned when the run was created")]
TaskId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="The task_id returned when the run was created")]
Step = Annotated[int, PathParam(ge=1, le=100_000, description="The step number (1 is the first step)")]


# ------------------------------------------------------------------ errors
class ClientError(Exception):
    """A request the client can fix: answered with `status` and the field-level details."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


def _unprocessable(field: str, message: str) -> ClientError:
    return ClientError(422, [{"field": field, "message": message}])


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
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
        if scope["type"] in ("http", "websocket") and self._protected(scope.get("path", "")):
            if not self._authorized(scope):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 4401})
                    return
                response = JSONResponse(
                    {"detail": "missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                               "or 'X-API-Key: <key>' with the key set in WORKBENCH_API_KEY"},
                    status_code=401, headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# ------------------------------------------------------------------ body parsing
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _read_json(request: Request, *, required: bool = True) -> Any:
    """The body as a JSON value, bounded in size; ClientError naming the fix otherwise."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in JSON_TYPES and not (ctype.startswith("application/") and ctype.endswith("+json")):
        raise _unprocessable(
            "content-type", f"is {ctype!r}; send the body as JSON with the header 'Content-Type: application/json'"
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise _unprocessable("content-length", "is not a number") from None
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
        if not required:
            return None
        raise _unprocessable("body", 'is empty; send a JSON object such as {"prompt": "find the cheapest cable"}')
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unprocessable("body", f"is not UTF-8 (bad byte at position {exc.start}); send UTF-8 JSON") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _unprocessable(
            "body", f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                    'send a JSON object such as {"prompt": "find the cheapest cable"}'
        ) from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise _unprocessable("body", f"is not valid JSON ({reason}); send a plain JSON object") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number",
                type(None): "null"}.get(type(value), type(value).__name__)
        raise _unprocessable("body", f"must be a JSON object with {what}, got {kind}")
    return value


def _validate(data: dict[str, Any]) -> RunRequest:
    """A RunRequest, or a 422 listing every field that is wrong and how to fix it."""
    try:
        return RunRequest.model_validate(data)
    except ValidationError as exc:
        raise ClientError(422, validation_errors(exc)) from None
    except RequestError as exc:
        raise _unprocessable(exc.field, exc.message) from None
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. a schema too deep to check
        raise _unprocessable("request", f"could not be read: {str(exc)[:300]}") from None


# ------------------------------------------------------------------ the app
def create_api(
    service: RunService,
    *,
    api_key: str | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
    title: str = "LLM web-agent workbench",
) -> FastAPI:
    """The FastAPI app with the /api routes, the error handlers and (if `api_key`) the key check."""
    app = FastAPI(title=title, lifespan=lifespan, docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.service = service
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)

    # ---------------------------------------------------------- error handlers
    @app.exception_handler(ClientError)
    async def _client_error(_request: Request, exc: ClientError) -> JSONResponse:
        return _json({"detail": exc.detail}, exc.status)

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return _json({"detail": str(exc)}, 404)

    @app.exception_handler(ServiceBusy)
    async def _busy(_request: Request, exc: ServiceBusy) -> JSONResponse:
        return _json({"detail": str(exc)}, 429, headers={"Retry-After": "5"})

    @app.exception_handler(ServiceClosed)
    async def _closed(_request: Request, exc: ServiceClosed) -> JSONResponse:
        return _json({"detail": str(exc)}, 503, headers={"Retry-After": "10"})

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
        return _json({"detail": details}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        return _json({"detail": exc.detail}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Our bug, never the client's: the traceback goes to the server log, not to the client.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _json({"detail": "internal error; the server log has the details"}, 500)

    # ---------------------------------------------------------- runs
    async def _start(request: RunRequest, *, task_id: int | None = None) -> JSONResponse:
        try:
            task_id, run_id = await service.submit(request, task_id=task_id)
        except RequestError as exc:
            raise _unprocessable(exc.field, exc.message) from None
        location = {"Location": f"/api/runs/{run_id}"}
        if request.wait_for_completion:
            return _json((await service.wait(run_id)).to_json(), headers=location)
        current = await service.aget(run_id)
        assert current is not None
        return _json(current.to_json(), headers=location)

    @app.post("/api/runs", tags=["runs"], summary="Run Agent")
    async def post_run(request: Request) -> JSONResponse:
        """Start a run (the contract's request); waits for the end unless wait_for_completion is false."""
        body = _object(await _read_json(request), 'the run request fields, e.g. {"prompt": "..."}')
        return await _start(_validate(body))

    @app.get("/api/runs", tags=["runs"])
    async def list_runs(
        status: Literal["success", "failure", "in_progress"] | None = None,
        provider: Literal[PROVIDERS] | None = None,  # type: ignore[valid-type]
        model: str | None = Query(default=None, max_length=200),
        task_id: int | None = Query(default=None, ge=1, le=MAX_ID),
        limit: int = Query(default=50, ge=1, le=MAX_PAGE),
        offset: int = Query(default=0, ge=0, le=MAX_ID),
    ) -> JSONResponse:
        """A page of runs, newest first, with the total matching the filters."""
        rows, total = await asyncio.to_thread(
            service.store.list_runs, status=status, provider=provider, model=model, task_id=task_id,
            limit=limit, offset=offset,
        )
        runs = [{"task_run_id": row.get("id"), **row} for row in rows]
        return _json({"runs": runs, "total": total, "limit": limit, "offset": offset})

    @app.get("/api/runs/{task_run_id}", tags=["runs"])
    async def get_run(task_run_id: RunId) -> JSONResponse:
        """The run in the contract's shape, with the history so far."""
        response = await service.aget(task_run_id)
        if response is None:
            raise NotFound("run", task_run_id)
        return _json(response.to_json())

    @app.post("/api/runs/{task_run_id}/cancel", tags=["runs"])
    async def cancel_run(task_run_id: RunId) -> JSONResponse:
        """Stop a running or queued run (it ends as failure, "cancelled"); 409 if it had already ended."""
        if not await service.cancel(task_run_id):
            current = await service.aget(task_run_id)
            status = current.status if current is not None else "unknown"
            return _json({"detail": f"run {task_run_id} has already ended ({status}); nothing to cancel"}, 409)
        try:
            response = await service.wait(task_run_id, timeout=CANCEL_WAIT_S)
        except TimeoutError:  # still stopping: the client polls GET /api/runs/{id}
            response = await service.aget(task_run_id)
        assert response is not None
        return _json(response.to_json())

    @app.get("/api/runs/{task_run_id}/webhooks", tags=["runs"])
    async def run_webhooks(task_run_id: RunId) -> JSONResponse:
        """Every webhook delivery attempt of the run, oldest first."""
        if await service.aget(task_run_id) is None:
            raise NotFound("run", task_run_id)
        attempts = await asyncio.to_thread(service.store.webhook_attempts, task_run_id)
        return _json({"task_run_id": task_run_id, "attempts": attempts})

    @app.get("/api/runs/{task_run_id}/screenshots/{step}", tags=["runs"])
    async def run_screenshot(task_run_id: RunId, step: Step) -> FileResponse:
        """The JPEG screenshot taken at the start of a step."""
        response = await service.aget(task_run_id)
        if response is None:
            raise NotFound("run", task_run_id)
        root = Path(service.store.screenshots_dir).resolve()
        candidates = [root / str(task_run_id) / f"step-{step:03d}.jpg"]
        candidates += [Path(item.screenshot) for item in response.history if item.step == step and item.screenshot]
        for path in candidates:
            resolved = path.resolve()
            # Only files under the screenshots folder are ever served.
            if resolved.is_relative_to(root) and resolved.is_file():
                return FileResponse(resolved, media_type="image/jpeg")
        return _json({"detail": f"no screenshot for step {step} of run {task_run_id}"}, 404)  # type: ignore[return-value]

    # ---------------------------------------------------------- tasks
    @app.get("/api/tasks", tags=["tasks"])
    async def list_tasks(
        limit: int = Query(default=50, ge=1, le=MAX_PAGE), offset: int = Query(default=0, ge=0, le=MAX_ID)
    ) -> JSONResponse:
        """A page of tasks, newest first, each with its run count and last status."""
        rows, total = await asyncio.to_thread(service.store.list_tasks, limit=limit, offset=offset)
        tasks = [{"task_id": row.get("id"), **row} for row in rows]
        return _json({"tasks": tasks, "total": total, "limit": limit, "offset": offset})

    @app.get("/api/tasks/{task_id}", tags=["tasks"])
    async def get_task(task_id: TaskId) -> JSONResponse:
        """A task: its request, run count and last run."""
        task = await asyncio.to_thread(service.store.get_task, task_id)
        if task is None:
            raise NotFound("task", task_id)
        return _json({"task_id": task.get("id"), **task})

    @app.post("/api/tasks/{task_id}/runs", tags=["tasks"])
    async def rerun_task(task_id: TaskId, request: Request) -> JSONResponse:
        """Run a saved task again; the body (optional) overrides any request field."""
        body = await _read_json(request, required=False)
        overrides = _object(body if body is not None else {}, "request fields to override, e.g. {\"model\": \"gpt-4.1\"}")
        task = await asyncio.to_thread(service.store.get_task, task_id)
        if task is None:
            raise NotFound("task", task_id)
        saved = dict(task.get("request") or {})
        # wait_for_completion belonged to the first call, not to the task: it defaults anew here.
        saved.pop("wait_for_completion", None)
        if "provider" in overrides and "model" not in overrides:
            saved.pop("model", None)  # a new provider gets its own default model
        return await _start(_validate({**saved, **overrides}), task_id=task_id)

    # ---------------------------------------------------------- health
    @app.get("/api/health", tags=["health"])
    async def health() -> JSONResponse:
        """Browser, data folder, provider keys present (variable names only) and run counts."""
        return _json(health_report(service))

    # ---------------------------------------------------------- cached workflows
    from agent.workflows.routes import create_workflow_router

    app.include_router(create_workflow_router(service.store, service))
    return app


def health_report(service: RunService) -> dict[str, Any]:
    """What the app runs on; provider keys appear by environment variable name only, never by value."""
    from agent.engine.browser import find_chromium
    from agent.engine.llm import KEY_VARS, key_status

    providers = {}
    for provider in PROVIDERS:
        ready, _advice = key_status(provider)
        present = [name for name in KEY_VARS[provider] if os.environ.get(name)]
        providers[provider] = {"ready": ready, "keys_present": present, "key_vars": list(KEY_VARS[provider])}
    data_dir = Path(service.data_dir)
    browser = service.browser
    active = service.active_runs()
    return {
        "status": "ok",
        "browser": {
            "description": browser.description,
            "remote": bool(browser.cdp_url),
            "path": None if browser.cdp_url else (browser.executable_path or find_chromium()),
        },
        "data_dir": {"path": str(data_dir.resolve()), "exists": data_dir.is_dir(),
                     "writable": data_dir.is_dir() and os.access(data_dir, os.W_OK)},
        "providers": providers,
        "runs": {
            "active": len(active),
            "queued": sum(1 for r in active if service.is_queued(r.task_run_id or 0)),
            "max_concurrent": service.max_concurrent,
        },
    }
