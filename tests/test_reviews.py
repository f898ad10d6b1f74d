"""Human review of runs, judges measured against people, and experiments compared with experiments, through the
real app over HTTP (and its page in real Chromium), with the fake model answering as the agent and as two judges.

What is worked out here by hand: the confusion matrices, agreements and Cohen's kappa of the two judges (and the
large-sample standard error of one of them); which run regressed between two experiments. The run log's success
views are checked to count what was graded (a check, a judge, a person), not what the agent claimed, on a real
store; the migration is checked on a run log an older version wrote.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import pytest_asyncio

from agent import stats
from agent.testing.fakellm import FakeLLM, call, last_user_text, reply
from tests.apphelpers import App, poll
from tests.test_prompt_loop import history_state
from tests.test_ui import box, pick, until

TASK_RE = re.compile(r"<task>\n(.*?)\n</task>", re.S)
UNNAMED_KEY = "unnamed-key-0123456789abcdef"
ALICE_KEY, BOB_KEY = "alice-key-0123456789abcdef", "bob-key-0123456789abcdefgh"
RUBRIC = "The answer says blue."
HOLD = threading.Event()  # a run whose task says [hold] waits for this (a run still in progress, on demand)


def model(body: dict[str, Any]) -> Any:
    """The agent answers the colour its task names ([blue], [red]); m-v2 answers red on task (d3): the planted
    regression. Judges (no tools): judge-a passes answers that say blue, judge-b passes everything."""
    name = str(body.get("model"))
    if not body.get("tools"):
        answer = body["messages"][-1]["content"].split("<answer>")[1]
        verdict = "blue" in answer if name == "judge-a" else True
        return reply(json.dumps({"pass": verdict, "score": float(verdict), "reason": f"{name} read it"}))
    task = TASK_RE.search(last_user_text(body)).group(1)  # type: ignore[union-attr]
    if "[hold]" in task:
        HOLD.wait(60)
    colour = re.search(r"\[(blue|red)\]", task).group(1)  # type: ignore[union-attr]
    if name == "m-v2" and "(d3)" in task:
        colour = "red"
    return reply("Answer.", call("done", text=colour, success=True))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    server = FakeLLM(model)
    yield server
    server.close()


@pytest.fixture(scope="module")
def app(fake: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    running = App(tmp_path_factory.mktemp("reviews") / "data", {
        "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test", "MAX_CONCURRENT_RUNS": "4",
        "WORKBENCH_API_KEY": UNNAMED_KEY, "WORKBENCH_API_KEYS": f"alice:{ALICE_KEY}, bob:{BOB_KEY}"})
    running.start().ready(headers={"X-API-Key": UNNAMED_KEY})
    yield running
    HOLD.set()
    running.stop()


def client(app: App, key: str) -> httpx.Client:
    return httpx.Client(base_url=app.base, headers={"X-API-Key": key}, timeout=120)


@pytest.fixture(scope="module")
def http(app: App) -> Iterator[httpx.Client]:
    with client(app, UNNAMED_KEY) as c:
        yield c


def finished(http: httpx.Client, exp_id: int) -> dict[str, Any]:
    return poll(lambda: (r := http.get(f"/api/experiments/{exp_id}").json())["status"] != "running" and r,
                timeout=240, what=f"experiment {exp_id} to end")


def start(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    started = http.post("/api/experiments", json=body)
    assert started.status_code == 202, started.text
    return finished(http, started.json()["experiment_id"])


JUDGED_TASKS = [{"id": f"j{i}", "prompt": f"Say the colour [{c}] (j{i})",
                 "check": {"judge": RUBRIC, "provider": "openai", "model": "judge-a"}}
                for i, c in enumerate(["blue", "blue", "blue", "red", "red", "red"], start=1)]


@pytest.fixture(scope="module")
def judged(http: httpx.Client) -> dict[str, Any]:
    """Six tasks graded by judge-a (it passes j1-j3, fails j4-j6)."""
    report = start(http, {"name": "judged", "tasks": JUDGED_TASKS, "variants": [{"name": "A", "model": "m-v1"}]})
    assert [(c["task_id"], c["outcome"], c["graded_by"]) for c in report["cells"]] == [
        (f"j{i}", "passed" if i <= 3 else "failed", "judge") for i in range(1, 7)]
    return report


# ------------------------------------------------------------------ reviews
def test_reviews_by_two_reviewers_the_latest_counting_and_named_keys(app: App, http: httpx.Client) -> None:
    run = http.post("/api/runs", json={"prompt": "Say the colour [blue] (r1)", "model": "m-v1"}).json()
    run_id = run["task_run_id"]
    assert run["status"] == "success"  # the agent claims success; people will say otherwise
    with client(app, ALICE_KEY) as alice, client(app, BOB_KEY) as bob:
        first = alice.post(f"/api/runs/{run_id}/reviews", json={"verdict": "pass", "comment": "looks right"})
        assert first.status_code == 201, first.text
        assert first.json()["review"] | {"created_at": None, "review_id": None} == {
            "review_id": None, "task_run_id": run_id, "reviewer": "alice", "verdict": "pass", "score": 1.0,
            "comment": "looks right", "created_at": None, "latest": True, "source": "api_key", "cell": None}
        assert bob.post(f"/api/runs/{run_id}/reviews", json={"verdict": "fail", "score": 0.2}).status_code == 201
        again = alice.post(f"/api/runs/{run_id}/reviews", json={"verdict": "fail", "comment": "wrong shade",
                                                                "reviewer": "alice"})
        assert again.status_code == 201
        # The body cannot speak for someone else when the key names its holder.
        spoofed = alice.post(f"/api/runs/{run_id}/reviews", json={"verdict": "pass", "reviewer": "bob"})
        assert spoofed.status_code == 422
        assert spoofed.json()["detail"][0]["field"] == "reviewer" and "belongs to 'alice'" in \
            spoofed.json()["detail"][0]["message"]
    # The unnamed key (WORKBENCH_API_KEY still works): the body names the reviewer.
    carol = http.post(f"/api/runs/{run_id}/reviews", json={"verdict": "pass", "reviewer": "carol"}).json()["review"]
    assert (carol["reviewer"], carol["source"]) == ("carol", "body")
    got = http.get(f"/api/runs/{run_id}/reviews").json()
    assert [(r["reviewer"], r["verdict"], r["latest"]) for r in got["reviews"]] == [
        ("alice", "pass", False), ("bob", "fail", True), ("alice", "fail", True), ("carol", "pass", True)]
    assert got["reviewers"] == {"alice": "fail", "bob": "fail", "carol": "pass"}
    assert got["verdict"] == "pass"  # the latest review is the people's verdict
    assert all(r["created_at"] for r in got["reviews"])
    grades = http.get(f"/api/runs/{run_id}/grades").json()
    assert (grades["graded_by"], grades["passed"], grades["claimed_success"], grades["reviewers"]) == (
        "person", True, True, 3)
    # Without a key, nothing; the keys never reach the log.
    assert httpx.post(f"{app.base}/api/runs/{run_id}/reviews", json={"verdict": "pass"}).status_code == 401
    log = app.log()
    assert ALICE_KEY not in log and BOB_KEY not in log and UNNAMED_KEY not in log


def test_a_person_s_fail_counts_in_the_run_totals_and_a_run_in_progress_waits(http: httpx.Client) -> None:
    run = http.post("/api/runs", json={"prompt": "Say the colour [blue] (r2)", "model": "m-v1"}).json()
    before = http.get("/api/runs", params={"q": "(r2)"}).json()["totals"]
    assert (before["successes"], before["claimed_successes"], before["graded"]) == (1, 1, 0)
    http.post(f"/api/runs/{run['task_run_id']}/reviews", json={"verdict": "fail", "reviewer": "dana"})
    after = http.get("/api/runs", params={"q": "(r2)"}).json()["totals"]
    assert (after["successes"], after["success_rate"], after["claimed_successes"], after["graded"]) == (0, 0, 1, 1)
    HOLD.clear()
    held = http.post("/api/runs", json={"prompt": "Say the colour [blue] (r3) [hold]", "model": "m-v1",
                                        "wait_for_completion": False}).json()
    try:
        early = http.post(f"/api/runs/{held['task_run_id']}/reviews", json={"verdict": "pass"})
        assert early.status_code == 409 and "still running" in early.json()["detail"]
    finally:
        HOLD.set()
    assert http.post("/api/runs/987654321/reviews", json={"verdict": "pass"}).status_code == 404


@pytest.mark.parametrize(("body", "field", "fragment"), [
    ({}, "verdict", "is required"),
    ({"verdict": "maybe"}, "verdict", 'must be "pass" or "fail"'),
    ({"verdict": "pass", "score": 1.5}, "score", "from 0 to 1"),
    ({"verdict": "pass", "comment": "x" * 4001}, "comment", "at most 4000 characters"),
    ({"verdict": "pass", "reviewer": "<b>x</b>"}, "reviewer", "letters, digits"),
    ({"verdict": "pass", "mood": "good"}, "mood", "unknown field"),
    (["pass"], "body", "JSON object"),
])
def test_bad_reviews_are_422_naming_the_field(http: httpx.Client, body: Any, field: str, fragment: str) -> None:
    run_id = http.get("/api/runs", params={"limit": 1}).json()["runs"][0]["task_run_id"]
    answer = http.post(f"/api/runs/{run_id}/reviews", json=body)
    assert answer.status_code == 422, answer.text
    first = answer.json()["detail"][0]
    assert first["field"] == field and fragment in first["message"], first


# ------------------------------------------------------------------ judges against people
def test_a_second_judge_beside_the_first_and_both_measured_against_people(app: App, http: httpx.Client,
                                                                          judged: dict[str, Any]) -> None:
    exp_id = judged["experiment_id"]
    runs = {c["task_id"]: c["run_id"] for c in judged["cells"]}
    queue = {r["task_run_id"]: r["reason"] for r in http.get("/api/reviews/queue", params={"limit": 1000}).json()[
        "runs"]}
    assert {queue.get(runs[t]) for t in runs} == {"judged"}  # judged, nobody reviewed them yet
    # Judge again with judge-b (the tasks' own rubric): no agent call, no browser; beside judge-a's verdicts.
    calls_before = len([t for t in http.get(f"/api/runs/{runs['j1']}/export").json()["traces"]
                        if t["purpose"] == "judge"])
    again = http.post(f"/api/experiments/{exp_id}/judge", json={"provider": "openai", "model": "judge-b"})
    assert again.status_code == 200, again.text
    assert again.json() | {"started_at": None} == {
        "experiment_id": exp_id, "grader": "openai/judge-b", "provider": "openai", "model": "judge-b",
        "rubric": None, "rubric_hashes": [stats_hash(RUBRIC)], "status": "done", "cells": 6, "judged": 6,
        "passed": 6, "failed": 0, "errors": 0, "skipped": 0, "error": None, "started_at": None,
        "skipped_why": None}
    gradings = http.get(f"/api/runs/{runs['j4']}/grades").json()
    assert [(g["kind"], g["grader"], g["verdict"], g["latest"]) for g in gradings["gradings"]] == [
        ("judge", "openai/judge-a", "fail", True), ("judge", "openai/judge-b", "pass", True)]
    assert (gradings["graded_by"], gradings["passed"], gradings["queue_reason"]) == ("judge", False, "disagreement")
    traces = [t for t in http.get(f"/api/runs/{runs['j1']}/export").json()["traces"] if t["purpose"] == "judge"]
    assert len(traces) == calls_before + 1 and traces[-1]["model"] == "openai/judge-b"  # the judge's call, traced
    assert RUBRIC in traces[-1]["messages"][-1]["content"]
    report = http.get(f"/api/experiments/{exp_id}").json()
    assert [c["graded_by"] for c in report["cells"]] == ["judge"] * 6  # the cells keep their own judge's grade
    # The queue: where the judges disagree first (j4-j6), then judged runs (j1-j3); the history's filter agrees.
    listed = http.get("/api/reviews/queue", params={"limit": 1000}).json()["runs"]
    ours = [r for r in listed if r["experiment_id"] == exp_id]
    newest_first = sorted(runs, key=lambda t: -runs[t])
    assert [(r["task_key"], r["reason"]) for r in ours] == [
        *[(t, "disagreement") for t in newest_first if t in ("j4", "j5", "j6")],
        *[(t, "judged") for t in newest_first if t in ("j1", "j2", "j3")]]
    assert listed.index(ours[0]) < listed.index(ours[3])
    queued = {r["task_run_id"] for r in http.get("/api/runs", params={"review": "queue", "limit": 1000}).json()[
        "runs"]}
    assert queued == {r["task_run_id"] for r in listed}
    # People: j1, j2 pass; j3 fails (judge-a passed it); j4, j5 fail; j6 passes (judge-a failed it).
    verdicts = {"j1": "pass", "j2": "pass", "j3": "fail", "j4": "fail", "j5": "fail", "j6": "pass"}
    with client(app, ALICE_KEY) as alice, client(app, BOB_KEY) as bob:
        for task, verdict in verdicts.items():
            who = alice if task in ("j1", "j2", "j3") else bob
            assert who.post(f"/api/runs/{runs[task]}/reviews", json={"verdict": verdict}).status_code == 201
    after = http.get(f"/api/experiments/{exp_id}").json()
    assert [(c["task_id"], c["passed"], c["graded_by"]) for c in after["cells"]] == [
        (t, v == "pass", "person") for t, v in verdicts.items()]  # a review of a cell's run grades the cell
    assert after["variants"][0]["passes"] == 3
    assert not {runs[t] for t in runs} & {r["task_run_id"] for r in http.get(
        "/api/reviews/queue", params={"limit": 1000}).json()["runs"]}  # reviewed: out of the queue
    reviewed = {r["task_run_id"] for r in http.get("/api/runs", params={"review": "reviewed", "limit": 1000}).json()[
        "runs"]}
    assert set(runs.values()) <= reviewed

    judges = {j["judge"]: j for j in http.get("/api/judges", params={"experiment_id": exp_id}).json()["judges"]}
    a, b = judges["openai/judge-a"], judges["openai/judge-b"]
    # By hand. judge-a against people: pass·pass j1 j2, pass·fail j3, fail·pass j6, fail·fail j4 j5. Agreement 4/6;
    # each rater passes half: chance agreement 1/2; kappa = (2/3 - 1/2) / (1 - 1/2) = 1/3. Its variance
    # (Fleiss-Cohen-Everitt): [2·(1/3)·(1 - (2/3))² + (2/3)²·2·(1/6)·1² - 0] / (6·(1/2)²) = (6/27) / (3/2) = 4/27.
    assert a["confusion"] == {"judge_pass_person_pass": 2, "judge_pass_person_fail": 1, "judge_fail_person_pass": 1,
                              "judge_fail_person_fail": 2}
    assert (a["n"], a["runs_judged"], a["rubric_hash"], a["rubric"]) == (6, 6, stats_hash(RUBRIC), RUBRIC)
    assert a["agreement"] == pytest.approx(4 / 6) and a["kappa"] == pytest.approx(1 / 3)
    assert a["kappa_se"] == pytest.approx(math.sqrt(4 / 27))
    assert (a["kappa_low"], a["kappa_high"]) == (pytest.approx(1 / 3 - stats.Z95 * math.sqrt(4 / 27)), 1.0)
    assert a["sentence"].startswith("openai/judge-a agrees with people on 4 of 6 runs (67%")
    # judge-b passes everything: agreement 3/6, chance agreement 1·(1/2) = 1/2, kappa 0. Its large-sample SE is 0
    # (kappa is 0 whatever people say); the interval is the agreement's Wilson interval carried over instead.
    assert b["confusion"] == {"judge_pass_person_pass": 3, "judge_pass_person_fail": 3, "judge_fail_person_pass": 0,
                              "judge_fail_person_fail": 0}
    assert (b["n"], b["agreement"], b["kappa"], b["kappa_se"]) == (6, 0.5, 0.0, 0.0)
    low, high = stats.wilson(3, 6)
    assert (b["kappa_low"], b["kappa_high"]) == (pytest.approx((low - 0.5) / 0.5), pytest.approx((high - 0.5) / 0.5))
    assert "passed 3 that people failed" in b["sentence"]
    # A re-judge needs a model and a provider with a key; an unknown experiment is a 404.
    bad = http.post(f"/api/experiments/{exp_id}/judge", json={"provider": "anthropic", "model": "claude-x"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "provider"
    assert http.post(f"/api/experiments/{exp_id}/judge", json={}).json()["detail"][0]["field"] == "model"
    assert http.post("/api/experiments/98765/judge", json={"model": "judge-b"}).status_code == 404
    too_many = http.post(f"/api/experiments/{exp_id}/judge", json={"model": "judge-b", "concurrency": 99})
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["field"] == "concurrency"
    odd = http.get("/api/reviews/queue", params={"reason": "vibes"})
    assert odd.status_code == 422 and odd.json()["detail"][0]["field"] == "reason"


def stats_hash(rubric: str) -> str:
    import hashlib

    return hashlib.sha256(rubric.encode()).hexdigest()[:16]


def test_hand_grading_goes_through_the_reviews(app: App, http: httpx.Client) -> None:
    report = start(http, {"tasks": [{"id": "free", "prompt": "Say the colour [blue] (h1)"}],
                          "variants": [{"name": "g", "model": "m-v1"}]})
    (cell,) = report["cells"]
    assert (cell["passed"], cell["detail"]) == (None, "no check: grade it by hand")
    with client(app, BOB_KEY) as bob:
        graded = bob.post(f"/api/experiments/{report['experiment_id']}/grade", json={
            "task_id": "free", "variant": "g", "repeat": 1, "passed": False, "comment": "not what I asked"}).json()
    assert (graded["cells"][0]["passed"], graded["cells"][0]["graded_by"]) == (False, "person")
    assert graded["cells"][0]["detail"] == "reviewed by bob: not what I asked"
    (review,) = http.get(f"/api/runs/{cell['run_id']}/reviews").json()["reviews"]
    assert (review["reviewer"], review["verdict"], review["cell"]) == ("bob", "fail", {
        "experiment_id": report["experiment_id"], "task_id": "free", "variant": "g", "repeat": 1})


# ------------------------------------------------------------------ experiments compared with experiments
DIFF_TASKS = [{"id": f"d{i}", "prompt": f"Say the colour [blue] (d{i})", "check": {"equals": "blue"}}
              for i in range(1, 7)]


@pytest.fixture(scope="module")
def diffed(http: httpx.Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """Before: m-v1 passes all six; after: m-v2 fails d3 (the planted regression), and d2 has a new id."""
    before = start(http, {"name": "before", "tasks": DIFF_TASKS, "variants": [{"name": "A", "model": "m-v1"}]})
    renamed = [t | {"id": "d2-renamed"} if t["id"] == "d2" else t for t in DIFF_TASKS]
    after = start(http, {"name": "after", "tasks": renamed, "variants": [{"name": "A", "model": "m-v2"}]})
    return before, after


def test_an_experiment_diff_lists_the_planted_regression_first(http: httpx.Client,
                                                               diffed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    before, after = diffed
    a_id, b_id = before["experiment_id"], after["experiment_id"]
    diff = http.get(f"/api/experiments/{a_id}/diff/{b_id}").json()
    assert (diff["regressions"], diff["improvements"], diff["same"], diff["tasks"], diff["matched_by_prompt"]) == (
        1, 0, 5, 6, 1)
    assert diff["summary"] == "1 regression, 0 improvements, 5 the same over 6 tasks × 1 variant"
    first = diff["rows"][0]
    run_a = next(c["run_id"] for c in before["cells"] if c["task_id"] == "d3")
    run_b = next(c["run_id"] for c in after["cells"] if c["task_id"] == "d3")
    assert (first["kind"], first["task_id"], first["variant"], first["before"], first["after"], first["change"]) == (
        "regression", "d3", "A", {"passes": 1, "tries": 1, "rate": 1.0}, {"passes": 0, "tries": 1, "rate": 0.0}, -1.0)
    (pair,) = first["runs"]
    assert (pair["a"]["run_id"], pair["a"]["result"], pair["b"]["run_id"], pair["b"]["result"], pair["compare"]) == (
        run_a, "blue", run_b, "red", f"/?compare={run_a},{run_b}")
    renamed = next(r for r in diff["rows"] if r["task_id"] == "d2")
    assert (renamed["task_id_b"], renamed["matched_by"], renamed["kind"]) == ("d2-renamed", "prompt", "same")
    (c,) = diff["comparisons"]
    expected = stats.compare({f"d{i}": (1, 1) for i in range(1, 7)},
                             {f"d{i}": (0 if i == 3 else 1, 1) for i in range(1, 7)})
    assert (c["tasks"], c["difference"], c["p_value"], c["ci_low"], c["ci_high"]) == (
        6, pytest.approx(-1 / 6), 1.0, pytest.approx(expected.ci_low), pytest.approx(expected.ci_high))
    assert c["verdict"] == stats.verdict(f"#{a_id} A", f"#{b_id} A", expected, p_adjusted=1.0, significant=False)
    assert http.get(f"/api/experiments/{a_id}/diff/987654").status_code == 404
    bad = http.get(f"/api/experiments/{a_id}/diff/0")
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "other_id"


async def test_the_notebooks_show_the_same_judges_and_diff(app: App, http: httpx.Client, judged: dict[str, Any],
                                                           diffed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    from agent import analysis as an

    before, after = diffed
    api = (await asyncio.to_thread(http.get, "/api/judges")).json()["judges"]
    summary = (await asyncio.to_thread(
        http.get, f"/api/experiments/{before['experiment_id']}/diff/{after['experiment_id']}")).json()["summary"]

    def seen(rows: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
        return {(r["judge"], r["rubric_hash"], int(r["n"]), int(r["runs_judged"])) for r in rows}

    def published() -> bool:  # the app publishes a snapshot a moment after the last write
        con = an.connect(app.data_dir)
        try:
            diff = an.experiment_diff(before["experiment_id"], after["experiment_id"], con=con)
            return seen(an.judge_agreement(con=con).to_dict("records")) == seen(api) and \
                diff.attrs["summary"] == summary
        except ValueError:  # "experiment N is not in the run log": the snapshot does not hold it yet
            return False
        finally:
            con.close()

    await asyncio.to_thread(poll, published, timeout=30, what="a snapshot with the judges and both experiments")
    con = an.connect(app.data_dir)
    try:
        frame = an.judge_agreement(con=con)
        for judge in api:
            row = frame[frame.judge == judge["judge"]].iloc[0]
            assert (row.n, row.judge_pass_person_fail) == (judge["n"], judge["confusion"]["judge_pass_person_fail"])
            assert row.sentence == judge["sentence"]
        diff = an.experiment_diff(before["experiment_id"], after["experiment_id"], con=con)
        assert (diff.iloc[0].kind, diff.iloc[0].task_id, diff.iloc[0].change) == ("regression", "d3", -1.0)
        assert diff.attrs["summary"] == "1 regression, 0 improvements, 5 the same over 6 tasks × 1 variant"
    finally:
        con.close()
    # Notebook 05's sections: the judges of one experiment, and another compared with the one before it.
    from tests.test_notebooks import execute, kernel_env

    env = kernel_env(app.data_dir, app.data_dir.parent / "exports")
    a_id, b_id = before["experiment_id"], after["experiment_id"]
    of_judged, of_after = await asyncio.gather(
        execute("05_experiments", {**env, "WORKBENCH_EXPERIMENT_ID": str(judged["experiment_id"])}),
        execute("05_experiments", {**env, "WORKBENCH_EXPERIMENT_ID": str(b_id),
                                   "WORKBENCH_BEFORE_EXPERIMENT_ID": str(a_id)}))
    mine = (await asyncio.to_thread(http.get, "/api/judges",
                                    params={"experiment_id": judged["experiment_id"]})).json()["judges"]
    assert mine and all(j["sentence"] in of_judged.text for j in mine)
    run_a = next(c["run_id"] for c in before["cells"] if c["task_id"] == "d3")
    run_b = next(c["run_id"] for c in after["cells"] if c["task_id"] == "d3")
    assert (f"experiment {b_id} against {a_id}: 1 regression, 0 improvements, 5 the same over 6 tasks × 1 variant"
            in of_after.text)
    assert f"  regression: d3 (A) 1/1 -> 0/1; compare /?compare={run_a},{run_b}" in of_after.text
    assert "no judge graded this experiment's runs" in of_after.text


# ------------------------------------------------------------------ the page
@pytest_asyncio.fixture(loop_scope="session")
async def alice_page(browser: Any, app: App) -> Any:
    """The workbench in Chromium, logged in with alice's key."""
    chromium = await browser.start()
    context = await chromium.new_context(viewport={"width": 1400, "height": 1400})
    context.set_default_timeout(30_000)
    page = await context.new_page()
    try:
        await page.goto(app.base + "/login-key")
        await page.fill("input[name=key]", ALICE_KEY)
        await page.click("button[type=submit]")
        await page.wait_for_url(app.base + "/")
        yield page
    finally:
        await context.close()


