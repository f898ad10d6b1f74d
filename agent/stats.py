"""The statistics of experiments, as pure functions (stdlib and numpy only: a leaf every layer may import).

What a variant's numbers and a comparison's numbers mean, and why these methods (the simulations are
in tests/test_experiment_stats.py and bench/bench_stats.py; docs/experiments.md says it in words):

- A variant's **success rate** is the mean over tasks of each task's pass rate (every task weighs the
  same, however many of its tries were graded). Its 95% interval treats the repeats of a task as a
  cluster (Miller 2024, "Adding Error Bars to Evals"): the variance of the mean is the spread of the
  per-task rates over the tasks, not p(1-p)/n of the pooled tries. `cluster_interval` puts that
  variance into a Wilson interval through an effective sample size, n* = p(1-p) / var, capped at the
  tries and shrunk by (z / t_{T-1})² for the few tasks the spread is estimated from (Korn & Graubard
  1998; the Wilson form as in Dean & Pagano 2015). At 0% or 100% (no spread) n* is the tries, so the
  interval never has zero width. Simulated at 12 tasks × 4 repeats with per-task rates from Betas
  it covers the mean of the task population 95-98% of the time where the pooled Wilson interval
  covers 74-95% and a t interval on task means 85-95% (it is zero-width at 0%/100%).
- **pass@k / pass^k** at one fixed k: the smallest number of graded tries of a task (k), over the
  tasks with at least k, each by the unbiased estimators (Chen et al. 2021; τ-bench), averaged.
- A **comparison** of B with A over the tasks both have graded: the difference is the mean of the
  per-task differences (B − A); its p-value comes from an exact sign-flip permutation test of that
  mean over tasks (every task's difference may have either sign under "no difference"; enumerated
  exactly up to EXACT_MAX_TASKS differing tasks, Monte Carlo with a fixed seed beyond); the 95%
  interval is a t interval over tasks, its variance never below a share of the binomial variance of
  the tries (so it is never zero-width); `mde` is the difference the design detects with 80% power at the
  observed spread. Many comparisons are corrected with Holm's method.
- Fisher's exact test says whether two variants lost runs at different rates.
- A judge against people: Cohen's kappa of the two raters' verdicts on the same runs, its standard error
  the large-sample one of Fleiss, Cohen & Everitt (1969) (statsmodels' `cohens_kappa` computes the same),
  its 95% interval κ ± z·SE; where that SE is 0 (perfect agreement, which a dozen runs cannot prove), the
  Wilson interval of the observed agreement carried over to kappa with the chance agreement held fixed.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # the normal quantile for a two-sided 95% interval
ALPHA = 0.05
POWER = 0.80
EXACT_MAX_TASKS = 30  # sign-flip p-values are enumerated exactly (2^n patterns, met in the middle) up to this
MONTE_CARLO_DRAWS = 20_000
MONTE_CARLO_SEED = 20240
FLOOR_SHARE = 0.25  # see _binomial_floor
_TIE = 1e-9  # differences are ratios of small integers: sums this close are the same sum

TaskCounts = tuple[int, int]  # (passes, tries) of one task


# ------------------------------------------------------------------ distributions (no scipy at run time)
def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        even = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
        odd = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
        for num in (even, odd):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@functools.lru_cache(maxsize=1024)
def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with `df` degrees of freedom (0 < q < 1)."""
    if not 0.0 < q < 1.0 or df <= 0:
        raise ValueError(f"need 0 < q < 1 and df > 0, got q={q}, df={df}")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < q:
        high *= 2.0
    for _ in range(200):  # bisection to float precision: about 60 halvings
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < q:
            low = mid
        else:
            high = mid
        if high - low <= 1e-14 * max(1.0, high):
            break
    return (low + high) / 2.0


def normal_quantile(q: float) -> float:
    """The q-quantile of the standard normal."""
    return statistics.NormalDist().inv_cdf(q)


