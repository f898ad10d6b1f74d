"""What every action is made of: its outcome, its context, its traits and its tool schema.

The actions themselves (agent.engine.actions) are plain typed async functions registered with
`@action(...traits)`; their name, description and argument schema come from the function, and what
a workflow needs to know of each (`Traits`) is said in that decorator, next to the function.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, create_model

from agent.engine.browser import BrowserSession
from agent.engine.secrets import Secrets

__all__ = ["Action", "ActionError", "Context", "Outcome", "Traits", "make_action"]

ValueKind = Literal["typed", "option", "query"]  # typed into a field, an option chosen, a search query


class ActionError(Exception):
    """The action could not be done; the message goes back to the model as the action's error."""


@dataclass
class Outcome:
    """What an action achieved, before it becomes an ActionResult."""

    content: str | None = None
    include_in_memory: bool = False
    is_done: bool = False
    success: bool = True
    locators: dict[str, Any] | None = None
    data: Any = None
    changed_page: bool = False  # later actions of the same step would act on stale indices


@dataclass
class Context:
    """What actions need: the browser tabs, the navigation policy and, for `extract`, the model."""

    session: BrowserSession
    allowed_domains: list[str] | None = None
    blocked_domains: list[str] | None = None
    extract_fn: Callable[[str, str], Awaitable[str]] | None = None
    secrets: Secrets | None = None  # the run's sensitive_data: typed by `input`, scrubbed from results


@dataclass(frozen=True)
class Traits:
    """What recording a workflow and replaying it need to know of an action."""

    element: bool = False  # acts on the element `index` names: its locators are recorded, a replay finds it again
    value: str | None = None  # the argument holding a value the task chose (a workflow parameter if the prompt has it)
    value_kind: ValueKind | None = None  # how `value` is used; "typed" values are where secrets are typed
    url_args: tuple[str, ...] = ()  # arguments that are URLs: templated by their parts, their query values too
    checks_url: bool = False  # it may lead to another page: a replay checks the URL it reached
    replay_noop: bool = False  # it only reads or waits: a recorded workflow leaves it out
    void_when: tuple[str, ...] = ()  # result wordings that mean it changed nothing: left out too

    @property
    def fills_field(self) -> bool:
        """It sets a field's value (types text, chooses an option): a replay checks the field holds it."""
        return self.element and self.value_kind in ("typed", "option")


@dataclass(frozen=True)
class Action:
    """An action's function, name, description, argument model and traits."""

    name: str
    fn: Callable[..., Awaitable[Outcome]]
    description: str
    params: type[BaseModel]
    traits: Traits = Traits()

    def tool(self) -> dict[str, Any]:
        """The OpenAI tool definition for this action."""
        schema = _clean_schema(self.params.model_json_schema())
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": schema}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def make_action(fn: Callable[..., Awaitable[Outcome]], traits: Traits) -> Action:
    """The Action of a typed async function `fn(ctx, ...)`: its arguments' model from its signature."""
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    for name, param in list(inspect.signature(fn).parameters.items())[1:]:  # skip ctx
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (hints[name], default)
    model = create_model(f"{fn.__name__}_params", __base__=_Strict, **fields)
    description = (fn.__doc__ or fn.__name__).strip().splitlines()[0]
    unknown = [a for a in (traits.value, *traits.url_args) if a is not None and a not in fields]
    if unknown or (traits.element and "index" not in fields):
        raise TypeError(f"{fn.__name__}: its traits name arguments it does not take ({unknown or ['index']})")
    return Action(fn.__name__, fn, description, model, traits)


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop titles and noise from a pydantic schema: every token is paid on every step."""
    schema = {k: v for k, v in schema.items() if k not in ("title",)}
    props = {}
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        if "anyOf" in prop:  # Optional[int] -> int (null is what omitting it means)
            kinds = [p for p in prop.pop("anyOf") if p.get("type") != "null"]
            prop.update(kinds[0] if len(kinds) == 1 else {"anyOf": kinds})
            prop.pop("default", None)
        props[name] = prop
    schema["properties"] = props
    schema["additionalProperties"] = False
    return schema
