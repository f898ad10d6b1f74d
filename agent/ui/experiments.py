"""The Experiments section: pick a task set, edit variants, see the dry run, start; a matrix that fills in live.

Rendering is plain escaped HTML (like the run viewer): a progress bar ("10 played, 2 running, 12 waiting";
"4 played, 80 cancelled"), the task × variant matrix (each cell coloured by passes/tries; each repeat a
mark linking to its run in the viewer, its grade and reason on hover, and a link comparing it with the
baseline's run of the same task and repeat), the variant table (success rate with its 95% interval
clustered by task, without the lost runs, pass@k, lost and not-graded runs with their reasons, cost,
unknown when a model has no price), the verdicts and the warnings; the tables scroll sideways when the
page is narrow. `/?experiment=N` opens one; a past experiment opens on a click. The `experiment` endpoint
of Gradio's API starts one and streams its report.

Like agent.ui.handlers, gradio is imported at module level and this module only by `build_ui`; no
`from __future__ import annotations`, as Gradio reads the handlers' annotations (`gr.SelectData`,
`gr.Request`) as objects.
"""

import asyncio
import html
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import gradio as gr
import pandas as pd

from agent.experiments.estimate import describe
from agent.experiments.report import summary
from agent.experiments.runner import ExperimentRunner
from agent.experiments.tasks import TaskError, bundled_sets
from agent.service.door import NotFound

VARIANT_COLUMNS = ["name", "provider", "model", "extend_system_message", "use_vision", "max_steps"]
DEFAULT_VARIANTS = [["A", "openai", "gpt-4.1-mini", "", "false", ""], ["B", "openai", "gpt-4.1", "", "false", ""]]
POLL_S = 1.0
FOLLOW_LIMIT_S = 6 * 3600  # a viewer stops following after this; the experiment itself goes on
UPLOAD = "(uploaded or pasted JSONL)"
MAX_ID = 2**63 - 1
# How each cell outcome shows in the matrix: mark, colour, words.
OUTCOMES = {"passed": ("✓", "#15803d", "passed"), "failed": ("✗", "#b91c1c", "failed"),
            "lost": ("!", "#b45309", "lost (counted as a failure)"), "ungraded": ("?", "#6b7280", "not graded"),
            "running": ("…", "#2563eb", "running"), "pending": ("·", "#9ca3af", "waiting"),
            "cancelled": ("–", "#9ca3af", "cancelled (not played)")}
SCROLL = 'style="overflow-x:auto;max-width:100%"'


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def variants_from_rows(rows: list[list[Any]]) -> list[dict[str, Any]]:
    """The variants the table describes (empty rows skipped, empty cells left to the defaults)."""
    variants = []
    for row in rows:
        cells = dict(zip(VARIANT_COLUMNS, [("" if c is None else str(c)).strip() for c in row], strict=False))
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
                   backend: str, name: str, version: Any = "") -> dict[str, Any]:
    """The experiment request the section's controls describe (`version`: of the task set; empty, the latest)."""
    spec: dict[str, Any] = {"name": (name or "").strip() or "experiment", "variants": variants_from_rows(rows),
                            "repeats": int(repeats or 1), "concurrency": int(concurrency or 1), "backend": backend}
    if task_set == UPLOAD:
        spec["tasks_jsonl"] = jsonl or ""
    else:
        spec["task_set"] = task_set
        text = str(version or "").strip()
        if text and not text.isdigit():
            raise ValueError(f"Task set version: {text!r} is not a version number; leave it empty for the latest")
        if text:
            spec["task_set_version"] = int(text)
    return spec


def _colour(passes: int, tries: int) -> str:
    if not tries:
        return "#e5e7eb"
    rate = passes / tries
    return "#bbf7d0" if rate >= 0.999 else "#fecaca" if rate <= 0.001 else "#fde68a"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _money(value: Any, unknown: str = "unknown") -> str:
    return unknown if value is None else f"${value:.4f}"


