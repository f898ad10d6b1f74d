"""The Gradio Blocks mounted at "/": run form, live viewer, run history and the `run` API endpoint.

The layout lives here, section by section; what each control does lives in `agent.ui.handlers`.
gradio is imported only inside these functions (it takes ~6 s): `--help`, the other layers' tests
and the notebooks never pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.settings import Settings
from agent.ui.render import history_frame, render_run_html

if TYPE_CHECKING:
    from agent.experiments.runner import ExperimentRunner
    from agent.service.runs import RunService
    from agent.ui.handlers import RunHandlers

CSS_PATH = Path(__file__).with_name("style.css")
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
    """The run form's components; `fields` is in FORM_FIELDS order (the `run` endpoint's parameters)."""

    fields: list[Any]
    prompt: Any
    model: Any
    provider: Any
    hint: Any
    price: Any
    remembered: Any  # the provider and model this browser used last (localStorage)
    response_format: Any
    json_schema: Any
    schema_status: Any
    run_btn: Any
    cancel_btn: Any
    run_errors: Any
    workflow_box: Any
    advanced_box: Any
    examples: Any


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

    filters: list[Any]  # in RunHandlers.history's order, page size last
    stop_reason: Any
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

    from agent.ui.experiments import build_section
    from agent.ui.handlers import RunHandlers
    from agent.ui.workflows import WorkflowHandlers, build_workflows, wire_workflows

    handlers = RunHandlers(service, settings)
    with gr.Blocks(title="Web-agent workbench", fill_width=True) as ui:
        gr.Markdown(
            "## LLM web-agent workbench\nDescribe a task; an agent drives a real Chromium step by step. "
            "[API docs](api/docs) · [demo shop](demo/) · [health](api/health)", elem_id="wb-header",
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=360):
                form = _form([e["title"] for e in handlers.examples])
            with gr.Column(scale=6, min_width=420):
                viewer = _viewer()
        history = _history()
        workflows = build_workflows()
        saved = _wire(ui, handlers, form, viewer, history, max_concurrent=service.max_concurrent)
        listing = WorkflowHandlers(service)
        wire_workflows(ui, listing, workflows, response=viewer.response, provider=form.provider,
                       model=form.model, follow=handlers.follow_new, quiet=QUIET)
        saved.then(listing.listing, None, [workflows.table], **QUIET)  # a workflow just saved is listed
        if experiments is not None:
            build_section(ui, experiments, quiet=QUIET, instant=INSTANT)
    return ui


def _form(example_titles: list[str]) -> Form:
    """The request's fields, in the contract's order, with the optional ones folded away."""
    import gradio as gr

    from agent.engine.llm import SUGGESTED_MODELS
    from agent.engine.prompts import SYSTEM_PROMPT
    from agent.models import PROVIDERS

    prompt = gr.Textbox(label="Task (prompt)", lines=4, max_lines=14, elem_id="wb-prompt",
                        placeholder="e.g. Go to the demo shop and find the cheapest USB-C cable. "
                                    "Return its name and price.")
    with gr.Row():
        provider = gr.Dropdown(list(PROVIDERS), value="openai", label="Provider", elem_id="wb-provider")
        model = gr.Dropdown(SUGGESTED_MODELS["openai"], value="", label="Model", allow_custom_value=True,
                            elem_id="wb-model", info="Suggestions, or type any model name")
    hint = gr.Markdown(elem_id="wb-key-hint")
    price = gr.Markdown(elem_id="wb-price-hint")
    remembered = gr.BrowserState({}, storage_key="wb-last-model")
    with gr.Row():
        response_format = gr.Radio(["text", "json"], value="text", label="Response format", elem_id="wb-format")
        wait_for_completion = gr.Checkbox(value=True, label="Wait for completion",
                                          info="Off: start in the background", elem_id="wb-wait")
    json_schema = gr.Code(value="", language="json", label="JSON schema (optional)", lines=5, max_lines=18,
                          elem_id="wb-schema")
    schema_status = gr.Markdown(elem_id="wb-schema-status")
    webhook_url = gr.Textbox("", label="Webhook URL (optional)", elem_id="wb-webhook",
                             placeholder="https://example.com/hook: receives the final response")
    # Whole numbers are text boxes: a gr.Number shows (and sends) 0 for "empty" once it is drawn.
    with gr.Accordion("Cached workflow", open=False, elem_id="wb-workflow-box") as workflow_box:
        use_cached_workflow = gr.Checkbox(value=False, label="Use cached workflow", elem_id="wb-use-cached")
        workflow_id = gr.Textbox("", label="Workflow id (a saved workflow)", placeholder="e.g. 3",
                                 elem_id="wb-workflow-id")
        workflow_params = gr.Code(value="", language="json", lines=3, label="Workflow parameters (JSON)",
                                  elem_id="wb-workflow-params")
        cached_workflow = gr.Code(value="", language="json", lines=4, max_lines=18,
                                  label="Cached workflow (JSON document)", elem_id="wb-cached-workflow")
    with gr.Accordion("Advanced", open=False, elem_id="wb-advanced") as advanced_box:
        max_steps = gr.Textbox("", label="Max steps (1-200; empty: 25)", placeholder="25", elem_id="wb-max-steps")
        use_vision = gr.Checkbox(value=False, label="Use vision (send screenshots to the model)",
                                 elem_id="wb-use-vision")
        allowed_domains = gr.Textbox("", label="Allowed domains (comma separated; empty: any public site)",
                                     elem_id="wb-allowed-domains", placeholder="shop.example, *.example.org")
        start_url = gr.Textbox("", label="Start URL (opened before the first step)", elem_id="wb-start-url")
        sensitive_data = gr.Textbox(
            "", type="password", label="Sensitive data (JSON; typed into pages, never shown to the model or kept)",
            elem_id="wb-sensitive-data", placeholder='{"password": "..."}: write <secret>password</secret> in the task')
        extend_system = gr.Textbox("", label="Extend the system prompt (appended to ours)", lines=2, max_lines=12,
                                   elem_id="wb-extend-system",
                                   placeholder="e.g. Prices on this site are per pack: always read the pack size.")
        override_system = gr.Textbox("", label="Override the system prompt (replaces ours; empty: ours)", lines=3,
                                     max_lines=20, elem_id="wb-override-system")
        session_id = gr.Textbox("", label="Session id (groups runs in tracing tools such as Phoenix or Langfuse)",
                                elem_id="wb-session-id", placeholder="e.g. checkout-study")
        with gr.Accordion("Our default system prompt (for reference)", open=False, elem_id="wb-default-system-box"):
            gr.Textbox(SYSTEM_PROMPT, show_label=False, lines=6, max_lines=30, interactive=False,
                       elem_id="wb-default-system")
    with gr.Row():
        run_btn = gr.Button("Run", variant="primary", elem_id="wb-run")
        cancel_btn = gr.Button("Cancel", variant="stop", interactive=False, elem_id="wb-cancel")
    run_errors = gr.Markdown("", visible=False, elem_id="wb-run-errors")
    examples = gr.Dataset(components=["textbox"], samples=[[t] for t in example_titles], headers=["Task"],
                          label="Examples (against the bundled demo shop)", type="index", samples_per_page=10,
                          elem_id="wb-examples")
    fields = [prompt, model, provider, wait_for_completion, webhook_url, response_format, json_schema,
              use_cached_workflow, cached_workflow, workflow_id, workflow_params, start_url, max_steps,
              use_vision, allowed_domains, sensitive_data, extend_system, override_system, session_id]
    return Form(fields=fields, prompt=prompt, model=model, provider=provider, hint=hint, price=price,
                remembered=remembered,
                response_format=response_format, json_schema=json_schema, schema_status=schema_status,
                run_btn=run_btn, cancel_btn=cancel_btn, run_errors=run_errors, workflow_box=workflow_box,
                advanced_box=advanced_box, examples=examples)


def _viewer() -> Viewer:
    """The live viewer and its buttons."""
    import gradio as gr

    html = gr.HTML(render_run_html(None), elem_id="wb-viewer", autoscroll=False, js_on_load=None)
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

    from agent.models import PROVIDERS
    from agent.ui.compare import render_compare_html
    from agent.ui.handlers import PAGE_SIZES

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
    with gr.Row():
        since = gr.Textbox(label="From (YYYY-MM-DD, UTC)", elem_id="wb-filter-since", scale=1)
        until = gr.Textbox(label="To (YYYY-MM-DD, UTC)", elem_id="wb-filter-until", scale=1)
        page_size = gr.Dropdown([str(n) for n in PAGE_SIZES], value="50", label="Rows per page",
                                elem_id="wb-page-size", scale=1)
        prev_btn = gr.Button("← Newer", elem_id="wb-page-prev", interactive=False, scale=0, min_width=90)
        page_label = gr.Markdown("page 1 of 1", elem_id="wb-page-label")
        next_btn = gr.Button("Older →", elem_id="wb-page-next", interactive=False, scale=0, min_width=90)
        refresh_btn = gr.Button("Refresh", elem_id="wb-refresh", scale=0, min_width=100)
    totals = gr.Markdown(elem_id="wb-history-totals", elem_classes=["wb-history-totals"])
    table = gr.Dataframe(history_frame([]), label="Run history", interactive=False, wrap=True, max_height=420,
                         elem_id="wb-history",
                         column_widths=["6%", "8%", "32%", "14%", "5%", "7%", "7%", "11%", "10%"])
    gr.Markdown("Select a row to open that run in the viewer (from the log, screenshots included); the last two "
                "rows selected fill the compare boxes below.", elem_id="wb-history-help")
    with gr.Accordion("Compare two runs", open=False, elem_id="wb-compare-box") as compare_box:
        with gr.Row():
            compare_a = gr.Number(value=None, precision=0, label="Run A", elem_id="wb-compare-a", scale=1)
            compare_b = gr.Number(value=None, precision=0, label="Run B", elem_id="wb-compare-b", scale=1)
            compare_btn = gr.Button("Compare", elem_id="wb-compare-btn", scale=0, min_width=120)
        compare_html = gr.HTML(render_compare_html(None, None), elem_id="wb-compare")
    return History(filters=[q, status, stop_reason, provider, model, since, until, page_size],
                   stop_reason=stop_reason, refresh_btn=refresh_btn, totals=totals, page=gr.State(0),
                   page_label=page_label, prev_btn=prev_btn, next_btn=next_btn, table=table,
                   compare_box=compare_box, compare_a=compare_a, compare_b=compare_b, compare_btn=compare_btn,
                   compare_html=compare_html, last_seen=gr.State(""))


def _wire(ui: Any, h: RunHandlers, form: Form, viewer: Viewer, history: History, *, max_concurrent: int) -> Any:
    """Connect the controls to their handlers (only `run` is in the API); the "Save as workflow" event."""
    response, table = viewer.response, history.table
    page_in = [*history.filters, history.page]
    page_out = [table, history.totals, history.page_label, history.prev_btn, history.next_btn, history.stop_reason,
                history.page]
    # Before the run's own event: a failed validation ends the browser's handling of the click.
    form.run_btn.click(h.run_errors, form.fields, [form.run_errors, form.workflow_box, form.advanced_box],
                       trigger_mode="multiple", **INSTANT)
    form.run_btn.click(h.remember, [form.provider, form.model, form.remembered], [form.remembered], **INSTANT)
    # "multiple": Run pressed while a run is shown starts the new run (the viewer follows it; the other
    # goes on in the background), never nothing at all.
    run_event = form.run_btn.click(h.run, form.fields, [response], api_name="run", validator=h.validate,
                                   concurrency_limit=max_concurrent, concurrency_id="run", trigger_mode="multiple")
    run_event.then(h.follow, [response], [response], **QUIET)  # background runs
    response.change(h.render, [response],
                    [viewer.html, form.cancel_btn, viewer.rerun_btn, viewer.save_btn, viewer.export_btn], **INSTANT)
    # The history follows the viewer: refreshed when the run shown starts and when it ends, however it is followed.
    response.change(h.history_on_change, [response, history.last_seen, *page_in], [*page_out, history.last_seen],
                    **QUIET)
    response.change(h.webhooks, [response], [viewer.webhooks], trigger_mode="always_last", **QUIET)
    form.cancel_btn.click(h.cancel, [response], None, trigger_mode="multiple", **QUIET)
    viewer.rerun_btn.click(h.rerun, [response], [*form.fields, form.hint], **QUIET)
    saved = viewer.save_btn.click(h.save_workflow, [response], None, **QUIET)
    # The export is a download from the route: the browser fetches it, nothing runs in Gradio.
    viewer.export_btn.click(None, [response], None, js=EXPORT_JS, api_visibility="private")
    open_event = table.select(h.open_run, None, [response], **QUIET)
    open_event.then(h.follow, [response], [response], **QUIET)
    table.select(h.pick, [history.compare_a, history.compare_b], [history.compare_a, history.compare_b], **QUIET)
    # Opening another run, or starting one, stops following the run opened before: open_run and run take the
    # tab's viewer (RunHandlers._show), which stops its follower; no `cancels=` (it raced the new follower).
    history.refresh_btn.click(h.history, page_in, page_out, **QUIET)
    for box in history.filters:  # a filter changed: back to the first page
        box.change(h.history_first, history.filters, page_out, **QUIET)
    history.prev_btn.click(lambda p: max(0, int(p or 0) - 1), [history.page], [history.page], **INSTANT).then(
        h.history, page_in, page_out, **QUIET)
    history.next_btn.click(lambda p: int(p or 0) + 1, [history.page], [history.page], **INSTANT).then(
        h.history, page_in, page_out, **QUIET)
    history.compare_btn.click(h.compare, [history.compare_a, history.compare_b], [history.compare_html], **QUIET)
    form.provider.input(h.on_provider, [form.provider], [form.model, form.hint], trigger_mode="always_last", **INSTANT)
    form.model.input(h.key_hint, [form.provider, form.model], [form.hint], trigger_mode="always_last", **INSTANT)
    form.json_schema.change(h.check_schema, [form.json_schema], [form.schema_status], **INSTANT)
    form.examples.click(h.fill_example, [form.examples], [form.prompt, form.response_format, form.json_schema],
                        **QUIET)
    ui.load(h.on_load, [form.remembered], [form.provider, form.model, form.hint], **QUIET)
    form.model.change(h.price_hint, [form.provider, form.model], [form.price], trigger_mode="always_last", **QUIET)
    ui.load(h.history, page_in, page_out, **QUIET)
    ui.load(h.open_link, None, [response, history.compare_a, history.compare_b, history.compare_html,
                                history.compare_box], **QUIET)
    return saved
