"""Statistics a reviewer would accept: Wilson intervals, pass@k and pass^k, an exact paired test.

- `wilson(passes, n)`: the 95% Wilson score interval of a success rate (honest at small n and at
  0% or 100%, where the normal approximation gives nonsense).
- `pass_at_k(n, c, k)`: the chance that at least one of k tries succeeds, estimated without bias from
  c successes in n tries (Chen et al. 2021); `pass_hat_k(n, c, k)`: the chance that all k succeed
  (τ-bench's pass^k). Averaged over tasks.
- `paired(a, b)`: two variants on the same tasks. Each task is a win for B (B's pass rate over the
  repeats is higher), a loss, or a tie; ties are dropped and the wins are tested against a fair coin
  with an exact two-sided binomial (sign) test. A difference is called significant only at p < 0.05,
  and the verdict says so in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the normal quantile for a two-sided 95% interval
ALPHA = 0.05


def wilson(passes: int, n: int, *, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (low, high) for `passes` out of `n`; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = passes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # rounded to 12 places: at 0% and 100% the bound is exactly 0 or 1, not 0.9999999999999999
    return round(max(0.0, centre - half), 12), round(min(1.0, centre + half), 12)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate that at least one of k tries passes, from c passes in n tries (k <= n)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate that all of k tries pass (τ-bench's pass^k), from c passes in n tries."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return math.comb(c, k) / math.comb(n, k)


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial test of `wins` against a fair coin over wins + losses (1.0 when none)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class Paired:
    """Variant B against variant A over the tasks both ran."""

    a: str
    b: str
    tasks: int
    wins: int  # tasks where B passed more often than A
    losses: int
    ties: int
    p_value: float
    significant: bool
    verdict: str


def paired(a: str, b: str, rates_a: dict[str, float], rates_b: dict[str, float], *, runs: int) -> Paired:
    """Compare B with A on the tasks both ran (per-task pass rates over the repeats); `runs` for the wording."""
    common = sorted(set(rates_a) & set(rates_b))
    wins = sum(1 for t in common if rates_b[t] > rates_a[t])
    losses = sum(1 for t in common if rates_b[t] < rates_a[t])
    ties = len(common) - wins - losses
    p = sign_test(wins, losses)
    significant = p < ALPHA and wins != losses
    if not common:
        verdict = f"{a} and {b} share no task: nothing to compare"
    elif significant:
        better, worse, w = (b, a, wins) if wins > losses else (a, b, losses)
        verdict = f"{better} beats {worse} on {w} of {len(common)} tasks, p = {p:.2g}"
    else:
        verdict = (f"no detectable difference between {a} and {b} at n = {runs} "
                   f"({b} better on {wins}, worse on {losses}, tied on {ties} of {len(common)} tasks; p = {p:.2g})")
    return Paired(a, b, len(common), wins, losses, ties, p, significant, verdict)
