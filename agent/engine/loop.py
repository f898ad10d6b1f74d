"""The agent loop: observe the page, ask the model, run its actions, record; yield an event per change.

`stream()` is the one loop; `arun()`/`run()` consume it and keep the last event. The engine knows
nothing of storage or UI: it takes the request, a browser, a model and an optional cancel event.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from agent.engine import actions as act
from agent.engine import prompts
from agent.engine.browser import Browser, BrowserSession
from agent.engine.guard import NavigationGuard
from agent.engine.llm import LLM, LLMError, Reply, key_status, preload
from agent.engine.page import Observation, observe
from agent.engine.provenance import trace_result
from agent.engine.resume import Prefix, PrefixBroken
from agent.engine.runtime import RunClock, RunStopped, StepClock, in_session
from agent.engine.secrets import Secrets, secrets_note
from agent.engine.trace import make_trace
from agent.modelmap import model_info
from agent.models import (
    ENGINE_FIELDS,
    FIELDS,
    ActionResult,
    Event,
    HistoryItem,
    LLMCall,
    LLMTrace,
    RequestError,
    RunFinished,
    RunRequest,
    RunResponse,
    RunStarted,
    StepFinished,
    StepStarted,
    StopReason,
    Tally,
    schema_problem,
    utcnow,
)
from agent.rules.toolschema import for_provider

SETUP_TIMEOUT_S = 15.0


class EngineOptions(BaseModel):
    """Bounds and switches of one run.

    A request field marked `engine` (agent.models.ENGINE_FIELDS) sets the option of the same name, whose
    default is that field's `engine_default` (what leaving it empty means); tests/test_models.py checks
    that each has its option here, of the same type.
    """

    model_config = ConfigDict(frozen=True)

    # What a request may set (its fields marked `engine`):
    start_url: str | None = FIELDS["start_url"].engine_default
    max_steps: int = FIELDS["max_steps"].engine_default
    use_vision: bool = FIELDS["use_vision"].engine_default
    allowed_domains: list[str] | None = FIELDS["allowed_domains"].engine_default
    # The engine's own bounds and switches:
    max_actions_per_step: int = 5
    max_failures: int = 3
    timeout_s: float = 600.0
    blocked_domains: list[str] | None = None
    screenshot_dir: Path | None = None
    max_validation_retries: int = 2
    check_page: str | None = None  # a JS expression evaluated on the final page (an experiment's page check)
    setup_script: str | None = None  # JS run on the start page first; a string it returns is the page's instruction


def resolve_options(request: RunRequest, options: EngineOptions | None, overrides: dict[str, Any]) -> EngineOptions:
    """Options from the caller, then the request's engine fields, then keyword overrides."""
    merged = (options or EngineOptions()).model_dump()
    for name in ENGINE_FIELDS:
        value = getattr(request, name)
        if value is not None:
            merged[name] = value
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return EngineOptions(**merged)


