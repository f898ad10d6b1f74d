"""Cached workflows: the document, safe templating, recording from a run, and parameter values.

A workflow is a versioned JSON document (`"format": "workbench-workflow/1"`) recorded from a
successful run: its parameters and its steps, each step a description and the actions that achieved
it; element actions carry the locators recorded when the agent used them, and each parameter
appears as `{{name}}` wherever its value appeared (typed text, chosen options, URLs, descriptions,
the result). Replaying lives in `agent.workflows.replay` (`replay()` below is a lazy alias).

Templating is literal: a value is inserted as is (quotes, backslashes, braces, unicode), never
evaluated and never scanned again; inside URLs it is percent-encoded for its place (path or query).

Errors: `WorkflowError` (a ValueError with `field` naming the culprit and a message naming the
fix); `NotRecordable` (a WorkflowError) for a run that cannot become a workflow.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from typing import Any, AsyncIterator, Literal
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.models import ActionResult, Event, HistoryItem, LLMCall, RunRequest, RunResponse

__all__ = [
    "FORMAT",
    "Expect",
    "NotRecordable",
    "Parameter",
    "Workflow",
    "WorkflowAction",
    "WorkflowError",
    "WorkflowStep",
    "coerce_value",
    "describe_params",
    "edit_workflow",
    "load_workflow",
    "match_prompt",
    "record_workflow",
    "render",
    "render_url",
    "replay",
    "url_matches",
]

FORMAT = "workbench-workflow/1"
MAX_STEPS = 200
MAX_ACTIONS_PER_STEP = 20
MAX_PARAMETERS = 30
MAX_DOCUMENT_CHARS = 1_000_000
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
# Actions that only read or wait: a replay gains nothing from them.
NOOP_ACTIONS = frozenset({"wait", "dropdown_options", "extract", "find_text", "none"})
URL_PARAMS = {"navigate": ("url",)}  # action params that are URLs (encoded by place when rendered)


class WorkflowError(ValueError):
    """A workflow (or an edit, or parameter values) that cannot be accepted; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotRecordable(WorkflowError):
    """The run cannot become a workflow (it did not succeed, or did nothing replayable)."""


# ------------------------------------------------------------------ the document
class Parameter(BaseModel):
    """A value that changes from one replay to the next."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Appears as {{name}} in the steps")
    type: Literal["string", "number", "integer", "boolean"] = "string"
    description: str = Field(default="", max_length=1000)
    example: str | int | float | bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid parameter name: use letters, digits and _ (not first), e.g. 'product_query'"
            )
        return value


class Expect(BaseModel):
    """What must hold after an action, where that can be checked; strings may hold {{param}}."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, description="URL pattern: * matches any query value or path segment")
    value: str | None = Field(default=None, description="The field holds exactly this after input")
    selected: str | None = Field(default=None, description="The dropdown shows this option after select")


class WorkflowAction(BaseModel):
    """One action as the agent called it, with the element's locators and the check to make after it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    locators: dict[str, Any] | None = None
    expect: Expect | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        from agent.engine.actions import ACTIONS

        if value not in ACTIONS:
            raise ValueError(f"unknown action {value!r}; use one of: {', '.join(ACTIONS)}")
        return value


class WorkflowStep(BaseModel):
    """One step: what it is for, the actions that achieve it, and the page it started on."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(max_length=2000)
    actions: list[WorkflowAction] = Field(min_length=1, max_length=MAX_ACTIONS_PER_STEP)
    url: str | None = Field(default=None, description="The page the step started on when recorded (literal)")
    healed: bool = Field(default=False, description="Re-recorded by the agent during a replay")


