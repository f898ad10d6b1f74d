"""Judges measured against people: per judge (model and rubric), how often its verdict is the people's on the runs
both graded, Cohen's kappa with its 95% interval, and the confusion matrix.

The pairs come from the view `v_judge_pairs` (a judge's latest verdict beside the people's, the latest review);
the statistics from `agent.stats.cohen_kappa`. `GET /api/judges`, the Experiments section's table and
`an.judge_agreement()` all call `judge_agreement` on the same rows. No duckdb here: the notebooks import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agent import stats

__all__ = ["JUDGES_SQL", "JUDGE_PAIRS_SQL", "judge_agreement", "judge_sentence"]

# Every judge (model and rubric) that graded a run, with what it graded; newest judge first.
JUDGES_SQL = """
    SELECT grader AS judge, rubric_hash, any_value(grading_json->>'rubric') AS rubric,
           count(*) AS runs_judged, count(*) FILTER (WHERE passed) AS judge_passes,
           count(*) FILTER (WHERE passed IS NULL) AS judge_errors,
           count(DISTINCT experiment_id) AS experiments, min(created_at) AS first_at, max(created_at) AS last_at
    FROM v_gradings WHERE kind = 'judge' AND latest {where}
    GROUP BY grader, rubric_hash
    ORDER BY last_at DESC, judge, rubric_hash
"""
JUDGE_PAIRS_SQL = "SELECT * FROM v_judge_pairs {where} ORDER BY judge, rubric_hash, run_id"


def _key(row: Mapping[str, Any]) -> tuple[str, str]:
    return str(row["judge"]), str(row["rubric_hash"] or "")


def judge_agreement(judges: Iterable[Mapping[str, Any]], pairs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per judge: runs judged; on the `n` runs a person also reviewed, the agreement (with its Wilson interval),
    Cohen's kappa (with its 95% interval), the confusion matrix and a sentence saying it in words."""
    cells: dict[tuple[str, str], list[list[int]]] = {}
    for p in pairs:
        table = cells.setdefault(_key(p), [[0, 0], [0, 0]])
        table[0 if p["judge_passed"] else 1][0 if p["person_passed"] else 1] += 1
    out = []
    for j in judges:
        table = cells.get(_key(j), [[0, 0], [0, 0]])
        k = stats.cohen_kappa(table)
        row: dict[str, Any] = {
            "judge": j["judge"], "rubric_hash": j["rubric_hash"], "rubric": j.get("rubric"),
            "runs_judged": int(j["runs_judged"]), "judge_passes": int(j["judge_passes"]),
            "judge_errors": int(j.get("judge_errors") or 0), "n": k.n,
            "agreement": k.agreement, "agreement_low": k.agreement_low, "agreement_high": k.agreement_high,
            "chance_agreement": k.chance, "kappa": k.kappa, "kappa_se": k.se, "kappa_low": k.ci_low,
            "kappa_high": k.ci_high, "kappa_words": stats.kappa_words(k.kappa) if k.n else None,
            "confusion": {"judge_pass_person_pass": table[0][0], "judge_pass_person_fail": table[0][1],
                          "judge_fail_person_pass": table[1][0], "judge_fail_person_fail": table[1][1]},
            "method": ("Cohen's kappa; 95% interval from the large-sample standard error of Fleiss, Cohen & Everitt "
                       "(1969), or at perfect agreement the Wilson interval of the agreement carried over; "
                       "agreement with its Wilson interval"),
        }
        row["sentence"] = judge_sentence(row)
        out.append(row)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def judge_sentence(row: Mapping[str, Any]) -> str:
    """One judge's agreement with people in words a prompt engineer can act on."""
    n = int(row["n"])
    if n == 0:
        return (f"{row['judge']}: no run it graded has been reviewed by a person yet; review some of its runs "
                "(the review queue lists them) to measure it")
    c = row["confusion"]
    same = c["judge_pass_person_pass"] + c["judge_fail_person_fail"]
    interval = f"95% CI {_pct(row['agreement_low'])}–{_pct(row['agreement_high'])}"
    head = f"{row['judge']} agrees with people on {same} of {n} runs ({_pct(row['agreement'])}, {interval})"
    if row["kappa"] is None:
        return (f"{head}; kappa is undefined: the judge and the people gave every run the same one verdict, so "
                "there is nothing to tell agreement from chance; review runs of both kinds")
    kappa = (f"kappa {row['kappa']:.2f} [{row['kappa_low']:.2f}, {row['kappa_high']:.2f}], "
             f"{row['kappa_words']} beyond chance")
    wrong = []
    if c["judge_pass_person_fail"]:
        wrong.append(f"passed {c['judge_pass_person_fail']} that people failed")
    if c["judge_fail_person_pass"]:
        wrong.append(f"failed {c['judge_fail_person_pass']} that people passed")
    few = "; few runs: the interval is wide" if n < 30 else ""
    return f"{head}; {kappa}" + (f"; it {' and '.join(wrong)}" if wrong else "") + few
