"""What the workbench's buttons and boxes do: the Gradio event handlers, all through the run service.

gradio is imported at module level here, and this module only by `build_ui` (importing gradio
takes ~6 s). No `from __future__ import annotations`: Gradio reads the handlers' annotations as
objects to know which ones want the selected row (`gr.SelectData`) or the request (`gr.Request`).
"""

import json
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from agent.engine.llm import SUGGESTED_MODELS, key_status
from agent.models import DEFAULT_MODELS, PROVIDERS, RequestError
from agent.service.door import NotFound
from agent.service.runs import RunService, ServiceBusy, ServiceClosed
from agent.settings import Settings
from agent.ui.form import (
    FORM_FIELDS,
    FormError,
    demo_base_url,
    follow_run,
    form_request,
    load_examples,
    request_form_values,
)
from agent.ui.render import history_frame, render_run_html

UI_HISTORY_LIMIT = 100  # rows shown in the history table (newest first, after the filters)


def run_id_of(current: Any) -> int | None:
    """The run id of the response shown in the viewer, if any."""
    if isinstance(current, dict) and isinstance(current.get("task_run_id"), int):
        return int(current["task_run_id"])
    return None


class RunHandlers:
    """The run page's handlers: the `run` endpoint (UI and Gradio API), viewer, history, examples."""

    def __init__(self, service: RunService, settings: Settings) -> None:
        self.service, self.settings = service, settings
        self.examples = load_examples(settings.demo_dir)

    def key_hint(self, provider: str) -> Any:
        """The hint under the provider box: the key is set, or which variable to set."""
        ready, advice = key_status(provider) if provider in PROVIDERS else (False, f"unknown provider {provider!r}")
        text = f"✓ {advice}" if ready else f"⚠ {advice}, then restart the app."
        return gr.update(value=text, elem_classes=[] if ready else ["wb-key-missing"])

    # ---------------------------------------------------------------- the run endpoint (UI and API)
    async def run(
        self,
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
            _task_id, run_id = await self.service.submit(request)
        except (FormError, RequestError, ServiceBusy, ServiceClosed) as exc:  # the caller's to fix, or retry
            raise gr.Error(str(exc), print_exception=False) from None
        if not request.wait_for_completion:
            current = await self.service.aget(run_id)
            if current is not None:
                yield current.to_json()
            return
        # Closing this generator (client gone, another run opened) only stops watching: the run goes on.
        async for snapshot in follow_run(self.service, run_id):
            yield snapshot

    def validate(self, *values: Any) -> list[Any]:
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

    async def follow(self, current: Any) -> AsyncIterator[Any]:
        """Keep the viewer up to date with a run that is still going (background runs, opened runs)."""
        run_id = run_id_of(current)
        if run_id is None or current.get("status") != "in_progress":
            yield gr.skip()
            return
        try:
            async for snapshot in follow_run(self.service, run_id, skip_first=True):
                yield snapshot
        except NotFound:
            yield gr.skip()

    # ---------------------------------------------------------------- the other handlers
    def render(self, current: Any) -> tuple[Any, ...]:
        run_id = run_id_of(current)
        running = bool(run_id) and current.get("status") == "in_progress"
        ended = bool(run_id) and not running
        can_save = ended and current.get("status") == "success"
        return (render_run_html(current), gr.update(interactive=running), gr.update(interactive=ended),
                gr.update(interactive=can_save))

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
        return [*request_form_values(request), self.key_hint(request.provider)]

    async def save_workflow(self, current: Any) -> None:
        run_id = run_id_of(current)
        if run_id is None:
            gr.Warning("Open a successful run first.")
            return
        from agent.workflows.document import WorkflowError

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

    async def history(self, status: str, provider: str, model: str) -> Any:
        rows, total = await self.service.list_runs(
            status=None if status == "all" else status, provider=None if provider == "all" else provider,
            model=(model or "").strip() or None, limit=UI_HISTORY_LIMIT)
        label = f"Run history ({total} run{'s' if total != 1 else ''}" + (
            f", newest {UI_HISTORY_LIMIT} shown)" if total > UI_HISTORY_LIMIT else ")")
        return gr.update(value=history_frame(rows), label=label)

    async def open_run(self, evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        try:
            run_id = int(row[0])
        except (IndexError, TypeError, ValueError):
            return gr.skip()
        response = await self.service.aget(run_id)
        if response is None:
            gr.Warning(f"Run {run_id} no longer exists.")
            return gr.skip()
        return response.to_json()

    def on_provider(self, provider: str) -> tuple[Any, Any]:
        choices = SUGGESTED_MODELS.get(provider, [])
        return gr.update(choices=choices, value=DEFAULT_MODELS.get(provider, "")), self.key_hint(provider)

    def check_schema(self, text: str) -> Any:
        from agent.models import parse_json_schema

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

    def on_load(self) -> tuple[Any, Any]:
        """The page's first state: the default model and the key hint for the default provider."""
        # The model box's configured value stays "" so that API callers who give only a provider get
        # that provider's default model; the page shows the default for the provider picked.
        return gr.update(value=DEFAULT_MODELS["openai"]), self.key_hint("openai")
