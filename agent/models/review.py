"""A person's review of a run: a verdict (pass or fail), an optional score and comment, and who reviewed.

`ReviewIn` is what `POST /api/runs/{id}/reviews` (and the viewer's review panel) takes; `read_review`
turns a body into one, or raises `ReviewError` listing every field to fix.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.limits import MAX_REVIEW_COMMENT_CHARS, MAX_REVIEWER_CHARS

__all__ = ["REVIEWER_PATTERN", "ReviewError", "ReviewIn", "Verdict", "read_review"]

Verdict = Literal["pass", "fail"]
# A name people read in a table: letters and digits of any script, spaces and . @ ' + - inside.
REVIEWER_PATTERN = r"^\w[\w .@'+-]*$"


class ReviewError(ValueError):
    """A review that cannot be accepted: `errors` lists `{field, message}`, each message naming the fix."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


class ReviewIn(BaseModel):
    """A person's verdict on a run; `reviewer` may be left out when the API key names its holder."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    verdict: Verdict = Field(description="pass: the run did the task; fail: it did not")
    score: float | None = Field(default=None, ge=0.0, le=1.0, description="How well, from 0 to 1 (default: 1 or 0)")
    comment: str | None = Field(default=None, max_length=MAX_REVIEW_COMMENT_CHARS, description="Why, in words")
    reviewer: str | None = Field(default=None, min_length=1, max_length=MAX_REVIEWER_CHARS, pattern=REVIEWER_PATTERN,
                                 description="Who reviewed (with a named API key, the key's name)")

    @property
    def passed(self) -> bool:
        """The verdict as a boolean."""
        return self.verdict == "pass"


_FIXES = {
    "verdict": 'must be "pass" or "fail"',
    "score": "must be a number from 0 to 1, or left out",
    "comment": f"must be text of at most {MAX_REVIEW_COMMENT_CHARS} characters, or left out",
    "reviewer": (f"must be a name of 1 to {MAX_REVIEWER_CHARS} characters (letters, digits, spaces and . @ ' + -), "
                 "or left out when your API key names you"),
}


def read_review(data: Any) -> ReviewIn:
    """The review a JSON body describes; ReviewError naming each field to fix."""
    if not isinstance(data, dict):
        raise ReviewError([{"field": "body", "message": 'must be a JSON object such as {"verdict": "pass"}'}])
    try:
        return ReviewIn.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "body"
            if err["type"] == "extra_forbidden":
                message = f"unknown field; a review has {', '.join(ReviewIn.model_fields)}"
            elif err["type"] == "missing":
                message = "is required: " + _FIXES.get(field, "give it")
            else:
                message = _FIXES.get(field, str(err["msg"]))
            errors.append({"field": field, "message": message})
        raise ReviewError(errors) from None
