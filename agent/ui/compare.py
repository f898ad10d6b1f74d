"""Compare two runs: their totals and system prompts (with their diff) on top, then step by step side by
side, the first divergence marked.

The alignment and the rule for "the same step" are `agent.log.diff.compare_runs` (shared with
`agent.analysis.compare`); this module only renders it (escaped everywhere) and reads the two runs
through the run service. No gradio import: the handlers call `compare_view`.
"""

from __future__ import annotations

import difflib
import html
import json
from typing import Any

from agent.engine.prompts import SYSTEM_PROMPT, system_prompt
from agent.log.diff import TOTALS, compare_runs
from agent.ui.render import fmt_cost, fmt_duration, render_diff, served_screenshot

MAX_CELL_CHARS = 600  # characters of one goal / action / result shown in a cell


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + "…"


def parse_run_id(text: str | None) -> int | None:
    """'12' (a `?run=` value) -> 12; None unless it is ASCII digits naming a possible run id."""
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or not 0 < int(text) < 2**63:
        return None
    return int(text)


def parse_pair(text: str) -> tuple[int, int] | None:
    """'12,15' (the `?compare=` value) -> (12, 15); None when it is not two run ids."""
    parts = [parse_run_id(p) for p in (text or "").replace(" ", ",").split(",") if p.strip()]
    if len(parts) != 2 or None in parts:
        return None
    return parts[0], parts[1]  # type: ignore[return-value]


def _total(key: str, value: Any) -> str:
    if value is None or value == "":
        return "–"
    if key == "cost_usd":
        return fmt_cost(value)
    if key == "duration_s":
        return fmt_duration(value * 1000)
    if key in ("input_tokens", "output_tokens"):
        return f"{value:,}"
    if key == "result":
        return _cut(json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value))
    return _cut(str(value))


def _cell(side: dict[str, Any] | None, shot: str | None) -> str:
    if side is None:
        return '<td class="wb-cmp-none wb-muted">(no such step)</td>'
    actions = "".join(f"<li><code>{_esc(_cut(a))}</code></li>" for a in side["actions"]) or "<li>no action</li>"
    results = "".join(f'<li class="{"wb-error" if r.startswith("✗") else ""}">{_esc(_cut(r))}</li>'
                      for r in side["results"])
    img = (f'<a href="{_esc(shot)}" target="_blank" rel="noopener"><img src="{_esc(shot)}" loading="lazy" '
           f'alt="the page at step {int(side["step"] or 0)}"></a>') if shot else ""
    facts = (f'step {_esc(side["step"])} · {side["input_tokens"]:,} in / {side["output_tokens"]:,} out tokens · '
             f'{fmt_duration(side["duration_ms"])}')
    return (f'<td class="wb-cmp-side"><div class="wb-muted">{facts}</div>'
            f'<div class="wb-goal">{_esc(_cut(side["goal"] or "(no description)"))}</div>'
            f'<ul class="wb-cmp-actions">{actions}</ul><ul class="wb-cmp-results">{results}</ul>'
            f'<div class="wb-page">{_esc(_cut(side["url"] or ""))}</div>{img}</td>')


def render_system_prompts(ida: Any, idb: Any, systems: tuple[str | None, str | None] | None,
                          default: str = "") -> str:
    """The two runs' system prompts: whether they differ, the diff from run A's to run B's, and each in full."""
    if systems is None or None in systems:
        return ""
    sa, sb = str(systems[0]), str(systems[1])

    def said(text: str) -> str:
        return "the default" if text == default else "changed from the default"

    if sa == sb:
        head = f"System prompt: the same in both runs ({said(sa)})"
        diff = ""
    else:
        changed = sum(1 for line in difflib.ndiff(sa.splitlines(), sb.splitlines()) if line[:1] in "+-")
        head = f"System prompt: differs ({changed} line{'s' if changed != 1 else ''} changed)"
        diff = (f'<div class="wb-label">Diff, run #{_esc(ida)} → run #{_esc(idb)}</div>'
                + render_diff(sa, sb, f"run #{ida}", f"run #{idb}"))
    texts = (f'<details class="wb-cmp-prompts"><summary>Each run\'s system prompt in full</summary><table>'
             f'<tr><th>Run #{_esc(ida)} ({said(sa)})</th><th>Run #{_esc(idb)} ({said(sb)})</th></tr>'
             f'<tr><td><pre class="wb-system-text">{_esc(sa)}</pre></td>'
             f'<td><pre class="wb-system-text">{_esc(sb)}</pre></td></tr></table></details>')
    return (f'<div class="wb-cmp-system" data-same="{str(sa == sb).lower()}"><h4>{_esc(head)}</h4>{diff}{texts}'
            "</div>")


