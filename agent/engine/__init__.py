"""The engine: observe the page, ask the model, run its actions; an async generator of events.

`loop` (the agent loop), `actions` (each with its traits; what they are made of: `actionkit`), `interact`
(how actions touch a page: covers, typing, settling), `prompts`, `page` + `dom.js` (the observation),
`browser`, `guard` (the navigation policy on every request of a run's browser) and `llm` (the model
calls). The pure rules it enforces (URL policy, tool schemas per provider, the shape of secrets) sit
below it in `agent.rules`, the providers in `agent.providers`. The engine imports neither duckdb nor
gradio. Names are imported lazily: `import agent.engine` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"EngineOptions": "agent.engine.loop", "arun": "agent.engine.loop", "run": "agent.engine.loop",
            "stream": "agent.engine.loop"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'agent.engine' has no attribute {name!r}")
