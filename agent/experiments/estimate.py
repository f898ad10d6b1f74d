"""A dry run: what an experiment would be before it starts (cells, estimated cost, the smallest effect it can see).

Cost per run = steps × (input tokens per step × input price + output tokens per step × output price), from
the past runs of each task's prompt in the run log (their mean steps and tokens per step, whatever model
played them), else a stated default (DEFAULT_STEPS steps of DEFAULT_INPUT_TOKENS_PER_STEP input and
DEFAULT_OUTPUT_TOKENS_PER_STEP output tokens, or the task's max_steps if fewer). Prices come from the
variant's price_per_mtok, else litellm's price map; a model without either has an unknown cost (null, with
the reason), never 0. A judge check adds one call of about JUDGE_INPUT_TOKENS + JUDGE_OUTPUT_TOKENS per cell.
"""

from __future__ import annotations

from typing import Any

from agent import stats
from agent.experiments.spec import ExperimentSpec
from agent.experiments.tasks import Task

DEFAULT_STEPS = 8
DEFAULT_INPUT_TOKENS_PER_STEP = 6_000  # a page observation, the history and the system prompt
DEFAULT_OUTPUT_TOKENS_PER_STEP = 300
JUDGE_INPUT_TOKENS = 1_500
JUDGE_OUTPUT_TOKENS = 80


def _price(provider: str, model: str, given: Any) -> tuple[float, float] | None:
    """(input, output) USD per million tokens: the price given, else litellm's; None when neither is known."""
    from agent.engine.llm import model_price  # reads litellm's price map (imports litellm the first time)

    if given is not None:
        return float(given.input), float(given.output)
    return model_price(provider, model)


def _usage(task: Task, prompt: str, past: dict[str, dict[str, float]], max_steps: int | None) -> tuple[float, ...]:
    """(steps, input tokens per step, output tokens per step, 1 if from past runs else 0) for one run."""
    seen = past.get(prompt)
    if seen:
        return seen["steps"], seen["input_per_step"], seen["output_per_step"], 1.0
    bound = max_steps or task.max_steps or DEFAULT_STEPS
    return float(min(DEFAULT_STEPS, bound)), float(DEFAULT_INPUT_TOKENS_PER_STEP), \
        float(DEFAULT_OUTPUT_TOKENS_PER_STEP), 0.0


def estimate(spec: ExperimentSpec, tasks: list[Task], prompts: list[str],
             past: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The dry run's answer: cells, the cost estimate per variant and in total (null with the reason when a
    price is unknown), how it was estimated, and the expected smallest detectable difference."""
    repeats, unknown = spec.repeats, []
    variants: list[dict[str, Any]] = []
    known_past = sum(1 for p in prompts if p in past)
    for variant in spec.variants:
        request = variant.request()
        price = _price(request.provider, request.model, request.price_per_mtok)
        cost: float | None = None
        reason = None
        if price is None:
            reason = (f"litellm has no price for {request.model!r} ({request.provider}): give the variant "
                      'price_per_mtok {"input": ..., "output": ...}')
            unknown.append(f"{variant.name}: {reason}")
        else:
            cost = 0.0
            for task, prompt in zip(tasks, prompts, strict=True):
                steps, tin, tout, _ = _usage(task, prompt, past, request.max_steps)
                cost += repeats * steps * (tin * price[0] + tout * price[1]) / 1_000_000
        variants.append({"name": variant.name, "cells": len(tasks) * repeats, "provider": request.provider,
                         "model": request.model, "price_per_mtok": None if price is None else
                         {"input": price[0], "output": price[1]}, "estimated_cost_usd": cost, "reason": reason})
    judge_cost: float | None = 0.0
    judged = [t for t in tasks if t.check is not None and t.check.kind == "judge"]
    for task in judged:
        assert task.check is not None
        provider, model = task.check.judge_model
        price = _price(provider, model, None)
        if price is None:
            unknown.append(f"the judge of {task.id}: litellm has no price for {model!r} ({provider})")
            judge_cost = None
        elif judge_cost is not None:
            per_call = (JUDGE_INPUT_TOKENS * price[0] + JUDGE_OUTPUT_TOKENS * price[1]) / 1_000_000
            judge_cost += per_call * repeats * len(spec.variants)
    total = None if unknown else sum(float(v["estimated_cost_usd"] or 0.0) for v in variants) + (judge_cost or 0.0)
    cells = len(tasks) * len(spec.variants) * repeats
    basis = (f"tokens per step of past runs for {known_past} of {len(tasks)} tasks" if known_past else
             "no past runs of these tasks")
    if known_past < len(tasks):
        basis += (f"; a default of {DEFAULT_STEPS} steps × {DEFAULT_INPUT_TOKENS_PER_STEP:,} input + "
                  f"{DEFAULT_OUTPUT_TOKENS_PER_STEP:,} output tokens per run for the others")
    mde = stats.expected_mde(len(tasks), repeats)
    return {
        "dry_run": True, "name": spec.name, "cells": cells, "tasks": len(tasks), "variants": variants,
        "repeats": repeats, "estimated_cost_usd": total, "cost_reason": "; ".join(unknown) or None,
        "judge_cost_usd": judge_cost if judged else 0.0, "cost_basis": basis, "max_cost_usd": spec.max_cost_usd,
        "expected_mde": mde,
        "expected_mde_note": (
            f"differences under about {round(100 * mde)} points would likely go unseen with {len(tasks)} tasks × "
            f"{repeats} repeats (80% power, pass rates spread evenly, the same effect on every task)"
            if mde is not None else
            f"with {len(tasks)} tasks no difference can reach p < 0.05 in a test over tasks: use 6 tasks or more"),
    }


def describe(answer: dict[str, Any]) -> str:
    """The dry run in one line (the Start button's preview, the CLI's --dry-run)."""
    cost = answer["estimated_cost_usd"]
    money = f"about ${cost:.2f}" if cost is not None else f"cost unknown ({answer['cost_reason']})"
    return f"{answer['cells']} runs, {money}; {answer['expected_mde_note']}"
