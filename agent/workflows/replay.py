"""Replaying a cached workflow: every action without a model, one step healed by the agent if needed.

`replay()` yields the engine's event types (RunStarted mode="replay", StepStarted/StepFinished per
workflow step, RunFinished) so the run service, the store and the viewer treat it like a run.
Parameter values come from `request.workflow_params`, else from aligning the new prompt with the
recorded one, else from one logged model call. Each element action finds its element through the
locator cascade (agent.workflows.locate), runs through `agent.engine.actions.execute` and is checked where
that is possible (typed value, chosen option, URL reached). A step that cannot be replayed goes to
the agent alone (agent.workflows.heal: `engine.stream` on the open tabs, a few steps at most); the
healed step's actions become a new version of the workflow (a `WorkflowHealed` event just before
`RunFinished`; the run service saves it). The result is the recorded `done` with the new values,
and values read off the final page again where they came from the page.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from agent.engine import actions as act
from agent.engine.browser import Browser, BrowserSession
from agent.engine.guard import NavigationGuard
from agent.engine.llm import LLM, litellm_model
from agent.engine.loop import EngineOptions, resolve_options
from agent.engine.page import find_element
from agent.engine.runtime import RunStopped, StepClock, in_session
from agent.engine.secrets import SECRET_RE, SecretError, Secrets, placeholder
from agent.models import (
    ActionResult,
    Event,
    HistoryItem,
    RunFinished,
    RunRequest,
    RunStarted,
    StepFinished,
    StepStarted,
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
from agent.workflows.heal import HEAL_MAX_STEPS, Healed, heal_step
from agent.workflows.locate import LocateError, element_label, locate
from agent.workflows.params import ParamsFailed, prompt_with_values, resolve_values
from agent.workflows.result import ResultUnavailable, derive_result
from agent.workflows.state import ReplayState, StepFailed, StepLog
from agent.workflows.template import render, render_text, render_url, url_matches

__all__ = ["FIND_TIMEOUT_S", "HEAL_MAX_STEPS", "replay", "replay_step"]

log = logging.getLogger(__name__)

FIND_TIMEOUT_S = 5.0
URL_TIMEOUT_S = 5.0
ELEMENT_ACTIONS = act.ELEMENT_ACTIONS


# ------------------------------------------------------------------ one action
async def _run_action(state: ReplayState, ctx: act.Context, session: BrowserSession,
                      action: WorkflowAction) -> ActionResult:
    """Find the element, act through agent.engine.actions, check the effect; StepFailed when it did not take."""
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
            raise StepFailed(str(exc), ActionResult(
                name=action.name, params=params, success=False, error=str(exc), include_in_memory=True,
                locators=locators, executed_by="replay")) from None
        params["index"] = found.mark  # the located element, as agent.engine.actions knows elements
        result, _outcome = await state.bounded(act.execute(ctx, action.name, params, executed_by="replay"))
        result = _shown(result, found.mark, locators)
    else:
        result, _outcome = await state.bounded(act.execute(ctx, action.name, params, executed_by="replay"))
    if result.error:
        raise StepFailed(f"{action.name} failed: {result.error}", result)
    problem = state.secrets.scrub(await state.bounded(_check(session, action, params, values, state.secrets)))
    if problem:
        raise StepFailed(problem, result.model_copy(update={"success": False, "error": problem}))
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
    if act.traits_of(action.name).fills_field and (expect.value is not None or expect.selected is not None):
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


# ------------------------------------------------------------------ the result
def _schema_problem(state: ReplayState, value: Any) -> str | None:
    """Why the result does not match the run's JSON schema (as in agent runs), or None."""
    schema = state.request.json_schema or (state.doc.json_schema if state.structured else None)
    if schema is None or not state.structured:
        return None
    return schema_problem(schema, value)


