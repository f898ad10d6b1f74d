"""Routes for experiments, all through the runner and the run service:

- `POST /api/experiments` `{"name", "tasks": [...] | "tasks_jsonl": "..." | "task_set": "demo-shop",
  "variants": [{"name", "provider", "model", ...}], "repeats", "concurrency", "backend", "baseline",
  "compare", "max_replays", "max_cost_usd"}` → 202 `{"experiment_id"}`; with `"dry_run": true` → 200
  with the cell count, the estimated cost and the expected mde, starting nothing; a 422 names the
  field and the fix (an unknown check kind, a bad regex, zero repeats, an empty task set, too many
  cells, a variant whose provider has no key, a budget on a model without a price);
- `GET /api/experiments` (newest first), `GET /api/experiments/{id}` (progress, variants with their
  intervals, a page of the cells (`cells_offset`, `cells_limit`), the task × variant matrix, the
  comparisons, warnings; built off the event loop) and `GET /api/experiments/{id}/progress` (the light
  form: status, progress, passes per variant);
- `POST /api/experiments/{id}/cancel`;
- `POST /api/experiments/{id}/grade` `{"task_id", "variant", "repeat", "passed", "reviewer"?, "comment"?}`: grade a
  cell by hand, as a review of its run (`POST /api/runs/{id}/reviews`);
- `POST /api/experiments/{id}/judge` `{"provider", "model", "rubric"?}`: judge the finished cells again, from the
  results in the log (another grading beside the first); `GET /api/experiments/{id}/judge`: how far it is;
- `GET /api/experiments/{a}/diff/{b}`: b against a, task by task, regressions first, with the paired comparison.

`task_set` names a task set kept in the workbench (agent.experiments.taskset_routes: bundled or stored),
`task_set_version` one of its versions (default the latest); the experiment records the version it ran.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from agent.experiments.judging import Rejudge
from agent.experiments.report import progress, summary
from agent.experiments.spec import MAX_CELLS
from agent.experiments.tasks import TaskError
from agent.log.experiment_diff import experiment_diff
from agent.models import ReviewError, read_review
from agent.service.door import Conflict
from agent.service.http import (
    BODY_ERRORS,
    MAX_ID,
    ClientError,
    error_responses,
    json_response,
    key_name,
    read_object,
    unprocessable,
)
from agent.service.review_routes import reviewer_for

if TYPE_CHECKING:
    from agent.experiments.runner import ExperimentRunner
    from agent.service.runs import RunService

# The bodies these routes read themselves, for the OpenAPI document (a generated client, `make fuzz`).
_START_BODY = {"type": "object", "title": "ExperimentRequest", "properties": {
    "name": {"type": "string"}, "task_set": {"type": "string"}, "task_set_version": {"type": "integer", "minimum": 1},
    "task_glob": {"type": "string"},
    "tasks": {"type": "array", "items": {"type": "object"}}, "tasks_jsonl": {"type": "string"},
    "variants": {"type": "array", "items": {"type": "object"}, "minItems": 1},
    "repeats": {"type": "integer", "minimum": 1, "maximum": 20},
    "concurrency": {"type": "integer", "minimum": 1, "maximum": 32},
    "backend": {"type": "string", "enum": ["local", "ray"]}, "baseline": {"type": "string"},
    "compare": {"type": "string", "enum": ["baseline", "all"]},
    "max_replays": {"type": "integer", "minimum": 0, "maximum": 5},
    "max_cost_usd": {"type": "number", "exclusiveMinimum": 0}, "dry_run": {"type": "boolean"}},
    "required": ["variants"]}
DEFAULT_CELLS_PAGE = 500
REPORT_BUILDS = 1
_GRADE_BODY: dict[str, Any] = {
    "type": "object", "title": "GradeCell", "additionalProperties": False,
    "required": ["task_id", "variant", "repeat", "passed"], "properties": {
        "task_id": {"type": "string"}, "variant": {"type": "string"}, "repeat": {"type": "integer"},
        "passed": {"type": "boolean"}, "reviewer": {"type": "string"}, "comment": {"type": "string"},
        "score": {"type": "number", "minimum": 0, "maximum": 1}}}
_JUDGE_BODY = {**Rejudge.model_json_schema(), "title": "Rejudge"}


async def load_diff(service: RunService, a: int, b: int) -> dict[str, Any]:
    """Experiment `b` against `a` (agent.log.experiment_diff), read through the service; NotFound for either."""
    first, second = await service.experiment_progress(a), await service.experiment_progress(b)
    cells_a, cells_b = await service.diff_cells(a), await service.diff_cells(b)
    return await asyncio.to_thread(experiment_diff, {"experiment_id": a, "name": first["name"]}, cells_a,
                                   {"experiment_id": b, "name": second["name"]}, cells_b)


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


ExperimentId = Annotated[int, Path(ge=1, le=MAX_ID, description="The experiment_id returned when it was started")]


def _default(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def report_response(experiment: dict[str, Any], *, cells_offset: int = 0, status: int = 200) -> Response:
    """The report as JSON, built and encoded by the caller's thread (it can be 600 KB: never on the event loop)."""
    body = json.dumps(summary(experiment, cells_offset=cells_offset), default=_default, ensure_ascii=False,
                      allow_nan=False)
    return Response(body, status_code=status, media_type="application/json")


