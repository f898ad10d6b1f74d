"""`RunFilter`: which runs the history lists and totals, said once for every surface.

The run log turns it into SQL (`agent.log.rows.run_filter`), the REST route takes its fields as
query parameters (`GET /api/runs?status=...`, derived from this model), and the Gradio history
builds one from its boxes. A field that matches its `runs` column exactly (most of them) needs
nothing more than its line here; the other kinds (text search, a part of a name, a range of days,
the switch that shows experiments' runs) are spelled out in `agent.log.rows.run_filter`. The runs
are listed joined with the experiment cell each played (`v_run_experiments`), so `experiment_id` and
`variant` are exact matches too; experiments' runs are left out unless `include_experiments` (or a
filter on an experiment or a variant) asks for them: an experiment of 84 cells would otherwise bury
the runs made by hand.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.limits import MAX_ID
from agent.models import Provider, Status, StopReason

__all__ = ["MATCHED_APART", "RunFilter"]

# Fields that are not an exact match on the `runs` column of their name (agent.log.rows.run_filter).
MATCHED_APART = ("q", "model_contains", "since", "until", "include_experiments", "review")
ReviewState = Literal["queue", "reviewed", "unreviewed"]


class RunFilter(BaseModel):
    """The history's filters; None (the default) filters nothing, and filters given together all hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Status | None = Field(default=None, description="The run's status")
    provider: Provider | None = Field(default=None, description="The provider")
    model: str | None = Field(default=None, max_length=200, description="The exact model name")
    task_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Runs of this task")
    parent_run_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Forks of this run")
    q: str | None = Field(default=None, max_length=200, description="Text in the prompt, result or error (any case)")
    model_contains: str | None = Field(default=None, max_length=200, description="Part of the model name (any case)")
    stop_reason: StopReason | None = Field(default=None, description="Why the run stopped")
    since: date | None = Field(default=None, description="First UTC day the run started on (YYYY-MM-DD)")
    until: date | None = Field(default=None, description="Last UTC day the run started on (YYYY-MM-DD)")
    experiment_id: int | None = Field(default=None, ge=1, le=MAX_ID,
                                      description="Runs of this experiment (every cell's runs, replays included)")
    variant: str | None = Field(default=None, max_length=60, description="Runs of experiment variants of this name")
    include_experiments: bool = Field(
        default=False, description="Also list experiments' runs (left out by default; a filter on experiment_id, "
                                   "variant or review shows them)")
    review: ReviewState | None = Field(
        default=None, description="queue: runs to review next (graders that disagree, judged runs, failures); "
                                  "reviewed: a person reviewed them; unreviewed: finished, no review yet")

    @field_validator("q", "model_contains", "stop_reason", "variant", "review", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # An empty search box (or `?q=`) means no filter, not "the empty string".
        return None if value == "" else value

    def days_problem(self) -> str | None:
        """What is wrong with `since`/`until` together (a range that can hold no day), or None."""
        if self.since is not None and self.until is not None and self.since > self.until:
            return f"is after until ({self.since} > {self.until}); swap them"
        return None
