"""The Gradio Blocks mounted at "/": run form, live viewer, run history and the `run` API endpoint.

The layout lives here, section by section; what each control does lives in `agent.ui.handlers`.
gradio is imported only inside these functions (it takes ~6 s): `--help`, the other layers' tests
and the notebooks never pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from agent.engine.prompts import SYSTEM_PROMPT
from agent.filters import ReviewState
from agent.models import FIELDS, RunRequest
from agent.models.fields import Section, control_of, value_type
from agent.providers import DEFAULT_PROVIDER, PROVIDERS, REGISTRY
from agent.settings import Settings
from agent.ui.compare import render_compare_html
from agent.ui.form import FORM_FIELDS, form_default, label, placeholder
from agent.ui.render import history_frame, render_run_html

if TYPE_CHECKING:
    from agent.experiments.runner import ExperimentRunner
    from agent.service.runs import RunService
    from agent.ui.handlers import RunHandlers

CSS_PATH = Path(__file__).with_name("style.css")
# The form's folded sections (About.section of the fields in them), with their ids on the page.
SECTION_IDS: dict[Section, str] = {"Cached workflow": "wb-workflow-box", "Advanced": "wb-advanced"}
FOLDED_ADVANCED = list(SECTION_IDS).index("Advanced")  # where a fork's field is: opened by "Fork from here"
# A field's control with suggestions (About.control "combo") starts with these.
SUGGESTIONS: dict[str, list[str]] = {"model": list(REGISTRY[DEFAULT_PROVIDER].models)}
# Every event but `run` is private (not in the API) and light: no queue slot limit, no spinner.
QUIET: dict[str, Any] = {"api_visibility": "private", "concurrency_limit": None, "show_progress": "hidden"}
# Instant ones skip the queue: the viewer redraws ~0.2 s after each step instead of ~1 s.
INSTANT: dict[str, Any] = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
# The Export button: the browser downloads the run's HTML export from the route.
EXPORT_JS = """(run) => {
    if (!run || !run.task_run_id) return;
    const a = document.createElement('a');
    a.href = 'api/runs/' + run.task_run_id + '/export?format=html';
    a.download = 'run-' + run.task_run_id + '.html';
    document.body.appendChild(a); a.click(); a.remove();
}"""

# A shared link (`?run=N`, `?compare=a,b`) scrolls to what it names (unless it is in the top third of the
# window already), and keeps it there while the page above it settles (the history's rows arriving),
# unless the user scrolls meanwhile.
LINK_SCROLL_JS = """() => {
    const q = new URLSearchParams(window.location.search);
    const sel = q.get('compare') ? '#wb-compare .wb-compare[data-state="shown"]'
        : q.get('run') ? '#wb-viewer .wb-run[data-run-id]:not([data-run-id=""])' : null;
    if (!sel) return;
    const deadline = Date.now() + 5000;
    let last = null;
    const settle = () => {
        const el = document.querySelector(sel);
        if (el && last !== null && Math.abs(window.scrollY - last) > 2) return;  // the user scrolled
        const top = el ? el.getBoundingClientRect().top : 0;
        if (el && (top < -2 || top > window.innerHeight / 3)) el.scrollIntoView({block: 'start'});
        if (el) last = window.scrollY;
        if (Date.now() < deadline) setTimeout(settle, 150);
    };
    settle();
}"""
# While a run is followed, its newest step (at the end, its result) is brought into view, until the user
# scrolls the page themselves (wheel, touch, keys): then it stays where they put it, until the next run.
FOLLOW_STEPS_JS = """(run) => {
    const w = window.__wbFollow || (window.__wbFollow = {});
    if (!w.listening) {
        w.listening = true;
        const away = () => { w.away = true; };
        window.addEventListener('wheel', away, {passive: true});
        window.addEventListener('touchmove', away, {passive: true});
        window.addEventListener('keydown', (e) => {
            if (/^(PageUp|PageDown|Home|End|ArrowUp|ArrowDown| )$/.test(e.key)) away();
        });
    }
    const id = run && run.task_run_id;
    const live = !!id && run.status === 'in_progress';
    const ended = !!id && !live && w.id === id && w.live;
    if (id !== w.id && live) w.away = false;  // a new run is followed again
    w.id = id; w.live = live;
    if ((!live && !ended) || w.away) return;
    const shown = document.querySelector('#wb-viewer .wb-run');
    if (!shown) return;
    const steps = shown.querySelectorAll('.wb-step');
    // The whole run while it fits in the window (its status on top); then the newest step at the bottom.
    const whole = shown.getBoundingClientRect().height <= window.innerHeight;
    const el = whole ? shown : ended ? (shown.querySelector('.wb-result') || shown) : steps[steps.length - 1];
    if (!el) return;
    const box = el.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) {
        el.scrollIntoView({block: whole || ended || box.height > window.innerHeight ? 'start' : 'end'});
    }
}"""


# The viewer's buttons: "Fork from here" hands the step to `fork_from` (an event of the viewer carrying the
# step); "Try this step again" sends its panel to the `ask_step` server function and shows the answer's HTML.
VIEWER_JS = """
element.addEventListener('click', (e) => {
    const fork = e.target.closest('.wb-fork-btn');
    if (!fork) return;
    e.preventDefault();
    trigger('click', {fork_step: Number(fork.dataset.step)});
    const form = document.querySelector('#wb-prompt');
    if (form) form.scrollIntoView({block: 'start'});
});
element.addEventListener('submit', async (e) => {
    const form = e.target.closest('.wb-ask-form');
    if (!form) return;
    e.preventDefault();
    const out = form.parentElement.querySelector('.wb-ask-result');
    const button = form.querySelector('.wb-ask-btn');
    const data = Object.fromEntries(new FormData(form).entries());
    data.run_id = Number(form.dataset.run);
    data.step = Number(form.dataset.step);
    out.dataset.state = 'asking';
    out.innerHTML = '<p class="wb-muted">Asking the model again…</p>';
    button.disabled = true;
    try {
        out.innerHTML = await server.ask_step(data);
        out.dataset.state = 'answered';
    } catch (err) {
        out.textContent = 'The question could not be sent: ' + String(err);
        out.dataset.state = 'error';
    } finally {
        button.disabled = false;
    }
});
"""


def ui_mount_options() -> dict[str, Any]:
    """Keyword arguments for gr.mount_gradio_app: style, system fonts (no font CDN), footer."""
    import gradio as gr

    theme = gr.themes.Default(
        primary_hue="indigo",
        font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )
    # Gradio's own browser-side run history would sit next to ours and confuse: off.
    return {"css": CSS_PATH.read_text(encoding="utf-8"), "theme": theme, "footer_links": ["api"], "run_history": False}


@dataclass
class Form:
    """The run form's components: one control per request field (`controls`, by name), and the rest."""

    controls: dict[str, Any]
    sections: list[Any]  # the folded sections' accordions, in FOLDED order
    hint: Any
    price: Any
    remembered: Any  # the provider and model this browser used last (localStorage)
    schema_status: Any
    run_btn: Any
    cancel_btn: Any
    run_errors: Any
    examples: Any

    @property
    def fields(self) -> list[Any]:
        """The controls in FORM_FIELDS order: the `run` endpoint's inputs."""
        return [self.controls[name] for name in FORM_FIELDS]


