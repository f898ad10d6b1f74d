"""The JSON routes under /api: run, poll, cancel, list, re-run tasks, screenshots, webhooks, health.

`create_api(service, api_key=...)` returns a FastAPI app. Every route asks the run service (the one
door to the run log) and answers in the contract's shape (`RunResponse`); errors follow
`agent.service.http`. With an API key set, every /api and /gradio_api route needs
`Authorization: Bearer <key>` or `X-API-Key: <key>`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import ValidationError

from agent.log.errors import InvalidQuery
from agent.models import PROVIDERS, RequestError, RunRequest, RunResponse, validation_errors
from agent.service.door import NotFound
from agent.service.http import (
    BODY_ERRORS,
    MAX_ID,
    ApiKeyMiddleware,
    ClientError,
    RequestGuard,
    RunId,
    TaskId,
    error_responses,
    install_error_handlers,
    json_body,
    json_response,
    read_object,
    unprocessable,
)
from agent.service.runs import RunService, validate_off_loop

__all__ = ["create_api", "health_report", "install_openapi", "request_schemas"]

log = logging.getLogger(__name__)

MAX_PAGE = 1000
CANCEL_WAIT_S = 5.0
Step = Annotated[int, PathParam(ge=1, le=100_000, description="The step number (1 is the first step)")]
RUN_OK: dict[int | str, dict[str, Any]] = {200: {"model": RunResponse, "description": "The run (the contract's shape)"}}
STARTS_RUN = (*BODY_ERRORS, 429, 503)


async def _validate(data: dict[str, Any]) -> RunRequest:
    """A RunRequest, or a 422 listing every field that is wrong and how to fix it (checked off the event loop)."""
    try:
        return await validate_off_loop(data)
    except ValidationError as exc:
        raise ClientError(422, validation_errors(exc)) from None
    except RequestError as exc:
        raise unprocessable(exc.field, exc.message) from None
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. a schema too deep to check
        raise unprocessable("request", f"could not be read: {str(exc)[:300]}") from None


# ------------------------------------------------------------------ the app
def create_api(
    service: RunService,
    *,
    api_key: str | None = None,
    allowed_hosts: frozenset[str] | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
    title: str = "LLM web-agent workbench",
) -> FastAPI:
    """The FastAPI app with the /api routes, the error handlers, the request guard and (if `api_key`) the
    key check with the browsers' login; anything mounted on it later (Gradio) is behind them too."""
    from agent.ui.login import install_ui_login
    from agent.workflows.routes import create_workflow_router

    app = FastAPI(title=title, lifespan=lifespan, docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.service = service
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
        install_ui_login(app, api_key)  # browsers log in once with the key; a cookie then stands for it
    # Added last, so it runs first: a foreign host or origin never reaches the key check or a route.
    app.add_middleware(RequestGuard, allowed_hosts=allowed_hosts)
    install_error_handlers(app)
    install_openapi(app)
    for router in (runs_router(service), tasks_router(service), health_router(service),
                   create_workflow_router(service)):
        app.include_router(router)
    return app


async def start_run(service: RunService, request: RunRequest, *, task_id: int | None = None) -> JSONResponse:
    """Submit a run; answer at its end, or at once when it runs in the background."""
    try:
        task_id, run_id = await service.submit(request, task_id=task_id)
    except RequestError as exc:
        raise unprocessable(exc.field, exc.message) from None
    location = {"Location": f"/api/runs/{run_id}"}
    if request.wait_for_completion:
        return json_response((await service.wait(run_id)).to_json(), headers=location)
    current = await service.aget(run_id)
    assert current is not None
    return json_response(current.to_json(), headers=location)


def runs_router(service: RunService) -> APIRouter:
    """Start, list, read and cancel runs; their screenshots and webhook attempts."""
    router = APIRouter()

    @router.post("/api/runs", tags=["runs"], summary="Run Agent", responses={**RUN_OK, **error_responses(*STARTS_RUN)},
                 openapi_extra=json_body("RunRequest"))
    async def post_run(request: Request) -> JSONResponse:
        """Start a run (the contract's request); waits for the end unless wait_for_completion is false."""
        body = await read_object(request, 'the run request fields, e.g. {"prompt": "..."}')
        return await start_run(service, await _validate(body))

    @router.get("/api/runs", tags=["runs"], responses=error_responses())
    async def list_runs(
        status: Literal["success", "failure", "in_progress"] | None = None,
        provider: Literal[PROVIDERS] | None = None,  # type: ignore[valid-type]
        model: str | None = Query(default=None, max_length=200, description="The exact model name"),
        task_id: int | None = Query(default=None, ge=1, le=MAX_ID),
        q: str | None = Query(default=None, max_length=200, description="Text in the prompt, result or error"),
        model_contains: str | None = Query(default=None, max_length=200, description="Part of the model name"),
        stop_reason: str | None = Query(default=None, max_length=60, description="Why the run stopped"),
        since: Annotated[date | None, Query(description="First UTC day the run started on (YYYY-MM-DD)")] = None,
        until: Annotated[date | None, Query(description="Last UTC day the run started on (YYYY-MM-DD)")] = None,
        limit: int = Query(default=50, ge=1, le=MAX_PAGE),
        offset: int = Query(default=0, ge=0, le=MAX_ID),
    ) -> JSONResponse:
        """A page of runs, newest first, with the total matching the filters and their totals."""
        if since is not None and until is not None and since > until:
            raise unprocessable("since", f"is after until ({since} > {until}); swap them")
        filters = {"status": status, "provider": provider, "model": model, "task_id": task_id, "q": q or None,
                   "model_contains": model_contains or None, "stop_reason": stop_reason or None, "since": since,
                   "until": until}
        try:
            rows, total = await service.list_runs(**filters, limit=limit, offset=offset)
            totals = await service.runs_summary(**filters)
        except InvalidQuery as exc:
            raise unprocessable("stop_reason", str(exc)) from None
        runs = [{"task_run_id": row.get("id"), **row} for row in rows]
        return json_response({"runs": runs, "total": total, "limit": limit, "offset": offset, "totals": totals})

    @router.get("/api/runs/{task_run_id}", tags=["runs"], responses={**RUN_OK, **error_responses(404)})
    async def get_run(task_run_id: RunId) -> JSONResponse:
        """The run in the contract's shape, with the history so far."""
        response = await service.aget(task_run_id)
        if response is None:
            raise NotFound("run", task_run_id)
        return json_response(response.to_json())

    @router.post("/api/runs/{task_run_id}/cancel", tags=["runs"], responses={**RUN_OK, **error_responses(404, 409)})
    async def cancel_run(task_run_id: RunId) -> JSONResponse:
        """Stop a running or queued run (it ends as failure, "cancelled"); 409 if it had already ended."""
        if not await service.cancel(task_run_id):
            current = await service.aget(task_run_id)
            status = current.status if current is not None else "unknown"
            return json_response({"detail": f"run {task_run_id} has already ended ({status}); nothing to cancel"}, 409)
        response: RunResponse | None
        try:
            response = await service.wait(task_run_id, timeout=CANCEL_WAIT_S)
        except TimeoutError:  # still stopping: the client polls GET /api/runs/{id}
            response = await service.aget(task_run_id)
        assert response is not None
        return json_response(response.to_json())

    @router.get("/api/runs/{task_run_id}/steps/{step}/trace", tags=["runs"], responses=error_responses(404))
    async def step_trace(task_run_id: RunId, step: Step) -> JSONResponse:
        """What the model saw and said in a step: {system_prompt, messages, reply, tool_calls, observation, usage}.

        One object when the step made one model call, a list when it made several (an extract, a
        retry), an empty list when it made none (a replayed step).
        """
        traces = await service.traces(task_run_id, step=step)
        return json_response(traces[0] if len(traces) == 1 else traces)

    @router.get("/api/runs/{task_run_id}/export", tags=["runs"], response_model=None, responses={
        200: {"content": {"application/json": {}, "text/html": {}}, "description": "The run in one file"},
        **error_responses(404)})
    async def export_run(task_run_id: RunId,
                         format: Literal["json", "html"] = Query(default="json")) -> JSONResponse | HTMLResponse:
        """The whole run in one file: json (response, request, traces, webhook attempts) or html (opens offline)."""
        data = await service.export(task_run_id)
        name = f"run-{task_run_id}.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if format == "json":
            return json_response(data, headers=headers)
        from agent.ui.export import export_html  # pure rendering, shared with the viewer

        page = await asyncio.to_thread(export_html, data, screenshots=await service.screenshot_files(task_run_id))
        return HTMLResponse(page, headers=headers)

    @router.get("/api/runs/{task_run_id}/webhooks", tags=["runs"], responses=error_responses(404))
    async def run_webhooks(task_run_id: RunId) -> JSONResponse:
        """Every webhook delivery attempt of the run, oldest first."""
        attempts = await service.webhook_attempts(task_run_id)
        return json_response({"task_run_id": task_run_id, "attempts": attempts})

    @router.get("/api/runs/{task_run_id}/screenshots/{step}", tags=["runs"], response_class=FileResponse,
                responses={200: {"content": {"image/jpeg": {}}, "description": "The JPEG"}, **error_responses(404)})
    async def run_screenshot(task_run_id: RunId, step: Step) -> FileResponse:
        """The JPEG screenshot taken at the start of a step."""
        path = await service.screenshot(task_run_id, step)
        if path is not None:
            return FileResponse(path, media_type="image/jpeg")
        return json_response({"detail": f"no screenshot for step {step} of run {task_run_id}"}, 404)  # type: ignore[return-value]

    return router


def tasks_router(service: RunService) -> APIRouter:
    """List and read tasks; run a saved task again."""
    router = APIRouter()

    @router.get("/api/tasks", tags=["tasks"], responses=error_responses())
    async def list_tasks(
        limit: int = Query(default=50, ge=1, le=MAX_PAGE), offset: int = Query(default=0, ge=0, le=MAX_ID)
    ) -> JSONResponse:
        """A page of tasks, newest first, each with its run count and last status."""
        rows, total = await service.list_tasks(limit=limit, offset=offset)
        tasks = [{"task_id": row.get("id"), **row} for row in rows]
        return json_response({"tasks": tasks, "total": total, "limit": limit, "offset": offset})

    @router.get("/api/tasks/{task_id}", tags=["tasks"], responses=error_responses(404))
    async def get_task(task_id: TaskId) -> JSONResponse:
        """A task: its request, run count and last run."""
        task = await service.get_task(task_id)
        return json_response({"task_id": task.get("id"), **task})

    @router.post("/api/tasks/{task_id}/runs", tags=["tasks"], responses={**RUN_OK, **error_responses(404, *STARTS_RUN)},
                 openapi_extra=json_body("RunOverrides", required=False))
    async def rerun_task(task_id: TaskId, request: Request) -> JSONResponse:
        """Run a saved task again; the body (optional) overrides any request field."""
        overrides = await read_object(request, 'request fields to override, e.g. {"model": "gpt-4.1"}', required=False)
        task = await service.get_task(task_id)
        saved = dict(task.get("request") or {})
        # wait_for_completion belonged to the first call, not to the task: it defaults anew here.
        saved.pop("wait_for_completion", None)
        saved.pop("webhook_url", None)  # stored redacted: a re-run has a webhook only if the body gives one
        if "provider" in overrides and "model" not in overrides:
            saved.pop("model", None)  # a new provider gets its own default model
        return await start_run(service, await _validate({**saved, **overrides}), task_id=task_id)

    return router


def request_schemas() -> dict[str, dict[str, Any]]:
    """The JSON bodies the routes read themselves (through `read_json`), as OpenAPI components."""
    run = RunRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    props = run["properties"]
    # Fields the contract also takes as a JSON string (or, for allowed_domains, a comma-separated one).
    for name in ("json_schema", "cached_workflow", "workflow_params", "allowed_domains", "sensitive_data"):
        props[name]["anyOf"].insert(-1, {"type": "string"})
    overrides = {**run, "title": "RunOverrides", "required": [],
                 "description": "Fields of the saved request to change for this run (all optional)"}
    save = {"title": "SaveWorkflow", "type": "object", "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200}}}
    edit = {"title": "EditWorkflow", "type": "object", "additionalProperties": False, "minProperties": 1,
            "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                           "parameters": {"type": "object"}, "document": {"type": "object"}}}
    return {"RunRequest": run, "RunOverrides": overrides, "SaveWorkflow": save, "EditWorkflow": edit}


def install_openapi(app: FastAPI) -> None:
    """/api/openapi.json with the real request bodies and error shapes (a generated client works)."""
    from fastapi.openapi.utils import get_openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                              description="The workbench's JSON API: start, follow and read runs; workflows.")
            doc.setdefault("components", {}).setdefault("schemas", {}).update(request_schemas())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def health_router(service: RunService) -> APIRouter:
    """What the app runs on."""
    router = APIRouter()

    @router.get("/api/health", tags=["health"], responses=error_responses())
    async def health() -> JSONResponse:
        """Warm-up ("warming" until the UI, model library and browser are up, then "ok"), browser, data folder,
        provider keys present (variable names only) and run counts."""
        return json_response(health_report(service))

    return router


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
    # No absolute paths of the server here (the start-up lines print them to the operator).
    return {
        "status": "ok" if service.warm_up.done else "warming",  # the UI, the model library, the browser
        "warm_up": service.warm_up.states(),
        "browser": {
            "description": "remote browser over CDP" if browser.cdp_url else "local Chromium",
            "remote": bool(browser.cdp_url),
            "found": bool(browser.cdp_url or browser.executable_path or find_chromium()),
        },
        "data_dir": {"exists": data_dir.is_dir(), "writable": data_dir.is_dir() and os.access(data_dir, os.W_OK)},
        "providers": providers,
        "runs": {
            "active": len(active),
            "queued": sum(1 for r in active if service.is_queued(r.task_run_id or 0)),
            "max_concurrent": service.max_concurrent,
        },
    }
