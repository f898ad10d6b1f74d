"""The run form: its fields (the request's, in the contract's order), checking them, refilling them.

Everything here is derived from `RunRequest`'s fields and their `About` (agent.models.fields): the
form's inputs and the Gradio API's `run` parameters are the same list, `FORM_FIELDS`; how a box's
text becomes a request value, and a request value a box's text, follows from the field's type.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from agent.models import FIELDS, RequestError, RunFinished, RunRequest, StepFinished, validation_errors
from agent.models.fields import bounds, control_of, value_type
from agent.service.door import NotFound

log = logging.getLogger(__name__)

# The request fields, in the contract's order: the form's inputs and the Gradio API's parameters.
FORM_FIELDS: tuple[str, ...] = tuple(RunRequest.model_fields)


class FormError(ValueError):
    """The form (or a Gradio API call) holds fields that cannot make a run request."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def _info(name: str) -> FieldInfo:
    return RunRequest.model_fields[name]


def label(name: str) -> str:
    """The form's label of a field; a whole-number engine option says its range and what empty means."""
    least, most = bounds(_info(name))
    empty = FIELDS[name].engine_default
    if value_type(_info(name)) is int and least is not None and most is not None and empty is not None:
        return f"{FIELDS[name].label} ({least}-{most}; empty: {empty})"
    return FIELDS[name].label


def placeholder(name: str) -> str | None:
    """The box's hint: its About's, else what an empty whole-number engine option means."""
    empty = FIELDS[name].engine_default
    if FIELDS[name].placeholder:
        return FIELDS[name].placeholder
    return str(empty) if value_type(_info(name)) is int and empty is not None else None


def form_default(name: str) -> Any:
    """A control's first value: a tick box its default, a choice its default, a box empty (the default);
    None for a required field (Gradio's API then lists it as required)."""
    info = _info(name)
    control = control_of(info)
    if info.is_required():
        return None
    if control == "check":
        return bool(info.default)
    return info.default if control == "choice" else ""


def _whole_number(value: Any) -> int | None:
    """An int from what a box (or an API caller) gave: 40, 40.0, "40"; None when it is not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return int(number) if number.is_integer() and abs(number) < 1e15 else None
    return None


def _read(name: str, value: Any) -> Any:
    """The request value of a box's content; ValueError with the message for the field otherwise."""
    if value_type(_info(name)) is int:
        number = _whole_number(value)
        if number is None:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            raise ValueError(f"must be a whole number, got {shown}")
        least, most = bounds(_info(name))
        empty = FIELDS[name].engine_default
        if empty is not None and least is not None and most is not None and not least <= number <= most:
            raise ValueError(f"must be between {least} and {most} (empty: the default, {empty}), got {number}")
        return number
    example = FIELDS[name].json_example
    if example is not None and isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:  # the message never quotes the text: it may hold secrets
            raise ValueError(f"is not valid JSON ({exc.msg}); give an object such as {example}") from None
        except RecursionError:
            raise ValueError("nests too deeply; give a flat JSON object") from None
        if not isinstance(value, dict):
            raise ValueError(f"must be a JSON object such as {example}")
    return value  # the request takes the rest as it is (a JSON schema as text, domains comma-separated)


def form_request(values: dict[str, Any]) -> Any:
    """The RunRequest the form's values describe; FormError naming each bad field and its fix."""
    data: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for name in FORM_FIELDS:
        value = values.get(name)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            continue  # an empty box means "the default"
        if value is False and _info(name).default is None:
            continue  # unticked is the engine's default; keep the logged request minimal
        try:
            data[name] = _read(name, value)
        except ValueError as exc:
            errors.append({"field": name, "message": str(exc)})
    # The other fields are checked too, so that one answer lists every problem.
    try:
        request = RunRequest.model_validate(data)
    except ValidationError as exc:
        errors += validation_errors(exc)
    except RequestError as exc:
        errors.append({"field": exc.field, "message": exc.message})
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. a schema nested too deeply to check
        errors.append({"field": "request", "message": f"could not be read: {str(exc)[:300]}"})
    if errors:
        raise FormError(errors)
    return request


def _shown(name: str, value: Any) -> Any:
    """What a field's control holds to show `value`."""
    control = control_of(_info(name))
    if control == "secret":
        return ""  # never refilled: secrets are not kept; type them again
    if control == "check":
        return bool(value)
    if control == "choice":
        return value
    if value is None:
        return ""
    if control == "json":
        value = value.model_dump(mode="json") if isinstance(value, BaseModel) else value  # price_per_mtok, fork
        return json.dumps(value, indent=2, ensure_ascii=False)
    return ", ".join(value) if isinstance(value, list) else str(value)


def request_form_values(request: Any) -> list[Any]:
    """The form's values (in FORM_FIELDS order) that reproduce `request`: "Run again"."""
    return [_shown(name, getattr(request, name)) for name in FORM_FIELDS]


async def follow_run(service: Any, run_id: int, *, skip_first: bool = False) -> AsyncIterator[dict[str, Any]]:
    """The run's response now, again after each finished step, and at the end (bounded by subscribe())."""
    current = await service.aget(run_id)
    if current is None:
        raise NotFound("run", run_id)
    if not skip_first:
        yield current.to_json()
    if current.status != "in_progress":
        return
    shown = len(current.history)
    async for event in service.subscribe(run_id):
        if isinstance(event, RunFinished):
            yield event.response.to_json()
            return
        if isinstance(event, StepFinished):
            snapshot = await service.aget(run_id)
            # Events already seen (a viewer joining mid-run) give the same snapshot: send it once.
            if snapshot is not None and len(snapshot.history) > shown:
                shown = len(snapshot.history)
                yield snapshot.to_json()
    final = await service.aget(run_id)  # the subscription gave up (the run outlived its bound)
    if final is not None:
        yield final.to_json()


def load_examples(demo_dir: Path) -> list[dict[str, Any]]:
    """The demo shop's ready tasks (data/demo/examples.json); [] when missing or unreadable."""
    path = Path(demo_dir) / "examples.json"
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("no examples for the form (%s): %s", path, exc)
        return []
    good = [e for e in items if isinstance(e, dict) and isinstance(e.get("title"), str)
            and isinstance(e.get("prompt"), str)]
    return good[:50]


# ------------------------------------------------------------------ rendering the run viewer
