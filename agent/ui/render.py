"""The run viewer and the history table, rendered from the contract's JSON (escaped everywhere).

One renderer serves the live viewer and the HTML export (`agent.ui.export`): `render_run_html`
takes the run's response and, when known, its call traces, the system prompt it used and where its
screenshots are (served URLs in the viewer, data: URLs in the export).
"""

from __future__ import annotations

import difflib
import html
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agent.ui.playground import fork_button, render_ask_panel

UI_TEXT_LIMIT = 4000  # characters of one extracted content / result / error shown before "… (cut)"
UI_PARAM_LIMIT = 400  # characters of one action's params shown inline
UI_TRACE_LIMIT = 20_000  # characters of one observation / message / reply shown (the full text: the trace route)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cut(text: str, limit: int = UI_TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + f"… (cut: {len(text) - limit} more characters)"


def fmt_duration(ms: float | None) -> str:
    """12345 -> "12.3 s"; minutes past a minute; "–" when unknown."""
    if ms is None:
        return "–"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def fmt_latency(ms: float | None) -> str:
    """812.3 -> "812 ms"; 1834 -> "1.8 s"; "–" when unknown."""
    if ms is None:
        return "–"
    return f"{ms:.0f} ms" if ms < 1000 else fmt_duration(ms)


def fmt_cost(usd: float | None) -> str:
    """0.01234 -> "$0.0123"."""
    return "–" if usd is None else f"${usd:.4f}"


def run_id_of(current: Any) -> int | None:
    """The run id of the response shown in the viewer, if any."""
    if isinstance(current, dict) and isinstance(current.get("task_run_id"), int):
        return int(current["task_run_id"])
    return None


def _status_of(run: dict[str, Any]) -> str:
    return {"success": "success", "failure": "failure"}.get(str(run.get("status")), "running")


def _render_action(action: dict[str, Any], step_by: str) -> str:
    name = _esc(action.get("name", "?"))
    params = action.get("params") or {}
    shown = _cut(json.dumps(params, ensure_ascii=False), UI_PARAM_LIMIT) if params else ""
    if action.get("error") or action.get("success") is False:
        mark, cls = "✗", "err"
    else:
        mark, cls = "✓", "ok"
    who = action.get("executed_by") or "agent"  # badged only when it differs from its step's (a healed action)
    parts = [f'<li class="wb-action wb-{cls}"><span class="wb-mark">{mark}</span> <code class="wb-name">{name}</code>']
    if shown:
        parts.append(f' <code class="wb-params">{_esc(shown)}</code>')
    if who != step_by:
        parts.append(f' <span class="wb-badge wb-{_esc(who)}">{_esc(who)}</span>')
    if action.get("error"):
        parts.append(f'<div class="wb-error">{_esc(_cut(str(action["error"])))}</div>')
    if action.get("extracted_content") and not action.get("is_done"):
        parts.append(f'<div class="wb-extracted">{_esc(_cut(str(action["extracted_content"])))}</div>')
    parts.append("</li>")
    return "".join(parts)


