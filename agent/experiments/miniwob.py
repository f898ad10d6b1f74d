"""MiniWoB++ as a bundled task set: the benchmark's own pages and reward, played by our agent.

The `miniwob` package (Farama) ships the task pages; the workbench serves them itself at
`/miniwob/` (`html_dir()`), so no file: URL and no second server. Each task opens its page; the
`setup` script seeds the page's generator with the repeat number (every variant gets the same
episodes), gives the episode a time limit fit for LLM speeds, starts it and returns the instruction
the page generated, which is the prompt the model gets. The `page` check reads the reward the page
itself computed (MiniWoB's `core.endEpisode`: the raw reward, without the time penalty that assumes
human speeds), recorded the first time the episode ends, whatever the agent does after.

Reading a result next to published numbers: MiniWoB++ papers report the mean success rate (raw
reward > 0) over episodes; ours is the mean over tasks of each task's rate (the same when every task
has as many episodes), with an interval clustered by task (docs/miniwob.md).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

EPISODE_ENV = "MINIWOB_EPISODE_S"
DEFAULT_EPISODE_S = 300.0  # the page's own default is 10 s: fit for a script, not for a model
# The first end of the episode, kept apart: MiniWoB shows a START cover after it, and a click there
# would start a new episode and reset the page's own globals.
SETUP_JS = """(() => {
  Math.seedrandom('workbench-{task}-{repeat}');
  core.EPISODE_MAX_TIME = %(ms)d;
  window.__wbEpisode = {done: false, reward: 0, raw: 0, reason: null};
  const end = core.endEpisode;
  core.endEpisode = function () {
    const first = core.EP_TIMER !== null;
    end.apply(this, arguments);
    if (first && !window.__wbEpisode.done) {
      window.__wbEpisode = {done: true, reward: WOB_REWARD_GLOBAL, raw: WOB_RAW_REWARD_GLOBAL,
                            reason: WOB_REWARD_REASON};
    }
  };
  core.startEpisodeReal();
  return core.getUtterance();
})()"""
REWARD_JS = "(window.__wbEpisode && window.__wbEpisode.done) ? window.__wbEpisode.raw : 0"


def html_dir() -> Path | None:
    """The MiniWoB++ pages shipped by the `miniwob` package (found without importing it), or None."""
    spec = importlib.util.find_spec("miniwob")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "html"
    return path if (path / "miniwob").is_dir() else None


def episode_ms() -> int:
    """The episode time limit, in ms (MINIWOB_EPISODE_S, default 300 s)."""
    raw = os.environ.get(EPISODE_ENV, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_EPISODE_S
    except ValueError:
        raise ValueError(f"{EPISODE_ENV}={raw!r} is not a number of seconds; set it to e.g. 300") from None
    return int(max(5.0, seconds) * 1000)


@functools.cache
def _names() -> tuple[str, ...]:
    root = html_dir()
    return tuple(sorted(p.stem for p in (root / "miniwob").glob("*.html"))) if root else ()


def tasks() -> list[dict[str, Any]]:
    """Every MiniWoB++ task page as a task's fields (agent.experiments.tasks makes them Tasks): its page,
    the setup that starts an episode, the page's reward."""
    ms = episode_ms()
    out = []
    for name in _names():
        setup = (SETUP_JS % {"ms": ms}).replace("{task}", name)
        out.append({
            "id": name, "title": f"MiniWoB++ {name}", "prompt": "{instruction}",
            "start_url": f"{{BASE_URL}}/miniwob/miniwob/{name}.html", "setup": setup, "max_steps": 15,
            "check": {"page": REWARD_JS},
        })
    return out

