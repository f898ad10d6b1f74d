"""Judges: asking a model to grade a run's result against a rubric, and judging an experiment's results again.

`ask_judge` is the one judge call (the runner's judge checks and re-judging both use it): the model is asked
with `checks.judge_messages`, once more if it fails, and every call is logged with the run it grades (an LLM
call with purpose "judge", its trace kept like the agent's own). `rubric_hash` names a rubric in the log.

`Rejudges` plays `POST /api/experiments/{id}/judge`: a provider, a model and (optionally) a rubric grade the
experiment's finished cells again, from the results already in the log (no browser, no agent call). Each
verdict is kept as another grading of the same run, beside the first (`agent.log.grades`): two judges, or a
judge and people, are then compared on the same runs (`GET /api/judges`). It does not change the cells'
grades: the experiment keeps counting its own check or judge (and people's reviews).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.experiments import checks
from agent.experiments.spec import MAX_CELLS
from agent.experiments.tasks import MAX_CHECK_CHARS, Check, TaskError
from agent.limits import MAX_MODEL_CHARS
from agent.models import PROVIDERS, LLMTrace, Provider, utcnow, validation_errors

if TYPE_CHECKING:
    from agent.service.runs import RunService

__all__ = ["JUDGE_ATTEMPTS", "JudgeJob", "Rejudge", "Rejudges", "ask_judge", "rubric_hash"]

log = logging.getLogger(__name__)

JUDGE_ATTEMPTS = 2  # a judge that fails (an error, or no verdict) is asked once more, then the cell is ungraded
MAX_JUDGE_CONCURRENCY = 16
JUDGED = ("passed", "failed", "ungraded")  # cells whose run ended with a result to judge (lost ones are not)


def rubric_hash(rubric: str) -> str:
    """A rubric's name in the log: the first 16 hex digits of its SHA-256 (the same in SQL: m011_reviews)."""
    return hashlib.sha256(rubric.encode("utf-8")).hexdigest()[:16]


async def ask_judge(service: RunService, run_id: int, *, provider: str, model: str, rubric: str, prompt: str,
                    result: Any) -> checks.Grade:
    """The judge's grade of a run's result (asked once more if it fails; a judge that fails twice gives no
    verdict, saying why). Its calls are logged with the run (purpose "judge")."""
    from agent.engine.llm import LLM, LLMError  # litellm loads on first use, not at import
    from agent.engine.trace import make_trace

    messages = checks.judge_messages(Check(judge=rubric, provider=provider, model=model), prompt, result)
    problem = ""

    def kept(trace: LLMTrace) -> LLMTrace:  # as the run log keeps traces (no content when LOG_PROMPTS=0)
        return trace if service.log_prompts else trace.without_content()

    for _attempt in range(JUDGE_ATTEMPTS):
        try:
            reply = await LLM(provider, model).complete(messages, None, purpose="judge")
        except LLMError as exc:
            if exc.call is not None:
                await service.record_llm_call(run_id, exc.call, kept(make_trace(exc.call, messages, None, None)))
            problem = str(exc)
            continue
        # What the judge was asked and answered is kept with the run, like the agent's own calls.
        await service.record_llm_call(run_id, reply.call, kept(make_trace(reply.call, messages, None,
                                                                          reply.raw_message)))
        grade = checks.read_judgement(reply.text)
        if grade.passed is not None:
            return grade
        problem = grade.detail
    return checks.Grade(None, None, f"not graded (judge_error): the judge ({provider}/{model}) failed "
                                    f"{JUDGE_ATTEMPTS} times; last: {problem}"[:1000])


class Rejudge(BaseModel):
    """What `POST /api/experiments/{id}/judge` takes."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    provider: Provider = Field(default="openai", description="The judge's provider")
    model: str = Field(min_length=1, max_length=MAX_MODEL_CHARS, description="The judge's model")
    rubric: str | None = Field(default=None, min_length=1, max_length=MAX_CHECK_CHARS,
                               description="What a passing answer does; default: each task's own judge rubric "
                                           "(cells of tasks without one are skipped)")
    task_id: str | None = Field(default=None, max_length=80, description="only this task's cells")
    variant: str | None = Field(default=None, max_length=60, description="only this variant's cells")
    concurrency: int = Field(default=4, ge=1, le=MAX_JUDGE_CONCURRENCY, description="judge calls at once")
    wait_for_completion: bool = Field(default=True, description="answer when every cell is judged (else at once, "
                                                                "202; GET .../judge follows it)")

    @property
    def grader(self) -> str:
        """The judge as a grader: provider/model."""
        return f"{self.provider}/{self.model}"


def read_rejudge(data: dict[str, Any]) -> Rejudge:
    """The re-judge a body asks for; TaskError naming the field and the fix (a provider without a key too)."""
    from agent.engine.llm import key_status  # the environment only; litellm is not imported

    try:
        spec = Rejudge.model_validate(data)
    except ValidationError as exc:
        err = validation_errors(exc)[0]
        message = err["message"]
        if message.startswith("unknown field"):
            message = f"unknown field; a re-judge takes {', '.join(Rejudge.model_fields)}"
        elif err["field"] == "provider":
            message = f"must be one of {', '.join(PROVIDERS)}"
        raise TaskError(err["field"], message) from None
    ready, advice = key_status(spec.provider)
    if not ready:
        raise TaskError("provider", f"the judge's provider: {advice}")
    return spec


@dataclass
class JudgeJob:
    """One re-judging of an experiment's cells: what it asks and how far it is."""

    experiment_id: int
    spec: Rejudge
    total: int
    skipped: int
    started_at: Any = field(default_factory=utcnow)
    judged: int = 0
    passes: int = 0
    fails: int = 0
    errors: int = 0
    status: str = "running"  # running | done | cancelled | failed
    error: str | None = None
    rubric_hashes: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None

    def summary(self) -> dict[str, Any]:
        """The job as the API shows it."""
        return {"experiment_id": self.experiment_id, "grader": self.spec.grader, "provider": self.spec.provider,
                "model": self.spec.model, "rubric": self.spec.rubric, "rubric_hashes": sorted(self.rubric_hashes),
                "status": self.status, "cells": self.total, "judged": self.judged, "passed": self.passes,
                "failed": self.fails, "errors": self.errors, "skipped": self.skipped, "error": self.error,
                "started_at": self.started_at,
                "skipped_why": "no rubric: the task has no judge check and the request gave none" if self.skipped
                else None}


