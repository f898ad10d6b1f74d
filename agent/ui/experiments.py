"""The Experiments section: pick a task set, edit variants, start; a matrix that fills in live.

Rendering is plain escaped HTML (like the run viewer): a progress bar, the task × variant matrix
(each cell coloured by passes/k, linking to its runs in the viewer and to the compare view), the
variant table with Wilson intervals, and the paired verdicts. The `experiment` endpoint of Gradio's
API starts one and streams its progress. gradio is imported only inside the functions.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from agent.experiments.report import not_graded, summary
from agent.experiments.tasks import TaskError, bundled_sets

if TYPE_CHECKING:
    from agent.experiments.runner import ExperimentRunner

VARIANT_COLUMNS = ["name", "provider", "model", "extend_system_message", "use_vision", "max_steps"]
DEFAULT_VARIANTS = [["A", "openai", "gpt-4.1-mini", "", "false", ""], ["B", "openai", "gpt-4.1", "", "false", ""]]
POLL_S = 1.0
FOLLOW_LIMIT_S = 6 * 3600  # a viewer stops following after this; the experiment itself goes on
UPLOAD = "(uploaded or pasted JSONL)"


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def variants_from_rows(rows: list[list[Any]]) -> list[dict[str, Any]]:
    """The variants the table describes (empty rows skipped, empty cells left to the defaults)."""
    variants = []
    for row in rows:
        cells = dict(zip(VARIANT_COLUMNS, [("" if c is None else str(c)).strip() for c in row]))
        if not any(cells.values()):
            continue
        variant: dict[str, Any] = {"name": cells["name"]}
        for key in ("provider", "model", "extend_system_message"):
            if cells.get(key):
                variant[key] = cells[key]
        if cells.get("use_vision", "").lower() in ("true", "yes", "1"):
            variant["use_vision"] = True
        if cells.get("max_steps"):
            variant["max_steps"] = int(cells["max_steps"]) if cells["max_steps"].isdigit() else cells["max_steps"]
        variants.append(variant)
    return variants


def spec_from_form(task_set: str, jsonl: str, rows: list[list[Any]], repeats: Any, concurrency: Any,
                   backend: str, name: str) -> dict[str, Any]:
    """The experiment request the section's controls describe."""
    spec: dict[str, Any] = {"name": (name or "").strip() or "experiment", "variants": variants_from_rows(rows),
                            "repeats": int(repeats or 1), "concurrency": int(concurrency or 1), "backend": backend}
    if task_set == UPLOAD:
        spec["tasks_jsonl"] = jsonl or ""
    else:
        spec["task_set"] = task_set
    return spec


def _colour(passes: int, graded: int) -> str:
    if not graded:
        return "#e5e7eb"
    rate = passes / graded
    return "#bbf7d0" if rate >= 0.999 else "#fecaca" if rate <= 0.001 else "#fde68a"


