"""A run as one self-contained HTML file: the viewer's own rendering, screenshots embedded, no network.

`export_html(data, screenshots=...)` takes what `GET /api/runs/{id}/export?format=json` returns and
the step screenshots' files; the page it makes opens offline (no script, no external link needed)
and shows the run as the viewer does: header, system prompt, result, each step with its actions,
screenshot and "What the model saw / said", then the webhook attempts.
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.engine.prompts import SYSTEM_PROMPT, system_prompt
from agent.ui.render import fmt_duration, render_run_html

CSS_PATH = Path(__file__).with_name("style.css")
MAX_EMBEDDED_BYTES = 40_000_000  # screenshots embedded in one file; past this they are left out (said so)

# Gradio's theme variables, which the viewer's style sheet uses, for a page without Gradio.
_THEME = """
:root { --body-text-color-subdued: #6b7280; --background-fill-primary: #ffffff;
  --background-fill-secondary: #f5f5f7; --border-color-primary: #e5e7eb; }
body { font-family: ui-sans-serif, system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
  max-width: 1100px; padding: 0 16px; color: #111827; }
.wb-export-head { color: var(--body-text-color-subdued); font-size: 13px; margin-bottom: 12px; }
table.wb-webhooks { border-collapse: collapse; font-size: 13px; }
table.wb-webhooks td, table.wb-webhooks th { border: 1px solid var(--border-color-primary); padding: 3px 8px; }
"""


def _data_url(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


def _embedded(screenshots: dict[int, Path]) -> tuple[dict[int, str], int]:
    """Step -> data: URL, within MAX_EMBEDDED_BYTES; and how many were left out."""
    out: dict[int, str] = {}
    used = left_out = 0
    for step, path in sorted(screenshots.items()):
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if used + size > MAX_EMBEDDED_BYTES:
            left_out += 1
            continue
        out[step] = _data_url(path)
        used += size
    return out, left_out


def _webhooks(attempts: list[dict[str, Any]]) -> str:
    if not attempts:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(a.get('attempt')))}</td><td>{html.escape(str(a.get('at')))}</td>"
        f"<td>{html.escape(str(a.get('status_code') if a.get('status_code') is not None else '–'))}</td>"
        f"<td>{'ok' if a.get('ok') else 'failed'}</td><td>{html.escape(fmt_duration(a.get('duration_ms')))}</td>"
        f"<td>{html.escape(str(a.get('error') or ''))}</td></tr>"
        for a in attempts)
    return ('<h3>Webhook attempts</h3><table class="wb-webhooks"><tr><th>attempt</th><th>at</th><th>status</th>'
            f"<th>result</th><th>time</th><th>error</th></tr>{rows}</table>")


def export_html(data: dict[str, Any], *, screenshots: dict[int, Path]) -> str:
    """The export's HTML page (a string), screenshots embedded as data: URLs."""
    run = data.get("response") or {}
    request = data.get("request") or {}
    shots, left_out = _embedded(screenshots)
    used = system_prompt(override=request.get("override_system_message"),
                         extend=request.get("extend_system_message")) if request else None
    body = render_run_html(run, traces=data.get("traces") or [], system_prompt=used, default_prompt=SYSTEM_PROMPT,
                           shot_src=shots.get, links=False)
    note = f" · {left_out} screenshot(s) left out (over {MAX_EMBEDDED_BYTES // 1_000_000} MB)" if left_out else ""
    prompt = html.escape(str(request.get("prompt") or ""))
    title = f"Run {run.get('task_run_id', '?')}"
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    css = CSS_PATH.read_text(encoding="utf-8")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_THEME}{css}</style></head>'
        f'<body><div class="wb-export-head">Exported from the web-agent workbench on {made}{note}</div>'
        f'<h2>{html.escape(title)}</h2><p class="wb-export-prompt"><b>Task:</b> {prompt}</p>'
        f"{body}{_webhooks(data.get('webhook_attempts') or [])}</body></html>"
    )
