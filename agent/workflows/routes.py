"""Routes for cached workflows: save a run as a workflow, list, fetch and edit workflows.

`create_workflow_router(store, service)` returns a FastAPI `APIRouter` to include in the app:
- `POST /api/runs/{task_run_id}/workflow` (body optional `{"name": "..."}`): record a successful run;
  201 with `{id, version, document}`; the run's task is linked to the workflow, so re-running the
  task with `use_cached_workflow` replays it;
- `GET /api/workflows`: the latest version of each workflow (summaries);
- `GET /api/workflows/{id}` (`?version=N`): one version with its document;
- `PUT /api/workflows/{id}`: `{"name", "description", "parameters": {"<current name>": {"name",
  "description", "type", "example"}}}` or a whole `{"document": {...}}`; saved as a new version.
Errors follow the API's shape: 404 `{"detail": "workflow 7 not found"}`, 422
`{"detail": [{"field", "message"}]}` naming the field and the fix.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from agent.workflows.document import WorkflowError, edit_workflow, load_workflow
from agent.workflows.document import save_run_as_workflow as save_run

__all__ = ["create_workflow_router"]

MAX_ID = 2**63 - 1
MAX_BODY_BYTES = 1_000_000


class _Problem(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status, self.detail = status, detail


def _unprocessable(field: str, message: str) -> _Problem:
    return _Problem(422, [{"field": field, "message": message}])


def _answer(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(jsonable_encoder(content), status_code=status, headers=headers)


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object body ({} when empty); _Problem naming the fix otherwise."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise _Problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _unprocessable("body", f"is not valid JSON ({getattr(exc, 'msg', exc)}); send a JSON object") from None
    if not isinstance(value, dict):
        raise _unprocessable("body", f"must be a JSON object, got {type(value).__name__}")
    return value


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    doc = row.get("document") or {}
    return {
        "id": row["id"], "version": row["version"], "versions": row.get("versions"), "name": row.get("name"),
        "prompt": row.get("prompt"), "created_at": row.get("created_at"), "source_run_id": row.get("source_run_id"),
        "healed_from_version": row.get("healed_from_version"),
        "parameters": doc.get("parameters", []), "steps": len(doc.get("steps", [])),
        "result_format": doc.get("result_format"),
    }


def create_workflow_router(store: Any, service: Any = None) -> APIRouter:
    """The workflow routes on `store` (runs are read through `service` when given, live runs included)."""
    router = APIRouter(tags=["workflows"])

    async def guarded(fn: Any) -> JSONResponse:
        try:
            return await fn()
        except _Problem as exc:
            return _answer({"detail": exc.detail}, exc.status)
        except WorkflowError as exc:
            return _answer({"detail": [{"field": exc.field, "message": exc.message}]}, 422)

    async def get_run(run_id: int) -> Any:
        if service is not None and hasattr(service, "aget"):
            return await service.aget(run_id)
        return await asyncio.to_thread(store.get_run, run_id)

    async def get_workflow(workflow_id: int, version: int | None = None) -> dict[str, Any]:
        row = await asyncio.to_thread(store.get_workflow, workflow_id, version)
        if row is None:
            if version is not None and await asyncio.to_thread(store.get_workflow, workflow_id) is not None:
                raise _Problem(404, f"workflow {workflow_id} has no version {version}")
            raise _Problem(404, f"workflow {workflow_id} not found")
        return row

    @router.post("/api/runs/{task_run_id}/workflow", status_code=201, summary="Save a run as a workflow")
    async def save_run_as_workflow(
        request: Request,
        task_run_id: int = PathParam(ge=1, le=MAX_ID, description="A successful run's task_run_id"),
    ) -> JSONResponse:
        """Record a successful run as a cached workflow (parameters found without a model)."""

        async def go() -> JSONResponse:
            body = await _body(request)
            unknown = sorted(set(body) - {"name"})
            if unknown:
                raise _unprocessable(unknown[0], "unknown field; the body may only hold 'name'")
            name = body.get("name")
            if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
                raise _unprocessable("name", "must be a non-empty string of at most 200 characters")
            response = await get_run(task_run_id)
            if response is None:
                raise _Problem(404, f"run {task_run_id} not found")
            if response.status == "in_progress":
                raise _unprocessable("task_run_id", f"run {task_run_id} is still running; save it once it has succeeded")
            run_request = await asyncio.to_thread(store.get_run_request, task_run_id)
            if run_request is None:
                raise _Problem(404, f"run {task_run_id} not found")
            wid, version, document = await asyncio.to_thread(
                save_run, store, task_run_id, run_request, response, name=name)
            return _answer({"id": wid, "version": version, "document": document}, 201,
                           headers={"Location": f"/api/workflows/{wid}"})

        return await guarded(go)

    @router.get("/api/workflows", summary="List workflows")
    async def list_workflows() -> JSONResponse:
        """The latest version of each workflow, newest first."""
        rows = await asyncio.to_thread(store.list_workflows)
        return _answer({"workflows": [_summary(r) for r in rows], "total": len(rows)})

    @router.get("/api/workflows/{workflow_id}", summary="Get a workflow")
    async def get_one(
        workflow_id: int = PathParam(ge=1, le=MAX_ID),
        version: int | None = Query(default=None, ge=1, le=1_000_000, description="A version; the latest if omitted"),
    ) -> JSONResponse:
        """One version of a workflow with its document."""

        async def go() -> JSONResponse:
            return _answer(await get_workflow(workflow_id, version))

        return await guarded(go)

    @router.put("/api/workflows/{workflow_id}", summary="Edit a workflow")
    async def edit(request: Request, workflow_id: int = PathParam(ge=1, le=MAX_ID)) -> JSONResponse:
        """Rename/describe the workflow or its parameters (or replace the document); saved as a new version."""

        async def go() -> JSONResponse:
            body = await _body(request)
            unknown = sorted(set(body) - {"name", "description", "parameters", "document"})
            if unknown:
                raise _unprocessable(unknown[0], "unknown field; use name, description, parameters or document")
            if not body:
                raise _unprocessable("body", 'is empty; send e.g. {"name": "..."} or {"parameters": {"q": {"name": "query"}}}')
            current = await get_workflow(workflow_id)
            document = current["document"]
            if "document" in body:
                if not isinstance(body["document"], dict):
                    raise _unprocessable("document", "must be a workflow object (as GET /api/workflows/{id} returns)")
                doc, _, _ = load_workflow(body["document"], strict=True, field="document")
                document = doc.model_dump(mode="json")
            for key, kind in (("name", str), ("description", str), ("parameters", dict)):
                if key in body and not isinstance(body[key], kind):
                    raise _unprocessable(key, f"must be a {'string' if kind is str else 'JSON object'}")
            document = edit_workflow(document, name=body.get("name"), description=body.get("description"),
                                     parameters=body.get("parameters"))
            wid, version = await asyncio.to_thread(store.save_workflow, document, workflow_id=workflow_id,
                                                   source_run_id=current.get("source_run_id"))
            return _answer({"id": wid, "version": version, "document": document})

        return await guarded(go)

    return router
