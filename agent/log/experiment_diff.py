"""Two experiments compared task by task: what got worse, what got better, and whether the change is real.

Tasks are matched by id; a task left unmatched is then matched to one of the other experiment's unmatched
tasks with the same prompt (whitespace aside): a set whose ids changed still lines up. Variants are matched
by name; two experiments of one variant each are compared whatever their names. For each matched task and
variant: the pass rate before (experiment `a`) and after (`b`), as the experiments count them (lost runs are
failures, ungraded ones are not tries); regressions first, then improvements; each with its runs' results
side by side and a link comparing the two runs (`/?compare=x,y`). Per variant, the paired comparison over
the tasks is `agent.stats.compare` (the one experiments' comparisons use), Holm-adjusted over the variants.

Pure functions over rows (no duckdb): `GET /api/experiments/{a}/diff/{b}`, the Experiments section and
`an.experiment_diff(a, b)` call `experiment_diff` on the rows `DIFF_CELLS_SQL` reads.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from agent import stats

__all__ = ["DIFF_CELLS_SQL", "diff_cell", "experiment_diff"]

MAX_RESULT_CHARS = 500  # a run's result shown in the diff
TRIES = ("passed", "failed", "lost")  # the outcomes that are tries (as v_experiment_matrix counts them)
DIFF_CELLS_SQL = """
    SELECT c.experiment_id, c.task_key, t.prompt, t.title, c.task_position, c.variant, c.variant_position, c.repeat,
           c.outcome, c.run_id, c.passed, c.graded_by, c.grade_detail, c.lost_reason, r.status AS run_status,
           r.result_json
    FROM v_experiment_cells c
    JOIN experiment_tasks t ON t.experiment_id = c.experiment_id AND t.task_key = c.task_key
    LEFT JOIN runs r ON r.id = c.run_id
    WHERE c.experiment_id = ?
    ORDER BY c.task_position, c.variant_position, c.repeat
"""


def diff_cell(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of DIFF_CELLS_SQL with its run's result parsed and cut to MAX_RESULT_CHARS as text."""
    out = {k: v for k, v in row.items() if k != "result_json"}
    raw = row.get("result_json")
    result = json.loads(raw) if isinstance(raw, str) else raw
    if result is not None and not isinstance(result, str):
        result = json.dumps(result, ensure_ascii=False, sort_keys=True)
    out["result"] = None if result is None else (result if len(result) <= MAX_RESULT_CHARS
                                                  else result[:MAX_RESULT_CHARS] + "…")
    return out


def _tasks(cells: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Task key -> prompt, in the experiment's order."""
    out: dict[str, str] = {}
    for c in cells:
        out.setdefault(str(c["task_key"]), str(c["prompt"]))
    return out


def _variants(cells: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(c["variant"]) for c in cells))


