"""The viewer's "Fork from here" and "Try this step again", and the Gradio API's `ask_step`: the handlers.

No `from __future__ import annotations`: Gradio reads the handlers' annotations as objects (`gr.EventData`,
and `ask_api`'s typed parameters, from which the `ask_step` API endpoint is derived).
"""

from collections.abc import Callable
from typing import Any

import gradio as gr
from pydantic import ValidationError

from agent.models import AskRequest, Fork, NotAskable, RequestError, validation_errors
from agent.service.door import NotFound
from agent.service.runs import RunService
from agent.ui.form import FORM_FIELDS, request_form_values
from agent.ui.playground import render_answer, render_ask_error
from agent.ui.render import run_id_of

__all__ = ["StepHandlers", "ask_fields"]


class StepHandlers:
    """What the viewer's step buttons do: fill the form with a fork, ask the model again at a step."""

    def __init__(self, service: RunService, key_hint: Callable[[str, str], Any]) -> None:
        self.service, self.key_hint = service, key_hint

    async def fork_from(self, current: Any, evt: gr.EventData) -> list[Any]:
        """"Fork from here" on a step: the form holds the run's request with the fork set (and Advanced opened)."""
        skip = [gr.skip()] * (len(FORM_FIELDS) + 2)
        step = getattr(evt, "_data", None) or {}
        step = step.get("fork_step") if isinstance(step, dict) else None
        run_id = run_id_of(current)
        if not isinstance(step, int) or run_id is None:
            return skip  # a click elsewhere in the viewer
        request = await self.service.run_request(run_id)
        if request is None:
            gr.Warning(f"Run {run_id} no longer exists.")
            return skip
        forked = request.model_copy(update={"fork": Fork(run_id=run_id, step=step), "use_cached_workflow": False,
                                            "workflow_id": None, "cached_workflow": None, "workflow_params": None})
        before = f"steps 1–{step - 1} are replayed without the model" if step > 2 else \
            "step 1 is replayed without the model" if step == 2 else "nothing is replayed"
        gr.Info(f"The form holds run {run_id}'s request, forked at step {step}: {before}, then the agent takes over "
                "with the form's settings. Change the system prompt or the model and press Run.")
        return [*request_form_values(forked), self.key_hint(request.provider, request.model), gr.update(open=True)]

    async def ask_step(self, data: Any) -> str:
        """The viewer's "Try this step again": the step's messages sent again as the panel says; the answer's HTML."""
        if not isinstance(data, dict):
            return render_ask_error("the panel sent nothing to ask")
        try:
            run_id, step = int(data.get("run_id") or 0), int(data.get("step") or 0)
            ask = AskRequest.model_validate(ask_fields(data))
        except (TypeError, ValueError) as exc:
            problems = validation_errors(exc, model=AskRequest) if isinstance(exc, ValidationError) else []
            said = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or str(exc)
            return render_ask_error(f"Nothing was sent: {said}")
        try:
            answer = await self.service.ask(run_id, step, ask)
        except (NotFound, NotAskable) as exc:
            return render_ask_error(str(exc))
        except RequestError as exc:
            return render_ask_error(f"{exc.field}: {exc.message}")
        return render_answer(answer)

    async def ask_api(self, task_run_id: int, step: int, provider: str = "", model: str = "",
                      extend_system_message: str | None = None, override_system_message: str | None = None,
                      temperature: float | None = None, samples: int = 1) -> dict[str, Any]:
        """Ask the model again at a run's step (the step playground): the step's messages sent again with the system
        prompt or model changed; the original reply and each new one, with whether it would have done the same.

        Left out (empty, or None for the system prompt fields): the run's own. Same as POST
        /api/runs/{task_run_id}/steps/{step}/ask.
        """
        fields = {"provider": provider, "model": model, "extend_system_message": extend_system_message,
                  "override_system_message": override_system_message, "temperature": temperature,
                  "samples": samples}
        try:
            ask = AskRequest.model_validate(ask_fields(fields))
            answer = await self.service.ask(int(task_run_id), int(step), ask)
        except ValidationError as exc:
            said = "; ".join(f"{p['field']}: {p['message']}" for p in validation_errors(exc, model=AskRequest))
            raise gr.Error(said, print_exception=False) from None
        except (NotFound, NotAskable) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except RequestError as exc:
            raise gr.Error(f"{exc.field}: {exc.message}", print_exception=False) from None
        return answer.model_dump(mode="json")



def ask_fields(data: dict[str, Any]) -> dict[str, Any]:
    """An AskRequest's fields from the panel or the Gradio API: an empty provider, model or temperature is the run's
    own (left out); the system prompt fields are kept when given at all (empty: none)."""
    out: dict[str, Any] = {}
    for name in ("provider", "model", "temperature"):
        value = data.get(name)
        if value not in (None, ""):
            out[name] = value
    for name in ("extend_system_message", "override_system_message"):
        if data.get(name) is not None:
            out[name] = data[name]
    if data.get("samples") not in (None, ""):
        out["samples"] = data["samples"]
    return out
