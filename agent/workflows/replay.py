"""Replaying a cached workflow: every action without a model, one step healed by the agent if needed.

`replay()` yields the engine's event types (RunStarted mode="replay", StepStarted/StepFinished per
workflow step, RunFinished) so the run service, the store and the viewer treat it like a run.
Parameter values come from `request.workflow_params`, else from aligning the new prompt with the
recorded one, else from one logged model call. Each element action finds its element through the
locator cascade (agent.workflows.locate), runs through `agent.engine.actions.execute` and is checked where
that is possible (typed value, chosen option, URL reached). A step that cannot be replayed goes to
the agent alone (`engine.stream` on the open tabs, a few steps at most); the healed step's actions
become a new version of the workflow (a `WorkflowHealed` event just before `RunFinished`; the run service
saves it). The result is the recorded
`done` with the new values, and values read off the final page again where they came from the page.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from agent.engine import actions as act
from agent.engine import loop as engine
from agent.engine.browser import Browser, BrowserSession
from agent.engine.guard import NavigationGuard
from agent.engine.llm import LLM, key_status, litellm_model
from agent.engine.loop import EngineOptions, resolve_options
from agent.engine.page import find_element
from agent.engine.runtime import RunClock, RunStopped, StepClock, in_session
from agent.engine.secrets import SECRET_RE, SecretError, Secrets, placeholder
from agent.models import (
    ActionResult,
    Event,
    ExecutedBy,
    HistoryItem,
    LLMTrace,
    RunFinished,
    RunRequest,
    RunResponse,
    RunStarted,
    StepFinished,
    StepStarted,
    StopReason,
    Tally,
    WorkflowHealed,
    schema_problem,
    utcnow,
)
from agent.workflows.document import (
    URL_PARAMS,
    Expect,
    Workflow,
    WorkflowAction,
    WorkflowError,
    WorkflowStep,
    load_workflow,
)
from agent.workflows.locate import FIRST_MARK, LocateError, element_label, locate
from agent.workflows.params import ParamsFailed, resolve_values
from agent.workflows.record import action_expect, kept_action, result_action, template_locators
from agent.workflows.result import ResultUnavailable, derive_result
from agent.workflows.template import (
    as_text,
    render,
    render_text,
    render_url,
    template_params,
    url_matches,
    url_pattern,
)

__all__ = ["HEAL_MAX_STEPS", "replay"]

log = logging.getLogger(__name__)

HEAL_MAX_STEPS = 4
# A heal that ended for one of these reasons ends the replay for the same reason (not the workflow's fault).
PASSED_ON: tuple[StopReason, ...] = ("cancelled", "timeout", "model_error", "missing_key", "browser_error")
FIND_TIMEOUT_S = 5.0
URL_TIMEOUT_S = 5.0
ELEMENT_ACTIONS = act.ELEMENT_ACTIONS

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


class _StepFailed(Exception):
    """A replayed action failed or its check did not hold; `result` is the action as it ended."""

    def __init__(self, reason: str, result: ActionResult) -> None:
        super().__init__(reason)
        self.reason, self.result = reason, result


class _Replay(RunClock):
    """The mutable state of one replay."""

    def __init__(self, request: RunRequest, doc: Workflow, options: EngineOptions, llm: LLM | None,
                 cancel: asyncio.Event | None, heal_max_steps: int, find_timeout_s: float,
                 workflow_id: int | None) -> None:
        super().__init__(options.timeout_s, cancel)
        self.request, self.doc, self.options = request, doc, options
        self.llm = llm
        self.heal_max_steps, self.find_timeout_s = heal_max_steps, find_timeout_s
        self.workflow_id = workflow_id
        self.tally = Tally(request, mode="replay")
        self.values: dict[str, Any] = {}
        self.pending: list[LLMTrace] = []  # model calls made before the first step (parameter values)
        self.replayed = self.healed = 0
        self.new_steps: list[WorkflowStep] = list(doc.steps)
        self.structured = request.structured or doc.result_format == "json"
        self.marks = itertools.count(FIRST_MARK)  # indices for located elements, never observe()'s
        self.secrets = Secrets(request.sensitive_data)  # <secret>name</secret> in the steps: typed, never shown
        self.params_clock: StepClock | None = None  # reading the parameter values, counted in step 1

    @property
    def history(self) -> list[HistoryItem]:
        """The steps replayed so far."""
        return self.tally.history

    def model(self) -> LLM | None:
        """The model for parameters and healing (created on first need); None when no key is set."""
        if self.llm is None and key_status(self.request.provider)[0]:
            self.llm = LLM(self.request.provider, self.request.model)
        return self.llm

    def finish(self, error: str | None = None, stop_reason: StopReason | None = "replay_failed", *,
               result: Any = None, success: bool = False) -> RunFinished:
        """The end of the replay, as it stands (a value read off a page shows as its placeholder)."""
        return RunFinished(response=self.secrets.scrub_model(self.tally.response(
            result=result, done=success, success=success, error=error, stop_reason=stop_reason,
            workflow_id=self.workflow_id, replayed_steps=self.replayed, healed_steps=self.healed)))


# ------------------------------------------------------------------ one action
async def _run_action(state: _Replay, ctx: act.Context, session: BrowserSession,
                      action: WorkflowAction) -> ActionResult:
    """Find the element, act through agent.engine.actions, check the effect; _StepFailed when it did not take."""
    values = state.values
    url_keys = URL_PARAMS.get(action.name, ())
    params = {k: (render_url(v, values) if k in url_keys and isinstance(v, str) else render(v, values))
              for k, v in action.params.items()}
    if action.name in ELEMENT_ACTIONS and action.locators and "index" in action.params:
        locators = render(action.locators, values)
        page = await session.ensure_page()
        try:
            found = await state.bounded(locate(page, locators, mark=next(state.marks), timeout_s=state.find_timeout_s))
        except LocateError as exc:
            raise _StepFailed(str(exc), ActionResult(
                name=action.name, params=params, success=False, error=str(exc), include_in_memory=True,
                locators=locators, executed_by="replay")) from None
        params["index"] = found.mark  # the located element, as agent.engine.actions knows elements
        result, _outcome = await state.bounded(act.execute(ctx, action.name, params, executed_by="replay"))
        result = _shown(result, found.mark, locators)
    else:
        result, _outcome = await state.bounded(act.execute(ctx, action.name, params, executed_by="replay"))
    if result.error:
        raise _StepFailed(f"{action.name} failed: {result.error}", result)
    problem = state.secrets.scrub(await state.bounded(_check(session, action, params, values, state.secrets)))
    if problem:
        raise _StepFailed(problem, result.model_copy(update={"success": False, "error": problem}))
    return result


def _shown(result: ActionResult, mark: int, locators: dict[str, Any]) -> ActionResult:
    """The action as the viewer and the log show it: the element's label, never the replay's internal mark."""
    label = element_label(locators)
    params = {k: v for k, v in result.params.items() if k != "index"}
    params["element"] = label

    def relabel(text: str | None) -> str | None:
        return None if text is None else text.replace(f"[{mark}]", label)

    return result.model_copy(update={"params": params, "extracted_content": relabel(result.extracted_content),
                                     "error": relabel(result.error)})


async def _check(session: BrowserSession, action: WorkflowAction, params: dict[str, Any],
                 values: dict[str, Any], secrets: Secrets) -> str | None:
    """What did not take effect (value typed, option chosen, page reached), or None; waits are bounded."""
    expect = action.expect or Expect()
    if action.name in ("input", "select_dropdown") and (expect.value is not None or expect.selected is not None):
        page = await session.ensure_page()
        try:
            locator = await find_element(page, params["index"])
        except LookupError:
            locator = None  # the page moved on (a select that submits its form): the URL check decides
        if locator is not None and expect.value is not None:
            wanted = render_text(expect.value, values)
            if SECRET_RE.search(wanted):  # the field holds the value, not the placeholder
                try:
                    wanted = secrets.reveal(wanted, page.url)
                except SecretError as exc:
                    return str(exc)
            try:
                value = await locator.input_value(timeout=1_000)
            except Exception:
                value = None  # contenteditable and custom widgets have no value to compare
            if value is not None and value != wanted:
                return f"typed {wanted!r} but the field holds {value!r}"
        if locator is not None and expect.selected is not None:
            wanted = render_text(expect.selected, values)
            try:
                shown = await locator.evaluate(
                    "el => el.tagName === 'SELECT' && el.selectedIndex >= 0 ? "
                    "[el.options[el.selectedIndex].text.trim(), el.value] : null", timeout=1_000)
            except Exception:
                shown = None  # an ARIA combobox or a page that moved on
            if shown is not None and wanted not in shown:
                return f"chose {wanted!r} but the dropdown shows {shown[0]!r}"
    if expect.url:
        pattern = render_url(expect.url, values)
        page = await session.ensure_page()
        if not url_matches(pattern, page.url):
            try:
                await page.wait_for_url(lambda u: url_matches(pattern, u), timeout=URL_TIMEOUT_S * 1000,
                                        wait_until="domcontentloaded")
            except Exception:
                page = await session.ensure_page()  # a tab may have opened meanwhile
                if not url_matches(pattern, page.url):
                    return f"expected to reach {pattern} but the page is {page.url}"
    return None


# ------------------------------------------------------------------ healing
def _done_so_far(state: _Replay) -> str:
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


async def _heal(state: _Replay, session: BrowserSession, n: int, step: WorkflowStep, problem: str,
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


def _healed_step(state: _Replay, step: WorkflowStep, kept: list[tuple[WorkflowAction, ActionResult]],
                 items: list[HistoryItem], end_url: str | None) -> WorkflowStep:
    """The new version of a step: what still replayed, then the agent's working actions, as templates."""
    values = {k: as_text(v) for k, v in state.values.items()}
    agent_actions = [a for item in items for a in item.actions if kept_action(a) and not a.is_done]
    # What the agent did again (the same text typed, the same option chosen) replaces the replayed copy.
    redone = {(a.name, a.params.get("text")) for a in agent_actions if a.name in ("input", "select_dropdown")}
    actions = [a for a, r in kept if (r.name, r.params.get("text")) not in redone]
    for j, a in enumerate(agent_actions):
        params = template_params(a.name, a.params, values)
        expect = action_expect(a, params, values)
        if j == len(agent_actions) - 1 and end_url and (expect is None or expect.url is None):
            expect = (expect or Expect()).model_copy(update={"url": url_pattern(end_url, values)})
        actions.append(WorkflowAction(name=a.name, params=params, locators=template_locators(a.locators, values),
                                      expect=expect))
    return step.model_copy(update={"actions": actions or list(step.actions), "healed": True})


