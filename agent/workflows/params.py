"""Parameter values for a replay: given, read off the new prompt by alignment, or asked of a model once."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from agent.engine.llm import LLMError, key_status
from agent.engine.trace import make_trace
from agent.models import LLMCall, LLMTrace, RunRequest
from agent.workflows.document import NAME_RE, Parameter, Workflow, WorkflowError, edit_workflow, load_workflow
from agent.workflows.record import _identifier
from agent.workflows.template import as_text, coerce_value, find_value


def _prompt_spans(prompt: str, params: list[Parameter], *, every: bool = False) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, name) of each parameter's example in the recorded prompt (the first
    match; `every`: all of them)."""
    spans: list[tuple[int, int, str]] = []
    for p in sorted(params, key=lambda q: -len(as_text(q.example)) if q.example is not None else 0):
        if p.example is None:
            continue
        for start, end in find_value(prompt, as_text(p.example), ignore_case=True):
            if not any(start < e and s < end for s, e, _ in spans):
                spans.append((start, end, p.name))
                if not every:
                    break
    return sorted(spans)


def match_prompt(recorded: str, params: list[Parameter], new: str) -> dict[str, str]:
    """Values for the parameters read off `new` by aligning it with the recorded prompt (no model).

    First a whole-prompt pattern (the recorded text around each value must be there, spacing and
    case aside; a value the recorded prompt says twice must be the same both times), then the same
    pattern found inside a longer prompt (the recorded ending optional); else a word alignment
    (difflib) that maps each value's words onto the words that replaced them. Parameters that cannot
    be placed are left out of the answer.
    """
    return {name: new[s:e] for name, [(s, e), *_] in prompt_spans(recorded, params, new).items()}


def prompt_spans(recorded: str, params: list[Parameter], new: str) -> dict[str, list[tuple[int, int]]]:
    """Where each parameter's value stands in `new` (start, end; each place it is said), found as
    `match_prompt` says."""
    spans = _prompt_spans(recorded, params, every=True)
    if not spans:
        return {}
    if " ".join(recorded.split()).lower() == " ".join(new.split()).lower():
        return _by_name(_prompt_spans(new, params, every=True))
    pattern: list[str] = []
    groups: dict[str, int] = {}
    places: list[tuple[str, str]] = []
    pos = 0
    for start, end, name in spans:
        pattern.append(_loose(recorded[pos:start]))
        if name in groups:  # said again: the same value again
            pattern.append(f"(?P<r{len(places)}>(?P=g{groups[name]}))")
        else:
            groups[name] = len(groups)
            pattern.append(f"(?P<g{groups[name]}>.+?)")
        places.append((name, f"r{len(places)}" if pattern[-1].startswith("(?P<r") else f"g{groups[name]}"))
        pos = end
    head, body, tail = pattern[0], "".join(pattern[1:]), _loose(recorded[pos:])
    flags = re.IGNORECASE | re.DOTALL
    lead = len(new) - len(new.lstrip())
    text = new.strip()
    m = re.fullmatch(head + body + tail, text, flags) or re.fullmatch(head + body + tail, text.rstrip(".!? "), flags)
    if m is None and recorded[:spans[0][0]].strip():
        # Words added before the recorded text ("Could you ...") or the recorded ending dropped:
        # the text before each value still frames it; the last one runs to the end if need be.
        m = re.search(head + body + f"(?:{tail})?" + r"[\s.!?]*$", text, flags)
    if m is None:
        first = [(s, e, name) for s, e, name in spans if (s, e, name) == next(x for x in spans if x[2] == name)]
        return {name: [span] for name, span in _align_words(recorded, first, new).items()}
    found: dict[str, list[tuple[int, int]]] = {}
    for name, group in places:
        if m.start(group) < 0:
            continue
        start, end = _trimmed(text, m.start(group), m.end(group), junk=" \t\n")
        if end > start:
            found.setdefault(name, []).append((lead + start, lead + end))
    return found


def _by_name(spans: list[tuple[int, int, str]]) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    for start, end, name in spans:
        out.setdefault(name, []).append((start, end))
    return out


def prompt_with_values(prompt: str, doc: Workflow, values: dict[str, Any]) -> str:
    """`prompt` saying the values this replay uses: each parameter's value, wherever the prompt states one
    (aligned with the recorded prompt), replaced by the value used when it differs (case aside)."""
    places = [(start, end, name) for name, spans in prompt_spans(doc.prompt, doc.parameters, prompt).items()
              for start, end in spans]
    out = prompt
    for start, end, name in sorted(places, reverse=True):
        if name in values and out[start:end].strip().casefold() != as_text(values[name]).casefold():
            out = out[:start] + as_text(values[name]) + out[end:]
    return out


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


