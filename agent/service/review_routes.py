"""The JSON routes of reviews and grades under /api: people's reviews of runs, every grading of a run, the
review queue, and judges measured against people.

- `POST /api/runs/{id}/reviews` `{"verdict": "pass"|"fail", "score"?, "comment"?, "reviewer"?}` → 201: kept with
  its time, beside every earlier one (the latest per reviewer counts); with a named API key
  (WORKBENCH_API_KEYS) the reviewer is the key's name, and a body naming someone else is refused (422);
- `GET /api/runs/{id}/reviews`: every review, oldest first, and the people's verdict;
- `GET /api/runs/{id}/grades`: the grade the run counts by (person, check, judge, or its agent's claim) and
  every grading of it (checks, judges, people) together;
- `GET /api/reviews/queue`: runs to review next (graders that disagree, judged runs, failures);
- `GET /api/judges`: per judge model and rubric, agreement with people and Cohen's kappa.

`agent.service.routes.service_routers` mounts them; errors follow `agent.service.http`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from agent.log.errors import InvalidQuery
from agent.models import ReviewError, ReviewIn, read_review
from agent.service.http import (
    BODY_ERRORS,
    MAX_ID,
    ClientError,
    RunId,
    error_responses,
    json_response,
    key_name,
    read_object,
    unprocessable,
)
from agent.service.runs import RunService

__all__ = ["ANONYMOUS", "grade_json", "review_json", "reviewer_for", "reviews_router"]

ANONYMOUS = "anonymous"  # the reviewer of a review that names nobody (no named key, no `reviewer`)
MAX_QUEUE_PAGE = 1000
_REVIEW_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    **ReviewIn.model_json_schema(), "title": "Review"}}}}}


def reviewer_for(review: ReviewIn, holder: str | None) -> tuple[str, str]:
    """(reviewer, where the name came from): the named key's holder, else the body's name, else ANONYMOUS;
    ClientError (422 on `reviewer`) when the body names someone other than the key's holder."""
    if holder is not None:
        if review.reviewer is not None and review.reviewer != holder:
            raise unprocessable("reviewer", f"this API key belongs to {holder!r}: leave reviewer out (or send "
                                            f"{holder!r}); each person reviews with their own key")
        return holder, "api_key"
    if review.reviewer is not None:
        return review.reviewer, "body"
    return ANONYMOUS, "anonymous"


def review_json(row: dict[str, Any]) -> dict[str, Any]:
    """A person's grading as the API shows a review."""
    details = row.get("details") or {}
    cell = None if row.get("experiment_id") is None else {
        "experiment_id": row["experiment_id"], "task_id": row["task_key"], "variant": row["variant"],
        "repeat": row["repeat"]}
    return {"review_id": row["id"], "task_run_id": row["run_id"], "reviewer": row["grader"],
            "verdict": row["verdict"], "score": row["score"], "comment": row["comment"],
            "created_at": row["created_at"], "latest": row["latest"], "source": details.get("source"), "cell": cell}


def grading_json(row: dict[str, Any]) -> dict[str, Any]:
    """Any grading (a check's, a judge's, a person's) as the API shows it."""
    details = row.get("details") or {}
    return {"grading_id": row["id"], "kind": row["kind"], "grader": row["grader"], "rubric_hash": row["rubric_hash"],
            "verdict": row["verdict"], "score": row["score"], "comment": row["comment"],
            "created_at": row["created_at"], "latest": row["latest"],
            "rubric": details.get("rubric"), "source": details.get("source")}


def grade_json(grade: dict[str, Any]) -> dict[str, Any]:
    """A run's grade (v_run_grades) as the API shows it."""
    cell = None if grade.get("experiment_id") is None else {
        "experiment_id": grade["experiment_id"], "task_id": grade["task_key"], "variant": grade["variant"],
        "repeat": grade["repeat"]}
    return {"graded_by": grade["graded_by"], "passed": grade["passed"], "outcome": grade["outcome"],
            "claimed_success": grade["claimed_success"], "reviewers": grade["reviewers"],
            "graders_disagree": grade["graders_disagree"], "queue_reason": grade["queue_reason"], "cell": cell}