class Workflow(BaseModel):
    """A cached workflow: parameters and steps; the last step's `done` is the result template."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["workbench-workflow/1"] = FORMAT
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    prompt: str = Field(min_length=1, description="The task the workflow was recorded from")
    start_url: str | None = None
    result_format: Literal["text", "json"] = "text"
    json_schema: dict[str, Any] | None = None
    parameters: list[Parameter] = Field(default_factory=list, max_length=MAX_PARAMETERS)
    steps: list[WorkflowStep] = Field(min_length=1, max_length=MAX_STEPS)
    source_run_id: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Workflow":
        names = [p.name for p in self.parameters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"parameter names must be unique; {', '.join(dupes)} appear(s) more than once")
        last = self.steps[-1].actions[-1]
        if last.name != "done":
            raise ValueError("the last action of the last step must be `done` (the result template)")
        for n, step in enumerate(self.steps[:-1], 1):
            if any(a.name == "done" for a in step.actions):
                raise ValueError(f"step {n} holds `done`; only the last step may finish the workflow")
        return self

    @property
    def param_names(self) -> set[str]:
        """The declared parameter names."""
        return {p.name for p in self.parameters}


def load_workflow(value: Any, *, strict: bool = False, field: str = "cached_workflow"
                  ) -> tuple[Workflow, int | None, int | None]:
    """(document, id, version) from a document, a stored record {id, version, document} or JSON text.

    `strict` (edits) also refuses a {{name}} that names no parameter; otherwise such text is kept
    literally, as a page may really show "{{x}}". Errors name `field` (the request's or the body's).
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise WorkflowError(field, f"is not valid JSON ({exc.msg}); give a workflow object") from None
    if not isinstance(value, dict):
        raise WorkflowError(field, "must be a workflow object (as returned by GET /api/workflows/{id})")
    wid = version = None
    if isinstance(value.get("document"), dict):
        wid, version = value.get("id"), value.get("version")
        value = value["document"]
    if len(json.dumps(value, default=str)) > MAX_DOCUMENT_CHARS:
        raise WorkflowError(field, f"is larger than {MAX_DOCUMENT_CHARS} characters")
    if value.get("format") not in (None, FORMAT):
        raise WorkflowError(f"{field}.format", f"is {value.get('format')!r}; this version reads {FORMAT!r}")
    try:
        doc = Workflow.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise WorkflowError(f"{field}.{where}" if where else field,
                            err["msg"].removeprefix("Value error, ")) from None
    unknown = sorted(_placeholders_in(doc.model_dump(exclude={"parameters", "prompt"})) - doc.param_names)
    if unknown and strict:
        raise WorkflowError(
            f"{field}.parameters",
            f"the steps use {', '.join('{{' + u + '}}' for u in unknown)} but no such parameter is declared; "
            "declare it under parameters",
        )
    return doc, (int(wid) if isinstance(wid, int) else None), (int(version) if isinstance(version, int) else None)