def _render_step(run_id: Any, item: dict[str, Any], traces: list[dict[str, Any]] | None,
                 shot_src: Callable[[int], str | None], *, parent: Any = None, forked_at: int = 0,
                 ask: dict[str, Any] | None = None) -> str:
    step = item.get("step") or 0
    calls = item.get("llm_calls") or []
    meta = [fmt_duration(item.get("duration_ms"))]
    if calls:
        meta.append(f"{len(calls)} LLM call{'s' if len(calls) != 1 else ''}")
        meta.append(f"{sum(c.get('input_tokens') or 0 for c in calls):,} in / "
                    f"{sum(c.get('output_tokens') or 0 for c in calls):,} out tokens")
    who = item.get("executed_by") or "agent"
    badge = f' <span class="wb-badge wb-{_esc(who)}">{_esc(who)}</span>' if who != "agent" else ""
    prefix = bool(parent) and int(step) < forked_at  # a fork's step replayed from its parent
    if prefix:
        badge += f' <span class="wb-prefix-note">replayed from run #{_esc(parent)}\'s step {int(step)}</span>'
    if run_id:
        badge += " " + fork_button(int(step))
    actions = "".join(_render_action(a, who) for a in item.get("actions") or [])
    url, title = item.get("url"), item.get("title")
    page = ""
    if url:
        # Only web addresses become links (never a javascript: or data: URL from a page).
        link = (f'<a class="wb-url" href="{_esc(url)}" target="_blank" rel="noopener">{_esc(_cut(url, 300))}</a>'
                if url.startswith(("http://", "https://")) else f'<span class="wb-url">{_esc(_cut(url, 300))}</span>')
        page = f'<div class="wb-page"><span class="wb-title">{_esc(title or "(no title)")}</span> {link}</div>'
    shot = ""
    src = shot_src(int(step)) if item.get("screenshot") and url != "about:blank" else None  # blank: nothing to see
    if src:
        shot = (f'<a class="wb-shot" href="{_esc(src)}" target="_blank" rel="noopener">'
                f'<img src="{_esc(src)}" alt="the page at step {int(step)}" loading="lazy"></a>')
    trace = render_step_trace(run_id, int(step), traces, ask=ask) if traces is not None and calls else ""
    return (
        f'<div class="wb-step{" wb-prefix" if prefix else ""}" data-step="{int(step)}"><div class="wb-step-head">'
        f'<b>Step {int(step)}</b>{badge}'
        f' <span class="wb-muted">{_esc(" · ".join(meta))}</span></div>'
        f'<div class="wb-step-body"><div class="wb-step-main">'
        f'<div class="wb-goal">{_esc(_cut(item.get("description") or "(no description)"))}</div>'
        f'<ul class="wb-actions">{actions or "<li class=wb-muted>no action</li>"}</ul>{page}</div>{shot}</div>'
        f'{trace}</div>'
    )


def served_screenshot(run_id: Any) -> Callable[[int], str | None]:
    """Screenshot URLs as the app serves them (relative to the page at "/")."""
    return lambda step: f"api/runs/{int(run_id)}/screenshots/{int(step)}" if run_id else None


# ------------------------------------------------------------------ what the model saw / said
def render_step_trace(run_id: Any, step: int, traces: list[dict[str, Any]], *,
                      ask: dict[str, Any] | None = None) -> str:
    """A step's "What the model saw / said" part: each call's observation, reply, tool calls and usage; with `ask`
    (the run's provider, model and system prompt fields), the "Try this step again" panel under it."""
    if not traces:
        return ('<details class="wb-trace"><summary>What the model saw / said</summary>'
                '<p class="wb-muted">No trace was kept for this step.</p></details>')
    tin = sum((t.get("usage") or {}).get("input_tokens") or 0 for t in traces)
    tout = sum((t.get("usage") or {}).get("output_tokens") or 0 for t in traces)
    chars = sum((t.get("usage") or {}).get("prompt_chars") or 0 for t in traces)
    head = (f"{len(traces)} call{'s' if len(traces) != 1 else ''} · {tin:,} in / {tout:,} out tokens · "
            f"{chars:,} prompt characters")
    link = (f' <a class="wb-trace-link" href="api/runs/{int(run_id)}/steps/{int(step)}/trace" target="_blank" '
            f'rel="noopener">full trace (JSON)</a>') if run_id else ""
    calls = "".join(_render_call(t) for t in traces)
    askable = run_id and ask is not None and any(t.get("purpose") == "step" and t.get("logged", True) for t in traces)
    panel = render_ask_panel(int(run_id), step, ask or {}) if askable else ""
    return (f'<details class="wb-trace" data-step="{int(step)}"><summary>What the model saw / said '
            f'<span class="wb-muted">{_esc(head)}</span></summary>{link}{calls}{panel}</details>')