def _mark(c: dict[str, Any], base: dict[str, Any] | None) -> str:
    """One repeat of a matrix cell: its outcome mark linking to its run, the grade on hover, and a link comparing
    it with the baseline's run of the same task and repeat."""
    mark, colour, words = OUTCOMES.get(c["outcome"], ("?", "#6b7280", c["outcome"]))
    reason = c.get("detail") or ""
    title = f"repeat {c['repeat']}: {words}" + (f" ({c['lost_reason']})" if c.get("lost_reason") else "") + (
        f": {reason}" if reason else "")
    attrs = (f'class="wb-exp-mark wb-{_esc(c["outcome"])}" data-repeat="{int(c["repeat"])}" title="{_esc(title)}" '
             f'style="color:{colour};font-weight:bold;text-decoration:none;margin-right:2px"')
    out = f'<a {attrs} href="?run={int(c["run_id"])}" target="_blank">{mark}</a>' if c.get("run_id") else \
        f"<span {attrs}>{mark}</span>"
    if base is not None and base.get("run_id") and c.get("run_id"):
        out += (f'<a class="wb-exp-compare" href="?compare={int(base["run_id"])},{int(c["run_id"])}" target="_blank" '
                f'title="compare with {_esc(base["variant"])}\'s run of repeat {int(c["repeat"])}" '
                'style="font-size:0.8em;margin-right:4px">⇄</a>')
    return out


