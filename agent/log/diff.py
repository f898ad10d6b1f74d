"""Two runs side by side, step by step: the one definition of where they diverge.

Shared by the compare view (agent/ui/compare.py, from the runs' JSON) and `agent.analysis.compare`
(from a snapshot). Pure: no duckdb, no pandas.

Two steps are the same when they began on the same page and did the same actions with the same
parameters (the model's wording of its goal may differ); the first step where that fails, or where
one run has a step the other lacks, is where the runs diverge. When one run is the other's fork, its
steps before the fork's are the parent's replayed (marked `replayed`): the same unless the replay
of one failed, so the runs diverge at the fork's step at the earliest.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["TOTALS", "compare_runs", "first_divergence", "fork_prefix", "step_summary"]

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


def _replayed_ok(item: dict[str, Any]) -> bool:
    """A fork's replayed step that did its parent's actions again (none failed)."""
    return not any(a.get("error") or a.get("success") is False for a in item.get("actions") or [])


def first_divergence(a: list[dict[str, Any]], b: list[dict[str, Any]], *, replayed: int = 0) -> int | None:
    """The position (0-based) of the first step where two histories differ; None when they never do. The first
    `replayed` steps are a fork's replay of its parent's: they differ only where the replay failed."""
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b):
            return i
        if i < replayed:
            if not (_replayed_ok(a[i]) and _replayed_ok(b[i])):
                return i
        elif _signature(a[i]) != _signature(b[i]):
            return i
    return None


def fork_prefix(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, Any]:
    """(the first steps one run replayed from the other, the parent's id) when one is the other's fork; (0, None)."""
    for parent, child in ((a, b), (b, a)):
        if parent.get("task_run_id") is not None and child.get("parent_run_id") == parent.get("task_run_id"):
            return max(0, int(child.get("forked_at_step") or 1) - 1), parent.get("task_run_id")
    return 0, None


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
    replayed, parent = fork_prefix(a, b)
    diverge = first_divergence(ha, hb, replayed=replayed)
    rows = []
    for i in range(max(len(ha), len(hb))):
        both = i < len(ha) and i < len(hb)
        same = both and (_replayed_ok(ha[i]) and _replayed_ok(hb[i]) if i < replayed
                         else _signature(ha[i]) == _signature(hb[i]))
        rows.append({
            "position": i + 1,
            "a": step_summary(ha[i]) if i < len(ha) else None,
            "b": step_summary(hb[i]) if i < len(hb) else None,
            "same": same,
            "diverges": i == diverge,
            "replayed": i < replayed,
        })
    fork = {"parent": parent, "step": replayed + 1} if parent is not None else None
    return {"a": _totals(a), "b": _totals(b), "ids": (a.get("task_run_id"), b.get("task_run_id")),
            "steps": rows, "first_divergence": None if diverge is None else diverge + 1, "fork": fork}