@pytest.mark.slow
async def test_the_review_panel_and_the_queue_filter_in_the_browser(
        alice_page: Any, app: App, http: httpx.Client, judged: dict[str, Any],
        diffed: tuple[dict[str, Any], dict[str, Any]]) -> None:
    page = alice_page
    run = (await asyncio.to_thread(http.post, "/api/runs", json={
        "prompt": "Say the colour [blue] (u1)", "model": "m-v1"})).json()
    run_id = run["task_run_id"]
    await page.goto(f"{app.base}/?run={run_id}")
    grades = page.locator("#wb-review-grades .wb-grades")
    await until(lambda: grades.get_attribute("data-graded-by"), what="the run's grades", check=lambda v: v == "agent")
    assert "Counts as passed, by its agent's own claim" in await grades.inner_text()
    reviewer = box(page, "wb-review-reviewer")
    await until(reviewer.input_value, what="the key's name", check=lambda v: v == "alice")
    assert await reviewer.is_disabled()  # the name comes from the key
    await box(page, "wb-review-comment").fill("the shade is off")
    await page.click("#wb-review-fail")
    await until(lambda: grades.get_attribute("data-graded-by"), what="the review", check=lambda v: v == "person")
    assert await grades.get_attribute("data-passed") == "false"
    row = page.locator("#wb-review-grades tr.wb-grading[data-kind=person]")
    assert [await row.locator("td").nth(i).inner_text() for i in (1, 2, 4)] == ["alice", "✗ fail", "the shade is off"]
    (review,) = (await asyncio.to_thread(http.get, f"/api/runs/{run_id}/reviews")).json()["reviews"]
    assert (review["reviewer"], review["verdict"], review["comment"], review["source"]) == (
        "alice", "fail", "the shade is off", "api_key")
    # The history's review filter: the queue, as the API lists it.
    await pick(page, "wb-filter-review", "queue")
    queued = (await asyncio.to_thread(http.get, "/api/runs", params={"review": "queue", "limit": 50})).json()
    expected = [str(r["task_run_id"]) for r in queued["runs"]]
    assert expected and str(run_id) not in expected  # reviewed just now: out of the queue
    label = f"Run history (runs 1–{len(expected)} of {queued['total']}, newest first)"
    state = await until(lambda: history_state(page), what="the queued runs in the history",
                        check=lambda v: v["label"] == label and v["ids"] and v["ids"] == expected[:len(v["ids"])])
    assert len(state["ids"]) >= min(len(expected), 5)  # the rows in view (the table draws those): the queue's
    # The judges table and the diff of two experiments, in the Experiments section.
    await page.locator("#wb-judges-box > button, #wb-judges-box .label-wrap").first.click()
    await page.click("#wb-judges-refresh")
    api = (await asyncio.to_thread(http.get, "/api/judges")).json()["judges"]
    judge_rows = page.locator("#wb-judges tr[data-judge]")
    await until(judge_rows.count, what="the judges table", check=lambda n: n == len(api))
    for judge in api:
        row = page.locator(f'#wb-judges tr[data-judge="{judge["judge"]}"][data-rubric="{judge["rubric_hash"]}"]')
        assert int(await row.locator(".wb-judge-n").inner_text()) == judge["n"]
        kappa = await row.locator(".wb-judge-kappa").inner_text()
        assert kappa == "–" if judge["kappa"] is None else kappa.startswith(f"{judge['kappa']:.2f} [")
    before, after = diffed
    await page.locator("#wb-diff-box > button, #wb-diff-box .label-wrap").first.click()
    await page.locator("#wb-diff-a input").fill(str(before["experiment_id"]))
    await page.locator("#wb-diff-b input").fill(str(after["experiment_id"]))
    await page.click("#wb-diff-btn")
    first = page.locator("#wb-diff tr.wb-diff-row").first
    await until(lambda: first.get_attribute("data-task"), what="the diff", check=lambda v: v == "d3")
    assert await first.get_attribute("data-kind") == "regression"
    link = await first.locator("a.wb-diff-compare").get_attribute("href")
    run_a = next(c["run_id"] for c in before["cells"] if c["task_id"] == "d3")
    run_b = next(c["run_id"] for c in after["cells"] if c["task_id"] == "d3")
    assert link == f"?compare={run_a},{run_b}"