# ------------------------------------------------------------------ one variant
def wilson(passes: int, n: int, *, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (low, high) for `passes` out of `n`; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    return wilson_rate(passes / n, n, z=z)


def wilson_rate(p: float, n: float, *, z: float = Z95) -> tuple[float, float]:
    """The Wilson interval of a rate `p` seen over an (effective, possibly fractional) sample size `n`."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n)) / denom
    # rounded to 12 places: at 0% and 100% the bound is exactly 0 or 1, not 0.9999999999999999
    return round(max(0.0, centre - half), 12), round(min(1.0, centre + half), 12)


def mean_rate(tasks: Sequence[TaskCounts]) -> float | None:
    """The mean over tasks of each task's pass rate (tasks without a try left out); None without any."""
    rates = [p / n for p, n in tasks if n > 0]
    return sum(rates) / len(rates) if rates else None


def cluster_interval(tasks: Sequence[TaskCounts], *, z: float = Z95) -> tuple[float, float]:
    """95% interval of the mean over tasks of per-task pass rates, repeats of a task counted as a cluster.

    Wilson's interval at an effective sample size: n* = p(1-p) / (s² / T), s² the variance of the T
    per-task rates, capped at the N tries (clustering never makes a try worth more than one), then
    multiplied by (z / t_{T-1})² since s² comes from T tasks only. With no spread (every task at
    0%, or every one at 100%) n* = N·(z / t_{T-1})²: still a proper, never zero-width, interval.
    """
    used = [(p, n) for p, n in tasks if n > 0]
    if not used:
        return 0.0, 1.0
    tries = sum(n for _, n in used)
    rates = [p / n for p, n in used]
    count = len(rates)
    mean = sum(rates) / count
    if count == 1:  # one task: only its own tries say anything
        return wilson_rate(mean, tries, z=z)
    spread = statistics.variance(rates) / count
    n_eff = float(tries)
    if spread > 0 and 0 < mean < 1:
        n_eff = min(n_eff, mean * (1 - mean) / spread)
    n_eff *= (z / t_quantile(1 - (1 - _confidence(z)) / 2, count - 1)) ** 2
    return wilson_rate(mean, n_eff, z=z)


def _confidence(z: float) -> float:
    return 2 * statistics.NormalDist().cdf(z) - 1


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


@dataclass(frozen=True)
class AtK:
    """pass@k and pass^k at one k, over the tasks with at least k graded tries."""

    k: int | None
    pass_at_k: float | None
    pass_hat_k: float | None
    tasks: int


def at_fixed_k(tasks: Sequence[TaskCounts], k: int | None = None) -> AtK:
    """pass@k and pass^k at one k (default: the smallest graded count of a task), averaged over the tasks
    with at least k graded tries; each task by the unbiased estimators, so no task counts at another k."""
    counts = [(p, n) for p, n in tasks if n > 0]
    if not counts:
        return AtK(None, None, None, 0)
    k = min(n for _, n in counts) if k is None else k
    used = [(p, n) for p, n in counts if n >= k]
    if not used or k < 1:
        return AtK(k, None, None, 0)
    at = sum(pass_at_k(n, p, k) for p, n in used) / len(used)
    hat = sum(pass_hat_k(n, p, k) for p, n in used) / len(used)
    return AtK(k, at, hat, len(used))


# ------------------------------------------------------------------ two variants
def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial test of `wins` against a fair coin over wins + losses (1.0 when none)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _all_sums(values: np.ndarray) -> np.ndarray:
    """Every ±v1 ± v2 ... sum (2^len values), sorted."""
    sums = np.zeros(1)
    for v in values:
        sums = np.concatenate((sums + v, sums - v))
    return np.sort(sums)


def sign_flip_p(diffs: Sequence[float], *, seed: int = MONTE_CARLO_SEED) -> tuple[float, bool]:
    """Two-sided p-value of a sign-flip permutation test of the mean of `diffs`, and whether it is exact.

    Under "no difference", each task's difference is as likely to have the other sign; the p-value is
    the share of the 2^n sign patterns whose |sum| is at least the observed one. Tasks without a
    difference change no sum and are left out. Up to EXACT_MAX_TASKS differing tasks the patterns are
    enumerated exactly (two halves met in the middle); beyond, MONTE_CARLO_DRAWS random patterns with
    a fixed seed, the p-value counting the observed pattern ((hits + 1) / (draws + 1)).
    """
    # Only the sizes matter for the distribution and the sign of the total for the observation:
    # a sorted key lets a report that is read again and again reuse its p-values.
    total = sum(diffs)
    key = tuple(sorted(round(abs(d), 12) for d in diffs if abs(d) > _TIE))
    return _sign_flip(key, round(abs(total), 12), seed)


@functools.lru_cache(maxsize=4096)
def _sign_flip(sizes: tuple[float, ...], total: float, seed: int) -> tuple[float, bool]:
    values = np.array(sizes, dtype=float)
    if values.size == 0:
        return 1.0, True
    observed = total - _TIE
    if values.size <= EXACT_MAX_TASKS:
        half = values.size // 2
        left, right = _all_sums(values[:half]), _all_sums(values[half:])
        # |l + r| >= observed  <=>  r >= observed - l  or  r <= -observed - l
        upper = right.size - np.searchsorted(right, observed - left, side="left")
        lower = np.searchsorted(right, -observed - left, side="right")
        hits = int(np.sum(upper + lower))
        return min(1.0, hits / float(2 ** values.size)), True
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, MONTE_CARLO_DRAWS, 2_000):
        signs = rng.integers(0, 2, size=(min(2_000, MONTE_CARLO_DRAWS - start), values.size)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ values) >= observed))
    return (hits + 1) / (MONTE_CARLO_DRAWS + 1), False


