"""The viewer's "Try this step again" panel and its answer, and the "Fork from here" button (escaped everywhere).

The panel is a plain form under a step's "What the model saw / said"; the viewer's script (agent.ui.app,
VIEWER_JS) sends it to the `ask_step` server function, which answers with `render_answer`'s HTML: the
original reply beside each new one, every action with the element its index named on the step's page,
the differences marked. No gradio import.
"""

from __future__ import annotations

import html
import json
from typing import Any

from agent.models import MAX_SAMPLES, PROVIDERS, AskAnswer, AskReply, ProposedAction

__all__ = ["fork_button", "render_answer", "render_ask_panel", "render_ask_error"]

MAX_SHOWN = 2000  # characters of one reply's text or one argument shown


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _cut(text: str, limit: int = MAX_SHOWN) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def fork_button(step: int) -> str:
    """The step's "Fork from here" button (the viewer's script fills the form with the run's request, forked here)."""
    return (f'<button type="button" class="wb-fork-btn" data-step="{int(step)}" title="A new run that replays steps '
            f'1–{int(step) - 1} without the model, then lets the agent take over here with the form\'s settings">'
            "Fork from here</button>")


def render_ask_panel(run_id: int, step: int, defaults: dict[str, Any]) -> str:
    """The "Try this step again" form of a step, filled with the run's own provider, model and system prompt."""
    provider = str(defaults.get("provider") or "")
    options = "".join(f'<option value="{_esc(p)}"{" selected" if p == provider else ""}>{_esc(p)}</option>'
                      for p in PROVIDERS)

    def area(name: str, label: str, hint: str) -> str:
        return (f'<label class="wb-ask-field">{_esc(label)}<textarea name="{name}" rows="2" '
                f'placeholder="{_esc(hint)}">{_esc(defaults.get(name) or "")}</textarea></label>')

    return (
        f'<details class="wb-ask" data-step="{int(step)}"><summary>Try this step again</summary>'
        f'<form class="wb-ask-form" data-run="{int(run_id)}" data-step="{int(step)}">'
        '<p class="wb-muted">Sends the messages the model received at this step again (the screenshot too, when '
        "it had one), with the system prompt built from the two boxes below as a run builds it. Each reply is "
        "shown beside the original; the calls are logged (purpose playground) outside the run's totals.</p>"
        f'<div class="wb-ask-row"><label class="wb-ask-field">Provider <select name="provider">{options}</select>'
        f'</label><label class="wb-ask-field">Model <input name="model" value="{_esc(defaults.get("model") or "")}">'
        '</label><label class="wb-ask-field">Temperature <input name="temperature" type="number" min="0" max="2" '
        'step="0.1" placeholder="the provider\'s"></label><label class="wb-ask-field">Samples <input name="samples" '
        f'type="number" min="1" max="{MAX_SAMPLES}" value="1"></label></div>'
        + area("extend_system_message", "Extend the system prompt", "appended to ours (empty: nothing)")
        + area("override_system_message", "Override the system prompt", "replaces ours (empty: ours)")
        + '<button type="submit" class="wb-ask-btn">Ask again</button></form>'
        '<div class="wb-ask-result" data-state="empty"></div></details>'
    )


def _action(action: ProposedAction, differs: bool) -> str:
    args = {k: v for k, v in (action.arguments or {}).items() if k != "index"}
    shown = _cut(json.dumps(args, ensure_ascii=False)) if action.arguments is not None else _cut(action.raw_arguments)
    element = (f'<div class="wb-ask-element"><code>{_esc(_cut(action.element, 300))}</code></div>'
               if action.element else "")
    error = f'<div class="wb-error">{_esc(action.error)}</div>' if action.error else ""
    shown = "" if shown == "{}" else f' <code class="wb-args">{_esc(shown)}</code>'
    return (f'<li class="wb-ask-action{" wb-ask-differs" if differs else ""}"><code class="wb-name">'
            f'{_esc(action.name)}</code>{shown}{element}{error}</li>')


def _column(reply: AskReply, title: str, original: AskReply | None) -> str:
    """One reply's column; `original` None: this is the original itself."""
    if original is None:
        verdict, state = "the step's own reply", "original"
    elif reply.error:
        verdict, state = "the call failed", "error"
    elif reply.same_as_original:
        verdict, state = "✓ would have done the same", "same"
    else:
        verdict, state = "≠ would have done otherwise", "differs"
    theirs = original.actions if original is not None else reply.actions
    actions = "".join(
        _action(a, original is not None and (n >= len(theirs) or (a.name, a.element, a.arguments)
                                             != (theirs[n].name, theirs[n].element, theirs[n].arguments)))
        for n, a in enumerate(reply.actions)) or '<li class="wb-muted">no action</li>'
    facts = [f"{reply.provider or ''} / {reply.model or ''}",
             f"{reply.input_tokens:,} in / {reply.output_tokens:,} out",
             f"{reply.latency_ms:.0f} ms" if reply.latency_ms is not None else "",
             f"${reply.cost_usd:.4f}" if reply.cost_usd is not None else "cost unknown"]
    differences = "".join(f"<li>{_esc(d)}</li>" for d in reply.differences) if original is not None else ""
    error = f'<div class="wb-error">{_esc(_cut(reply.error))}</div>' if reply.error else ""
    text = f'<pre class="wb-reply">{_esc(_cut(reply.text or "(no text)"))}</pre>'
    return (f'<div class="wb-ask-reply" data-state="{state}" data-same="{str(state in ("same", "original")).lower()}">'
            f'<div class="wb-ask-title"><b>{_esc(title)}</b> <span class="wb-ask-verdict">{_esc(verdict)}</span></div>'
            f'<div class="wb-muted">{_esc(" · ".join(f for f in facts if f))}</div>{error}{text}'
            f'<ul class="wb-ask-actions">{actions}</ul>'
            + (f'<ul class="wb-ask-differences">{differences}</ul>' if differences else "") + "</div>")


def render_answer(answer: AskAnswer) -> str:
    """The replies side by side with the original, the differences marked."""
    sent = ("the system prompt below" if answer.system_prompt_changed else "the step's own system prompt")
    shot = " and the step's screenshot" if answer.screenshot else ""
    head = (f"{answer.same} of {len(answer.replies)} repl{'y' if len(answer.replies) == 1 else 'ies'} would have "
            f"done the same as the original · sent to {answer.provider} / {answer.model} with {sent}{shot}")
    columns = [_column(answer.original, "Original", None)]
    columns += [_column(r, f"Reply {n}", answer.original) for n, r in enumerate(answer.replies, 1)]
    system = ""
    if answer.system_prompt_changed:
        system = (f'<details class="wb-ask-system"><summary>System prompt sent</summary><pre>'
                  f'{_esc(_cut(answer.system_prompt, 20_000))}</pre></details>')
    return (f'<div class="wb-ask-answer" data-same="{answer.same}" data-replies="{len(answer.replies)}">'
            f'<p><b>{_esc(head)}</b></p>{system}<div class="wb-ask-columns">{"".join(columns)}</div></div>')


def render_ask_error(message: str) -> str:
    """What the panel shows when the step cannot be asked again (the reason, and the fix)."""
    return f'<div class="wb-ask-answer wb-error" data-state="error">{_esc(message)}</div>'
