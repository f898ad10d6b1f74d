"""Experiments' building blocks: task files, every check kind, and the statistics against scipy and
statsmodels on fixed cases (or values worked out by hand, the arithmetic in the comments), each way the
old report misled, and a bounded simulation of the interval's coverage and the test's false positives."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as sp
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from agent import stats
from agent.experiments.checks import first_number, grade, normalise, read_judgement
from agent.experiments.tasks import Check, TaskError, load_bundled, parse_jsonl, parse_tasks


# ------------------------------------------------------------------ the building blocks, against scipy / statsmodels
def test_t_quantile_and_incomplete_beta_match_scipy() -> None:
    for df in (1, 2, 3, 4, 5, 11, 19, 30, 99, 1000):
        for q in (0.5, 0.6, 0.8, 0.9, 0.975, 0.995, 0.025):
            assert stats.t_quantile(q, df) == pytest.approx(sp.t.ppf(q, df), rel=1e-10, abs=1e-12), (q, df)
    for a, b, x in ((0.5, 0.5, 0.3), (2, 5, 0.1), (5.5, 0.5, 0.97), (30, 40, 0.45), (1, 1, 0.5)):
        assert stats.betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-12)
    assert stats.t_cdf(2.2, 11) == pytest.approx(sp.t.cdf(2.2, 11), rel=1e-12)


def test_wilson_matches_statsmodels_and_the_hand_computation() -> None:
    for k, n in ((7, 10), (0, 10), (10, 10), (3, 14), (14, 14), (1, 1), (50, 200)):
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert stats.wilson(k, n) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12)), (k, n)
    # 7/10, z = 1.959964: denom = 1 + z²/10 = 1.384146; centre = (0.7 + z²/20) / denom = 0.644491;
    # half = z·sqrt(0.7·0.3/10 + z²/400) / denom = 0.247741 -> (0.396751, 0.892232)
    assert tuple(round(x, 4) for x in stats.wilson(7, 10)) == (0.3968, 0.8922)
    assert stats.wilson(0, 0) == (0.0, 1.0)


def test_pass_at_k_and_pass_hat_k_by_hand_and_by_enumeration() -> None:
    from itertools import combinations

    assert stats.pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert stats.pass_hat_k(5, 3, 2) == pytest.approx(3 / 10)  # C(3,2)/C(5,2)
    for n, c, k in ((4, 1, 2), (6, 3, 3), (5, 5, 2), (7, 0, 3)):
        tries = [True] * c + [False] * (n - c)  # every k-subset of the n tries, equally likely
        subsets = list(combinations(tries, k))
        assert stats.pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets), abs=1e-12)
        assert stats.pass_hat_k(n, c, k) == pytest.approx(sum(all(s) for s in subsets) / len(subsets), abs=1e-12)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        stats.pass_at_k(3, 1, 4)


def test_sign_test_and_fisher_match_scipy() -> None:
    for wins, losses in ((9, 1), (9, 3), (5, 5), (6, 0), (0, 7), (12, 20)):
        assert stats.sign_test(wins, losses) == pytest.approx(
            sp.binomtest(wins, wins + losses, 0.5).pvalue, abs=1e-12)
    for table in ((8, 40, 0, 48), (3, 5, 7, 2), (0, 10, 0, 12), (1, 47, 9, 39), (20, 1980, 40, 1960)):
        a, b, c, d = table
        assert stats.fisher_exact(*table) == pytest.approx(sp.fisher_exact([[a, b], [c, d]]).pvalue, rel=1e-9)


def test_holm_matches_statsmodels() -> None:
    rng = np.random.default_rng(3)
    for size in (1, 2, 5, 19):
        p = list(rng.uniform(0, 0.2, size))
        assert stats.holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]), abs=1e-12)


def test_sign_flip_p_matches_scipy_permutation_test() -> None:
    rng = np.random.default_rng(7)
    cases = [rng.integers(-4, 5, n) / 4 for n in (3, 6, 9, 12)] + [np.array([0.25] * 8 + [-0.5, 0, 0, 0])]
    for d in cases:
        exact = sp.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                    alternative="two-sided").pvalue  # one sample: sign flips of the differences
        p, is_exact = stats.sign_flip_p(list(d))
        assert is_exact and p == pytest.approx(min(1.0, exact), abs=1e-12), d
    many = rng.integers(-4, 5, 40) / 4  # beyond EXACT_MAX_TASKS differing tasks: Monte Carlo with a fixed seed
    p, is_exact = stats.sign_flip_p(list(many))
    reference = sp.permutation_test((many,), np.mean, permutation_type="samples", n_resamples=50_000,
                                    alternative="two-sided", rng=1).pvalue
    assert not is_exact and p == pytest.approx(reference, abs=0.015) and p == stats.sign_flip_p(list(many))[0]
    assert stats.sign_flip_p([0.0, 0.0]) == (1.0, True)


def test_the_clustered_interval_by_hand_and_never_zero_width() -> None:
    counts = [(4, 4), (3, 4), (0, 4), (2, 4), (1, 4), (4, 4)]
    rates = [p / n for p, n in counts]
    mean, var = sum(rates) / 6, float(np.var(rates, ddof=1)) / 6
    z, t = stats.Z95, sp.t.ppf(0.975, 5)
    n_eff = min(24, mean * (1 - mean) / var) * (z / t) ** 2  # Korn-Graubard's effective n, df-adjusted
    expected = proportion_confint(mean * n_eff, n_eff, method="wilson")
    assert stats.cluster_interval(counts) == (pytest.approx(expected[0], abs=1e-9), pytest.approx(expected[1], abs=1e-9))
    for edge in ([(0, 4)] * 12, [(4, 4)] * 12):  # no spread at 0% or 100%: the tries' own Wilson, df-adjusted
        low, high = stats.cluster_interval(edge)
        assert high - low > 0.05
    assert stats.cluster_interval([(0, 4)] * 12)[0] == 0.0 and stats.cluster_interval([(4, 4)] * 12)[1] == 1.0


def test_the_difference_and_its_interval_are_the_paired_t_over_tasks() -> None:
    a = {f"t{i}": (p, 4) for i, p in enumerate([0, 1, 2, 4, 3, 1, 0, 2, 2, 3, 1, 4])}
    b = {f"t{i}": (p, 4) for i, p in enumerate([2, 1, 4, 4, 3, 3, 1, 2, 4, 3, 2, 4])}
    c = stats.compare(a, b)
    d = np.array([(b[t][0] - a[t][0]) / 4 for t in sorted(a)])
    ci = sp.ttest_1samp(d, 0).confidence_interval(0.95)
    assert (c.tasks, c.difference) == (12, pytest.approx(d.mean()))
    assert (c.ci_low, c.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    exact = sp.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
    assert c.p_value == pytest.approx(exact) and c.exact
    se = d.std(ddof=1) / math.sqrt(12)
    assert c.mde == pytest.approx((sp.t.ppf(0.975, 11) + sp.t.ppf(0.8, 11)) * se)
    assert "exact sign-flip permutation test over 12 tasks" in c.method


# ------------------------------------------------------------------ each way the old report misled (issue 21)
def test_pass_at_k_uses_one_k_for_every_task() -> None:
    # One task passes 1 of 4, the other 1 of 1 (3 ungraded): at k = 1 both numbers are the mean rate, 62.5%,
    # not "pass@1 = 100%, pass^1 = 50%" (each task at its own k).
    at = stats.at_fixed_k([(1, 4), (1, 1)])
    assert (at.k, at.pass_at_k, at.pass_hat_k, at.tasks) == (1, 0.625, 0.625, 2)
    at2 = stats.at_fixed_k([(1, 4), (2, 2), (0, 1)], k=2)  # k = 2: only the tasks with 2 tries or more
    assert (at2.tasks, at2.pass_at_k, at2.pass_hat_k) == (2, pytest.approx((0.5 + 1) / 2), pytest.approx(0.5))


def test_a_verdict_never_says_the_variant_with_the_lower_mean_wins() -> None:
    # B is a little better on 15 tasks and much worse on 5: the sign test said "B beats A on 15 of 20 tasks".
    a = {f"t{i}": (2 if i < 15 else 4, 4) for i in range(20)}
    b = {f"t{i}": (3 if i < 15 else 0, 4) for i in range(20)}
    (c,) = stats.comparisons(["A", "B"], {"A": a, "B": b})
    assert c["difference"] == pytest.approx((15 * 0.25 - 5 * 1.0) / 20) and c["difference"] < 0
    assert "beats" not in str(c["verdict"]) and str(c["verdict"]).startswith(
        "not enough evidence that B differs from A: −6 points [")


def test_a_sure_difference_over_five_tasks_is_stated_not_hidden() -> None:
    # A 0/20, B 20/20 over 5 tasks: "no detectable difference ... at n = 20" before. Five tasks cannot reach
    # p < 0.05 in a test over tasks; the verdict says the effect and what to do.
    a = {f"t{i}": (0, 4) for i in range(5)}
    b = {f"t{i}": (4, 4) for i in range(5)}
    (c,) = stats.comparisons(["A", "B"], {"A": a, "B": b})
    assert (c["difference"], c["p_value"], c["mde"], c["significant"]) == (1.0, 0.0625, None, False)
    assert c["verdict"] == ("not enough evidence that B differs from A: +100 points [+87, +100]; with 5 tasks no "
                            "difference can reach p < 0.05 in a test over tasks: add tasks")
    sure = stats.comparisons(["A", "B"], {"A": {f"t{i}": (0, 4) for i in range(8)},
                                          "B": {f"t{i}": (4, 4) for i in range(8)}})[0]
    assert sure["verdict"] == "B − A = +100 points [+91, +100], p = 0.0078 (Holm), 8 tasks" and sure["significant"]


def test_many_comparisons_are_holm_adjusted() -> None:
    counts = {"A": {f"t{i}": (2, 4) for i in range(12)}, "B": {f"t{i}": (4, 4) for i in range(12)},
              "C": {f"t{i}": (3 if i < 9 else 2, 4) for i in range(12)}}
    out = stats.comparisons(["A", "B", "C"], counts, mode="all")
    assert [(c["a"], c["b"]) for c in out] == [("A", "B"), ("A", "C"), ("B", "C")]
    raw = [float(c["p_value"]) for c in out]  # type: ignore[arg-type]
    assert [c["p_adjusted"] for c in out] == pytest.approx(list(multipletests(raw, method="holm")[1]))
    assert all(c["significant"] == (float(c["p_adjusted"]) < 0.05) for c in out)  # type: ignore[arg-type]
    base = stats.comparisons(["A", "B", "C"], counts, baseline="C")
    assert [(c["a"], c["b"]) for c in base] == [("C", "A"), ("C", "B")]
    # Before any cell is graded the variants share every task; there is only nothing to compare yet.
    (waiting,) = stats.comparisons(["A", "B"], {"A": {"t": (0, 0)}, "B": {}})
    assert (waiting["verdict"], waiting["p_value"]) == ("no task graded for both A and B yet: nothing to compare", None)


# ------------------------------------------------------------------ a bounded simulation (12 tasks × 4 repeats)
BETAS = ((0.5, 0.5), (2, 2), (0.2, 2))


def test_simulated_interval_coverage_and_false_positives_at_12_tasks_by_4_repeats() -> None:
    # Per-task pass rates drawn from Betas; 4 tries each. The interval must cover the mean of the task
    # population at least 93% of the time (the pooled Wilson interval it replaced: 74-87% here, checked as a
    # control so that this test can fail), and two identical variants must be called different at most 6%.
    rng = np.random.default_rng(21)
    sims = 500
    for a, b in BETAS:
        target, covered, pooled = a / (a + b), 0, 0
        for _ in range(sims):
            passes = rng.binomial(4, rng.beta(a, b, 12))
            numbers = stats.variant_numbers({str(i): (int(p), 4) for i, p in enumerate(passes)})
            covered += numbers["ci_low"] <= target <= numbers["ci_high"]  # type: ignore[operator]
            low, high = stats.wilson(int(passes.sum()), 48)
            pooled += low <= target <= high
        assert covered / sims >= 0.93, (a, b, covered / sims)
        if (a, b) == (0.5, 0.5):
            assert pooled / sims < 0.85, pooled / sims  # the old interval, in the same experiments
    for a, b in BETAS[:2]:
        false = 0
        for _ in range(sims):
            rates = rng.beta(a, b, 12)
            ca = {str(i): (int(p), 4) for i, p in enumerate(rng.binomial(4, rates))}
            cb = {str(i): (int(p), 4) for i, p in enumerate(rng.binomial(4, rates))}
            false += bool(stats.comparisons(["A", "B"], {"A": ca, "B": cb})[0]["significant"])
        assert false / sims <= 0.06, (a, b, false / sims)


def test_ten_identical_variants_rarely_yield_a_false_winner() -> None:
    # Every pair of 10 identical variants (45 comparisons): without a correction, 44% of experiments named a
    # false winner; with Holm's, at most the level.
    rng = np.random.default_rng(5)
    sims, false = 120, 0
    for _ in range(sims):
        rates = rng.beta(1, 1, 12)
        counts = {f"v{j}": {str(i): (int(p), 4) for i, p in enumerate(rng.binomial(4, rates))} for j in range(10)}
        false += any(c["significant"] for c in stats.comparisons(list(counts), counts, mode="all"))
    assert false / sims <= 0.06, false / sims


# ------------------------------------------------------------------ every check kind
@pytest.mark.parametrize(("check", "result", "passed", "score"), [
    ({"equals": "USB-C to USB-C Cable 0.5 m"}, "  usb-c to USB-C cable 0.5 M.", True, 1.0),
    ({"equals": "yes"}, "no", False, 0.0),
    ({"contains": ["0.5 m", "5.49"]}, "The cheapest is the USB-C Cable 0.5 m at €5.49", True, 1.0),
    ({"contains": ["0.5 m", "5.49"]}, "The cheapest is the 0.5 m cable", False, 0.5),
    ({"regex": "DS-[0-9A-F]{8}"}, "Your order ds-b3a5098e is placed", True, 1.0),
    ({"regex": "^CT-"}, "reference: none", False, 0.0),
    ({"number": 43.93, "tolerance": 0.005}, "The total is €43.93.", True, 1.0),
    ({"number": 1234.5, "tolerance": 0}, "It costs 1,234.50 EUR", True, 1.0),
    ({"number": 6, "tolerance": 0}, 6, True, 1.0),
    ({"number": 6, "tolerance": 0}, "seven", False, 0.0),
    ({"json": {"name": "USB-C to USB-C Cable 0.5 m", "price": 5.49}}, {"name": "usb-c to usb-c cable 0.5 m", "price": 5.49, "x": 1}, True, 1.0),
    ({"json": {"name": "A", "price": 5.49}}, {"name": "A", "price": 5.5}, False, 0.5),
    ({"json": {"name": "A"}}, json.dumps({"name": "A"}), True, 1.0),
    ({"json": {"name": "A"}}, "not json", False, 0.0),
])
def test_every_automatic_check_kind(check: dict, result: object, passed: bool, score: float) -> None:
    g = grade(Check.model_validate(check), result)
    assert (g.passed, g.score) == (passed, score), g.detail


def test_page_judge_and_no_check() -> None:
    page = Check.model_validate({"page": "document.title === 'x'"})
    assert grade(page, None, page_value=True).passed is True
    assert (grade(page, None, page_value=0.75).passed, grade(page, None, page_value=0.75).score) == (True, 0.75)
    assert grade(page, None, page_value=-1).passed is False
    assert grade(page, None, page_value=None, page_error="ReferenceError: x").detail == \
        "the page check failed: ReferenceError: x"
    judge = Check.model_validate({"judge": "names the brand", "provider": "anthropic"})
    assert grade(judge, "Sonora").passed is None and judge.judge_model == ("anthropic", "claude-sonnet-4-5")
    assert grade(None, "anything").passed is None
    assert grade(Check.model_validate({"equals": "x"}), None, run_succeeded=False).detail == "no result (the run failed)"
    ok = read_judgement('Sure. {"pass": true, "score": 0.9, "reason": "all named"}')
    assert (ok.passed, ok.score, ok.detail) == (True, 0.9, "judge: all named")
    assert read_judgement("I think it passes").passed is None  # no verdict: the judge failed, not the agent


def test_normalising_and_numbers() -> None:
    assert normalise(" “Hello,   World!” ") == "hello, world"
    assert first_number("€1,234.56 and 7") == 1234.56 and first_number(True) is None
    assert first_number({"price": 5.49}) == 5.49


# ------------------------------------------------------------------ task files
def test_bad_tasks_are_named_by_line_and_field() -> None:
    cases = [
        ('{"id": "a", "prompt": "do it", "check": {"color": "red"}}', "tasks line 1.check",
         "unknown check kind 'color'; use one of: equals, contains, regex, number, json, page, judge"),
        ('{"id": "a", "prompt": "do it"}\n{"id": "a", "prompt": "again"}', "tasks line 2.id",
         "'a' is used by an earlier task; ids must be unique"),
        ('\n{"id": "b", "prompt": "xyz", "check": {"regex": "(unclosed"}}', "tasks line 2.check.regex", None),
        ('{"id": "c", "prompt": "do"', "tasks line 1", None),
        ('{"id": "d", "prompt": "do it", "check": {"equals": "x", "regex": "y"}}', "tasks line 1.check",
         "must have exactly one of equals, contains, regex, number, json, page, judge; got equals, regex"),
        ('{"id": "e", "prompt": "do it", "check": {"equals": "x", "tolerance": 1}}', "tasks line 1.check",
         "tolerance goes with a number check only"),
        ('{"id": "bad id!", "prompt": "do it"}', "tasks line 1.id", None),
        ('{"prompt": "do it"}', "tasks line 1.id", "is required"),
    ]
    for text, field, message in cases:
        with pytest.raises(TaskError) as info:
            parse_jsonl(text)
        assert info.value.field == field, (text, info.value)
        if message is not None:
            assert info.value.message == message
    with pytest.raises(TaskError, match="must be a non-empty list"):
        parse_tasks([])


def test_the_bundled_demo_shop_set_has_every_check_kind() -> None:
    tasks = load_bundled("demo-shop")
    assert len(tasks) >= 12 and len({t.id for t in tasks}) == len(tasks)
    assert {t.check.kind for t in tasks if t.check} == {"contains", "json", "number", "regex", "page", "judge"}
    request = tasks[0].request("http://127.0.0.1:7860")
    assert request["prompt"].startswith("Go to http://127.0.0.1:7860/demo/ ")
    with pytest.raises(TaskError, match="unknown task set 'nope'; bundled ones: demo-shop"):
        load_bundled("nope")


def test_not_graded_and_lost_say_why() -> None:
    from agent.experiments.report import lost, not_graded

    assert not_graded({"ungraded": 0}) == "–" and lost({"lost": 0, "lost_reasons": None}) == "–"
    assert not_graded({"ungraded": 3, "ungraded_reasons": {"no_check": 1, "judge_error": 2}}) == \
        "3 (judge_error 2, no_check 1)"
    assert lost({"lost": 2, "lost_reasons": {"rate_limit": 1, "interrupted": 1}}) == "2 (interrupted 1, rate_limit 1)"


def test_the_readmes_example_verdict_is_one_the_code_gives() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    # Nine tasks, B passing one more of its 4 tries than A on each.
    a = {f"t{i}": (p, 4) for i, p in enumerate([0, 1, 2, 1, 0, 2, 1, 3, 2])}
    b = {t: (p + 1, 4) for t, (p, _n) in a.items()}
    verdict = str(stats.comparisons(["A", "B"], {"A": a, "B": b})[0]["verdict"])
    assert verdict == "B − A = +25 points [+13, +37], p = 0.0039 (Holm), 9 tasks"
    assert f'("{verdict}")' in " ".join(readme.split())


# ------------------------------------------------------------------ a judge against people: Cohen's kappa
@pytest.mark.parametrize("table", [
    [[20, 5], [10, 15]], [[7, 1], [2, 10]], [[3, 2], [1, 0]], [[40, 3], [9, 2]], [[1, 4], [6, 2]],
    [[10, 2, 1], [3, 8, 2], [0, 1, 5]],  # three categories
])
def test_kappa_and_its_standard_error_are_statsmodels(table: list[list[int]]) -> None:
    reference = cohens_kappa(np.array(table))
    got = stats.cohen_kappa(table)
    assert got.n == sum(map(sum, table))
    assert got.kappa == pytest.approx(reference.kappa) and got.se == pytest.approx(reference.std_kappa)
    assert got.agreement == pytest.approx(np.trace(np.array(table)) / got.n)
    # The interval is kappa ± z·SE (the Fleiss-Cohen-Everitt large-sample SE), within [-1, 1].
    assert (got.ci_low, got.ci_high) == (pytest.approx(max(-1.0, reference.kappa_low)),
                                        pytest.approx(min(1.0, reference.kappa_upp)))
    assert (got.agreement_low, got.agreement_high) == pytest.approx(proportion_confint(
        np.trace(np.array(table)), got.n, method="wilson"))


def test_kappa_worked_by_hand_and_at_its_edges() -> None:
    # A judge and people on 6 runs: both pass half; they agree on 4. p_o = 2/3, p_e = 1/2, kappa = 1/3;
    # variance [2·(1/3)·(1 - 1·(2/3))² + (2/3)²·2·(1/6)·(1/2 + 1/2)² - (1/3 - (1/2)(2/3))²] / (6·(1/2)²) = 4/27.
    k = stats.cohen_kappa([[2, 1], [1, 2]])
    assert (k.agreement, k.chance, k.kappa) == (pytest.approx(2 / 3), 0.5, pytest.approx(1 / 3))
    assert k.se == pytest.approx(math.sqrt(4 / 27))
    assert (k.ci_low, k.ci_high) == (pytest.approx(1 / 3 - stats.Z95 * math.sqrt(4 / 27)), 1.0)
    # Perfect agreement on 10 runs: the large-sample SE is 0; the interval is the agreement's Wilson interval
    # (10/10: [0.7225, 1]) carried to kappa with p_e = 1/2 held: [(0.7225 - 0.5) / 0.5, 1] = [0.445, 1].
    perfect = stats.cohen_kappa([[5, 0], [0, 5]])
    assert (perfect.kappa, perfect.se) == (1.0, 0.0)
    assert perfect.ci_low == pytest.approx((stats.wilson(10, 10)[0] - 0.5) / 0.5) and perfect.ci_high == 1.0
    assert perfect.ci_low == pytest.approx(0.44493, abs=1e-4)
    # A judge that passes everything: kappa is 0 whatever people say (SE 0): the carried Wilson interval again.
    lenient = stats.cohen_kappa([[3, 3], [0, 0]])
    assert (lenient.kappa, lenient.se, lenient.chance) == (0.0, 0.0, 0.5)
    low, high = stats.wilson(3, 6)
    assert (lenient.ci_low, lenient.ci_high) == (pytest.approx((low - 0.5) / 0.5), pytest.approx((high - 0.5) / 0.5))
    # Undefined: nothing to compare, or both gave every run the one same verdict.
    assert stats.cohen_kappa([[0, 0], [0, 0]]).kappa is None
    same = stats.cohen_kappa([[8, 0], [0, 0]])
    assert (same.n, same.agreement, same.kappa, same.ci_low) == (8, 1.0, None, None)
    assert [stats.kappa_words(x) for x in (None, -0.1, 0.1, 0.3, 0.5, 0.7, 0.9)] == [
        "undefined", "worse than chance", "slight", "fair", "moderate", "substantial", "almost perfect"]
    with pytest.raises(ValueError, match="square table"):
        stats.cohen_kappa([[1, 2, 3], [4, 5, 6]])

