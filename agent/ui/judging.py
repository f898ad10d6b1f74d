"""The Experiments section's review tools: judges measured against people (a table), and two experiments
compared task by task (regressions first, their runs side by side, each pair linked to the compare view).

The numbers are those of `GET /api/judges` and `GET /api/experiments/{a}/diff/{b}` (the same functions, through
the run service); rendering is plain escaped HTML. Like agent.ui.experiments, gradio is imported at module level
and this module only by `build_ui`.
"""

import html
from typing import Any

import gradio as gr

from agent.experiments.routes import load_diff
from agent.experiments.runner import ExperimentRunner
from agent.service.door import NotFound
from agent.ui.experiments import experiment_id_of

KIND_STYLE = {"regression": ("#b91c1c", "▼ regression"), "improvement": ("#15803d", "▲ improvement"),
              "same": ("#6b7280", "= same"), "not comparable": ("#9ca3af", "? not comparable")}
SCROLL = 'style="overflow-x:auto;max-width:100%"'


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}"


def render_judges(judges: list[dict[str, Any]]) -> str:
    """Each judge (model and rubric) against people: runs judged, reviewed, agreement, kappa, confusion matrix."""
    if not judges:
        return ('<div class="wb-judges wb-muted">No judge has graded a run yet: give a task a judge check, or judge an '
                "experiment's results again (POST /api/experiments/{id}/judge).</div>")
    rows = []
    for j in judges:
        c = j["confusion"]
        agreement = "–" if not j["n"] else (f"{_pct(j['agreement'])} [{_pct(j['agreement_low'])}, "
                                            f"{_pct(j['agreement_high'])}]")
        kappa = "–" if j["kappa"] is None else (f"{_num(j['kappa'])} [{_num(j['kappa_low'])}, {_num(j['kappa_high'])}] "
                                                f"{_esc(j['kappa_words'])}")
        rows.append(
            f'<tr data-judge="{_esc(j["judge"])}" data-rubric="{_esc(j["rubric_hash"])}">'
            f'<th>{_esc(j["judge"])}</th><td title="{_esc(j.get("rubric"))}">{_esc(j["rubric_hash"])}</td>'
            f'<td>{j["runs_judged"]}</td><td class="wb-judge-n">{j["n"]}</td><td>{agreement}</td>'
            f'<td class="wb-judge-kappa">{kappa}</td>'
            f'<td>{c["judge_pass_person_pass"]} / {c["judge_pass_person_fail"]} / {c["judge_fail_person_pass"]} / '
            f'{c["judge_fail_person_fail"]}</td><td class="wb-muted">{_esc(j["sentence"])}</td></tr>')
    heads = [("judge", "provider/model"), ("rubric", "the rubric's hash (hover: the rubric)"),
             ("judged", "runs this judge graded"), ("reviewed", "of those, runs a person reviewed too (n)"),
             ("agreement", "the share of reviewed runs where the judge's verdict is the people's, 95% interval"),
             ("kappa", "Cohen's kappa: agreement beyond chance (1 perfect, 0 no better than chance), 95% interval"),
             ("pass·pass / pass·fail / fail·pass / fail·fail", "judge · people"), ("in words", "")]
    head = "".join(f'<th title="{_esc(t)}">{_esc(h)}</th>' for h, t in heads)
    return (f'<div class="wb-judges wb-scroll" {SCROLL}><table class="wb-judges-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _runs(pairs: list[dict[str, Any]]) -> str:
    out = []
    for p in pairs:
        sides = []
        for side in ("a", "b"):
            run = p[side]
            if run is None:
                sides.append('<span class="wb-muted">–</span>')
                continue
            link = f'<a href="?run={int(run["run_id"])}" target="_blank">run {int(run["run_id"])}</a>' \
                if run["run_id"] else "not played"
            sides.append(f'{link} <b>{_esc(run["outcome"])}</b>: <span class="wb-diff-result">'
                         f'{_esc(run["result"])}</span>')
        compare = (f' <a class="wb-diff-compare" href="{_esc(p["compare"].lstrip("/"))}" target="_blank">⇄ compare</a>'
                   if p["compare"] else "")
        out.append(f'<div class="wb-diff-pair">{sides[0]} → {sides[1]}{compare}</div>')
    return "".join(out)


def render_diff(diff: dict[str, Any] | None) -> str:
    """Experiment b against a: the summary, each variant's verdict, then task by task (regressions first)."""
    if not diff:
        return '<div class="wb-diff wb-muted">Give two experiment ids (before, after) and press Compare.</div>'
    a, b = diff["a"], diff["b"]
    verdicts = "".join(f'<li class="{"wb-sig" if c["significant"] else "wb-nosig"}" title="{_esc(c["method"])}">'
                       f'{_esc(c["verdict"])}</li>' for c in diff["comparisons"])
    rows = []
    for r in diff["rows"]:
        colour, words = KIND_STYLE[r["kind"]]
        before, after = r["before"], r["after"]
        change = "–" if r["change"] is None else f"{100 * r['change']:+.0f} points"
        matched = f' <span class="wb-muted">(by prompt: {_esc(r["task_id_b"])})</span>' \
            if r["matched_by"] == "prompt" else ""
        rows.append(
            f'<tr class="wb-diff-row" data-kind="{_esc(r["kind"])}" data-task="{_esc(r["task_id"])}" '
            f'data-variant="{_esc(r["variant"])}"><td style="color:{colour};font-weight:bold">{words}</td>'
            f'<th title="{_esc(r["prompt"])}">{_esc(r["task_id"])}{matched}</th><td>{_esc(r["variant"])}</td>'
            f'<td>{before["passes"]}/{before["tries"]} {_pct(before["rate"])}</td>'
            f'<td>{after["passes"]}/{after["tries"]} {_pct(after["rate"])}</td><td>{change}</td>'
            f'<td>{_runs(r["runs"])}</td></tr>')
    unmatched = diff["unmatched"]
    left = [f"only in #{x['experiment_id']}: {', '.join(map(str, unmatched[key]))}"
            for x, key in ((a, "tasks_a"), (b, "tasks_b")) if unmatched[key]]
    return (f'<div class="wb-diff" data-a="{a["experiment_id"]}" data-b="{b["experiment_id"]}">'
            f'<div class="wb-run-head"><b>#{b["experiment_id"]} {_esc(b["name"])} against #{a["experiment_id"]} '
            f'{_esc(a["name"])}</b> <span class="wb-muted wb-diff-summary">{_esc(diff["summary"])}</span></div>'
            f'<ul class="wb-verdicts">{verdicts}</ul>'
            f'<div class="wb-scroll" {SCROLL}><table class="wb-diff-table"><thead><tr><th></th><th>task</th>'
            f'<th>variant</th><th>before (#{a["experiment_id"]})</th><th>after (#{b["experiment_id"]})</th>'
            f'<th>change</th><th>runs, before → after</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
            + "".join(f'<div class="wb-muted">{_esc(t)}</div>' for t in left) + "</div>")


def _id(value: Any) -> int | None:
    """A number box's value as an experiment id (12.0 is 12), or None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return experiment_id_of(value)


class JudgingHandlers:
    """The judges table and the diff of two experiments, through the run service."""

    def __init__(self, runner: ExperimentRunner) -> None:
        self.service = runner.service

    async def judges(self) -> str:
        """The judges table."""
        return render_judges(await self.service.judges())

    async def diff(self, a: Any, b: Any) -> str:
        """The diff of experiments a (before) and b (after)."""
        first, second = _id(a), _id(b)
        if first is None or second is None:
            gr.Warning("Give two experiment ids: before and after.")
            return render_diff(None)
        try:
            return render_diff(await load_diff(self.service, first, second))
        except NotFound as exc:
            gr.Warning(str(exc))
            return render_diff(None)


def build_judging(ui: Any, runner: ExperimentRunner, *, quiet: dict[str, Any]) -> None:
    """The two accordions under the Experiments section (inside the page's Blocks), wired."""
    h = JudgingHandlers(runner)
    with gr.Accordion("Judges against people", open=False, elem_id="wb-judges-box"):
        gr.Markdown("Each judge (model and rubric) on the runs people reviewed too: how often its verdict is "
                    "theirs, and Cohen's kappa (agreement beyond chance). Review runs in the viewer; judge an "
                    "experiment again with another model with `POST /api/experiments/{id}/judge`.")
        refresh = gr.Button("Refresh", elem_id="wb-judges-refresh", scale=0, min_width=100)
        table = gr.HTML(render_judges([]), elem_id="wb-judges")
    with gr.Accordion("Compare two experiments", open=False, elem_id="wb-diff-box"):
        with gr.Row():
            before = gr.Number(value=None, precision=0, label="Before (experiment id)", elem_id="wb-diff-a", scale=1)
            after = gr.Number(value=None, precision=0, label="After (experiment id)", elem_id="wb-diff-b", scale=1)
            go = gr.Button("Compare", elem_id="wb-diff-btn", scale=0, min_width=120)
        view = gr.HTML(render_diff(None), elem_id="wb-diff")
    refresh.click(h.judges, None, [table], **quiet)
    go.click(h.diff, [before, after], [view], **quiet)
    ui.load(h.judges, None, [table], **quiet)
