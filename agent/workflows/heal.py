"""Healing a replayed step: when its recorded actions no longer work, the agent does that step alone.

The agent (`engine.stream` on the replay's open tabs, a few steps at most) gets the task, the steps
done, the step to do and why the recorded way failed; what it did becomes the step's new version
(`healed_step`, or `final_step` for the result), which the replay saves as the workflow's next version.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agent.engine import loop as engine
from agent.engine.actions import traits_of
from agent.engine.browser import BrowserSession
from agent.engine.llm import key_status
from agent.models import (
    ActionResult,
    ExecutedBy,
    HistoryItem,
    LLMTrace,
    RunFinished,
    RunRequest,
    RunResponse,
    StepFinished,
    StopReason,
)
from agent.workflows.document import Expect, WorkflowAction, WorkflowStep
from agent.workflows.record import action_expect, kept_action, result_action, template_locators
from agent.workflows.state import ReplayState, StepLog
from agent.workflows.template import as_text, render, render_text, template_params, url_pattern

__all__ = ["HEAL_MAX_STEPS", "Healed", "heal_step"]

HEAL_MAX_STEPS = 4
# A heal that ended for one of these reasons ends the replay for the same reason (not the workflow's fault).
PASSED_ON: tuple[StopReason, ...] = ("cancelled", "timeout", "model_error", "missing_key", "browser_error")

HEAL_PROMPT = """You are repairing ONE step of a recorded workflow that no longer matches the page.
Overall task (for context only): {task}
Steps already done: {done}
The step to do now: {step}
How it was done when recorded: {recorded}
Why the recorded way failed: {problem}
Do this step only, on the current page, then call done with success=true and one sentence saying what you did.
Do not do later steps{later}. If the step cannot be done, call done with success=false and say why."""

FINAL_HEAL_PROMPT = """You are finishing a recorded workflow whose last step no longer matches the page.
Task: {task}
Steps already done: {done}
What is left: {step}
Why the recorded result could not be used: {problem}
Read the result from the current page (do not redo earlier steps) and call done with the answer the task asks for."""


@dataclass(frozen=True)
class Healed:
    """How a step that did not replay ended: who did it, why the replay must stop (None: healed), the result."""

    by: ExecutedBy = "heal"
    error: str | None = None
    stop_reason: StopReason = "replay_failed"
    result: Any = None


async def heal_step(state: ReplayState, session: BrowserSession, n: int, step: WorkflowStep, problem: str,
                    done: StepLog, *, final: bool) -> Healed:
    """Let the agent do step `n`, adding its actions, calls and time to `done`; keep the step's new version."""
    if state.model() is None:
        return Healed(by="replay", error=f"no model to heal with ({key_status(state.request.provider)[1]})")
    state.heal_asked.append(n)
    response, items, heal_traces = await _agent_does(state, session, n, step, problem, final=final)
    done.traces.extend(heal_traces)
    for item in items:
        done.clock.add(llm_ms=item.llm_ms, browser_ms=item.browser_ms)
        done.calls.extend(item.llm_calls)
        # The heal's own `done` ("step achieved") is not the run's end, except on the final step.
        done.results.extend(a.model_copy(update={"executed_by": "heal"}) for a in item.actions
                            if final or not a.is_done)
    end_url = (await session.ensure_page()).url
    if response.status != "success":
        passed_on = response.stop_reason if response.stop_reason in PASSED_ON else None
        return Healed(error=response.error or "the agent could not do the step",
                      stop_reason=passed_on or "replay_failed")
    state.healed += 1
    if not final:
        state.new_steps[n - 1] = healed_step(state, step, done.kept, items, end_url)
        return Healed()
    new_step = final_step(state, step, items, end_url)
    if new_step is not None:  # else nothing to save that would not be this replay's literal answer
        state.new_steps[n - 1] = new_step
    return Healed(result=response.result)


def _done_so_far(state: ReplayState) -> str:
    if not state.history:
        return "(none)"
    return "; ".join(f"{i}. {item.description}" for i, item in enumerate(state.history, 1))


def _recorded(step: WorkflowStep, values: dict[str, Any]) -> str:
    """The step's recorded actions in words, for the agent that repairs it."""
    parts = []
    for a in step.actions:
        params = {k: v for k, v in render(a.params, values).items() if k != "index"}
        target = ""
        if a.locators:
            loc = render(a.locators, values)
            label = loc.get("name") or loc.get("text") or (loc.get("attributes") or {}).get("placeholder") or ""
            target = f" on <{loc.get('tag', '')}> {str(label)[:60]!r}"
        parts.append(f"{a.name}{target} {params}" if params else f"{a.name}{target}")
    return "; ".join(parts)[:1500]


