"""The web-agent workbench: `run`, `arun` and `stream` a task with any LLM in a real browser.

`run(request, fork=fork_from(parent, step=S))` forks a finished run: the parent's steps before S
replayed without the model, the agent from S with the request's settings (docs/prompts.md).

Errors: a bad request raises pydantic's `ValidationError` (see `agent.models.validation_errors`);
`LLMError` (and its `MissingKeyError`; `kind` says why, `fatal` whether a run must stop) come from
the model; `BrowserError` when no browser can be started. At run time each of these ends the run
with a `RunResponse` whose `status` is "failure" and whose `error` and `stop_reason` say why, rather
than raising.

The layers, one folder each, from the top floor down (a module imports only from its own floor or
below, and `make lint` checks it):
- `agent.ui`: the Gradio workbench;
- `agent.experiments`: task sets, checks, the runner (local or Ray), statistics;
- `agent.service`: the run service (the only door to the run log) and every HTTP route;
- `agent.log` (the DuckDB run log and its readers; `agent.analysis` is the notebooks' way in) and
  `agent.workflows` (cached workflows: record, replay, heal);
- `agent.engine`: the loop, actions, page, browser, model access, navigation policy;
- `agent.models`, `agent.filters`, `agent.schemas`, `agent.limits`, `agent.settings`, `agent.rules`,
  `agent.providers`, `agent.modelmap`: the contract and events, the history's filters, the caps, the
  pure rules (URL policy, tool schemas), one record per provider, litellm's model map.
`agent.testing` holds the fakes tests and benchmarks use. Names are imported lazily so that
`import agent` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Browser": "agent.engine.browser", "BrowserError": "agent.engine.browser",
    "EngineOptions": "agent.engine.loop", "arun": "agent.engine.loop", "run": "agent.engine.loop",
    "stream": "agent.engine.loop",
    "LLM": "agent.engine.llm", "LLMError": "agent.engine.llm", "MissingKeyError": "agent.engine.llm",
    "ActionResult": "agent.models", "HistoryItem": "agent.models", "RequestError": "agent.models",
    "RunFinished": "agent.models", "RunRequest": "agent.models", "RunResponse": "agent.models",
    "RunStarted": "agent.models", "StepFinished": "agent.models", "StepStarted": "agent.models",
    "StopReason": "agent.models",
    "fork_from": "agent.workflows.fork",
}
_MODULES = {"analysis": "agent.log.analysis"}
__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
