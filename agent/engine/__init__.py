"""The engine: observe the page, ask the model, run its actions; an async generator of events.

`loop` (the agent loop), `actions`, `interact` (how actions touch a page: covers, typing, settling),
`prompts`, `page` + `dom.js` (the observation), `browser`, `llm` (the only litellm importer),
`schema` (a user's JSON schema per provider) and `policy` (where a run's browser may go). The engine imports
neither duckdb nor gradio. Names are imported lazily: `agent.engine.policy` stays light.
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
