"""An experiment as its API, UI, CLI and notebook show it: progress, per-variant numbers, cells, verdicts.

The counts come from the run log's views (`v_experiment_variants`, `v_experiment_matrix`); the
intervals, pass@k and the comparisons from `agent.stats` over the matrix, the same functions the
notebooks' `an.experiment_variants` and `an.experiment_comparisons` call, so every surface shows the
same numbers. `summary` is the full report (a page of its cells); `progress` the light form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent import stats

TaskCounts = dict[str, dict[str, tuple[int, int]]]


def _reasons(counts: Mapping[str, int] | None) -> str:
    parts = ", ".join(f"{k} {n}" for k, n in sorted((counts or {}).items(), key=lambda kv: (-kv[1], kv[0])))
    return f" ({parts})" if parts else ""


def not_graded(variant: Mapping[str, Any]) -> str:
    """The variant's played runs without a grade, by reason: "3 (judge_error 2, no_check 1)"; "–" when none."""
    n = int(variant.get("ungraded") or 0)
    return f"{n}{_reasons(variant.get('ungraded_reasons'))}" if n else "–"


def lost(variant: Mapping[str, Any]) -> str:
    """The variant's lost runs (counted as failures), by reason: "2 (interrupted 1, rate_limit 1)"; "–" when none."""
    n = int(variant.get("lost") or 0)
    return f"{n}{_reasons(variant.get('lost_reasons'))}" if n else "–"


def progress_text(row: Mapping[str, Any]) -> str:
    """What the cells are: "4 played, 80 cancelled", "10 played, 2 running, 12 waiting"."""
    parts = [f"{int(row.get('played') or 0)} played"]
    for key, word in (("running", "running"), ("pending", "waiting"), ("cancelled", "cancelled")):
        if row.get(key):
            parts.append(f"{int(row[key])} {word}")
    return ", ".join(parts) + f" of {int(row.get('total') or 0)}"


def progress(row: Mapping[str, Any]) -> dict[str, Any]:
    """The light form (`GET /api/experiments/{id}/progress`): status, why it stopped, counts, passes per variant."""
    return {
        "experiment_id": row["id"], "name": row["name"], "status": row["status"], "stop_reason": row["stop_reason"],
        "progress": _progress(row),
        "variant_passes": [dict(v) for v in row.get("variant_passes") or []],
        "error": row["error"],
    }


def _progress(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"done": row["done"], "total": row["total"], "running": row["running"], "played": row["played"],
            "cancelled": row["cancelled"], "pending": row["pending"], "lost": row["lost"],
            "text": progress_text(row)}


def task_counts(matrix: list[Mapping[str, Any]], *, excluding_lost: bool = False) -> TaskCounts:
    """Per variant and task: (passes, tries), lost runs counted as failures (or left out)."""
    out: TaskCounts = {}
    for m in matrix:
        tries = m["graded"] if excluding_lost else m["tries"]
        out.setdefault(m["variant"], {})[m["task_key"]] = (int(m["passes"]), int(tries))
    return out


def variants(experiment: Mapping[str, Any], counts: TaskCounts) -> list[dict[str, Any]]:
    """Per variant: the view's counts with the success rate's interval and pass@k / pass^k from agent.stats."""
    out = []
    for row in experiment["variants"]:
        numbers = stats.variant_numbers(counts.get(row["variant"], {}))
        item = {k: v for k, v in row.items() if k not in ("experiment_id", "variant")}
        item = {"name": row["variant"], **item, **numbers, "success_rate": row["success_rate"]}
        item["not_graded"], item["lost_text"] = not_graded(row), lost(row)
        out.append(item)
    return out


def warnings(names: list[str], experiment: Mapping[str, Any], comparisons: list[dict[str, Any]]) -> list[str]:
    """What a reader must know before trusting the verdicts: losses that differ, costs unknown."""
    by = {v["variant"]: v for v in experiment["variants"]}
    out = []
    for c in comparisons:
        a, b = by.get(str(c["a"])), by.get(str(c["b"]))
        if a and b:
            runs_a, runs_b = int(a["lost"]) + int(a["graded"]), int(b["lost"]) + int(b["graded"])
            found = stats.loss_warning(str(c["a"]), int(a["lost"]), runs_a, str(c["b"]), int(b["lost"]), runs_b)
            if found:
                out.append(found)
    for name in names:
        v = by.get(name)
        if v and v["unpriced_runs"]:
            out.append(f"the cost of {name} is unknown: litellm has no price for its model ({v['unpriced_runs']} "
                       'runs); give the variant price_per_mtok {"input": ..., "output": ...}')
    return out


def cell(c: Mapping[str, Any]) -> dict[str, Any]:
    """One cell as the API shows it."""
    return {"task_id": c["task_key"], "variant": c["variant"], "repeat": c["repeat"], "run_id": c["run_id"],
            "run_ids": list(c.get("attempt_run_ids") or []), "status": c["status"], "outcome": c["outcome"],
            "passed": c["passed"], "score": c["score"], "detail": c["grade_detail"], "graded_by": c["graded_by"],
            "lost_reason": c["lost_reason"], "ungraded_reason": c["ungraded_reason"], "attempts": c["attempts"],
            "run_status": c["run_status"], "stop_reason": c["stop_reason"], "run_outcome": c["run_outcome"],
            "cost_usd": c["cost_usd"]}


def summary(experiment: dict[str, Any], *, cells_offset: int = 0) -> dict[str, Any]:
    """The experiment as `GET /api/experiments/{id}` returns it (its `cells` a page starting at `cells_offset`)."""
    names = [v["name"] for v in experiment["variant_specs"]]
    spec = experiment.get("spec") or {}
    counts = task_counts(experiment["matrix"])
    compared = stats.comparisons(names, counts, baseline=spec.get("baseline"), mode=spec.get("compare") or "baseline")
    return {
        "experiment_id": experiment["id"], "name": experiment["name"], "status": experiment["status"],
        "stop_reason": experiment["stop_reason"], "backend": experiment["backend"],
        "task_set": experiment["task_set"], "task_set_version": experiment.get("task_set_version"),
        "repeats": experiment["repeats"],
        "concurrency": experiment["concurrency"], "created_at": experiment["created_at"],
        "finished_at": experiment["finished_at"], "error": experiment["error"],
        "baseline": spec.get("baseline") or (names[0] if names else None), "compare": spec.get("compare") or "baseline",
        "max_replays": spec.get("max_replays"), "max_cost_usd": spec.get("max_cost_usd"),
        "progress": _progress(experiment),
        "variants": variants(experiment, counts),
        "variant_specs": experiment["variant_specs"],
        "tasks": [{"task_id": t["task_key"], "title": t["title"], "check": t["check_kind"]}
                  for t in experiment["tasks"]],
        "cells": [cell(c) for c in experiment["cells"]],
        "cells_offset": cells_offset, "cells_total": experiment["total"],
        "matrix": [{"task_id": m["task_key"], "variant": m["variant"], "passes": m["passes"], "tries": m["tries"],
                    "graded": m["graded"], "lost": m["lost"], "ungraded": m["ungraded"], "cells": m["cells"],
                    "run_ids": m["run_ids"]} for m in experiment["matrix"]],
        "comparisons": compared,
        "warnings": warnings(names, experiment, compared),
    }