def _matrix(report: dict[str, Any]) -> str:
    variants = [v["name"] for v in report["variant_specs"]]
    baseline = report.get("baseline")
    by_cell = {(m["task_id"], m["variant"]): m for m in report["matrix"]}
    repeats: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in report["cells"]:
        repeats.setdefault((c["task_id"], c["variant"]), []).append(c)
    head = "".join(f"<th>{_esc(v)}{' (baseline)' if v == baseline and len(variants) > 1 else ''}</th>"
                   for v in variants)
    rows = []
    for task in report["tasks"]:
        cells = []
        base_runs = {c["repeat"]: c for c in repeats.get((task["task_id"], baseline or ""), [])}
        for v in variants:
            m = by_cell.get((task["task_id"], v)) or {"passes": 0, "tries": 0, "lost": 0}
            marks = "".join(_mark(c, base_runs.get(c["repeat"]) if v != baseline else None)
                            for c in sorted(repeats.get((task["task_id"], v), []), key=lambda c: c["repeat"]))
            lost = f' <span class="wb-muted" title="lost runs, counted as failures">({m["lost"]} lost)</span>' \
                if m.get("lost") else ""
            cells.append(f'<td style="background:{_colour(m["passes"], m["tries"])}" '
                         f'data-task="{_esc(task["task_id"])}" data-variant="{_esc(v)}">'
                         f'<b>{m["passes"]}/{m["tries"]}</b>{lost} <span class="wb-marks">{marks}</span></td>')
        rows.append(f'<tr><th title="{_esc(task["title"] or "")}">{_esc(task["task_id"])}</th>{"".join(cells)}</tr>')
    return (f'<div class="wb-scroll" {SCROLL}><table class="wb-matrix"><thead><tr><th>task</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _variants(report: dict[str, Any]) -> str:
    rows = []
    for v in report["variants"]:
        interval = f"{100 * v['ci_low']:.0f}–{100 * v['ci_high']:.0f}%" if v["ci_low"] is not None else "–"
        k = v["k"] or "k"
        tries = int(v["passes"]) + int(v["failures"]) + int(v["lost"])
        p50 = "–" if v["p50_duration_s"] is None else f"{v['p50_duration_s']:.1f}"
        p95 = "–" if v["p95_duration_s"] is None else f"{v['p95_duration_s']:.1f}"
        steps = "–" if v["mean_steps"] is None else f"{v['mean_steps']:.1f}"
        rows.append(
            f'<tr data-variant="{_esc(v["name"])}"><th>{_esc(v["name"])}</th><td>{v["passes"]}/{tries}</td>'
            f'<td>{_pct(v["success_rate"])}</td><td>{interval}</td><td>{_pct(v["success_rate_excluding_lost"])}</td>'
            f'<td>@{k} {_pct(v["pass_at_k"])}</td><td>^{k} {_pct(v["pass_hat_k"])}</td>'
            f'<td>{_esc(v["lost_text"])}</td><td>{_esc(v["not_graded"])}</td>'
            f'<td>{steps}</td>'
            f'<td>{_money(v["cost_usd"])}</td><td>{_money(v["cost_per_success"], "–")}</td>'
            f'<td>{p50} / {p95} s</td></tr>')
    heads = [("variant", ""), ("passes", "passes out of the tries (a lost run counts as a failure)"),
             ("rate", "mean over tasks of each task's pass rate"),
             ("95% CI", "95% interval of the rate, repeats of a task counted as one cluster"),
             ("without lost", "the rate over the graded runs only"), ("pass@k", "at least one of k tries passes"),
             ("pass^k", "all k tries pass"), ("lost", "runs lost to the infrastructure after their replays"),
             ("not graded", "runs played but not graded (no check, or the judge failed)"), ("steps", ""),
             ("cost", "unknown when litellm has no price for the model"), ("cost/success", ""), ("p50 / p95", "")]
    head = "".join(f'<th title="{_esc(t)}">{_esc(h)}</th>' for h, t in heads)
    return (f'<div class="wb-scroll" {SCROLL}><table class="wb-variants"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _set_label(report: dict[str, Any]) -> str:
    """"task set demo-shop v2 · " for an experiment on a task set kept in the workbench ("" for inline tasks)."""
    if not report.get("task_set"):
        return ""
    version = f" v{int(report['task_set_version'])}" if report.get("task_set_version") else ""
    return (f'<span class="wb-exp-taskset" data-version="{_esc(report.get("task_set_version") or "")}">task set '
            f'{_esc(report["task_set"])}{version}</span> · ')


def render_experiment(report: dict[str, Any] | None) -> str:
    """Progress, matrix, variant table, verdicts and warnings of one experiment, as escaped HTML."""
    if not report:
        return '<div class="wb-exp wb-empty">No experiment yet: pick a task set, edit the variants, press Start.</div>'
    progress = report["progress"]
    total = progress["total"] or 0
    played, cancelled = progress.get("played") or 0, progress.get("cancelled") or 0
    pct = 100 * played / total if total else 0
    gone = 100 * cancelled / total if total else 0
    verdicts = "".join(f'<li class="{"wb-sig" if c["significant"] else "wb-nosig"}" title="{_esc(c["method"])}">'
                       f'{_esc(c["verdict"])}</li>' for c in report["comparisons"])
    warnings = "".join(f'<li class="wb-warning" style="color:#b45309">{_esc(w)}</li>' for w in report["warnings"])
    stop = f" ({_esc(report['stop_reason'])})" if report.get("stop_reason") not in (None, report["status"]) else ""
    return (
        f'<div class="wb-exp" data-status="{_esc(report["status"])}" data-experiment-id="{report["experiment_id"]}">'
        f'<div class="wb-run-head"><b>Experiment #{report["experiment_id"]}: {_esc(report["name"])}</b> '
        f'<span class="wb-muted">{_esc(report["status"])}{stop} · <span class="wb-exp-counts">'
        f'{_esc(progress["text"])}</span> · {_esc(report["backend"])} · {_set_label(report)}'
        f'<a href="?experiment={report["experiment_id"]}" title="a link that opens this experiment">link</a>'
        '</span></div>'
        f'<div class="wb-progress" role="progressbar" aria-valuemin="0" aria-valuemax="{total}" '
        f'aria-valuenow="{played}" style="height:10px;background:#e5e7eb;border-radius:5px;overflow:hidden;'
        f'display:flex;margin:6px 0">'
        f'<div class="wb-progress-played" style="width:{pct:.1f}%;background:#2563eb"></div>'
        f'<div class="wb-progress-cancelled" style="width:{gone:.1f}%;background:#9ca3af"></div></div>'
        f'{_matrix(report)}{_variants(report)}'
        f'<ul class="wb-verdicts">{verdicts}</ul><ul class="wb-warnings">{warnings}</ul></div>'
    )


def grade_banner(cell: dict[str, Any] | None) -> str:
    """For the run viewer: the grade of the experiment cell this run played, and why ("" for a run of none)."""
    if not cell:
        return ""
    _mark_char, colour, words = OUTCOMES.get(str(cell["outcome"]), ("?", "#6b7280", str(cell["outcome"])))
    played_again = "" if int(cell.get("attempts") or 1) <= 1 else f", played {int(cell['attempts'])} times"
    return (f'<div class="wb-grade" data-outcome="{_esc(cell["outcome"])}" style="border-left:4px solid {colour};'
            f'padding:4px 8px;margin-bottom:6px">'
            f'<a href="?experiment={int(cell["experiment_id"])}">Experiment #{int(cell["experiment_id"])}: '
            f'{_esc(cell.get("experiment_name"))}</a> · task {_esc(cell["task_key"])} · variant '
            f'{_esc(cell["variant"])} · repeat {int(cell["repeat"])}{played_again}: '
            f'<b style="color:{colour}">{_esc(words)}</b>'
            f'{" (" + _esc(cell["lost_reason"]) + ")" if cell.get("lost_reason") else ""}'
            f'{" — " + _esc(cell["grade_detail"]) if cell.get("grade_detail") else ""}</div>')


def experiment_id_of(value: Any) -> int | None:
    """A query value as an experiment id: digits only, in range; None otherwise (never shown back as HTML)."""
    text = str(value or "")
    return int(text) if text.isdigit() and 0 < int(text) <= MAX_ID else None


class ExperimentHandlers:
    """What the Experiments section's controls do, through the runner (and so the run service)."""

    def __init__(self, runner: ExperimentRunner) -> None:
        self.runner = runner

    async def experiment(self, spec: str) -> AsyncIterator[dict[str, Any]]:
        """Start an experiment (its request as JSON) and stream its report until it ends."""
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

    async def report(self, exp_id: int) -> dict[str, Any]:
        """The full report (every cell), built off the event loop."""
        found = await self.runner.service.get_experiment(exp_id)
        return await asyncio.to_thread(lambda: json.loads(json.dumps(summary(found), default=str)))

    async def follow(self, exp_id: int) -> AsyncIterator[dict[str, Any]]:
        """The experiment's report now and again whenever its progress changes, until it ends (bounded): the
        light progress form is polled, the report rebuilt only when it moved."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FOLLOW_LIMIT_S
        last: str | None = None
        while True:
            state = await self.runner.service.experiment_progress(exp_id)
            seen = json.dumps(state, sort_keys=True, default=str)
            if seen != last:
                last = seen
                yield await self.report(exp_id)
            if state["status"] != "running" or loop.time() > deadline:
                return
            await asyncio.sleep(POLL_S)

    async def dry_run(self, task_set: str, jsonl: str, rows: Any, repeats: Any, concurrency: Any, backend: str,
                      name: str, version: Any = "") -> str:
        """What Start would start: cells, estimated cost, the smallest difference it would likely see."""
        table = rows.values.tolist() if hasattr(rows, "values") else list(rows or [])
        try:
            spec = spec_from_form(task_set, jsonl, table, repeats, concurrency, backend, name, version)
            answer = await self.runner.dry_run(spec)
        except (TaskError, ValueError) as exc:
            return f'<span class="wb-muted">Start would be refused: {_esc(exc)}</span>'
        return f'<span class="wb-muted">Start: {_esc(describe(answer))}</span>'

    async def start(self, task_set: str, jsonl: str, rows: Any, repeats: Any, concurrency: Any, backend: str,
                    name: str, version: Any = "") -> AsyncIterator[Any]:
        """The Start button: validate, start, then redraw the matrix as cells finish."""
        table = rows.values.tolist() if hasattr(rows, "values") else list(rows or [])
        try:
            exp_id = await self.runner.start(spec_from_form(task_set, jsonl, table, repeats, concurrency, backend,
                                                            name, version))
        except (TaskError, ValueError) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        async for report in self.follow(exp_id):
            yield report

    async def set_choices(self) -> Any:
        """The task sets to pick from: every set kept in the workbench (bundled and stored), then JSONL."""
        return gr.update(choices=[*[s["name"] for s in await self.runner.tasksets.list_sets()], UPLOAD])

    async def cancel(self, report: Any) -> None:
        """Cancel the experiment shown."""
        if not isinstance(report, dict) or "experiment_id" not in report:
            gr.Warning("No experiment shown to cancel.")
            return
        stopped = await self.runner.cancel(int(report["experiment_id"]))
        (gr.Info if stopped else gr.Warning)(
            f"Experiment {report['experiment_id']} {'is being cancelled' if stopped else 'is not running'}.")

    async def past(self) -> Any:
        """The list of past experiments (newest first), with each variant's passes."""
        rows, _total = await self.runner.service.list_experiments(limit=100)
        return pd.DataFrame([{
            "experiment": r["id"], "name": r["name"], "status": r["status"] + (
                f" ({r['stop_reason']})" if r.get("stop_reason") not in (None, r["status"]) else ""),
            "runs": f"{r['played']} played" + (f", {r['cancelled']} cancelled" if r["cancelled"] else "") + (
                f" of {r['total']}" if r["played"] + r["cancelled"] < r["total"] else ""),
            "passes": " · ".join(f"{v['variant']} {v['passes']}/{v['tries']}" for v in r["variant_passes"] or []),
            "started (UTC)": str(r["created_at"])[:19]} for r in rows],
            columns=["experiment", "name", "status", "runs", "passes", "started (UTC)"])

    async def open(self, evt: gr.SelectData) -> AsyncIterator[Any]:
        """Open a past experiment (a click on its row) and follow it if it still runs."""
        row = getattr(evt, "row_value", None) or []
        exp_id = experiment_id_of(row[0] if row else None)
        if exp_id is None:
            return
        async for report in self.follow(exp_id):
            yield report

    async def open_link(self, request: gr.Request) -> AsyncIterator[Any]:
        """The page was opened with `?experiment=N`: that experiment, followed while it runs."""
        params = getattr(request, "query_params", None) or {}
        if "experiment" not in params:
            return
        exp_id = experiment_id_of(params.get("experiment"))
        if exp_id is None:
            gr.Warning("?experiment= takes an experiment id (digits), e.g. ?experiment=3")
            return
        try:
            async for report in self.follow(exp_id):
                yield report
        except NotFound:
            gr.Warning(f"The link asks for experiment {exp_id}, which does not exist.")


def build_section(ui: Any, runner: ExperimentRunner, *, quiet: dict[str, Any],
                  instant: dict[str, Any]) -> tuple[Any, Callable[[], Awaitable[Any]]]:
    """The section's layout and wiring (inside the page's Blocks); its task set box and what refreshes its choices
    (for the sections that make task sets)."""
    h = ExperimentHandlers(runner)
    gr.Markdown("### Experiments", elem_id="wb-experiments-title")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=360):
            name = gr.Textbox("", label="Name", elem_id="wb-exp-name", placeholder="e.g. prompt v2 against v1")
            with gr.Row():
                task_set = gr.Dropdown([*bundled_sets(), UPLOAD], value=(bundled_sets() or [UPLOAD])[0],
                                       label="Task set", elem_id="wb-exp-taskset", scale=3)
                version = gr.Textbox("", label="Version (empty: latest)", elem_id="wb-exp-taskset-version",
                                     scale=1, min_width=120)
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
            estimate = gr.HTML("", elem_id="wb-exp-estimate")
            with gr.Row():
                start = gr.Button("Start experiment", variant="primary", elem_id="wb-exp-start")
                cancel = gr.Button("Cancel", variant="stop", elem_id="wb-exp-cancel")
            spec = gr.Textbox(visible=False, elem_id="wb-exp-spec")
        with gr.Column(scale=6, min_width=420):
            report = gr.JSON(visible=False, elem_id="wb-exp-report")
            view = gr.HTML(render_experiment(None), elem_id="wb-exp-view")
            past = gr.Dataframe(label="Past experiments (click one to open it)", interactive=False,
                                elem_id="wb-exp-past")
    upload.upload(lambda data: bytes(data).decode("utf-8", "replace") if data else "", [upload], [jsonl], **quiet)
    # Tasks typed, pasted or uploaded are the ones to run.
    jsonl.change(lambda text: gr.update(value=UPLOAD) if (text or "").strip() else gr.skip(), [jsonl], [task_set],
                 **instant)
    form = [task_set, jsonl, variants, repeats, concurrency, backend, name, version]
    for control in (task_set, jsonl, variants, repeats, version):  # the Start button's preview follows the form
        control.change(h.dry_run, form, [estimate], **quiet)
    started = start.click(h.start, form, [report], **quiet)
    started.then(h.past, None, [past], **quiet)
    report.change(render_experiment, [report], [view], **instant)
    cancel.click(h.cancel, [report], None, **quiet)
    opened = past.select(h.open, None, [report], **quiet)
    past.select(None, None, None, cancels=[started], api_visibility="private")  # one experiment followed at once
    start.click(None, None, None, cancels=[started, opened], api_visibility="private")
    spec.submit(h.experiment, [spec], [report], api_name="experiment", concurrency_limit=None,
                show_progress="hidden")
    ui.load(h.past, None, [past], **quiet)
    ui.load(h.set_choices, None, [task_set], **quiet)
    ui.load(h.dry_run, form, [estimate], **quiet)
    ui.load(h.open_link, None, [report], **quiet)
    return task_set, h.set_choices
