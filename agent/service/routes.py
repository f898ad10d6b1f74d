"""The JSON routes of runs and tasks under /api: run, poll, cancel, list, re-run tasks, traces, exports,
screenshots, webhooks, health; one function per group of routes.

`agent.service.api.create_api` mounts them (with every other /api router). Every route asks the run
service (the one door to the run log) and answers in the contract's shape (`RunResponse`); errors
follow `agent.service.http`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import ConfigDict, Field, ValidationError

from agent.engine.browser import find_chromium
from agent.engine.llm import KEY_VARS, key_status
from agent.filters import RunFilter
from agent.log.queries import MAX_PAGE
from agent.models import (
    PROVIDERS,
    AskAnswer,
    AskRequest,
    NotAskable,
    RequestError,
    RunRequest,
    RunResponse,
    validation_errors,
)
from agent.service.door import NotFound
from agent.service.http import (
    BODY_ERRORS,
    MAX_ID,
    ClientError,
    RunId,
    TaskId,
    error_responses,
    json_body,
    json_response,
    read_object,
    unprocessable,
)
from agent.service.review_routes import reviews_router
from agent.service.runs import RunService, validate_off_loop
from agent.service.workflow_routes import workflow_router

__all__ = ["HtmlExport", "RunsPage", "health_report", "health_router", "run_records_router", "runs_router",
           "service_routers", "start_run", "step_router", "tasks_router"]

CANCEL_WAIT_S = 5.0
Step = Annotated[int, PathParam(ge=1, le=100_000, description="The step number (1 is the first step)")]
RUN_OK: dict[int | str, dict[str, Any]] = {200: {"model": RunResponse, "description": "The run (the contract's shape)"}}
STARTS_RUN = (*BODY_ERRORS, 429, 503)


class HtmlExport(Protocol):
    """Renders a run's export (as `GET /api/runs/{id}/export?format=json` gives it) as one HTML page."""

    def __call__(self, data: dict[str, Any], *, screenshots: dict[int, Path]) -> str: ...


class RunsPage(RunFilter):
    """The query of `GET /api/runs`: the history's filters (every field of `RunFilter`) and a page."""

    # FastAPI hands every query parameter to the model: one it does not know is left out, as before.
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=50, ge=1, le=MAX_PAGE, description="Runs per page")
    offset: int = Field(default=0, ge=0, le=MAX_ID, description="Runs to skip (newest first)")

    def filters(self) -> RunFilter:
        """The filters alone."""
        return RunFilter.model_validate(self.model_dump(exclude={"limit", "offset"}))


def service_routers(service: RunService, *, html_export: HtmlExport | None = None) -> list[APIRouter]:
    """The run service's own /api routers (runs, what runs left, reviews and grades, tasks, workflows, health)."""
    return [runs_router(service), run_records_router(service, html_export), reviews_router(service),
            step_router(service), tasks_router(service), workflow_router(service), health_router(service)]


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
    """Start, list, read and cancel runs."""
    router = APIRouter()

    @router.post("/api/runs", tags=["runs"], summary="Run Agent", responses={**RUN_OK, **error_responses(*STARTS_RUN)},
                 openapi_extra=json_body("RunRequest"))
    async def post_run(request: Request) -> JSONResponse:
        """Start a run (the contract's request); waits for the end unless wait_for_completion is false."""
        body = await read_object(request, 'the run request fields, e.g. {"prompt": "..."}')
        if body.get("fork") is not None:  # a fork: what the body leaves out is the parent's
            try:
                body = await service.fork_body(body)
            except RequestError as exc:
                raise unprocessable(exc.field, exc.message) from None
        return await start_run(service, await _validate(body))

    @router.get("/api/runs", tags=["runs"], responses=error_responses())
    async def list_runs(query: Annotated[RunsPage, Query()]) -> JSONResponse:
        """A page of runs, newest first, with the total matching the filters and their totals."""
        problem = query.days_problem()
        if problem is not None:
            raise unprocessable("since", problem)
        filters = query.filters()
        rows, total = await service.list_runs(filters, limit=query.limit, offset=query.offset)
        totals = await service.runs_summary(filters)
        runs = [{"task_run_id": row.get("id"), **row} for row in rows]
        return json_response({"runs": runs, "total": total, "limit": query.limit, "offset": query.offset,
                              "totals": totals})

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

    return router


def run_records_router(service: RunService, html_export: HtmlExport | None = None) -> APIRouter:
    """What a run left behind: a step's model calls, the whole run in one file, webhook attempts, screenshots.

    `html_export` renders the run as one HTML page (the UI's renderer, handed in by the app: the
    service sits below the UI); without it, `?format=html` answers 422.
    """
    router = APIRouter()

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
        if format == "html" and html_export is None:
            raise unprocessable("format", "html is not available in this app (no page renderer); use json")
        data = await service.export(task_run_id)
        name = f"run-{task_run_id}.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if html_export is None or format == "json":
            return json_response(data, headers=headers)
        page = await asyncio.to_thread(html_export, data, screenshots=await service.screenshot_files(task_run_id))
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


def step_router(service: RunService) -> APIRouter:
    """Ask the model again at a step (the step playground), and the questions asked there so far."""
    router = APIRouter()
    ask_path = "/api/runs/{task_run_id}/steps/{step}/ask"

    @router.post(ask_path, tags=["runs"], summary="Ask Again At A Step",
                 responses={200: {"model": AskAnswer, "description": "The original reply and each new one"},
                            **error_responses(404, 409, *BODY_ERRORS)},
                 openapi_extra=json_body("AskRequest", required=False))
    async def ask_again(task_run_id: RunId, step: Step, request: Request) -> JSONResponse:
        """Send the messages the model received at this step again, with the system prompt or model changed.

        Every field is optional (left out: the run's own); `samples` (1-10) replies come back beside the
        original, each with its actions (the element each index named on that step's page) and whether it
        would have done the same. The calls are logged with purpose "playground", outside the run's totals.
        409 when the step has no messages to send (LOG_PROMPTS=0, or a replayed step).
        """
        body = await read_object(request, 'what to change, e.g. {"extend_system_message": "...", "samples": 3}',
                                 required=False)
        try:
            ask = await asyncio.to_thread(AskRequest.model_validate, body)
        except ValidationError as exc:
            raise ClientError(422, validation_errors(exc, model=AskRequest)) from None
        try:
            answer = await service.ask(task_run_id, step, ask)
        except NotAskable as exc:
            return json_response({"detail": str(exc)}, 409)
        except RequestError as exc:
            raise unprocessable(exc.field, exc.message) from None
        return json_response(answer.model_dump(mode="json"))

    @router.get(ask_path, tags=["runs"], responses=error_responses(404))
    async def asked_at_step(task_run_id: RunId, step: Step) -> JSONResponse:
        """The calls asked again at this step so far, newest question first (each a trace, purpose "playground")."""
        calls = await service.asked(task_run_id, step)
        return json_response({"task_run_id": task_run_id, "step": step, "calls": calls})

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
