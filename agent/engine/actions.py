"""The agent's actions: plain typed async functions; each tool's JSON schema comes from its signature.

Each is registered with `@action(...)`, whose arguments are its traits (agent.engine.actionkit.Traits:
does it act on an element, which argument holds a value the task chose, which are URLs, does a replay
check the page it reached, is it a no-op for a replay); `ACTIONS` keeps them in the order the model sees.
An action returns an `Outcome` (or raises `ActionError` with a message for the model). `execute()`
validates the model's arguments, runs the action with a time bound and returns the contract's
`ActionResult`. Mistakes of the model (bad arguments, a vanished element, a refused URL) become the
result's `error`; bugs of ours raise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote_plus

from pydantic import ValidationError

from agent.engine.actionkit import Action, ActionError, Context, Outcome, Traits, make_action
from agent.engine.browser import BrowserSession
from agent.engine.interact import Unreachable, Untypable, reach, settle, type_text
from agent.engine.page import OPTIONS_JS, SCROLL_PAGE_JS, ElementNotFound, describe_element, find_element, page_text
from agent.engine.secrets import SecretError
from agent.engine.settle import CLICK_SETTLE_MS
from agent.models import ActionResult, ExecutedBy
from agent.providers import REGISTRY
from agent.rules.policy import PolicyError, check_navigation
from agent.rules.toolschema import for_provider

# Re-exported: what an action is made of lives in agent.engine.actionkit.
__all__ = ["ACTIONS", "ELEMENT_ACTIONS", "NO_ACTION", "Action", "ActionError", "Context", "Outcome", "Traits",
           "done_tool", "execute", "tools", "traits_of"]

ACTION_TIMEOUT_S = 30.0
MAX_WAIT_S = 10.0
MAX_EXTRACT_CHARS = 4000
NO_ACTION = "none"  # the name of a result that stands for no action at all (a reply with no tool call)

ACTIONS: dict[str, Action] = {}  # by name, in the order the model sees the tools
_F = TypeVar("_F", bound=Callable[..., Awaitable[Outcome]])


def action(**traits: Any) -> Callable[[_F], _F]:
    """Register the decorated function as an action with these traits (agent.engine.actionkit.Traits)."""
    def register(fn: _F) -> _F:
        ACTIONS[fn.__name__] = make_action(fn, Traits(**traits))
        return fn
    return register


def traits_of(name: str) -> Traits:
    """The traits of the action called `name` (none for a name no action has, e.g. NO_ACTION)."""
    found = ACTIONS.get(name)
    return found.traits if found is not None else Traits()


# ------------------------------------------------------------------ helpers
async def _settle(session: BrowserSession, *, timeout_ms: int = 3000) -> None:
    """Wait (bounded) for the current page to finish loading after an action that may navigate."""
    page = await session.ensure_page()
    try:
        await page.wait_for_load_state("domcontentloaded", timeout=timeout_ms)
    except Exception:
        pass
    try:
        await page.wait_for_load_state("load", timeout=min(timeout_ms, 1500))
    except Exception:
        pass


async def _goto(ctx: Context, url: str, *, new_tab: bool = False) -> Outcome:
    try:
        url = check_navigation(url, allowed_domains=ctx.allowed_domains, blocked_domains=ctx.blocked_domains)
    except PolicyError as exc:
        raise ActionError(f"navigation refused: {exc}") from None
    if new_tab:
        await ctx.session.new_tab()
    page = await ctx.session.ensure_page()
    began = time.monotonic()
    try:
        await page.goto(url, wait_until="domcontentloaded", timeout=20_000)
    except Exception as exc:
        raise ActionError(f"could not open {url}: {str(exc).splitlines()[0]}") from None
    await _settle(ctx.session, timeout_ms=1500)
    await settle(ctx.session, since=began)  # what the page fetches after loading shows in the first observation
    return Outcome(content=f"opened {page.url}", changed_page=True)


async def _find(ctx: Context, index: int) -> Any:
    page = await ctx.session.ensure_page()
    try:
        return await find_element(page, index)
    except ElementNotFound as exc:
        raise ActionError(str(exc)) from None


async def _element(ctx: Context, index: int) -> tuple[Any, dict[str, Any]]:
    locator = await _find(ctx, index)
    try:
        locators = await describe_element(locator)
    except Exception:
        locators = {}
    return locator, locators


# ------------------------------------------------------------------ actions
@action(url_args=("url",), checks_url=True)
async def navigate(ctx: Context, url: str, new_tab: bool = False) -> Outcome:
    """Open a URL in the current tab, or in a new tab."""
    return await _goto(ctx, url, new_tab=new_tab)


SEARCH_ENGINES = {
    "duckduckgo": "https://duckduckgo.com/?q={}",
    "google": "https://www.google.com/search?q={}",
    "bing": "https://www.bing.com/search?q={}",
}


@action(value="query", value_kind="query")
async def search(ctx: Context, query: str, engine: str = "duckduckgo") -> Outcome:
    """Search the web (engine: duckduckgo, google or bing)."""
    template = SEARCH_ENGINES.get(engine.lower())
    if template is None:
        raise ActionError(f"unknown engine {engine!r}; use one of {', '.join(SEARCH_ENGINES)}")
    return await _goto(ctx, template.format(quote_plus(query)))


@action(checks_url=True)
async def go_back(ctx: Context) -> Outcome:
    """Go back to the previous page."""
    page = await ctx.session.ensure_page()
    try:
        response = await page.go_back(wait_until="domcontentloaded", timeout=10_000)
    except Exception as exc:
        raise ActionError(f"could not go back: {str(exc).splitlines()[0]}") from None
    if response is None and page.url in ("about:blank", ""):
        raise ActionError("there is no previous page in this tab")
    return Outcome(content=f"back to {page.url}", changed_page=True)


@action(replay_noop=True)
async def wait(ctx: Context, seconds: float = 3) -> Outcome:
    """Wait for the page to change (at most 10 seconds)."""
    seconds = max(0.0, min(float(seconds), MAX_WAIT_S))
    await asyncio.sleep(seconds)
    return Outcome(content=f"waited {seconds:g} s")


@action(element=True, checks_url=True)
async def click(ctx: Context, index: int) -> Outcome:
    """Click the element with this index."""
    locator = await _find(ctx, index)
    page = await ctx.session.ensure_page()
    before_url, before_tabs = page.url, set(ctx.session.tabs)
    try:
        aim = await reach(locator, index=index, verb="click")  # a point of it that shows and takes the click
        began = time.monotonic()
        if aim.opens_tab:  # wait for the new tab itself, not a guessed delay
            async with ctx.session.context.expect_page(timeout=5_000):
                await aim.click(timeout=3_000)
        else:
            await aim.click(timeout=3_000)
    except Unreachable as exc:
        raise ActionError(str(exc)) from None
    except Exception as exc:  # the element moved, vanished or never became clickable: no pretend click
        raise ActionError(f"could not click [{index}]: {str(exc).splitlines()[0]}") from None
    await settle(ctx.session, since=began, max_ms=CLICK_SETTLE_MS)  # as long as the page changes, no longer
    new_tabs = set(ctx.session.tabs) - before_tabs
    current = await ctx.session.ensure_page()
    changed = bool(new_tabs) or current.url != before_url
    if changed:
        await _settle(ctx.session)
    locators = aim.locators
    label = locators.get("name") or locators.get("text") or ""
    note = f"clicked [{index}] {label!r}"[:200] + (" (through its label)" if aim.via_label else "")
    if new_tabs:
        note += f"; it opened tab {max(new_tabs)}: {current.url}"
    elif current.url != before_url:
        note += f"; now at {current.url}"
    return Outcome(content=note, locators=locators, changed_page=changed)


@action(element=True)
async def hover(ctx: Context, index: int) -> Outcome:
    """Move the mouse over the element with this index (menus and tooltips that open on hover)."""
    locator = await _find(ctx, index)
    try:
        aim = await reach(locator, index=index, verb="hover")
        began = time.monotonic()
        await aim.hover(timeout=3_000)
    except Unreachable as exc:
        raise ActionError(str(exc)) from None
    except Exception as exc:
        raise ActionError(f"could not hover [{index}]: {str(exc).splitlines()[0]}") from None
    await settle(ctx.session, since=began)  # a menu that opens after a hover delay shows in the next observation
    label = aim.locators.get("name") or aim.locators.get("text") or ""
    return Outcome(content=f"hovered [{index}] {label!r}"[:200], locators=aim.locators)


@action(element=True, value="text", value_kind="typed", void_when=("but the field now holds",))
async def input(ctx: Context, index: int, text: str, clear: bool = True) -> Outcome:
    """Type text into the form field with this index (clear=true replaces what is there)."""
    locator, locators = await _element(ctx, index)
    began = time.monotonic()
    try:
        before, after, kind = await type_text(locator, text, clear=clear)
    except Untypable as exc:
        raise ActionError(f"could not type into [{index}]: it {exc}") from None
    except Exception as exc:
        raise ActionError(f"could not type into [{index}]: {str(exc).splitlines()[0]}") from None
    await settle(ctx.session, since=began)  # suggestions and filtered lists show in the next observation
    if after is None:  # a custom widget: its value cannot be read back
        return Outcome(content=f"typed {text!r} into [{index}]", locators=locators)
    expected = text if clear else f"{before or ''}{text}"
    if after.strip() == expected.strip():
        return Outcome(content=f"typed {text!r} into [{index}]", locators=locators)
    if not after.strip():
        raise ActionError(f"typed into [{index}] but it is still empty: the page did not take the text")
    holds = "a different value" if kind == "password" else repr(after[:200])
    return Outcome(content=f"typed {text!r} into [{index}]; it now holds {holds} (the page changed or limited it)",
                   locators=locators)


@action()
async def send_keys(ctx: Context, keys: str) -> Outcome:
    """Press keys on the focused element, e.g. "Enter", "Escape", "Control+a" (space-separated for a sequence)."""
    page = await ctx.session.ensure_page()
    before, began = page.url, time.monotonic()
    pressed = []
    for key in keys.split()[:20] or [keys]:
        try:
            await page.keyboard.press(key)
        except Exception as exc:
            raise ActionError(f"could not press {key!r}: {str(exc).splitlines()[0]}") from None
        pressed.append(key)
    await settle(ctx.session, since=began)
    changed = page.url != before
    if changed:
        await _settle(ctx.session)
    return Outcome(content=f"pressed {' '.join(pressed)}", changed_page=changed)


@action(element=True, void_when=("nothing moved",))
async def scroll(ctx: Context, down: bool = True, pages: float = 1.0, index: int | None = None) -> Outcome:
    """Scroll the page (or the scrollable element with this index) down or up by a number of pages."""
    pages = max(0.1, min(float(pages), 10.0))
    sign = 1 if down else -1
    page = await ctx.session.ensure_page()
    locators, began = None, time.monotonic()
    if index is not None:
        locator, locators = await _element(ctx, index)
        moved = await locator.evaluate(
            "(el, f) => { const s = el.scrollTop; el.scrollBy(0, el.clientHeight * f); return el.scrollTop - s; }",
            sign * pages,
        )
    else:
        moved = await page.evaluate(SCROLL_PAGE_JS, sign * pages)
    direction = "down" if down else "up"
    if moved:  # content a page appends on scroll (a feed's next page) shows in the next observation
        await settle(ctx.session, since=began)
    if not moved:
        return Outcome(content=f"scrolled {direction} but nothing moved (at the {'end' if down else 'top'})",
                       locators=locators)
    return Outcome(content=f"scrolled {direction} {abs(moved)} px", locators=locators)


@action(element=True, value="text", value_kind="option")
async def select_dropdown(ctx: Context, index: int, text: str) -> Outcome:
    """Choose the option with this text in the dropdown with this index."""
    locator, locators = await _element(ctx, index)
    tag = await locator.evaluate("el => el.tagName")
    if tag == "SELECT":
        before, began = locator.page.url, time.monotonic()
        try:
            await locator.select_option(label=text, timeout=3_000)
        except Exception:
            try:
                await locator.select_option(value=text, timeout=2_000)
            except Exception:
                options = await locator.evaluate(OPTIONS_JS)
                raise ActionError(f"[{index}] has no option {text!r}; options are: {options[:30]}") from None
        await settle(ctx.session, since=began, max_ms=CLICK_SETTLE_MS)  # it may submit its form on change
        if locator.page.url != before:
            await _settle(ctx.session)
            return Outcome(content=f"selected {text!r} in [{index}]; now at {locator.page.url}", locators=locators,
                           changed_page=True)
        try:
            chosen = await locator.evaluate(
                "el => el.options[el.selectedIndex] ? el.options[el.selectedIndex].text.trim() : ''", timeout=2_000)
        except Exception:  # the page replaced the element while navigating
            await _settle(ctx.session)
            return Outcome(content=f"selected {text!r} in [{index}]", locators=locators, changed_page=True)
        return Outcome(content=f"selected {chosen!r} in [{index}]", locators=locators)
    # An ARIA combobox: open it, then click the option by its text.
    page = locator.page
    try:
        await locator.click(timeout=3_000)
        option = page.get_by_role("option", name=text, exact=False).first
        await option.click(timeout=3_000)
    except Exception as exc:
        raise ActionError(f"could not select {text!r} in [{index}]: {str(exc).splitlines()[0]}") from None
    return Outcome(content=f"selected {text!r} in [{index}]", locators=locators)


@action(element=True, replay_noop=True)
async def dropdown_options(ctx: Context, index: int) -> Outcome:
    """List the options of the dropdown with this index."""
    locator, locators = await _element(ctx, index)
    options = await locator.evaluate(OPTIONS_JS)
    if not options:
        raise ActionError(f"[{index}] has no options; it is not a dropdown")
    listing = "\n".join(f"- {o}" for o in options[:100])
    return Outcome(content=f"options of [{index}]:\n{listing}", include_in_memory=True, locators=locators)


@action()
async def switch(ctx: Context, tab_id: int) -> Outcome:
    """Make the tab with this id the current one."""
    if tab_id not in ctx.session.tabs:
        raise ActionError(f"there is no tab {tab_id}; open tabs: {[t for t, _ in ctx.session.tab_list()]}")
    ctx.session.current_id = tab_id
    page = ctx.session.page
    await page.bring_to_front()
    return Outcome(content=f"switched to tab {tab_id}: {page.url}", changed_page=True)


@action()
async def close(ctx: Context, tab_id: int) -> Outcome:
    """Close the tab with this id."""
    page = ctx.session.tabs.get(tab_id)
    if page is None:
        raise ActionError(f"there is no tab {tab_id}; open tabs: {[t for t, _ in ctx.session.tab_list()]}")
    await page.close()
    await ctx.session.ensure_page()
    return Outcome(content=f"closed tab {tab_id}", changed_page=True)


@action(replay_noop=True)
async def extract(ctx: Context, query: str) -> Outcome:
    """Read the whole current page and extract the information asked for in the query."""
    page = await ctx.session.ensure_page()
    text = await page_text(page)
    if ctx.extract_fn is None:
        return Outcome(content=text[:MAX_EXTRACT_CHARS], include_in_memory=True)
    answer = await ctx.extract_fn(query, text)
    return Outcome(content=answer[:MAX_EXTRACT_CHARS], include_in_memory=True)


@action(replay_noop=True)
async def find_text(ctx: Context, text: str) -> Outcome:
    """Scroll to the first place where this text appears on the page."""
    page = await ctx.session.ensure_page()
    for frame in page.frames:
        target = frame.get_by_text(text, exact=False).first
        try:
            if await target.count():
                await target.scroll_into_view_if_needed(timeout=3_000)
                return Outcome(content=f"scrolled to {text!r}")
        except Exception:
            continue
    raise ActionError(f"the text {text!r} is not on the page")


@action()
async def done(ctx: Context, text: str, success: bool = True) -> Outcome:
    """Finish the task: give the final answer and whether the task was achieved."""
    return Outcome(content=text, is_done=True, success=success, include_in_memory=True)


ELEMENT_ACTIONS = frozenset(name for name, a in ACTIONS.items() if a.traits.element)


def done_tool(*, json_schema: dict[str, Any] | None, response_format: str, provider: str = "openai") -> dict[str, Any]:
    """The `done` tool: text by default; in JSON mode `data` is typed by the run's JSON schema, translated
    for the provider (agent.rules.toolschema; the schema's $defs go to the root of the parameters)."""
    if json_schema is None and response_format != "json":
        return ACTIONS["done"].tool()
    shaped = for_provider(json_schema, provider)
    return {
        "type": "function",
        "function": {
            "name": "done",
            "description": "Finish the task: give the result as JSON in `data` and whether the task was achieved.",
            "parameters": {
                "type": "object",
                "properties": {"data": shaped.data, "success": {"type": "boolean", "default": True}},
                "required": ["data"],
                **shaped.defs,
            },
        },
    }


def tools(*, json_schema: dict[str, Any] | None = None, response_format: str = "text",
          provider: str = "openai") -> list[dict[str, Any]]:
    """Every action as an OpenAI tool, `done` shaped by the run's result format and provider."""
    out = [a.tool() for name, a in ACTIONS.items() if name != "done"]
    if REGISTRY[provider].no_empty_parameters:  # e.g. Gemini: a tool without arguments goes without `parameters`
        for tool in out:
            if not tool["function"]["parameters"].get("properties"):
                del tool["function"]["parameters"]
    out.append(done_tool(json_schema=json_schema, response_format=response_format, provider=provider))
    return out


async def execute(
    ctx: Context, name: str, arguments: dict[str, Any] | None, *, parse_error: str | None = None,
    structured: bool = False, executed_by: ExecutedBy = "agent",
) -> tuple[ActionResult, Outcome | None]:
    """Validate and run one action; the model's mistakes, and navigations the policy refused meanwhile,
    become the result's `error`; secret values come back as their placeholders."""
    result, outcome = await _execute(ctx, name, arguments, parse_error=parse_error, structured=structured,
                                     executed_by=executed_by)
    if ctx.session.guard is not None and not result.is_done:
        result, outcome = await ctx.session.guard.settle(ctx.session.tabs, result, outcome)
    if ctx.secrets:
        result, outcome = ctx.secrets.scrub_result(result, outcome)
    return result, outcome


async def _execute(
    ctx: Context, name: str, arguments: dict[str, Any] | None, *, parse_error: str | None,
    structured: bool, executed_by: ExecutedBy,
) -> tuple[ActionResult, Outcome | None]:
    t0 = time.perf_counter()
    params = arguments if arguments is not None else {}

    def failed(message: str, locators: dict[str, Any] | None = None) -> tuple[ActionResult, None]:
        return ActionResult(
            name=name, params=params, success=False, error=message[:1000], include_in_memory=True,
            locators=locators, executed_by=executed_by, duration_ms=(time.perf_counter() - t0) * 1000,
        ), None

    action = ACTIONS.get(name)
    if action is None:
        return failed(f"unknown action {name!r}; use one of: {', '.join(ACTIONS)}")
    if parse_error is not None:
        return failed(f"{name}: {parse_error}; send the arguments as a JSON object")
    if name == "done" and structured:
        if "data" not in params:
            return failed("done: `data` is required: give the result as JSON matching the schema")
        outcome = Outcome(is_done=True, success=bool(params.get("success", True)), data=params["data"],
                          include_in_memory=True)
    else:
        try:
            args = action.params.model_validate(params)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            return failed(f"{name}: bad arguments ({problems})")
        kwargs = args.model_dump()
        run = action.fn(ctx, **kwargs) if action.traits.value_kind != "typed" or not ctx.secrets else \
            ctx.secrets.type_into(ctx.session, kwargs, lambda kw: action.fn(ctx, **kw))  # the one use of a value
        try:
            outcome = await asyncio.wait_for(run, timeout=ACTION_TIMEOUT_S)
        except (ActionError, SecretError) as exc:
            return failed(str(exc))
        except TimeoutError:
            return failed(f"{name} took longer than {ACTION_TIMEOUT_S:g} s and was abandoned")
        except Exception as exc:  # Playwright errors: the page, not our code, refused
            if type(exc).__module__.startswith("playwright"):
                return failed(f"{name} failed: {str(exc).splitlines()[0]}")
            raise
    result = ActionResult(
        name=name, params=params, is_done=outcome.is_done, success=outcome.success,
        extracted_content=outcome.content if not structured or name != "done" else None,
        include_in_memory=outcome.include_in_memory, locators=outcome.locators, executed_by=executed_by,
        duration_ms=(time.perf_counter() - t0) * 1000, data=outcome.data,
    )
    return result, outcome