def _people(reviews: list[dict[str, Any]]) -> dict[str, Any]:
    """The people's verdict (the latest review) and each reviewer's latest."""
    latest = [r for r in reviews if r["latest"]]
    last = reviews[-1] if reviews else None  # oldest first: the last one is the latest
    return {"verdict": last["verdict"] if last else None,
            "reviewers": {r["reviewer"]: r["verdict"] for r in latest}}


def reviews_router(service: RunService) -> APIRouter:
    """Reviews, grades, the review queue and the judges."""
    router = APIRouter(tags=["reviews"])

    @router.post("/api/runs/{task_run_id}/reviews", status_code=201, summary="Review a run",
                 responses=error_responses(404, 409, *BODY_ERRORS), openapi_extra=_REVIEW_BODY)
    async def post_review(task_run_id: RunId, request: Request) -> JSONResponse:
        """Pass or fail a finished run, with an optional score (0-1) and comment; kept beside earlier reviews.
        On an experiment's run it also grades that cell."""
        body = await read_object(request, '{"verdict": "pass" or "fail", "comment": "...", "reviewer": "..."}')
        try:
            review = read_review(body)
        except ReviewError as exc:
            raise ClientError(422, exc.errors) from None
        reviewer, source = reviewer_for(review, key_name(request))
        try:
            kept = await service.review(task_run_id, review, reviewer=reviewer, source=source)
        except InvalidQuery as exc:  # the run vanished between the check and the write
            raise unprocessable("task_run_id", str(exc)) from None
        reviews = [review_json(r) for r in await service.gradings(task_run_id, kind="person")]
        grade = grade_json(await service.run_grade(task_run_id))
        return json_response({"review": review_json(kept), "task_run_id": task_run_id, "reviews": reviews,
                              **_people(reviews), "grade": grade},
                             201, headers={"Location": f"/api/runs/{task_run_id}/reviews"})

    @router.get("/api/runs/{task_run_id}/reviews", summary="A run's reviews", responses=error_responses(404))
    async def get_reviews(task_run_id: RunId) -> JSONResponse:
        """Every review of the run, oldest first (`latest`: the one of its reviewer that counts), and the people's
        verdict (the latest review)."""
        reviews = [review_json(r) for r in await service.gradings(task_run_id, kind="person")]
        return json_response({"task_run_id": task_run_id, "reviews": reviews, **_people(reviews)})

    @router.get("/api/runs/{task_run_id}/grades", summary="A run's grades", responses=error_responses(404))
    async def get_grades(task_run_id: RunId) -> JSONResponse:
        """The grade the run counts by and every grading of it (checks, judges, people), oldest first."""
        gradings = [grading_json(r) for r in await service.gradings(task_run_id)]
        grade = grade_json(await service.run_grade(task_run_id))
        return json_response({"task_run_id": task_run_id, **grade, "gradings": gradings})

    @router.get("/api/reviews/queue", summary="Runs to review next", responses=error_responses())
    async def queue(limit: int = Query(default=50, ge=1, le=MAX_QUEUE_PAGE),
                    offset: int = Query(default=0, ge=0, le=MAX_ID),
                    reason: Literal["disagreement", "judged", "failure"] | None = Query(
                        default=None, description="only the runs queued for this reason")) -> JSONResponse:
        """Runs no person has reviewed yet, most useful first: graders that disagree, judged runs, then failures."""
        rows, total = await service.review_queue(limit=limit, offset=offset, reason=reason)
        runs = [{"task_run_id": r["run_id"], **{k: v for k, v in r.items() if k != "run_id"}} for r in rows]
        return json_response({"runs": runs, "total": total, "limit": limit, "offset": offset})

    @router.get("/api/judges", summary="Judges measured against people", responses=error_responses())
    async def judges(experiment_id: int | None = Query(default=None, ge=1, le=MAX_ID,
                                                       description="only this experiment's runs")) -> JSONResponse:
        """Per judge (model and rubric): runs judged and, on the runs people reviewed too, agreement, Cohen's kappa
        with its 95% interval and the confusion matrix."""
        return json_response({"judges": await service.judges(experiment_id)})

    return router
