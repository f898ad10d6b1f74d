"""Experiments end to end: the real app over HTTP, real Chromium, the fake model scripted per variant
(the `good` model solves every task, the `bad` one only some), every statistic checked against scipy and
statsmodels or values worked out by hand, every check kind through real runs, what counts (lost runs
replayed then counted as failures, the variant's own failures, a failing judge), budgets and dry runs,
cancel mid-experiment, and a 2,000-cell report built off the event loop."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from scipy import stats as sp
from statsmodels.stats.proportion import proportion_confint

from agent import stats
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
            if model.endswith("judge-bad"):  # a judge that never answers with the asked-for JSON
                return reply("I would rather not say.")
            answer = body["messages"][-1]["content"].split("<answer>")[1]
            verdict = "Sonora" in answer
            return reply(json.dumps({"pass": verdict, "score": 1.0 if verdict else 0.0, "reason": "checked"}))
        text = last_user_text(body)
        task = TASK_RE.search(text).group(1)  # type: ignore[union-attr]
        step = int(STEP_RE.search(text).group(1))  # type: ignore[union-attr]
        good = model.endswith(("good", "ctxhard"))  # ctxhard: good, but its context overflows on [hard]
        marker = re.search(r"\[(\w+)\]", task).group(1)  # type: ignore[union-attr]
        if "[slow]" in task:
            time.sleep(0.4)
            return reply("Keep going.", call("scroll", down=True))
        if "[hard]" in task and model.endswith("ctxhard"):  # the variant's own failure: its context overflows
            return {"__status__": 400, "error": {"message": "This model's maximum context length is 8192 tokens",
                                                 "type": "invalid_request_error", "code": "context_length_exceeded"}}
        if "[walk]" in task and step <= 3:  # a few unhurried steps (time to cancel the run from outside)
            time.sleep(0.5)
            return reply("Look around.", call("scroll", down=True))
        if "[walk]" in task or "[hard]" in task:
            return reply("Answer.", call("done", text="blue", success=True))
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


def clustered(rates: list[float], tries: int) -> tuple[float, float]:
    """The clustered interval recomputed with scipy and statsmodels: Wilson at Korn-Graubard's effective n."""
    mean, t = float(np.mean(rates)), sp.t.ppf(0.975, len(rates) - 1)
    spread = float(np.var(rates, ddof=1)) / len(rates)
    n_eff = (min(tries, mean * (1 - mean) / spread) if spread > 0 and 0 < mean < 1 else tries) * (sp.norm.ppf(0.975) / t) ** 2
    low, high = proportion_confint(mean * n_eff, n_eff, method="wilson")
    return float(low), float(high)


