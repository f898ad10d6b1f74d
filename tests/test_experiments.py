"""Experiments end to end: the real app over HTTP, real Chromium, the fake model scripted per variant
(the `good` model solves every task, the `bad` one only some), every statistic checked against values
worked out by hand, every check kind through real runs, cancel and restart mid-experiment."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agent.testing.fakellm import FakeLLM, call, last_user_text, reply
from tests.apphelpers import App, poll

STEP_RE = re.compile(r"Step (\d+) of at most")
TASK_RE = re.compile(r"<task>\n(.*?)\n</task>", re.S)

# Seven tasks, one per automatic check kind and the judge; `good` passes all, `bad` passes [regex] twice
# and [contains] on its second try only.
TASKS = [
    {"id": "t-equals", "prompt": "Say the colour of the sky [equals]", "check": {"equals": "blue"}},
    {"id": "t-contains", "prompt": "Name the cheapest cable and its price [contains]",
     "check": {"contains": ["USB-C to USB-C Cable 0.5 m", "5.49"]}},
    {"id": "t-regex", "prompt": "Give an order number [regex]", "check": {"regex": "DS-[0-9A-F]{8}"}},
    {"id": "t-number", "prompt": "What is the cart total? [number]", "check": {"number": 43.93, "tolerance": 0.005}},
    {"id": "t-json", "prompt": "Return the product as JSON [json]", "response_format": "json",
     "json_schema": {"type": "object", "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
                     "required": ["name", "price"]},
     "check": {"json": {"name": "USB-C to USB-C Cable 0.5 m", "price": 5.49}}},
    {"id": "t-page", "prompt": "Open the cart of the demo shop [page]", "start_url": "{BASE_URL}/demo/",
     "check": {"page": "location.pathname.endsWith('/cart.html')"}},
    {"id": "t-judge", "prompt": "Who makes the studio headphones? [judge]",
     "check": {"judge": "The answer names Sonora.", "provider": "openai", "model": "judge-model"}},
]


class Script:
    """The fake model: answers by variant (the request's model) and task marker; counts tries."""

    def __init__(self) -> None:
        self.tries: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Any:
        model = str(body.get("model", ""))
        if not body.get("tools"):  # the judge (no tools): pass when the answer names Sonora
            answer = body["messages"][-1]["content"].split("<answer>")[1]
            verdict = "Sonora" in answer
            return reply(json.dumps({"pass": verdict, "score": 1.0 if verdict else 0.0, "reason": "checked"}))
        text = last_user_text(body)
        task = TASK_RE.search(text).group(1)  # type: ignore[union-attr]
        step = int(STEP_RE.search(text).group(1))  # type: ignore[union-attr]
        good = model.endswith("good")
        marker = re.search(r"\[(\w+)\]", task).group(1)  # type: ignore[union-attr]
        if "[slow]" in task:
            import time

            time.sleep(0.4)
            return reply("Keep going.", call("scroll", down=True))
        if marker == "page":
            if good and step <= 2:  # step 1 opened the start page: go to the cart
                url = re.search(r'<page url="([^"]+)"', text).group(1)  # type: ignore[union-attr]
                return reply("Open the cart.", call("navigate", url=url.rsplit("/", 1)[0] + "/cart.html"))
            return reply("Done.", call("done", text="here", success=True))
        if marker == "json":
            data = {"name": "USB-C to USB-C Cable 0.5 m", "price": 5.49 if good else 5.5}
            return reply("Report.", call("done", data=data, success=True))
        with self.lock:
            n = self.tries[(model, marker)] = self.tries.get((model, marker), 0) + 1
        answers = {
            "equals": ("blue", "red"), "regex": ("Order DS-1A2B3C4D", "Order DS-9F8E7D6C"),
            "number": ("The total is €43.93", "The total is €43.90"), "judge": ("Sonora makes them", "no idea"),
            "contains": ("USB-C to USB-C Cable 0.5 m at €5.49", "USB-C to USB-C Cable 0.5 m at €5.49" if n == 2
                         else "the 1 m cable at €8.99"),
        }
        right, wrong = answers[marker]
        return reply("Answer.", call("done", text=right if good else wrong, success=True))


@pytest.fixture(scope="module")
def model() -> Iterator[FakeLLM]:
    fake = FakeLLM(Script())
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def app(model: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    root = tmp_path_factory.mktemp("exp")
    running = App(root / "data", {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test",
                                  "MAX_CONCURRENT_RUNS": "4"}).start().ready()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(app: App) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.base, timeout=60) as client:
        yield client


def finished(http: httpx.Client, exp_id: int, timeout: float = 240) -> dict[str, Any]:
    return poll(lambda: (r := http.get(f"/api/experiments/{exp_id}").json())["status"] != "running" and r,
                timeout=timeout, what=f"experiment {exp_id} to end")


def test_statistics_of_a_finished_experiment_are_the_hand_computed_ones(http: httpx.Client) -> None:
    started = http.post("/api/experiments", json={
        "name": "good vs bad", "tasks": TASKS, "repeats": 2, "concurrency": 3,
        "variants": [{"name": "good", "model": "m-good"}, {"name": "bad", "model": "m-bad"}]})
    assert started.status_code == 202, started.text
    exp_id = started.json()["experiment_id"]
    report = finished(http, exp_id)
    assert (report["status"], report["progress"]) == ("done", {"done": 28, "total": 28, "running": 0})
    cells = {(c["task_id"], c["variant"], c["repeat"]): c for c in report["cells"]}
    assert all(c["status"] == "done" and c["run_id"] for c in cells.values())
    assert all(cells[(t["id"], "good", r)]["passed"] for t in TASKS for r in (1, 2)), report["cells"]
    bad_passes = sorted(k for k, c in cells.items() if k[1] == "bad" and c["passed"])
    assert bad_passes == [("t-contains", "bad", 2), ("t-regex", "bad", 1), ("t-regex", "bad", 2)]
    assert cells[("t-judge", "good", 1)]["graded_by"] == "judge" and cells[("t-equals", "bad", 1)]["graded_by"] == "check"
    good, bad = report["variants"]
    assert (good["name"], good["passes"], good["graded"], good["success_rate"]) == ("good", 14, 14, 1.0)
    assert (bad["name"], bad["passes"], bad["graded"]) == ("bad", 3, 14)
    # Wilson, z = 1.959964: 14/14 -> low = (1 + z²/28 - z·sqrt(z²/784)) / (1 + z²/14) = 0.784689;
    # 3/14 (p = 0.214286) -> centre = (p + z²/28) / (1 + z²/14) = 0.275803,
    # half = z·sqrt(p(1-p)/14 + z²/784) / (1 + z²/14) = 0.200089 -> (0.075714, 0.475892)
    assert (round(good["wilson_low"], 6), good["wilson_high"]) == (0.784689, 1.0)
    assert (round(bad["wilson_low"], 6), round(bad["wilson_high"], 6)) == (0.075714, 0.475892)
    # pass@k / pass^k with k = 2 tries per task: good 7/7 and 7/7; bad: any pass on regex and contains
    # (2/7 = 0.285714), every try on regex only (1/7 = 0.142857)
    assert (good["k"], good["pass_at_k"], good["pass_hat_k"]) == (2, 1.0, 1.0)
    assert (round(bad["pass_at_k"], 6), round(bad["pass_hat_k"], 6)) == (0.285714, 0.142857)
    assert good["mean_steps"] == pytest.approx(sum(c_steps(http, c) for k, c in cells.items() if k[1] == "good") / 14)
    # Paired: good passes more often on 6 tasks, they tie on t-regex; exact sign test 2·(1/2)^6 = 0.03125
    (verdict,) = report["comparisons"]
    assert (verdict["a"], verdict["b"], verdict["wins"], verdict["losses"], verdict["ties"]) == ("good", "bad", 0, 6, 1)
    assert verdict["p_value"] == pytest.approx(0.03125) and verdict["significant"]
    assert verdict["verdict"] == "good beats bad on 6 of 7 tasks, p = 0.031"
    matrix = {(m["task_id"], m["variant"]): (m["passes"], m["graded"]) for m in report["matrix"]}
    assert matrix[("t-contains", "bad")] == (1, 2) and matrix[("t-page", "good")] == (2, 2)
    page_cell = cells[("t-page", "bad", 1)]
    assert (page_cell["passed"], page_cell["detail"]) == (False, "the page check returned false")
    # every cell is an ordinary run: in the log, with its history
    run = http.get(f"/api/runs/{cells[('t-page', 'good', 1)]['run_id']}").json()
    assert run["status"] == "success" and run["history"][1]["actions"][0]["name"] == "navigate"
    listed = http.get("/api/experiments").json()
    assert listed["experiments"][0]["experiment_id"] == exp_id and listed["experiments"][0]["passes"] == 17
    # The judge's call is kept with the run it graded, as the agent's own calls are: what it was asked, its answer.
    exported = http.get(f"/api/runs/{cells[('t-judge', 'good', 1)]['run_id']}/export", params={"format": "json"})
    judged = [t for t in exported.json()["traces"] if t["purpose"] == "judge"]
    assert len(judged) == 1 and judged[0]["step"] == 0 and json.loads(judged[0]["reply"])["pass"] is True
    assert "The answer names Sonora." in judged[0]["messages"][-1]["content"]


async def test_the_experiments_notebook_shows_the_same_numbers(app: App, http: httpx.Client) -> None:
    from agent import analysis as an
    from tests.test_notebooks import execute, kernel_env

    listed = (await asyncio.to_thread(http.get, "/api/experiments")).json()["experiments"]
    exp_id = next(e["experiment_id"] for e in listed if e["name"] == "good vs bad")
    report = (await asyncio.to_thread(http.get, f"/api/experiments/{exp_id}")).json()

    def published() -> bool:  # the app publishes a snapshot a moment after the last grade
        con = an.connect(app.data_dir)
        try:
            frame = an.experiment_variants(exp_id, con=con)
            return list(frame.passes) == [14, 3]
        finally:
            con.close()

    await asyncio.to_thread(poll, published, timeout=30, what="the snapshot with every grade")
    done = await execute("05_experiments", {**kernel_env(app.data_dir, app.data_dir.parent / "exports"),
                                            "WORKBENCH_EXPERIMENT_ID": str(exp_id)})
    assert f"experiment {exp_id} (good vs bad): done, 28/28 runs, 2 repeats, backend local" in done.text
    assert "good: 14/14 passed, 100% (95% CI 78%–100%), pass@2 100%, pass^2 100%" in done.text
    assert "bad: 3/14 passed, 21% (95% CI 8%–48%), pass@2 29%, pass^2 14%" in done.text
    assert report["comparisons"][0]["verdict"] in done.text
    assert done.images.get("image/png", 0) >= 3  # the intervals, cost against success, the heat map


def c_steps(http: httpx.Client, cell: dict[str, Any]) -> int:
    return len(http.get(f"/api/runs/{cell['run_id']}").json()["history"])


@pytest.mark.parametrize(("body", "field", "fragment"), [
    ({"variants": [{"name": "A"}]}, "body", "give exactly one of tasks, tasks_jsonl or task_set"),
    ({"tasks": [], "variants": [{"name": "A"}]}, "tasks", "must be a non-empty list of tasks"),
    ({"tasks": [{"id": "a", "prompt": "abc", "check": {"vibes": 1}}], "variants": [{"name": "A"}]},
     "tasks[0].check", "unknown check kind 'vibes'"),
    ({"tasks": [{"id": "a", "prompt": "abc", "check": {"regex": "(oops"}}], "variants": [{"name": "A"}]},
     "tasks[0].check.regex", "is not a valid regular expression"),
    ({"task_set": "demo-shop", "variants": [{"name": "A"}], "repeats": 0}, "repeats", "greater than or equal to 1"),
    ({"task_set": "demo-shop", "variants": [{"name": "A"}, {"name": "B"}], "repeats": 20, "concurrency": 1} | {
        "tasks_jsonl": None}, "repeats", None),
    ({"task_set": "nope", "variants": [{"name": "A"}]}, "task_set", "unknown task set 'nope'"),
    ({"task_set": "demo-shop", "variants": [{"name": "A", "prompt": "x"}]}, "variants", "belongs to the task"),
    ({"task_set": "demo-shop", "variants": [{"name": "A", "provider": "nope"}]}, "variants", "provider"),
    ({"task_set": "demo-shop", "variants": []}, "variants", "at least 1"),
])
def test_bad_experiments_are_422_naming_the_field(http: httpx.Client, body: dict, field: str, fragment: str | None) -> None:
    if field == "repeats" and fragment is None:  # 14 tasks × 2 variants × 20 repeats = 560: fine; make it too many
        body = {**{k: v for k, v in body.items() if v is not None},
                "tasks": [{"id": f"t{i}", "prompt": "abc"} for i in range(60)]}
        body.pop("task_set")
        fragment = "60 tasks × 2 variants × 20 repeats = 2400 runs; the limit is 2000"
    r = http.post("/api/experiments", json=body)
    assert r.status_code == 422, r.text
    (detail,) = r.json()["detail"]
    assert detail["field"] == field and fragment in detail["message"], detail


def test_cancel_mid_experiment_keeps_finished_cells_and_leaves_none_running(http: httpx.Client) -> None:
    tasks = [{"id": "quick", "prompt": "Say the colour [equals]", "check": {"equals": "blue"}},
             {"id": "slow", "prompt": "Scroll for a long time [slow]", "max_steps": 60, "check": {"equals": "x"}}]
    exp_id = http.post("/api/experiments", json={"tasks": tasks, "repeats": 3, "concurrency": 2,
                                                 "variants": [{"name": "g", "model": "m-good"}]}).json()["experiment_id"]
    poll(lambda: (r := http.get(f"/api/experiments/{exp_id}").json()) and any(
        c["status"] == "done" for c in r["cells"]) and r["progress"]["running"] >= 1, timeout=120,
        what="a finished cell and a running one")
    cancelled = http.post(f"/api/experiments/{exp_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    report = finished(http, exp_id, timeout=60)
    assert report["status"] == "cancelled"
    statuses = [c["status"] for c in report["cells"]]
    assert "running" not in statuses and "pending" not in statuses
    done = [c for c in report["cells"] if c["status"] == "done"]
    assert done and all(c["task_id"] == "quick" and c["passed"] for c in done)
    for c in report["cells"]:
        if c["run_id"]:
            assert http.get(f"/api/runs/{c['run_id']}").json()["status"] != "in_progress"
    assert http.post(f"/api/experiments/{exp_id}/cancel").status_code == 409
    assert http.get("/api/experiments/987654").status_code == 404


def test_hand_grading_a_task_without_a_check(http: httpx.Client) -> None:
    exp_id = http.post("/api/experiments", json={"tasks": [{"id": "free", "prompt": "Say the colour [equals]"}],
                                                 "variants": [{"name": "g", "model": "m-good"}]}).json()["experiment_id"]
    report = finished(http, exp_id)
    (cell,) = report["cells"]
    assert (cell["status"], cell["passed"], cell["detail"]) == ("done", None, "no check: grade it by hand")
    graded = http.post(f"/api/experiments/{exp_id}/grade",
                       json={"task_id": "free", "variant": "g", "repeat": 1, "passed": True}).json()
    assert (graded["cells"][0]["passed"], graded["cells"][0]["graded_by"]) == (True, "hand")
    assert graded["variants"][0]["passes"] == 1
    bad = http.post(f"/api/experiments/{exp_id}/grade", json={"task_id": "nope", "variant": "g", "repeat": 1,
                                                               "passed": True})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "task_id"


def test_runs_lost_to_the_infrastructure_are_not_graded_and_counted_by_stop_reason(http: httpx.Client) -> None:
    # No Anthropic key in the app's environment: every run of that variant ends with missing_key.
    started = http.post("/api/experiments", json={
        "name": "no key", "tasks": TASKS[:2], "repeats": 2, "concurrency": 2,
        "variants": [{"name": "good", "model": "m-good"},
                     {"name": "keyless", "provider": "anthropic", "model": "claude-x"}]})
    assert started.status_code == 202, started.text
    report = finished(http, started.json()["experiment_id"])
    keyless = [c for c in report["cells"] if c["variant"] == "keyless"]
    assert len(keyless) == 4 and {c["stop_reason"] for c in keyless} == {"missing_key"}
    assert all(c["passed"] is None and c["run_outcome"] == "infrastructure" for c in keyless)
    assert all("no fair chance" in (c["detail"] or "") for c in keyless)
    variants = {v["name"]: v for v in report["variants"]}
    assert (variants["keyless"]["graded"], variants["keyless"]["success_rate"]) == (0, None)
    assert variants["keyless"]["infra_failures"] == 4 and variants["keyless"]["stop_reasons"] == {"missing_key": 4}
    assert (variants["good"]["graded"], variants["good"]["passes"], variants["good"]["infra_failures"]) == (4, 4, 0)
    assert variants["good"]["stop_reasons"] == {"done": 4}