def _final_step(state: _Replay, step: WorkflowStep, items: list[HistoryItem],
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


# ------------------------------------------------------------------ the result
def _schema_problem(state: _Replay, value: Any) -> str | None:
    """Why the result does not match the run's JSON schema (as in agent runs), or None."""
    schema = state.request.json_schema or (state.doc.json_schema if state.structured else None)
    if schema is None or not state.structured:
        return None
    return schema_problem(schema, value)


async def _result(state: _Replay, session: BrowserSession, step: WorkflowStep) -> tuple[Any, str | None]:
    """(result, None), or (None, why it cannot be given) for the final step."""
    done = step.actions[-1]
    page_values = (done.locators or {}).get("page_values")
    try:
        # A recorded page whose address held a secret is not opened again (it would hold a placeholder).
        ref_url = None if SECRET_RE.search(step.url or "") else step.url
        result = await state.bounded(derive_result(
            session, done.params, state.values, ref_url, structured=state.structured, marks=state.marks,
            page_values=page_values if isinstance(page_values, list) else None,
            allowed_domains=state.options.allowed_domains, blocked_domains=state.options.blocked_domains))
    except ResultUnavailable as exc:
        return None, str(exc)
    problem = _schema_problem(state, result)
    return (None, problem) if problem else (result, None)


# ------------------------------------------------------------------ the loop
async def replay(
    request: RunRequest | dict[str, Any],
    workflow: dict[str, Any],
    *,
    browser: Browser | None = None,
    session: BrowserSession | None = None,
    llm: LLM | None = None,
    options: EngineOptions | None = None,
    cancel: asyncio.Event | None = None,
    workflow_id: int | None = None,
    heal_max_steps: int = HEAL_MAX_STEPS,
    find_timeout_s: float = FIND_TIMEOUT_S,
) -> AsyncGenerator[Event, None]:
    """Replay `workflow` for `request`: RunStarted(mode="replay"), a StepStarted/StepFinished per step, RunFinished.

    `workflow` is a document or a stored record ({id, version, document}); with `session` the replay
    runs in those open tabs, else in a new context of `browser` (or of a browser of its own).
    """
    request = request if isinstance(request, RunRequest) else RunRequest.model_validate(request)
    options = resolve_options(request, options, {})
    yield RunStarted(request=request, model=llm.name if llm else litellm_model(request.provider, request.model),
                     mode="replay")
    try:
        doc, stored_id, version = load_workflow(workflow)
    except WorkflowError as exc:
        yield _early_end(request, f"the workflow cannot be replayed: {exc}", workflow_id)
        return
    workflow_id = workflow_id if workflow_id is not None else stored_id
    state = _Replay(request, doc, options, llm, cancel, heal_max_steps, find_timeout_s, workflow_id)
    state.params_clock = StepClock()
    try:
        with state.params_clock.part("llm"):  # no model call when the values are given or read off the prompt
            state.values, state.pending, _how = await state.bounded(resolve_values(request, doc, state.model))
    except RunStopped as exc:
        yield state.finish(str(exc), exc.stop_reason)
        return
    except WorkflowError as exc:
        yield state.finish(str(exc))
        return
    except ParamsFailed as exc:
        for call in exc.calls:
            state.tally.usage = state.tally.usage.add(call)
        yield state.finish(str(exc))
        return
    missing = sorted(set(SECRET_RE.findall(doc.model_dump_json())) - set(state.secrets.names()))
    if missing:  # a workflow never keeps a secret: each replay gives them again
        yield state.finish(f"sensitive_data: the workflow types {', '.join(placeholder(m) for m in missing)}; "
                           "give their values in sensitive_data")
        return
    guard = NavigationGuard(allowed_domains=options.allowed_domains, blocked_domains=options.blocked_domains)
    async for event in in_session(lambda tabs: _loop(state, tabs), state.finish, browser=browser, session=session,
                                  guard=guard, check_page=options.check_page):
        if isinstance(event, RunFinished) and any(a is not b for a, b in zip(state.new_steps, doc.steps)):
            yield WorkflowHealed(document=_healed_document(state), workflow_id=workflow_id, version=version)
        yield event


def _early_end(request: RunRequest, error: str, workflow_id: int | None) -> RunFinished:
    """The end of a replay that could not start (no usable workflow)."""
    return RunFinished(response=Tally(request, mode="replay").response(error=error, stop_reason="replay_failed",
                                                                       workflow_id=workflow_id))


async def _loop(state: _Replay, session: BrowserSession) -> AsyncGenerator[Event, None]:
    """Each step: replay its actions (or derive the result); heal it if that fails; record it."""
    doc, values = state.doc, state.values
    ctx = act.Context(session=session, allowed_domains=state.options.allowed_domains,
                      blocked_domains=state.options.blocked_domains, extract_fn=None, secrets=state.secrets or None)
    if state.secrets:  # every screenshot paints them over, wherever the page shows them
        await session.hide(state.secrets)
    result: Any = None
    for n, step in enumerate(doc.steps, 1):
        state.check()
        page = await session.ensure_page()
        start_url, start_title = page.url, await _title(session)  # the page the step began on, as in agent steps
        yield StepStarted(step=n, url=start_url)
        started_at, clock = utcnow(), StepClock()
        if n == 1 and state.params_clock is not None:  # the parameters were read (maybe by a model) for this step
            clock = state.params_clock
        traces, state.pending = list(state.pending), []
        calls = [t.call for t in traces]
        results: list[ActionResult] = []
        kept: list[tuple[WorkflowAction, ActionResult]] = []
        problem: str | None = None
        final = n == len(doc.steps)
        with clock.part("browser"):
            if final:
                result, problem = await _result(state, session, step)
                if problem is None:
                    key = "data" if state.structured else "text"
                    done, _ = await act.execute(ctx, "done", {key: result, "success": True},
                                                structured=state.structured, executed_by="replay")
                    results.append(done)
            else:
                for action in step.actions:
                    try:
                        done_action = await _run_action(state, ctx, session, action)
                    except _StepFailed as exc:
                        results.append(exc.result)
                        problem = exc.reason
                        break
                    results.append(done_action)
                    kept.append((action, done_action))
        executed_by: ExecutedBy = "replay"
        heal_error: str | None = None
        heal_stop: StopReason = "replay_failed"
        if problem is None:
            state.replayed += 1
        elif state.model() is None:
            heal_error = f"no model to heal with ({key_status(state.request.provider)[1]})"
        else:
            executed_by = "heal"
            response, items, heal_traces = await _heal(state, session, n, step, problem, final=final)
            traces.extend(heal_traces)
            for item in items:
                clock.add(llm_ms=item.llm_ms, browser_ms=item.browser_ms)
                calls.extend(item.llm_calls)
                # The heal's own `done` ("step achieved") is not the run's end, except on the final step.
                results.extend(a.model_copy(update={"executed_by": "heal"}) for a in item.actions
                               if final or not a.is_done)
            end_url = (await session.ensure_page()).url
            if response.status != "success":
                heal_error = response.error or "the agent could not do the step"
                if response.stop_reason in PASSED_ON:
                    heal_stop = response.stop_reason
            else:
                state.healed += 1
                if final:
                    result = response.result
                    new_step = _final_step(state, step, items, end_url)
                    if new_step is not None:  # else nothing to save that would not be this replay's literal answer
                        state.new_steps[n - 1] = new_step
                else:
                    state.new_steps[n - 1] = _healed_step(state, step, kept, items, end_url)
        with clock.part("browser"):
            shot = await _screenshot(state, session, n)
        item = state.secrets.scrub_model(HistoryItem(
            description=render_text(step.description, values), actions=results, step=n, url=start_url,
            title=start_title, screenshot=shot, started_at=started_at, llm_calls=calls, executed_by=executed_by,
            **clock.split(),
        ))
        state.tally.add_step(item)
        yield StepFinished(item=item, traces=traces)
        if heal_error is not None:
            yield state.finish(f"step {n} '{step.description}' could not be replayed or healed: {problem}; "
                               f"healing: {heal_error}", heal_stop)
            return
    yield state.finish(result=result, success=True)


def _healed_document(state: _Replay) -> dict[str, Any]:
    """The workflow with its healed steps: the new version the run service saves."""
    steps = state.new_steps
    return Workflow.model_validate(state.doc.model_copy(update={"steps": steps}).model_dump()).model_dump(mode="json")


async def _title(session: BrowserSession) -> str | None:
    try:
        return await asyncio.wait_for((await session.ensure_page()).title(), 2)
    except Exception:
        return None


async def _screenshot(state: _Replay, session: BrowserSession, n: int) -> str | None:
    if not state.options.screenshot_dir:
        return None
    try:
        return await asyncio.wait_for(session.screenshot(Path(state.options.screenshot_dir) / f"step-{n:03d}.jpg"), 15)
    except Exception:
        return None