def render_experiment(report: dict[str, Any] | None) -> str:
    """Progress, matrix, variant table and verdicts of one experiment, as escaped HTML."""
    if not report:
        return '<div class="wb-exp wb-empty">No experiment yet: pick a task set, edit the variants, press Start.</div>'
    progress = report["progress"]
    total, done = progress["total"] or 0, progress["done"] or 0
    pct = 100 * done / total if total else 0
    variants = [v["name"] for v in report["variant_specs"]]
    by_cell = {(m["task_id"], m["variant"]): m for m in report["matrix"]}
    head = "".join(f"<th>{_esc(v)}</th>" for v in variants)
    rows = []
    for task in report["tasks"]:
        cells = []
        for v in variants:
            m = by_cell.get((task["task_id"], v)) or {"passes": 0, "graded": 0, "run_ids": []}
            runs = m.get("run_ids") or []
            links = " ".join(f'<a href="?run={int(r)}" target="_blank">#{int(r)}</a>' for r in runs[:10])
            compare = (f' <a class="wb-exp-compare" href="?compare={int(runs[0])},{int(runs[1])}" target="_blank">'
                       "compare</a>") if len(runs) >= 2 else ""
            cells.append(f'<td style="background:{_colour(m["passes"], m["graded"])}" '
                         f'data-task="{_esc(task["task_id"])}" data-variant="{_esc(v)}">'
                         f'<b>{m["passes"]}/{m["graded"]}</b> <span class="wb-muted">{links}{compare}</span></td>')
        rows.append(f'<tr><th title="{_esc(task["title"] or "")}">{_esc(task["task_id"])}</th>{"".join(cells)}</tr>')
    stats = []
    for v in report["variants"]:
        rate = v["success_rate"]
        interval = (f"{100 * v['wilson_low']:.0f}–{100 * v['wilson_high']:.0f}%"
                    if v["wilson_low"] is not None else "–")
        stats.append(
            f'<tr data-variant="{_esc(v["name"])}"><th>{_esc(v["name"])}</th><td>{v["passes"]}/{v["graded"]}</td>'
            f'<td>{"–" if rate is None else f"{100 * rate:.0f}%"}</td><td>{interval}</td>'
            f'<td>{_fmt(v["pass_at_k"], pct=True)}</td><td>{_fmt(v["pass_hat_k"], pct=True)}</td>'
            f'<td>{_fmt(v["mean_steps"])}</td><td>{_fmt(v["cost_usd"], money=True)}</td>'
            f'<td>{_fmt(v["cost_per_success"], money=True)}</td><td>{_fmt(v["p50_duration_s"])} / '
            f'{_fmt(v["p95_duration_s"])} s</td><td>{_esc(not_graded(v))}</td></tr>')
    verdicts = "".join(f'<li class="{"wb-sig" if c["significant"] else "wb-nosig"}">{_esc(c["verdict"])}</li>'
                       for c in report["comparisons"])
    return (
        f'<div class="wb-exp" data-status="{_esc(report["status"])}" data-experiment-id="{report["experiment_id"]}">'
        f'<div class="wb-run-head"><b>Experiment #{report["experiment_id"]}: {_esc(report["name"])}</b> '
        f'<span class="wb-muted">{_esc(report["status"])} · {done}/{total} runs · '
        f'{_esc(report["backend"])}</span></div>'
        f'<div class="wb-progress"><div style="width:{pct:.1f}%"></div></div>'
        f'<table class="wb-matrix"><thead><tr><th>task</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        '<table class="wb-variants"><thead><tr><th>variant</th><th>passes</th><th>rate</th><th>95% CI</th>'
        '<th>pass@k</th><th>pass^k</th><th>steps</th><th>cost</th><th>cost/success</th><th>p50 / p95</th>'
        '<th title="runs the agent had no fair chance in (stopped, or lost to the provider or the browser)">'
        'not graded</th></tr>'
        f'</thead><tbody>{"".join(stats)}</tbody></table>'
        f'<ul class="wb-verdicts">{verdicts}</ul></div>'
    )


def _fmt(value: Any, *, pct: bool = False, money: bool = False) -> str:
    if value is None:
        return "–"
    if pct:
        return f"{100 * value:.0f}%"
    if money:
        return f"${value:.4f}"
    return f"{value:.1f}"