@dataclass
class Viewer:
    """The live viewer: the rendered run, its buttons, and the response JSON it is drawn from."""

    html: Any
    rerun_btn: Any
    save_btn: Any
    export_btn: Any
    response: Any
    webhooks: Any


@dataclass
class History:
    """The run history: filters, totals, paging, the table (selecting a row opens that run) and compare."""

    filters: list[Any]  # in HistoryHandlers.history's order, page size last
    stop_reason: Any
    experiment: Any  # the experiment filter (its choices: the latest experiments)
    refresh_btn: Any
    totals: Any
    page: Any  # gr.State: the page shown (0-based)
    page_label: Any
    prev_btn: Any
    next_btn: Any
    table: Any
    compare_box: Any
    compare_a: Any
    compare_b: Any
    compare_btn: Any
    compare_html: Any
    last_seen: Any  # "run_id:status" of the viewer's run when the table was last refreshed for it


def build_ui(service: RunService, settings: Settings, experiments: ExperimentRunner | None = None) -> Any:
    """The Gradio Blocks mounted at "/": run form, live viewer, run history, experiments; the API endpoints."""
    import gradio as gr

    from agent.ui.experiments import build_section  # these import gradio too
    from agent.ui.handlers import RunHandlers
    from agent.ui.judging import build_judging
    from agent.ui.review import ReviewHandlers, build_review_panel, wire_review_panel
    from agent.ui.tasksets import TaskSetHandlers, build_add_to_set, build_tasksets, wire_add_to_set, wire_tasksets
    from agent.ui.workflows import WorkflowHandlers, build_workflows, wire_workflows

    handlers = RunHandlers(service, settings)
    with gr.Blocks(title="Web-agent workbench", fill_width=True) as ui:
        gr.Markdown(
            "## LLM web-agent workbench\nDescribe a task; an agent drives a real Chromium step by step. "
            "[API docs](api/docs) · [demo shop](demo/) · [health](api/health)", elem_id="wb-header",
        )
        # The form's column is drawn as long as the viewer's (style.css), so that its sticky Run/Cancel bar
        # stays in reach all along a long run; its fields keep their own heights.
        with gr.Row(equal_height=False, elem_id="wb-main"):
            with gr.Column(scale=4, min_width=360):
                form = _form([e["title"] for e in handlers.examples])
            with gr.Column(scale=6, min_width=420):
                viewer = _viewer(handlers)
                review_panel = build_review_panel()  # pass or fail the run shown; its grades together
        history = _history()
        add_to_set = build_add_to_set() if experiments is not None else None  # under the history table
        workflows = build_workflows()
        saved = _wire(ui, handlers, form, viewer, history, max_concurrent=service.max_concurrent)
        listing = WorkflowHandlers(service)
        wire_workflows(ui, listing, workflows, response=viewer.response, provider=form.controls["provider"],
                       model=form.controls["model"], follow=handlers.follow_new, quiet=QUIET)
        saved.then(listing.listing, None, [workflows.table], **QUIET)  # a workflow just saved is listed
        wire_review_panel(ui, review_panel, ReviewHandlers(service, settings), response=viewer.response, quiet=QUIET)
        if experiments is not None and add_to_set is not None:
            sets = TaskSetHandlers(experiments.tasksets)
            saved_to_set = wire_add_to_set(ui, sets, add_to_set, history.table, quiet=QUIET)
            exp_set, exp_set_choices = build_section(ui, experiments, quiet=QUIET, instant=INSTANT)
            section = build_tasksets()
            created_set = wire_tasksets(ui, sets, section, quiet=QUIET)
            # A set made in one place is offered in the others at once.
            saved_to_set.then(sets.listing, None, [section.table], **QUIET).then(
                exp_set_choices, None, [exp_set], **QUIET)
            created_set.then(sets.names, None, [add_to_set.target], **QUIET).then(
                exp_set_choices, None, [exp_set], **QUIET)
            build_judging(ui, experiments, quiet=QUIET)  # judges against people; two experiments compared
    return ui


