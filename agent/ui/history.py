"""The run history's handlers: its filters and pages, the compare view, and refreshing it as runs go.

No `from __future__ import annotations`: Gradio reads the handlers' annotations as objects (`gr.SelectData`).
"""

from datetime import date
from typing import Any

import gradio as gr

from agent.filters import RunFilter
from agent.service.runs import RunService
from agent.ui.compare import compare_view
from agent.ui.render import history_frame, history_totals, run_id_of

PAGE_SIZES = (25, 50, 100)  # rows per history page (newest first, after the filters)
EXPERIMENT_CHOICES = 100  # the latest experiments offered by the experiment filter (any other: type its id)


class HistoryHandlers:
    """The history table (a page for the filters), its totals, and the compare view of two runs."""

    def __init__(self, service: RunService) -> None:
        self.service = service

    async def history(self, q: str, status: str, stop_reason: str, provider: str, model: str, since: str,
                      until: str, experiment: Any, variant: str, show_experiments: bool, review: str,
                      page_size: Any, page: Any) -> tuple[Any, ...]:
        """The history page `page` for the filters: table, totals, page label, paging buttons, stop reasons."""
        try:
            filters = RunFilter(**history_filters(q, status, stop_reason, provider, model, since, until, review),
                                **experiment_filters(experiment, variant, show_experiments))
        except ValueError as exc:
            gr.Warning(str(exc))
            return (gr.skip(), gr.update(value=f"✗ {exc}"), gr.skip(), gr.skip(), gr.skip(), gr.skip(), 0)
        size = int(page_size) if str(page_size).isdigit() and int(page_size) in PAGE_SIZES else PAGE_SIZES[1]
        page = max(0, int(page or 0))
        summary = await self.service.runs_summary(filters)
        total = int(summary["runs"])
        last = max(0, (total - 1) // size)
        page = min(page, last)
        rows, _total = await self.service.list_runs(filters, limit=size, offset=page * size)
        label = (f"Run history (runs {page * size + 1}–{page * size + len(rows)} of {total}, newest first)" if rows
                 else "Run history (no run matches)")
        reasons = ["all", *summary.get("stop_reasons", [])]
        return (gr.update(value=history_frame(rows), label=label), history_totals(summary),
                f"page {page + 1} of {last + 1}", gr.update(interactive=page > 0), gr.update(interactive=page < last),
                gr.update(choices=reasons, value=stop_reason if stop_reason in reasons else "all"), page)

    async def history_first(self, q: str, status: str, stop_reason: str, provider: str, model: str, since: str,
                            until: str, experiment: Any, variant: str, show_experiments: bool, review: str,
                            page_size: Any) -> tuple[Any, ...]:
        """The history's first page for the filters (a filter changed)."""
        return await self.history(q, status, stop_reason, provider, model, since, until, experiment, variant,
                                  show_experiments, review, page_size, 0)

    async def experiment_choices(self) -> Any:
        """The experiment filter's choices: all, then the latest experiments ("#12 prompt v2"), newest first."""
        rows, _total = await self.service.list_experiments(limit=EXPERIMENT_CHOICES)
        return gr.update(choices=[("all", "all"), *[(f"#{r['id']} {r['name']}", str(r["id"])) for r in rows]])

    async def compare(self, a: Any, b: Any) -> str:
        """The compare view of runs `a` and `b`."""
        html, warning = await compare_view(self.service, a, b)
        if warning:
            gr.Warning(warning)
        return html

    def pick(self, a: Any, b: Any, evt: gr.SelectData) -> tuple[Any, Any]:
        """A history row selected: the compare boxes keep the last two runs selected (A older, B newer)."""
        try:
            run_id = int((evt.row_value or [])[0])
        except (IndexError, TypeError, ValueError):
            return gr.skip(), gr.skip()
        if a in (None, ""):
            return run_id, gr.skip()
        if b in (None, ""):
            return (gr.skip(), run_id) if a != run_id else (gr.skip(), gr.skip())
        return (b, run_id) if b != run_id else (gr.skip(), gr.skip())

    async def history_on_change(self, current: Any, last: Any, *page: Any) -> tuple[Any, ...]:
        """Refresh the history (its page `page`, for the filters) when the viewer's run starts or ends (not when
        an ended run is opened); the last output is what the table was refreshed for."""
        run_id, now = run_id_of(current), (current or {}).get("status")
        seen = f"{run_id}:{now}"
        skip = tuple(gr.skip() for _ in range(7))
        if run_id is None or seen == last:
            return (*skip, gr.skip())
        started = now == "in_progress"
        ended = now != "in_progress" and last == f"{run_id}:in_progress"
        if not (started or ended):
            return (*skip, seen)
        return (*await self.history(*page), seen)


def history_filters(q: str, status: str, stop_reason: str, provider: str, model: str, since: str,
                    until: str, review: str = "all") -> dict[str, Any]:
    """The history's boxes as list_runs filters ("all" and empty mean none); ValueError naming a bad date."""
    days: dict[str, date | None] = {}
    for name, text in (("since", since), ("until", until)):
        text = (text or "").strip()
        try:
            days[name] = date.fromisoformat(text) if text else None
        except ValueError:
            raise ValueError(f"{'From' if name == 'since' else 'To'} date {text!r} is not a day: "
                             "write it as YYYY-MM-DD, e.g. 2025-06-30") from None
    if days["since"] and days["until"] and days["since"] > days["until"]:
        raise ValueError(f"the From date ({days['since']}) is after the To date ({days['until']}): swap them")
    return {"q": (q or "").strip()[:200] or None, "status": None if status in ("all", "", None) else status,
            "stop_reason": None if stop_reason in ("all", "", None) else stop_reason,
            "provider": None if provider in ("all", "", None) else provider,
            "model_contains": (model or "").strip()[:200] or None, **days,
            "review": None if review in ("all", "", None) else review}


def experiment_filters(experiment: Any, variant: str, show_experiments: bool) -> dict[str, Any]:
    """The history's experiment boxes as list_runs filters: an experiment (its id, or "all"), a variant's name, and
    the switch that shows experiments' runs (naming an experiment or a variant shows them anyway)."""
    text = str(experiment if experiment is not None else "").strip().lstrip("#").split(" ", 1)[0]
    if text in ("", "all"):
        exp_id = None
    elif text.isdigit() and int(text) > 0:
        exp_id = int(text)
    else:
        raise ValueError(f"Experiment {experiment!r} is not an experiment id: pick one, or type its number, e.g. 12")
    return {"experiment_id": exp_id, "variant": (variant or "").strip()[:60] or None,
            "include_experiments": bool(show_experiments)}
