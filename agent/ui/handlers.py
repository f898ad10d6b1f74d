"""What the workbench's buttons and boxes do: the Gradio event handlers, all through the run service.

gradio is imported at module level here, and this module only by `build_ui` (importing gradio
takes ~6 s). No `from __future__ import annotations`: Gradio reads the handlers' annotations as
objects to know which ones want the selected row (`gr.SelectData`) or the request (`gr.Request`).
The `run` endpoint's parameters are the request's fields (`api_endpoint` builds its signature).
"""

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, get_args

import gradio as gr

from agent.engine.llm import key_status
from agent.engine.prompts import SYSTEM_PROMPT, system_prompt
from agent.filters import RunFilter
from agent.modelmap import model_notes, model_price
from agent.models import FIELDS, RequestError, RunRequest, parse_json_schema
from agent.models.fields import Section
from agent.providers import DEFAULT_MODELS, PROVIDERS, REGISTRY
from agent.service.door import NotFound
from agent.service.runs import RunService, ServiceBusy, ServiceClosed
from agent.settings import Settings, demo_base_url
from agent.ui.compare import parse_pair, parse_run_id
from agent.ui.experiments import grade_banner
from agent.ui.form import (
    FORM_FIELDS,
    FormError,
    follow_run,
    form_default,
    form_request,
    load_examples,
    request_form_values,
)
from agent.ui.history import HistoryHandlers
from agent.ui.iterate import StepHandlers
from agent.ui.render import render_run_html, render_webhooks, run_id_of
from agent.workflows.document import WorkflowError

MAX_FORKS_SHOWN = 50  # a run's forks listed in the viewer's header (the history filters them all)
MAX_SESSIONS = 1000  # viewers remembered (the run each follows); the oldest are forgotten first
WEBHOOK_WATCH_S = 120.0  # how long the viewer keeps showing new webhook attempts after a run's end
# The form's folded sections, in the page's order (the fields in them say so: About.section).
FOLDED: tuple[Section, ...] = tuple(s for s in get_args(Section) if s != "main")


@dataclass
class _Viewer:
    """What one browser tab's viewer follows, and how to make its follower stop."""

    run_id: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def until_stopped(stream: AsyncIterator[Any], stop: asyncio.Event) -> AsyncIterator[Any]:
    """The items of `stream` until it ends or `stop` is set (then it is closed at once)."""
    items = stream.__aiter__()
    stopper = asyncio.ensure_future(stop.wait())
    nxt: asyncio.Future[Any] | None = None
    try:
        while True:
            nxt = asyncio.ensure_future(items.__anext__())
            done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if nxt not in done:
                nxt.cancel()  # let the stream unwind before it is closed below
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await nxt
                return
            try:
                item = nxt.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stopper.cancel()
        if nxt is not None and not nxt.done():  # cancelled from outside mid-step: the stream must stop running
            nxt.cancel()  # before it can be closed
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await nxt
        closer = getattr(items, "aclose", None)
        if closer is not None:
            await closer()


def _tab(request: Any) -> str | None:
    """The browser tab a request comes from (its Gradio session), or None for a Gradio API call
    (gradio_client marks them `x-gradio-user: api`; parallel calls share a session)."""
    headers = getattr(request, "headers", None) or {}
    if headers.get("x-gradio-user") == "api":
        return None
    return str(getattr(request, "session_hash", None) or "")