def _render_call(trace: dict[str, Any]) -> str:
    usage = trace.get("usage") or {}
    facts = [str(trace.get("purpose") or "step"), str(trace.get("model") or ""),
             f"{usage.get('input_tokens') or 0:,} in / {usage.get('output_tokens') or 0:,} out tokens",
             f"latency {fmt_latency(usage.get('latency_ms'))}",
             f"{usage.get('prompt_chars') or 0:,} prompt characters"]
    if usage.get("finish_reason"):
        facts.append(f"finish: {usage['finish_reason']}")
    parts = [f'<div class="wb-trace-call" data-purpose="{_esc(trace.get("purpose") or "step")}">'
             f'<div class="wb-usage">{_esc(" · ".join(f for f in facts if f))}</div>']
    if trace.get("error"):
        parts.append(f'<div class="wb-error">{_esc(_cut(str(trace["error"])))}</div>')
    if not trace.get("logged", True):
        parts.append('<p class="wb-muted">The messages and the reply were not kept (LOG_PROMPTS=0).</p></div>')
        return "".join(parts)
    saw, rest = _what_it_saw(trace)
    parts.append('<div class="wb-label">What the model saw</div>'
                 f'<pre class="wb-obs">{_esc(_cut(saw, UI_TRACE_LIMIT))}</pre>')
    if rest:
        parts.append(f'<details class="wb-message"><summary>The rest of the message ({len(rest):,} characters: task, '
                     f'previous steps, tabs)</summary><pre>{_esc(_cut(rest, UI_TRACE_LIMIT))}</pre></details>')
    reply = trace.get("reply")
    parts.append('<div class="wb-label">What the model said</div>'
                 f'<pre class="wb-reply">{_esc(_cut(reply, UI_TRACE_LIMIT)) if reply else "(no text)"}</pre>')
    tool_calls = "".join(
        f'<li class="wb-tool-call"><code class="wb-name">{_esc(c.get("name", "?"))}</code> '
        f'<code class="wb-args">{_esc(_cut(str(c.get("arguments") or ""), UI_TRACE_LIMIT))}</code></li>'
        for c in trace.get("tool_calls") or [])
    if tool_calls:
        parts.append(f'<div class="wb-label">Tool calls, as written</div><ul class="wb-tool-calls">{tool_calls}</ul>')
    parts.append("</div>")
    return "".join(parts)


def _what_it_saw(trace: dict[str, Any]) -> tuple[str, str]:
    """(the observation, the rest of the message) of a step call; (the whole message, "") for others."""
    messages = [m for m in trace.get("messages") or [] if m.get("role") != "system"]
    text = _text(messages[-1]) if messages else ""
    observation = trace.get("observation")
    if observation and observation in text:
        start = text.rfind(observation)
        return observation, text[:start] + "[the page observation, shown above]" + text[start + len(observation):]
    return text, ""


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = []
    for p in content or []:
        if p.get("type") == "text":
            parts.append(str(p.get("text", "")))
        else:
            parts.append(f"[image: the screenshot of step {p.get('screenshot_step')}]")
    return "\n".join(parts)


def render_diff(old: str, new: str, old_label: str, new_label: str) -> str:
    """A unified diff of two texts, line by line, added lines green and removed ones red (bounded)."""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), old_label, new_label, lineterm="", n=1)
    rows = []
    for line in list(lines)[:400]:
        cls = "wb-add" if line.startswith("+") and not line.startswith("+++") else (
            "wb-del" if line.startswith("-") and not line.startswith("---") else "")
        rows.append(f'<span class="{cls}">{_esc(line)}</span>')
    return f'<pre class="wb-diff">{chr(10).join(rows)}</pre>'


