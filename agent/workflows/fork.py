"""Forking a run from a step: the parent's steps before it replayed without the model, then the agent.

`fork_from(parent, step=S)` turns a parent run (its `RunResponse`, as the run log or `agent.run` gave
it) into the engine's `Prefix`: its steps 1..S-1 as a workflow without parameters (each step's
working actions with the locators recorded when the agent used them, and the check a replay makes
after each: value typed, option chosen, page reached), replayed in the new run's own browser session
by the cached-workflow machinery (agent.workflows.replay), one step of the fork per step of the
parent, each marked `executed_by: "replay"`. `engine.stream(request, fork=prefix)` then asks the
model from step S on, its memory of steps 1..S-1 the parent's (descriptions and action results as
the parent's model read them). A step that no longer fits the page ends the fork with
`stop_reason: "replay_failed"` naming it, or, with `heal`, is done by the agent (agent.workflows.heal).

    parent = agent.run({"prompt": "...", "start_url": "..."})
    child = agent.run({"prompt": "...", "model": "gpt-4.1"}, fork=fork_from(parent, step=8))
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from agent.engine import actions as act
from agent.engine.browser import BrowserSession
from agent.engine.llm import LLM
from agent.engine.loop import EngineOptions
from agent.engine.resume import PrefixBroken
from agent.engine.runtime import StepClock
from agent.engine.secrets import SECRET_RE, placeholder
from agent.models import (
    ActionResult,
    Event,
    ExecutedBy,
    HistoryItem,
    RequestError,
    RunRequest,
    RunResponse,
    StepFinished,
    StepStarted,
    utcnow,
)
from agent.workflows.document import Expect, Workflow, WorkflowAction, WorkflowStep
from agent.workflows.heal import HEAL_MAX_STEPS, heal_step
from agent.workflows.record import action_expect, kept_action
from agent.workflows.replay import FIND_TIMEOUT_S, replay_step
from agent.workflows.state import ReplayState, StepLog
from agent.workflows.template import template_params, url_pattern

__all__ = ["ForkPrefix", "fork_from", "prefix_steps"]

SCREENSHOT_TIMEOUT_S = 15.0
# Actions a workflow leaves out that still move the page a fork must reach: find_text scrolls to its text.
_MOVES_THE_PAGE = frozenset({"find_text"})


def _kept(action: ActionResult) -> bool:
    """Whether a parent's action is done again: it worked and it changes the page (what the next step saw)."""
    if action.is_done or action.error or action.success is False:
        return False
    return kept_action(action) or action.name in _MOVES_THE_PAGE


def _action(action: ActionResult) -> WorkflowAction:
    """A parent's action as a replay runs it. An action the parent itself replayed shows its element's label
    instead of an index (agent.workflows.replay); its locators find the element again all the same."""
    params = {k: v for k, v in action.params.items() if k != "element"}
    if action.name in act.ELEMENT_ACTIONS and action.locators and "element" in action.params:
        params["index"] = 0  # any index: the replay locates the element from its locators
    params = template_params(action.name, params, {})
    return WorkflowAction(name=action.name, params=params, locators=action.locators,
                          expect=action_expect(action, params, {}))


def prefix_steps(history: list[HistoryItem], step: int) -> list[WorkflowStep]:
    """The parent's steps 1..step-1 as workflow steps, one each (a step with nothing to do again has no action);
    each step's last action checks the page the parent's next step began on."""
    out: list[WorkflowStep] = []
    for i, item in enumerate(history[:step - 1]):
        actions = [_action(a) for a in item.actions if _kept(a)]
        following = history[i + 1].url if i + 1 < len(history) else None
        if actions and following and (actions[-1].expect is None or actions[-1].expect.url is None):
            expect = (actions[-1].expect or Expect()).model_copy(update={"url": url_pattern(following, {})})
            actions[-1] = actions[-1].model_copy(update={"expect": expect})
        description = (item.description or "").strip()[:2000] or ", ".join(a.name for a in item.actions) or "no action"
        if actions:
            out.append(WorkflowStep(description=description, actions=actions, url=item.url))
        else:  # nothing to do again (a failed or reading step): kept, so that step numbers stay the parent's
            out.append(WorkflowStep.model_construct(description=description, actions=[], url=item.url, healed=False))
    return out


