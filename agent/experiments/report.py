"""An experiment as its API, UI, CLI and notebook show it: progress, per-variant numbers, cells, verdicts.

The numbers per variant come from the `v_experiment_variants` view (computed in DuckDB, so every
surface shows the same); the paired verdicts are computed here from the per task × variant matrix.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from agent.experiments.stats import paired


def comparisons(variants: list[str], matrix: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pair of variants (in the given order) compared on the tasks both graded."""
    rates: dict[str, dict[str, float]] = {v: {} for v in variants}
    graded: dict[str, int] = dict.fromkeys(variants, 0)
    for row in matrix:
        if row["variant"] in rates and row["graded"]:
            rates[row["variant"]][row["task_key"]] = row["passes"] / row["graded"]
            graded[row["variant"]] += row["graded"]
    out = []
    for a, b in combinations(variants, 2):
        result = paired(a, b, rates[a], rates[b], runs=min(graded[a], graded[b]))
        out.append({"a": a, "b": b, "tasks": result.tasks, "wins": result.wins, "losses": result.losses,
                    "ties": result.ties, "p_value": result.p_value, "significant": result.significant,
                    "verdict": result.verdict})
    return out


def not_graded(variant: dict[str, Any]) -> str:
    """The variant's runs the agent had no fair chance in, by stop reason: "3 (model_error 2, cancelled 1)"."""
    from agent.models import NO_FAIR_CHANCE

    reasons = {k: v for k, v in (variant.get("stop_reasons") or {}).items() if k in NO_FAIR_CHANCE}
    if not reasons:
        return "–"
    parts = ", ".join(f"{k} {n}" for k, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{sum(reasons.values())} ({parts})"


def summary(experiment: dict[str, Any]) -> dict[str, Any]:
    """The experiment as `GET /api/experiments/{id}` returns it."""
    names = [v["name"] for v in experiment["variant_specs"]]
    return {
        "experiment_id": experiment["id"], "name": experiment["name"], "status": experiment["status"],
        "backend": experiment["backend"], "task_set": experiment["task_set"], "repeats": experiment["repeats"],
        "concurrency": experiment["concurrency"], "created_at": experiment["created_at"],
        "finished_at": experiment["finished_at"], "error": experiment["error"],
        "progress": {"done": experiment["done"], "total": experiment["total"], "running": experiment["running"]},
        "variants": [{**row, "name": row.pop("variant")} for row in
                     ({k: v for k, v in r.items() if k != "experiment_id"} for r in experiment["variants"])],
        "variant_specs": experiment["variant_specs"],
        "tasks": [{"task_id": t["task_key"], "title": t["title"], "check": t["check_kind"]}
                  for t in experiment["tasks"]],
        "cells": [{"task_id": c["task_key"], "variant": c["variant"], "repeat": c["repeat"], "run_id": c["run_id"],
                   "status": c["status"], "passed": c["passed"], "score": c["score"], "detail": c["grade_detail"],
                   "graded_by": c["graded_by"], "run_status": c["run_status"], "stop_reason": c["stop_reason"],
                   "run_outcome": c["run_outcome"]} for c in experiment["cells"]],
        "matrix": [{"task_id": m["task_key"], "variant": m["variant"], "passes": m["passes"], "graded": m["graded"],
                    "cells": m["cells"], "run_ids": m["run_ids"]} for m in experiment["matrix"]],
        "comparisons": comparisons(names, experiment["matrix"]),
    }
