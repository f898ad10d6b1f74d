"""Every spelling of a secret value, as one linear-time regular expression (RE2).

A value typed into a page comes back in many spellings: as typed; percent-encoded by the browser
(a form writes `~` as `%7E` and keeps `*`, a URL bar keeps `~`), in either hex case, with `+` for
a space, encoded twice (`%257E`, a URL carried in another URL's query); as an HTML named entity
(`&amp;`, `&eacute;`, with or without `;` as browsers accept) or a numeric reference (`&#126;`,
`&#x7e;`, `&#0126`); JSON's `\\u007e` in either case (a surrogate pair `\\ud83d\\ude00` for an
emoji), `\\"`, `\\\\`, `\\/`; Python's `\\'`, `\\x7e` and `\\U0001f600`; and any mix of these, one character at a
time. Spacing may be collapsed (a page shows "a  b" as "a b") and a long value may be clipped to a
prefix and "…" (the observation clips long attributes).

`value_pattern(value)` is one group per character, each the alternation of that character's
spellings; `Scrubber(marks)` joins the patterns of several values (longest first, so a value
holding another is replaced whole) and compiles them with RE2, whose matching time is linear in
the text whatever it holds (Python's backtracking `re` could be made slow by a page's text).
`value_pattern(value, flavor="js")` writes the same pattern for a browser's RegExp (the screenshot
mask, agent.engine.mask). A page that transforms a value before showing it (reverses it, splits it
across elements, draws it on a canvas) is beyond any spelling: see docs/security.md.
"""

from __future__ import annotations

import functools
import html.entities
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import re2

from agent.regexes import utf8_safe

__all__ = ["CLIP_MARK", "MAX_CLIPPED_CHARS", "MIN_CLIPPED_CHARS", "Flavor", "Scrubber", "value_pattern"]

Flavor = Literal["re2", "js"]
CLIP_MARK = "…"  # what the observation writes after a clipped value
MIN_CLIPPED_CHARS = 3  # a clipped prefix shorter than this is left (it would hide common words)
MAX_CLIPPED_CHARS = 128  # the observation clips at 120 characters at most (agent/engine/dom.js)
MAX_PATTERN_CHARS = 2_000_000  # above this, values are compiled one by one (RE2's memory per program)
RE2_MAX_MEM = 256 << 20

_WHITESPACE = " \t\n\r\f\xa0"
_JSON_SHORT = {'"': '"', "\\": "\\", "/": "/", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}
_PY_SHORT = {"'": "'"}  # Python's repr() writes \' inside a '...' string


@functools.cache
def _entities() -> dict[str, tuple[str, ...]]:
    """Character -> the HTML5 named references that write it ("amp;", "amp", "AMP;", ...)."""
    out: dict[str, list[str]] = {}
    for name, text in html.entities.html5.items():
        if len(text) == 1:
            out.setdefault(text, []).append(name)
    return {ch: tuple(sorted(names, key=lambda n: (-len(n), n))) for ch, names in out.items()}


def _lit(ch: str, flavor: Flavor) -> str:
    """One character as a regex literal in `flavor` (ASCII letters and digits as is, the rest escaped)."""
    cp = ord(ch)
    if ch.isascii() and ch.isalnum():
        return ch
    if cp < 0x80:
        return f"\\x{cp:02x}"
    if flavor == "re2":
        return f"\\x{{{cp:x}}}"
    if cp <= 0xFFFF:
        return f"\\u{cp:04x}"
    high, low = _surrogates(cp)
    return f"\\u{high:04x}\\u{low:04x}"  # a JS string holds an emoji as two UTF-16 units


def _surrogates(cp: int) -> tuple[int, int]:
    cp -= 0x10000
    return 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)