def smallest_p(tasks: int) -> float:
    """The smallest p-value a sign-flip test over `tasks` tasks can give (2 / 2^tasks)."""
    return min(1.0, 2.0 / 2.0**tasks) if tasks > 0 else 1.0


@dataclass(frozen=True)
class Comparison:
    """B against A over the tasks both have graded (differences in rate units, B − A)."""

    tasks: int
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    mde: float | None
    exact: bool
    method: str


def _binomial_floor(pairs: Sequence[tuple[TaskCounts, TaskCounts]]) -> float:
    """A floor for the variance of the mean difference: FLOOR_SHARE of the variance the tries' binomial noise
    gives, with half a pass and half a failure added to each task's counts (a task at 0% or 100% is not
    certain). It only matters where the spread over tasks says nothing (every task shows the same
    difference, e.g. both variants at 100%); elsewhere the spread is larger (simulated: coverage unchanged)."""
    total = 0.0
    for (pa, na), (pb, nb) in pairs:
        qa, qb = (pa + 0.5) / (na + 1), (pb + 0.5) / (nb + 1)
        total += qa * (1 - qa) / na + qb * (1 - qb) / nb
    return FLOOR_SHARE * total / len(pairs) ** 2


def compare(a: Mapping[str, TaskCounts], b: Mapping[str, TaskCounts]) -> Comparison:
    """B against A over the tasks both have at least one graded try of: difference, 95% interval, p, mde."""
    common = sorted(t for t in set(a) & set(b) if a[t][1] > 0 and b[t][1] > 0)
    count = len(common)
    if not count:
        return Comparison(0, None, None, None, None, None, True, "no task graded for both")
    diffs = [b[t][0] / b[t][1] - a[t][0] / a[t][1] for t in common]
    mean = sum(diffs) / count
    p_value, exact = sign_flip_p(diffs)
    floor = _binomial_floor([(a[t], b[t]) for t in common])
    spread = statistics.variance(diffs) / count if count > 1 else 0.0
    se = math.sqrt(max(spread, floor))
    df = max(1, count - 1)
    half = t_quantile(1 - ALPHA / 2, df) * se
    low, high = max(-1.0, mean - half), min(1.0, mean + half)
    mde = None
    if smallest_p(count) < ALPHA:  # with 5 tasks or fewer, no difference can reach p < 0.05 over tasks
        mde = min(1.0, (t_quantile(1 - ALPHA / 2, df) + t_quantile(POWER, df)) * se)
    test = (f"exact sign-flip permutation test over {count} tasks" if exact else
            f"sign-flip permutation test over {count} tasks ({MONTE_CARLO_DRAWS:,} random patterns, seed "
            f"{MONTE_CARLO_SEED})")
    method = f"mean of per-task differences; {test}; t interval over tasks"
    return Comparison(count, mean, low, high, p_value, mde, exact, method)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of several p-values (family-wise error at most the level)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def expected_mde(tasks: int, repeats: int) -> float | None:
    """The difference a design of `tasks` × `repeats` would likely detect (80% power, two-sided 0.05), before
    any run: per-task rates spread evenly over 0-100% and the same effect on every task, so each task's
    difference has the binomial variance 2·E[p(1-p)]/repeats = 1/(3·repeats). None when the design cannot
    reach p < 0.05 at all (5 tasks or fewer)."""
    if tasks < 2 or repeats < 1 or smallest_p(tasks) >= ALPHA:
        return None
    df = tasks - 1
    se = math.sqrt(1 / (3 * repeats) / tasks)
    return min(1.0, (t_quantile(1 - ALPHA / 2, df) + t_quantile(POWER, df)) * se)