def _form(example_titles: list[str]) -> Form:
    """The request's fields (each control made from its field), the optional ones folded away."""
    import gradio as gr  # here, not at the top: ~6 s, and only building the page needs it

    extras: dict[str, Any] = {}

    def after_model() -> None:  # the key and price hints under the provider and model boxes
        extras["hint"], extras["price"] = gr.Markdown(elem_id="wb-key-hint"), gr.Markdown(elem_id="wb-price-hint")
        extras["remembered"] = gr.BrowserState({}, storage_key="wb-last-model")

    def after_schema() -> None:
        extras["schema_status"] = gr.Markdown(elem_id="wb-schema-status")

    after: dict[str, Callable[[], None]] = {"model": after_model, "json_schema": after_schema}
    controls = _controls("main", after)
    sections = []
    for section, elem_id in SECTION_IDS.items():
        with gr.Accordion(section, open=False, elem_id=elem_id) as box:
            controls.update(_controls(section, after))
            if section == "Advanced":
                with gr.Accordion("Our default system prompt (for reference)", open=False,
                                  elem_id="wb-default-system-box"):
                    gr.Textbox(SYSTEM_PROMPT, show_label=False, lines=6, max_lines=30, interactive=False,
                               elem_id="wb-default-system")
        sections.append(box)
    with gr.Row(elem_id="wb-run-bar"):  # sticky: Run and Cancel stay in reach below the fold (style.css)
        run_btn = gr.Button("Run", variant="primary", elem_id="wb-run")
        cancel_btn = gr.Button("Cancel", variant="stop", interactive=False, elem_id="wb-cancel")
    run_errors = gr.Markdown("", visible=False, elem_id="wb-run-errors")
    examples = gr.Dataset(components=["textbox"], samples=[[t] for t in example_titles], headers=["Task"],
                          label="Examples (against the bundled demo shop)", type="index", samples_per_page=10,
                          elem_id="wb-examples")
    return Form(controls=controls, sections=sections, run_btn=run_btn, cancel_btn=cancel_btn, run_errors=run_errors,
                examples=examples, **extras)