# ------------------------------------------------------------------ the run log itself
def test_success_views_count_what_was_graded_not_what_the_agent_claimed(tmp_path: Path) -> None:
    """Four runs whose agents all claimed success: a check failed one (its experiment cell), a judge another, a
    person the third; only the fourth, graded by nothing, counts by its claim."""
    from agent.filters import RunFilter
    from agent.log.store import Store
    from agent.models import RunFinished, RunRequest, RunResponse

    store = Store(tmp_path / "data", snapshot_interval_s=None)
    try:
        ids = []
        for n in range(4):
            request = RunRequest(prompt=f"Say the colour (s{n})", model="m-x")
            run_id = store.create_run(store.create_task(request), request)
            store.record(run_id, RunFinished(response=RunResponse(status="success", stop_reason="done", is_done=True,
                                                                  is_successful=True, result="red")))
            ids.append(run_id)
        task = {"id": "t", "prompt": "p", "check": {"equals": "blue"}}
        exp_id = store.create_experiment(
            name="x", task_set=None, repeats=2, concurrency=1, backend="local", spec={},
            tasks=[{"id": "t", "title": None, "prompt": "p", "check": {"kind": "equals"}, "task": task}],
            variants=[{"name": "A", "overrides": {}}])
        for repeat, run_id, kind, grader in ((1, ids[0], "check", "equals"), (2, ids[1], "judge", "openai/j")):
            store.start_cell(exp_id, "t", "A", repeat, run_id)
            store.finish_cell(exp_id, "t", "A", repeat, status="done", passed=False, score=0.0, detail="no",
                              graded_by=kind, grading={"kind": kind, "grader": grader})
        store.review_run(ids[2], reviewer="ana", passed=False, score=None, comment=None, source="body")
        rows = store._query("SELECT run_id, graded_by, passed, outcome FROM v_run_grades ORDER BY run_id")
        assert [(r["graded_by"], r["passed"], r["outcome"]) for r in rows] == [
            ("check", False, "agent_failure"), ("judge", False, "agent_failure"), ("person", False, "agent_failure"),
            ("agent", True, "success")]
        (by_model,) = store._query("SELECT * FROM v_success_by_model")
        assert (by_model["fair_runs"], by_model["successes"], by_model["success_rate"]) == (4, 1, 0.25)
        assert (by_model["claimed_successes"], by_model["claimed_success_rate"]) == (4, 1.0)
        assert (by_model["graded_by_check"], by_model["graded_by_judge"], by_model["graded_by_person"],
                by_model["graded_by_agent"], by_model["success_source"]) == (1, 1, 1, 1, "mixed")
        every = store.runs_summary(RunFilter(include_experiments=True))  # the history's totals, experiments' runs too
        assert (every["successes"], every["graded"], every["runs"]) == (1, 3, 4)
        assert (store.runs_summary()["successes"], store.runs_summary()["runs"]) == (1, 2)  # runs made by hand only
    finally:
        store.close()