@dataclass(frozen=True)
class _Item:
    run_id: int
    cell: tuple[int, str, str, int]
    prompt: str
    rubric: str


class Rejudges:
    """Re-judging experiments through the run service; the jobs of this process, by experiment."""

    def __init__(self, service: RunService) -> None:
        self.service = service
        self._jobs: dict[int, list[JudgeJob]] = {}

    async def start(self, exp_id: int, body: dict[str, Any]) -> JudgeJob:
        """Validate and start judging an experiment's finished cells again; the job (awaited when asked to)."""
        spec = read_rejudge(body)
        experiment = await self.service.get_experiment(exp_id, cells_limit=MAX_CELLS)  # NotFound first
        items, skipped = self._items(exp_id, experiment, spec)
        if not items and not skipped:
            raise TaskError("task_id" if spec.task_id or spec.variant else "experiment_id",
                            "no finished cell with a result to judge" + (
                                f" for task {spec.task_id!r}" if spec.task_id else "") + (
                                f" and variant {spec.variant!r}" if spec.variant else ""))
        job = JudgeJob(exp_id, spec, total=len(items), skipped=skipped)
        jobs = self._jobs.setdefault(exp_id, [])
        jobs.append(job)
        del jobs[:-20]  # the last 20 of each experiment are remembered
        job.task = asyncio.create_task(self._play(job, items), name=f"rejudge-{exp_id}")
        if spec.wait_for_completion:
            await asyncio.wait({job.task})
        return job

    def jobs(self, exp_id: int) -> list[JudgeJob]:
        """The re-judgings of an experiment this process started, oldest first."""
        return list(self._jobs.get(exp_id, []))

    async def close(self) -> None:
        """Stop the re-judgings still going (the app is going down); the verdicts given so far stay."""
        tasks = [j.task for jobs in self._jobs.values() for j in jobs if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=30)

    @staticmethod
    def _items(exp_id: int, experiment: dict[str, Any], spec: Rejudge) -> tuple[list[_Item], int]:
        tasks = {t["task_key"]: t for t in experiment["tasks"]}
        items, skipped = [], 0
        for c in experiment["cells"]:
            if c["outcome"] not in JUDGED or c["run_id"] is None:
                continue
            if (spec.task_id and c["task_key"] != spec.task_id) or (spec.variant and c["variant"] != spec.variant):
                continue
            task = tasks[c["task_key"]]
            rubric = spec.rubric or ((task["task"].get("check") or {}).get("judge"))
            if not rubric:
                skipped += 1
                continue
            items.append(_Item(int(c["run_id"]), (exp_id, c["task_key"], c["variant"], int(c["repeat"])),
                               str(task["prompt"]), str(rubric)))
        return items, skipped

    async def _play(self, job: JudgeJob, items: list[_Item]) -> None:
        slots = asyncio.Semaphore(job.spec.concurrency)

        async def one(item: _Item) -> None:
            async with slots:
                await self._judge_one(job, item)

        try:
            await asyncio.gather(*(one(item) for item in items))
            job.status = "done"
        except asyncio.CancelledError:
            job.status = "cancelled"
            raise
        except Exception as exc:  # our own bug: the job ends saying so; verdicts given so far stay
            log.exception("re-judging experiment %d failed", job.experiment_id)
            job.status, job.error = "failed", f"internal error: {exc}"

    async def _judge_one(self, job: JudgeJob, item: _Item) -> None:
        spec = job.spec
        final = await self.service.aget(item.run_id)
        result = None if final is None else final.result
        if result is None:  # nothing to judge: no need to pay a judge to say so (as the runner does)
            grade = checks.Grade(False, 0.0, "no result")
        else:
            grade = await ask_judge(self.service, item.run_id, provider=spec.provider, model=spec.model,
                                    rubric=item.rubric, prompt=item.prompt, result=result)
        hashed = rubric_hash(item.rubric)
        job.rubric_hashes.add(hashed)
        await self.service.add_grading(item.run_id, kind="judge", grader=spec.grader, passed=grade.passed,
                                       score=grade.score, comment=grade.detail, rubric_hash=hashed, cell=item.cell,
                                       extra={"source": "rejudge", "rubric": item.rubric[:2000],
                                              "called": result is not None})
        job.judged += 1
        if grade.passed is None:
            job.errors += 1
        elif grade.passed:
            job.passes += 1
        else:
            job.fails += 1
