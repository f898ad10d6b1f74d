"""A check suggested from a run's result, for a task made of that run (`{"from_run": ID}`).

A check should pass on any right answer, not only on this wording of it, so it holds the answer's key
values rather than the whole text:

- structured data (an object): a `json` check of its fields that identify the answer: numbers, booleans,
  short strings, short lists of those and nested objects of them; free text over SHORT_TEXT characters
  and timestamps are left out (a right answer reworded, or made at another time, would fail them);
- a number, or a short text whose only number it is ("The total is €43.93"): a `number` check, with a
  tolerance of half the last digit written (43.93: ±0.005);
- text: `contains` of its salient tokens: quoted names, codes (DS-1A2B3C4D), prices and other numbers,
  capitalised names (Sonora, USB-C Cable), at most MAX_TOKENS of them; a short answer with none of those
  ("blue") is its own token; a long one with none gets no check (write one, or use a judge);
- a list, or an object with nothing left for a json check: `contains` of its values as above.

Whatever is suggested is graded against the run's own result with `agent.experiments.checks.grade`; a
token that would not pass is dropped, and a check that would not pass is not suggested, so a suggestion
always passes on the run it came from.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from agent.experiments import checks
from agent.experiments.tasks import Check

SHORT_TEXT = 80  # longer strings are free text: left out of a json check, never a token
SHORT_ANSWER = 60  # a text answer this short with no salient token is its own token
MAX_TOKENS = 6
MAX_LIST = 10  # a json check keeps lists of at most this many scalars
MAX_FIELDS = 20  # ... and at most this many fields of an object (the first ones)
MAX_DEPTH = 4
MAX_SCAN = 4_000  # a text is read for tokens up to here: an answer's key values come early, and the token
# patterns look ahead within a word (a 100,000-character "word" would cost seconds)
MAX_CANDIDATES = 50  # tokens weighed against each other at most (de-duplicating is quadratic)
_QUOTED = re.compile(r'"([^"\n]{1,80})"|“([^”\n]{1,80})”|«([^»\n]{1,80})»|‘([^’\n]{1,80})’'
                     r"|(?<!\w)'([^'\n]{2,80})'(?!\w)")
_CODE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9]+(?:[-_/][A-Za-z0-9]+)*(?![\w-])")
_NUMBER = re.compile(r"(?<![\w.,])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\w|[.,]\d)")
_CURRENCY = re.compile(r"[€$£¥₹]\s?$|(?:EUR|USD|GBP)\s?$")
# A capitalised word, then more, short lowercase joiners allowed between them ("USB-C to USB-C Cable").
_NAME = re.compile(r"(?<![\w-])[A-Z][\w-]*(?:\s+(?:(?:to|of|and|for|the|de|la|le|du|van|von|der|&)\s+)?[A-Z][\w-]*)*")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
# Capitalised only because a sentence starts with them, or too common to identify an answer.
_COMMON = frozenset("""
a about after all also an and answer any are as at be because but by can could did do does done found for
from has have he her here his how i if in is it its just let me my no not now of on one or our result she so
that the their then there these they this those to total was we were what when where which while who why
will with yes you your ok okay sure price cost name product order item please note
""".split())  # noqa: SIM905 (a word list reads better as text)


@dataclass(frozen=True)
class Suggestion:
    """A suggested check (None: none could be suggested) and what a reader should know about it."""

    check: Check | None
    notes: list[str] = field(default_factory=list)


def suggest_check(result: Any, *, response_format: str = "text") -> Suggestion:
    """The check suggested for a right answer `result` (it passes on `result` itself), and notes."""
    value = result
    if isinstance(value, str) and response_format == "json":
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if value is None or value == "" or value == {} or value == []:
        return Suggestion(None, ["the run has no result to check against: write the check"])
    if isinstance(value, bool):
        return _verified(Check.model_validate({"equals": json.dumps(value)}), result, "the result is a boolean")
    if isinstance(value, (int, float)):
        return _verified(_number_check(float(value), _decimals(repr(value))), result, "the result is a number")
    if isinstance(value, dict):
        kept, dropped = _json_fields(value, 0)
        if kept:
            notes = ["a json check of the result's identifying fields"]
            if dropped:
                notes.append(f"left out (free text or timestamps, which a right answer may word or time "
                             f"differently): {', '.join(dropped)}")
            found = _verified(Check.model_validate({"json": kept}), result, *notes)
            if found.check is not None:
                return found
        return _contains(_leaf_tokens(value), result, "contains of the result's values")
    if isinstance(value, list):
        return _contains(_leaf_tokens(value), result, "contains of the values in the result's list")
    return _text(str(value), result)


def _verified(check: Check, result: Any, *notes: str) -> Suggestion:
    """The check if it passes on `result` (it must), else no suggestion, saying why."""
    grade = checks.grade(check, result)
    if grade.passed:
        return Suggestion(check, list(notes))
    return Suggestion(None, [f"no check suggested: the {check.kind} check would not pass on the run itself "
                             f"({grade.detail})"])


def _decimals(written: str) -> int:
    """Digits after the decimal point as written ("43.93": 2; "12": 0; "1e-05": 0)."""
    match = re.fullmatch(r"[-+]?\d[\d,]*\.(\d+)", written.strip())
    return min(len(match.group(1)), 9) if match else 0


def _number_check(number: float, decimals: int) -> Check:
    tolerance = 0.5 * 10 ** -decimals if decimals else 0.0
    return Check.model_validate({"number": number, **({"tolerance": tolerance} if tolerance else {})})


def _text(text: str, result: Any) -> Suggestion:
    """A text answer: a number check when it holds one number only (and is short), else contains of its tokens."""
    numbers = checks.numbers(text)
    if len(numbers) == 1 and len(text) <= SHORT_TEXT and not _CODE.search(text):
        written = numbers[0]
        number = float(written.replace(",", ""))
        if math.isfinite(number):
            found = _verified(_number_check(number, _decimals(written)), result,
                              "the answer's one number, within half its last digit")
            if found.check is not None:
                return found
    tokens = salient_tokens(text)
    if tokens:
        return _contains(tokens, result, "contains of the answer's key values (names, numbers, codes, quoted "
                                         "text), not its wording")
    if len(checks.normalise(text)) <= SHORT_ANSWER:
        return _contains([checks.normalise(text)], result, "contains of the short answer itself (it names no "
                                                            "number, code or capitalised name)")
    return Suggestion(None, ["the answer is free text with no name, number, code or quoted value to check for: "
                             "write the check, or use a judge"])


def _contains(tokens: list[str], result: Any, note: str) -> Suggestion:
    """A contains check of the tokens that pass on `result` (at most MAX_TOKENS), or no suggestion."""
    text = checks.normalise(checks.result_text(result))
    kept = [t for t in _dedupe(tokens[:MAX_CANDIDATES]) if checks.normalise(t) and checks.normalise(t) in text][
        :MAX_TOKENS]
    if not kept:
        return Suggestion(None, ["no value of the result could be checked for: write the check"])
    return _verified(Check.model_validate({"contains": kept}), result, note)


def salient_tokens(text: str) -> list[str]:
    """The values of a text answer worth checking for, in order of importance: quoted text, codes, numbers
    (prices first), capitalised names."""
    text = text[:MAX_SCAN]
    quoted = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(text)]
    codes = [m.group(0) for m in _CODE.finditer(text)]
    numbers = sorted(((m.group(0), bool(_CURRENCY.search(text[:m.start()]))) for m in _NUMBER.finditer(text)),
                     key=lambda n: not n[1])
    names = [name for m in _NAME.finditer(text) if (name := _trim_common(m.group(0)))]
    # A lone digit without a currency identifies nothing ("in 3 days"); a number inside a code is the code's.
    kept = [n for n, price in numbers if (price or len(n.lstrip("+-")) > 1) and not any(n in c for c in codes)]
    found = [t for t in [*quoted, *codes, *kept, *names] if len(t) <= SHORT_TEXT]  # a token is short
    return _dedupe(found[:MAX_CANDIDATES])


def _trim_common(phrase: str) -> str:
    """A capitalised phrase without the common words at its ends ("The Sonora" -> "Sonora"); "" if only those."""
    words = phrase.split()
    while words and words[0].lower() in _COMMON:
        words.pop(0)
    while words and words[-1].lower() in _COMMON:
        words.pop()
    return " ".join(words) if words and len(" ".join(words)) >= 2 else ""


def _dedupe(tokens: list[str]) -> list[str]:
    """Tokens without repeats (normalised), nor ones inside a longer token kept."""
    out: list[str] = []
    for token in sorted(dict.fromkeys(t.strip() for t in tokens if t and t.strip()), key=len, reverse=True):
        if not any(checks.normalise(token) in checks.normalise(kept) for kept in out):
            out.append(token)
    order: dict[str, int] = {}
    for n, token in enumerate(tokens):
        order.setdefault(token.strip(), n)  # a token found twice keeps its first (most important) place
    return sorted(out, key=lambda t: order.get(t, len(order)))


def _json_fields(value: dict[str, Any], depth: int) -> tuple[dict[str, Any], list[str]]:
    """The fields of an object a json check keeps, and the names of those it leaves out."""
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for n, (key, item) in enumerate(value.items()):
        if n >= MAX_FIELDS:
            dropped.append(f"{len(value) - MAX_FIELDS} more fields")
            break
        if isinstance(item, dict) and depth < MAX_DEPTH:
            inner, lost = _json_fields(item, depth + 1)
            if inner:
                kept[key] = inner
            dropped += [f"{key}.{name}" for name in lost]
        elif _scalar_kept(item) or (isinstance(item, list) and len(item) <= MAX_LIST
                                    and all(_scalar_kept(i) for i in item)):
            kept[key] = item
        else:
            dropped.append(key)
    return kept, dropped


def _scalar_kept(item: Any) -> bool:
    if isinstance(item, bool) or item is None:
        return True
    if isinstance(item, (int, float)):
        return math.isfinite(item)
    return isinstance(item, str) and len(item) <= SHORT_TEXT and not _TIMESTAMP.match(item)


def _leaf_tokens(value: Any, depth: int = 0) -> list[str]:
    """The short strings and numbers inside a JSON value, in order (as a result's JSON text writes them)."""
    if depth > MAX_DEPTH:
        return []
    if isinstance(value, dict):
        return [t for v in value.values() for t in _leaf_tokens(v, depth + 1)]
    if isinstance(value, list):
        return [t for v in value for t in _leaf_tokens(v, depth + 1)]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [json.dumps(value)] if math.isfinite(value) else []
    text = str(value)
    if len(text) <= SHORT_TEXT and not _TIMESTAMP.match(text):
        return [text]
    return salient_tokens(text)
