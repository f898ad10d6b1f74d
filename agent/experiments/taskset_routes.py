"""Routes for task sets kept in the workbench, all through `agent.experiments.tasksets.TaskSets`:

- `GET /api/tasksets`: every set, bundled and stored (name, version, task_count, source, updated_at, ...);
- `POST /api/tasksets` `{"name", "tasks": [...] | "tasks_jsonl": "..." | "from_runs": [ID, ...], "note"}`
  → 201, the set at version 1;
- `GET /api/tasksets/{name}` (`?version=N`, `?format=jsonl` for the tasks as a JSONL file);
- `PUT /api/tasksets/{name}` `{"tasks" | "tasks_jsonl", "note"}`: its tasks replaced (a new version);
- `POST /api/tasksets/{name}/tasks`: a task (its fields), `{"tasks": [...]}`, `{"tasks_jsonl": "..."}`, or a
  task made of a run, `{"from_run": ID, ...fields that override the suggestion, e.g. "check"}` (or
  `{"from_runs": [ID, ...]}`), added as a new version (201); `?dry_run=true` answers with the task(s) it
  would add, and the notes on each suggested check, saving nothing (the set need not exist yet);
- `PUT`, `PATCH` and `DELETE /api/tasksets/{name}/tasks/{task_id}`: a task replaced, changed field by field
  (null removes a field) or removed, each a new version.

Every answer that shows a set is its version (with `tasks` and `versions`); a bad task is a 422 naming
the field (`tasks[3].check`, `tasks_jsonl line 4.prompt`), an unknown set, version, task or run a 404, a
name already taken a 409.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from agent.experiments.spec import MAX_VERSION
from agent.experiments.tasks import (
    Task,
    TaskError,
    as_json,
    check_set_name,
    parse_jsonl,
    parse_tasks,
    to_jsonl,
    validate_task,
)
from agent.experiments.tasksets import TaskSetConflict, TaskSets, UnknownTask, UnknownTaskSet
from agent.service.http import (
    BODY_ERRORS,
    MAX_ID,
    ClientError,
    error_responses,
    json_response,
    read_object,
    unprocessable,
)

__all__ = ["create_taskset_router"]

_TASK = {"type": "object", "title": "Task", "required": ["id", "prompt"], "properties": {
    "id": {"type": "string"}, "title": {"type": "string"}, "prompt": {"type": "string", "minLength": 3},
    "start_url": {"type": "string"}, "response_format": {"type": "string", "enum": ["text", "json"]},
    "json_schema": {"type": "object"}, "max_steps": {"type": "integer", "minimum": 1, "maximum": 200},
    "check": {"type": "object"}, "setup": {"type": "string"}}}
_TASKS = {"tasks": {"type": "array", "items": _TASK, "minItems": 1}, "tasks_jsonl": {"type": "string"},
          "note": {"type": "string"}}
_CREATE = {"type": "object", "title": "CreateTaskSet", "required": ["name"], "properties": {
    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$"}, **_TASKS,
    "from_runs": {"type": "array", "items": {"type": "integer", "minimum": 1}}}}
_REPLACE = {"type": "object", "title": "ReplaceTaskSet", "properties": _TASKS}
_ADD = {"title": "AddTasks", "anyOf": [
    _TASK, {"type": "object", "properties": _TASKS},
    {"type": "object", "required": ["from_run"], "properties": {"from_run": {"type": "integer", "minimum": 1}}},
    {"type": "object", "required": ["from_runs"], "properties": {
        "from_runs": {"type": "array", "items": {"type": "integer", "minimum": 1}}}}]}
_PATCH = {"type": "object", "title": "TaskFields", "minProperties": 1, "properties": _TASK["properties"]}
NOTE_CHARS = 500


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _given_tasks(body: dict[str, Any]) -> list[Task] | None:
    """The tasks a body gives inline or as JSONL (None when it gives neither); TaskError naming the culprit."""
    if "tasks" in body and "tasks_jsonl" in body:
        raise TaskError("body", "give tasks or tasks_jsonl, not both")
    if "tasks_jsonl" in body:
        if not isinstance(body["tasks_jsonl"], str):
            raise TaskError("tasks_jsonl", "must be JSONL text: one task object per line")
        return parse_jsonl(body["tasks_jsonl"], field="tasks_jsonl")
    if "tasks" in body:
        return parse_tasks(body["tasks"])
    return None


def _note(body: dict[str, Any]) -> str | None:
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > NOTE_CHARS):
        raise TaskError("note", f"must be text of at most {NOTE_CHARS} characters")
    return note or None


def _known(body: dict[str, Any], allowed: set[str], example: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise TaskError(unknown[0], f"unknown field; send {example}")


def _run_ids(value: Any, field: str) -> list[int]:
    items = value if isinstance(value, list) else None
    if not items or not all(isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= MAX_ID for i in items):
        raise TaskError(field, "must be a list of run ids (whole numbers from 1), e.g. [12, 15]")
    return list(dict.fromkeys(items))


def failed(exc: Exception) -> ClientError:
    """The HTTP answer for an error of TaskSets: a 422 naming the field, a 404 (unknown set, version or task), a 409."""
    if isinstance(exc, TaskError):
        return unprocessable(exc.field, exc.message)
    return ClientError(404 if isinstance(exc, (UnknownTaskSet, UnknownTask)) else 409, str(exc))


def create_taskset_router(sets: TaskSets) -> APIRouter:
    """The task-set routes: the sets, then their tasks."""
    router = APIRouter(tags=["task sets"])
    _set_routes(router, sets)
    _task_routes(router, sets)
    return router


def _set_routes(router: APIRouter, sets: TaskSets) -> None:
    """List, create, read and replace sets."""

    @router.get("/api/tasksets", summary="List the task sets", responses=error_responses())
    async def list_sets() -> JSONResponse:
        """Every task set, bundled and stored, with its latest version: name, version, task_count, source, ..."""
        return json_response({"tasksets": await sets.list_sets()})

    @router.post("/api/tasksets", status_code=201, summary="Create a task set",
                 responses=error_responses(404, 409, *BODY_ERRORS), openapi_extra=_body(_CREATE))
    async def create(request: Request) -> JSONResponse:
        """A new task set from tasks (inline or JSONL) or from runs; version 1."""
        body = await read_object(request, 'a name and tasks, e.g. {"name": "regressions", "tasks": [...]}')
        try:
            _known(body, {"name", "tasks", "tasks_jsonl", "from_runs", "note"}, "name, tasks or tasks_jsonl or "
                                                                                "from_runs, and note")
            name = check_set_name(body.get("name"))
            tasks, notes = _given_tasks(body), None
            if "from_runs" in body:
                if tasks is not None:
                    raise TaskError("from_runs", "give tasks, tasks_jsonl or from_runs, one of them")
                tasks, notes = await sets.from_runs(_run_ids(body["from_runs"], "from_runs"), taken=set())
            if tasks is None:
                raise TaskError("tasks", 'is required: give tasks (a list), tasks_jsonl (JSONL text) or from_runs '
                                         '(run ids), e.g. {"name": "regressions", "from_runs": [12]}')
            note = _note(body) or (f"from runs {', '.join(map(str, body['from_runs']))}" if notes else None)
            found = await sets.create(name, tasks, note=note)
        except (TaskError, UnknownTaskSet, UnknownTask, TaskSetConflict) as exc:
            raise failed(exc) from None
        extra: dict[str, Any] = {"notes": notes} if notes is not None else {}
        return json_response({**found, **extra}, 201, headers={"Location": f"/api/tasksets/{name}"})

    @router.get("/api/tasksets/{name}", summary="Get a task set", responses={**error_responses(404), 200: {
        "description": "The version with its tasks (JSON), or with `format=jsonl` its tasks as a JSONL file",
        "content": {"application/json": {}, "application/x-ndjson": {"schema": {"type": "string"}}}}})
    async def get_one(name: str, version: int | None = Query(default=None, ge=1, le=MAX_VERSION,
                                                             description="the version (default: the latest)"),
                      format: str = Query(default="json", pattern="^(json|jsonl)$",
                                          description="json, or jsonl: the tasks as a JSONL file")) -> Response:
        """One version of a task set with its tasks and every version's summary; or its tasks as JSONL."""
        try:
            found = await sets.get(check_set_name(name), version)
            if format == "jsonl":
                text = to_jsonl(parse_tasks(found["tasks"], field=f"task set {name}"))
        except (TaskError, UnknownTaskSet) as exc:
            raise failed(exc) from None
        if format == "jsonl":
            filename = f"{name}-v{found['version']}.jsonl"
            return Response(text, media_type="application/x-ndjson; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{filename}"'})
        return json_response(found)

    @router.put("/api/tasksets/{name}", summary="Replace a task set's tasks",
                responses=error_responses(404, *BODY_ERRORS), openapi_extra=_body(_REPLACE))
    async def replace(name: str, request: Request) -> JSONResponse:
        """Its next version holds exactly the tasks given (inline or JSONL)."""
        body = await read_object(request, 'the tasks, e.g. {"tasks": [...]} or {"tasks_jsonl": "..."}')
        try:
            _known(body, {"tasks", "tasks_jsonl", "note"}, "tasks or tasks_jsonl, and note")
            tasks = _given_tasks(body)
            if tasks is None:
                raise TaskError("tasks", "is required: give tasks (a list) or tasks_jsonl (JSONL text)")
            found = await sets.replace(check_set_name(name), tasks, note=_note(body))
        except (TaskError, UnknownTaskSet, TaskSetConflict) as exc:
            raise failed(exc) from None
        return json_response(found)


def _task_routes(router: APIRouter, sets: TaskSets) -> None:
    """Add, replace, change and remove a set's tasks (each a new version)."""

    @router.post("/api/tasksets/{name}/tasks", status_code=201, summary="Add tasks to a task set",
                 responses={**error_responses(404, 409, *BODY_ERRORS), 200: {
                     "description": "`dry_run=true`: the task(s) as they would be added, nothing saved"}},
                 openapi_extra=_body(_ADD))
    async def add(name: str, request: Request,
                  dry_run: bool = Query(default=False, description="answer with the task(s), save nothing")
                  ) -> JSONResponse:
        """Tasks (given, or made of runs with a suggested check) added as the set's next version."""
        body = await read_object(request, 'a task, {"tasks": [...]}, or {"from_run": 12}')
        try:
            check_set_name(name)
            tasks, notes = await _tasks_to_add(sets, name, body)
            if dry_run:
                return json_response({"name": name, "tasks": [as_json(t) for t in tasks], "notes": notes,
                                      "saved": False})
            found = await sets.add(name, tasks, note=_note(body) if "from_run" not in body else None)
        except (TaskError, UnknownTaskSet, UnknownTask, TaskSetConflict) as exc:
            raise failed(exc) from None
        return json_response({**found, "added": [t.id for t in tasks], "notes": notes}, 201,
                             headers={"Location": f"/api/tasksets/{name}?version={found['version']}"})

    @router.put("/api/tasksets/{name}/tasks/{task_id}", summary="Replace a task of a task set",
                responses=error_responses(404, *BODY_ERRORS), openapi_extra=_body(_TASK))
    async def put_task(name: str, task_id: str, request: Request) -> JSONResponse:
        """The task replaced by the one given (its id defaults to `task_id`; another free id renames it)."""
        body = await read_object(request, 'the task, e.g. {"prompt": "...", "check": {"equals": "blue"}}')
        try:
            task = validate_task({"id": task_id, **body}, field="")
            found = await sets.put(check_set_name(name), task_id, task)
        except (TaskError, UnknownTaskSet, UnknownTask, TaskSetConflict) as exc:
            raise failed(exc) from None
        return json_response(found)

    @router.patch("/api/tasksets/{name}/tasks/{task_id}", summary="Change fields of a task of a task set",
                  responses=error_responses(404, *BODY_ERRORS), openapi_extra=_body(_PATCH))
    async def patch_task(name: str, task_id: str, request: Request) -> JSONResponse:
        """The fields given changed (null removes one), the rest kept."""
        body = await read_object(request, 'the fields to change, e.g. {"check": {"contains": ["5.49"]}}')
        try:
            if not body:
                raise TaskError("body", 'name at least one field to change, e.g. {"title": "..."}')
            _known(body, set(Task.model_fields), f"fields of a task: {', '.join(Task.model_fields)}")
            found = await sets.patch(check_set_name(name), task_id, body)
        except (TaskError, UnknownTaskSet, UnknownTask, TaskSetConflict) as exc:
            raise failed(exc) from None
        return json_response(found)

    @router.delete("/api/tasksets/{name}/tasks/{task_id}", summary="Remove a task from a task set",
                   responses=error_responses(404))
    async def delete_task(name: str, task_id: str) -> JSONResponse:
        """The set's next version without the task (a set keeps at least one)."""
        try:
            found = await sets.remove(check_set_name(name), task_id)
        except (TaskError, UnknownTaskSet, UnknownTask, TaskSetConflict) as exc:
            raise failed(exc) from None
        return json_response(found)


async def _tasks_to_add(sets: TaskSets, name: str, body: dict[str, Any]) -> tuple[list[Task], list[dict[str, Any]]]:
    """The tasks a POST .../tasks body adds, and notes on the checks suggested (when made of runs)."""
    try:
        current = await sets.get(name)
        taken = {str(t.get("id")) for t in current["tasks"]}
    except UnknownTaskSet:
        taken = set()  # a dry run may suggest tasks for a set not made yet
    if "from_run" in body:
        run_ids = _run_ids([body["from_run"]], "from_run")
        overrides = {k: v for k, v in body.items() if k not in ("from_run", "note")}
        _known(overrides, set(Task.model_fields),
               f"from_run and the task's fields to set: {', '.join(Task.model_fields)}")
        task, said = await sets.from_run(run_ids[0], overrides, taken=taken)
        return [task], [{"task_id": task.id, "from_run": run_ids[0], "notes": said}]
    if "from_runs" in body:
        _known(body, {"from_runs"}, "from_runs alone (a list of run ids)")
        return await sets.from_runs(_run_ids(body["from_runs"], "from_runs"), taken=taken)
    given = _given_tasks(body)
    if given is not None:
        _known(body, {"tasks", "tasks_jsonl", "note"}, "tasks or tasks_jsonl, and note")
        return given, []
    return [validate_task(body, field="")], []

