"""Experiments' building blocks: task files, every check kind, and the statistics against values
worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import json

import pytest

from agent.experiments.checks import first_number, grade, normalise, read_judgement
from agent.experiments.stats import paired, pass_at_k, pass_hat_k, sign_test, wilson
from agent.experiments.tasks import Check, TaskError, load_bundled, parse_jsonl, parse_tasks


# ------------------------------------------------------------------ statistics, by hand
def test_wilson_interval_matches_the_hand_computation() -> None:
    # 7/10, z = 1.959964: denom = 1 + z²/10 = 1.384146; centre = (0.7 + z²/20) / denom = 0.644491;
    # half = z·sqrt(0.7·0.3/10 + z²/400) / denom = 0.247741 -> (0.396751, 0.892232)
    low, high = wilson(7, 10)
    assert (round(low, 4), round(high, 4)) == (0.3968, 0.8922)
    # 0/10: centre = half = (z²/20) / denom -> (0, 2·0.138776) = (0, 0.277533); 10/10 mirrors it
    assert wilson(0, 10) == (0.0, pytest.approx(0.277533, abs=1e-6))
    assert wilson(10, 10) == (pytest.approx(0.722467, abs=1e-6), 1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_pass_at_k_and_pass_hat_k_by_hand() -> None:
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_hat_k(5, 3, 2) == pytest.approx(3 / 10)  # C(3,2)/C(5,2)
    assert pass_at_k(3, 0, 3) == 0.0 and pass_at_k(3, 1, 3) == 1.0  # k = n: "any of the repeats passed"
    assert pass_hat_k(3, 3, 3) == 1.0 and pass_hat_k(3, 2, 3) == 0.0  # k = n: "every repeat passed"
    assert pass_at_k(4, 4, 1) == 1.0 and pass_hat_k(4, 1, 1) == 0.25
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)


def test_sign_test_exact_values() -> None:
    assert sign_test(9, 1) == pytest.approx(2 * (1 + 10) / 2**10)  # 0.021484
    assert sign_test(9, 3) == pytest.approx(2 * (1 + 12 + 66 + 220) / 2**12)  # 0.145996
    assert sign_test(5, 5) == 1.0 and sign_test(0, 0) == 1.0
    assert sign_test(6, 0) == pytest.approx(2 / 64)  # 0.03125


def test_paired_verdicts_in_plain_words() -> None:
    tasks = [f"t{i}" for i in range(12)]
    a = dict.fromkeys(tasks, 0.0)
    b = {t: (1.0 if i < 9 else 0.0) for i, t in enumerate(tasks)}
    b["t9"], a["t9"] = 0.0, 1.0  # one loss; t10, t11 tie at 0
    result = paired("A", "B", a, b, runs=24)
    assert (result.wins, result.losses, result.ties, result.tasks) == (9, 1, 2, 12)
    assert result.significant and result.verdict == "B beats A on 9 of 12 tasks, p = 0.021"
    close = paired("A", "B", dict.fromkeys(tasks, 0.5), {t: (0.6 if i < 4 else 0.5) for i, t in enumerate(tasks)},
                   runs=24)
    assert not close.significant
    assert close.verdict.startswith("no detectable difference between A and B at n = 24 (B better on 4, worse on 0")
    assert paired("A", "B", {"x": 1.0}, {"y": 1.0}, runs=2).verdict == "A and B share no task: nothing to compare"


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
    assert read_judgement("I think it passes").passed is False


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


def test_not_graded_names_the_runs_the_agent_had_no_fair_chance_in() -> None:
    from agent.experiments.report import not_graded
    from agent.log.migrations import OUTCOME_SQL
    from agent.models import INFRASTRUCTURE_REASONS, STOPPED_REASONS

    assert not_graded({"stop_reasons": {"done": 5, "max_steps": 2}}) == "–"  # the agent's own failures are graded
    assert not_graded({"stop_reasons": {"done": 1, "model_error": 2, "cancelled": 1, "missing_key": 2}}) == \
        "5 (missing_key 2, model_error 2, cancelled 1)"
    assert not_graded({"stop_reasons": None}) == "–"
    # The same lists as the run log's outcome (SQL): a reason counted apart there is not graded here.
    assert all(f"'{r}'" in OUTCOME_SQL for r in (*STOPPED_REASONS, *INFRASTRUCTURE_REASONS))
