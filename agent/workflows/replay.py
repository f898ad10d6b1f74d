"""Replaying a cached workflow: every action without a model, one step healed by the agent if needed.

`replay()` yields the engine's event types (RunStarted mode="replay", StepStarted/StepFinished per
workflow step, RunFinished) so the run service, the store and the viewer treat it like a run.
Parameter values come from `request.workflow_params`, else from aligning the new prompt with the
recorded one, else from one logged model call. Each element action finds its element through the
locator cascade (agent.workflows.locate), runs through `agent.engine.actions.execute` and is checked where
that is possible (typed value, chosen option, URL reached). A step that cannot be replayed goes to
the agent alone (`engine.stream` on the open tabs, a few steps at most); the healed step's actions
become a new version of the workflow (`RunFinished.healed_workflow`). The result is the recorded
`done` with the new values, and values read off the final page again where they came from the page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator


from agent.engine import actions as act
from agent.engine import loop as engine
from agent.engine.browser import Browser, BrowserError, BrowserSession, use_session
from agent.engine.loop import EngineOptions, RunClock, RunStopped, resolve_options
from agent.engine.llm import LLM, LLMError, key_status, litellm_model
from agent.models import (
    ActionResult, Event, HistoryItem, LLMCall, RunFinished, RunRequest, RunResponse, RunStarted, StepFinished,
    StepStarted, Usage, schema_problem, utcnow,
)
from agent.engine.page import find_element
from agent.workflows.locate import LocateError, locate
from agent.workflows.result import ResultUnavailable, derive_result
from agent.workflows.document import (
    URL_PARAMS, Expect, Workflow, WorkflowAction, WorkflowError, WorkflowStep, action_expect, as_text, coerce_value,
    kept_action, load_workflow, match_prompt, params_messages, parse_json_object, render, render_text, render_url,
    template_locators, template_params, url_matches, url_pattern,
)

__all__ = ["HEAL_MAX_STEPS", "replay", "resolve_values", "run_source"]

log = logging.getLogger(__name__)

HEAL_MAX_STEPS = 4
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

    def __init__(self, request: RunRequest, doc: Workflow, options: EngineOptions, browser: Browser,
                 llm: LLM | None, cancel: asyncio.Event | None, heal_max_steps: int, find_timeout_s: float) -> None:
        super().__init__(options.timeout_s, cancel)
        self.request, self.doc, self.options, self.browser = request, doc, options, browser
        self.llm = llm
        self.heal_max_steps, self.find_timeout_s = heal_max_steps, find_timeout_s
        self.history: list[HistoryItem] = []
        self.usage = Usage()
        self.values: dict[str, Any] = {}
        self.pending_calls: list[LLMCall] = []  # made before the first step (parameter values)
        self.replayed = self.healed = 0
        self.new_steps: list[WorkflowStep] = list(doc.steps)
        self.structured = doc.result_format == "json" or request.json_schema is not None or request.response_format == "json"

    def model(self) -> LLM | None:
        """The model for parameters and healing (created on first need); None when no key is set."""
        if self.llm is None and key_status(self.request.provider)[0]:
            self.llm = LLM(self.request.provider, self.request.model)
        return self.llm

    def finish(self, *, result: Any = None, success: bool = False, error: str | None = None,
               workflow_id: int | None = None, healed: dict[str, Any] | None = None) -> RunFinished:
        response = RunResponse(
            history=list(self.history), result=result, is_done=success, is_successful=success,
            status="success" if success and error is None else "failure", error=error, mode="replay",
            model=self.request.model, provider=self.request.provider, started_at=self.started_at,
            finished_at=utcnow(), duration_ms=(time.monotonic() - self.started) * 1000, usage=self.usage,
            workflow_id=workflow_id, replayed_steps=self.replayed, healed_steps=self.healed,
        )
        return RunFinished(response=response, healed_workflow=healed)


# ------------------------------------------------------------------ parameter values
async def resolve_values(request: RunRequest, doc: Workflow, llm_factory: Any) -> tuple[dict[str, Any], list[LLMCall], str]:
    """(values, model calls made, how) for the workflow's parameters and this request."""
    params = {p.name: p for p in doc.parameters}
    values: dict[str, Any] = {}
    given = request.workflow_params or {}
    for name, value in given.items():
        if name not in params:
            raise WorkflowError(f"workflow_params.{name}",
                                f"unknown parameter; this workflow takes: {', '.join(params) or '(none)'}")
        values[name] = coerce_value(params[name], value, field=f"workflow_params.{name}")
    missing = [n for n in params if n not in values]
    if not missing:
        return values, [], "given" if params else "none"
    found = match_prompt(doc.prompt, doc.parameters, request.prompt)
    for name in list(missing):
        if name in found:
            try:
                values[name] = coerce_value(params[name], found[name], field=f"workflow_params.{name}")
                missing.remove(name)
            except WorkflowError:
                pass  # a word that does not fit the type: ask the model
    if not missing:
        return values, [], "prompt"
    llm = llm_factory()
    if llm is None:
        _ready, advice = key_status(request.provider)
        raise WorkflowError("workflow_params", f"could not read {', '.join(missing)} from the prompt; give them in "
                                               f"workflow_params, or let a model read them ({advice})")
    try:
        reply = await llm.complete(params_messages(doc, request.prompt), None, purpose="params")
    except LLMError as exc:
        calls = [exc.call] if exc.call else []
        raise _ParamsFailed(f"could not read {', '.join(missing)} from the prompt and the model call failed ({exc}); "
                            "give them in workflow_params", calls) from None
    answer = parse_json_object(reply.text) or {}
    for name in list(missing):
        if name in answer and answer[name] is not None:
            try:
                values[name] = coerce_value(params[name], answer[name], field=f"workflow_params.{name}")
                missing.remove(name)
            except WorkflowError:
                pass
    if missing:
        raise _ParamsFailed(f"could not read {', '.join(missing)} from the prompt, nor from the model's answer; "
                            "give them in workflow_params", [reply.call])
    return values, [reply.call], "model"