def test_m011_upgrades_a_run_log_an_older_version_wrote(tmp_path: Path) -> None:
    """Cells an older version graded (by check, by judge, by hand) become gradings; "hand" is a person's review;
    the views count them."""
    from agent.log.migrations import MIGRATIONS
    from agent.log.store import Store

    data = tmp_path / "data"
    data.mkdir()
    con = duckdb.connect(str(data / "runs.duckdb"))
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")
    for fn in MIGRATIONS[:[m.__name__ for m in MIGRATIONS].index("m011_reviews")]:
        fn(con)
        con.execute("INSERT INTO _migrations VALUES (?, now())", [fn.__name__])
    con.execute("INSERT INTO tasks (id, prompt, request_json, created_at) VALUES (1, 'p', '{}', now())")
    for run_id in (1, 2, 3, 4):
        con.execute("INSERT INTO runs (id, task_id, status, stop_reason, mode, created_at, started_at, request_json) "
                    "VALUES (?, 1, 'success', 'done', 'agent', now(), now(), '{}')", [run_id])
    con.execute("INSERT INTO experiments (id, name, status, task_set, repeats, concurrency, backend, created_at, "
                "spec_json) VALUES (1, 'old', 'done', NULL, 1, 1, 'local', now(), '{}')")
    judge = {"id": "j", "prompt": "p", "check": {"judge": RUBRIC, "provider": None, "model": "judge-a"}}
    tasks = [("c", "equals", {"id": "c", "prompt": "p", "check": {"equals": "blue"}}), ("j", "judge", judge),
             ("h", None, {"id": "h", "prompt": "p"}),
             ("d", "judge", {"id": "d", "prompt": "p", "check": {"judge": "r", "provider": "anthropic"}})]
    for position, (key, kind, task) in enumerate(tasks):
        con.execute("INSERT INTO experiment_tasks (experiment_id, task_key, position, prompt, check_kind, task_json) "
                    "VALUES (1, ?, ?, 'p', ?, ?)", [key, position, kind, json.dumps(task)])
    con.execute("INSERT INTO experiment_variants VALUES (1, 'A', 0, '{}')")
    for key, run_id, passed, by in (("c", 1, False, "check"), ("j", 2, True, "judge"), ("h", 3, False, "hand"),
                                    ("d", 4, True, "judge")):
        con.execute("INSERT INTO experiment_cells (experiment_id, task_key, variant, repeat, status, run_id, passed, "
                    "graded_by, grade_detail) VALUES (1, ?, 'A', 1, 'done', ?, ?, ?, 'why')", [key, run_id, passed, by])
    con.close()

    store = Store(data, snapshot_interval_s=None)
    try:
        assert store.migrations_applied[-1] == "m011_reviews"
        got = store._query("SELECT run_id, kind, grader, rubric_hash, passed, comment, task_key FROM gradings "
                           "ORDER BY run_id")
        assert [tuple(r.values()) for r in got] == [
            (1, "check", "equals", None, False, "why", "c"),
            (2, "judge", "openai/judge-a", stats_hash(RUBRIC), True, "why", "j"),
            (3, "person", "(graded by hand)", None, False, "why", "h"),
            (4, "judge", "anthropic/claude-sonnet-4-5", stats_hash("r"), True, "why", "d")]  # the default model
        assert [c["graded_by"] for c in store.experiment_cells(1)] == ["check", "judge", "person", "judge"]
        grades = [(g["graded_by"], g["passed"]) for g in store._query("SELECT * FROM v_run_grades ORDER BY run_id")]
        assert grades == [("check", False), ("judge", True), ("person", False), ("judge", True)]
        assert store.run_gradings(2)[0]["details"] == {"source": "upgrade", "rubric": RUBRIC}
        assert sorted((j["judge"], j["runs_judged"], j["n"]) for j in store.judges()) == [
            ("anthropic/claude-sonnet-4-5", 1, 0), ("openai/judge-a", 1, 0)]
    finally:
        store.close()