def render_system_prompt(used: str | None, default: str) -> str:
    """The run header's system prompt part: the text used and, when it differs, its diff against ours."""
    if used is None:
        return ""
    changed = used != default
    label = "System prompt (changed: the diff against the default below)" if changed else "System prompt (the default)"
    body = f'<pre class="wb-system-text">{_esc(_cut(used, UI_TRACE_LIMIT))}</pre>'
    if changed:
        diff = render_diff(default, used, "default", "this run")
        body += f'<div class="wb-label">Diff against the default</div>{diff}'
    return (f'<details class="wb-system" data-changed="{str(changed).lower()}"><summary>{_esc(label)}</summary>'
            f"{body}</details>")


def render_run_html(
    run: dict[str, Any] | None,
    *,
    traces: list[dict[str, Any]] | None = None,
    system_prompt: str | None = None,
    default_prompt: str = "",
    shot_src: Callable[[int], str | None] | None = None,
    share_url: str | None = None,
    links: bool = True,
    forks: list[dict[str, Any]] | None = None,
    ask: dict[str, Any] | None = None,
) -> str:
    """The viewer: status, result and metrics on top, then every step with its actions, screenshot and trace.

    `traces` (the trace route's dicts, None: not shown) give each step its "What the model saw /
    said"; `system_prompt` (with `default_prompt`) the header's system prompt part; `shot_src` maps a
    step to its screenshot's URL; `share_url` is the link that opens this run again; `links` False
    leaves out links to the app's routes and the buttons (the offline export). `forks` (runs with their
    `id` and `forked_at_step`) are this run's forks; `ask` (the run's provider, model and system prompt
    fields) puts "Try this step again" under each step's trace.
    """
    if not run:
        return ('<div class="wb-run wb-empty" data-status="none"><p>No run yet. Write a task (or pick an '
                "example) and press <b>Run</b>; each step appears here the moment it finishes.</p></div>")
    status = _status_of(run)
    history = run.get("history") or []
    usage = run.get("usage") or {}
    run_id = run.get("task_run_id")
    label = {"running": "running", "success": "success", "failure": "failure"}[status]
    icon = {"running": '<span class="wb-spinner"></span>', "success": "✓", "failure": "✗"}[status]
    who = " · ".join(_esc(x) for x in (run.get("provider"), run.get("model")) if x)
    share = (f' <a class="wb-share" href="{_esc(share_url)}" title="a link that opens this run">'
             f'{_esc(share_url)}</a>') if share_url else ""
    stop = run.get("stop_reason")
    # The machine-readable reason beside the words: "failure · max_steps" (a success stops for "done").
    stop_badge = f' <span class="wb-stop" title="stop_reason">{_esc(stop)}</span>' if stop and stop != "done" else ""
    head = (f'<div class="wb-run-head"><span class="wb-status wb-{status}">{icon} {label}</span>{stop_badge} '
            f'<span>Run #{_esc(run_id or "?")}</span> <span class="wb-muted">task {_esc(run.get("task_id") or "?")}'
            f'{" · " + who if who else ""} · {_esc(run.get("mode") or "agent")}</span>{share}</div>'
            f'{_lineage(run, forks or [], links)}{render_system_prompt(system_prompt, default_prompt)}')
    metrics = [
        f"duration {fmt_duration(run.get('duration_ms'))}" if status != "running" else "",
        f"{len(history)} step{'s' if len(history) != 1 else ''}",
        f"{usage.get('llm_calls', 0)} LLM calls",
        f"{usage.get('input_tokens', 0):,} in / {usage.get('output_tokens', 0):,} out tokens",
        f"cost {fmt_cost(usage.get('cost_usd'))}",
    ]
    if run.get("mode") == "replay":
        metrics.append(f"{run.get('replayed_steps', 0)} replayed, {run.get('healed_steps', 0)} healed")
    body = [f'<div class="wb-metrics">{_esc(" · ".join(m for m in metrics if m))}</div>']
    notes = [n for n in run.get("notes") or [] if isinstance(n, str)]
    if notes:  # what the user should know: which model healed a replay, images the provider refused
        body.append('<ul class="wb-notes">' + "".join(f"<li>{_esc(_cut(n, 600))}</li>" for n in notes[:20]) + "</ul>")
    if run.get("error"):
        body.append(f'<div class="wb-error wb-run-error">{_esc(_cut(str(run["error"])))}</div>')
    result = run.get("result")
    if status != "running" and result is not None:
        if isinstance(result, (dict, list)):
            text, cls = json.dumps(result, indent=2, ensure_ascii=False), "wb-json"
        else:
            text, cls = str(result), "wb-text"
        body.append(f'<div class="wb-result"><div class="wb-label">Result</div>'
                    f'<pre class="{cls}">{_esc(_cut(text))}</pre></div>')
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for t in traces or []:
        by_seq.setdefault(int(t.get("seq") or 0), []).append(t)
    shots = shot_src or served_screenshot(run_id)
    parent, forked_at = run.get("parent_run_id"), int(run.get("forked_at_step") or 0)
    steps = [_render_step(run_id if links else None, item, by_seq.get(i, []) if traces is not None else None, shots,
                          parent=parent, forked_at=forked_at, ask=ask if links else None)
             for i, item in enumerate(history)]
    if status == "running":
        nxt = len(history) + 1
        finishing = bool(history) and any(a.get("is_done") for a in history[-1].get("actions") or [])
        if finishing:
            label, what = "Finishing", "recording the result"
        else:
            label = f"Step {nxt}"
            what = "the model is thinking" if history else "starting the browser and the model"
        steps.append(f'<div class="wb-step wb-pending" data-step="{nxt}"><div class="wb-step-head">'
                     f'<span class="wb-spinner"></span> <b>{label}</b> <span class="wb-muted">{what}…</span>'
                     '</div></div>')
    return (f'<div class="wb-run wb-{status}" data-status="{status}" data-run-id="{_esc(run_id or "")}">{head}'
            f'{"".join(body)}<div class="wb-steps">{"".join(steps)}</div></div>')


