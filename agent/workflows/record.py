"""Recording a workflow from a successful run's history, without a model.

A value the agent typed that appears literally in the prompt becomes a parameter (`{{name}}`
wherever it appears); element actions keep their recorded locators; each action gets the check a
replay makes after it (value typed, option chosen, URL reached).
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from agent.engine.actions import traits_of
from agent.engine.provenance import PAGE_REF_RE
from agent.engine.secrets import SECRET_RE
from agent.models import ActionResult, HistoryItem, RunRequest, RunResponse
from agent.workflows.document import (
    MAX_PARAMETERS,
    PLACEHOLDER_RE,
    Expect,
    NotRecordable,
    Parameter,
    Workflow,
    WorkflowAction,
    WorkflowStep,
)
from agent.workflows.template import _template_string, _template_url, as_text, find_value, template_params, url_pattern

_NAV_RE = re.compile(r"(?:now at|opened|back to|: )\s*(https?://\S+)")


def kept_action(action: ActionResult) -> bool:
    """Whether a recorded action belongs in the workflow: it worked and it changed something (its traits say)."""
    if action.error or action.success is False:
        return False
    traits = traits_of(action.name)
    content = action.extracted_content or ""
    return not traits.replay_noop and not any(words in content for words in traits.void_when)


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


def _infer_type(value: str) -> Literal["string", "number", "integer"]:
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
            traits = traits_of(a.name)
            value = a.params.get(traits.value) if traits.value else None
            if isinstance(value, str) and traits.value_kind == "query":
                out.append((value, "query", "web search query", ""))
            elif isinstance(value, str):
                label = _field_label(a.locators)
                if traits.value_kind == "typed":
                    said = f"typed into the {label!r} field" if label else "typed into a form field"
                else:
                    said = f"option chosen in {label!r}" if label else "option chosen in a dropdown"
                out.append((value, _param_name(a.locators, ""), said, ""))
            for url in (a.params.get(arg) for arg in traits.url_args):
                if isinstance(url, str):
                    for key, val in parse_qsl(urlsplit(url).query, keep_blank_values=False):
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
        if SECRET_RE.search(value):  # a <secret>name</secret> stays as it is: each replay gives the value again
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
    """The check a replay makes after the action (its traits say which): the value typed, the option chosen,
    the page reached; None when there is nothing to check."""
    traits = traits_of(action.name)
    text = params.get(traits.value) if traits.value else None
    if traits.value_kind == "typed" and params.get("clear", True) and isinstance(text, str):
        return Expect(value=text)
    if traits.value_kind == "option" and isinstance(text, str):
        return Expect(selected=text)
    m = _NAV_RE.search(action.extracted_content or "")
    if traits.checks_url and m:
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


def result_action(done: ActionResult, values: dict[str, str], keys: dict[str, str] | None = None, *,
                  structured: bool) -> WorkflowAction:
    """The workflow's `done` from a run's successful `done`: parameter values as {{name}}, page values as
    {{page:N}} references (with how to read them again), the rest as the agent wrote it.

    A page value that is exactly a parameter's value becomes that parameter. Without traced page
    values (a result the run could not trace) the literal result is kept, the old way.
    """
    key = "data" if structured else "text"
    traced = (done.locators or {}) if isinstance(done.locators, dict) else {}
    page_values = traced.get("page_values")
    if "template" in traced and isinstance(page_values, list):
        items = copy.deepcopy(traced.get("items")) if isinstance(traced.get("items"), list) else []
        template, page_values = bind_parameters(traced["template"], page_values, values, items)
        params = template_params("done", {key: template, "success": True}, values, keys)
        found = {"page_values": page_values, **({"items": items} if items else {})}
        return WorkflowAction(name="done", params=params, locators=found)
    params = {k: v for k, v in done.params.items() if k in ("text", "data")}
    if not structured and isinstance(done.extracted_content, str) and "text" not in params:
        params["text"] = done.extracted_content
    return WorkflowAction(name="done", params=template_params("done", {**params, "success": True}, values, keys))


def bind_parameters(template: Any, page_values: list[dict[str, Any]], values: dict[str, str],
                    items: list[dict[str, Any]] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """Page references whose recorded text is a parameter's value become that parameter; the page values
    still referenced are renumbered in order. A parameter's value read from an item of a list (the product
    the task named) becomes that item's key in `items`: a replay reads the item showing the new value."""
    by_value = {v: name for name, v in values.items() if v}
    renumber: dict[int, str] = {}
    kept: list[dict[str, Any]] = []
    for n, value in enumerate(page_values):
        name = by_value.get(str(value.get("example")))
        if name is not None:
            renumber[n] = "{{" + name + "}}"
            place = value.get("item")
            if items and isinstance(place, dict) and place.get("group") in range(len(items)):
                items[place["group"]].setdefault("keys", []).append(
                    {"param": name, "before": value.get("before") or "", "after": value.get("after") or "",
                     **{k: place.get(k) for k in ("path", "tag", "class", "id")}})
        else:
            renumber[n] = f"{{{{page:{len(kept)}}}}}"
            kept.append(value)

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return PAGE_REF_RE.sub(lambda m: renumber.get(int(m.group(1)), m.group(0)), node)
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(template), kept


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
    done_description = done_item.description.strip() or "Return the result"
    steps.append(WorkflowStep(
        description=_template_string(done_description, values, ignore_case=True)[:2000],
        actions=[result_action(done_action, values, keys, structured=structured)], url=done_item.url,
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

