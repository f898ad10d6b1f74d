"""The workbench's Workflows section: the saved cached workflows, one opened, replayed with new values, deleted.

`build_workflows()` lays the section out (call it inside the Blocks); `WorkflowHandlers` is what its
controls do, all through the run service; `wire_workflows()` connects them, the replay's run going
to the live viewer. Like agent.ui.handlers, this module imports gradio at module level and is
imported only by `build_ui`; no `from __future__ import annotations`, as Gradio reads the handlers'
annotations (`gr.SelectData`) as objects.
"""

import html
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import gradio as gr
import pandas as pd

from agent.models import RequestError, RunRequest
from agent.service.door import NotFound
from agent.service.runs import RunService, ServiceBusy, ServiceClosed

COLUMNS = ["id", "name", "version", "versions", "parameters", "source run", "healed from", "saved (UTC)"]
MAX_SHOWN_STEPS = 50


@dataclass
class WorkflowsSection:
    """The section's components; `selected` holds the id of the workflow opened."""

    table: Any
    refresh_btn: Any
    detail: Any
    params: Any
    replay_btn: Any
    delete_btn: Any
    selected: Any


def build_workflows() -> WorkflowsSection:
    """The Workflows section (inside an open gr.Blocks)."""
    with gr.Accordion("Workflows", open=False, elem_id="wb-workflows"):
        gr.Markdown("Cached workflows saved from successful runs (**Save as workflow**). Select one to see its "
                    "versions and steps, then replay it with new values (no model call unless a page changed) "
                    "or delete it.", elem_id="wb-workflows-help")
        with gr.Row():
            refresh_btn = gr.Button("Refresh", elem_id="wb-workflows-refresh", scale=0, min_width=100)
        table = gr.Dataframe(pd.DataFrame(columns=COLUMNS), label="Workflows (latest version of each)",
                             interactive=False, wrap=True, max_height=300, elem_id="wb-workflows-table")
        detail = gr.HTML("", elem_id="wb-workflow-detail")
        params = gr.Code(value="", language="json", lines=4, label="Parameter values for the replay (JSON)",
                         elem_id="wb-workflow-values")
        with gr.Row():
            replay_btn = gr.Button("Replay with these values", variant="primary", interactive=False,
                                   elem_id="wb-workflow-replay")
            delete_btn = gr.Button("Delete workflow", variant="stop", interactive=False,
                                   elem_id="wb-workflow-delete")
        selected = gr.State(None)
    return WorkflowsSection(table=table, refresh_btn=refresh_btn, detail=detail, params=params,
                            replay_btn=replay_btn, delete_btn=delete_btn, selected=selected)


def workflows_frame(rows: list[dict[str, Any]]) -> Any:
    """The table's rows (the latest version of each workflow) as a DataFrame, id first."""
    out = []
    for row in rows:
        params = (row.get("document") or {}).get("parameters") or []
        created = row.get("created_at")
        out.append({
            "id": row.get("id"), "name": row.get("name") or "", "version": row.get("version"),
            "versions": row.get("versions") or 1,
            "parameters": ", ".join(str(p.get("name")) for p in params) or "(none)",
            "source run": row.get("source_run_id") if row.get("source_run_id") is not None else "",
            "healed from": f"v{row['healed_from_version']}" if row.get("healed_from_version") else "",
            "saved (UTC)": created.strftime("%Y-%m-%d %H:%M:%S") if isinstance(created, datetime) else "",
        })
    return pd.DataFrame(out, columns=COLUMNS)


def render_workflow(latest: dict[str, Any], versions: list[dict[str, Any]]) -> str:
    """One workflow: its parameters, its versions (source run, healed from) and the latest version's steps."""
    e = html.escape
    doc = latest.get("document") or {}
    params = "".join(
        f"<li><code>{e(str(p.get('name')))}</code> ({e(str(p.get('type', 'string')))}): "
        f"{e(str(p.get('description') or ''))} <span class='wb-muted'>e.g. {e(json.dumps(p.get('example')))}"
        "</span></li>" for p in doc.get("parameters") or []) or "<li class='wb-muted'>none</li>"
    rows = "".join(
        f"<tr><td>v{v['version']}</td><td>{e(str(v.get('created_at') or ''))[:19]}</td>"
        f"<td>{e(str(v.get('source_run_id') or ''))}</td>"
        f"<td>{'v' + str(v['healed_from_version']) if v.get('healed_from_version') else ''}</td>"
        f"<td>{sum(1 for s in (v.get('document') or {}).get('steps') or [] if s.get('healed'))}</td></tr>"
        for v in versions)
    steps = "".join(
        f"<li{' class=wb-healed' if s.get('healed') else ''}>{e(str(s.get('description') or ''))[:300]} "
        f"<span class='wb-muted'>{e(', '.join(a.get('name', '?') for a in s.get('actions') or []))}"
        f"{' · healed' if s.get('healed') else ''}</span></li>"
        for s in (doc.get("steps") or [])[:MAX_SHOWN_STEPS])
    return (f"<div class='wb-workflow' data-id='{int(latest['id'])}'><h4>Workflow {int(latest['id'])}: "
            f"{e(str(latest.get('name') or ''))}</h4><div class='wb-muted'>recorded from: "
            f"{e(str(doc.get('prompt') or ''))[:300]}</div><div class='wb-label'>Parameters</div><ul>{params}</ul>"
            "<div class='wb-label'>Versions</div><table class='wb-versions'><tr><th>version</th><th>saved</th>"
            f"<th>source run</th><th>healed from</th><th>healed steps</th></tr>{rows}</table>"
            f"<div class='wb-label'>Steps (version {int(latest['version'])})</div><ol>{steps}</ol></div>")


