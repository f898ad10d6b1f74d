"""MiniWoB++ from the workbench: the pages served by the app itself, the episode started by the task's
setup (its instruction is the model's task), the reward read off the page by the benchmark's own
code. The fake model reads the observation like a model would: it solves click-button and enter-text,
and gets click-link wrong on purpose."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agent.experiments.miniwob import html_dir
from agent.testing.fakellm import FakeLLM, call, last_user_text, reply
from tests.apphelpers import App, poll

pytestmark = [pytest.mark.slow, pytest.mark.skipif(html_dir() is None, reason="the miniwob package is not installed")]
TASK_RE = re.compile(r"<task>\n(.*?)\n</task>", re.S)
LINE_RE = re.compile(r"^\s*\[(\d+)\]<(\w+)([^>]*)>(.*)$")


def elements(text: str) -> list[tuple[int, str, str, str]]:
    """(index, tag, attributes, visible text) of every element line of the observation."""
    return [(int(m.group(1)), m.group(2), m.group(3), m.group(4).strip())
            for m in map(LINE_RE.match, text.splitlines()) if m]


def solver(body: dict[str, Any]) -> Any:
    text = last_user_text(body)
    task = TASK_RE.search(text).group(1)  # type: ignore[union-attr]
    if "<previous_steps>\n(none yet" not in text and "Step 2 of" not in text:
        return reply("That was it.", call("done", text="done", success=True))
    found = elements(text)
    if m := re.match(r'Click on the "(.+)" button\.', task):
        index = next(i for i, tag, _a, label in found if tag == "button" and label == m.group(1))
        return reply("Click the button.", call("click", index=index))
    if m := re.match(r'Enter "(.+)" into the text field and press Submit\.', task):
        field = next(i for i, tag, attrs, _l in found if tag == "input" and "type=submit" not in attrs)
        submit = next(i for i, tag, attrs, label in found if "subbtn" in attrs or label == "Submit")
        return reply("Type and submit.", call("input", index=field, text=m.group(1)), call("click", index=submit))
    if m := re.match(r'Click on the link "(.+)"\.', task):  # wrong on purpose: another link (script-clickable spans)
        index = next(i for i, tag, _a, label in found if tag in ("a", "span") and label and label != m.group(1))
        return reply("Click a link.", call("click", index=index))
    return reply("I do not know this one.", call("done", text="unknown", success=False))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    model = FakeLLM(solver)
    running = App(tmp_path_factory.mktemp("miniwob") / "data",
                  {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "MAX_CONCURRENT_RUNS": "3"})
    running.start().ready()
    yield running
    running.stop()
    model.close()


def test_every_miniwob_task_is_listed_and_served(app: App) -> None:
    sets = {s["name"]: s for s in httpx.get(f"{app.base}/api/tasksets", timeout=30).json()["tasksets"]}
    assert sets["miniwob"]["source"] == "bundled" and sets["miniwob"]["task_count"] >= 100
    tasks = httpx.get(f"{app.base}/api/tasksets/miniwob", timeout=30).json()["tasks"]
    names = [t["id"] for t in tasks]
    assert len(names) == sets["miniwob"]["task_count"] and {"click-button", "enter-text", "click-link"} <= set(names)
    assert {next(iter(t["check"])) for t in tasks} == {"page"}
    page = httpx.get(f"{app.base}/miniwob/miniwob/click-button.html", timeout=30)
    assert page.status_code == 200 and "core.js" in page.text
    assert httpx.get(f"{app.base}/miniwob/core/core.js", timeout=30).status_code == 200


def test_solved_and_failed_episodes_are_graded_by_the_pages_own_reward(app: App) -> None:
    with httpx.Client(base_url=app.base, timeout=60) as http:
        started = http.post("/api/experiments", json={
            "name": "miniwob", "task_set": "miniwob", "task_glob": "click-button,enter-text,click-link",
            "repeats": 2, "concurrency": 2, "variants": [{"name": "fake", "model": "gpt-4o-mini"}]})
        assert started.status_code == 202, started.text
        exp_id = started.json()["experiment_id"]
        report = poll(lambda: (r := http.get(f"/api/experiments/{exp_id}").json())["status"] != "running" and r,
                      timeout=240, what="the MiniWoB experiment to end")
        assert report["status"] == "done"
        cells = {(c["task_id"], c["repeat"]): c for c in report["cells"]}
        assert {k: c["passed"] for k, c in cells.items()} == {
            ("click-button", 1): True, ("click-button", 2): True, ("enter-text", 1): True, ("enter-text", 2): True,
            ("click-link", 1): False, ("click-link", 2): False}
        assert cells[("click-button", 1)]["detail"] == "the page check returned 1"
        assert cells[("click-link", 1)]["detail"] == "the page check returned -1"
        run = http.get(f"/api/runs/{cells[('enter-text', 1)]['run_id']}").json()
        instruction = re.search(r"the page's instruction: (.+)$", run["history"][0]["description"]).group(1)
        assert re.fullmatch(r'Enter "\w+" into the text field and press Submit\.', instruction)
        typed = next(a for a in run["history"][1]["actions"] if a["name"] == "input")
        assert typed["params"]["text"] in instruction
        # the same seed for the same repeat: another run of enter-text, repeat 1, sees the same instance
        again = http.post("/api/experiments", json={
            "task_set": "miniwob", "task_glob": "enter-text", "variants": [{"name": "again", "model": "gpt-4o-mini"}]})
        second = poll(lambda: (r := http.get(f"/api/experiments/{again.json()['experiment_id']}").json())[
            "status"] != "running" and r, timeout=120, what="the second experiment")
        run2 = http.get(f"/api/runs/{second['cells'][0]['run_id']}").json()
        assert run2["history"][0]["description"] == run["history"][0]["description"]
        variant = report["variants"][0]
        assert (variant["passes"], variant["graded"]) == (4, 6)