class ExperimentHandlers:
    """What the Experiments section's controls do, through the runner (and so the run service)."""

    def __init__(self, runner: ExperimentRunner) -> None:
        self.runner = runner

    async def experiment(self, spec: str) -> AsyncIterator[dict[str, Any]]:
        """Start an experiment (its request as JSON) and stream its summary until it ends."""
        import gradio as gr

        try:
            data = json.loads(spec) if isinstance(spec, str) else spec
            exp_id = await self.runner.start(data)
        except json.JSONDecodeError as exc:
            raise gr.Error(f"spec: is not valid JSON ({exc.msg}); send the experiment request",
                           print_exception=False) from None
        except TaskError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        async for report in self.follow(exp_id):
            yield report

    async def follow(self, exp_id: int) -> AsyncIterator[dict[str, Any]]:
        """The experiment's summary now and every second until it ends (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FOLLOW_LIMIT_S
        last: str | None = None
        while True:
            report = summary(await self.runner.service.get_experiment(exp_id))
            text = json.dumps(report, sort_keys=True, default=str)
            if text != last:
                last = text
                yield json.loads(text)
            if report["status"] != "running" or loop.time() > deadline:
                return
            await asyncio.sleep(POLL_S)

    async def start(self, task_set: str, jsonl: str, rows: Any, repeats: Any, concurrency: Any, backend: str,
                    name: str) -> AsyncIterator[Any]:
        """The Start button: validate, start, then redraw the matrix as cells finish."""
        import gradio as gr

        table = rows.values.tolist() if hasattr(rows, "values") else list(rows or [])
        try:
            exp_id = await self.runner.start(spec_from_form(task_set, jsonl, table, repeats, concurrency, backend,
                                                            name))
        except (TaskError, ValueError) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        async for report in self.follow(exp_id):
            yield report

    async def cancel(self, report: Any) -> None:
        """Cancel the experiment shown."""
        import gradio as gr

        if not isinstance(report, dict) or "experiment_id" not in report:
            gr.Warning("No experiment shown to cancel.")
            return
        stopped = await self.runner.cancel(int(report["experiment_id"]))
        (gr.Info if stopped else gr.Warning)(
            f"Experiment {report['experiment_id']} {'is being cancelled' if stopped else 'is not running'}.")

    async def past(self) -> Any:
        """The list of past experiments (newest first)."""
        import pandas as pd

        rows, _total = await self.runner.service.list_experiments(limit=100)
        return pd.DataFrame([{"experiment": r["id"], "name": r["name"], "status": r["status"],
                              "runs": f"{r['done']}/{r['total']}", "passes": f"{r['passes']}/{r['graded']}",
                              "started (UTC)": str(r["created_at"])[:19]} for r in rows],
                            columns=["experiment", "name", "status", "runs", "passes", "started (UTC)"])

    async def open(self, evt: Any) -> AsyncIterator[Any]:
        """Open a past experiment (a row of the list) and follow it if it still runs."""
        row = getattr(evt, "row_value", None) or []
        try:
            exp_id = int(row[0])
        except (IndexError, TypeError, ValueError):
            return
        async for report in self.follow(exp_id):
            yield report


def build_section(ui: Any, runner: ExperimentRunner, *, quiet: dict[str, Any], instant: dict[str, Any]) -> None:
    """The section's layout and wiring (inside the page's Blocks)."""
    import gradio as gr

    h = ExperimentHandlers(runner)
    gr.Markdown("### Experiments", elem_id="wb-experiments-title")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=360):
            name = gr.Textbox("", label="Name", elem_id="wb-exp-name", placeholder="e.g. prompt v2 against v1")
            task_set = gr.Dropdown([*bundled_sets(), UPLOAD], value=(bundled_sets() or [UPLOAD])[0], label="Task set",
                                   elem_id="wb-exp-taskset")
            upload = gr.File(label="Task set file (JSONL)", file_types=[".jsonl", ".txt"], type="binary",
                             elem_id="wb-exp-upload")
            jsonl = gr.Code("", language="json", label="Tasks (JSONL, one task per line)", lines=4,
                            elem_id="wb-exp-jsonl")
            variants = gr.Dataframe(DEFAULT_VARIANTS, headers=VARIANT_COLUMNS, column_count=len(VARIANT_COLUMNS),
                                    interactive=True, label="Variants (one per row)", elem_id="wb-exp-variants")
            with gr.Row():
                repeats = gr.Number(3, precision=0, minimum=1, maximum=20, label="Repeats", elem_id="wb-exp-repeats")
                concurrency = gr.Number(2, precision=0, minimum=1, maximum=32, label="Concurrency",
                                        elem_id="wb-exp-concurrency")
                backend = gr.Radio(["local", "ray"], value="local", label="Backend", elem_id="wb-exp-backend")
            with gr.Row():
                start = gr.Button("Start experiment", variant="primary", elem_id="wb-exp-start")
                cancel = gr.Button("Cancel", variant="stop", elem_id="wb-exp-cancel")
            spec = gr.Textbox(visible=False, elem_id="wb-exp-spec")
        with gr.Column(scale=6, min_width=420):
            report = gr.JSON(visible=False, elem_id="wb-exp-report")
            view = gr.HTML(render_experiment(None), elem_id="wb-exp-view")
            past = gr.Dataframe(label="Past experiments (select one to open it)", interactive=False,
                                elem_id="wb-exp-past")
    upload.upload(lambda data: bytes(data).decode("utf-8", "replace") if data else "", [upload], [jsonl], **quiet)
    # Tasks typed, pasted or uploaded are the ones to run.
    jsonl.change(lambda text: gr.update(value=UPLOAD) if (text or "").strip() else gr.skip(), [jsonl], [task_set],
                 **instant)
    started = start.click(h.start, [task_set, jsonl, variants, repeats, concurrency, backend, name], [report], **quiet)
    started.then(h.past, None, [past], **quiet)
    report.change(render_experiment, [report], [view], **instant)
    cancel.click(h.cancel, [report], None, **quiet)
    past.select(h.open, None, [report], **quiet)
    start.click(None, None, None, cancels=[started], api_visibility="private")
    spec.submit(h.experiment, [spec], [report], api_name="experiment", concurrency_limit=None,
                show_progress="hidden")
    ui.load(h.past, None, [past], **quiet)