# ------------------------------------------------------------------ losses
def fisher_exact(a_lost: int, a_kept: int, b_lost: int, b_kept: int) -> float:
    """Two-sided p-value of Fisher's exact test on the 2×2 table [[a_lost, a_kept], [b_lost, b_kept]]:
    the probability, with the margins fixed, of a table no more likely than the one seen."""
    row_a, col_lost, total = a_lost + a_kept, a_lost + b_lost, a_lost + a_kept + b_lost + b_kept
    if total == 0 or col_lost in (0, total) or row_a in (0, total):
        return 1.0

    def log_p(x: int) -> float:  # hypergeometric: x lost in row A
        return (_log_comb(row_a, x) + _log_comb(total - row_a, col_lost - x) - _log_comb(total, col_lost))

    seen = log_p(a_lost)
    lo, hi = max(0, col_lost - (total - row_a)), min(row_a, col_lost)
    p = sum(math.exp(lp) for lp in (log_p(x) for x in range(lo, hi + 1)) if lp <= seen + 1e-7)
    return min(1.0, p)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


# ------------------------------------------------------------------ in words
def points(x: float) -> str:
    """A difference in percentage points, signed, with a true minus: "+18", "−8", "+0"."""
    value = round(100 * x)
    return f"+{value}" if value >= 0 else f"−{-value}"


def verdict(a: str, b: str, c: Comparison, *, p_adjusted: float | None, significant: bool) -> str:
    """The comparison in one sentence a prompt engineer can act on."""
    if c.difference is None or c.ci_low is None or c.ci_high is None:
        return f"no task graded for both {a} and {b} yet: nothing to compare"
    effect = f"{points(c.difference)} points [{points(c.ci_low)}, {points(c.ci_high)}]"
    if significant and p_adjusted is not None:
        p_text = f"{p_adjusted:.2g}" if p_adjusted >= 0.001 else "< 0.001"
        p_text = p_text if p_text.startswith("<") else f"= {p_text}"
        return f"{b} − {a} = {effect}, p {p_text} (Holm), {c.tasks} tasks"
    head = f"not enough evidence that {b} differs from {a}: {effect}"
    if c.mde is None:
        return (f"{head}; with {c.tasks} task{'s' if c.tasks != 1 else ''} no difference can reach p < 0.05 "
                "in a test over tasks: add tasks")
    return (f"{head}; differences under about {round(100 * c.mde)} points would likely go unseen with these "
            "tasks and repeats")


# ------------------------------------------------------------------ a report's numbers (every surface shows these)
def variant_numbers(tasks: Mapping[str, TaskCounts]) -> dict[str, float | int | None]:
    """A variant's success rate (mean over tasks), its clustered 95% interval, and pass@k / pass^k at one k,
    from each task's (passes, tries); tries count lost runs as failures."""
    counts = [c for c in tasks.values() if c[1] > 0]
    low, high = cluster_interval(counts) if counts else (None, None)
    at = at_fixed_k(counts)
    return {"success_rate": mean_rate(counts), "ci_low": low, "ci_high": high, "k": at.k,
            "pass_at_k": at.pass_at_k, "pass_hat_k": at.pass_hat_k, "pass_k_tasks": at.tasks}


