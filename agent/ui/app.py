"""The Gradio Blocks mounted at "/": run form, live viewer, run history and the `run` API endpoint.

gradio is imported only here (it takes ~6 s): `--help`, the other layers' tests and the notebooks
never pay for it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, AsyncIterator

from agent.settings import Settings
from agent.ui.form import (
    FORM_FIELDS, FormError, demo_base_url, follow_run, form_request, load_examples, request_form_values,
)
from agent.ui.render import history_frame, render_run_html

UI_HISTORY_LIMIT = 100  # rows shown in the history table (newest first, after the filters)
CSS_PATH = Path(__file__).with_name("style.css")


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


def build_ui(service: Any, settings: Settings) -> Any | None:
    """The Gradio Blocks mounted at "/": run form, live viewer, run history and the `run` API endpoint."""
    import gradio as gr

    from agent.engine.llm import SUGGESTED_MODELS, key_status, model_notes
    from agent.models import DEFAULT_MODELS, PROVIDERS, RequestError
    from agent.service.runs import NotFound, ServiceBusy, ServiceClosed

    examples = load_examples(settings.demo_dir)

    def key_hint(provider: str, model: str = "") -> Any:
        """The provider's key status, then what litellm's model map says the user should know of the model."""
        ready, advice = key_status(provider) if provider in PROVIDERS else (False, f"unknown provider {provider!r}")
        lines = [f"✓ {advice}" if ready else f"⚠ {advice}, then restart the app."]
        if provider in PROVIDERS:
            lines += [f"⚠ {note}" for note in model_notes(provider, model.strip() or None)]
        return gr.update(value="\n\n".join(lines), elem_classes=[] if ready else ["wb-key-missing"])

    def run_id_of(current: Any) -> int | None:
        if isinstance(current, dict) and isinstance(current.get("task_run_id"), int):
            return int(current["task_run_id"])
        return None

    # ---------------------------------------------------------------- the run endpoint (UI and API)
    async def run(
        prompt: str,
        model: str = "",
        provider: str = "openai",
        wait_for_completion: bool = True,
        webhook_url: str = "",
        response_format: str = "text",
        json_schema: str = "",
        use_cached_workflow: bool = False,
        cached_workflow: str = "",
        workflow_id: int | None = None,
        workflow_params: str = "",
        start_url: str = "",
        max_steps: int | None = None,
        use_vision: bool = False,
        allowed_domains: str = "",
    ) -> AsyncIterator[dict[str, Any]]:
        """Run the agent on a task; yields the run response (the contract's JSON) after each step, the final one last.

        With wait_for_completion false, yields once at the start (status "in_progress", with the ids);
        poll GET /api/runs/{task_run_id} or watch it in the UI.
        """
        values = dict(zip(FORM_FIELDS, (
            prompt, model, provider, wait_for_completion, webhook_url, response_format, json_schema,
            use_cached_workflow, cached_workflow, workflow_id, workflow_params, start_url, max_steps, use_vision,
            allowed_domains,
        )))
        try:
            request = form_request(values)
            _task_id, run_id = await service.submit(request)
        except (FormError, RequestError, ServiceBusy, ServiceClosed) as exc:  # the caller's to fix, or retry
            raise gr.Error(str(exc), print_exception=False) from None
        if not request.wait_for_completion:
            current = await service.aget(run_id)
            yield current.to_json()
            return
        # Closing this generator (client gone, another run opened) only stops watching: the run goes on.
        async for snapshot in follow_run(service, run_id):
            yield snapshot

    def validate(*values: Any) -> list[Any]:
        """One gr.validate per form field: the message shows next to the field and nothing starts."""
        try:
            form_request(dict(zip(FORM_FIELDS, values)))
        except FormError as exc:
            by_field: dict[str, list[str]] = {}
            for err in exc.errors:
                name = err["field"].split(".")[0]
                by_field.setdefault(name if name in FORM_FIELDS else "prompt", []).append(err["message"])
            return [gr.validate(name not in by_field, "; ".join(by_field.get(name, [])))
                    for name in FORM_FIELDS]
        return [gr.validate(True, "") for _ in FORM_FIELDS]

    async def follow(current: Any) -> AsyncIterator[Any]:
        """Keep the viewer up to date with a run that is still going (background runs, opened runs)."""
        run_id = run_id_of(current)
        if run_id is None or current.get("status") != "in_progress":
            yield gr.skip()
            return
        try:
            async for snapshot in follow_run(service, run_id, skip_first=True):
                yield snapshot
        except NotFound:
            yield gr.skip()

    # ---------------------------------------------------------------- the other handlers
    def render(current: Any) -> tuple[Any, ...]:
        run_id = run_id_of(current)
        running = bool(run_id) and current.get("status") == "in_progress"
        ended = bool(run_id) and not running
        can_save = ended and current.get("status") == "success"
        return (render_run_html(current), gr.update(interactive=running), gr.update(interactive=ended),
                gr.update(interactive=can_save))

    async def cancel(current: Any) -> None:
        run_id = run_id_of(current)
        if run_id is None:
            gr.Warning("No run in the viewer to cancel.")
            return
        try:
            stopped = await service.cancel(run_id)
        except NotFound:
            gr.Warning(f"Run {run_id} no longer exists.")
            return
        if stopped:
            gr.Info(f"Cancelling run {run_id}: it stops at its next check.")
        else:
            gr.Info(f"Run {run_id} had already ended.")

    async def rerun(current: Any) -> list[Any]:
        run_id = run_id_of(current)
        request = await asyncio.to_thread(service.store.get_run_request, run_id) if run_id else None
        if request is None:
            gr.Warning("Open a run first (from the history), then press Run again.")
            return [gr.skip()] * (len(FORM_FIELDS) + 1)
        gr.Info(f"The form now holds run {run_id}'s request: change what you like and press Run.")
        return [*request_form_values(request), key_hint(request.provider, request.model)]

    async def save_workflow(current: Any) -> None:
        run_id = run_id_of(current)
        if run_id is None:
            gr.Warning("Open a successful run first.")
            return
        from agent.workflows.document import WorkflowError, save_run_as_workflow

        response = await service.aget(run_id)
        request = await asyncio.to_thread(service.store.get_run_request, run_id)
        if response is None or request is None:
            gr.Warning(f"Run {run_id} no longer exists.")
            return
        try:
            wid, version, document = await asyncio.to_thread(
                save_run_as_workflow, service.store, run_id, request, response)
        except WorkflowError as exc:
            gr.Warning(f"Run {run_id} cannot be saved as a workflow: {exc}")
            return
        names = ", ".join(p.get("name", "?") for p in document.get("parameters") or []) or "none"
        gr.Info(f"Saved as workflow {wid} (version {version}; parameters: {names}). Replay it: tick "
                f"'Use cached workflow' and give workflow id {wid}.")

    async def history(status: str, provider: str, model: str) -> Any:
        rows, total = await asyncio.to_thread(
            service.store.list_runs, status=None if status == "all" else status,
            provider=None if provider == "all" else provider, model=(model or "").strip() or None,
            limit=UI_HISTORY_LIMIT,
        )
        label = f"Run history ({total} run{'s' if total != 1 else ''}" + (
            f", newest {UI_HISTORY_LIMIT} shown)" if total > UI_HISTORY_LIMIT else ")")
        return gr.update(value=history_frame(rows), label=label)

    async def open_run(evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        try:
            run_id = int(row[0])
        except (IndexError, TypeError, ValueError):
            return gr.skip()
        response = await service.aget(run_id)
        if response is None:
            gr.Warning(f"Run {run_id} no longer exists.")
            return gr.skip()
        return response.to_json()

    def on_provider(provider: str) -> tuple[Any, Any]:
        choices = SUGGESTED_MODELS.get(provider, [])
        default = DEFAULT_MODELS.get(provider, "")
        return gr.update(choices=choices, value=default), key_hint(provider, default)

    def check_schema(text: str) -> Any:
        from agent.models import parse_json_schema

        if not (text or "").strip():
            return gr.update(value="No schema: the result is free text (or any JSON with format json).",
                             elem_classes=[])
        try:
            parse_json_schema(text)
        except ValueError as exc:
            return gr.update(value=f"✗ json_schema {exc}", elem_classes=["wb-error"])
        return gr.update(value="✓ valid JSON Schema: the result will be checked against it.", elem_classes=[])

    def fill_example(index: int, request: gr.Request) -> tuple[Any, ...]:
        example = examples[int(index)]
        url = demo_base_url(settings, str(getattr(request, "url", "") or "")) + "/demo/"
        schema = example.get("json_schema")
        return (example["prompt"].replace("{DEMO_URL}", url), example.get("response_format") or "text",
                json.dumps(schema, indent=2) if schema else "")

    # This module uses string annotations (PEP 563) and `gr` is local here, so Gradio could not resolve
    # the hints that make it pass the selected row and the request: give it the real classes.
    open_run.__annotations__ = {"evt": gr.SelectData, "return": Any}
    fill_example.__annotations__ = {"index": int, "request": gr.Request, "return": tuple}

    def on_load() -> tuple[Any, Any]:
        # The model box's configured value stays "" so that API callers who give only a provider get
        # that provider's default model; the page shows the default for the provider picked.
        return gr.update(value=DEFAULT_MODELS["openai"]), key_hint("openai", DEFAULT_MODELS["openai"])

    # ---------------------------------------------------------------- the layout
    with gr.Blocks(title="Web-agent workbench", fill_width=True) as ui:
        gr.Markdown(
            "## LLM web-agent workbench\nDescribe a task; an agent drives a real Chromium step by step. "
            "[API docs](api/docs) · [demo shop](demo/) · [health](api/health)", elem_id="wb-header",
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=360):
                prompt = gr.Textbox(label="Task (prompt)", lines=4, max_lines=14, elem_id="wb-prompt",
                                    placeholder="e.g. Go to the demo shop and find the cheapest USB-C cable. "
                                                "Return its name and price.")
                with gr.Row():
                    provider = gr.Dropdown(list(PROVIDERS), value="openai", label="Provider", elem_id="wb-provider")
                    model = gr.Dropdown(SUGGESTED_MODELS["openai"], value="", label="Model", allow_custom_value=True,
                                        elem_id="wb-model", info="Suggestions, or type any model name")
                hint = gr.Markdown(elem_id="wb-key-hint")
                with gr.Row():
                    response_format = gr.Radio(["text", "json"], value="text", label="Response format",
                                               elem_id="wb-format")
                    wait_for_completion = gr.Checkbox(value=True, label="Wait for completion",
                                                      info="Off: start in the background", elem_id="wb-wait")
                json_schema = gr.Code(value="", language="json", label="JSON schema (optional)", lines=5,
                                      max_lines=18, elem_id="wb-schema")
                schema_status = gr.Markdown(elem_id="wb-schema-status")
                webhook_url = gr.Textbox("", label="Webhook URL (optional)", elem_id="wb-webhook",
                                         placeholder="https://example.com/hook: receives the final response")
                with gr.Accordion("Cached workflow", open=False, elem_id="wb-workflow-box"):
                    use_cached_workflow = gr.Checkbox(value=False, label="Use cached workflow",
                                                      elem_id="wb-use-cached")
                    workflow_id = gr.Number(value=None, precision=0, label="Workflow id (a saved workflow)",
                                            elem_id="wb-workflow-id")
                    workflow_params = gr.Code(value="", language="json", lines=3, label="Workflow parameters (JSON)",
                                              elem_id="wb-workflow-params")
                    cached_workflow = gr.Code(value="", language="json", lines=4, max_lines=18,
                                              label="Cached workflow (JSON document)", elem_id="wb-cached-workflow")
                with gr.Accordion("Advanced", open=False, elem_id="wb-advanced"):
                    max_steps = gr.Number(value=None, precision=0, label="Max steps (1-200; empty: 25)",
                                          elem_id="wb-max-steps")
                    use_vision = gr.Checkbox(value=False, label="Use vision (send screenshots to the model)",
                                             elem_id="wb-use-vision")
                    allowed_domains = gr.Textbox("", label="Allowed domains (comma separated; empty: any public site)",
                                                 elem_id="wb-allowed-domains", placeholder="shop.example, *.example.org")
                    start_url = gr.Textbox("", label="Start URL (opened before the first step)", elem_id="wb-start-url")
                with gr.Row():
                    run_btn = gr.Button("Run", variant="primary", elem_id="wb-run")
                    cancel_btn = gr.Button("Cancel", variant="stop", interactive=False, elem_id="wb-cancel")
                example_set = gr.Dataset(components=["textbox"], samples=[[e["title"]] for e in examples],
                                         headers=["Task"], label="Examples (against the bundled demo shop)",
                                         type="index", samples_per_page=10, elem_id="wb-examples")
            with gr.Column(scale=6, min_width=420):
                viewer = gr.HTML(render_run_html(None), elem_id="wb-viewer", autoscroll=False,
                                 js_on_load=None)
                with gr.Row():
                    rerun_btn = gr.Button("Run again (refill the form)", interactive=False, elem_id="wb-rerun")
                    save_btn = gr.Button("Save as workflow", interactive=False, elem_id="wb-save-workflow")
                with gr.Accordion("Response JSON (what the API returns)", open=False, elem_id="wb-response-box"):
                    response_json = gr.JSON(value=None, label="Run response", elem_id="wb-response")
        gr.Markdown("### Run history", elem_id="wb-history-title")
        with gr.Row():
            status_filter = gr.Dropdown(["all", "success", "failure", "in_progress"], value="all", label="Status",
                                        elem_id="wb-filter-status", scale=1)
            provider_filter = gr.Dropdown(["all", *PROVIDERS], value="all", label="Provider",
                                          elem_id="wb-filter-provider", scale=1)
            model_filter = gr.Textbox(label="Model (exact)", elem_id="wb-filter-model", scale=2)
            refresh_btn = gr.Button("Refresh", elem_id="wb-refresh", scale=0, min_width=100)
        history_table = gr.Dataframe(history_frame([]), label="Run history", interactive=False, wrap=True,
                                     max_height=420, elem_id="wb-history",
                                     column_widths=["6%", "9%", "37%", "15%", "6%", "8%", "7%", "12%"])
        gr.Markdown("Select a row to open that run in the viewer (from the log, screenshots included).",
                    elem_id="wb-history-help")

        form = [prompt, model, provider, wait_for_completion, webhook_url, response_format, json_schema,
                use_cached_workflow, cached_workflow, workflow_id, workflow_params, start_url, max_steps,
                use_vision, allowed_domains]
        filters = [status_filter, provider_filter, model_filter]

        # ------------------------------------------------------------ events
        # Every event but `run` is private (not in the API) and light: no queue slot limit, no spinner.
        quiet: dict[str, Any] = {"api_visibility": "private", "concurrency_limit": None, "show_progress": "hidden"}
        # Instant ones skip the queue: the viewer redraws ~0.2 s after each step instead of ~1 s.
        instant: dict[str, Any] = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
        run_event = run_btn.click(
            run, form, [response_json], api_name="run", validator=validate,
            concurrency_limit=service.max_concurrent, concurrency_id="run",
        )
        run_follow = run_event.then(follow, [response_json], [response_json], **quiet)  # background runs
        run_event.then(history, filters, [history_table], **quiet)
        run_follow.then(history, filters, [history_table], **quiet)
        response_json.change(render, [response_json], [viewer, cancel_btn, rerun_btn, save_btn], **instant)
        cancel_btn.click(cancel, [response_json], None, trigger_mode="multiple", **quiet)
        rerun_btn.click(rerun, [response_json], [*form, hint], **quiet)
        save_btn.click(save_workflow, [response_json], None, **quiet)
        open_event = history_table.select(open_run, None, [response_json], cancels=[run_event, run_follow],
                                          **quiet)
        open_follow = open_event.then(follow, [response_json], [response_json], **quiet)
        # Opening another run, or starting one, stops following the run opened before.
        history_table.select(None, None, None, cancels=[open_follow], api_visibility="private")
        run_btn.click(None, None, None, cancels=[open_follow], api_visibility="private")
        refresh_btn.click(history, filters, [history_table], **quiet)
        for box in filters:
            box.change(history, filters, [history_table], **quiet)
        provider.input(on_provider, [provider], [model, hint], trigger_mode="always_last", **instant)
        model.input(key_hint, [provider, model], [hint], trigger_mode="always_last", **instant)
        json_schema.change(check_schema, [json_schema], [schema_status], **instant)
        example_set.click(fill_example, [example_set], [prompt, response_format, json_schema], **quiet)
        ui.load(on_load, None, [model, hint], **quiet)
        ui.load(history, filters, [history_table], **quiet)
    return ui

# ========================================================================= end of the Gradio UI

