"""Secrets a task needs (`sensitive_data`): typed into pages, never shown to the model nor kept.

The prompt and the model write `<secret>name</secret>`; only `input` swaps in the real value, at the
moment it types (`Secrets.reveal`). Everything the engine builds from a page (observation, URLs,
titles, action results, locators, extracted text, the final result) goes through `Secrets.scrub`,
which writes the placeholder back wherever a value shows up, in any spelling a browser, a URL, a
form, HTML or JSON gives it (agent.engine.spellings), so what reaches the model, the events, the
log, the UI, webhooks and workflows holds placeholders only. Screenshots paint over every visible
occurrence (agent.engine.mask).

    {"password": "hunter2!"}                                   # any site
    {"https://*.example.com": {"password": "hunter2!"}}        # only on those hosts

Standard library, pydantic's SecretStr (which hides values in dumps and reprs) and RE2 (linear-time matching).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr

from agent.engine.spellings import Scrubber

__all__ = ["SECRET_RE", "SecretError", "Secrets", "placeholder", "secrets_note"]

SECRET_RE = re.compile(r"<secret>\s*([A-Za-z_][A-Za-z0-9_.\-]{0,63})\s*</secret>")
MASKED_ATTR = "data-wb-secret"  # marks fields holding a secret: screenshots paint over them

M = TypeVar("M", bound=BaseModel)


class SecretError(ValueError):
    """A placeholder that names no secret usable here; the message says which names are."""


def placeholder(name: str) -> str:
    """How the model and the log write a secret."""
    return f"<secret>{name}</secret>"


def _plain(value: Any) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def revealed(sensitive_data: Mapping[str, Any]) -> dict[str, Any]:
    """`sensitive_data` with its values in clear, same shape (for a worker that types them; never for a log)."""
    return {key: {name: _plain(v) for name, v in item.items()} if isinstance(item, Mapping) else _plain(item)
            for key, item in sensitive_data.items()}


class Secrets:
    """A run's secret values by name (and domain): revealed for typing, scrubbed from everything else."""

    def __init__(self, sensitive_data: Mapping[str, Any] | None = None) -> None:
        # (name, value, domain patterns or None for any site)
        self._entries: list[tuple[str, str, tuple[str, ...] | None]] = []
        for key, item in (sensitive_data or {}).items():
            if isinstance(item, Mapping):
                self._entries += [(name, _plain(v), (key,)) for name, v in item.items()]
            else:
                self._entries.append((key, _plain(item), None))
        self._scrubber: Scrubber | None = None  # compiled on first use (or by `prepare`, off the event loop)

    def __bool__(self) -> bool:
        return bool(self._entries)

    @property
    def scrubber(self) -> Scrubber:
        """The values' spellings, each to its placeholder (the first name given for a value shared by two)."""
        if self._scrubber is None:
            marks: dict[str, str] = {}
            for name, value, _domains in self._entries:
                marks.setdefault(value, placeholder(name))
            self._scrubber = Scrubber(marks)
        return self._scrubber

    async def prepare(self) -> None:
        """Compile the scrubber in a worker thread (long values take a while: never on the event loop)."""
        if self._entries and self._scrubber is None:
            await asyncio.to_thread(lambda: self.scrubber)

    def values(self) -> list[str]:
        """Every secret value (for the run log's own scrubbing, a second line of defence)."""
        return [value for _name, value, _domains in self._entries]

    def names(self, url: str | None = None) -> list[str]:
        """The names usable on `url` (every name when None), sorted."""
        return sorted({name for name, _v, domains in self._entries if url is None or _usable(domains, url)})

    def reveal(self, text: str, url: str) -> str:
        """`text` with each placeholder replaced by its value for `url`; SecretError if one is not usable there."""
        def value_of(match: re.Match[str]) -> str:
            name = match.group(1)
            for entry_name, value, domains in self._entries:
                if entry_name == name and _usable(domains, url):
                    return value
            here = ", ".join(self.names(url)) or "none"
            known = name in self.names()
            why = "is not for this site" if known else "is not in the run's sensitive_data"
            raise SecretError(f"<secret>{name}</secret> {why} (usable here: {here})")

        return SECRET_RE.sub(value_of, text)

    def scrub(self, text: str | None) -> str | None:
        """`text` with every secret value, in any spelling or clipped, replaced by its placeholder."""
        if not text or not self._entries:
            return text
        return self.scrubber.sub(text)

    def scrub_value(self, value: Any) -> Any:
        """A copy of a JSON-like value with `scrub` applied to every string (keys too)."""
        if not self._entries:
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.scrub(k) if isinstance(k, str) else k: self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub_value(v) for v in value]
        return value

    def scrub_model(self, model: M) -> M:
        """A copy of a frozen model with every string scrubbed (the model itself unchanged)."""
        if not self._entries:
            return model
        return type(model).model_validate(self.scrub_value(model.model_dump()))

    def scrub_result(self, result: M, outcome: Any) -> tuple[M, Any]:
        """An action's result (and its outcome's text) with every value written as its placeholder."""
        if outcome is not None:
            outcome.content = self.scrub(outcome.content)
        return self.scrub_model(result), outcome

    async def type_into(self, session: Any, kwargs: dict[str, Any], call: Callable[[dict[str, Any]], Awaitable[Any]]
                        ) -> Any:
        """Run `input` with its placeholders swapped for this page's values; its outcome names placeholders only."""
        shown = kwargs["text"]
        if not SECRET_RE.search(shown):
            return await call(kwargs)
        page = await session.ensure_page()
        outcome = await call({**kwargs, "text": self.reveal(shown, page.url)})
        # Not even a part of the value: a field with a maxlength keeps only a prefix of it.
        short = " but the field does not hold all of it (it may limit the length)" \
            if "but the field now holds" in (outcome.content or "") else ""
        outcome.content = f"typed {shown!r} into [{kwargs['index']}]{short}"
        try:  # screenshots paint over the field from now on
            from agent.engine.page import find_element

            locator = await find_element(await session.ensure_page(), kwargs["index"])
            await locator.evaluate(f"el => el.setAttribute('{MASKED_ATTR}', '')", timeout=2_000)
        except Exception:
            pass  # the page moved on, and the field with it
        return outcome


def secrets_note(secrets: Secrets, url: str) -> list[str]:
    """The step's note naming the secrets usable on this page (never their values), or none."""
    names = secrets.names(url)
    if not names:
        return []
    listed = ", ".join(placeholder(n) for n in names)
    return [f"Secrets for this page: {listed}. To type one, call input with exactly that placeholder as the text; "
            "the real value is typed for you and is never shown to you."]


def _usable(domains: tuple[str, ...] | None, url: str) -> bool:
    if domains is None:
        return True
    from agent.rules.policy import domain_matches

    return domain_matches(domains, url)