def render_compare_html(a: dict[str, Any] | None, b: dict[str, Any] | None, *,
                        systems: tuple[str | None, str | None] | None = None, default_prompt: str = "") -> str:
    """Two runs side by side (the contract's JSON of each); a hint when one is missing. `systems`: the system
    prompt each run used (shown with their diff)."""
    if not a or not b:
        return ('<div class="wb-compare wb-empty" data-state="empty"><p>Pick two runs: select two rows of the '
                "history (the last two selected fill the boxes), or type their ids, then press <b>Compare</b>. "
                "A link such as <code>/?compare=12,15</code> opens the same view.</p></div>")
    aligned = compare_runs(a, b)
    ida, idb = aligned["ids"]
    head = (f'<tr><th></th><th><a href="?run={_esc(ida)}">Run #{_esc(ida)}</a></th>'
            f'<th><a href="?run={_esc(idb)}">Run #{_esc(idb)}</a></th></tr>')
    totals = "".join(
        f'<tr data-total="{_esc(key)}"><td>{_esc(label)}</td><td>{_esc(_total(key, aligned["a"][key]))}</td>'
        f'<td>{_esc(_total(key, aligned["b"][key]))}</td></tr>'
        for label, key in TOTALS)
    shots_a, shots_b = served_screenshot(ida), served_screenshot(idb)
    rows = []
    for row in aligned["steps"]:
        cls = "wb-diverge" if row["diverges"] else ("wb-same" if row["same"] else "wb-differs")
        mark = '<div class="wb-diverge-mark">first difference</div>' if row["diverges"] else ""
        if row["replayed"]:  # a fork's step replayed from its parent (agent.log.diff.fork_prefix)
            cls += " wb-replayed"
            mark += '<div class="wb-replayed-mark">replayed</div>'
        sa = shots_a(row["a"]["step"]) if row["a"] and row["a"]["screenshot"] else None
        sb = shots_b(row["b"]["step"]) if row["b"] and row["b"]["screenshot"] else None
        rows.append(f'<tr class="wb-cmp-step {cls}" data-position="{row["position"]}"><td class="wb-cmp-n">'
                    f'{row["position"]}{mark}</td>{_cell(row["a"], sa)}{_cell(row["b"], sb)}</tr>')
    where = aligned["first_divergence"]
    verdict = (f"The runs diverge at step {where}." if where is not None
               else "The runs did the same actions on the same pages at every step.")
    fork = aligned["fork"]
    if fork is not None:
        child = idb if fork["parent"] == ida else ida
        verdict = (f"Run #{child} is a fork of run #{fork['parent']} at step {fork['step']}: steps before it were "
                   f"replayed from the parent. " + verdict)
    link = f"?compare={_esc(ida)},{_esc(idb)}"
    return (f'<div class="wb-compare" data-state="shown" data-first-divergence="{where if where is not None else ""}">'
            f'<p><b>{_esc(verdict)}</b> <a class="wb-compare-link" href="{link}">{link}</a></p>'
            f'<table class="wb-totals">{head}{totals}</table>'
            f'{render_system_prompts(ida, idb, systems, default_prompt)}<h4>Step by step</h4>'
            f'<table class="wb-cmp-steps"><tr><th>#</th><th>Run #{_esc(ida)}</th><th>Run #{_esc(idb)}</th></tr>'
            f'{"".join(rows)}</table></div>')


async def compare_view(service: Any, a: Any, b: Any) -> tuple[str, str | None]:
    """(the compare view's HTML, a warning or None) for run ids `a` and `b` (as typed in the boxes)."""
    from agent.service.door import NotFound

    try:
        ids = [int(x) for x in (a, b)]
    except (TypeError, ValueError):
        return render_compare_html(None, None), "Give two run ids to compare."
    if ids[0] == ids[1]:
        return render_compare_html(None, None), f"Both boxes hold run {ids[0]}: pick two different runs."
    runs = []
    for run_id in ids:
        try:
            response = await service.aget(run_id) if run_id > 0 else None
        except NotFound:
            response = None
        if response is None:
            return render_compare_html(None, None), f"Run {run_id} does not exist."
        runs.append(response.to_json())
    systems = [await _system_prompt(service, run_id) for run_id in ids]
    return render_compare_html(runs[0], runs[1], systems=(systems[0], systems[1]), default_prompt=SYSTEM_PROMPT), None


async def _system_prompt(service: Any, run_id: int) -> str | None:
    """The system prompt a run used (ours, extended or overridden as its request asked); None if unknown."""
    request = await service.run_request(run_id)
    if request is None:
        return None
    return system_prompt(override=request.override_system_message, extend=request.extend_system_message)