async def _agent_does(state: ReplayState, session: BrowserSession, n: int, step: WorkflowStep, problem: str,
                *, final: bool) -> tuple[RunResponse, list[HistoryItem], list[LLMTrace]]:
    """Let the agent do this one step on the open tabs (a few steps at most); its response, steps and calls."""
    values = state.values
    description = render_text(step.description, values)
    if final:
        prompt = FINAL_HEAL_PROMPT.format(task=state.request.prompt, done=_done_so_far(state), step=description,
                                          problem=problem)
        heal_request = RunRequest(prompt=prompt, model=state.request.model, provider=state.request.provider,
                                  **_system_messages(state.request),
                                  response_format="json" if state.structured else "text",
                                  json_schema=state.request.json_schema or state.doc.json_schema)
    else:
        later = state.doc.steps[n] if n < len(state.doc.steps) else None
        later_text = f" (the next one is: {render_text(later.description, values)})" if later else ""
        prompt = HEAL_PROMPT.format(task=state.request.prompt, done=_done_so_far(state), step=description,
                                    recorded=_recorded(step, values), problem=problem, later=later_text)
        heal_request = RunRequest(prompt=prompt, model=state.request.model, provider=state.request.provider,
                                  sensitive_data=state.request.sensitive_data, **_system_messages(state.request))
    options = state.options.model_copy(update={
        "max_steps": state.heal_max_steps, "start_url": None, "max_failures": 2,
        "screenshot_dir": (state.options.screenshot_dir / f"heal-{n:03d}") if state.options.screenshot_dir else None,
        "timeout_s": max(1.0, state.deadline - time.monotonic()),
    })
    items: list[HistoryItem] = []
    traces: list[LLMTrace] = []
    final_response: RunResponse | None = None
    async for event in engine.stream(heal_request, llm=state.model(), options=options,
                                     cancel=state.cancel, session=session):
        if isinstance(event, StepFinished):
            items.append(event.item)
            traces.extend(event.traces)
        elif isinstance(event, RunFinished):
            final_response = event.response
    assert final_response is not None  # engine.stream always ends with RunFinished
    return final_response, items, traces


def _system_messages(request: RunRequest) -> dict[str, Any]:
    """The run's own system prompt changes, carried into the agent that heals a step."""
    return {"extend_system_message": request.extend_system_message,
            "override_system_message": request.override_system_message}


def healed_step(state: ReplayState, step: WorkflowStep, kept: list[tuple[WorkflowAction, ActionResult]],
                 items: list[HistoryItem], end_url: str | None) -> WorkflowStep:
    """The new version of a step: what still replayed, then the agent's working actions, as templates."""
    values = {k: as_text(v) for k, v in state.values.items()}
    agent_actions = [a for item in items for a in item.actions if kept_action(a) and not a.is_done]
    # What the agent did again (the same text typed, the same option chosen) replaces the replayed copy.
    redone = {(a.name, a.params.get("text")) for a in agent_actions if traits_of(a.name).fills_field}
    actions = [a for a, r in kept if (r.name, r.params.get("text")) not in redone]
    for j, a in enumerate(agent_actions):
        params = template_params(a.name, a.params, values)
        expect = action_expect(a, params, values)
        if j == len(agent_actions) - 1 and end_url and (expect is None or expect.url is None):
            expect = (expect or Expect()).model_copy(update={"url": url_pattern(end_url, values)})
        actions.append(WorkflowAction(name=a.name, params=params, locators=template_locators(a.locators, values),
                                      expect=expect))
    return step.model_copy(update={"actions": actions or list(step.actions), "healed": True})


def final_step(state: ReplayState, step: WorkflowStep, items: list[HistoryItem],
                end_url: str | None) -> WorkflowStep | None:
    """The new result template from the agent's `done`: parameters as {{name}}, page values as {{page:N}}
    references; None when the agent's result could not be traced (its literal text is never kept)."""
    values = {k: as_text(v) for k, v in state.values.items()}
    done = next((a for item in reversed(items) for a in reversed(item.actions)
                 if a.is_done and a.success and not a.error), None)
    if done is None or not isinstance(done.locators, dict) or "template" not in done.locators:
        return None
    action = result_action(done, values, structured=state.structured)
    return step.model_copy(update={"actions": [action], "healed": True, "url": end_url or step.url})