def _lineage(run: dict[str, Any], forks: list[dict[str, Any]], links: bool) -> str:
    """The run's parent (a fork) and its forks, each a link that opens it."""
    def link(run_id: Any) -> str:
        return f'<a href="?run={_esc(run_id)}">run #{_esc(run_id)}</a>' if links else f"run #{_esc(run_id)}"

    parts = []
    parent = run.get("parent_run_id")
    if parent:
        at = int(run.get("forked_at_step") or 1)
        replayed = f"steps 1–{at - 1} replayed, " if at > 2 else "step 1 replayed, " if at == 2 else ""
        parts.append(f'<span class="wb-parent" data-parent="{_esc(parent)}">fork of {link(parent)} at step {at} '
                     f'({replayed}the agent from step {at})</span>')
    if forks:
        shown = ", ".join(f'<span class="wb-fork" data-run="{_esc(f.get("id"))}">{link(f.get("id"))} (at step '
                          f'{_esc(f.get("forked_at_step"))})</span>' for f in forks)
        parts.append(f'<span class="wb-forks">forks: {shown}</span>')
    return f'<div class="wb-lineage">{" · ".join(parts)}</div>' if parts else ""


def history_frame(rows: list[dict[str, Any]]) -> Any:
    """The history table's rows as a DataFrame (run id first: selecting a row opens that run)."""
    import pandas as pd  # here, not at the top: ~0.5-1.8 s (measured), and only the page's table needs it

    out = []
    for row in rows:
        started = row.get("started_at")
        if isinstance(started, datetime):
            started = (started.astimezone(UTC) if started.tzinfo is not None else started).strftime("%Y-%m-%d %H:%M:%S")
        prompt = " ".join(str(row.get("prompt") or "").split())
        out.append({
            "run": row.get("id"),
            "status": row.get("status"),
            "prompt": prompt if len(prompt) <= 90 else prompt[:89] + "…",
            "provider / model": f"{row.get('provider') or ''} / {row.get('model') or ''}",
            "steps": row.get("steps") or 0,
            "duration": fmt_duration(row.get("duration_ms")),
            "cost": fmt_cost(row.get("cost_usd")),
            "started (UTC)": started or "",
            "stop reason": row.get("stop_reason") or "",
            "lineage": _lineage_cell(row),
            **experiment_cells(row),
        })
    columns = ["run", "status", "prompt", "provider / model", "steps", "duration", "cost", "started (UTC)",
               "stop reason", "lineage", *EXPERIMENT_COLUMNS]
    return pd.DataFrame(out, columns=columns)