async def _result(state: ReplayState, session: BrowserSession, step: WorkflowStep) -> tuple[Any, str | None]:
    """(result, None), or (None, why it cannot be given) for the final step."""
    done = step.actions[-1]
    page_values = (done.locators or {}).get("page_values")
    items = (done.locators or {}).get("items")
    try:
        # A recorded page whose address held a secret is not opened again (it would hold a placeholder).
        ref_url = None if SECRET_RE.search(step.url or "") else step.url
        result = await state.bounded(derive_result(
            session, done.params, state.values, ref_url, structured=state.structured, marks=state.marks,
            page_values=page_values if isinstance(page_values, list) else None,
            items=items if isinstance(items, list) else None,
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
    started_at = utcnow()

    def started(said: RunRequest) -> RunStarted:  # the run's start, with the prompt it is logged under
        return RunStarted(request=said, model=llm.name if llm else litellm_model(said.provider, said.model),
                          mode="replay", at=started_at)

    try:
        doc, stored_id, version = load_workflow(workflow)
    except WorkflowError as exc:
        yield started(request)
        yield _early_end(request, f"the workflow cannot be replayed: {exc}", workflow_id)
        return
    workflow_id = workflow_id if workflow_id is not None else stored_id
    state = ReplayState(request, doc, options, llm, cancel, heal_max_steps, find_timeout_s, workflow_id)
    state.params_clock = StepClock()
    try:
        with state.params_clock.part("llm"):  # no model call when the values are given or read off the prompt
            state.values, state.pending, _how = await state.bounded(resolve_values(request, doc, state.model))
    except (RunStopped, WorkflowError, ParamsFailed) as exc:
        yield started(request)
        yield _values_failed(state, exc)
        return
    # The run is logged, healed and reported under a prompt that says the values it uses.
    state.use_prompt(prompt_with_values(request.prompt, doc, state.values))
    yield started(state.request)
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


def _values_failed(state: ReplayState, exc: Exception) -> RunFinished:
    """The end of a replay whose parameter values could not be had (the model calls tried are counted)."""
    if isinstance(exc, RunStopped):
        return state.finish(str(exc), exc.stop_reason)
    for call in exc.calls if isinstance(exc, ParamsFailed) else []:
        state.tally.usage = state.tally.usage.add(call)
    return state.finish(str(exc))


def _early_end(request: RunRequest, error: str, workflow_id: int | None) -> RunFinished:
    """The end of a replay that could not start (no usable workflow)."""
    return RunFinished(response=Tally(request, mode="replay").response(error=error, stop_reason="replay_failed",
                                                                       workflow_id=workflow_id))


async def _loop(state: ReplayState, session: BrowserSession) -> AsyncGenerator[Event, None]:
    """Each step: replay its actions (or derive the result); heal it if that fails; record it."""
    doc = state.doc
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
        done = StepLog(clock=clock, traces=list(state.pending), calls=[t.call for t in state.pending])
        state.pending = []
        final = n == len(doc.steps)
        with clock.part("browser"):
            if final:
                result, problem = await _final_result(state, ctx, session, step, done)
            else:
                problem = await _replay_actions(state, ctx, session, step, done)
        if problem is None:
            state.replayed += 1
            healed = Healed(by="replay")
        else:
            healed = await heal_step(state, session, n, step, problem, done, final=final)
            if final and healed.error is None:
                result = healed.result
        with clock.part("browser"):
            shot = await _screenshot(state, session, n)
        item = state.secrets.scrub_model(HistoryItem(
            description=render_text(step.description, state.values), actions=done.results, step=n, url=start_url,
            title=start_title, screenshot=shot, started_at=started_at, llm_calls=done.calls, executed_by=healed.by,
            **clock.split(),
        ))
        state.tally.add_step(item)
        yield StepFinished(item=item, traces=done.traces)
        if healed.error is not None:
            yield state.finish(f"step {n} '{render_text(step.description, state.values)}' could not be replayed "
                               f"or healed: {problem}; healing: {healed.error}", healed.stop_reason)
            return
    yield state.finish(result=result, success=True)


async def _replay_actions(state: ReplayState, ctx: act.Context, session: BrowserSession, step: WorkflowStep,
                          done: StepLog) -> str | None:
    """Replay a step's recorded actions in order, into `done`; why the first that failed did, or None."""
    for action in step.actions:
        try:
            result = await _run_action(state, ctx, session, action)
        except StepFailed as exc:
            done.results.append(exc.result)
            return exc.reason
        done.results.append(result)
        done.kept.append((action, result))
    return None


async def _final_result(state: ReplayState, ctx: act.Context, session: BrowserSession, step: WorkflowStep,
                        done: StepLog) -> tuple[Any, str | None]:
    """The last step: the result read again (and the `done` that gives it, into `done`), or why it cannot be."""
    result, problem = await _result(state, session, step)
    if problem is None:
        key = "data" if state.structured else "text"
        finished, _ = await act.execute(ctx, "done", {key: result, "success": True}, structured=state.structured,
                                        executed_by="replay")
        done.results.append(finished)
    return result, problem


def _healed_document(state: ReplayState) -> dict[str, Any]:
    """The workflow with its healed steps: the new version the run service saves."""
    steps = state.new_steps
    return Workflow.model_validate(state.doc.model_copy(update={"steps": steps}).model_dump()).model_dump(mode="json")


async def _title(session: BrowserSession) -> str | None:
    try:
        return await asyncio.wait_for((await session.ensure_page()).title(), 2)
    except Exception:
        return None


async def _screenshot(state: ReplayState, session: BrowserSession, n: int) -> str | None:
    if not state.options.screenshot_dir:
        return None
    try:
        return await asyncio.wait_for(session.screenshot(Path(state.options.screenshot_dir) / f"step-{n:03d}.jpg"), 15)
    except Exception:
        return None


# ------------------------------------------------------------------ a fork's prefix (agent.workflows.fork)
async def replay_step(state: ReplayState, ctx: act.Context, session: BrowserSession, step: WorkflowStep,
                      done: StepLog) -> str | None:
    """Replay one step's recorded actions into `done`, as a replay does; why the first that failed did, or None."""
    return await _replay_actions(state, ctx, session, step, done)
