"""Reviewing runs in the workbench: the viewer's review panel (pass or fail and a comment on the run shown, its
grades from checks, judges and people together), and the name a review is made under.

`build_review_panel()` lays the panel out under the viewer (inside the Blocks); `ReviewHandlers` is what its
controls do, through the run service (`review`, the same path as `POST /api/runs/{id}/reviews`); `wire_review_panel`
connects them. With a named API key (WORKBENCH_API_KEYS) the browser logged in with it reviews as that name: the
name box shows it and cannot change it. Like agent.ui.handlers, this module imports gradio at module level and is
imported only by `build_ui`; no `from __future__ import annotations` (Gradio reads the handlers' annotations).
"""

import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import gradio as gr

from agent.models import ReviewError, read_review
from agent.service.door import Conflict, NotFound
from agent.service.review_routes import ANONYMOUS, reviewer_for
from agent.service.runs import RunService
from agent.settings import Settings
from agent.ui.render import run_id_of

KIND_WORDS = {"check": "check", "judge": "judge", "person": "person"}
GRADED_BY_WORDS = {"person": "a person's review", "judge": "its judge", "check": "its check",
                   "agent": "its agent's own claim (nothing graded it)"}
QUEUE_WORDS = {"disagreement": "its graders disagree", "judged": "a judge graded it and no person has yet",
               "failure": "the agent failed"}


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else _esc(value)[:16]


def render_grades(grade: dict[str, Any] | None, gradings: list[dict[str, Any]]) -> str:
    """The run's grades together: what it counts as and by whom, then each grader's verdicts (checks, judges,
    people; a reviewer's earlier reviews shown struck through), escaped."""
    if grade is None:
        return '<div class="wb-grades wb-muted">Open a run to review it.</div>'
    if grade["graded_by"] is None:
        return ('<div class="wb-grades wb-muted" data-counts="running">The run is still going: review it once it '
                'ends.</div>')
    verdict = "passed" if grade["passed"] else "failed"
    colour = "#15803d" if grade["passed"] else "#b91c1c"
    head = (f'<div class="wb-grade-head">Counts as <b style="color:{colour}" class="wb-counts">{verdict}</b>, by '
            f'{_esc(GRADED_BY_WORDS.get(grade["graded_by"], grade["graded_by"]))}')
    if grade.get("queue_reason"):
        head += f' · <span class="wb-queued">in the review queue: {_esc(QUEUE_WORDS[grade["queue_reason"]])}</span>'
    head += "</div>"
    rows = []
    for g in gradings:
        mark = {"pass": "✓ pass", "fail": "✗ fail"}.get(g["verdict"] or "", "? no verdict")
        style = "" if g["latest"] else ' style="text-decoration:line-through;opacity:0.6" title="superseded"'
        rubric = f' title="rubric: {_esc((g.get("details") or {}).get("rubric"))}"' if g["kind"] == "judge" else ""
        score = "" if g["score"] is None else f"{g['score']:.2f}"
        rows.append(f'<tr class="wb-grading" data-kind="{_esc(g["kind"])}" data-latest="{str(g["latest"]).lower()}"'
                    f'{style}><td>{_esc(KIND_WORDS[g["kind"]])}</td><td{rubric}>{_esc(g["grader"])}</td>'
                    f'<td class="wb-verdict">{mark}</td><td>{score}</td>'
                    f'<td>{_esc(g["comment"])}</td><td class="wb-muted">{_when(g["created_at"])}</td></tr>')
    table = ('<table class="wb-gradings"><thead><tr><th>by</th><th>who</th><th>verdict</th><th>score</th>'
             f'<th>why</th><th>when (UTC)</th></tr></thead><tbody>{"".join(rows)}</tbody></table>' if rows else
             '<div class="wb-muted">No check, judge or person has graded this run yet.</div>')
    return (f'<div class="wb-grades" data-graded-by="{_esc(grade["graded_by"])}" '
            f'data-passed="{str(grade["passed"]).lower()}">{head}{table}</div>')


def key_holder(settings: Settings, request: Any) -> str | None:
    """The name of the named API key a page request carries (its login cookie stands for it), or None."""
    headers = getattr(request, "headers", None) or {}
    given = []
    for name in ("x-api-key", "authorization"):
        value = headers.get(name) if hasattr(headers, "get") else None
        if isinstance(value, str):
            given.append(value.removeprefix("Bearer ").strip() if name == "authorization" else value.strip())
    for name, key in settings.named_keys:
        if key in given:
            return name
    return None


@dataclass
class ReviewPanel:
    """The review panel's components."""

    grades: Any
    reviewer: Any
    comment: Any
    pass_btn: Any
    fail_btn: Any
    remembered: Any  # the reviewer's name this browser used last (localStorage)


