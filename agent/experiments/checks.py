"""Grading a run's result against its task's check, without a human (the judge check asks a model).

`grade(check, result, page=...)` returns a `Grade`: passed or not (None: not gradable here, e.g. a
judge check before the judge answered), a score, and a one-line reason a reader can check by eye.
Text is compared normalised: case, spacing, surrounding quotes and trailing punctuation do not
count; numbers are read the way prices are written ("€5.49", "1,234.50").
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from agent import regexes
from agent.experiments.tasks import Check

MAX_TEXT_CHARS = 100_000  # a result longer than this is graded on its first 100,000 characters
_NUMBER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_EDGE_PUNCT = " \t\n\"'`“”‘’.,;:!?()[]{}"


@dataclass(frozen=True)
class Grade:
    """Pass or fail (None: pending or not gradable automatically), a score, and why."""

    passed: bool | None
    score: float | None
    detail: str


def normalise(text: str) -> str:
    """Lower-case, unicode-folded, single-spaced, without surrounding quotes or punctuation."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(folded.split()).strip(_EDGE_PUNCT)


def result_text(result: Any) -> str:
    """The result as text: a string as is, anything else as compact JSON (bounded)."""
    text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, sort_keys=True)
    return text[:MAX_TEXT_CHARS]


def numbers(text: str) -> list[str]:
    """Every number written in `text`, as written ("1,234.50"), the way a number check reads them."""
    return _NUMBER_RE.findall(text)


def first_number(result: Any) -> float | None:
    """The result's number: itself if numeric, else the first number written in its text."""
    if isinstance(result, bool):
        return None
    if isinstance(result, (int, float)):
        return float(result) if math.isfinite(result) else None
    match = _NUMBER_RE.search(result_text(result))
    return float(match.group(0).replace(",", "")) if match else None


def _same(expected: Any, actual: Any) -> bool:
    """JSON values equal for grading: strings normalised, numbers within 1e-9, objects by subset."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _same(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            _same(e, a) for e, a in zip(expected, actual))
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(expected, actual, rel_tol=0, abs_tol=1e-9)
    if isinstance(expected, str) and isinstance(actual, str):
        return normalise(expected) == normalise(actual)
    return bool(expected == actual)


def _missing(expected: dict[str, Any], actual: Any) -> list[str]:
    if not isinstance(actual, dict):
        return [f"the result is {type(actual).__name__}, not an object"]
    return [f"{k}: expected {json.dumps(v, ensure_ascii=False)}, got "
            f"{json.dumps(actual.get(k), ensure_ascii=False) if k in actual else 'nothing'}"
            for k, v in expected.items() if k not in actual or not _same(v, actual[k])]


def _page(value: Any, error: str | None) -> Grade:
    if error:
        return Grade(False, 0.0, f"the page check failed: {error}")
    if isinstance(value, bool) or value is None:
        return Grade(bool(value), 1.0 if value else 0.0, f"the page check returned {json.dumps(value)}")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return Grade(value > 0, float(value), f"the page check returned {value:g}")
    shown = json.dumps(value, ensure_ascii=False)[:200]
    return Grade(bool(value), 1.0 if value else 0.0, f"the page check returned {shown}")


def grade(check: Check | None, result: Any, *, page_value: Any = None, page_error: str | None = None,
          run_succeeded: bool = True) -> Grade:
    """Grade one run's result (and, for a page check, the value read off its final page)."""
    if check is None:
        return Grade(None, None, "no check: grade it by hand")
    kind = check.kind
    if kind == "page":
        return _page(page_value, page_error)
    if kind == "judge":
        return Grade(None, None, "waiting for the judge")
    if result is None:
        return Grade(False, 0.0, "no result" + ("" if run_succeeded else " (the run failed)"))
    text = normalise(result_text(result))
    if kind == "equals":
        assert check.equals is not None
        ok = text == normalise(check.equals)
        return Grade(ok, float(ok), f"{'equals' if ok else 'differs from'} {check.equals!r}")
    if kind == "contains":
        assert check.contains is not None
        missing = [c for c in check.contains if normalise(c) not in text]
        score = (len(check.contains) - len(missing)) / len(check.contains)
        return Grade(not missing, score, "contains all" if not missing else f"missing {', '.join(map(repr, missing))}")
    if kind == "regex":
        assert check.regex is not None
        try:  # RE2: linear in the text, whatever the pattern (a backtracking one could stall the server)
            found = regexes.search(check.regex, result_text(result), ignore_case=True)
        except regexes.RegexError as exc:  # a check stored before patterns were checked at submission
            return Grade(None, None, f"the regex check cannot run: {exc}")
        return Grade(found is not None, float(found is not None),
                     f"matches /{check.regex}/: {found.group(0)!r}" if found else f"no match for /{check.regex}/")
    if kind == "number":
        assert check.number is not None
        got = first_number(result)
        if got is None:
            return Grade(False, 0.0, "the result holds no number")
        ok = abs(got - check.number) <= check.tolerance + 1e-9
        within = f"within {check.tolerance:g} of {check.number:g}"
        return Grade(ok, float(ok), f"{got:g} {'is' if ok else 'is not'} {within}")
    assert check.json_ is not None
    value = result
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return Grade(False, 0.0, "the result is not JSON")
    problems = _missing(check.json_, value)
    score = (len(check.json_) - len(problems)) / len(check.json_) if check.json_ else 1.0
    return Grade(not problems, score, "holds every field" if not problems else "; ".join(problems)[:500])


JUDGE_PROMPT = """You grade the answer a web agent gave to a task, against a rubric. Be strict and literal.
<task>
{task}
</task>
<rubric>
{rubric}
</rubric>
<answer>
{answer}
</answer>
Reply with one JSON object and nothing else:
{{"pass": true or false, "score": a number from 0 to 1, "reason": "one sentence"}}"""


def judge_messages(check: Check, task_prompt: str, result: Any) -> list[dict[str, str]]:
    """The messages that ask a model to grade `result` against the check's rubric."""
    answer = "(no answer: the run ended without one)" if result is None else result_text(result)[:20_000]
    return [{"role": "user", "content": JUDGE_PROMPT.format(task=task_prompt[:20_000], rubric=check.judge or "",
                                                            answer=answer)}]


def read_judgement(text: str) -> Grade:
    """The judge's reply as a Grade; a reply that is not the asked-for JSON is no verdict (passed None, saying
    so): the judge failed, not the agent (the runner asks again, then leaves the cell ungraded)."""
    match = re.search(r"\{.*\}", text or "", flags=re.S)
    try:
        data = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("pass"), bool):
        return Grade(None, None, f"the judge did not answer with the asked-for JSON: {(text or '')[:200]!r}")
    score = data.get("score")
    score = float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else float(data["pass"])
    return Grade(data["pass"], max(0.0, min(1.0, score)), f"judge: {str(data.get('reason') or '')[:300]}")