def _hex(n: int, width: int) -> str:
    """`n` as hex digits of `width` (or more), each letter in either case."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{n:0{width}x}")


def _percent(data: bytes) -> str:
    """Bytes percent-encoded, each `%` possibly encoded again (`%257E`: a URL inside a URL)."""
    return "".join(f"%(?:25)*{_hex(b, 2)}" for b in data)


def _alternatives(ch: str, flavor: Flavor) -> list[str]:
    """Every spelling of one character, as regex fragments."""
    cp = ord(ch)
    html_forms = [f"&{_text(name, flavor)}" for name in _entities().get(ch, ())]
    html_forms += [f"&#0*{cp};?", f"&#[xX]0*{_hex(cp, 1)};?"]
    alts = [_lit(ch, flavor), _percent(ch.encode("utf-8")), *html_forms]
    if ch == " ":
        alts += [_lit("+", flavor), "%(?:25)*2[bB]"]  # a form's space, and that encoded again
    if cp <= 0xFFFF:
        alts.append(f"\\\\u{_hex(cp, 4)}")
    else:
        high, low = _surrogates(cp)
        alts.append(f"\\\\u{_hex(high, 4)}\\\\u{_hex(low, 4)}")
    if cp < 0x100:
        alts.append(f"\\\\x{_hex(cp, 2)}")
    if cp > 0x7F:  # Python's ascii() and repr() of an unprintable character
        alts.append(f"\\\\U{_hex(cp, 8)}")
    short = _JSON_SHORT.get(ch) or _PY_SHORT.get(ch)
    if short is not None:
        alts.append(f"\\\\{_lit(short, flavor)}")
        if ch in "\"'":  # JSON then HTML: \" written \&quot;
            alts += [f"\\\\{form}" for form in html_forms]
    return alts


def _text(text: str, flavor: Flavor) -> str:
    return "".join(_lit(c, flavor) for c in text)


@functools.lru_cache(maxsize=4096)
def _char(ch: str, flavor: Flavor) -> str:
    return "(?:" + "|".join(_alternatives(ch, flavor)) + ")"


@functools.lru_cache(maxsize=16)
def _space(flavor: Flavor) -> str:
    return "(?:" + "|".join(alt for ch in _WHITESPACE for alt in _alternatives(ch, flavor)) + ")"


def _groups(value: str, flavor: Flavor) -> list[str]:
    """One fragment per shown character: a run of spacing inside the value is one `space+` fragment.

    A page's DOM keeps the spaces as typed (only rendering collapses them), so the browser's flavour
    matches one space per space: without the `+`, its backtracking engine cannot be made slow by a page.
    """
    if flavor == "js":
        return [_space(flavor) if ch in _WHITESPACE else _char(ch, flavor) for ch in value]
    out: list[str] = []
    for ch in value:
        if ch in _WHITESPACE:
            if not out or out[-1] != _space(flavor) + "+":
                out.append(_space(flavor) + "+")
        else:
            out.append(_char(ch, flavor))
    return out


def value_pattern(value: str, *, flavor: Flavor = "re2") -> str:
    """A regex matching `value` in every spelling (see the module doc), or its clipped prefix and '…'."""
    if flavor == "re2":
        value = utf8_safe(value)  # as the texts it is matched against
    core = value.strip(_WHITESPACE)
    if len(core) < MIN_CLIPPED_CHARS:  # mostly spacing: only the value exactly, in every spelling
        return "".join(_char(ch, flavor) for ch in value)
    groups = _groups(core, flavor)
    full = "".join(groups)
    if len(groups) <= MIN_CLIPPED_CHARS:
        return full
    # A clipped prefix: the first MIN_CLIPPED_CHARS characters, then each further one optional in turn.
    head, tail = groups[:MIN_CLIPPED_CHARS], groups[MIN_CLIPPED_CHARS:min(len(groups) - 1, MAX_CLIPPED_CHARS)]
    nested = ""
    for group in reversed(tail):
        nested = f"(?:{group}{nested})?"
    clipped = "".join(head) + nested + _char(CLIP_MARK, flavor)
    return f"(?:{full}|{clipped})"


class Scrubber:
    """Replaces every spelling of some values with a mark per value (one RE2 program, linear time)."""

    def __init__(self, marks: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        pairs = list(marks.items()) if isinstance(marks, Mapping) else list(marks)
        # Longest first: RE2 takes the first alternative that matches, so a value holding another wins.
        pairs = sorted({v: m for v, m in pairs if v}.items(), key=lambda kv: len(kv[0]), reverse=True)
        self.marks = [mark for _value, mark in pairs]
        patterns = [value_pattern(value) for value, _mark in pairs]
        self._programs: list[tuple[re2._Regexp, list[str]]] = []
        if not patterns:
            return
        if sum(map(len, patterns)) <= MAX_PATTERN_CHARS:
            self._programs = [(_compile("|".join(f"({p})" for p in patterns)), self.marks)]
        else:  # many long values: one program each, still linear in the text
            self._programs = [(_compile(f"({p})"), [m]) for p, m in zip(patterns, self.marks, strict=True)]

    def __bool__(self) -> bool:
        return bool(self._programs)

    def sub(self, text: str) -> str:
        """`text` with each spelling of a value replaced by its mark (a lone surrogate becomes U+FFFD)."""
        text = utf8_safe(text)
        for program, marks in self._programs:
            text = program.sub(_replacer(marks), text)
        return text



def _replacer(marks: list[str]) -> Callable[[re2._Match], str]:
    def mark(match: re2._Match) -> str:
        return marks[(match.lastindex or 1) - 1]
    return mark


def _compile(pattern: str) -> re2._Regexp:
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    options.log_errors = False
    return re2.compile(pattern, options)