def comparisons(names: Sequence[str], counts: Mapping[str, Mapping[str, TaskCounts]], *, baseline: str | None = None,
                mode: str = "baseline") -> list[dict[str, object]]:
    """Each variant against the baseline (default the first), or every pair (`mode` "all"), Holm-adjusted over
    the comparisons shown; each with its verdict in words."""
    if not names:
        return []
    base = baseline if baseline is not None and baseline in names else names[0]
    if mode == "all":
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    else:
        pairs = [(base, b) for b in names if b != base]
    results = [compare(counts.get(a, {}), counts.get(b, {})) for a, b in pairs]
    tested = [i for i, c in enumerate(results) if c.p_value is not None]
    adjusted = dict(zip(tested, holm([results[i].p_value or 1.0 for i in tested]), strict=True))
    out: list[dict[str, object]] = []
    for i, ((a, b), c) in enumerate(zip(pairs, results, strict=True)):
        p_adj = adjusted.get(i)
        significant = p_adj is not None and p_adj < ALPHA
        out.append({"a": a, "b": b, "tasks": c.tasks, "difference": c.difference, "ci_low": c.ci_low,
                    "ci_high": c.ci_high, "p_value": c.p_value, "p_adjusted": p_adj, "significant": significant,
                    "mde": c.mde, "method": c.method + (f"; Holm over {len(tested)} comparisons" if len(tested) > 1
                                                       else ""),
                    "verdict": verdict(a, b, c, p_adjusted=p_adj, significant=significant)})
    return out


def loss_warning(a: str, a_lost: int, a_runs: int, b: str, b_lost: int, b_runs: int) -> str | None:
    """A sentence when two variants lost runs at rates Fisher's exact test calls different (p < 0.05)."""
    p = fisher_exact(a_lost, a_runs - a_lost, b_lost, b_runs - b_lost)
    if p >= ALPHA:
        return None
    return (f"{b} lost {b_lost} of {b_runs} runs and {a} {a_lost} of {a_runs} (Fisher's exact test p = {p:.2g}): "
            "lost runs count as failures, so part of the difference may be the losses; compare "
            "success_rate_excluding_lost too")


# ------------------------------------------------------------------ two raters (a judge against people)
@dataclass(frozen=True)
class Kappa:
    """How two raters agree over the same items: observed and chance agreement, Cohen's kappa, its 95% interval."""

    n: int
    agreement: float | None
    agreement_low: float | None
    agreement_high: float | None
    chance: float | None
    kappa: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None


def cohen_kappa(table: Sequence[Sequence[int]], *, z: float = Z95) -> Kappa:
    """Cohen's kappa of a square table of counts (rows: rater A's category, columns: rater B's), its large-sample
    standard error (Fleiss, Cohen & Everitt 1969) and 95% interval (see the module's docstring); kappa is None
    when it is undefined (no item, or both raters put every item in the one same category)."""
    counts = np.asarray(table, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or (counts < 0).any():
        raise ValueError(f"need a square table of non-negative counts, got shape {counts.shape}")
    n = int(counts.sum())
    if n == 0:
        return Kappa(0, None, None, None, None, None, None, None, None)
    p = counts / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    agree = float(np.trace(p))
    chance = float(rows @ cols)
    a_low, a_high = wilson(int(round(agree * n)), n, z=z)
    if chance >= 1.0 - 1e-12:
        return Kappa(n, agree, a_low, a_high, chance, None, None, None, None)
    kappa = (agree - chance) / (1.0 - chance)
    diag = np.diag(p)
    term_a = float(np.sum(diag * (1.0 - (rows + cols) * (1.0 - kappa)) ** 2))
    off = p * (cols[:, None] + rows[None, :]) ** 2
    np.fill_diagonal(off, 0.0)
    term_b = (1.0 - kappa) ** 2 * float(off.sum())
    term_c = (kappa - chance * (1.0 - kappa)) ** 2
    se = math.sqrt(max(0.0, term_a + term_b - term_c) / n) / (1.0 - chance)
    low, high = kappa - z * se, kappa + z * se
    if se <= 1e-12:  # perfect agreement: the large-sample SE is 0, which a dozen runs cannot justify
        low, high = (a_low - chance) / (1.0 - chance), (a_high - chance) / (1.0 - chance)
    return Kappa(n, agree, a_low, a_high, chance, kappa, se, max(-1.0, low), min(1.0, high))


def kappa_words(kappa: float | None) -> str:
    """Kappa in words (Landis & Koch 1977's bands, the ones most readers know)."""
    if kappa is None:
        return "undefined"
    for bound, words in ((0.0, "worse than chance"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"),
                         (0.8, "substantial")):
        if kappa < bound:
            return words
    return "almost perfect"
