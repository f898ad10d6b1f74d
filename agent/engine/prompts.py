"""What the model reads each step: a short fixed system prompt and one user message of state."""

from __future__ import annotations

import json
from typing import Any

from agent.models import HistoryItem

SYSTEM_PROMPT = """You are a web agent operating a real browser to complete the user's task.
Each turn you get: the task, a summary of your previous steps, the open tabs, and the current page.
The page lists interactive elements as lines `[index]<tag attributes>text`; other lines are page text.
Only elements with an [index] can be used; indices are valid only for the page state just shown.

Rules:
- First write one short sentence: your goal for this step. Then call one or more tools.
- You may chain several actions in one turn when the page will not change in between (e.g. fill
  several fields, then click submit last). After an action that loads a new page, stop and look.
- If an action failed, read its error and try something different; do not repeat it blindly.
- Use scroll or find_text to see content outside the shown part of the page; extract to read long pages.
- Never invent facts: take them from the pages. Prefer the site the task names.
- When the task is complete, or clearly impossible, call done. Put the full answer the user asked for in
  done (success=false if you could not complete it). done must be the only action of its turn."""



def system_prompt(*, override: str | None = None, extend: str | None = None) -> str:
    """The system prompt of a run: ours (or `override`), then `extend` appended (browser-use's two knobs)."""
    base = override if override is not None else SYSTEM_PROMPT
    return f"{base.rstrip()}\n\n{extend.strip()}" if extend else base


MAX_MEMORY_STEPS = 20
MAX_CONTENT_CHARS = 1500


def _action_line(action: Any) -> str:
    params = json.dumps(action.params, ensure_ascii=False, separators=(",", ":"))
    if len(params) > 200:
        params = params[:200] + "…"
    line = f"{action.name}{params}"
    if action.error:
        return f"{line} -> ERROR: {action.error[:400]}"
    if action.include_in_memory and action.extracted_content:
        content = action.extracted_content
        if len(content) > MAX_CONTENT_CHARS:
            content = content[:MAX_CONTENT_CHARS] + "…(cut)"
        return f"{line} -> {content}"
    return f"{line} -> ok"


def memory(history: list[HistoryItem]) -> str:
    """Earlier steps, compactly: goal, actions, results (errors and extracted content in full)."""
    if not history:
        return "(none yet: this is the first step)"
    lines = []
    if len(history) > MAX_MEMORY_STEPS:
        lines.append(f"(steps 1-{len(history) - MAX_MEMORY_STEPS} omitted)")
    for item in history[-MAX_MEMORY_STEPS:]:
        lines.append(f"Step {item.step}: {item.description[:300]}")
        for action in item.actions:
            lines.append(f"  {_action_line(action)}")
    return "\n".join(lines)


def step_message(
    *,
    task: str,
    step: int,
    max_steps: int,
    history: list[HistoryItem],
    tabs: list[tuple[int, str]],
    current_tab: int | None,
    url: str,
    title: str,
    page: str,
    notes: list[str],
    result_hint: str,
) -> str:
    """The user message for one step."""
    tab_lines = "\n".join(f"  {'*' if t == current_tab else ' '} tab {t}: {u}" for t, u in tabs)
    parts = [
        f"<task>\n{task}\n</task>",
        f"<result_format>{result_hint}</result_format>",
        f"<previous_steps>\n{memory(history)}\n</previous_steps>",
    ]
    if notes:
        parts.append("<notes>\n" + "\n".join(notes) + "\n</notes>")
    parts.append(f"<tabs>\n{tab_lines}\n</tabs>")
    parts.append(f"<page url=\"{url}\" title=\"{title}\">\n{page}\n</page>")
    parts.append(f"Step {step} of at most {max_steps}.")
    return "\n".join(parts)


def result_hint(json_schema: dict[str, Any] | None, response_format: str) -> str:
    """How `done` must be called for this run."""
    if json_schema is not None:
        return "call done with `data`: JSON matching the schema given in the done tool"
    if response_format == "json":
        return "call done with `data`: the result as a JSON value"
    return "call done with `text`: the answer in plain text"


EXTRACT_PROMPT = """Extract from the page text below the information asked for. Answer with the information only,
concisely; say clearly if it is not on the page.
<query>{query}</query>
<page>
{page}
</page>"""
