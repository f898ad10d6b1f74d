"""The run form: its fields (the request's, in the contract's order), checking them, refilling them.

The form's inputs and the Gradio API's `run` parameters are the same list, `FORM_FIELDS`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agent.models import RunRequest

log = logging.getLogger(__name__)

# The request fields, in the contract's order: the form's inputs and the Gradio API's parameters.
FORM_FIELDS: tuple[str, ...] = (
    "prompt", "model", "provider", "wait_for_completion", "webhook_url", "response_format", "json_schema",
    "use_cached_workflow", "cached_workflow", "workflow_id", "workflow_params", "start_url", "max_steps",
    "use_vision", "allowed_domains", "sensitive_data", "extend_system_message", "override_system_message",
    "session_id",
)


# Fields the form takes as text (an empty box stays empty) and the request as whole numbers.
WHOLE_NUMBERS = ("workflow_id", "max_steps")


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


class FormError(ValueError):
    """The form (or a Gradio API call) holds fields that cannot make a run request."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def form_request(values: dict[str, Any]) -> Any:
    """The RunRequest the form's values describe; FormError naming each bad field and its fix."""
    from pydantic import ValidationError

    from agent.models import RequestError, validation_errors

    data: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for name in FORM_FIELDS:
        value = values.get(name)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            continue  # an empty box means "the default"
        if name == "use_vision" and value is False:
            continue  # unticked is the engine's default; keep the logged request minimal
        if name in WHOLE_NUMBERS:
            number = _whole_number(value)
            if number is None:
                shown = f"{value:g}" if isinstance(value, float) else str(value)
                errors.append({"field": name, "message": f"must be a whole number, got {shown}"})
                continue
            value = number
        if name == "max_steps" and isinstance(value, int) and not 1 <= value <= 200:
            errors.append({"field": name,
                           "message": f"must be between 1 and 200 (empty: the default, 25), got {value}"})
            continue
        if name in ("workflow_params", "sensitive_data") and isinstance(value, str):
            example = '{"product": "HDMI cable"}' if name == "workflow_params" else '{"password": "..."}'
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:  # the message never quotes the text: it may hold secrets
                errors.append({"field": name, "message": f"is not valid JSON ({exc.msg}); give an object such "
                                                          f"as {example}"})
                continue
            except RecursionError:
                errors.append({"field": name, "message": "nests too deeply; give a flat JSON object"})
                continue
            if not isinstance(value, dict):
                errors.append({"field": name, "message": f"must be a JSON object such as {example}"})
                continue
        data[name] = value
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


def request_form_values(request: Any) -> list[Any]:
    """The form's values (in FORM_FIELDS order) that reproduce `request`: "Run again"."""
    def dumps(value: Any) -> str:
        return json.dumps(value, indent=2, ensure_ascii=False) if value is not None else ""

    fields = request.model_dump()
    out: dict[str, Any] = {
        **{name: fields.get(name) for name in FORM_FIELDS},
        "webhook_url": request.webhook_url or "",
        "json_schema": dumps(request.json_schema),
        "cached_workflow": dumps(request.cached_workflow),
        "workflow_params": dumps(request.workflow_params),
        "start_url": request.start_url or "",
        "use_vision": bool(request.use_vision),
        "allowed_domains": ", ".join(request.allowed_domains or []),
        "sensitive_data": "",  # never refilled: secrets are not kept; type them again
        "extend_system_message": request.extend_system_message or "",
        "override_system_message": request.override_system_message or "",
        "session_id": request.session_id or "",
        **{name: "" if fields.get(name) is None else str(fields[name]) for name in WHOLE_NUMBERS},
    }
    return [out[name] for name in FORM_FIELDS]


async def follow_run(service: Any, run_id: int, *, skip_first: bool = False) -> AsyncIterator[dict[str, Any]]:
    """The run's response now, again after each finished step, and at the end (bounded by subscribe())."""
    from agent.models import RunFinished, StepFinished
    from agent.service.runs import NotFound

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
