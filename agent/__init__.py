"""The web-agent workbench engine: `run`, `arun` and `stream` a task with any LLM in a real browser.

Errors: a bad request raises pydantic's `ValidationError` (see `agent.models.validation_errors`);
`LLMError` (and its `MissingKeyError`) come from the model; `BrowserError` when no browser can be
started. At run time each of these ends the run with a `RunResponse` whose `status` is "failure" and
whose `error` says why, rather than raising.

Names are imported lazily so that `import agent.models` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Browser": "agent.browser", "BrowserError": "agent.browser",
    "EngineOptions": "agent.engine", "arun": "agent.engine", "run": "agent.engine", "stream": "agent.engine",
    "LLM": "agent.llm", "LLMError": "agent.llm", "MissingKeyError": "agent.llm",
    "ActionResult": "agent.models", "HistoryItem": "agent.models", "RequestError": "agent.models",
    "RunFinished": "agent.models", "RunRequest": "agent.models", "RunResponse": "agent.models",
    "RunStarted": "agent.models", "StepFinished": "agent.models", "StepStarted": "agent.models",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