class RunHandlers:
    """The run page's handlers: the `run` endpoint (UI and Gradio API), viewer, history, examples."""

    def __init__(self, service: RunService, settings: Settings) -> None:
        self.service, self.settings = service, settings
        self.examples = load_examples(settings.demo_dir)
        self._viewers: dict[str, _Viewer] = {}  # session hash -> the run its viewer follows
        self.log = HistoryHandlers(service)  # the run history and the compare view
        self.steps = StepHandlers(service, self.key_hint)  # "Fork from here" and "Try this step again"
        self.endpoint = api_endpoint(self.run)  # `run` with the request's fields as parameters (Gradio's API)

    def _show(self, request: gr.Request | None, run_id: int) -> tuple[asyncio.Event, int | None]:
        """The viewer of this tab now follows `run_id`: stop its previous follower; (stop event, run shown before).

        Only for the page: calls through Gradio's API (gradio_client marks them `x-gradio-user: api`) share
        a session between parallel calls, and each caller follows its own run to the end.
        """
        session = _tab(request)
        if session is None:
            return asyncio.Event(), None
        previous = self._viewers.pop(session, None)
        if previous is not None:
            previous.stop.set()
        viewer = self._viewers[session] = _Viewer(run_id)
        while len(self._viewers) > MAX_SESSIONS:
            self._viewers.pop(next(iter(self._viewers))).stop.set()
        return viewer.stop, None if previous is None else previous.run_id

    async def follow_new(self, current: Any, request: gr.Request) -> AsyncIterator[Any]:
        """Follow a run another section of the page just started (a workflow's replay): the viewer is now its."""
        run_id = run_id_of(current)
        if run_id is not None:
            self._show(request, run_id)
        async for snapshot in self.follow(current, request):
            yield snapshot

    def _follower(self, request: gr.Request | None, run_id: int) -> asyncio.Event | None:
        """The stop event to follow `run_id` with in this tab, or None when the tab's viewer has moved on to
        another run (a run's own event ends when a newer one takes the viewer; its follow-up must not take
        the viewer back)."""
        session = _tab(request)
        if session is None:
            return asyncio.Event()
        current = self._viewers.get(session)
        if current is not None and not current.stop.is_set():
            return current.stop if current.run_id == run_id else None
        return self._show(request, run_id)[0]

    def key_hint(self, provider: str, model: str = "") -> Any:
        """The hint under the provider box: the key is set, or which variable to set; then what litellm's
        model map says a user should know of the model (no function calling, no images, unknown)."""
        ready, advice = key_status(provider) if provider in PROVIDERS else (False, f"unknown provider {provider!r}")
        lines = [f"✓ {advice}" if ready else f"⚠ {advice}, then restart the app."]
        if provider in PROVIDERS:
            lines += [f"⚠ {note}" for note in model_notes(provider, model.strip() or None)]
        return gr.update(value="\n\n".join(lines), elem_classes=[] if ready else ["wb-key-missing"])

    # ---------------------------------------------------------------- the run endpoint (UI and API)
    async def run(self, values: dict[str, Any], request: gr.Request | None) -> AsyncIterator[dict[str, Any]]:
        """Run the agent on a task; yields the run response (the contract's JSON) after each step, the final one last.

        With wait_for_completion false, yields once at the start (status "in_progress", with the ids);
        poll GET /api/runs/{task_run_id} or watch it in the UI. sensitive_data is a JSON object
        {name: value} whose values are typed into pages but never shown or kept (the prompt writes
        <secret>name</secret>).
        """
        try:
            # Checked in a worker thread: a large schema must not stall the other requests.
            run_request = await asyncio.to_thread(form_request, values)
            _task_id, run_id = await self.service.submit(run_request)
        except (FormError, RequestError, ServiceBusy, ServiceClosed) as exc:  # the caller's to fix, or retry
            raise gr.Error(str(exc), print_exception=False) from None
        # This tab's viewer now shows the new run; a run it showed before goes on in the background.
        stop, before = self._show(request, run_id)
        shown = await self.service.aget(before) if before is not None else None
        if shown is not None and shown.status == "in_progress":
            gr.Info(f"Run {run_id} started; run {before} goes on in the background (open it from the history).")
        if not run_request.wait_for_completion:
            current = await self.service.aget(run_id)
            if current is not None:
                yield current.to_json()
            return
        # Closing this generator (client gone, another run opened) only stops watching: the run goes on.
        async for snapshot in until_stopped(follow_run(self.service, run_id), stop):
            yield snapshot

    @staticmethod
    def _problems(values: tuple[Any, ...]) -> dict[str, list[str]]:
        """The form's problems by field (FORM_FIELDS names); empty when it makes a request."""
        try:
            form_request(dict(zip(FORM_FIELDS, values)))
        except FormError as exc:
            by_field: dict[str, list[str]] = {}
            for err in exc.errors:
                name = err["field"].split(".")[0]
                by_field.setdefault(name if name in FORM_FIELDS else "prompt", []).append(err["message"])
            return by_field
        return {}

    def validate(self, *values: Any) -> list[Any]:
        """One gr.validate per form field: the message shows next to the field and nothing starts."""
        by_field = self._problems(values)
        return [gr.validate(name not in by_field, "; ".join(by_field.get(name, []))) for name in FORM_FIELDS]

    def run_errors(self, *values: Any) -> tuple[Any, ...]:
        """The same problems next to the Run button (naming where each field is), folded sections (FOLDED) opened."""
        by_field = self._problems(values)
        lines = []
        for name, messages in by_field.items():
            place = f" (under *{FIELDS[name].section}*)" if FIELDS[name].section in FOLDED else ""
            lines.append(f"- **{name}**{place}: {'; '.join(messages)}")
        text = ("✗ Nothing started: fix " + ("this field" if len(lines) == 1 else f"these {len(lines)} fields")
                + ":\n" + "\n".join(lines)) if lines else ""
        opened = {FIELDS[name].section for name in by_field}
        return (gr.update(value=text, visible=bool(lines)),
                *(gr.update(open=True) if section in opened else gr.skip() for section in FOLDED))

    async def follow(self, current: Any, request: gr.Request) -> AsyncIterator[Any]:
        """Keep the viewer up to date with a run that is still going (background runs, opened runs)."""
        run_id = run_id_of(current)
        if run_id is None or current.get("status") != "in_progress":
            yield gr.skip()
            return
        stop = self._follower(request, run_id)
        if stop is None:  # this tab has moved on to another run since (Run pressed again): leave it there
            yield gr.skip()
            return
        try:
            async for snapshot in until_stopped(follow_run(self.service, run_id, skip_first=True), stop):
                yield snapshot
        except NotFound:
            yield gr.skip()

    # ---------------------------------------------------------------- the other handlers
    async def render(self, current: Any, request: gr.Request) -> tuple[Any, ...]:
        """The viewer drawn from the response, with each step's trace, the system prompt and the share link."""
        run_id = run_id_of(current)
        running = bool(run_id) and current.get("status") == "in_progress"
        ended = bool(run_id) and not running
        can_save = ended and current.get("status") == "success"
        traces, used, share, forks, ask = None, None, None, None, None
        if run_id:
            try:
                traces = await self.service.traces(run_id)
            except NotFound:
                traces = None
            req = await self.service.run_request(run_id)
            if req is not None:
                used = system_prompt(override=req.override_system_message, extend=req.extend_system_message)
                ask = {"provider": req.provider, "model": req.model, "extend_system_message": req.extend_system_message,
                       "override_system_message": req.override_system_message}
            share = f"{self.page_url(request)}?run={run_id}"
            forks, _total = await self.service.list_runs(RunFilter(parent_run_id=run_id), limit=MAX_FORKS_SHOWN)
        html = render_run_html(current, traces=traces, system_prompt=used, default_prompt=SYSTEM_PROMPT,
                               share_url=share, forks=forks, ask=ask)
        if ended and run_id:  # a run an experiment played shows its grade and why (a "success" may fail its check)
            html = grade_banner(await self.service.cell_of_run(run_id)) + html
        return (html, gr.update(interactive=running), gr.update(interactive=ended), gr.update(interactive=can_save),
                gr.update(interactive=bool(run_id)))

    def page_url(self, request: gr.Request | None) -> str:
        """The workbench page's address as the browser sees it (for links to share)."""
        headers = getattr(request, "headers", None) or {}
        origin = headers.get("origin") if hasattr(headers, "get") else None
        if isinstance(origin, str) and origin.startswith(("http://", "https://")):
            return origin.rstrip("/") + "/"
        return demo_base_url(self.settings, str(getattr(request, "url", "") or "")) + "/"

    async def cancel(self, current: Any) -> None:
        run_id = run_id_of(current)
        if run_id is None:
            gr.Warning("No run in the viewer to cancel.")
            return
        try:
            stopped = await self.service.cancel(run_id)
        except NotFound:
            gr.Warning(f"Run {run_id} no longer exists.")
            return
        if stopped:
            gr.Info(f"Cancelling run {run_id}: it stops at its next check.")
        else:
            gr.Info(f"Run {run_id} had already ended.")

    async def rerun(self, current: Any) -> list[Any]:
        run_id = run_id_of(current)
        request = await self.service.run_request(run_id) if run_id else None
        if request is None:
            gr.Warning("Open a run first (from the history), then press Run again.")
            return [gr.skip()] * (len(FORM_FIELDS) + 1)
        gr.Info(f"The form now holds run {run_id}'s request: change what you like and press Run.")
        return [*request_form_values(request), self.key_hint(request.provider, request.model)]

    async def save_workflow(self, current: Any) -> None:
        run_id = run_id_of(current)
        if run_id is None:
            gr.Warning("Open a successful run first.")
            return
        try:
            wid, version, document, created = await self.service.save_run_as_workflow(run_id)
        except NotFound:
            gr.Warning(f"Run {run_id} no longer exists.")
            return
        except WorkflowError as exc:
            gr.Warning(f"Run {run_id} cannot be saved as a workflow: {exc}")
            return
        names = ", ".join(p.get("name", "?") for p in document.get("parameters") or []) or "none"
        if not created:
            gr.Info(f"Run {run_id} is already saved as workflow {wid} (version {version}; parameters: {names}): "
                    "see it under Workflows.")
            return
        gr.Info(f"Saved as workflow {wid} (version {version}; parameters: {names}). Replay it: tick "
                f"'Use cached workflow' and give workflow id {wid}.")

    async def open_link(self, request: gr.Request) -> tuple[Any, ...]:
        """The page was opened with `?run=N` (that run in the viewer, its own settings in the form) or
        `?compare=a,b` (the compare view); the page then scrolls to it (LINK_SCROLL_JS)."""
        params = getattr(request, "query_params", None) or {}
        run, pair = params.get("run"), parse_pair(params.get("compare") or "")
        shown: Any = gr.skip()
        form: list[Any] = [gr.skip()] * (len(FORM_FIELDS) + 1)
        if run:  # never echoed: a toast renders HTML, and a shared link could carry a form
            run_id = parse_run_id(run)
            response = await self.service.aget(run_id) if run_id is not None else None
            if run_id is None:
                gr.Warning("?run= takes a run id (digits), e.g. ?run=12")
            elif response is None:
                gr.Warning(f"The link asks for run '{run_id}', which does not exist.")
            else:
                shown = response.to_json()
                used = await self.service.run_request(run_id)
                if used is not None:  # the form holds that run's own settings, as "Run again" would
                    form = [*request_form_values(used), self.key_hint(used.provider, used.model)]
        if pair is None:
            if params.get("compare"):
                gr.Warning("?compare= takes two run ids, e.g. ?compare=12,15")
            return shown, gr.skip(), gr.skip(), gr.skip(), gr.skip(), *form
        html = await self.log.compare(*pair)
        return shown, pair[0], pair[1], html, gr.update(open=True), *form

    async def webhooks(self, current: Any) -> AsyncIterator[Any]:
        """The webhook delivery attempts of the run shown, live until its delivery is over (bounded)."""
        run_id = run_id_of(current)
        if run_id is None or current.get("status") == "in_progress":
            yield gr.update(value="", visible=False)
            return
        deadline, shown = asyncio.get_running_loop().time() + WEBHOOK_WATCH_S, None
        while True:
            attempts = await self.service.webhook_attempts(run_id)
            pending = await self.service.webhook_owed(run_id)
            if not attempts and not pending:  # no webhook (the stored request keeps no URL to tell by)
                yield gr.update(value="", visible=False)
                return
            if attempts != shown or not pending:
                shown = attempts
                yield gr.update(value=render_webhooks(attempts, pending=pending), visible=True)
            if not pending or asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.5)

    async def open_run(self, evt: gr.SelectData, request: gr.Request) -> Any:
        row = evt.row_value or []
        try:
            run_id = int(row[0])
        except (IndexError, TypeError, ValueError):
            return gr.skip()
        response = await self.service.aget(run_id)
        if response is None:
            gr.Warning(f"Run {run_id} no longer exists.")
            return gr.skip()
        self._show(request, run_id)  # a run followed before stops being followed
        return response.to_json()

    def default_model(self, provider: str) -> str:
        """The model the form suggests for `provider`: the operator's DEFAULT_MODEL for its provider, else the
        provider's own default."""
        form_provider, form_model = self.settings.form_model
        return form_model if provider == form_provider else DEFAULT_MODELS.get(provider, "")

    def on_provider(self, provider: str) -> tuple[Any, Any]:
        choices = list(REGISTRY[provider].models) if provider in REGISTRY else []
        default = self.default_model(provider)
        return gr.update(choices=choices, value=default), self.key_hint(provider, default)

    def check_schema(self, text: str) -> Any:
        if not (text or "").strip():
            return gr.update(value="No schema: the result is free text (or any JSON with format json).",
                             elem_classes=[])
        try:
            parse_json_schema(text)
        except ValueError as exc:
            return gr.update(value=f"✗ json_schema {exc}", elem_classes=["wb-error"])
        return gr.update(value="✓ valid JSON Schema: the result will be checked against it.", elem_classes=[])

    def fill_example(self, index: int, request: gr.Request) -> tuple[Any, ...]:
        example = self.examples[int(index)]
        url = demo_base_url(self.settings, str(getattr(request, "url", "") or "")) + "/demo/"
        schema = example.get("json_schema")
        return (example["prompt"].replace("{DEMO_URL}", url), example.get("response_format") or "text",
                json.dumps(schema, indent=2) if schema else "")

    async def on_load(self, remembered: Any, request: gr.Request) -> tuple[Any, Any, Any]:
        """The page's first state: the model last used in this browser, else the operator's default
        (DEFAULT_PROVIDER, DEFAULT_MODEL), and its provider's hint; a `?run=N` link's run fills them instead."""
        # The model box's configured value stays "" so that API callers who give only a provider get
        # that provider's default model (the contract's "o3" for openai); the page shows the model
        # this browser used last, or the operator's default.
        params = getattr(request, "query_params", None) or {}
        linked = parse_run_id(params.get("run"))
        if linked is not None and await self.service.run_request(linked) is not None:
            return gr.skip(), gr.skip(), gr.skip()  # open_link puts that run's own settings in the form
        last = remembered if isinstance(remembered, dict) else {}
        provider = str(last.get("provider")) if last.get("provider") in PROVIDERS else self.settings.form_model[0]
        model = str(last.get("model") or "").strip() or self.default_model(provider)
        return (gr.update(value=provider), gr.update(choices=list(REGISTRY[provider].models), value=model),
                self.key_hint(provider, model))

    def remember(self, provider: str, model: str, remembered: Any) -> Any:
        """The model of the run just asked for, kept in this browser for the next visit."""
        if provider not in PROVIDERS or not (model or "").strip():
            return gr.skip()
        last = {"provider": provider, "model": model.strip()}
        return gr.skip() if remembered == last else last

    async def price_hint(self, provider: str, model: str) -> Any:
        """What the model costs per million tokens, from litellm's local price map (or that it is unknown)."""
        name = (model or "").strip() or DEFAULT_MODELS.get(provider, "")
        if provider not in PROVIDERS or not name:
            return gr.update(value="")
        price = await asyncio.to_thread(model_price, provider, name)
        if price is None:
            return gr.update(value=f"{name}: price unknown to litellm's price map (its cost shows as unknown; "
                                   "price_per_mtok gives one)")
        per_in, per_out = price
        return gr.update(value=f"{name}: ${per_in:,.2f} per million input tokens, ${per_out:,.2f} per million "
                               "output tokens (litellm's price map)")


RunFn = Callable[[dict[str, Any], Any], AsyncIterator[dict[str, Any]]]


def api_endpoint(target: RunFn) -> Callable[..., AsyncIterator[dict[str, Any]]]:
    """`target(values, request)` as Gradio's `run` endpoint: one parameter per request field (FORM_FIELDS:
    names, order and defaults from the fields), then the gr.Request Gradio fills in (not an API parameter)."""
    count = len(FORM_FIELDS)

    async def run(*values: Any) -> AsyncIterator[dict[str, Any]]:
        fields, rest = values[:count], values[count:]
        async for snapshot in target(dict(zip(FORM_FIELDS, fields)), rest[0] if rest else None):
            yield snapshot

    empty = inspect.Parameter.empty
    params = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                default=empty if RunRequest.model_fields[name].is_required() else form_default(name))
              for name in FORM_FIELDS]
    params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                    annotation=gr.Request))
    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # Gradio reads the names here
    run.__annotations__ = {"request": gr.Request}  # ...and which parameter wants the request here
    run.__doc__ = RunHandlers.run.__doc__
    return run