class _Run(RunClock):
    """The mutable state of one run, kept out of the events the loop yields."""

    def __init__(self, request: RunRequest, options: EngineOptions, llm: LLM, cancel: asyncio.Event | None,
                 fork: Prefix | None = None):
        super().__init__(options.timeout_s, cancel)
        self.request, self.options, self.llm, self.fork = request, options, llm, fork
        self.tally = Tally(request)
        if fork is not None:
            self.tally.parent_run_id, self.tally.forked_at_step = fork.parent_run_id, fork.step
        self.task = request.prompt  # what the model is asked: the prompt, with the page's own instruction if any
        self.secrets = Secrets(request.sensitive_data)  # placeholders to the model, values to the page only
        self.notes: list[str] = []  # for the model, in the next step's message
        self.notices: list[str] = []  # for the user, in the response's `notes`
        self.step_calls: list[LLMCall] = []
        self.shape = for_provider(request.json_schema, request.provider) if request.structured else None
        self.tools = act.tools(json_schema=request.json_schema, response_format=request.response_format,
                               provider=request.provider)
        self.vision = options.use_vision  # turned off when the provider refuses the screenshots
        self.step_traces: list[LLMTrace] = []  # one per step call, in the same order
        self.system_prompt = prompts.system_prompt(override=request.override_system_message,
                                                   extend=request.extend_system_message)
        self.clock = StepClock()  # the current step's
        self.seen: list[tuple[int, str]] = []  # (step, page text) of every page observed: where results come from

    def memory(self) -> list[HistoryItem]:
        """The earlier steps as the model reads them: a fork's prefix as its parent's model saw it, then ours."""
        if self.fork is None:
            return self.tally.history
        return [*self.fork.memory, *self.tally.history[len(self.fork.memory):]]

    async def ask(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, *,
                  purpose: str = "step", observation: str | None = None, shot_step: int | None = None) -> Reply:
        """One model call (the step's model time, retries and backoff included); what it cost and its trace are
        kept for the step's record, failed or not."""
        try:
            with self.clock.part("llm"):
                reply = await self.llm.complete(messages, tools, purpose=purpose)
        except LLMError as exc:
            if exc.call is not None:
                self.step_calls.append(exc.call)
                self.step_traces.append(self._trace(exc.call, messages, tools, None, observation, shot_step))
            raise
        self.step_calls.append(reply.call)
        self.step_traces.append(self._trace(reply.call, messages, tools, reply.raw_message, observation, shot_step))
        return reply

    def _trace(self, call: LLMCall, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
               raw: dict[str, Any] | None, observation: str | None, shot_step: int | None) -> LLMTrace:
        # The messages hold placeholders already; scrubbing again costs nothing without sensitive_data
        # and keeps a value the observation missed out of the trace.
        return make_trace(call, self.secrets.scrub_value(messages), tools, self.secrets.scrub_value(raw),
                          observation=self.secrets.scrub(observation), screenshot_step=shot_step)

    async def extract(self, query: str, page: str) -> str:
        content = prompts.EXTRACT_PROMPT.format(query=query, page=(self.secrets.scrub(page) or "")[:40_000])
        reply = await self.ask([{"role": "user", "content": content}], None, purpose="extract")
        return reply.text

    def finish(self, error: str | None = None, stop_reason: StopReason | None = None, *, result: Any = None,
               done: bool = False, success: bool = False) -> RunFinished:
        """The end of the run, as it stands (a secret value in the result shows as its placeholder)."""
        return RunFinished(response=self.secrets.scrub_model(self.tally.response(
            result=result, done=done, success=success, error=error, stop_reason=stop_reason,
            notes=list(self.notices))))


async def stream(
    request: RunRequest | dict[str, Any],
    *,
    browser: Browser | None = None,
    llm: LLM | None = None,
    options: EngineOptions | None = None,
    cancel: asyncio.Event | None = None,
    session: BrowserSession | None = None,
    fork: Prefix | None = None,
    **overrides: Any,
) -> AsyncGenerator[Event, None]:
    """Run the agent, yielding RunStarted, then StepStarted/StepFinished per step, then RunFinished.

    With `session`, the run continues in those open tabs (a workflow heals one step this way) and
    leaves them open; otherwise it opens its own context on `browser` (or on a browser of its own).
    With `fork` (agent.workflows.fork.fork_from), steps before `fork.step` are the parent's, done again
    without the model; the agent takes over at `fork.step`, remembering the parent's earlier steps.
    """
    request = request if isinstance(request, RunRequest) else RunRequest.model_validate(request)
    if request.fork is not None and fork is None:
        raise RequestError("fork", "the engine has no run log to read the parent from: pass "
                                   "fork=fork_from(parent_response, step=S) (agent.workflows.fork), or POST /api/runs")
    options = resolve_options(request, options, overrides)
    given_llm = llm is not None
    llm = llm or LLM(request.provider, request.model, price=request.price_per_mtok)
    run = _Run(request, options, llm, cancel, fork)
    yield RunStarted(request=request, model=llm.name)
    ready, advice = key_status(request.provider)
    if not ready and not given_llm:  # say which variable to set before opening a browser
        yield run.finish(advice, "missing_key")
        return
    if options.use_vision and not await asyncio.to_thread(llm.supports_vision):  # reads litellm's map
        yield run.finish(f"the model {llm.model!r} takes no images according to litellm's model map; "
                         "turn use_vision off or pick a vision model", "model_error")
        return
    # Overlap the one-time litellm import (~10 s) with the browser start instead of the first step.
    warm = asyncio.ensure_future(asyncio.to_thread(preload)) if not given_llm else None
    try:
        guard = NavigationGuard(allowed_domains=options.allowed_domains, blocked_domains=options.blocked_domains)
        async for event in in_session(lambda tabs: _loop(run, tabs), run.finish, browser=browser, session=session,
                                      guard=guard, check_page=options.check_page):
            yield event
    finally:
        if warm is not None and not warm.done():
            warm.add_done_callback(lambda t: t.cancelled() or t.exception())