def _align_words(recorded: str, spans: list[tuple[int, int, str]], new: str) -> dict[str, tuple[int, int]]:
    old_tokens = [(m.start(), m.end(), m.group(0)) for m in _TOKEN_RE.finditer(recorded)]
    new_tokens = [(m.start(), m.end(), m.group(0)) for m in _TOKEN_RE.finditer(new)]
    norm = lambda t: re.sub(r"^[^\w]+|[^\w]+$", "", t.lower())  # noqa: E731 - tiny key function
    matcher = difflib.SequenceMatcher(a=[norm(t[2]) for t in old_tokens], b=[norm(t[2]) for t in new_tokens],
                                      autojunk=False)
    found: dict[str, tuple[int, int]] = {}
    for start, end, name in spans:
        covered = [i for i, t in enumerate(old_tokens) if t[0] < end and start < t[1]]
        if not covered:
            continue
        lo, hi = covered[0], covered[-1] + 1
        for tag, a0, a1, b0, b1 in matcher.get_opcodes():
            if a0 <= lo and hi <= a1:
                if tag == "equal":  # the same words: the value where they stand now
                    s = new_tokens[b0 + (lo - a0)][0] + (start - old_tokens[lo][0])
                    found[name] = (s, s + end - start)
                elif tag == "replace" and (a0, a1) == (lo, hi) and b1 > b0:
                    found[name] = _trimmed(new, new_tokens[b0][0], new_tokens[b1 - 1][1])
                elif tag == "replace" and a1 - a0 == b1 - b0:  # several values side by side: word for word
                    c0, c1 = b0 + (lo - a0), b0 + (hi - a0)
                    found[name] = _trimmed(new, new_tokens[c0][0], new_tokens[c1 - 1][1])
                break
    return {k: v for k, v in found.items() if v[1] > v[0]}


def _trimmed(text: str, start: int, end: int, *, junk: str = " ,.;:!?\"'()[]") -> tuple[int, int]:
    """(start, end) narrowed past `junk` (punctuation and quotes) at either end."""
    while start < end and text[start] in junk:
        start += 1
    while end > start and text[end - 1] in junk:
        end -= 1
    return start, end


PARAMS_PROMPT = """A recorded web task is replayed with new parameter values. Read the values from the new task.
Recorded task: {recorded}
Parameters (name, type, what it is, value in the recorded task):
{params}
New task: {new}
Answer with one JSON object mapping each parameter name to its value in the new task, nothing else."""


def params_messages(doc: Workflow, new_prompt: str) -> list[dict[str, Any]]:
    """The one message asking a model for parameter values as JSON."""
    lines = "\n".join(f"- {p.name} ({p.type}): {p.description or '-'}; "
                      f"recorded value: {json.dumps(p.example, ensure_ascii=False)}"
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


DESCRIBE_PROMPT = """These are the parameters of a recorded web task. Give each a short snake_case name and a
one-line description of what it is.
Task: {prompt}
Parameters (current name: recorded value, where it was used):
{params}
Answer with one JSON object: {{"<current name>": {{"name": "...", "description": "..."}}, ...}}, nothing else."""


async def describe_params(llm: Any, document: dict[str, Any]) -> tuple[dict[str, Any], LLMCall]:
    """Let a model name and describe the parameters (one call); returns the new document and the call."""
    doc, _, _ = load_workflow(document)
    lines = "\n".join(f"- {p.name}: {json.dumps(p.example, ensure_ascii=False)} ({p.description})"
                      for p in doc.parameters)
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


async def resolve_values(request: RunRequest, doc: Workflow,
                         llm_factory: Any) -> tuple[dict[str, Any], list[LLMTrace], str]:
    """(values, the traces of the model calls made, how) for the workflow's parameters and this request."""
    params = {p.name: p for p in doc.parameters}
    values: dict[str, Any] = {}
    given = request.workflow_params or {}
    for name, value in given.items():
        if name not in params:
            raise WorkflowError(f"workflow_params.{name}",
                                f"unknown parameter; this workflow takes: {', '.join(params) or '(none)'}")
        values[name] = coerce_value(params[name], value, field=f"workflow_params.{name}")
    missing = [n for n in params if n not in values]
    if not missing:
        return values, [], "given" if params else "none"
    found = match_prompt(doc.prompt, doc.parameters, request.prompt)
    for name in list(missing):
        if name in found:
            try:
                values[name] = coerce_value(params[name], found[name], field=f"workflow_params.{name}")
                missing.remove(name)
            except WorkflowError:
                pass  # a word that does not fit the type: ask the model
    if not missing:
        return values, [], "prompt"
    llm = llm_factory()
    if llm is None:
        _ready, advice = key_status(request.provider)
        raise WorkflowError("workflow_params", f"could not read {', '.join(missing)} from the prompt; give them in "
                                               f"workflow_params, or let a model read them ({advice})")
    messages = params_messages(doc, request.prompt)
    try:
        reply = await llm.complete(messages, None, purpose="params")
    except LLMError as exc:
        traces = [make_trace(exc.call, messages, None, None)] if exc.call else []
        raise ParamsFailed(f"could not read {', '.join(missing)} from the prompt and the model call failed ({exc}); "
                            "give them in workflow_params", traces) from None
    trace = make_trace(reply.call, messages, None, reply.raw_message)
    answer = parse_json_object(reply.text) or {}
    for name in list(missing):
        if name in answer and answer[name] is not None:
            try:
                values[name] = coerce_value(params[name], answer[name], field=f"workflow_params.{name}")
                missing.remove(name)
            except WorkflowError:
                pass
    if missing:
        raise ParamsFailed(f"could not read {', '.join(missing)} from the prompt, nor from the model's answer; "
                            "give them in workflow_params", [trace])
    return values, [trace], "model"


class ParamsFailed(Exception):
    """The values could not be found; `traces` are the model calls made trying."""

    def __init__(self, message: str, traces: list[LLMTrace]) -> None:
        super().__init__(message)
        self.traces = traces

    @property
    def calls(self) -> list[LLMCall]:
        """What those calls cost."""
        return [t.call for t in self.traces]
