"""A scripted model for forks and the step playground: ten steps on the bundled demo shop, one a step.

`cart_agent` fills the demo shop's cart with two products and reads the total, one action (or one
search) a step, so that a run has exactly ten steps: open the shop; search "hdmi"; open the HDMI
cable; set the quantity to 2; add it to the cart; search "charging pad"; open the pad; add it; open
the cart; report the total. With "[short]" in the task it stops after the first product: open,
search, open the cable, add it, report (five steps). It reads the observation as a model would
(elements found by their text), and follows the step number the engine writes, so a fork taking
over at step S goes on from there. A handler for agent.testing.fakellm.FakeLLM.
"""

from __future__ import annotations

import re
from typing import Any

from agent.testing.fakellm import call, find_index, last_user_text, reply

__all__ = ["CABLE", "PAD", "cart_agent", "cart_prompt", "step_of", "task_of"]

CABLE = "HDMI 2.1 Cable 2 m"
PAD = "Wireless Charging Pad 15 W"
_STEP_RE = re.compile(r"Step (\d+) of at most")
_TASK_RE = re.compile(r"<task>\n(.*?)\n</task>", re.S)
_URL_RE = re.compile(r"https?://[^\s\]\"]+")


def cart_prompt(shop: str, *, short: bool = False) -> str:
    """The task: `shop` is the demo shop's address (e.g. http://127.0.0.1:7860/demo/)."""
    if short:
        return f"Go to {shop} and add one \"{CABLE}\" to the cart [short]"
    return (f"Go to {shop}. Add 2 of \"{CABLE}\" and 1 \"{PAD}\" to the cart, then open the cart and "
            "return the cart total.")


def step_of(body: dict[str, Any]) -> int:
    """The step number the engine wrote in the request."""
    m = _STEP_RE.search(last_user_text(body))
    return int(m.group(1)) if m else 0


def task_of(body: dict[str, Any]) -> str:
    """The task as the engine wrote it in the request."""
    m = _TASK_RE.search(last_user_text(body))
    return m.group(1) if m else ""


def _search(body: dict[str, Any], query: str, goal: str) -> dict[str, Any]:
    return reply(goal, call("input", index=find_index(body, "Search products", tag="input"), text=query),
                 call("click", index=find_index(body, "Search", tag="button")))


def cart_agent(body: dict[str, Any]) -> Any:
    """The next step of the cart task, by the step number and the page (see the module's docstring)."""
    if not body.get("tools"):
        return reply("The page shows the cart.")
    step, task, text = step_of(body), task_of(body), last_user_text(body)
    short = "[short]" in task
    if step == 1:
        return reply("Open the demo shop.", call("navigate", url=_URL_RE.findall(task)[0].rstrip(".,")))
    if step == 2:
        return _search(body, "hdmi", "Search for HDMI cables.")
    if step == 3:
        return reply(f"Open {CABLE}.", call("click", index=find_index(body, CABLE, tag="a")))
    if short:
        if step == 4:
            return reply("Add it to the cart.", call("click", index=find_index(body, "Add to cart", tag="button")))
        return reply("Report it.", call("done", text=f"Added one {CABLE} to the cart.", success=True))
    if step == 4:
        return reply("Set the quantity to 2.", call("input", index=find_index(body, "quantity", tag="input"), text="2"))
    if step in (5, 8):
        return reply("Add it to the cart.", call("click", index=find_index(body, "Add to cart", tag="button")))
    if step == 6:
        return _search(body, "charging pad", "Search for the charging pad.")
    if step == 7:
        return reply(f"Open {PAD}.", call("click", index=find_index(body, PAD, tag="a")))
    if step == 9:
        return reply("Open the cart.", call("click", index=find_index(body, "Cart (", tag="a")))
    total = re.search(r"Total \| (€[\d.,]+)", text)
    answer = f"The cart total is {total.group(1)}." if total else "The cart total is not shown."
    return reply("Report the total.", call("done", text=answer, success=bool(total)))
