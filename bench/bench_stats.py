"""The experiments' statistics by simulation: does the interval cover, does the test keep its level, how
often does it see a real effect, against what they replaced (the pooled Wilson interval, the sign test).

    python bench/bench_stats.py [--sims 4000] [--tasks 12] [--repeats 4] [--seed 1]

Each simulated experiment draws T per-task pass rates from a Beta, plays `repeats` tries of each task
(a binomial), and computes what the report shows with agent.stats: the success rate's 95% interval
(coverage of the mean of the task population, a/(a+b)), and the paired comparison of two variants:
identical ones (false-positive rate at 0.05) and B = A + 20 points on every task (power; B's rate
capped at 100%). Printed: a table per question, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent import stats

BETAS = [(0.5, 0.5), (1, 1), (2, 2), (1, 3), (3, 1), (0.3, 0.3), (0.2, 2), (2, 20), (5, 1)]


def experiment(rng: np.random.Generator, a: float, b: float, tasks: int, repeats: int,
               shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Passes per task of variant A and of B (B's rate = A's + shift, capped to [0, 1])."""
    rates = rng.beta(a, b, tasks)
    return rng.binomial(repeats, rates), rng.binomial(repeats, np.clip(rates + shift, 0, 1))


def coverage(rng: np.random.Generator, a: float, b: float, tasks: int, repeats: int, sims: int) -> dict[str, float]:
    """How often each interval covers a/(a+b), and ours' mean width."""
    target, hits, pooled, t_hits, zero, width = a / (a + b), 0, 0, 0, 0, 0.0
    t_crit = stats.t_quantile(0.975, tasks - 1)
    for _ in range(sims):
        passes, _ = experiment(rng, a, b, tasks, repeats)
        counts = [(int(p), repeats) for p in passes]
        low, high = stats.cluster_interval(counts)
        hits += low <= target <= high
        width += high - low
        plow, phigh = stats.wilson(int(passes.sum()), tasks * repeats)
        pooled += plow <= target <= phigh
        rates = passes / repeats
        half = t_crit * rates.std(ddof=1) / math.sqrt(tasks)
        t_hits += rates.mean() - half <= target <= rates.mean() + half
        zero += half == 0
    return {"ours": hits / sims, "pooled_wilson": pooled / sims, "t_on_task_means": t_hits / sims,
            "t_zero_width": zero / sims, "ours_width": width / sims}


def rejections(rng: np.random.Generator, a: float, b: float, tasks: int, repeats: int, sims: int,
               shift: float) -> dict[str, float]:
    """How often each test says p < 0.05 (shift 0: false positives; else power), and how often our
    difference interval covers the true mean difference."""
    ours = sign = t_test = covered = 0
    truth_rng = np.random.default_rng(0)
    rates = truth_rng.beta(a, b, 200_000)
    truth = float(np.mean(np.clip(rates + shift, 0, 1) - rates))
    for _ in range(sims):
        pa, pb = experiment(rng, a, b, tasks, repeats, shift)
        ta = {str(i): (int(p), repeats) for i, p in enumerate(pa)}
        tb = {str(i): (int(p), repeats) for i, p in enumerate(pb)}
        c = stats.compare(ta, tb)
        assert c.p_value is not None and c.ci_low is not None and c.ci_high is not None
        ours += c.p_value < stats.ALPHA
        covered += c.ci_low <= truth <= c.ci_high
        d = (pb - pa) / repeats
        sign += stats.sign_test(int((d > 0).sum()), int((d < 0).sum())) < stats.ALPHA
        sd = d.std(ddof=1)
        if sd > 0:
            tval = abs(d.mean()) / (sd / math.sqrt(tasks))
            t_test += 2 * (1 - stats.t_cdf(tval, tasks - 1)) < stats.ALPHA
        else:
            t_test += bool(d.mean() != 0)
    return {"ours": ours / sims, "sign_test": sign / sims, "paired_t": t_test / sims, "ci_covers": covered / sims}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=4000)
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    out: dict[str, dict[str, dict[str, float]]] = {"coverage": {}, "false_positives": {}, "power_20": {}}
    print(f"{args.tasks} tasks × {args.repeats} repeats, {args.sims} simulated experiments per row\n")
    print("95% interval of the success rate: coverage of the task population's mean")
    print(f"{'Beta(a, b)':<12} {'ours':>6} {'pooled Wilson':>14} {'t on task means':>16} {'t zero-width':>13} "
          f"{'our width':>10}")
    for a, b in BETAS:
        row = coverage(rng, a, b, args.tasks, args.repeats, args.sims)
        out["coverage"][f"{a},{b}"] = row
        print(f"({a}, {b}){'':<{12 - len(f'({a}, {b})')}} {row['ours']:>6.3f} {row['pooled_wilson']:>14.3f} "
              f"{row['t_on_task_means']:>16.3f} {row['t_zero_width']:>13.3f} {row['ours_width']:>10.3f}")
    for title, key, shift in (("false-positive rate at 0.05 (identical variants)", "false_positives", 0.0),
                              ("power at +20 points on every task (B capped at 100%)", "power_20", 0.2)):
        print(f"\n{title}")
        print(f"{'Beta(a, b)':<12} {'ours':>6} {'sign test':>10} {'paired t':>9} {'diff CI covers':>15}")
        for a, b in BETAS[:5]:
            row = rejections(rng, a, b, args.tasks, args.repeats, args.sims, shift)
            out[key][f"{a},{b}"] = row
            print(f"({a}, {b}){'':<{12 - len(f'({a}, {b})')}} {row['ours']:>6.3f} {row['sign_test']:>10.3f} "
                  f"{row['paired_t']:>9.3f} {row['ci_covers']:>15.3f}")
    print(json.dumps({"tasks": args.tasks, "repeats": args.repeats, "sims": args.sims, **out}))


if __name__ == "__main__":
    main()