def match_tasks(a: Mapping[str, str], b: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(task of a, task of b, "id" or "prompt"): by id first, then the rest by the same prompt."""
    pairs = [(key, key, "id") for key in a if key in b]
    used_b = {key for key in a if key in b}
    by_prompt: dict[str, list[str]] = {}
    for key, prompt in b.items():
        if key not in used_b:
            by_prompt.setdefault(" ".join(prompt.split()), []).append(key)
    for key, prompt in a.items():
        if key in b:
            continue
        candidates = by_prompt.get(" ".join(prompt.split()))
        if candidates:
            pairs.append((key, candidates.pop(0), "prompt"))
    order = {key: n for n, key in enumerate(a)}
    return sorted(pairs, key=lambda p: order[p[0]])


def match_variants(a: Sequence[str], b: Sequence[str]) -> list[tuple[str, str]]:
    """Variants by name; one variant each is a pair whatever the names."""
    common = [(v, v) for v in a if v in b]
    if not common and len(a) == 1 and len(b) == 1:
        return [(a[0], b[0])]
    return common


def _side(cells: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    tries = [c for c in cells if c["outcome"] in TRIES]
    passes = sum(1 for c in tries if c["outcome"] == "passed")
    return {"passes": passes, "tries": len(tries), "rate": passes / len(tries) if tries else None}


def _run(c: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"run_id": c["run_id"], "repeat": c["repeat"], "outcome": c["outcome"], "result": c.get("result"),
            "detail": c.get("grade_detail")}


def _row(task_a: str, task_b: str, matched_by: str, prompt: str, va: str, vb: str,
         cells_a: list[Mapping[str, Any]], cells_b: list[Mapping[str, Any]]) -> dict[str, Any]:
    before, after = _side(cells_a), _side(cells_b)
    change = None if before["rate"] is None or after["rate"] is None else after["rate"] - before["rate"]
    kind = ("not comparable" if change is None else "regression" if change < -1e-9
            else "improvement" if change > 1e-9 else "same")
    runs = []
    for ca, cb in itertools.zip_longest(sorted(cells_a, key=lambda c: c["repeat"]),
                                        sorted(cells_b, key=lambda c: c["repeat"])):
        pair: dict[str, Any] = {"a": _run(ca), "b": _run(cb), "compare": None}
        if ca is not None and cb is not None and ca["run_id"] and cb["run_id"]:
            pair["compare"] = f"/?compare={int(ca['run_id'])},{int(cb['run_id'])}"
        runs.append(pair)
    return {"task_id": task_a, "task_id_b": task_b, "matched_by": matched_by, "prompt": prompt, "variant": va,
            "variant_b": vb, "before": before, "after": after, "change": change, "kind": kind, "runs": runs}


_ORDER = {"regression": 0, "improvement": 1, "same": 2, "not comparable": 3}


def experiment_diff(a: Mapping[str, Any], cells_a: Sequence[Mapping[str, Any]], b: Mapping[str, Any],
                    cells_b: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Experiment `b` against `a` (each `{"experiment_id", "name"}` and its diff cells): per matched task and
    variant the pass rates before and after, regressions then improvements first; per variant the paired
    comparison over tasks; and what could not be matched."""
    tasks_a, tasks_b = _tasks(cells_a), _tasks(cells_b)
    task_pairs = match_tasks(tasks_a, tasks_b)
    variant_pairs = match_variants(_variants(cells_a), _variants(cells_b))
    group_a: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    group_b: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for group, cells in ((group_a, cells_a), (group_b, cells_b)):
        for c in cells:
            group.setdefault((str(c["task_key"]), str(c["variant"])), []).append(c)
    rows = [_row(ta, tb, how, tasks_a[ta], va, vb, group_a.get((ta, va), []), group_b.get((tb, vb), []))
            for va, vb in variant_pairs for ta, tb, how in task_pairs]
    position = {ta: n for n, (ta, _tb, _how) in enumerate(task_pairs)}
    rows.sort(key=lambda r: (_ORDER[r["kind"]], r["change"] if r["kind"] == "regression"
                             else -(r["change"] or 0), position[r["task_id"]], r["variant"]))
    counts = {kind: sum(1 for r in rows if r["kind"] == kind) for kind in _ORDER}
    label_a, label_b = f"#{a['experiment_id']}", f"#{b['experiment_id']}"
    comparisons = _comparisons(rows, variant_pairs, label_a, label_b)
    matched_a, matched_b = {ta for ta, _, _ in task_pairs}, {tb for _, tb, _ in task_pairs}
    return {
        "a": {"experiment_id": a["experiment_id"], "name": a.get("name")},
        "b": {"experiment_id": b["experiment_id"], "name": b.get("name")},
        "tasks": len(task_pairs), "matched_by_prompt": sum(1 for p in task_pairs if p[2] == "prompt"),
        "variants": [{"a": va, "b": vb} for va, vb in variant_pairs],
        "regressions": counts["regression"], "improvements": counts["improvement"], "same": counts["same"],
        "not_comparable": counts["not comparable"],
        "summary": _summary(counts, len(task_pairs), len(variant_pairs)),
        "rows": rows, "comparisons": comparisons,
        "unmatched": {"tasks_a": [t for t in tasks_a if t not in matched_a],
                      "tasks_b": [t for t in tasks_b if t not in matched_b],
                      "variants_a": [v for v in _variants(cells_a) if v not in {p[0] for p in variant_pairs}],
                      "variants_b": [v for v in _variants(cells_b) if v not in {p[1] for p in variant_pairs}]},
    }


def _comparisons(rows: Sequence[Mapping[str, Any]], variant_pairs: Sequence[tuple[str, str]], label_a: str,
                 label_b: str) -> list[dict[str, Any]]:
    """Per variant: b against a over the tasks both graded (agent.stats.compare), Holm-adjusted over the variants."""
    results = []
    for va, vb in variant_pairs:
        before = {r["task_id"]: (r["before"]["passes"], r["before"]["tries"]) for r in rows if r["variant"] == va}
        after = {r["task_id"]: (r["after"]["passes"], r["after"]["tries"]) for r in rows if r["variant"] == va}
        results.append((va, vb, stats.compare(before, after)))
    tested = [i for i, (_a, _b, c) in enumerate(results) if c.p_value is not None]
    adjusted = dict(zip(tested, stats.holm([results[i][2].p_value or 1.0 for i in tested]), strict=True))
    out = []
    for i, (va, vb, c) in enumerate(results):
        p_adj = adjusted.get(i)
        significant = p_adj is not None and p_adj < stats.ALPHA
        name_a = f"{label_a} {va}"
        name_b = f"{label_b} {vb}"
        out.append({"variant": va, "variant_b": vb, "tasks": c.tasks, "difference": c.difference,
                    "ci_low": c.ci_low, "ci_high": c.ci_high, "p_value": c.p_value, "p_adjusted": p_adj,
                    "significant": significant, "mde": c.mde,
                    "method": c.method + (f"; Holm over {len(tested)} variants" if len(tested) > 1 else ""),
                    "verdict": stats.verdict(name_a, name_b, c, p_adjusted=p_adj, significant=significant)})
    return out


def _summary(counts: Mapping[str, int], tasks: int, variants: int) -> str:
    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    if not tasks or not variants:
        return "nothing to compare: no task (by id or prompt) and variant that both experiments ran"
    text = f"{n(counts['regression'], 'regression')}, {n(counts['improvement'], 'improvement')}, " \
           f"{counts['same']} the same"
    if counts["not comparable"]:
        text += f", {counts['not comparable']} without a graded try on one side"
    return text + f" over {n(tasks, 'task')} × {n(variants, 'variant')}"