class _ParamsFailed(Exception):
    def __init__(self, message: str, calls: list[LLMCall]) -> None:
        super().__init__(message)
        self.calls = calls


# ------------------------------------------------------------------ one action
async def _run_action(state: _Replay, ctx: act.Context, session: BrowserSession, action: WorkflowAction) -> ActionResult:
    """Find the element, act through agent.engine.actions, check the effect; _StepFailed when it did not take."""
    values = state.values
    url_keys = URL_PARAMS.get(action.name, ())
    params = {k: (render_url(v, values) if k in url_keys and isinstance(v, str) else render(v, values))
              for k, v in action.params.items()}
    if action.name in ELEMENT_ACTIONS and action.locators and "index" in action.params:
        locators = render(action.locators, values)
        page = await session.ensure_page()
        try:
            found = await state.bounded(locate(page, locators, timeout_s=state.find_timeout_s))
        except LocateError as exc:
            raise _StepFailed(str(exc), ActionResult(
                name=action.name, params=params, success=False, error=str(exc), include_in_memory=True,
                locators=locators, executed_by="replay")) from None
        params["index"] = found.mark  # the located element, as agent.engine.actions knows elements
    result, _outcome = await state.bounded(act.execute(ctx, action.name, params, executed_by="replay"))
    if result.error:
        raise _StepFailed(f"{action.name} failed: {result.error}", result)
    problem = await state.bounded(_check(session, action, params, values))
    if problem:
        raise _StepFailed(problem, result.model_copy(update={"success": False, "error": problem}))
    return result


async def _check(session: BrowserSession, action: WorkflowAction, params: dict[str, Any],
                 values: dict[str, Any]) -> str | None:
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
                *, final: bool) -> tuple[RunResponse, list[HistoryItem]]:
    """Let the agent do this one step on the open tabs (a few steps at most); its response and steps."""
    values = state.values
    description = render_text(step.description, values)
    if final:
        prompt = FINAL_HEAL_PROMPT.format(task=state.request.prompt, done=_done_so_far(state), step=description,
                                          problem=problem)
        heal_request = RunRequest(prompt=prompt, model=state.request.model, provider=state.request.provider,
                                  response_format="json" if state.structured else "text",
                                  json_schema=state.request.json_schema or state.doc.json_schema)
    else:
        later = state.doc.steps[n] if n < len(state.doc.steps) else None
        later_text = f" (the next one is: {render_text(later.description, values)})" if later else ""
        prompt = HEAL_PROMPT.format(task=state.request.prompt, done=_done_so_far(state), step=description,
                                    recorded=_recorded(step, values), problem=problem, later=later_text)
        heal_request = RunRequest(prompt=prompt, model=state.request.model, provider=state.request.provider)
    options = state.options.model_copy(update={
        "max_steps": state.heal_max_steps, "start_url": None, "max_failures": 2,
        "screenshot_dir": (state.options.screenshot_dir / f"heal-{n:03d}") if state.options.screenshot_dir else None,
        "timeout_s": max(1.0, state.deadline - time.monotonic()),
    })
    items: list[HistoryItem] = []
    final_response: RunResponse | None = None
    async for event in engine.stream(heal_request, browser=state.browser, llm=state.model(), options=options,
                                     cancel=state.cancel, session=session):
        if isinstance(event, StepFinished):
            items.append(event.item)
        elif isinstance(event, RunFinished):
            final_response = event.response
    assert final_response is not None  # engine.stream always ends with RunFinished
    return final_response, items


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