def _layout(section: Section) -> list[list[str]]:
    """The fields of a form section in the page's order: a row's fields together, where its first field is."""
    groups: list[list[str]] = []
    rows: dict[str, list[str]] = {}
    for name, about in FIELDS.items():
        if about.section != section:
            continue
        if about.row is None:
            groups.append([name])
        elif about.row in rows:
            rows[about.row].append(name)
        else:
            rows[about.row] = [name]
            groups.append(rows[about.row])
    return [sorted(group, key=lambda n: FIELDS[n].column) for group in groups]


def _controls(section: Section, after: dict[str, Callable[[], None]]) -> dict[str, Any]:
    """The controls of a form section, each followed by what `after` adds under its field (by name)."""
    import gradio as gr

    made: dict[str, Any] = {}
    for group in _layout(section):
        if len(group) == 1:
            made[group[0]] = _control(group[0])
        else:
            with gr.Row():
                made.update((name, _control(name)) for name in group)
        for name in group:
            if name in after:
                after[name]()
    return made


def _control(name: str) -> Any:
    """A request field's control, from its type and its About (agent.models.fields)."""
    import gradio as gr

    info, about = RunRequest.model_fields[name], FIELDS[name]
    kind = control_of(info)
    common: dict[str, Any] = {"label": label(name), "elem_id": about.elem_id}
    if about.info:
        common["info"] = about.info
    value = form_default(name)
    if kind == "check":
        return gr.Checkbox(value=value, **common)
    if kind == "choice":
        choices = list(get_args(value_type(info)))
        return (gr.Radio if len(choices) <= 3 else gr.Dropdown)(choices, value=value, **common)
    if kind == "combo":  # any value; "" so that a caller naming only a provider gets that provider's default
        return gr.Dropdown(SUGGESTIONS.get(name, []), value=value, allow_custom_value=True, **common)
    if kind == "json":
        return gr.Code(value=value, language="json", lines=about.lines, max_lines=about.max_lines, **common)
    # Whole numbers are text boxes too: a gr.Number shows (and sends) 0 for "empty" once it is drawn.
    return gr.Textbox(value, type="password" if kind == "secret" else "text", lines=about.lines,
                      max_lines=about.max_lines, placeholder=placeholder(name), **common)


def _viewer(handlers: RunHandlers) -> Viewer:
    """The live viewer and its buttons (a step's own: VIEWER_JS)."""
    import gradio as gr

    async def ask_step(data: Any) -> str:  # a plain function: Gradio marks server functions with an attribute
        return await handlers.steps.ask_step(data)

    html = gr.HTML(render_run_html(None), elem_id="wb-viewer", autoscroll=False, js_on_load=VIEWER_JS,
                   server_functions=[ask_step])
    webhooks = gr.HTML("", visible=False, elem_id="wb-webhooks")
    with gr.Row():
        rerun_btn = gr.Button("Run again (refill the form)", interactive=False, elem_id="wb-rerun")
        save_btn = gr.Button("Save as workflow", interactive=False, elem_id="wb-save-workflow")
        export_btn = gr.Button("Export (HTML)", interactive=False, elem_id="wb-export")
    with gr.Accordion("Response JSON (what the API returns)", open=False, elem_id="wb-response-box"):
        response = gr.JSON(value=None, label="Run response", elem_id="wb-response")
    return Viewer(html=html, rerun_btn=rerun_btn, save_btn=save_btn, export_btn=export_btn, response=response,
                  webhooks=webhooks)