def _lineage_cell(row: dict[str, Any]) -> str:
    """The history's word on a run's parent and forks: "fork of #12 at 3", "2 forks", or both."""
    parts = []
    if row.get("parent_run_id"):
        parts.append(f"fork of #{row['parent_run_id']} at {row.get('forked_at_step') or 1}")
    forks = int(row.get("forks") or 0)
    if forks:
        parts.append(f"{forks} fork{'s' if forks != 1 else ''}")
    return " · ".join(parts)


EXPERIMENT_COLUMNS = ["experiment", "variant"]


def experiment_cells(row: dict[str, Any]) -> dict[str, str]:
    """A history row's experiment ("#12 prompt v2") and variant; empty for a run of no experiment."""
    if row.get("experiment_id") is None:
        return {"experiment": "", "variant": ""}
    name = " ".join(str(row.get("experiment_name") or "").split())
    label = f"#{int(row['experiment_id'])} {name if len(name) <= 30 else name[:29] + '…'}".strip()
    return {"experiment": label, "variant": str(row.get("variant") or "")}


def history_totals(summary: dict[str, Any]) -> str:
    """The line above the history: how many runs match, their success rate, tokens and cost."""
    runs, finished = int(summary.get("runs") or 0), int(summary.get("finished") or 0)
    rate = summary.get("success_rate")
    graded = int(summary.get("graded") or 0)
    by = "graded" if graded == finished else "as the agents claimed" if not graded else f"{graded} graded"
    success = (f"success rate {rate * 100:.0f}% ({summary.get('successes', 0)} of {finished} finished; {by})"
               if rate is not None else "no finished run")
    return (f"**{runs:,} run{'s' if runs != 1 else ''}** match · {success} · "
            f"{int(summary.get('input_tokens') or 0):,} in / {int(summary.get('output_tokens') or 0):,} out tokens · "
            f"cost {fmt_cost(summary.get('cost_usd'))}")




def render_webhooks(attempts: list[dict[str, Any]], *, pending: bool) -> str:
    """The webhook deliveries of a run in the viewer: one line per attempt, the outcome first."""
    if not attempts:
        what = "being delivered…" if pending else "no delivery attempt was recorded"
        return f'<div class="wb-webhooks" data-state="{"pending" if pending else "none"}"><b>Webhook</b>: {what}</div>'
    last = attempts[-1]
    if last.get("ok"):
        state, head = "delivered", f"✓ delivered (attempt {last.get('attempt')})"
    elif pending:
        state, head = "retrying", f"… attempt {last.get('attempt')} failed, retrying"
    else:
        state, head = "failed", f"✗ not delivered after {len(attempts)} attempt{'s' if len(attempts) != 1 else ''}"
    rows = []
    for a in attempts:
        answer = f"HTTP {a['status_code']}" if a.get("status_code") is not None else "no answer"
        rows.append(f'<li class="wb-attempt wb-{"ok" if a.get("ok") else "err"}">attempt {_esc(a.get("attempt"))}: '
                    f'{_esc(answer)} in {fmt_duration(a.get("duration_ms"))}'
                    + (f' <span class="wb-error">{_esc(_cut(str(a["error"]), 500))}</span>' if a.get("error") else "")
                    + "</li>")
    url = _esc(_cut(str(last.get("url") or ""), 200))
    return (f'<div class="wb-webhooks" data-state="{state}"><b>Webhook</b> <span class="wb-muted">{url}</span>: '
            f'{_esc(head)}<ul class="wb-attempts">{"".join(rows)}</ul></div>')