@dataclass(frozen=True)
class _Step:
    """One finished step, as the loop decides what comes next: its record and how it ended."""

    item: HistoryItem
    results: list[ActionResult]  # as run (the item holds them scrubbed)
    description: str
    done: act.Outcome | None = None  # the `done` outcome when the run is over
    fatal: LLMError | None = None  # a model error retrying cannot help
    invalid: int = 0  # `done` results the JSON schema refused
    provider_failed: bool = False  # the provider, not the model's reply, failed this step


async def _loop(run: _Run, session: BrowserSession) -> AsyncGenerator[Event, None]:
    options = run.options
    info = await asyncio.to_thread(model_info, run.request.provider, run.llm.model)  # litellm loads meanwhile anyway
    if (info or {}).get("supports_function_calling") is False:
        run.notices.append(f"litellm marks {run.llm.model!r} as lacking function calling; the actions were sent as "
                           "tools anyway (the provider may refuse them)")
    ctx = act.Context(session=session, allowed_domains=options.allowed_domains,
                      blocked_domains=options.blocked_domains, extract_fn=run.extract, secrets=run.secrets or None)
    if run.secrets:  # every screenshot paints them over, wherever the page shows them
        await session.hide(run.secrets)
    failures = validation_failures = 0
    first = 1
    if run.fork is not None and run.fork.step > 1:  # the parent's steps before the fork's, done again (start page too)
        try:
            async for event in run.fork.replay(session, request=run.request, options=options, llm=run.llm,
                                               cancel=run.cancel):
                if isinstance(event, StepFinished):
                    run.tally.add_step(event.item)
                yield event
        except PrefixBroken as exc:
            yield run.finish(str(exc), exc.stop_reason)
            return
        first = run.fork.step
    elif options.start_url:
        yield StepStarted(step=1)
        item = await _open_start_page(run, ctx, session)
        run.tally.add_step(item)
        yield StepFinished(item=item)
        first = 2
    for step in range(first, options.max_steps + 1):
        run.check()
        page = await session.ensure_page()
        yield StepStarted(step=step, url=run.secrets.scrub(page.url))
        taken = await _take_step(run, ctx, session, page, step)
        run.tally.add_step(taken.item)
        yield StepFinished(item=taken.item, traces=list(run.step_traces))
        validation_failures += taken.invalid
        failed = not taken.results or all(r.error for r in taken.results)
        failures = failures + 1 if failed else 0
        end = _end_of_run(run, taken, failures, validation_failures)
        if end is not None:
            yield end
            return
    yield run.finish(f"reached max_steps ({options.max_steps}) without calling done", "max_steps")


