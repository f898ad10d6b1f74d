"""Routes for cached workflows: save a run as a workflow, list, fetch and edit workflows.

`workflow_router(service)` returns a FastAPI `APIRouter`; every route asks the run service:
- `POST /api/runs/{task_run_id}/workflow` (body optional `{"name": "..."}`): record a successful run;
  201 with `{id, version, created, document}`; the run's task is linked to the workflow, so re-running
  the task with `use_cached_workflow` replays it; saving the same run again gives 200 and the
  workflow saved the first time (`created` false);
- `GET /api/workflows`: the latest version of each workflow (summaries);
- `GET /api/workflows/{id}` (`?version=N`): one version with its document;
- `PUT /api/workflows/{id}`: `{"name", "description", "parameters": {"<current name>": {"name",
  "description", "type", "example"}}}` or a whole `{"document": {...}}`; saved as a new version;
- `DELETE /api/workflows/{id}`: every version; tasks saved to it no longer replay it.
Errors follow `agent.service.http`: 404 `{"detail": "workflow 7 not found"}`, 422
`{"detail": [{"field", "message"}]}` naming the field and the fix.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from agent.service.http import (
    BODY_ERRORS,
    ClientError,
    RunId,
    WorkflowId,
    error_responses,
    json_body,
    json_response,
    read_object,
    unprocessable,
)
from agent.service.runs import RunService
from agent.workflows.document import WorkflowError, edit_workflow, load_workflow

__all__ = ["workflow_router"]


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    doc = row.get("document") or {}
    return {
        "id": row["id"], "version": row["version"], "versions": row.get("versions"), "name": row.get("name"),
        "prompt": row.get("prompt"), "created_at": row.get("created_at"), "source_run_id": row.get("source_run_id"),
        "healed_from_version": row.get("healed_from_version"),
        "parameters": doc.get("parameters", []), "steps": len(doc.get("steps", [])),
        "result_format": doc.get("result_format"),
    }


def _invalid(exc: WorkflowError) -> ClientError:
    return unprocessable(exc.field, exc.message)


def workflow_router(service: RunService) -> APIRouter:
    """The workflow routes, all through `service`."""
    router = APIRouter(tags=["workflows"])

    @router.post("/api/runs/{task_run_id}/workflow", status_code=201, summary="Save a run as a workflow",
                 responses={200: {"description": "The run was saved before: the workflow saved then (created false)"},
                            **error_responses(404, *BODY_ERRORS)},
                 openapi_extra=json_body("SaveWorkflow", required=False))
    async def save_run_as_workflow(request: Request, task_run_id: RunId) -> JSONResponse:
        """Record a successful run as a cached workflow (parameters found without a model)."""
        body = await read_object(request, 'at most a name, e.g. {"name": "Order a cable"}', required=False)
        unknown = sorted(set(body) - {"name"})
        if unknown:
            raise unprocessable(unknown[0], "unknown field; the body may only hold 'name'")
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
            raise unprocessable("name", "must be a non-empty string of at most 200 characters")
        try:
            wid, version, document, created = await service.save_run_as_workflow(task_run_id, name=name)
        except WorkflowError as exc:
            raise _invalid(exc) from None
        # Saving the same run again answers with the workflow saved the first time (200, created false).
        return json_response({"id": wid, "version": version, "created": created, "document": document},
                             201 if created else 200, headers={"Location": f"/api/workflows/{wid}"})

    @router.get("/api/workflows", summary="List workflows", responses=error_responses())
    async def list_workflows() -> JSONResponse:
        """The latest version of each workflow, newest first."""
        rows = await service.list_workflows()
        return json_response({"workflows": [_summary(r) for r in rows], "total": len(rows)})

    @router.get("/api/workflows/{workflow_id}", summary="Get a workflow", responses=error_responses(404))
    async def get_one(
        workflow_id: WorkflowId,
        version: int | None = Query(default=None, ge=1, le=1_000_000, description="A version; the latest if omitted"),
    ) -> JSONResponse:
        """One version of a workflow with its document."""
        return json_response(await service.get_workflow(workflow_id, version))

    @router.put("/api/workflows/{workflow_id}", summary="Edit a workflow", responses=error_responses(404, *BODY_ERRORS),
                openapi_extra=json_body("EditWorkflow"))
    async def edit(request: Request, workflow_id: WorkflowId) -> JSONResponse:
        """Rename/describe the workflow or its parameters (or replace the document); saved as a new version."""
        body = await read_object(request, "name, description, parameters or document")
        unknown = sorted(set(body) - {"name", "description", "parameters", "document"})
        if unknown:
            raise unprocessable(unknown[0], "unknown field; use name, description, parameters or document")
        if not body:
            raise unprocessable("body",
                                'is empty; send e.g. {"name": "..."} or {"parameters": {"q": {"name": "query"}}}')
        current = await service.get_workflow(workflow_id)
        document = current["document"]
        try:
            if "document" in body:
                if not isinstance(body["document"], dict):
                    raise unprocessable("document", "must be a workflow object (as GET /api/workflows/{id} returns)")
                doc, _, _ = load_workflow(body["document"], strict=True, field="document")
                document = doc.model_dump(mode="json")
            for key, kind in (("name", str), ("description", str), ("parameters", dict)):
                if key in body and not isinstance(body[key], kind):
                    raise unprocessable(key, f"must be a {'string' if kind is str else 'JSON object'}")
            document = edit_workflow(document, name=body.get("name"), description=body.get("description"),
                                     parameters=body.get("parameters"))
        except WorkflowError as exc:
            raise _invalid(exc) from None
        wid, version = await service.save_workflow(document, workflow_id=workflow_id,
                                                   source_run_id=current.get("source_run_id"))
        return json_response({"id": wid, "version": version, "document": document})

    @router.delete("/api/workflows/{workflow_id}", summary="Delete a workflow", responses=error_responses(404))
    async def delete(workflow_id: WorkflowId) -> JSONResponse:
        """Delete a workflow, every version of it; tasks saved to it no longer replay it."""
        await service.delete_workflow(workflow_id)
        return json_response({"deleted": workflow_id})

    return router