def _history() -> History:
    """The run history with its filters."""
    import gradio as gr

    from agent.ui.history import PAGE_SIZES  # here: agent.ui.history imports gradio

    gr.Markdown("### Run history", elem_id="wb-history-title")
    with gr.Row():
        q = gr.Textbox(label="Search prompt and result", elem_id="wb-filter-q", scale=3,
                       placeholder="words in the task, the result or the error")
        # Labels unlike the form's ("Provider" there): one name, one control, for people and screen readers.
        status = gr.Dropdown(["all", "success", "failure", "in_progress"], value="all", label="Filter by status",
                             elem_id="wb-filter-status", scale=1)
        stop_reason = gr.Dropdown(["all"], value="all", label="Filter by stop reason", elem_id="wb-filter-stop",
                                  scale=1)
        provider = gr.Dropdown(["all", *PROVIDERS], value="all", label="Filter by provider",
                               elem_id="wb-filter-provider", scale=1)
        model = gr.Textbox(label="Filter by model (contains)", elem_id="wb-filter-model", scale=1)
    with gr.Row(equal_height=True):
        # Experiments' runs: hidden unless the switch is on, or an experiment or a variant is named.
        experiment = gr.Dropdown([("all", "all")], value="all", label="Filter by experiment", allow_custom_value=True,
                                 elem_id="wb-filter-experiment", scale=2)
        variant = gr.Textbox(label="Filter by variant", elem_id="wb-filter-variant", scale=1)
        show_experiments = gr.Checkbox(False, label="Show experiment runs", elem_id="wb-filter-show-experiments",
                                       scale=1)
    with gr.Row():
        since = gr.Textbox(label="From (YYYY-MM-DD, UTC)", elem_id="wb-filter-since", scale=1)
        until = gr.Textbox(label="To (YYYY-MM-DD, UTC)", elem_id="wb-filter-until", scale=1)
        review = gr.Dropdown(["all", *get_args(ReviewState)], value="all", label="Filter by review",
                             info="queue: to review next", elem_id="wb-filter-review", scale=1)
        page_size = gr.Dropdown([str(n) for n in PAGE_SIZES], value="50", label="Rows per page",
                                elem_id="wb-page-size", scale=1)
        prev_btn = gr.Button("← Newer", elem_id="wb-page-prev", interactive=False, scale=0, min_width=90)
        page_label = gr.Markdown("page 1 of 1", elem_id="wb-page-label")
        next_btn = gr.Button("Older →", elem_id="wb-page-next", interactive=False, scale=0, min_width=90)
        refresh_btn = gr.Button("Refresh", elem_id="wb-refresh", scale=0, min_width=100)
    totals = gr.Markdown(elem_id="wb-history-totals", elem_classes=["wb-history-totals"])
    table = gr.Dataframe(history_frame([]), label="Run history", interactive=False, wrap=True, max_height=420,
                         elem_id="wb-history",
                         column_widths=["5%", "7%", "22%", "11%", "4%", "6%", "5%", "9%", "8%", "9%", "6%", "8%"])
    gr.Markdown("Select a row to open that run in the viewer (from the log, screenshots included); the last two "
                "rows selected fill the compare boxes below.", elem_id="wb-history-help")
    with gr.Accordion("Compare two runs", open=False, elem_id="wb-compare-box") as compare_box:
        with gr.Row():
            compare_a = gr.Number(value=None, precision=0, label="Run A", elem_id="wb-compare-a", scale=1)
            compare_b = gr.Number(value=None, precision=0, label="Run B", elem_id="wb-compare-b", scale=1)
            compare_btn = gr.Button("Compare", elem_id="wb-compare-btn", scale=0, min_width=120)
        compare_html = gr.HTML(render_compare_html(None, None), elem_id="wb-compare")
    return History(filters=[q, status, stop_reason, provider, model, since, until, experiment, variant,
                            show_experiments, review, page_size],
                   stop_reason=stop_reason, experiment=experiment, refresh_btn=refresh_btn, totals=totals,
                   page=gr.State(0),
                   page_label=page_label, prev_btn=prev_btn, next_btn=next_btn, table=table,
                   compare_box=compare_box, compare_a=compare_a, compare_b=compare_b, compare_btn=compare_btn,
                   compare_html=compare_html, last_seen=gr.State(""))