# ------------------------------------------------------------------ templating
def _placeholders_in(value: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(value, str):
        out.update(PLACEHOLDER_RE.findall(value))
    elif isinstance(value, dict):
        for v in value.values():
            out |= _placeholders_in(v)
    elif isinstance(value, list):
        for v in value:
            out |= _placeholders_in(v)
    return out


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


# ------------------------------------------------------------------ URL patterns
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


# ------------------------------------------------------------------ finding values in strings
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
    if not text or PLACEHOLDER_RE.fullmatch(text):
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
        # Never cut through a placeholder written by an earlier (longer) value.
        taken = [(m.start(), m.end()) for m in PLACEHOLDER_RE.finditer(text)]
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


# ------------------------------------------------------------------ recording
_NAV_RE = re.compile(r"(?:now at|opened|back to|: )\s*(https?://\S+)")


def kept_action(action: ActionResult) -> bool:
    """Whether a recorded action belongs in the workflow: it worked and it changed something."""
    if action.error or action.success is False:
        return False
    if action.name in NOOP_ACTIONS:
        return False
    content = action.extracted_content or ""
    if action.name == "scroll" and "nothing moved" in content:
        return False
    if action.name == "input" and "but the field now holds" in content:
        return False
    return True


def _field_label(locators: dict[str, Any] | None) -> str:
    """A human name for the element an action used: its label, placeholder, name or id."""
    if not locators:
        return ""
    attrs = locators.get("attributes") or {}
    for candidate in (locators.get("name"), attrs.get("aria-label"), attrs.get("placeholder"), attrs.get("name"),
                      attrs.get("id"), locators.get("text")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return ""


def _identifier(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", text))
    name = "_".join(w.lower() for w in words[:4])[:40]
    if name and name[0].isdigit():
        name = "p_" + name
    return name


def _param_name(locators: dict[str, Any] | None, hint: str) -> str:
    """Named from the field: its name attribute when it says something, else its label/placeholder; else the hint."""
    attrs = (locators or {}).get("attributes") or {}
    generic = {"q", "s", "k", "kw", "query_string", "input", "text", "field", "value"}
    name_attr = attrs.get("name") or ""
    if len(name_attr) >= 3 and name_attr.lower() not in generic and _identifier(name_attr):
        return _identifier(name_attr)
    for candidate in (attrs.get("aria-label"), (locators or {}).get("name"), attrs.get("placeholder"), attrs.get("id")):
        if isinstance(candidate, str) and _identifier(candidate):
            return _identifier(candidate)
    if hint:
        return {"q": "query", "s": "query", "k": "query", "kw": "query"}.get(hint.lower(), _identifier(hint))
    return ""


def _infer_type(value: str) -> str:
    """integer/number when the value reads back the same as a number ("007", "5.50", phone numbers stay strings)."""
    if re.fullmatch(r"-?(0|[1-9]\d{0,8})", value):
        return "integer"
    if re.fullmatch(r"-?(0|[1-9]\d{0,8})\.\d{0,5}[1-9]", value):
        return "number"
    return "string"


def _example(value: str, kind: str) -> Any:
    return int(value) if kind == "integer" else float(value) if kind == "number" else value


def _candidates(history: list[tuple[HistoryItem, list[ActionResult]]]) -> list[tuple[str, str, str, str]]:
    """(value, name hint, description, URL query key or "") of every value the agent typed, chose or navigated with."""
    out = []
    for _item, actions in history:
        for a in actions:
            p = a.params
            if a.name == "input" and isinstance(p.get("text"), str):
                label = _field_label(a.locators)
                out.append((p["text"], _param_name(a.locators, ""), f"typed into the {label!r} field" if label
                            else "typed into a form field", ""))
            elif a.name == "select_dropdown" and isinstance(p.get("text"), str):
                label = _field_label(a.locators)
                out.append((p["text"], _param_name(a.locators, ""), f"option chosen in {label!r}" if label
                            else "option chosen in a dropdown", ""))
            elif a.name == "search" and isinstance(p.get("query"), str):
                out.append((p["query"], "query", "web search query", ""))
            elif a.name == "navigate" and isinstance(p.get("url"), str):
                for key, val in parse_qsl(urlsplit(p["url"]).query, keep_blank_values=False):
                    out.append((val, _param_name(None, key), f"value of {key!r} in the URL", key))
    return out


def detect_parameters(
    prompt: str, history: list[tuple[HistoryItem, list[ActionResult]]]
) -> tuple[list[Parameter], dict[str, str]]:
    """Parameters found without a model (typed/selected/navigated values that appear in the prompt),
    and for those found in a URL, the query key they came from."""
    params: list[Parameter] = []
    keys: dict[str, str] = {}
    seen: set[str] = set()
    used_names: set[str] = set()
    literal = set(PLACEHOLDER_RE.findall(prompt))  # never name a parameter after a literal {{x}} in the text
    for value, hint, description, url_key in _candidates(history):
        value = value.strip()
        key = value.lower()
        if not value or key in seen or len(value) > 500 or not find_value(prompt, value, ignore_case=True):
            continue
        seen.add(key)
        base = hint or f"param{len(params) + 1}"
        name, n = base, 2
        while name in used_names or name in literal:
            name, n = f"{base}_{n}", n + 1
        used_names.add(name)
        kind = _infer_type(value)
        params.append(Parameter(name=name, type=kind, description=description, example=_example(value, kind)))
        if url_key:
            keys[name] = url_key
        if len(params) >= MAX_PARAMETERS:
            break
    return params, keys


def action_expect(action: ActionResult, params: dict[str, Any], values: dict[str, str],
                   keys: dict[str, str] | None = None) -> Expect | None:
    text = params.get("text")
    if action.name == "input" and params.get("clear", True) and isinstance(text, str):
        return Expect(value=text)
    if action.name == "select_dropdown" and isinstance(text, str):
        return Expect(selected=text)
    m = _NAV_RE.search(action.extracted_content or "")
    if action.name in ("navigate", "click", "go_back") and m:
        return Expect(url=url_pattern(m.group(1).rstrip(";,"), values, keys))
    return None


def template_locators(locators: dict[str, Any] | None, values: dict[str, str],
                       keys: dict[str, str] | None = None) -> dict[str, Any] | None:
    """Locators with a parameter value as {{name}} where it is the element's whole name/text, or in its href."""
    if not locators:
        return locators
    out = copy.deepcopy(locators)
    for key in ("name", "text"):
        if isinstance(out.get(key), str):
            for pname, value in values.items():
                if out[key].strip().lower() == value.lower():
                    out[key] = "{{" + pname + "}}"
    attrs = out.get("attributes")
    if isinstance(attrs, dict) and isinstance(attrs.get("href"), str):
        attrs["href"] = _template_url(attrs["href"], values, keys)
    return out


def save_run_as_workflow(
    store: Any, run_id: int, request: RunRequest, response: RunResponse, *, name: str | None = None
) -> tuple[int, int, dict[str, Any]]:
    """Record a successful run, save it as a new workflow and attach it to the run's task: (id, version, document)."""
    document = record_workflow(request, response.model_copy(update={"task_run_id": run_id}), name=name)
    workflow_id, version = store.save_workflow(document, source_run_id=run_id)
    if response.task_id is not None:
        store.set_task_workflow(response.task_id, workflow_id)
    return workflow_id, version, document


def record_workflow(request: RunRequest, response: RunResponse, *, name: str | None = None) -> dict[str, Any]:
    """A workflow document from a successful run's history (no model call); NotRecordable otherwise."""
    if response.status != "success" or not response.is_successful:
        reason = f": {response.error}" if response.error else ""
        raise NotRecordable(
            "task_run_id",
            f"run {response.task_run_id or ''} ended with status {response.status!r}{reason}; "
            "only a successful run can be saved as a workflow".replace("run  ", "the run "),
        )
    kept = [(item, [a for a in item.actions if kept_action(a) and not a.is_done]) for item in response.history]
    done_action: ActionResult | None = None
    done_item: HistoryItem | None = None
    for item in response.history:
        for a in item.actions:
            if a.is_done and a.name == "done" and not a.error:
                done_action, done_item = a, item
    if done_action is None or done_item is None:
        raise NotRecordable("task_run_id", "the run has no successful `done` action to take the result from")

    parameters, keys = detect_parameters(request.prompt, kept)
    values = {p.name: as_text(p.example) for p in parameters}
    steps: list[WorkflowStep] = []
    for i, (item, actions) in enumerate(kept):
        if not actions:
            continue
        next_url = next((later.url for later, _ in kept[i + 1:] if later.url), None)
        step_actions = []
        for j, a in enumerate(actions):
            params = template_params(a.name, a.params, values, keys)
            expect = action_expect(a, params, values, keys)
            if j == len(actions) - 1 and next_url and (expect is None or expect.url is None):
                expect = (expect or Expect()).model_copy(update={"url": url_pattern(next_url, values, keys)})
            step_actions.append(WorkflowAction(name=a.name, params=params,
                                               locators=template_locators(a.locators, values, keys), expect=expect))
        description = item.description.strip() or ", ".join(a.name for a in actions)
        steps.append(WorkflowStep(description=_template_string(description, values, ignore_case=True)[:2000],
                                  actions=step_actions, url=item.url))
    structured = "data" in done_action.params
    done_params = {k: v for k, v in done_action.params.items() if k in ("text", "data", "success")}
    done_params["success"] = True
    if not structured and isinstance(done_action.extracted_content, str) and "text" not in done_params:
        done_params["text"] = done_action.extracted_content
    done_params = template_params("done", done_params, values, keys)
    done_description = done_item.description.strip() or "Return the result"
    steps.append(WorkflowStep(
        description=_template_string(done_description, values, ignore_case=True)[:2000],
        actions=[WorkflowAction(name="done", params=done_params)], url=done_item.url,
    ))
    doc = Workflow(
        name=(name or _default_name(request.prompt))[:200],
        prompt=request.prompt,
        start_url=request.start_url,
        result_format="json" if structured else "text",
        json_schema=request.json_schema,
        parameters=parameters,
        steps=steps,
        source_run_id=response.task_run_id,
    )
    return doc.model_dump(mode="json")


def _default_name(prompt: str) -> str:
    words = prompt.split()
    return " ".join(words[:10]) + (" …" if len(words) > 10 else "")


# ------------------------------------------------------------------ parameter values for a new prompt
def _prompt_spans(prompt: str, params: list[Parameter]) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, name) of each parameter's example in the recorded prompt (first match)."""
    spans: list[tuple[int, int, str]] = []
    for p in sorted(params, key=lambda q: -len(as_text(q.example)) if q.example is not None else 0):
        if p.example is None:
            continue
        for start, end in find_value(prompt, as_text(p.example), ignore_case=True):
            if not any(start < e and s < end for s, e, _ in spans):
                spans.append((start, end, p.name))
                break
    return sorted(spans)


def match_prompt(recorded: str, params: list[Parameter], new: str) -> dict[str, str]:
    """Values for the parameters read off `new` by aligning it with the recorded prompt (no model).

    First a whole-prompt pattern (the recorded text around each value must be there, spacing and
    case aside), then the same pattern found inside a longer prompt (the recorded ending optional);
    else a word alignment (difflib) that maps each value's words onto the words that replaced them.
    Parameters that cannot be placed are left out of the answer.
    """
    spans = _prompt_spans(recorded, params)
    if not spans:
        return {}
    if " ".join(recorded.split()).lower() == " ".join(new.split()).lower():
        return {name: recorded[s:e] for s, e, name in spans}
    pattern, pos = [], 0
    for i, (start, end, name) in enumerate(spans):
        pattern.append(_loose(recorded[pos:start]))
        pattern.append(f"(?P<g{i}>.+?)")
        pos = end
    head, body, tail = pattern[0], "".join(pattern[1:]), _loose(recorded[pos:])
    flags = re.IGNORECASE | re.DOTALL
    text = new.strip()
    m = re.fullmatch(head + body + tail, text, flags) or re.fullmatch(head + body + tail, text.rstrip(".!? "), flags)
    if m is None and recorded[:spans[0][0]].strip():
        # Words added before the recorded text ("Could you ...") or the recorded ending dropped:
        # the text before each value still frames it; the last one runs to the end if need be.
        m = re.search(head + body + f"(?:{tail})?" + r"[\s.!?]*$", text, flags)
    if m is not None:
        found = {name: m.group(f"g{i}").strip() for i, (_s, _e, name) in enumerate(spans)}
        return {k: v for k, v in found.items() if v}
    return _align_words(recorded, spans, new)


def _loose(literal: str) -> str:
    """A regex for literal text that tolerates different spacing."""
    parts = literal.strip().split()
    body = r"\s+".join(re.escape(p) for p in parts)
    lead = r"\s*" if literal[:1].isspace() or not literal else ""
    trail = r"\s*" if literal[-1:].isspace() or not literal else ""
    if not parts:
        return r"\s*"
    return lead + body + trail


_TOKEN_RE = re.compile(r"\S+")


def _align_words(recorded: str, spans: list[tuple[int, int, str]], new: str) -> dict[str, str]:
    old_tokens = [(m.start(), m.end(), m.group(0)) for m in _TOKEN_RE.finditer(recorded)]
    new_tokens = [(m.start(), m.end(), m.group(0)) for m in _TOKEN_RE.finditer(new)]
    norm = lambda t: re.sub(r"^[^\w]+|[^\w]+$", "", t.lower())  # noqa: E731 - tiny key function
    matcher = difflib.SequenceMatcher(a=[norm(t[2]) for t in old_tokens], b=[norm(t[2]) for t in new_tokens],
                                      autojunk=False)
    found: dict[str, str] = {}
    for start, end, name in spans:
        covered = [i for i, t in enumerate(old_tokens) if t[0] < end and start < t[1]]
        if not covered:
            continue
        lo, hi = covered[0], covered[-1] + 1
        for tag, a0, a1, b0, b1 in matcher.get_opcodes():
            if a0 <= lo and hi <= a1:
                if tag == "equal":
                    found[name] = recorded[start:end]
                elif tag == "replace" and (a0, a1) == (lo, hi) and b1 > b0:
                    text = new[new_tokens[b0][0]:new_tokens[b1 - 1][1]]
                    found[name] = text.strip(" ,.;:!?\"'()[]")
                elif tag == "replace" and a1 - a0 == b1 - b0:  # several values side by side: word for word
                    c0, c1 = b0 + (lo - a0), b0 + (hi - a0)
                    text = new[new_tokens[c0][0]:new_tokens[c1 - 1][1]]
                    found[name] = text.strip(" ,.;:!?\"'()[]")
                break
    return {k: v for k, v in found.items() if v}


PARAMS_PROMPT = """A recorded web task is replayed with new parameter values. Read the values from the new task.
Recorded task: {recorded}
Parameters (name, type, what it is, value in the recorded task):
{params}
New task: {new}
Answer with one JSON object mapping each parameter name to its value in the new task, nothing else."""


def params_messages(doc: Workflow, new_prompt: str) -> list[dict[str, Any]]:
    """The one message asking a model for parameter values as JSON."""
    lines = "\n".join(f"- {p.name} ({p.type}): {p.description or '-'}; recorded value: {json.dumps(p.example, ensure_ascii=False)}"
                      for p in doc.parameters)
    return [{"role": "user", "content": PARAMS_PROMPT.format(recorded=doc.prompt, params=lines, new=new_prompt)}]


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a model's answer (bare, or inside a ``` block)."""
    text = text.strip()
    candidates = [text]
    fence = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    if fence:
        candidates.insert(0, fence.group(1))
    brace = text.find("{")
    if brace >= 0:
        candidates.append(text[brace:text.rfind("}") + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None


# ------------------------------------------------------------------ editing
def rename_parameter(document: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The document with every {{old}} (steps, result, descriptions) written as {{new}}."""

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return PLACEHOLDER_RE.sub(lambda m: "{{" + new + "}}" if m.group(1) == old else m.group(0), value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    out = dict(document)
    out["steps"] = walk(document.get("steps", []))
    return out


def edit_workflow(
    document: dict[str, Any],
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A new document with the workflow renamed/described and parameters renamed/retyped/described.

    `parameters` maps a current parameter name to changes: {"name", "description", "type", "example"}.
    """
    doc, _, _ = load_workflow(document, field="document")
    out = doc.model_dump(mode="json")
    if name is not None:
        if not name.strip():
            raise WorkflowError("name", "must not be empty; give the workflow a short name")
        out["name"] = name.strip()[:200]
    if description is not None:
        out["description"] = description[:2000]
    current = {p["name"]: p for p in out["parameters"]}
    renames: list[tuple[str, str]] = []
    for old, change in (parameters or {}).items():
        field = f"parameters.{old}"
        if old not in current:
            raise WorkflowError(field, f"no such parameter; the workflow has: {', '.join(current) or '(none)'}")
        if not isinstance(change, dict):
            raise WorkflowError(field, 'must be an object such as {"name": "product", "description": "..."}')
        unknown = set(change) - {"name", "description", "type", "example"}
        if unknown:
            raise WorkflowError(f"{field}.{sorted(unknown)[0]}", "unknown key; use name, description, type or example")
        param = dict(current[old])
        for key in ("description", "type", "example"):
            if key in change:
                param[key] = change[key]
        if "name" in change and change["name"] != old:
            new = change["name"]
            if not isinstance(new, str) or not NAME_RE.match(new):
                raise WorkflowError(f"{field}.name", f"{new!r} is not a valid name: letters, digits and _, e.g. 'product'")
            renames.append((old, new))
            param["name"] = new
        try:
            Parameter.model_validate(param)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise WorkflowError(f"{field}.{'.'.join(map(str, err['loc']))}", err["msg"].removeprefix("Value error, ")) from None
        current[old] = param
    out["parameters"] = list(current.values())
    final_names = [p["name"] for p in out["parameters"]]
    dupes = sorted({n for n in final_names if final_names.count(n) > 1})
    if dupes:
        raise WorkflowError("parameters", f"two parameters would be called {dupes[0]!r}; pick different names")
    # Rename through temporary names so that swapping two names (a<->b) works.
    for i, (old, _new) in enumerate(renames):
        out = rename_parameter(out, old, f"__renaming_{i}__")
    for i, (_old, new) in enumerate(renames):
        out = rename_parameter(out, f"__renaming_{i}__", new)
    doc, _, _ = load_workflow(out, strict=True, field="document")
    return doc.model_dump(mode="json")


DESCRIBE_PROMPT = """These are the parameters of a recorded web task. Give each a short snake_case name and a
one-line description of what it is.
Task: {prompt}
Parameters (current name: recorded value, where it was used):
{params}
Answer with one JSON object: {{"<current name>": {{"name": "...", "description": "..."}}, ...}}, nothing else."""


async def describe_params(llm: Any, document: dict[str, Any]) -> tuple[dict[str, Any], LLMCall]:
    """Let a model name and describe the parameters (one call); returns the new document and the call."""
    doc, _, _ = load_workflow(document)
    lines = "\n".join(f"- {p.name}: {json.dumps(p.example, ensure_ascii=False)} ({p.description})" for p in doc.parameters)
    reply = await llm.complete([{"role": "user", "content": DESCRIBE_PROMPT.format(prompt=doc.prompt, params=lines)}],
                               None, purpose="params")
    answer = parse_json_object(reply.text) or {}
    changes: dict[str, dict[str, Any]] = {}
    taken = set()
    for p in doc.parameters:
        proposal = answer.get(p.name)
        if not isinstance(proposal, dict):
            continue
        change: dict[str, Any] = {}
        new = _identifier(str(proposal.get("name", "")))
        if new and NAME_RE.match(new) and new not in taken and new not in (doc.param_names - {p.name}):
            change["name"] = new
            taken.add(new)
        if isinstance(proposal.get("description"), str):
            change["description"] = proposal["description"][:1000]
        if change:
            changes[p.name] = change
    return edit_workflow(doc.model_dump(mode="json"), parameters=changes), reply.call


# ------------------------------------------------------------------ replay (lazy alias)
def replay(request: RunRequest, workflow: dict[str, Any], **kwargs: Any) -> AsyncIterator[Event]:
    """Replay a workflow for `request`; see agent.workflows.replay.replay."""
    from agent.workflows.replay import replay as _replay

    return _replay(request, workflow, **kwargs)
