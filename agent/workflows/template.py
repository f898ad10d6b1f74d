"""Safe templating of workflow values: `{{name}}` in text, URLs, locators; URL patterns to check a replay.

Templating is literal: a value is inserted as is (quotes, backslashes, braces, unicode), never
evaluated and never scanned again; inside URLs it is percent-encoded for its place (path or query).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

from agent.engine.provenance import PAGE_REF_RE
from agent.workflows.document import PLACEHOLDER_RE, URL_PARAMS, Parameter, WorkflowError


def as_text(value: Any) -> str:
    """A parameter value as it is typed: booleans lower-case, whole floats without '.0' only if given so."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_text(template: str, values: dict[str, Any]) -> str:
    """Replace each {{name}} of a known parameter by its value, literally; unknown ones stay as written."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        return as_text(values[name]) if name in values else m.group(0)

    return PLACEHOLDER_RE.sub(sub, template)  # re.sub inserts a function's result without escapes


def render_url(template: str, values: dict[str, Any]) -> str:
    """Render a URL template: a value in the query is form-encoded, in the path or fragment percent-encoded."""
    out: list[str] = []
    pos = 0
    in_query = in_fragment = False
    for m in PLACEHOLDER_RE.finditer(template):
        literal = template[pos:m.start()]
        out.append(literal)
        if "#" in literal:
            in_fragment = True
        elif "?" in literal and not in_fragment:
            in_query = True
        name = m.group(1)
        if name not in values:
            out.append(m.group(0))
        else:
            text = as_text(values[name])
            out.append(quote_plus(text, safe="") if in_query and not in_fragment else quote(text, safe=""))
        pos = m.end()
    out.append(template[pos:])
    return "".join(out)


def render(template: Any, values: dict[str, Any], *, typed: bool = False, url: bool = False) -> Any:
    """Render strings inside any JSON value; `typed`: a string that is only "{{name}}" becomes the typed value."""
    if isinstance(template, str):
        if typed:
            m = PLACEHOLDER_RE.fullmatch(template.strip())
            if m and m.group(1) in values:
                return values[m.group(1)]
        return render_url(template, values) if url else render_text(template, values)
    if isinstance(template, dict):
        return {k: render(v, values, typed=typed, url=url or k == "href") for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, values, typed=typed, url=url) for v in template]
    return template


def coerce_value(param: Parameter, value: Any, *, field: str) -> Any:
    """A parameter value converted to the parameter's type; WorkflowError naming `field` if it cannot be."""
    kind = param.type
    if isinstance(value, (dict, list)) or value is None:
        raise WorkflowError(field, f"must be a single {kind} value, got {type(value).__name__}")
    if kind == "string":
        return as_text(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise WorkflowError(field, f"must be true or false, got {value!r}")
    if isinstance(value, bool):
        raise WorkflowError(field, f"must be {'an' if kind == 'integer' else 'a'} {kind}, got a boolean")
    text = str(value).strip().replace(",", "") if isinstance(value, str) else value
    try:
        number = float(text)
    except (TypeError, ValueError):
        raise WorkflowError(field, f"must be {'an' if kind == 'integer' else 'a'} {kind}, got {value!r}") from None
    if kind == "integer":
        if not number.is_integer():
            raise WorkflowError(field, f"must be a whole number, got {value!r}")
        return int(number)
    whole = isinstance(value, int) or (isinstance(text, str) and re.fullmatch(r"-?\d+", text) is not None)
    return int(number) if whole and number.is_integer() else number


def _looks_like_id(segment: str) -> bool:
    """A path segment that probably names one record (it varies between replays)."""
    return bool(re.search(r"\d", segment)) and len(segment) >= 2 or len(segment) >= 24


def url_pattern(url: str, values: dict[str, str], keys: dict[str, str] | None = None) -> str:
    """The pattern a replay's URL must match: parameter values as {{name}}, other query values and ids as *."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    segments = []
    for seg in parts.path.split("/"):
        decoded = unquote(seg)
        templ = _template_string(decoded, values, url=True)
        if templ != decoded:
            segments.append(_encode_keeping_placeholders(templ, quote))
        elif _looks_like_id(decoded):
            segments.append("*")
        else:
            segments.append(seg)
    query = []
    for key, val in parse_qsl(parts.query, keep_blank_values=True):
        templ = _template_string(val, values, url=True, keys=keys, key=key)
        query.append(f"{quote_plus(key)}={_encode_keeping_placeholders(templ, quote_plus) if templ != val else '*'}")
    return urlunsplit((parts.scheme, parts.netloc, "/".join(segments), "&".join(query), ""))


def url_matches(pattern: str, url: str) -> bool:
    """Whether `url` matches a rendered pattern: same origin and path (* = any segment), pattern's query keys."""
    p, u = urlsplit(pattern), urlsplit(url)
    if p.scheme not in ("http", "https"):
        return pattern.split("#")[0] == url.split("#")[0]
    if (p.scheme, p.netloc) != (u.scheme, u.netloc):
        return False
    psegs, usegs = p.path.split("/"), u.path.split("/")
    if len(psegs) != len(usegs):
        return False
    for ps, us in zip(psegs, usegs):
        if ps != "*" and unquote(ps) != unquote(us):
            return False
    actual: dict[str, list[str]] = {}
    for key, val in parse_qsl(u.query, keep_blank_values=True):
        actual.setdefault(key, []).append(val)
    for key, val in parse_qsl(p.query, keep_blank_values=True):
        if key not in actual:
            return False
        if val != "*" and val not in actual[key]:
            return False
    return True


def _encode_keeping_placeholders(text: str, encode: Any) -> str:
    out, pos = [], 0
    for m in PLACEHOLDER_RE.finditer(text):
        out.append(encode(text[pos:m.start()], safe="") if encode is quote else encode(text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    tail = text[pos:]
    out.append(encode(tail, safe="") if encode is quote else encode(tail))
    return "".join(out)


def _template_url(url: str, values: dict[str, str], keys: dict[str, str] | None = None) -> str:
    """A URL with parameter values (found decoded in path segments and query values) as {{name}}."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not values:
        return url
    segments = []
    for seg in parts.path.split("/"):
        decoded = unquote(seg)
        templ = _template_string(decoded, values, url=True)
        segments.append(_encode_keeping_placeholders(templ, quote) if templ != decoded else seg)
    query_changed = False
    query = []
    for key, val in parse_qsl(parts.query, keep_blank_values=True):
        templ = _template_string(val, values, url=True, keys=keys, key=key)
        query_changed |= templ != val
        query.append(f"{quote_plus(key)}={_encode_keeping_placeholders(templ, quote_plus)}")
    new_query = "&".join(query) if query_changed else parts.query
    return urlunsplit((parts.scheme, parts.netloc, "/".join(segments), new_query, parts.fragment))


def _boundary_ok(text: str, start: int, end: int, value: str) -> bool:
    """The match text[start:end] is not glued to letters or digits (numbers: nor to . , - / #)."""
    glue = ".,-/#:_" if re.fullmatch(r"[\d.,]+", value) else ""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    ok_before = not (before.isalnum() and value[:1].isalnum()) and before not in glue
    ok_after = not (after.isalnum() and value[-1:].isalnum()) and after not in glue
    return ok_before and ok_after


def find_value(text: str, value: str, *, ignore_case: bool) -> list[tuple[int, int]]:
    """Spans where `value` occurs in `text` as a whole word (not inside a longer word or number)."""
    if not value:
        return []
    flags = re.IGNORECASE if ignore_case else 0
    return [(m.start(), m.end()) for m in re.finditer(re.escape(value), text, flags)
            if _boundary_ok(text, m.start(), m.end(), value)]


def _template_string(text: str, values: dict[str, str], *, ignore_case: bool = False, url: bool = False,
                     keys: dict[str, str] | None = None, key: str | None = None) -> str:
    """`text` with each parameter's value (whole, or as a word inside it) replaced by {{name}}.

    Inside a longer string a short number is replaced only between spaces ("2 ×" yes, "usb-c-2m",
    "#2-45" no); inside a URL part a value must stand between spaces ("q=usb-c cable" yes, "id=usb-c-1m"
    no), and a short number must be the whole value of the query key it was recorded from (`keys`).
    """
    if not text or PLACEHOLDER_RE.fullmatch(text) or PAGE_REF_RE.fullmatch(text):
        return text
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[1])):  # longest first: "Ada Lovelace" before "Ada"
        if not value:
            continue
        short_number = len(value) < 3 and value.isdigit()
        whole = (text.lower() == value.lower()) if ignore_case else (text == value)
        if whole:
            if url and short_number and (keys or {}).get(name) != key:
                continue
            return "{{" + name + "}}"
        spans = find_value(text, value, ignore_case=ignore_case)
        if url or short_number:  # only between spaces (or at the ends)
            spans = [(s, e) for s, e in spans
                     if (s == 0 or text[s - 1].isspace()) and (e == len(text) or text[e].isspace())]
            if url and short_number:
                spans = []
        # Never cut through a placeholder written by an earlier (longer) value, nor a page reference.
        taken = [(m.start(), m.end()) for m in PLACEHOLDER_RE.finditer(text)]
        taken += [(m.start(), m.end()) for m in PAGE_REF_RE.finditer(text)]
        spans = [s for s in spans if not any(s[0] < t[1] and t[0] < s[1] for t in taken)]
        for start, end in reversed(spans):
            text = text[:start] + "{{" + name + "}}" + text[end:]
    return text


def _template_any(value: Any, values: dict[str, str], *, ignore_case: bool = False, numbers: bool = True) -> Any:
    if isinstance(value, str):
        return _template_string(value, values, ignore_case=ignore_case)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)) and numbers:
        for name, v in values.items():
            if v == as_text(value):
                return "{{" + name + "}}"  # rendered back to the typed value (render(..., typed=True))
        return value
    if isinstance(value, dict):
        return {k: _template_any(v, values, ignore_case=ignore_case, numbers=numbers) for k, v in value.items()}
    if isinstance(value, list):
        return [_template_any(v, values, ignore_case=ignore_case, numbers=numbers) for v in value]
    return value


def template_params(name: str, params: dict[str, Any], values: dict[str, str], keys: dict[str, str] | None = None
                    ) -> dict[str, Any]:
    """An action's arguments with parameter values as {{name}}: URLs by their parts, other strings by
    words; numbers (indices, tab ids, seconds) never, as they are not values the task chose."""
    out = {}
    for k, v in params.items():
        if k in URL_PARAMS.get(name, ()) and isinstance(v, str):
            out[k] = _template_url(v, values, keys)
        elif name == "done":
            out[k] = v if k == "success" else _template_any(v, values)
        else:
            out[k] = _template_any(v, values, numbers=False)
    return out