def create_experiment_router(runner: ExperimentRunner) -> APIRouter:
    """The experiment routes."""
    router = APIRouter(tags=["experiments"])
    service = runner.service
    # Reports are built one at a time: however many clients ask at once, the event loop competes for the
    # interpreter with one builder only (a 2,000-cell report is ~100 ms of Python), and /api/health answers.
    builds = asyncio.Semaphore(REPORT_BUILDS)

    async def report(experiment_id: int, *, cells_offset: int = 0, cells_limit: int = DEFAULT_CELLS_PAGE) -> Response:
        async with builds:
            found = await service.get_experiment(experiment_id, cells_offset=cells_offset, cells_limit=cells_limit)
            return await asyncio.to_thread(report_response, found, cells_offset=cells_offset)

    @router.post("/api/experiments", status_code=202, summary="Start an experiment",
                 responses=error_responses(*BODY_ERRORS), openapi_extra=_body(_START_BODY))
    async def start(request: Request) -> JSONResponse:
        """Validate and start an experiment; it plays in the background."""
        body = await read_object(request, 'the experiment, e.g. {"task_set": "demo-shop", "variants": [{"name": "A"}]}')
        try:
            if body.get("dry_run") is True:
                return json_response(await runner.dry_run(body))
            exp_id = await runner.start(body)
        except TaskError as exc:
            raise unprocessable(exc.field, exc.message) from None
        return json_response({"experiment_id": exp_id}, 202, headers={"Location": f"/api/experiments/{exp_id}"})

    @router.get("/api/experiments", summary="List experiments", responses=error_responses())
    async def list_all(limit: int = Query(default=50, ge=1, le=1000),
                       offset: int = Query(default=0, ge=0, le=MAX_ID)) -> JSONResponse:
        """A page of experiments, newest first, with their progress."""
        rows, total = await service.list_experiments(limit=limit, offset=offset)
        items = [{**progress(r), "backend": r["backend"], "task_set": r["task_set"],
                  "task_set_version": r.get("task_set_version"), "repeats": r["repeats"],
                  "created_at": r["created_at"], "finished_at": r["finished_at"], "passes": r["passes"],
                  "graded": r["graded"]} for r in rows]
        return json_response({"experiments": items, "total": total, "limit": limit, "offset": offset})

    @router.get("/api/experiments/{experiment_id}", summary="Get an experiment", responses=error_responses(404))
    async def get_one(experiment_id: ExperimentId,
                      cells_offset: int = Query(default=0, ge=0, le=MAX_CELLS, description="first cell of the page"),
                      cells_limit: int = Query(default=DEFAULT_CELLS_PAGE, ge=0, le=MAX_CELLS,
                                               description="cells in the page (0: none)")) -> Response:
        """Progress, per-variant numbers with intervals, a page of the cells, the matrix and the comparisons."""
        return await report(experiment_id, cells_offset=cells_offset, cells_limit=cells_limit)

    @router.get("/api/experiments/{experiment_id}/progress", summary="Get an experiment's progress",
                responses=error_responses(404))
    async def get_progress(experiment_id: ExperimentId) -> JSONResponse:
        """Status, why it stopped, progress counts and each variant's passes: cheap enough to poll."""
        return json_response(progress(await service.experiment_progress(experiment_id)))

    @router.post("/api/experiments/{experiment_id}/cancel", summary="Cancel an experiment",
                 responses=error_responses(404, 409))
    async def cancel(experiment_id: ExperimentId) -> Response:
        """Stop the running cells and drop the pending ones; finished cells stay."""
        if not await runner.cancel(experiment_id):
            current = await service.experiment_progress(experiment_id)
            return json_response({"detail": f"experiment {experiment_id} is not running ({current['status']}); "
                                            "nothing to cancel"}, 409)
        return await report(experiment_id)

    @router.post("/api/experiments/{experiment_id}/grade", summary="Grade a cell by hand",
                 responses=error_responses(404, 409, *BODY_ERRORS), openapi_extra=_body(_GRADE_BODY))
    async def grade(experiment_id: ExperimentId, request: Request) -> Response:
        """Pass or fail one cell by hand (a task without a check, or overruling one): a review of the cell's run
        (`POST /api/runs/{id}/reviews`), which then grades the cell."""
        body = await read_object(request, '{"task_id": "...", "variant": "...", "repeat": 1, "passed": true}')
        unknown = sorted(set(body) - set(_GRADE_BODY["properties"]))
        if unknown:
            raise unprocessable(unknown[0], f"unknown field; send {', '.join(_GRADE_BODY['properties'])}")
        for key, kind in (("task_id", str), ("variant", str), ("repeat", int), ("passed", bool)):
            value = body.get(key)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise unprocessable(key, f"is required and must be {'a string' if kind is str else kind.__name__}")
        try:
            review = read_review({"verdict": "pass" if body["passed"] else "fail",
                                  **{k: body[k] for k in ("reviewer", "comment", "score") if k in body}})
        except ReviewError as exc:
            raise ClientError(422, exc.errors) from None
        reviewer, source = reviewer_for(review, key_name(request))
        cells = await service.diff_cells(experiment_id)  # every cell with its run; NotFound first
        found = next((c for c in cells if (c["task_key"], c["variant"], c["repeat"]) == (
            body["task_id"], body["variant"], body["repeat"])), None)
        if found is None:
            raise unprocessable("task_id", f"experiment {experiment_id} has no cell {body['task_id']!r} / "
                                           f"{body['variant']!r} / repeat {body['repeat']}")
        if found["run_id"] is None:
            raise Conflict(f"the cell {body['task_id']!r} / {body['variant']!r} / repeat {body['repeat']} has not "
                           "been played yet: grade it once its run has ended")
        await service.review(int(found["run_id"]), review, reviewer=reviewer, source=source)
        return await report(experiment_id)

    @router.post("/api/experiments/{experiment_id}/judge", summary="Judge an experiment's results again",
                 responses=error_responses(404, *BODY_ERRORS), openapi_extra=_body(_JUDGE_BODY))
    async def judge(experiment_id: ExperimentId, request: Request) -> JSONResponse:
        """Grade the finished cells again with another judge (provider, model, rubric), from the results in the log:
        no browser, no agent call. Each verdict is another grading of the same run, beside the first; the cells'
        own grades do not change. Compare the judges with `GET /api/judges`."""
        body = await read_object(request, '{"provider": "openai", "model": "gpt-4.1", "rubric": "..."}')
        try:
            job = await runner.judges.start(experiment_id, body)
        except TaskError as exc:
            raise unprocessable(exc.field, exc.message) from None
        done = job.task is not None and job.task.done()
        return json_response(job.summary(), 200 if done else 202,
                             headers={"Location": f"/api/experiments/{experiment_id}/judge"})

    @router.get("/api/experiments/{experiment_id}/judge", summary="Re-judgings of an experiment",
                responses=error_responses(404))
    async def judge_jobs(experiment_id: ExperimentId) -> JSONResponse:
        """The re-judgings of this experiment started since the app started (status, judged so far), oldest first;
        the verdicts themselves are in the log (`GET /api/judges?experiment_id=`)."""
        await service.experiment_progress(experiment_id)  # NotFound first
        jobs = [job.summary() for job in runner.judges.jobs(experiment_id)]
        return json_response({"experiment_id": experiment_id, "judgings": jobs,
                              "judges": await service.judges(experiment_id)})

    @router.get("/api/experiments/{experiment_id}/diff/{other_id}", summary="Compare two experiments",
                responses=error_responses(404))
    async def diff(experiment_id: ExperimentId, other_id: ExperimentId) -> JSONResponse:
        """Experiment `other_id` against `experiment_id`, task by task (matched by id, else by prompt) and variant:
        pass rates before and after, regressions and improvements first with their runs side by side, and the
        paired comparison over tasks per variant."""
        return json_response(await load_diff(service, experiment_id, other_id))

    return router