def _wire(ui: Any, h: RunHandlers, form: Form, viewer: Viewer, history: History, *, max_concurrent: int) -> Any:
    """Connect the controls to their handlers (`run` and `ask_step` are in the API); the "Save as workflow" event."""
    import gradio as gr

    response, table, log = viewer.response, history.table, h.log
    prompt, provider, model = form.controls["prompt"], form.controls["provider"], form.controls["model"]
    response_format, json_schema = form.controls["response_format"], form.controls["json_schema"]
    page_in = [*history.filters, history.page]
    page_out = [table, history.totals, history.page_label, history.prev_btn, history.next_btn, history.stop_reason,
                history.page]
    # Before the run's own event: a failed validation ends the browser's handling of the click.
    form.run_btn.click(h.run_errors, form.fields, [form.run_errors, *form.sections], trigger_mode="multiple",
                       **INSTANT)
    form.run_btn.click(h.remember, [provider, model, form.remembered], [form.remembered], **INSTANT)
    # "multiple": Run pressed while a run is shown starts the new run (the viewer follows it; the other
    # goes on in the background), never nothing at all.
    run_event = form.run_btn.click(h.endpoint, form.fields, [response], api_name="run", validator=h.validate,
                                   concurrency_limit=max_concurrent, concurrency_id="run", trigger_mode="multiple")
    run_event.then(h.follow, [response], [response], **QUIET)  # background runs
    rendered = response.change(h.render, [response], [viewer.html, form.cancel_btn, viewer.rerun_btn,
                                                      viewer.save_btn, viewer.export_btn], **INSTANT)
    rendered.then(None, [response], None, js=FOLLOW_STEPS_JS, api_visibility="private")  # the new step in view
    # The history follows the viewer: refreshed when the run shown starts and when it ends, however it is followed.
    response.change(log.history_on_change, [response, history.last_seen, *page_in], [*page_out, history.last_seen],
                    **QUIET)
    response.change(h.webhooks, [response], [viewer.webhooks], trigger_mode="always_last", **QUIET)
    form.cancel_btn.click(h.cancel, [response], None, trigger_mode="multiple", **QUIET)
    viewer.rerun_btn.click(h.rerun, [response], [*form.fields, form.hint], **QUIET)
    # "Fork from here" on a step (VIEWER_JS): the form holds the run's request, forked there; Advanced opens.
    viewer.html.click(h.steps.fork_from, [response], [*form.fields, form.hint, form.sections[FOLDED_ADVANCED]],
                      **QUIET)
    gr.api(h.steps.ask_api, api_name="ask_step", concurrency_limit=max_concurrent)  # the playground, for programs
    saved = viewer.save_btn.click(h.save_workflow, [response], None, **QUIET)
    # The export is a download from the route: the browser fetches it, nothing runs in Gradio.
    viewer.export_btn.click(None, [response], None, js=EXPORT_JS, api_visibility="private")
    open_event = table.select(h.open_run, None, [response], **QUIET)
    open_event.then(h.follow, [response], [response], **QUIET)
    table.select(log.pick, [history.compare_a, history.compare_b], [history.compare_a, history.compare_b], **QUIET)
    # Opening another run, or starting one, stops following the run opened before: open_run and run take the
    # tab's viewer (RunHandlers._show), which stops its follower; no `cancels=` (it raced the new follower).
    history.refresh_btn.click(log.history, page_in, page_out, **QUIET)
    for box in history.filters:  # a filter changed: back to the first page
        box.change(log.history_first, history.filters, page_out, **QUIET)
    history.prev_btn.click(lambda p: max(0, int(p or 0) - 1), [history.page], [history.page], **INSTANT).then(
        log.history, page_in, page_out, **QUIET)
    history.next_btn.click(lambda p: int(p or 0) + 1, [history.page], [history.page], **INSTANT).then(
        log.history, page_in, page_out, **QUIET)
    history.compare_btn.click(log.compare, [history.compare_a, history.compare_b], [history.compare_html], **QUIET)
    provider.input(h.on_provider, [provider], [model, form.hint], trigger_mode="always_last", **INSTANT)
    model.input(h.key_hint, [provider, model], [form.hint], trigger_mode="always_last", **INSTANT)
    json_schema.change(h.check_schema, [json_schema], [form.schema_status], **INSTANT)
    form.examples.click(h.fill_example, [form.examples], [prompt, response_format, json_schema], **QUIET)
    ui.load(h.on_load, [form.remembered], [provider, model, form.hint], **QUIET)
    model.change(h.price_hint, [provider, model], [form.price], trigger_mode="always_last", **QUIET)
    ui.load(log.history, page_in, page_out, **QUIET)
    ui.load(log.experiment_choices, None, [history.experiment], **QUIET)
    history.refresh_btn.click(log.experiment_choices, None, [history.experiment], **QUIET)
    linked = ui.load(h.open_link, None, [response, history.compare_a, history.compare_b, history.compare_html,
                                         history.compare_box, *form.fields, form.hint], **QUIET)
    linked.then(None, None, None, js=LINK_SCROLL_JS, api_visibility="private")  # to what the link names
    return saved
