"""The run viewer and the history table, rendered from the contract's JSON (escaped everywhere)."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

UI_TEXT_LIMIT = 4000  # characters of one extracted content / result / error shown before "… (cut)"
UI_PARAM_LIMIT = 400  # characters of one action's params shown inline


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


def fmt_cost(usd: float | None) -> str:
    """0.01234 -> "$0.0123"."""
    return "–" if usd is None else f"${usd:.4f}"


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


def _render_step(run_id: Any, item: dict[str, Any]) -> str:
    step = item.get("step") or 0
    calls = item.get("llm_calls") or []
    meta = [fmt_duration(item.get("duration_ms"))]
    if calls:
        meta.append(f"{len(calls)} LLM call{'s' if len(calls) != 1 else ''}")
    who = item.get("executed_by") or "agent"
    badge = f' <span class="wb-badge wb-{_esc(who)}">{_esc(who)}</span>' if who != "agent" else ""
    actions = "".join(_render_action(a, who) for a in item.get("actions") or [])
    url, title = item.get("url"), item.get("title")
    page = ""
    if url:
        # Only web addresses become links (never a javascript: or data: URL from a page).
        link = (f'<a class="wb-url" href="{_esc(url)}" target="_blank" rel="noopener">{_esc(_cut(url, 300))}</a>'
                if url.startswith(("http://", "https://")) else f'<span class="wb-url">{_esc(_cut(url, 300))}</span>')
        page = f'<div class="wb-page"><span class="wb-title">{_esc(title or "(no title)")}</span> {link}</div>'
    shot = ""
    if item.get("screenshot") and run_id and url != "about:blank":  # a blank tab: nothing to see
        src = f"api/runs/{int(run_id)}/screenshots/{int(step)}"
        shot = (f'<a class="wb-shot" href="{src}" target="_blank" rel="noopener">'
                f'<img src="{src}" alt="the page at step {int(step)}" loading="lazy"></a>')
    return (
        f'<div class="wb-step" data-step="{int(step)}"><div class="wb-step-head"><b>Step {int(step)}</b>{badge}'
        f' <span class="wb-muted">{_esc(" · ".join(meta))}</span></div>'
        f'<div class="wb-step-body"><div class="wb-step-main">'
        f'<div class="wb-goal">{_esc(_cut(item.get("description") or "(no description)"))}</div>'
        f'<ul class="wb-actions">{actions or "<li class=wb-muted>no action</li>"}</ul>{page}</div>{shot}</div></div>'
    )


def render_run_html(run: dict[str, Any] | None) -> str:
    """The viewer: status, result and metrics on top, then every step with its actions and screenshot."""
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
    stop = run.get("stop_reason")
    # The machine-readable reason beside the words: "failure · max_steps" (a success stops for "done").
    stop_badge = f' <span class="wb-stop" title="stop_reason">{_esc(stop)}</span>' if stop and stop != "done" else ""
    head = (f'<div class="wb-run-head"><span class="wb-status wb-{status}">{icon} {label}</span>{stop_badge} '
            f'<span>Run #{_esc(run_id or "?")}</span> <span class="wb-muted">task {_esc(run.get("task_id") or "?")}'
            f'{" · " + who if who else ""} · {_esc(run.get("mode") or "agent")}</span></div>')
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
    steps = [_render_step(run_id, item) for item in history]
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


def history_frame(rows: list[dict[str, Any]]) -> Any:
    """The history table's rows as a DataFrame (run id first: selecting a row opens that run)."""
    import pandas as pd

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
        })
    columns = ["run", "status", "prompt", "provider / model", "steps", "duration", "cost", "started (UTC)"]
    return pd.DataFrame(out, columns=columns)




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
