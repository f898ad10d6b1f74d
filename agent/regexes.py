"""Regular expressions users give (a JSON Schema's `pattern` and `patternProperties`, an experiment's
`regex` check) run with RE2, whose matching time is linear in the text whatever the pattern: no
pattern can freeze the server (`^(a+)+$` against "aaa…!" takes seconds per character with Python's
backtracking `re`; RE2 answers at once).

RE2 has no backreferences (`\\1`), lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`), possessive or atomic
groups; `check_regex` refuses such a pattern with a message saying what is unsupported and how to
write it instead (at submission: a 422 naming the field). `\\d`, `\\w`, `\\s` and `\\b` are ASCII, as in
JSON Schema's ECMA-262 dialect.

`linear_validator(cls)` is a jsonschema validator class whose pattern keywords match with RE2:
jsonschema's own keyword functions (pattern, patternProperties, additionalProperties,
unevaluatedProperties and the helpers they call), each rebound to a namespace where `re` is RE2.
Nothing of jsonschema itself is changed; a new jsonschema whose keywords match some other way would
fail tests/test_redos.py, not pass silently.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Iterator
from typing import Any

import re2

__all__ = ["RegexError", "check_regex", "linear_validator", "schema_patterns", "search", "utf8_safe"]

MAX_PROGRAM_BYTES = 64 << 20  # RE2's memory for one pattern; a larger one is refused, never slow

# RE2's complaint -> what a user should know. Matched against the start of RE2's message.
_UNSUPPORTED = (
    ("invalid perl operator: (?=", "lookahead (?=...) is not supported"),
    ("invalid perl operator: (?!", "negative lookahead (?!...) is not supported"),
    ("invalid perl operator: (?<=", "lookbehind (?<=...) is not supported"),
    ("invalid perl operator: (?<!", "negative lookbehind (?<!...) is not supported"),
    ("invalid perl operator: (?>", "atomic groups (?>...) are not supported"),
    ("bad repetition operator: ++", "possessive quantifiers (++) are not supported"),
    ("bad repetition operator: *+", "possessive quantifiers (*+) are not supported"),
    ("bad repetition operator: ?+", "possessive quantifiers (?+) are not supported"),
    ("invalid repetition size", "a repetition count above 1000 is not supported"),
    ("pattern too large", "the pattern is too large"),
)
_BACKREFERENCE = re.compile(r"invalid escape sequence: \\[1-9k]")


class RegexError(ValueError):
    """A pattern RE2 cannot run; the message says what is unsupported and what to write instead."""


def _message(pattern: str, error: str) -> str:
    why = next((text for start, text in _UNSUPPORTED if error.startswith(start)), None)
    if why is None and _BACKREFERENCE.match(error):
        why = "backreferences (\\1, \\k<name>) are not supported"
    shown = pattern if len(pattern) <= 80 else pattern[:79] + "…"
    if why is None:
        return f"{shown!r} is not a valid regular expression ({error}); check its syntax"
    return f"{shown!r}: {why} (patterns run in linear time, with RE2); rewrite it without them"


@functools.lru_cache(maxsize=1024)
def check_regex(pattern: str, *, ignore_case: bool = False) -> re2._Regexp:
    """The pattern compiled for linear-time matching; RegexError naming what is unsupported."""
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_PROGRAM_BYTES
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, options)
    except UnicodeEncodeError:
        raise RegexError(f"{pattern[:80]!r} holds a lone surrogate (half of a UTF-16 pair); send valid text") from None
    except re2.error as exc:
        error = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RegexError(_message(pattern, error)) from None


def utf8_safe(text: str) -> str:
    """`text` as RE2 can read it: lone surrogates (a page's JavaScript can make them) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a pair written as two halves is joined, as a browser shows it
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def search(pattern: str, text: str, *, ignore_case: bool = False) -> re2._Match | None:
    """The first match of `pattern` in `text` (linear time), or None; RegexError if RE2 cannot run it."""
    return check_regex(pattern, ignore_case=ignore_case).search(utf8_safe(text))


# ------------------------------------------------------------------ JSON Schema
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples", "example"})


def schema_patterns(schema: Any) -> Iterator[tuple[str, str]]:
    """(where, pattern) for each `pattern` and `patternProperties` key of a schema: ('/properties/id/pattern', '^a')."""
    stack: list[tuple[Any, str]] = [(schema, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, list):
            stack.extend((item, f"{where}/{i}") for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, item in node.items():
            path = f"{where}/{key}"
            if key == "pattern" and isinstance(item, str):
                yield path, item
            elif key == "patternProperties" and isinstance(item, dict):
                yield from ((f"{path}/{name}", name) for name in item)
                stack.extend((sub, f"{path}/{name}") for name, sub in item.items())
            elif key not in _DATA_KEYWORDS:
                stack.append((item, path))


class _RE2Search:
    """The one part of `re` jsonschema's keywords use, `re.search(pattern, text)`, with RE2."""

    @staticmethod
    def search(pattern: str, string: str) -> re2._Match | None:
        return search(pattern, string)


def _rebind(fn: types.FunctionType, memo: dict[Any, Any]) -> types.FunctionType:
    """`fn` with `re` (and every jsonschema function it calls that uses `re`) bound to RE2."""
    if fn in memo:
        return memo[fn]
    namespace = dict(fn.__globals__)
    new = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    memo[fn] = new
    changed = "re" in fn.__code__.co_names
    if changed:
        namespace["re"] = _RE2Search
    for name in fn.__code__.co_names:
        dep = namespace.get(name)
        if isinstance(dep, types.FunctionType) and dep.__module__.startswith("jsonschema"):
            rebound = _rebind(dep, memo)
            if rebound is not dep:
                namespace[name], changed = rebound, True
    if not changed:
        memo[fn] = fn
        return fn
    return new


@functools.cache
def linear_validator(cls: Any) -> Any:
    """The jsonschema validator class `cls`, its pattern keywords matching with RE2 (linear time)."""
    import jsonschema

    memo: dict[Any, Any] = {}
    keywords = {name: _rebind(fn, memo) for name, fn in cls.VALIDATORS.items() if isinstance(fn, types.FunctionType)}
    changed = {name: fn for name, fn in keywords.items() if fn is not cls.VALIDATORS[name]}
    return jsonschema.validators.extend(cls, changed)