async def _take_step(run: _Run, ctx: act.Context, session: BrowserSession, page: Any, step: int) -> _Step:
    """Observe the page, ask the model, run its actions: the step's record."""
    options, request = run.options, run.request
    started_at, run.clock = utcnow(), StepClock()
    run.step_calls, run.step_traces = [], []
    shot_path = options.screenshot_dir / f"step-{step:03d}.jpg" if options.screenshot_dir else None
    with run.clock.part("browser"):
        obs, shot, pending_shot = await _look(run, session, page, shot_path)
    obs = run.secrets.scrub_model(obs)  # a typed secret shows as its placeholder
    run.seen.append((step, obs.text))
    message = prompts.step_message(
        task=run.task, step=step, max_steps=options.max_steps, history=run.memory(),
        tabs=run.secrets.scrub_value(session.tab_list()), current_tab=session.current_id, url=obs.url,
        title=obs.title, page=obs.text, notes=[*run.notes, *secrets_note(run.secrets, obs.url)],
        result_hint=prompts.result_hint(request.json_schema, request.response_format),
    )
    run.notes = []
    results: list[ActionResult] = []
    description = ""
    done_outcome: act.Outcome | None = None
    fatal: LLMError | None = None
    invalid, provider_failed = 0, False
    try:
        reply = await _ask(run, message, shot, observation=obs.text, step=step)
        if pending_shot is not None:  # taken while the model thought; done before the page changes
            with run.clock.part("browser"):
                shot, pending_shot = await run.bounded(pending_shot), None
        description = reply.text.splitlines()[0][:300] if reply.text else ""
        results, done_outcome, invalid = await _act(run, ctx, session, reply)
    except LLMError as exc:
        fatal = exc if exc.fatal else None
        if exc.kind in ("model_output", "length"):  # the model's own mistake: show it, as a bad tool call
            description = f"The model's reply was refused: {exc}"[:300]
            results.append(ActionResult(name=act.NO_ACTION, success=False, include_in_memory=True,
                                        error=str(exc)[:1000]))
        else:
            description = f"The model could not be used: {exc}"
            provider_failed = True
    if pending_shot is not None:  # the model call failed: the screenshot is still the step's
        with run.clock.part("browser"):
            shot = await run.bounded(pending_shot)
    if not description:
        description = ", ".join(f"{r.name} {r.params.get('index', '')}".strip() for r in results) or "no action"
    item = run.secrets.scrub_model(HistoryItem(
        description=description, actions=results, step=step, url=obs.url, title=obs.title, screenshot=shot,
        started_at=started_at, llm_calls=list(run.step_calls), **run.clock.split(),
    ))
    return _Step(item, results, description, done_outcome, fatal, invalid, provider_failed)


def _end_of_run(run: _Run, taken: _Step, failures: int, validation_failures: int) -> RunFinished | None:
    """How the run ends after this step, or None when it goes on."""
    if taken.fatal is not None:  # retrying cannot help (a key, a model name, a request the provider refuses)
        stop: StopReason = "missing_key" if taken.fatal.kind == "missing_key" else "model_error"
        return run.finish(f"the model could not be used ({taken.fatal.kind}): {taken.fatal}", stop)
    if taken.done is not None:
        result_value = taken.done.data if run.request.structured else taken.done.content
        if taken.done.success:
            return run.finish(result=result_value, done=True, success=True)
        return run.finish("the agent reported that it could not complete the task", "done_failure",
                          result=result_value, done=True)
    spent = _over_budget(run)
    if spent is not None:
        return run.finish(f"spent ${spent:.4f} on model calls, the run's budget (max_cost_usd "
                          f"{run.request.max_cost_usd:g}); stopped before the next step", "budget")
    if validation_failures > run.options.max_validation_retries:
        return run.finish(f"the result did not match the JSON schema after {validation_failures} attempts: "
                          f"{taken.results[-1].error}", "invalid_result")
    if failures >= run.options.max_failures:
        last = taken.description if not taken.results else (taken.results[-1].error or taken.description)
        # Steps lost to the provider (5xx, rate limits after retries) are not the agent's failures.
        return run.finish(f"stopped after {failures} consecutive failures; last: {last}",
                          "model_error" if taken.provider_failed else "max_failures")
    return None