class WorkflowHandlers:
    """What the Workflows section's controls do, through the run service."""

    def __init__(self, service: RunService) -> None:
        self.service = service

    async def listing(self) -> Any:
        """The table, newest workflow first."""
        rows = await self.service.list_workflows()
        label = f"Workflows ({len(rows)}; the latest version of each)"
        return gr.update(value=workflows_frame(rows), label=label)

    async def open(self, evt: gr.SelectData) -> tuple[Any, ...]:
        """Show the selected workflow, its example values ready to edit; enable replay and delete."""
        try:
            workflow_id = int((evt.row_value or [None])[0])
            latest = await self.service.get_workflow(workflow_id)
            versions = await self.service.workflow_versions(workflow_id)
        except (TypeError, ValueError, NotFound):
            gr.Warning("That workflow no longer exists; press Refresh.")
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        examples = {p["name"]: p.get("example") for p in (latest.get("document") or {}).get("parameters") or []}
        return (render_workflow(latest, versions), json.dumps(examples, indent=2, ensure_ascii=False),
                workflow_id, gr.update(interactive=True), gr.update(interactive=True))

    async def replay(self, workflow_id: int | None, values: str, provider: str, model: str) -> Any:
        """Replay the opened workflow with these values: the run goes to the viewer (which then follows it)."""
        if workflow_id is None:
            raise gr.Error("Select a workflow in the table first.", print_exception=False)
        try:
            chosen = json.loads(values) if (values or "").strip() else {}
        except json.JSONDecodeError as exc:
            raise gr.Error(f"workflow parameters are not valid JSON ({exc.msg}); give an object such as "
                           '{"product": "HDMI cable"}', print_exception=False) from None
        if not isinstance(chosen, dict):
            raise gr.Error('workflow parameters must be a JSON object such as {"product": "HDMI cable"}',
                           print_exception=False)
        try:
            latest = await self.service.get_workflow(workflow_id)
            request = RunRequest.model_validate({
                "prompt": (latest.get("document") or {}).get("prompt") or latest.get("name") or "replay",
                "provider": provider or "openai", "model": model or "", "use_cached_workflow": True,
                "workflow_id": workflow_id, "workflow_params": chosen or None, "wait_for_completion": False})
            _task_id, run_id = await self.service.submit(request)
        except NotFound:
            raise gr.Error(f"Workflow {workflow_id} no longer exists; press Refresh.", print_exception=False) from None
        except (RequestError, ValueError, ServiceBusy, ServiceClosed) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        gr.Info(f"Replaying workflow {workflow_id} as run {run_id}; a step that needs healing runs on "
                f"{request.provider} model {request.model} (the form's).")
        current = await self.service.aget(run_id)
        return current.to_json() if current is not None else gr.skip()

    async def delete(self, workflow_id: int | None) -> tuple[Any, ...]:
        """Delete the opened workflow (every version); the table refreshed, the detail cleared."""
        if workflow_id is None:
            raise gr.Error("Select a workflow in the table first.", print_exception=False)
        try:
            await self.service.delete_workflow(workflow_id)
        except NotFound:
            gr.Warning(f"Workflow {workflow_id} was already deleted.")
        else:
            gr.Info(f"Deleted workflow {workflow_id} (every version).")
        return (await self.listing(), "", "", None, gr.update(interactive=False), gr.update(interactive=False))


def wire_workflows(ui: Any, h: WorkflowHandlers, section: WorkflowsSection, *, response: Any, provider: Any,
                   model: Any, follow: Any, quiet: dict[str, Any]) -> None:
    """Connect the section: listing on load and refresh, open on select, replay into the viewer, delete."""
    table = section.table
    ui.load(h.listing, None, [table], **quiet)
    section.refresh_btn.click(h.listing, None, [table], **quiet)
    table.select(h.open, None, [section.detail, section.params, section.selected, section.replay_btn,
                                section.delete_btn], **quiet)
    replayed = section.replay_btn.click(h.replay, [section.selected, section.params, provider, model], [response],
                                        **quiet)
    replayed.then(follow, [response], [response], **quiet)
    section.delete_btn.click(h.delete, [section.selected], [table, section.detail, section.params, section.selected,
                                                            section.replay_btn, section.delete_btn], **quiet)