class ForkPrefix:
    """A parent run's steps before `step`, to be done again in a fork's browser session (the engine's `Prefix`)."""

    def __init__(self, parent: RunResponse, step: int, *, heal: bool = False) -> None:
        count = len(parent.history)
        if not 1 <= step <= count:
            raise RequestError("fork.step", f"must be a step of run {parent.task_run_id or '(the parent)'}: 1 to "
                                            f"{count}, got {step}" if count else "the parent run has no step to fork")
        self.parent = parent
        self.parent_run_id = parent.task_run_id
        self.step = step
        self.heal = heal
        self.memory: list[HistoryItem] = list(parent.history[:step - 1])
        self.steps = prefix_steps(parent.history, step)

    def secret_names(self) -> list[str]:
        """The secrets the prefix types (`<secret>name</secret>`): a fork needs their values again."""
        text = json.dumps([s.model_dump(mode="json") for s in self.steps if s.actions], ensure_ascii=False)
        return sorted(set(SECRET_RE.findall(text)))

    def missing_secrets(self, request: RunRequest) -> list[str]:
        """The secrets the prefix types that `request.sensitive_data` does not give."""
        given = set(_secret_names(request))
        return [name for name in self.secret_names() if name not in given]

    def document(self, request: RunRequest) -> Workflow:
        """The prefix as a workflow document (for the replay's state); its last step, never run, is step S's."""
        later = self.parent.history[self.step - 1]
        takeover = WorkflowStep(description=(later.description or "the agent takes over")[:2000],
                                actions=[WorkflowAction(name="done", params={"text": ""})], url=later.url)
        return Workflow(name=f"fork of run {self.parent_run_id} at step {self.step}", prompt=request.prompt,
                        steps=[*self.steps, takeover], source_run_id=self.parent_run_id)

    async def replay(self, session: BrowserSession, *, request: RunRequest, options: EngineOptions, llm: LLM | None,
                     cancel: asyncio.Event | None) -> AsyncGenerator[Event, None]:
        """StepStarted/StepFinished for each of steps 1..step-1 replayed in `session`; PrefixBroken at the first that
        cannot be (unless healed)."""
        missing = self.missing_secrets(request)
        if missing:
            raise PrefixBroken(1, f"sensitive_data: the parent typed {', '.join(placeholder(m) for m in missing)} "
                                  "before the fork's step; give their values again in sensitive_data")
        state = ReplayState(request, self.document(request), options, llm, cancel, HEAL_MAX_STEPS, FIND_TIMEOUT_S,
                            None)
        ctx = act.Context(session=session, allowed_domains=options.allowed_domains,
                          blocked_domains=options.blocked_domains, extract_fn=None, secrets=state.secrets or None)
        for n, step in enumerate(self.steps, 1):
            state.check()
            page = await session.ensure_page()
            start_url, title = page.url, await _title(page)
            yield StepStarted(step=n, url=state.secrets.scrub(start_url))
            started_at, clock = utcnow(), StepClock()
            done = StepLog(clock=clock, traces=[], calls=[])
            with clock.part("browser"):  # at the step's start, as the agent's steps (and the parent's) take it
                shot = await _screenshot(session, options.screenshot_dir, n)
            by: ExecutedBy = "replay"
            failed: str | None = None
            if step.actions:
                with clock.part("browser"):
                    problem = await replay_step(state, ctx, session, step, done)
                if problem is not None and self.heal:
                    healed = await heal_step(state, session, n, step, problem, done, final=False)
                    by = healed.by
                    failed = None if healed.error is None else f"{problem}; the agent could not do it either: " \
                                                               f"{healed.error}"
                else:
                    failed = problem
            if failed is None and by == "replay":
                state.replayed += 1
            item = state.secrets.scrub_model(HistoryItem(
                description=step.description, actions=done.results, step=n, url=start_url, title=title,
                screenshot=shot, started_at=started_at, llm_calls=done.calls, executed_by=by, **clock.split()))
            state.tally.add_step(item)
            yield StepFinished(item=item, traces=done.traces)
            if failed is not None:
                hint = "" if self.heal else ' (fork with "heal": true to let the agent do such a step)'
                raise PrefixBroken(n, f"step {n} of run {self.parent_run_id} ('{step.description[:200]}') could not "
                                      f"be replayed: {failed}{hint}")


def fork_from(parent: RunResponse, step: int, *, heal: bool = False) -> ForkPrefix:
    """The fork of `parent` at `step` for `engine.stream(..., fork=...)` / `agent.run(..., fork=...)`.

    `parent` is a run's response (from `agent.run`, or `GET /api/runs/{id}`); RequestError naming fork.step
    unless 1 <= step <= its number of steps.
    """
    return ForkPrefix(parent, step, heal=heal)


def _secret_names(request: RunRequest) -> list[str]:
    data = request.sensitive_data or {}
    out: list[str] = []
    for key, value in data.items():
        out += list(value) if isinstance(value, dict) else [key]
    return out


async def _title(page: Any) -> str | None:
    try:
        return await asyncio.wait_for(page.title(), 2)
    except Exception:  # a page still loading or gone: the step goes on without its title
        return None


async def _screenshot(session: BrowserSession, folder: Path | None, n: int) -> str | None:
    if folder is None:
        return None
    try:
        return await asyncio.wait_for(session.screenshot(Path(folder) / f"step-{n:03d}.jpg"), SCREENSHOT_TIMEOUT_S)
    except Exception:  # no screenshot is no reason to stop the fork
        return None