def test_statistics_of_a_finished_experiment_are_the_reference_ones(http: httpx.Client) -> None:
    started = http.post("/api/experiments", json={
        "name": "good vs bad", "tasks": TASKS, "repeats": 2, "concurrency": 3,
        "variants": [{"name": "good", "model": "m-good"}, {"name": "bad", "model": "m-bad"}]})
    assert started.status_code == 202, started.text
    exp_id = started.json()["experiment_id"]
    report = finished(http, exp_id)
    assert (report["status"], report["stop_reason"]) == ("done", "done")
    assert report["progress"] == {"done": 28, "total": 28, "running": 0, "played": 28, "cancelled": 0, "pending": 0,
                                  "lost": 0, "text": "28 played of 28"}
    cells = {(c["task_id"], c["variant"], c["repeat"]): c for c in report["cells"]}
    assert all(c["status"] == "done" and c["run_id"] and c["run_ids"] == [c["run_id"]] for c in cells.values())
    assert all(cells[(t["id"], "good", r)]["outcome"] == "passed" for t in TASKS for r in (1, 2)), report["cells"]
    bad_passes = sorted(k for k, c in cells.items() if k[1] == "bad" and c["passed"])
    assert bad_passes == [("t-contains", "bad", 2), ("t-regex", "bad", 1), ("t-regex", "bad", 2)]
    assert cells[("t-judge", "good", 1)]["graded_by"] == "judge" and cells[("t-equals", "bad", 1)]["graded_by"] == "check"
    good, bad = report["variants"]
    assert (good["name"], good["passes"], good["failures"], good["lost"], good["success_rate"]) == ("good", 14, 0, 0, 1.0)
    assert (bad["name"], bad["passes"], bad["failures"], bad["tasks"]) == ("bad", 3, 11, 7)
    # The mean over tasks of each task's rate: bad passes t-contains 1/2 and t-regex 2/2, the rest 0/2.
    bad_rates = [0, 0.5, 1, 0, 0, 0, 0]
    assert bad["success_rate"] == pytest.approx(sum(bad_rates) / 7)
    assert (good["ci_low"], good["ci_high"]) == pytest.approx(clustered([1.0] * 7, 14), abs=1e-9)
    assert (bad["ci_low"], bad["ci_high"]) == pytest.approx(clustered(bad_rates, 14), abs=1e-9)
    # pass@k / pass^k at k = 2 (every task has 2 tries): good 7/7 and 7/7; bad: any pass on regex and contains
    # (2/7 = 0.285714), every try on regex only (1/7 = 0.142857)
    assert (good["k"], good["pass_at_k"], good["pass_hat_k"]) == (2, 1.0, 1.0)
    assert (round(bad["pass_at_k"], 6), round(bad["pass_hat_k"], 6)) == (0.285714, 0.142857)
    assert good["mean_steps"] == pytest.approx(sum(c_steps(http, c) for k, c in cells.items() if k[1] == "good") / 14)
    # The fake models have no price: their cost is unknown, never $0, and the report says so.
    assert (good["cost_usd"], good["unpriced_runs"]) == (None, 14)
    assert any(w.startswith("the cost of good is unknown") for w in report["warnings"])
    # bad against the baseline good: per-task differences; the exact sign-flip p over the 6 that differ is
    # 2/64 (only the two all-same-sign patterns reach |sum| = 5.5); a paired t interval over the 7 tasks.
    (c,) = report["comparisons"]
    diffs = np.array(bad_rates) - 1.0
    ci = sp.ttest_1samp(diffs, 0).confidence_interval(0.95)
    low, high = max(-1.0, ci.low), min(1.0, ci.high)  # a difference of rates lies in [-1, 1]
    assert (c["a"], c["b"], c["tasks"], c["difference"]) == ("good", "bad", 7, pytest.approx(diffs.mean()))
    assert (c["ci_low"], c["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert (c["p_value"], c["p_adjusted"], c["significant"]) == (pytest.approx(0.03125), pytest.approx(0.03125), True)
    assert c["verdict"] == f"bad − good = −79 points [{stats.points(low)}, {stats.points(high)}], p = 0.031 " \
                           "(Holm), 7 tasks"
    matrix = {(m["task_id"], m["variant"]): (m["passes"], m["tries"]) for m in report["matrix"]}
    assert matrix[("t-contains", "bad")] == (1, 2) and matrix[("t-page", "good")] == (2, 2)
    page_cell = cells[("t-page", "bad", 1)]
    assert (page_cell["passed"], page_cell["detail"]) == (False, "the page check returned false")
    # every cell is an ordinary run: in the log, with its history
    run = http.get(f"/api/runs/{cells[('t-page', 'good', 1)]['run_id']}").json()
    assert run["status"] == "success" and run["history"][1]["actions"][0]["name"] == "navigate"
    listed = http.get("/api/experiments").json()
    assert listed["experiments"][0]["experiment_id"] == exp_id and listed["experiments"][0]["passes"] == 17
    assert listed["experiments"][0]["variant_passes"] == [{"variant": "good", "passes": 14, "tries": 14},
                                                          {"variant": "bad", "passes": 3, "tries": 14}]
    light = http.get(f"/api/experiments/{exp_id}/progress").json()
    assert (light["status"], light["progress"]["played"], light["variant_passes"]) == (
        "done", 28, listed["experiments"][0]["variant_passes"])
    page = http.get(f"/api/experiments/{exp_id}", params={"cells_offset": 20, "cells_limit": 5}).json()
    assert [(x["task_id"], x["variant"], x["repeat"]) for x in page["cells"]] == [
        (c["task_id"], c["variant"], c["repeat"]) for c in report["cells"][20:25]]
    assert (page["cells_offset"], page["cells_total"], page["variants"]) == (20, 28, report["variants"])
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

    def published() -> bool:  # the app publishes a snapshot a moment after the last grade and the end
        con = an.connect(app.data_dir)
        try:
            frame = an.experiment_variants(exp_id, con=con)
            (status,) = con.execute("SELECT status FROM experiments WHERE id = ?", [exp_id]).fetchone()
            return list(frame.passes) == [14, 3] and status == "done"
        finally:
            con.close()

    await asyncio.to_thread(poll, published, timeout=30, what="the snapshot with every grade, the experiment done")
    done = await execute("05_experiments", {**kernel_env(app.data_dir, app.data_dir.parent / "exports"),
                                            "WORKBENCH_EXPERIMENT_ID": str(exp_id)})
    good, bad = report["variants"]
    ci = {v["name"]: f"{v['ci_low']:.0%}–{v['ci_high']:.0%}" for v in report["variants"]}
    assert f"experiment {exp_id} (good vs bad): done, 28/28 runs played, 2 repeats, backend local" in done.text
    assert f"good: 14/14 passed, 100% (95% CI {ci['good']}), pass@2 100%, pass^2 100%, 0 lost" in done.text
    assert f"bad: 3/14 passed, 21% (95% CI {ci['bad']}), pass@2 29%, pass^2 14%, 0 lost" in done.text
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
    ({"task_set": "demo-shop", "variants": [{"name": "A"}], "baseline": "Z"}, "baseline", "'Z' is not a variant"),
    ({"task_set": "demo-shop", "variants": [{"name": "A"}], "max_replays": 9}, "max_replays", "less than or equal"),
    # No Anthropic key in the app's environment: every run of that variant would be lost; refused, naming it.
    ({"tasks": TASKS[:1], "variants": [{"name": "good", "model": "m-good"},
                                       {"name": "keyless", "provider": "anthropic", "model": "claude-x"}]},
     "variants[1].provider", "variant 'keyless': No API key for provider 'anthropic': set ANTHROPIC_API_KEY"),
    ({"tasks": [{"id": "j", "prompt": "abc", "check": {"judge": "ok", "provider": "groq"}}],
      "variants": [{"name": "A", "model": "m-good"}]}, "tasks[0].check.provider", "the judge of task 'j'"),
    # A budget could never count runs of a model litellm cannot price: refused unless the variant gives a price.
    ({"tasks": TASKS[:1], "max_cost_usd": 1, "variants": [{"name": "A", "model": "m-good"}]}, "variants[0].model",
     "variant 'A': litellm has no price for the model 'm-good' (openai), so max_cost_usd could never count its runs"),
    ({"tasks": TASKS[:1], "variants": [{"name": "A", "model": "m-good", "max_cost_usd": 1}]}, "variants",
     "variants[0].max_cost_usd: litellm has no price for the model 'm-good' (openai)"),
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
    # By hand is a person's review of the cell's run (anonymous here: no key names the reviewer, none was given).
    assert (graded["cells"][0]["passed"], graded["cells"][0]["graded_by"]) == (True, "person")
    assert graded["variants"][0]["passes"] == 1
    (review,) = http.get(f"/api/runs/{cell['run_id']}/reviews").json()["reviews"]
    assert (review["reviewer"], review["verdict"], review["source"]) == ("anonymous", "pass", "anonymous")
    bad = http.post(f"/api/experiments/{exp_id}/grade", json={"task_id": "nope", "variant": "g", "repeat": 1,
                                                               "passed": True})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "task_id"


def test_what_counts_the_variants_own_failures_fail_and_a_failing_judge_leaves_cells_ungraded(
        http: httpx.Client) -> None:
    # B's runs of the hard task end in a context-window error: B's own failure (before, they were left out and B
    # showed 100% against A's 50%). The judge of t-judge-bad never answers with a verdict: asked twice, then the
    # cell is ungraded (judge_error), counted apart.
    tasks = [{"id": "t-easy", "prompt": "Say the colour of the sky [equals]", "check": {"equals": "blue"}},
             {"id": "t-hard", "prompt": "Read the whole catalogue [hard]", "check": {"equals": "blue"}},
             {"id": "t-judged", "prompt": "Who makes the studio headphones? [judge]",
              "check": {"judge": "The answer names Sonora.", "model": "judge-bad"}}]
    started = http.post("/api/experiments", json={"name": "what counts", "tasks": tasks, "repeats": 2,
                                                  "concurrency": 3, "variants": [
                                                      {"name": "A", "model": "m-good"},
                                                      {"name": "B", "model": "m-ctxhard",
                                                       "price_per_mtok": {"input": 1.0, "output": 2.0}}]})
    assert started.status_code == 202, started.text
    report = finished(http, started.json()["experiment_id"])
    cells = {(c["task_id"], c["variant"], c["repeat"]): c for c in report["cells"]}
    hard = cells[("t-hard", "B", 1)]
    assert (hard["outcome"], hard["passed"], hard["stop_reason"], hard["lost_reason"]) == (
        "failed", False, "model_error", None)
    judged = cells[("t-judged", "A", 1)]
    assert (judged["outcome"], judged["passed"], judged["ungraded_reason"]) == ("ungraded", None, "judge_error")
    assert judged["detail"].startswith("not graded (judge_error): the judge (openai/judge-bad) failed 2 times")
    exported = http.get(f"/api/runs/{judged['run_id']}/export", params={"format": "json"}).json()
    assert len([t for t in exported["traces"] if t["purpose"] == "judge"]) == 2  # asked again once
    a, b = report["variants"]
    assert (a["passes"], a["failures"], a["ungraded"], a["ungraded_reasons"], a["success_rate"]) == (
        4, 0, 2, {"judge_error": 2}, 1.0)
    assert (b["passes"], b["failures"], b["lost"], b["success_rate"]) == (2, 2, 0, 0.5)
    assert (a["not_graded"], b["not_graded"]) == ("2 (judge_error 2)", "2 (judge_error 2)")
    # B's price is given: its cost is known exactly (the fake answers 100 tokens in, 20 out per call).
    calls = sum(1 for c in report["cells"] if c["variant"] == "B"
                for item in http.get(f"/api/runs/{c['run_id']}").json()["history"]
                for call in item["llm_calls"] if call["input_tokens"])  # a failed call used no tokens: it costs 0
    assert b["cost_usd"] == pytest.approx(calls * (100 * 1.0 + 20 * 2.0) / 1e6) and b["unpriced_runs"] == 0
    (c,) = report["comparisons"]
    assert (c["a"], c["b"], c["tasks"], c["difference"]) == ("A", "B", 2, -0.5)


def test_a_run_stopped_from_outside_is_played_again_and_one_still_lost_counts_as_a_failure(
        http: httpx.Client) -> None:
    task = {"id": "walk", "prompt": "Walk around then say the colour of the sky [walk]", "check": {"equals": "blue"}}

    def cancel_first_run(exp_id: int) -> int:
        run_id = poll(lambda: http.get(f"/api/experiments/{exp_id}").json()["cells"][0]["run_id"], timeout=60,
                      what="the cell's run")
        assert http.post(f"/api/runs/{run_id}/cancel").status_code == 200
        return int(run_id)

    replayed = http.post("/api/experiments", json={"tasks": [task], "max_replays": 1,
                                                   "variants": [{"name": "A", "model": "m-good"}]}).json()
    first = cancel_first_run(replayed["experiment_id"])
    report = finished(http, replayed["experiment_id"])
    (cell,) = report["cells"]
    assert (cell["outcome"], cell["attempts"], cell["run_ids"][0], len(cell["run_ids"])) == ("passed", 2, first, 2)
    assert http.get(f"/api/runs/{first}").json()["stop_reason"] == "cancelled"  # kept in the log as it ended
    assert (report["variants"][0]["success_rate"], report["variants"][0]["lost"]) == (1.0, 0)

    lost = http.post("/api/experiments", json={"tasks": [task], "max_replays": 0,
                                               "variants": [{"name": "A", "model": "m-good"}]}).json()
    cancel_first_run(lost["experiment_id"])
    report = finished(http, lost["experiment_id"])
    (cell,) = report["cells"]
    assert (cell["outcome"], cell["lost_reason"], cell["passed"]) == ("lost", "cancelled", None)
    assert cell["detail"].startswith("lost (cancelled, played 1 time): cancelled; counted as a failure")
    (v,) = report["variants"]
    assert (v["success_rate"], v["success_rate_excluding_lost"], v["lost"], v["lost_reasons"], v["lost_text"]) == (
        0.0, None, 1, {"cancelled": 1}, "1 (cancelled 1)")
    assert report["status"] == "done"


def test_budgets_stop_the_experiment_and_the_run(http: httpx.Client) -> None:
    # 120 tokens a call at $1,000 per million: $0.12 a call. The experiment's budget of $0.20 is spent after
    # two one-call cells (one at a time): no new cell starts; it ends "budget", the rest not played.
    dear = {"input": 1000.0, "output": 1000.0}
    started = http.post("/api/experiments", json={
        "tasks": [{"id": f"t{i}", "prompt": f"Say the colour of the sky {i} [equals]", "check": {"equals": "blue"}}
                  for i in range(6)], "concurrency": 1, "max_cost_usd": 0.2,
        "variants": [{"name": "A", "model": "m-good", "price_per_mtok": dear}]})
    assert started.status_code == 202, started.text
    report = finished(http, started.json()["experiment_id"])
    assert (report["status"], report["stop_reason"]) == ("cancelled", "budget")
    assert (report["progress"]["played"], report["progress"]["cancelled"]) == (2, 4)
    assert report["progress"]["text"] == "2 played, 4 cancelled of 6"
    unplayed = [c for c in report["cells"] if c["status"] == "cancelled"]
    assert unplayed[0]["detail"] == "not played: the experiment's budget (max_cost_usd 0.2) was spent ($0.2400)"
    assert report["variants"][0]["cost_usd"] == pytest.approx(0.24)
    # A run's own budget: stopped after the step that spent it, with the new stop reason.
    run = http.post("/api/runs", json={"prompt": "Keep scrolling [slow]", "model": "m-good", "price_per_mtok": dear,
                                       "max_cost_usd": 0.1}).json()
    assert (run["status"], run["stop_reason"], len(run["history"])) == ("failure", "budget", 1)
    assert run["error"] == "spent $0.1200 on model calls, the run's budget (max_cost_usd 0.1); stopped before the " \
                           "next step"
    assert run["usage"]["cost_usd"] == pytest.approx(0.12)
    refused = http.post("/api/runs", json={"prompt": "Say hello [equals]", "model": "m-good", "max_cost_usd": 1})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "max_cost_usd"
    assert "litellm has no price for the model 'm-good'" in refused.json()["detail"][0]["message"]
    unpriced = http.post("/api/runs", json={"prompt": "Say the colour of the sky [equals]", "model": "m-good"}).json()
    assert (unpriced["usage"]["cost_usd"], unpriced["usage"]["unpriced_calls"]) == (None, 1)  # unknown, never 0


def test_a_dry_run_counts_cells_and_estimates_cost_and_mde(http: httpx.Client) -> None:
    tasks = [{"id": f"d{i}", "prompt": f"A task never run before {i} [equals]", "check": {"equals": "x"}}
             for i in range(6)]
    body = {"tasks": tasks, "repeats": 4, "variants": [
        {"name": "mini", "model": "gpt-4.1-mini"}, {"name": "own", "model": "m-good"},
        {"name": "priced", "model": "m-good", "price_per_mtok": {"input": 1.0, "output": 2.0}}], "dry_run": True}
    answer = http.post("/api/experiments", json=body)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert (got["dry_run"], got["cells"], got["tasks"], got["repeats"]) == (True, 72, 6, 4)
    mini, own, priced = got["variants"]
    # No past run of these prompts: the stated default, 8 steps × (6,000 in + 300 out) a run, × 6 tasks × 4 repeats.
    assert priced["estimated_cost_usd"] == pytest.approx(24 * 8 * (6000 * 1.0 + 300 * 2.0) / 1e6)
    assert mini["estimated_cost_usd"] > 0 and mini["price_per_mtok"]["input"] > 0
    assert own["estimated_cost_usd"] is None and "litellm has no price for 'm-good'" in own["reason"]
    assert got["estimated_cost_usd"] is None and got["cost_reason"].startswith("own: litellm has no price")
    assert got["expected_mde"] == pytest.approx(stats.expected_mde(6, 4))
    assert got["expected_mde_note"].startswith(f"differences under about {round(100 * got['expected_mde'])} points")
    listed = http.get("/api/experiments").json()["experiments"]
    assert all(e["name"] != "experiment" or e["progress"]["total"] != 72 for e in listed)  # nothing was started


def test_a_2000_cell_report_is_built_off_the_event_loop_and_paged(app: App, http: httpx.Client) -> None:
    tasks = [{"id": f"t{i:03d}", "prompt": f"Say the colour of the sky {i} [equals]", "check": {"equals": "blue"}}
             for i in range(100)]
    exp_id = http.post("/api/experiments", json={"tasks": tasks, "repeats": 10, "concurrency": 1, "variants": [
        {"name": "A", "model": "m-good"}, {"name": "B", "model": "m-bad"}]}).json()["experiment_id"]
    assert http.post(f"/api/experiments/{exp_id}/cancel").status_code == 200
    finished(http, exp_id)
    page = http.get(f"/api/experiments/{exp_id}", params={"cells_offset": 1990, "cells_limit": 100}).json()
    assert (len(page["cells"]), page["cells_total"], page["cells"][-1]["task_id"]) == (10, 2000, "t099")
    assert len(http.get(f"/api/experiments/{exp_id}").json()["cells"]) == 500  # a page by default

    # Sixteen full reports asked at once (~700 kB each): built on the event loop they queued every other request
    # behind them for seconds; built off it, /api/health keeps answering in well under a second.
    async def measure() -> tuple[list[int], float]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=app.base, timeout=120, limits=limits) as client:
            reports = asyncio.gather(*(client.get(f"/api/experiments/{exp_id}", params={"cells_limit": 2000})
                                       for _ in range(16)))
            worst = 0.0
            while not reports.done():
                t0 = time.perf_counter()
                assert (await client.get("/api/health")).status_code == 200
                worst = max(worst, time.perf_counter() - t0)
            return [len(r.content) for r in await reports], worst

    sizes, worst = asyncio.run(measure())
    assert all(size > 400_000 for size in sizes), sizes
    assert worst < 1.0, f"/api/health took {worst:.2f} s while reports were built"


# ------------------------------------------------------------------ the runner on a service in this process
def _report(store: Any, exp_id: int) -> dict[str, Any]:
    """The report as the service builds it (agent.service.door.get_experiment), from a store."""
    from agent.experiments.report import summary

    found = store.get_experiment(exp_id)
    found["cells"] = store.experiment_cells(exp_id)
    found["variants"] = store.experiment_variants(exp_id)
    found["matrix"] = store.experiment_matrix(exp_id)
    return summary(found)


def test_pass_at_k_in_the_report_uses_one_k(tmp_path: Any) -> None:
    # Task one passes 1 of 4; task two 1 of 1 graded (its judge failed on the 3 others). Before: "pass@1 = 100%,
    # pass^1 = 50%" (each task at its own k); at k = 1 both are the mean rate over tasks, 62.5%.
    from agent.log.store import Store

    store = Store(tmp_path / "data", snapshot_interval_s=None)
    try:
        exp_id = store.create_experiment(
            name="k", task_set=None, repeats=4, concurrency=1, backend="local", spec={},
            tasks=[{"id": t, "title": None, "prompt": "abc", "check": {"kind": "judge"}, "task": {"id": t, "prompt": "abc"}}
                   for t in ("one", "two")], variants=[{"name": "A", "overrides": {}}])
        for repeat in range(1, 5):
            store.finish_cell(exp_id, "one", "A", repeat, status="done", passed=repeat == 1, score=None, detail="",
                              graded_by="judge")
            store.finish_cell(exp_id, "two", "A", repeat, status="done", passed=True if repeat == 1 else None,
                              score=None, detail="the judge failed", graded_by=None)
        (v,) = _report(store, exp_id)["variants"]
        assert (v["k"], v["pass_at_k"], v["pass_hat_k"]) == (1, 0.625, 0.625)
        assert v["success_rate"] == 0.625
    finally:
        store.close()


def _graded_experiment(store: Any, passes: dict[str, dict[str, int]], repeats: int = 4) -> int:
    """An experiment whose cells are graded straight in the store: passes[variant][task] of `repeats` tries."""
    names, tasks = list(passes), list(next(iter(passes.values())))
    exp_id = store.create_experiment(
        name="graded", task_set=None, repeats=repeats, concurrency=1, backend="local", spec={},
        tasks=[{"id": t, "title": None, "prompt": "abc", "check": {"kind": "equals"}, "task": {"id": t, "prompt": "abc"}}
               for t in tasks], variants=[{"name": v, "overrides": {}} for v in names])
    for v in names:
        for t in tasks:
            for r in range(1, repeats + 1):
                store.finish_cell(exp_id, t, v, r, status="done", passed=r <= passes[v][t], score=None, detail="",
                                  graded_by="check")
    return int(exp_id)


def test_the_report_never_names_the_variant_with_the_lower_mean_the_winner(tmp_path: Any) -> None:
    # B passes one more try of 4 on 15 tasks and all 4 fewer on 5: A's mean is higher, yet the sign test said
    # "B beats A on 15 of 20 tasks, p = 0.041". And A 0/20 against B 20/20 over 5 tasks was "no detectable
    # difference ... at n = 20".
    from agent.log.store import Store

    store = Store(tmp_path / "data", snapshot_interval_s=None)
    try:
        a = {f"t{i:02d}": 2 if i < 15 else 4 for i in range(20)}
        b = {f"t{i:02d}": 3 if i < 15 else 0 for i in range(20)}
        (c,) = _report(store, _graded_experiment(store, {"A": a, "B": b}))["comparisons"]
        assert c["difference"] == pytest.approx(-0.0625) and not c["significant"]
        assert c["verdict"].startswith("not enough evidence that B differs from A: −6 points [")
        sure = {f"s{i}": 0 for i in range(5)}
        (c,) = _report(store, _graded_experiment(store, {"A": sure, "B": dict.fromkeys(sure, 4)}))["comparisons"]
        assert (c["difference"], c["p_value"]) == (1.0, 0.0625)
        assert c["verdict"].startswith("not enough evidence that B differs from A: +100 points [") and \
            c["verdict"].endswith("with 5 tasks no difference can reach p < 0.05 in a test over tasks: add tasks")
    finally:
        store.close()


def test_variants_that_lose_runs_at_different_rates_are_named_in_a_warning(tmp_path: Any) -> None:
    # B lost 10 of its 24 runs (counted as failures), A none: Fisher's exact test says the loss rates differ.
    from agent.log.store import Store

    store = Store(tmp_path / "data", snapshot_interval_s=None)
    try:
        exp_id = _graded_experiment(store, {"A": {f"t{i}": 3 for i in range(6)}, "B": {f"t{i}": 3 for i in range(6)}})
        lost = [(f"t{i}", r) for i in range(6) for r in (1, 2)][:10]
        for task, repeat in lost:
            store.finish_cell(exp_id, task, "B", repeat, status="done", passed=None, score=None, graded_by=None,
                              detail="lost (rate_limit, played 3 times)", lost_reason="rate_limit")
        report = _report(store, exp_id)
        a, b = report["variants"]
        assert (b["lost"], b["lost_reasons"], b["success_rate"]) == (10, {"rate_limit": 10}, pytest.approx(8 / 24))
        assert b["success_rate_excluding_lost"] == pytest.approx(sum(
            (3 - min(2, max(0, 10 - 2 * i))) / (4 - min(2, max(0, 10 - 2 * i))) for i in range(6)) / 6)
        p = sp.fisher_exact([[0, 24], [10, 14]]).pvalue
        assert report["warnings"] == [
            f"B lost 10 of 24 runs and A 0 of 24 (Fisher's exact test p = {p:.2g}): lost runs count as failures, so "
            "part of the difference may be the losses; compare success_rate_excluding_lost too"]
    finally:
        store.close()


def test_m008_gives_an_older_run_logs_cells_their_outcomes(tmp_path: Any) -> None:
    """An experiment an older version recorded: cells it left ungraded become lost (why, from the run's stop reason
    and its last failed call) or, when the variant caused the failure, failed; an interrupted cell is lost; an
    unpriced run's cost becomes unknown; one "done" with a cell never played runs again."""
    import duckdb

    from agent.log.migrations import MIGRATIONS
    from agent.log.store import Store

    data = tmp_path / "data"
    data.mkdir()
    con = duckdb.connect(str(data / "runs.duckdb"))
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")
    for fn in MIGRATIONS[:MIGRATIONS.index(next(m for m in MIGRATIONS if m.__name__ == "m008_experiment_outcomes"))]:
        fn(con)
        con.execute("INSERT INTO _migrations VALUES (?, now())", [fn.__name__])
    con.execute("INSERT INTO tasks VALUES (1, 'p', '{}', now(), NULL)")
    runs = [(1, "success", "done", 0.002, None), (2, "failure", "model_error", 0.0, "rate_limit: slow down"),
            (3, "failure", "model_error", 0.0, "context_window: too long"), (4, "failure", "interrupted", 0.0, None)]
    for run_id, status, stop, cost, error in runs:
        con.execute("INSERT INTO runs (id, task_id, status, stop_reason, mode, created_at, started_at, request_json, "
                    "cost_usd) VALUES (?, 1, ?, ?, 'agent', now(), now(), '{}', ?)", [run_id, status, stop, cost])
        con.execute("INSERT INTO llm_calls VALUES (?, 0, 1, 0, 'm', 'openai', 'step', now(), 1.0, 10, 2, ?, NULL, ?)",
                    [run_id, 0.002 if run_id == 1 else None, error])
    for exp_id, status in ((1, "done"), (2, "done")):
        con.execute("INSERT INTO experiments VALUES (?, 'old', ?, NULL, 4, 1, 'local', now(), now(), NULL, '{}')",
                    [exp_id, status])
        con.execute("INSERT INTO experiment_tasks VALUES (?, 't', 0, NULL, 'p', 'equals', '{}')", [exp_id])
        con.execute("INSERT INTO experiment_variants VALUES (?, 'A', 0, '{}')", [exp_id])
    cells = [(1, 1, "done", 1, True), (1, 2, "done", 2, None), (1, 3, "done", 3, None), (1, 4, "interrupted", 4, None),
             (2, 1, "pending", None, None)]
    for exp_id, repeat, status, run_id, passed in cells:
        con.execute("INSERT INTO experiment_cells (experiment_id, task_key, variant, repeat, status, run_id, passed) "
                    "VALUES (?, 't', 'A', ?, ?, ?, ?)", [exp_id, repeat, status, run_id, passed])
    con.close()

    store = Store(data, snapshot_interval_s=None)
    try:
        got = [(c["repeat"], c["status"], c["outcome"], c["lost_reason"], c["cost_usd"])
               for c in store.experiment_cells(1)]
        # run 3's context window is the variant's own failure: graded failed (the old version left it out)
        assert got == [(1, "done", "passed", None, 0.002), (2, "done", "lost", "rate_limit", None),
                       (3, "done", "failed", None, None), (4, "done", "lost", "interrupted", None)]
        (v,) = store.experiment_variants(1)
        assert (v["passes"], v["failures"], v["lost"], v["success_rate"], v["cost_usd"], v["unpriced_runs"]) == (
            1, 1, 2, 0.25, None, 3)
        assert store.unfinished_experiments() == [2]  # marked done with a cell never played: it runs again
    finally:
        store.close()


@pytest.fixture
def quick_model(fake_llm: FakeLLM) -> FakeLLM:
    """Every task answered "blue" after a short think (cells overlap); the fake_llm fixture sets the env."""
    def answer(body: dict[str, Any]) -> Any:
        time.sleep(0.3)
        return reply("Answer.", call("done", text="blue", success=True))

    fake_llm.reset(answer)
    return fake_llm


async def test_cells_wait_for_room_when_the_run_queue_is_full_and_the_form_still_gets_one(
        browser: Any, quick_model: FakeLLM, tmp_path: Any, site_url: str) -> None:
    # One run at a time, one queued: six cells at concurrency 4 used to fail with ServiceBusy inside the runner,
    # and the experiment was marked "done" with 2 of 6 played.
    from agent.experiments.runner import ExperimentRunner
    from agent.log.store import Store
    from agent.service.runs import RunService

    store = Store(tmp_path / "data", snapshot_interval_s=None)
    service = RunService(store, browser, data_dir=store.data_dir, max_concurrent=1, max_queued=1)
    runner = ExperimentRunner(service, base_url=site_url)
    await service.start()
    try:
        exp_id = await runner.start({"concurrency": 4, "variants": [{"name": "A", "model": "m-good"}], "tasks": [
            {"id": f"t{i}", "prompt": f"Say the colour of the sky {i}", "check": {"equals": "blue"}} for i in range(6)]})
        for _ in range(300):  # a cell is running: the queue is as full as a batch may make it
            if store.get_experiment(exp_id)["running"]:
                break
            await asyncio.sleep(0.05)
        _task_id, form_run = await service.submit({"prompt": "A run from the form", "model": "m-good"})
        assert (await service.wait(form_run, timeout=120)).status == "success"
        for _ in range(1200):
            if not runner.is_running(exp_id):
                break
            await asyncio.sleep(0.1)
        report = _report(store, exp_id)
        assert report["status"] == "done" and [c["passed"] for c in report["cells"]] == [True] * 6
    finally:
        await runner.close()
        await service.close()
        store.close()


async def test_an_experiment_left_done_with_unplayed_cells_resumes_at_the_next_start(
        browser: Any, quick_model: FakeLLM, tmp_path: Any, site_url: str) -> None:
    # What an older version left behind: "done", with cells never played. The next start plays them.
    from agent.experiments.runner import ExperimentRunner
    from agent.log.store import Store
    from agent.service.runs import RunService

    store = Store(tmp_path / "data", snapshot_interval_s=None)
    task = {"id": "sky", "prompt": "Say the colour of the sky", "check": {"equals": "blue"}}
    exp_id = store.create_experiment(
        name="left", task_set=None, repeats=2, concurrency=2, backend="local",
        spec={"tasks": [task], "variants": [{"name": "A", "model": "m-good"}], "repeats": 2, "concurrency": 2},
        tasks=[{"id": "sky", "title": None, "prompt": task["prompt"], "check": {"kind": "equals"}, "task": task}],
        variants=[{"name": "A", "overrides": {"model": "m-good"}}])
    store.set_experiment_status(exp_id, "done")
    service = RunService(store, browser, data_dir=store.data_dir)
    runner = ExperimentRunner(service, base_url=site_url)
    await service.start()
    try:
        assert await runner.resume() == [exp_id]
        for _ in range(1200):
            if not runner.is_running(exp_id):
                break
            await asyncio.sleep(0.1)
        report = _report(store, exp_id)
        assert report["status"] == "done" and [c["passed"] for c in report["cells"]] == [True, True]
    finally:
        await runner.close()
        await service.close()
        store.close()