def build_review_panel() -> ReviewPanel:
    """The panel under the viewer (inside an open gr.Blocks)."""
    with gr.Accordion("Review this run", open=True, elem_id="wb-review-box"):
        grades = gr.HTML(render_grades(None, []), elem_id="wb-review-grades")
        with gr.Row():
            reviewer = gr.Textbox(label="Reviewer", placeholder="your name", max_lines=1, scale=1,
                                  elem_id="wb-review-reviewer")
            comment = gr.Textbox(label="Comment (optional)", placeholder="why it passes or fails", lines=1,
                                 max_lines=4, scale=3, elem_id="wb-review-comment")
        with gr.Row():
            pass_btn = gr.Button("✓ Pass", interactive=False, elem_id="wb-review-pass")
            fail_btn = gr.Button("✗ Fail", interactive=False, elem_id="wb-review-fail")
    return ReviewPanel(grades=grades, reviewer=reviewer, comment=comment, pass_btn=pass_btn, fail_btn=fail_btn,
                       remembered=gr.BrowserState("", storage_key="wb-reviewer"))


class ReviewHandlers:
    """What the review panel does, through the run service."""

    def __init__(self, service: RunService, settings: Settings) -> None:
        self.service, self.settings = service, settings

    async def grades_html(self, run_id: int | None) -> str:
        """The grades of a run, drawn for the panel."""
        if run_id is None:
            return render_grades(None, [])
        try:
            return render_grades(await self.service.run_grade(run_id), await self.service.gradings(run_id))
        except NotFound:
            return render_grades(None, [])

    async def show(self, current: Any) -> tuple[Any, Any, Any]:
        """The panel for the run in the viewer: its grades; the buttons once it has ended."""
        run_id = run_id_of(current)
        ended = run_id is not None and (current or {}).get("status") != "in_progress"
        if run_id is not None and not ended:  # redrawn at each step: no read of the log until the run ends
            html = render_grades({"graded_by": None}, [])
            return html, gr.update(interactive=False), gr.update(interactive=False)
        return (await self.grades_html(run_id), gr.update(interactive=ended), gr.update(interactive=ended))

    def on_load(self, remembered: Any, request: gr.Request) -> Any:
        """The reviewer box: the named key's holder (fixed), else the name this browser used last."""
        holder = key_holder(self.settings, request)
        if holder is not None:
            return gr.update(value=holder, interactive=False, info="your API key's name")
        return gr.update(value=remembered if isinstance(remembered, str) else "")

    async def review(self, verdict: str, current: Any, reviewer: str, comment: str,
                     request: gr.Request) -> tuple[Any, Any, Any]:
        """Keep a review of the run shown (as `POST /api/runs/{id}/reviews` does): its grades redrawn, the comment
        box emptied, the name remembered in this browser."""
        run_id = run_id_of(current)
        if run_id is None:
            gr.Warning("Open a run first (from the history), then review it.")
            return gr.skip(), gr.skip(), gr.skip()
        holder = key_holder(self.settings, request)
        body = {"verdict": verdict, "comment": (comment or "").strip() or None,
                "reviewer": holder or (reviewer or "").strip() or None}
        try:
            review = read_review(body)
            name, source = reviewer_for(review, holder)
            await self.service.review(run_id, review, reviewer=name, source="ui" if source != "api_key" else source)
        except ReviewError as exc:
            gr.Warning(f"Not kept: {exc}")
            return gr.skip(), gr.skip(), gr.skip()
        except (NotFound, Conflict) as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip(), gr.skip()
        gr.Info(f"Run {run_id}: {verdict} kept, as {name}" + (" (give your name above next time)"
                                                            if name == ANONYMOUS else ""))
        remembered = gr.skip() if holder is not None or name == ANONYMOUS else name
        return await self.grades_html(run_id), gr.update(value=""), remembered


    async def review_pass(self, current: Any, reviewer: str, comment: str, request: gr.Request) -> tuple[Any, ...]:
        """The Pass button."""
        return await self.review("pass", current, reviewer, comment, request)

    async def review_fail(self, current: Any, reviewer: str, comment: str, request: gr.Request) -> tuple[Any, ...]:
        """The Fail button."""
        return await self.review("fail", current, reviewer, comment, request)


def wire_review_panel(ui: Any, panel: ReviewPanel, handlers: ReviewHandlers, *, response: Any,
                      quiet: dict[str, Any]) -> None:
    """Connect the panel: redrawn when the viewer's run changes; Pass and Fail keep a review."""
    response.change(handlers.show, [response], [panel.grades, panel.pass_btn, panel.fail_btn],
                    trigger_mode="always_last", **quiet)
    for button, fn in ((panel.pass_btn, handlers.review_pass), (panel.fail_btn, handlers.review_fail)):
        button.click(fn, [response, panel.reviewer, panel.comment], [panel.grades, panel.comment, panel.remembered],
                     **quiet)
    ui.load(handlers.on_load, [panel.remembered], [panel.reviewer], **quiet)
