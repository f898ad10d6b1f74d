"""What litellm's model map says of a model: vision, function calling, output limit, price.

The one place litellm is imported (and configured: its bundled price map, read locally, no
telemetry). agent.engine.llm makes the calls; this leaf answers questions about a model, so that
the request model can refuse `use_vision` for a text-only model without importing the engine.
litellm is imported on first use, never at import time: it takes ~6-10 s (the app imports it in a
worker thread at start-up, `preload`).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from agent.providers import DEFAULT_MODELS, litellm_model

__all__ = ["DEFAULT_OUTPUT_TOKENS", "load_litellm", "model_info", "model_notes", "model_price", "output_limit",
           "text_only"]

# Output tokens per reply: a model the map does not know gets DEFAULT_OUTPUT_TOKENS; a known one gets
# its own maximum, capped, and a reasoning model (its thinking counts against the limit) a higher cap.
DEFAULT_OUTPUT_TOKENS = 2048
OUTPUT_TOKENS_CAP = 4096
REASONING_OUTPUT_TOKENS_CAP = 32768


def load_litellm() -> Any:
    """litellm, imported and configured (local price map, quiet, no telemetry); ~6-10 s the first time."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm  # here, not at the top: measured ~6-10 s, and most imports of this module never need it

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.drop_params = True  # providers that lack a parameter (e.g. tool_choice) still answer
    return litellm


@functools.lru_cache(maxsize=512)
def model_info(provider: str, model: str | None) -> dict[str, Any] | None:
    """What litellm's model map says of a model (vision, function calling, output limit), or None when
    it does not know the model. Imports litellm (~10 s) the first time unless it is loaded already
    (the app loads it at start): call it from a worker thread where the event loop must not stall."""
    litellm = load_litellm()
    try:
        return dict(litellm.get_model_info(litellm_model(provider, model)))
    except Exception:  # "This model isn't mapped yet"
        return None


def output_limit(provider: str, model: str | None) -> int:
    """max_tokens for a reply: the model's own limit from litellm's map, capped (higher for reasoning models)."""
    info = model_info(provider, model)
    if info is None:
        return DEFAULT_OUTPUT_TOKENS
    own = int(info.get("max_output_tokens") or info.get("max_tokens") or DEFAULT_OUTPUT_TOKENS)
    return min(own, REASONING_OUTPUT_TOKENS_CAP if info.get("supports_reasoning") else OUTPUT_TOKENS_CAP)


def text_only(provider: str, model: str | None) -> bool:
    """True when litellm's map knows the model and says it takes no images (unknown models are trusted)."""
    info = model_info(provider, model)
    return info is not None and not info.get("supports_vision")


def model_notes(provider: str, model: str | None) -> list[str]:
    """What a user should know about a model before running it (from litellm's model map)."""
    info = model_info(provider, model)
    name = (model or DEFAULT_MODELS[provider]).strip()
    if info is None:
        return [f"litellm does not know {name!r}: it gets tools, images when asked, "
                f"and {DEFAULT_OUTPUT_TOKENS} output tokens per reply"]
    notes = []
    if info.get("supports_function_calling") is False:
        notes.append(f"litellm marks {name!r} as lacking function calling: the agent still sends its actions "
                     "as tools, and the provider may refuse them; pick a model with tool use")
    if not info.get("supports_vision"):
        notes.append(f"{name!r} takes no images: leave use_vision off")
    return notes


def model_price(provider: str, model: str | None) -> tuple[float, float] | None:
    """(input, output) USD per million tokens from litellm's local price map; None when it does not know the model.

    Reads the map through `model_info` (litellm is imported the first time: call it off the event loop).
    """
    info = model_info(provider, model) or {}
    per_input, per_output = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if per_input is None or per_output is None:
        return None
    return float(per_input) * 1_000_000, float(per_output) * 1_000_000