def _final_step(state: _Replay, step: WorkflowStep, response: RunResponse, end_url: str | None) -> WorkflowStep:
    """The new result template: the agent's `done`, with parameter values as placeholders."""
    values = {k: as_text(v) for k, v in state.values.items()}
    key = "data" if state.structured else "text"
    done = WorkflowAction(name="done", params=template_params("done", {key: response.result, "success": True}, values))
    return step.model_copy(update={"actions": [done], "healed": True, "url": end_url or step.url})


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
    try:
        result = await state.bounded(derive_result(
            session, done.params, state.values, step.url, structured=state.structured,
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
) -> AsyncIterator[Event]:
    """Replay `workflow` for `request`: RunStarted(mode="replay"), a StepStarted/StepFinished per step, RunFinished.

    `workflow` is a document or a stored record ({id, version, document}); with `session` the replay
    runs in those open tabs, else in a new context of `browser` (or of a browser of its own).
    """
    request = request if isinstance(request, RunRequest) else RunRequest.model_validate(request)
    options = resolve_options(request, options, {})
    yield RunStarted(request=request, model=llm.name if llm else litellm_model(request.provider, request.model),
                     mode="replay")
    try:
        doc, stored_id, _version = load_workflow(workflow)
    except WorkflowError as exc:
        yield _early_end(request, f"the workflow cannot be replayed: {exc}", workflow_id)
        return
    workflow_id = workflow_id if workflow_id is not None else stored_id
    own_browser = browser is None and session is None
    browser = browser or Browser()
    state = _Replay(request, doc, options, browser, llm, cancel, heal_max_steps, find_timeout_s)
    final: RunFinished | None = None
    try:
        try:
            state.values, state.pending_calls, _how = await state.bounded(resolve_values(request, doc, state.model))
        except WorkflowError as exc:
            final = state.finish(error=str(exc), workflow_id=workflow_id)
        except _ParamsFailed as exc:
            for call in exc.calls:
                state.usage = state.usage.add(call)
            final = state.finish(error=str(exc), workflow_id=workflow_id)
        if final is None:
            async with use_session(browser, session) as tabs:
                async for event in _loop(state, tabs, workflow_id):
                    if isinstance(event, RunFinished):
                        final = event
                    else:
                        yield event
    except RunStopped as exc:
        final = state.finish(error=str(exc), workflow_id=workflow_id)
    except BrowserError as exc:
        final = state.finish(error=str(exc), workflow_id=workflow_id)
    except Exception as exc:
        if not type(exc).__module__.startswith("playwright"):
            raise  # our own bug: the run service ends the run with the reason
        final = state.finish(error=f"browser error: {str(exc).splitlines()[0]}", workflow_id=workflow_id)
    finally:
        if own_browser:
            await browser.close()
    yield final or state.finish(error="the replay ended without a result", workflow_id=workflow_id)


def _early_end(request: RunRequest, error: str, workflow_id: int | None) -> RunFinished:
    """The end of a replay that could not start (no usable workflow)."""
    now = utcnow()
    return RunFinished(response=RunResponse(
        status="failure", is_done=False, is_successful=False, error=error, mode="replay", model=request.model,
        provider=request.provider, started_at=now, finished_at=now, duration_ms=0.0, workflow_id=workflow_id))


async def _loop(state: _Replay, session: BrowserSession, workflow_id: int | None) -> AsyncIterator[Event]:
    """Each step: replay its actions (or derive the result); heal it if that fails; record it."""
    doc, values = state.doc, state.values
    ctx = act.Context(session=session, allowed_domains=state.options.allowed_domains,
                      blocked_domains=state.options.blocked_domains, extract_fn=None)
    result: Any = None
    for n, step in enumerate(doc.steps, 1):
        state.check()
        page = await session.ensure_page()
        start_url, start_title = page.url, await _title(session)  # the page the step began on, as in agent steps
        yield StepStarted(step=n, url=start_url)
        started_at, t0 = utcnow(), time.monotonic()
        calls, state.pending_calls = list(state.pending_calls), []
        results: list[ActionResult] = []
        kept: list[tuple[WorkflowAction, ActionResult]] = []
        problem: str | None = None
        final = n == len(doc.steps)
        if final:
            result, problem = await _result(state, session, step)
            if problem is None:
                key = "data" if state.structured else "text"
                done, _ = await act.execute(ctx, "done", {key: result, "success": True}, structured=state.structured,
                                            executed_by="replay")
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
        executed_by = "replay"
        heal_error: str | None = None
        if problem is None:
            state.replayed += 1
        elif state.model() is None:
            heal_error = f"no model to heal with ({key_status(state.request.provider)[1]})"
        else:
            executed_by = "heal"
            response, items = await _heal(state, session, n, step, problem, final=final)
            for item in items:
                calls.extend(item.llm_calls)
                # The heal's own `done` ("step achieved") is not the run's end, except on the final step.
                results.extend(a.model_copy(update={"executed_by": "heal"}) for a in item.actions
                               if final or not a.is_done)
            end_url = (await session.ensure_page()).url
            if response.status != "success":
                heal_error = response.error or "the agent could not do the step"
            else:
                state.healed += 1
                if final:
                    result = response.result
                    state.new_steps[n - 1] = _final_step(state, step, response, end_url)
                else:
                    state.new_steps[n - 1] = _healed_step(state, step, kept, items, end_url)
        for call in calls:
            state.usage = state.usage.add(call)
        item = HistoryItem(
            description=render_text(step.description, values), actions=results, step=n, url=start_url,
            title=start_title, screenshot=await _screenshot(state, session, n), started_at=started_at,
            duration_ms=(time.monotonic() - t0) * 1000, llm_ms=sum(c.latency_ms for c in calls), llm_calls=calls,
            executed_by=executed_by,
        )
        state.history.append(item)
        yield StepFinished(item=item)
        if heal_error is not None:
            yield state.finish(error=f"step {n} '{step.description}' could not be replayed or healed: {problem}; "
                                     f"healing: {heal_error}", workflow_id=workflow_id)
            return
    healed = None
    if state.healed:
        healed = Workflow.model_validate(doc.model_copy(update={"steps": state.new_steps}).model_dump()).model_dump(mode="json")
    yield state.finish(result=result, success=True, workflow_id=workflow_id, healed=healed)


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


# ------------------------------------------------------------------ the run service's source
async def run_source(
    store: Any,
    browser: Browser,
    request: RunRequest,
    *,
    task_id: int | None,
    run_id: int | None,
    options: EngineOptions,
    cancel: asyncio.Event | None,
) -> AsyncIterator[Event]:
    """Events for a run with use_cached_workflow: a replay when a workflow is known, else the agent.

    The workflow is the inline `cached_workflow`, else `workflow_id`, else the one linked to the task.
    A healed replay's new version is saved here (same id, next version; an inline workflow is saved
    as a new one) before the end of the run is passed on.
    """
    workflow: dict[str, Any] | None = request.cached_workflow
    if workflow is None and request.workflow_id is not None:
        workflow = await asyncio.to_thread(store.get_workflow, request.workflow_id)
        if workflow is None:
            yield RunStarted(request=request, model=litellm_model(request.provider, request.model), mode="replay")
            yield _early_end(request, f"workflow_id: workflow {request.workflow_id} not found; list the saved ones "
                                      "with GET /api/workflows", request.workflow_id)
            return
    if workflow is None and task_id is not None:
        task = await asyncio.to_thread(store.get_task, task_id)
        linked = (task or {}).get("workflow_id")
        if linked is not None:
            workflow = await asyncio.to_thread(store.get_workflow, int(linked))
    if workflow is None:  # nothing cached yet: the agent does the task (and its run can be saved)
        async for event in engine.stream(request, browser=browser, options=options, cancel=cancel):
            yield event
        return
    async for event in replay(request, workflow, browser=browser, options=options, cancel=cancel,
                              workflow_id=request.workflow_id):
        if isinstance(event, RunFinished) and event.healed_workflow is not None:
            event = await _save_healed(store, event, workflow, run_id)
        yield event


async def _save_healed(store: Any, event: RunFinished, workflow: dict[str, Any], run_id: int | None) -> RunFinished:
    """Store the healed version; the run's response names the workflow it now lives in."""
    wid = event.response.workflow_id
    version = workflow.get("version") if isinstance(workflow.get("document"), dict) else None
    try:
        new_id, _new_version = await asyncio.to_thread(
            store.save_workflow, event.healed_workflow, workflow_id=wid, source_run_id=run_id,
            healed_from_version=version)
    except Exception:  # the run itself succeeded; the repair is lost, which the log must say
        log.exception("could not save the healed version of workflow %s", wid)
        return event
    return RunFinished(response=event.response.model_copy(update={"workflow_id": new_id}),
                       healed_workflow=event.healed_workflow, at=event.at)
