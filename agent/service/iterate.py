"""Iterating at a step: asking the model again there (the playground) and forking a run from there.

`StepDoor` is a part of `RunService` (as `LogDoor` is): it reads the run log in worker threads and
answers in the models' shapes. Asking again sends a step's stored messages through the engine's
`ask_again` and logs each call with purpose "playground" at that step, apart from the run's totals.
A fork's request is checked here before the run is created (its parent exists, the step is one of
the parent's, its secrets are given again) and its prefix is built from the parent's response.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from agent.models import (
    FIELDS,
    AskAnswer,
    AskRequest,
    NotAskable,
    RequestError,
    RunRequest,
    RunResponse,
)
from agent.service.door import NotFound

if TYPE_CHECKING:
    from agent.engine.loop import EngineOptions
    from agent.log.protocol import RunLog
    from agent.workflows.fork import ForkPrefix

__all__ = ["FORK_DROPS", "StepDoor"]

# A parent's request fields a fork does not take: where its answer went, and the workflow it replayed (a fork
# replays its parent's own steps).
FORK_DROPS = ("wait_for_completion", "webhook_url", "use_cached_workflow", "cached_workflow", "workflow_id",
              "workflow_params", "fork")


class StepDoor:
    """Asking the model again at a step, and checking and building forks (a part of RunService)."""

    _log: RunLog
    log_prompts: bool
    engine_options: EngineOptions | None

    async def aget(self, run_id: int) -> RunResponse | None:
        raise NotImplementedError

    async def run_request(self, run_id: int) -> RunRequest | None:
        raise NotImplementedError

    def _screenshot_file(self, run_id: int, response: RunResponse, step: int) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------ the playground
    async def _step_of(self, run_id: int, step: int) -> RunResponse:
        """The run, once it is known to have `step`; NotFound naming what is missing."""
        response = await self.aget(run_id)
        if response is None:
            raise NotFound("run", run_id)
        if all(item.step != step for item in response.history):
            raise NotFound("run", run_id, detail=f"run {run_id} has no step {step} (it has {len(response.history)} "
                                                 "so far)")
        return response

    async def ask(self, run_id: int, step: int, ask: AskRequest) -> AskAnswer:
        """Send step `step`'s messages again as `ask` says; the calls are logged with purpose "playground".

        NotFound for an unknown run or step; NotAskable (409) when the step has no messages to send;
        RequestError naming `provider` (and the variable to set) when the provider has no key.
        """
        # The engine's playground imports the actions (Playwright): loaded when first used.
        from agent.engine.llm import MissingKeyError
        from agent.engine.playground import ask_again

        response = await self._step_of(run_id, step)
        item = next(i for i in reversed(response.history) if i.step == step)
        traces = [t for t in await asyncio.to_thread(self._log.get_traces, run_id, step=step) if t["purpose"] == "step"]
        if not traces:
            raise NotAskable(f"step {step} of run {run_id} made no model call (executed by {item.executed_by}): "
                             "there is no reply to ask for again; pick a step the agent took")
        request = await self.run_request(run_id)
        if request is None:
            raise NotFound("run", run_id)
        try:
            answer, made = await ask_again(traces[-1], run_id=run_id, run_request=request, ask=ask,
                                           screenshot=self._screenshot_file(run_id, response, step))
        except MissingKeyError as exc:
            raise RequestError("provider", str(exc)) from None
        kept = made if self.log_prompts else [t.without_content() for t in made]
        if kept:
            await asyncio.to_thread(self._log.record_playground, run_id, step,
                                    [(t.call, t if t.logged else None) for t in kept])
        return answer

    async def asked(self, run_id: int, step: int) -> list[dict[str, Any]]:
        """The calls asked again at a step so far (newest question first); NotFound for an unknown run or step."""
        await self._step_of(run_id, step)
        return await asyncio.to_thread(self._log.get_playground, run_id, step)

    # ------------------------------------------------------------ forks
    async def fork_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """A POST /api/runs body with `fork`: the parent's request under it (fields the body leaves out come from
        the parent's; a new provider alone brings its own default model). RequestError naming fork.run_id for
        an unknown parent; a body whose fork is not an object is left for validation to name."""
        fork = body.get("fork")
        run_id = fork.get("run_id") if isinstance(fork, dict) else None
        if not isinstance(run_id, int) or isinstance(run_id, bool) or run_id < 1:
            return body
        parent = await self.run_request(run_id)
        if parent is None:
            raise RequestError("fork.run_id", f"run {run_id} does not exist; fork a run listed by GET /api/runs")
        merged = parent.model_dump(mode="json", exclude_none=True, exclude=set(FORK_DROPS))
        if "provider" in body and "model" not in body:
            merged.pop("model", None)
        return {**merged, **body}

    async def fork_prefix(self, request: RunRequest) -> ForkPrefix:
        """The prefix a fork replays (its parent's steps before fork.step); RequestError naming the field to fix."""
        # Heavy (the workflows' replay: Playwright, jsonschema): loaded by the first fork.
        from agent.workflows.fork import ForkPrefix

        fork = request.fork
        assert fork is not None
        if request.use_cached_workflow:
            raise RequestError("use_cached_workflow", "a fork replays its parent's own steps; leave "
                                                      "use_cached_workflow off (and workflow_id, cached_workflow)")
        parent = await self.aget(fork.run_id)
        if parent is None:
            raise RequestError("fork.run_id", f"run {fork.run_id} does not exist; fork a run listed by GET /api/runs")
        if not 1 <= fork.step <= len(parent.history):
            have = len(parent.history)
            raise RequestError("fork.step", f"run {fork.run_id} has {have} step{'s' if have != 1 else ''}: give a "
                                            f"step from 1 to {have}" if have else f"run {fork.run_id} has no step yet")
        limit = request.max_steps or (self.engine_options.max_steps if self.engine_options is not None
                                      else FIELDS["max_steps"].engine_default)
        if fork.step > limit:
            raise RequestError("max_steps", f"is {limit}, but the fork takes over at step {fork.step}: give max_steps "
                                            f"of at least {fork.step}")
        prefix = ForkPrefix(parent, fork.step, heal=fork.heal)
        missing = prefix.missing_secrets(request)
        if missing:
            names = ", ".join(f"<secret>{m}</secret>" for m in missing)
            raise RequestError("sensitive_data", f"the parent typed {names} before step {fork.step}: secrets are never "
                                                 "kept, give their values again")
        return prefix