def _over_budget(run: _Run) -> float | None:
    """What the run's model calls cost so far once that reaches its max_cost_usd, else None (no budget, or
    under it). Calls whose price is unknown count 0: a budget is refused at validation on a model without one."""
    budget = run.request.max_cost_usd
    if budget is None:
        return None
    spent = sum(c.cost_usd or 0.0 for item in run.tally.history for c in item.llm_calls)
    return spent if spent >= budget else None


def _check_result(run: _Run, result: ActionResult, outcome: act.Outcome) -> tuple[ActionResult, act.Outcome | None]:
    """Validate `done`'s data against the run's JSON schema; an invalid result goes back to the model."""
    if run.shape is not None:  # values the provider could only take as JSON text come back decoded
        data = run.shape.decode(outcome.data)
        result, outcome = result.model_copy(update={"data": data}), replace(outcome, data=data)
    schema = run.request.json_schema
    problem = schema_problem(schema, outcome.data) if schema is not None else None
    if problem is None:
        return result, outcome
    bad = result.model_copy(update={"is_done": False, "success": False,
                                    "error": f"{problem}. Call done again with corrected data."})
    return bad, None


async def _with_sources(run: _Run, session: BrowserSession, result: ActionResult,
                        outcome: act.Outcome) -> ActionResult:
    """The `done` result with where its values were read (for cached workflows); unchanged if that fails."""
    value = outcome.data if run.request.structured else outcome.content
    try:
        page = await session.ensure_page()
        traced = await run.bounded(trace_result(page, value, run.seen))
    except (RunStopped, asyncio.CancelledError):
        raise
    except Exception:  # a page that went away: the run's result stands, only without its sources
        return result
    return result.model_copy(update={"locators": traced})


