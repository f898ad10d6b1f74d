"""Two runs side by side, step by step: the one definition of where they diverge.

Shared by the compare view (agent/ui/compare.py, from the runs' JSON) and `agent.analysis.compare`
(from a snapshot). Pure: no duckdb, no pandas.

Two steps are the same when they began on the same page and did the same actions with the same
parameters (the model's wording of its goal may differ); the first step where that fails, or where
one run has a step the other lacks, is where the runs diverge.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["TOTALS", "compare_runs", "first_divergence", "step_summary"]

# The run totals shown on top, in order: (label, how to read it from a run's JSON).
TOTALS: list[tuple[str, str]] = [
    ("status", "status"), ("stop reason", "stop_reason"), ("error", "error"), ("steps", "steps"),
    ("input tokens", "input_tokens"), ("output tokens", "output_tokens"), ("cost (USD)", "cost_usd"),
    ("time (s)", "duration_s"), ("provider / model", "model"), ("result", "result"),
]


def _signature(item: dict[str, Any]) -> tuple[Any, ...]:
    actions = tuple((a.get("name"), json.dumps(a.get("params") or {}, sort_keys=True, default=str))
                    for a in item.get("actions") or [])
    return item.get("url"), actions


def _result_text(action: dict[str, Any]) -> str:
    if action.get("error"):
        return f"✗ {action['name']}: {action['error']}"
    if action.get("extracted_content"):
        return f"✓ {action['name']}: {action['extracted_content']}"
    return f"✓ {action.get('name')}"


def step_summary(item: dict[str, Any]) -> dict[str, Any]:
    """What the compare view shows of one step: goal, actions, results, page, tokens, time."""
    calls = item.get("llm_calls") or []
    return {
        "step": item.get("step"),
        "goal": item.get("description") or "",
        "actions": [f"{a.get('name')} {json.dumps(a.get('params') or {}, ensure_ascii=False, default=str)}"
                    for a in item.get("actions") or []],
        "results": [_result_text(a) for a in item.get("actions") or []],
        "url": item.get("url"),
        "screenshot": bool(item.get("screenshot")) and item.get("url") != "about:blank",  # a blank tab: nothing
        "input_tokens": sum(c.get("input_tokens") or 0 for c in calls),
        "output_tokens": sum(c.get("output_tokens") or 0 for c in calls),
        "duration_ms": item.get("duration_ms"),
        "executed_by": item.get("executed_by") or "agent",
    }


def first_divergence(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> int | None:
    """The position (0-based) of the first step where two histories differ; None when they never do."""
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b) or _signature(a[i]) != _signature(b[i]):
            return i
    return None


def _totals(run: dict[str, Any]) -> dict[str, Any]:
    usage = run.get("usage") or {}
    duration = run.get("duration_ms")
    return {
        "status": run.get("status"), "stop_reason": run.get("stop_reason"), "error": run.get("error"),
        "steps": len(run.get("history") or []), "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0), "cost_usd": usage.get("cost_usd", 0.0),
        "duration_s": None if duration is None else round(duration / 1000, 3),
        "model": f"{run.get('provider') or ''} / {run.get('model') or ''}", "result": run.get("result"),
    }


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Runs `a` and `b` (the contract's JSON) aligned: totals, one row per step position, where they diverge."""
    ha, hb = a.get("history") or [], b.get("history") or []
    diverge = first_divergence(ha, hb)
    rows = []
    for i in range(max(len(ha), len(hb))):
        rows.append({
            "position": i + 1,
            "a": step_summary(ha[i]) if i < len(ha) else None,
            "b": step_summary(hb[i]) if i < len(hb) else None,
            "same": i < len(ha) and i < len(hb) and _signature(ha[i]) == _signature(hb[i]),
            "diverges": i == diverge,
        })
    return {"a": _totals(a), "b": _totals(b), "ids": (a.get("task_run_id"), b.get("task_run_id")),
            "steps": rows, "first_divergence": None if diverge is None else diverge + 1}