async def _ask(run: _Run, message: str, shot: str | None, *, observation: str, step: int) -> Reply:
    """The step's model call, with the screenshot when the run uses vision. A provider that refuses
    images gets the same message without them, and the run goes on without screenshots."""
    content: Any = message
    vision = bool(run.vision and shot)
    if vision:
        b64 = base64.b64encode(Path(str(shot)).read_bytes()).decode()
        content = [{"type": "text", "text": message},
                   {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64}"}}]
    messages = [{"role": "system", "content": run.system_prompt}, {"role": "user", "content": content}]
    try:
        reply: Reply = await run.bounded(run.ask(messages, run.tools, observation=observation,
                                                 shot_step=step if vision else None))
    except LLMError as exc:
        if exc.kind != "vision_refused":
            raise
        run.vision = False
        run.notices.append(f"the provider refused the screenshots ({exc}); the run went on without images")
        messages[1] = {"role": "user", "content": message}
        reply = await run.bounded(run.ask(messages, run.tools, observation=observation))
    return reply


async def _open_start_page(run: _Run, ctx: act.Context, session: BrowserSession) -> HistoryItem:
    """Step 1 when the run has a start page: open it (and set it up, for a task whose page needs it)."""
    options = run.options
    run.clock, started_at = StepClock(), utcnow()
    description = "Open the start page"
    with run.clock.part("browser"):
        result, _ = await run.bounded(act.execute(ctx, "navigate", {"url": options.start_url}))
        page = await session.ensure_page()
        if options.setup_script and not result.error:
            instruction = await run.bounded(_setup(page, options.setup_script))
            run.task = instruct(run.request.prompt, instruction)
            description += f"; the page's instruction: {instruction}" if instruction else "; set it up"
        title = await page.title()
    return run.secrets.scrub_model(HistoryItem(
        description=description, actions=[result], step=1, url=page.url, title=title,
        started_at=started_at, **run.clock.split()))


async def _act(run: _Run, ctx: act.Context, session: BrowserSession,
               reply: Reply) -> tuple[list[ActionResult], act.Outcome | None, int]:
    """Run the reply's actions in order: (their results, the `done` outcome if the run is over, how many
    `done` results the JSON schema refused). A failure or a page change skips the rest, saying so."""
    options, invalid = run.options, 0
    results: list[ActionResult] = []
    if not reply.tool_calls:
        finish = reply.call.finish_reason
        why = f" (finish_reason={finish})" if finish not in (None, "stop") else ""
        nothing = f"no action was called{why}: call one of the tools (done when finished)"
        results.append(ActionResult(name=act.NO_ACTION, success=False, include_in_memory=True, error=nothing))
    for n, call in enumerate(reply.tool_calls):
        if n >= options.max_actions_per_step:
            run.notes.append(f"only the first {options.max_actions_per_step} actions of a step are run")
            break
        with run.clock.part("browser"):
            result, outcome = await run.bounded(act.execute(
                ctx, call.name, call.arguments, parse_error=call.parse_error,
                structured=run.request.structured and call.name == "done"))
        if outcome is not None and outcome.is_done:
            result, outcome = _check_result(run, result, outcome)
            if outcome is None:
                invalid += 1
            elif outcome.success:
                with run.clock.part("browser"):
                    result = await _with_sources(run, session, result, outcome)
        results.append(result)
        if outcome is not None and outcome.is_done:
            return results, outcome, invalid
        if result.error or (outcome is not None and outcome.changed_page):
            rest = reply.tool_calls[n + 1:options.max_actions_per_step]
            if rest:
                why = "it failed" if result.error else "the page changed"
                skipped = ", ".join(c.name for c in rest)
                run.notes.append(f"after {call.name} {why}, these were not run: {skipped}")
            break
    return results, None, invalid


async def _look(run: _Run, session: BrowserSession, page: Any,
                shot_path: Path | None) -> tuple[Observation, str | None, asyncio.Future[str | None] | None]:
    """The page's observation and screenshot. When the model sees screenshots both are awaited; otherwise the
    screenshot is only for the viewer and the log, so it goes on while the model is asked (the page does not
    change meanwhile) and the loop awaits it (the third value) before the first action."""
    if shot_path is None:
        return await run.bounded(observe(page)), None, None
    if run.vision:
        obs, shot = await run.bounded(asyncio.gather(observe(page), session.screenshot(shot_path)))
        return obs, shot, None
    pending: asyncio.Future[str | None] = asyncio.ensure_future(session.screenshot(shot_path))
    # A run stopped before awaiting it leaves it to end alone; its error is retrieved, never logged as lost.
    pending.add_done_callback(lambda t: t.cancelled() or t.exception())
    return await run.bounded(observe(page)), None, pending


async def arun(request: RunRequest | dict[str, Any], **kwargs: Any) -> RunResponse:
    """Run to the end and return the response."""
    final: RunResponse | None = None
    async for event in stream(request, **kwargs):
        if isinstance(event, RunFinished):
            final = event.response
    assert final is not None
    return final


def run(request: RunRequest | dict[str, Any], **kwargs: Any) -> RunResponse:
    """Blocking twin of `arun`, for scripts (not for use inside a running event loop)."""
    return asyncio.run(arun(request, **kwargs))


async def _setup(page: Any, script: str) -> str:
    """Run a setup script on the start page; its string result (the page's instruction), or ""."""
    try:
        value = await asyncio.wait_for(page.evaluate(script), SETUP_TIMEOUT_S)
    except Exception as exc:  # a broken setup is the run's problem, said to the model and the log
        return f"(the page's setup failed: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})"
    return value.strip()[:2000] if isinstance(value, str) else ""


def instruct(prompt: str, instruction: str) -> str:
    """The task as the model reads it: {instruction} in the prompt replaced by the page's own, else appended."""
    if not instruction:
        return prompt
    if "{instruction}" in prompt:
        return prompt.replace("{instruction}", instruction)
    return f"{prompt}\nThe page's instruction: {instruction}"
