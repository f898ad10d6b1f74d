"""Task sets kept in the workbench, through the real app (`python app.py`, real HTTP, real DuckDB, the fake model):
runs made into tasks whose suggested check passes on the run itself (a JSON, a number and a text result) and
holds the answer's key values rather than its wording; experiments on a stored set recording its version while
edits make new ones; JSONL round trips; bundled sets; 422s naming the field; the history's experiment columns,
filters and switch (API and page); and, in a real browser, "Add to task set" from the history and the Task sets
section (open, version picker, edit a task's JSON, delete, download)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from agent.experiments.checks import grade
from agent.experiments.tasks import Check, load_bundled, parse_jsonl
from agent.log.snapshots import open_snapshot
from agent.testing.fakellm import FakeLLM, call, last_user_text, reply
from agent.ui.render import history_frame
from tests.apphelpers import ROOT, App, poll
from tests.test_ui import box, set_code, until

TASK_RE = re.compile(r"<task>\n(.*?)\n</task>", re.S)
PRODUCT = {"type": "object", "properties": {"name": {"type": "string"}, "price": {"type": "number"},
                                            "checked_at": {"type": "string"}}, "required": ["name", "price"]}
ANSWERS = {
    "json": {"name": "USB-C to USB-C Cable 0.5 m", "price": 5.49, "checked_at": "2026-03-02T09:30:00Z"},
    "number": "The cart total is €43.93.",
    "text": "The studio headphones are made by Sonora Audio; they cost €129.00 (order DS-1A2B3C4D).",
}


def model_script(body: dict[str, Any]) -> Any:
    """[json], [number], [text]: the answers above; [fail]: gives up; a colour task: the colour ("red" from the
    m-wrong model)."""
    task = TASK_RE.search(last_user_text(body)).group(1)  # type: ignore[union-attr]
    marker = re.search(r"\[(\w+)\]", task)
    kind = marker.group(1) if marker else ""
    if kind == "json":
        return reply("Report.", call("done", data=ANSWERS["json"], success=True))
    if kind in ("number", "text"):
        return reply("Report.", call("done", text=ANSWERS[kind], success=True))
    if kind == "fail":
        return reply("Give up.", call("done", text="I could not find it", success=False))
    colour = "red" if "wrong" in str(body.get("model")) else next(
        (c for w, c in (("sky", "blue"), ("grass", "green"), ("sea", "teal")) if w in task), "grey")
    return reply("Answer.", call("done", text=colour, success=True))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    model = FakeLLM(model_script)
    running = App(tmp_path_factory.mktemp("tasksets") / "data",
                  {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "MAX_CONCURRENT_RUNS": "3"})
    running.start().ready()
    yield running
    running.stop()
    model.close()


@pytest.fixture(scope="module")
def http(app: App) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.base, timeout=60) as client:
        yield client


def run(http: httpx.Client, app: App, marker: str) -> dict[str, Any]:
    """A finished run of a [marker] task that starts on the demo shop."""
    body: dict[str, Any] = {"prompt": f"Open {app.base}/demo/ and report it [{marker}]", "model": "m-good",
                            "start_url": f"{app.base}/demo/", "max_steps": 5}
    if marker == "json":
        body |= {"response_format": "json", "json_schema": PRODUCT}
    done = http.post("/api/runs", json=body).json()
    assert done["status"] == ("failure" if marker == "fail" else "success"), done
    return done


def experiment(http: httpx.Client, **spec: Any) -> dict[str, Any]:
    """Start an experiment and wait for its end; its report."""
    started = http.post("/api/experiments", json={"variants": [{"name": "good", "model": "m-good"}], **spec})
    assert started.status_code == 202, started.text
    exp_id = started.json()["experiment_id"]
    return poll(lambda: (r := http.get(f"/api/experiments/{exp_id}").json())["status"] != "running" and r,
                timeout=180, what=f"experiment {exp_id} to end")


HISTORY_COLUMNS = list(history_frame([]).columns)
COLOURS = [{"id": "sky", "prompt": "Say the colour of the sky", "check": {"equals": "blue"}},
           {"id": "grass", "prompt": "Say the colour of grass", "check": {"equals": "green"}}]


# ------------------------------------------------------------------ tasks from runs
@pytest.mark.parametrize(("marker", "expected", "right", "wrong"), [
    ("json", {"json": {"name": "USB-C to USB-C Cable 0.5 m", "price": 5.49}},
     {"price": 5.49, "name": "usb-c to usb-c cable 0.5 m", "checked_at": "2026-04-01T00:00:00Z"},
     {"name": "USB-C to USB-C Cable 0.5 m", "price": 5.5}),
    ("number", {"number": 43.93, "tolerance": 0.005}, "Total: 43.93 EUR", "The cart total is €43.90."),
    ("text", {"contains": ["DS-1A2B3C4D", "129.00", "Sonora Audio"]},
     "Sonora Audio makes them. Price: 129.00 euros, order number DS-1A2B3C4D",
     "The studio headphones are made by Bose; they cost €129.00 (order DS-1A2B3C4D)."),
])
def test_a_run_becomes_a_task_whose_suggested_check_passes_on_the_run(
        http: httpx.Client, app: App, marker: str, expected: dict[str, Any], right: Any, wrong: Any) -> None:
    done = run(http, app, marker)
    asked = http.post("/api/tasksets/from-runs/tasks", params={"dry_run": "true"},
                      json={"from_run": done["task_run_id"]})
    assert asked.status_code == 200, asked.text
    (task,) = asked.json()["tasks"]
    # The run's prompt and start page, the workbench's own address written {BASE_URL} (the task runs anywhere).
    assert task["prompt"] == f"Open {{BASE_URL}}/demo/ and report it [{marker}]"
    assert task["start_url"] == "{BASE_URL}/demo/" and task["max_steps"] == 5 and task["id"] == f"run-{done['task_run_id']}"
    if marker == "json":
        assert (task["response_format"], task["json_schema"]) == ("json", PRODUCT)
    check = Check.model_validate(task["check"])
    assert check.as_json() == expected
    # It passes on the run itself; it holds the answer's key values, not its wording or its time: a right answer
    # put otherwise passes, a wrong one fails.
    assert grade(check, done["result"]).passed is True
    assert grade(check, right).passed is True
    assert grade(check, wrong).passed is False
    notes = asked.json()["notes"][0]["notes"]
    assert notes[0] == "suggested because the run succeeded"
    if marker == "json":
        assert any("checked_at" in n for n in notes)  # the timestamp left out, and said so
    assert http.get("/api/tasksets/from-runs").status_code == 404  # a dry run saves nothing


def test_runs_make_a_new_set_and_a_failed_run_gets_no_check(http: httpx.Client, app: App) -> None:
    text, failed = run(http, app, "text"), run(http, app, "fail")
    made = http.post("/api/tasksets", json={"name": "from-history", "from_runs": [text["task_run_id"],
                                                                                  failed["task_run_id"]]})
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["version"], body["source"], [t["id"] for t in body["tasks"]]) == (
        1, "stored", [f"run-{text['task_run_id']}", f"run-{failed['task_run_id']}"])
    assert body["note"] == f"from runs {text['task_run_id']}, {failed['task_run_id']}"
    assert list(body["tasks"][0])[:3] == ["id", "title", "prompt"]  # a task file's order
    assert body["tasks"][0]["check"]["contains"] and "check" not in body["tasks"][1]  # graded by hand
    assert body["notes"][1]["notes"] == ["no check suggested: the run ended as failure; write the check (a task "
                                         "without one is graded by hand)"]
    # The same run again: a new id, never a clash; a check given wins over the suggestion.
    again = http.post("/api/tasksets/from-history/tasks",
                      json={"from_run": text["task_run_id"], "check": {"regex": "DS-[0-9A-F]{8}"}})
    assert again.status_code == 201, again.text
    assert again.json()["added"] == [f"run-{text['task_run_id']}-2"] and again.json()["version"] == 2
    assert again.json()["tasks"][-1]["check"] == {"regex": "DS-[0-9A-F]{8}"}


def test_a_task_from_an_experiment_run_is_judged_by_its_grade(http: httpx.Client) -> None:
    """A run the experiment graded failed gets no check, though the agent claimed success."""
    report = experiment(http, tasks=COLOURS[:1], variants=[{"name": "wrong", "model": "m-wrong"}])
    cell = report["cells"][0]
    assert (cell["outcome"], http.get(f"/api/runs/{cell['run_id']}").json()["status"]) == ("failed", "success")
    asked = http.post("/api/tasksets/x/tasks?dry_run=true", json={"from_run": cell["run_id"]}).json()
    assert "check" not in asked["tasks"][0]
    assert asked["notes"][0]["notes"][0].startswith(f"no check suggested: experiment {report['experiment_id']} "
                                                    "graded it failed")


# ------------------------------------------------------------------ versions
def test_an_experiment_records_the_version_it_ran_and_edits_make_new_ones(http: httpx.Client, app: App) -> None:
    created = http.post("/api/tasksets", json={"name": "colours", "tasks": COLOURS, "note": "two colours"})
    assert created.status_code == 201 and created.json()["version"] == 1
    first = experiment(http, task_set="colours")
    assert (first["status"], first["task_set"], first["task_set_version"]) == ("done", "colours", 1)
    # Edits: each a new version.
    edited = http.put("/api/tasksets/colours/tasks/sky", json={"prompt": "Say the colour of the clear sky",
                                                               "check": {"contains": ["blue"]}})
    assert edited.status_code == 200 and edited.json()["version"] == 2
    added = http.post("/api/tasksets/colours/tasks", json={"id": "sea", "prompt": "Say the colour of the sea",
                                                           "check": {"equals": "teal"}})
    assert added.status_code == 201 and added.json()["version"] == 3
    patched = http.patch("/api/tasksets/colours/tasks/grass", json={"title": "Grass"})
    removed = http.delete("/api/tasksets/colours/tasks/sea")
    assert (patched.json()["version"], removed.json()["version"]) == (4, 5)
    assert [(v["version"], v["origin"], v["note"]) for v in removed.json()["versions"]] == [
        (1, "created", "two colours"), (2, "edited", "edited sky"), (3, "added", "added sea"),
        (4, "edited", "edited grass (title)"), (5, "removed", "removed sea")]
    # The old experiment still shows the old tasks: its report, its runs' prompts, and version 1 itself.
    again = http.get(f"/api/experiments/{first['experiment_id']}").json()
    assert again["task_set_version"] == 1 and [t["task_id"] for t in again["tasks"]] == ["sky", "grass"]
    old_runs = http.get("/api/runs", params={"experiment_id": first["experiment_id"]}).json()["runs"]
    assert sorted(r["prompt"] for r in old_runs) == ["Say the colour of grass", "Say the colour of the sky"]
    v1 = http.get("/api/tasksets/colours", params={"version": 1}).json()
    assert v1["tasks"] == COLOURS and (v1["version"], v1["latest_version"]) == (1, 5)
    # A new experiment takes the latest version, or the one named.
    latest = experiment(http, task_set="colours")
    assert latest["task_set_version"] == 5 and [t["task_id"] for t in latest["tasks"]] == ["sky", "grass"]
    latest_sky = next(c["run_id"] for c in latest["cells"] if c["task_id"] == "sky")
    assert http.get("/api/runs", params={"experiment_id": latest["experiment_id"], "q": "clear sky"}).json()[
        "runs"][0]["id"] == latest_sky
    pinned = experiment(http, task_set="colours", task_set_version=3)
    assert pinned["task_set_version"] == 3 and [t["task_id"] for t in pinned["tasks"]] == ["sky", "grass", "sea"]
    listed = {e["experiment_id"]: e for e in http.get("/api/experiments").json()["experiments"]}
    assert listed[pinned["experiment_id"]]["task_set_version"] == 3
    # The run log's view says it too (for notebooks), in the published snapshot.

    def versions() -> Any:
        con = open_snapshot(app.data_dir)
        try:
            return dict(con.execute("SELECT id, task_set_version FROM v_experiments WHERE task_set = 'colours'")
                        .fetchall())
        finally:
            con.close()

    assert poll(lambda: (v := versions()) and len(v) == 3 and v, timeout=30, what="the snapshot") == {
        first["experiment_id"]: 1, latest["experiment_id"]: 5, pinned["experiment_id"]: 3}


def test_bundled_sets_are_listed_and_become_yours_when_edited(http: httpx.Client) -> None:
    listed = {s["name"]: s for s in http.get("/api/tasksets").json()["tasksets"]}
    shop = listed["demo-shop"]
    assert (shop["source"], shop["task_count"]) == ("bundled", 14)
    before = shop["version"]
    edited = http.patch("/api/tasksets/demo-shop/tasks/cheapest-usbc", json={"title": "The cheapest cable"})
    assert edited.status_code == 200, edited.text
    assert (edited.json()["version"], edited.json()["origin"], edited.json()["source"]) == (
        before + 1, "edited", "bundled")
    listed = {s["name"]: s for s in http.get("/api/tasksets").json()["tasksets"]}
    assert (listed["demo-shop"]["version"], listed["demo-shop"]["origin"]) == (before + 1, "edited")
    original = http.get("/api/tasksets/demo-shop", params={"version": before}).json()["tasks"]
    assert original[0]["title"] == "Cheapest USB-C cable"


def test_jsonl_round_trip(http: httpx.Client) -> None:
    got = http.get("/api/tasksets/demo-shop", params={"version": 1, "format": "jsonl"})
    assert got.status_code == 200 and got.headers["content-disposition"] == 'attachment; filename="demo-shop-v1.jsonl"'
    assert parse_jsonl(got.text) == load_bundled("demo-shop")  # the bundled file's tasks, exactly
    made = http.post("/api/tasksets", json={"name": "shop-copy", "tasks_jsonl": got.text})
    assert made.status_code == 201, made.text
    back = http.get("/api/tasksets/shop-copy", params={"format": "jsonl"})
    assert back.text == got.text and back.headers["content-disposition"].endswith('"shop-copy-v1.jsonl"')
    assert made.json()["tasks"] == http.get("/api/tasksets/demo-shop", params={"version": 1}).json()["tasks"]
    # Replacing the tasks with JSONL: a new version holding exactly those.
    two = "\n".join(json.dumps(t) for t in COLOURS) + "\n"
    replaced = http.put("/api/tasksets/shop-copy", json={"tasks_jsonl": two})
    assert replaced.status_code == 200 and replaced.json()["version"] == 2
    assert http.get("/api/tasksets/shop-copy", params={"format": "jsonl"}).text == two


def test_the_cli_runs_a_stored_set_at_a_version(http: httpx.Client, app: App) -> None:
    http.post("/api/tasksets", json={"name": "cli-colours", "tasks": COLOURS[:1]})
    http.post("/api/tasksets/cli-colours/tasks", json=COLOURS[1])  # version 2: both tasks
    out = subprocess.run([sys.executable, "-m", "agent.experiments", "run", "cli-colours", "--task-set-version", "1",
                          "--server", app.base, "--variant", "good=openai:m-good"], cwd=ROOT, capture_output=True,
                         text=True, timeout=240, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("task set cli-colours version 1\n") and re.search(r"^good\s+1/1\s+100%", out.stdout,
                                                                                   re.M)
    exp_id = json.loads(out.stderr.strip().splitlines()[-1])["experiment_id"]
    report = http.get(f"/api/experiments/{exp_id}").json()
    assert (report["task_set_version"], [t["task_id"] for t in report["tasks"]]) == (1, ["sky"])


# ------------------------------------------------------------------ errors
def _tasks(n: int) -> list[dict[str, Any]]:
    return [{"id": f"t{i}", "prompt": f"Say the colour number {i}"} for i in range(n)]


@pytest.mark.parametrize(("method", "path", "body", "field", "fragment"), [
    ("post", "/api/tasksets", {"name": "bad", "tasks": [*_tasks(3), {"id": "t3", "prompt": "abc",
                                                                      "check": {"vibes": 1}}]},
     "tasks[3].check", "unknown check kind 'vibes'"),
    ("post", "/api/tasksets", {"name": "bad", "tasks": [*_tasks(1), {"id": "t1", "prompt": "abc",
                                                                      "check": {"number": "five"}}]},
     "tasks[1].check.number", "valid number"),
    ("post", "/api/tasksets", {"name": "bad", "tasks_jsonl": '{"id": "a", "prompt": "abc"}\n{"id": "b", "prompt'},
     "tasks_jsonl line 2", "is not valid JSON"),
    ("post", "/api/tasksets", {"name": "bad", "tasks_jsonl": '{"id": "a", "prompt": "abc"}\n\n{"id": "b", "prompt": "x"}'},
     "tasks_jsonl line 3.prompt", "at least 3 characters"),
    ("post", "/api/tasksets", {"name": "no/slash", "tasks": _tasks(1)}, "name", "letters, digits"),
    ("post", "/api/tasksets", {"name": "empty"}, "tasks", "is required"),
    ("post", "/api/tasksets", {"name": "x", "tasks": _tasks(1), "colour": 1}, "colour", "unknown field"),
    ("post", "/api/tasksets", {"name": "x", "from_runs": ["one"]}, "from_runs", "list of run ids"),
    ("put", "/api/tasksets/errors/tasks/t0", {"prompt": "abc", "check": {"regex": "(oops"}}, "check.regex",
     "is not a valid regular expression"),
    ("patch", "/api/tasksets/errors/tasks/t0", {"colour": "x"}, "colour", "unknown field"),
    ("patch", "/api/tasksets/errors/tasks/t0", {"max_steps": 0}, "max_steps", "greater than or equal to 1"),
    ("post", "/api/tasksets/errors/tasks", {"tasks": [{"id": "t0", "prompt": "abc"}]}, "tasks[0].id",
     "'t0' is already a task of 'errors'"),
    ("post", "/api/tasksets/errors/tasks", {"from_run": 0}, "from_run", "list of run ids"),
    ("post", "/api/tasksets/errors/tasks", {"from_run": 1, "colour": 1}, "colour", "unknown field"),
    ("delete", "/api/tasksets/single/tasks/t0", None, "task_id", "the last task of 'single'"),
    ("post", "/api/experiments", {"tasks": _tasks(1), "task_set_version": 1, "variants": [{"name": "A"}]},
     "task_set_version", "goes with task_set"),
    ("post", "/api/experiments", {"task_set": "errors", "task_set_version": 99, "variants": [{"name": "A"}]},
     "task_set_version", "task set 'errors' has no version 99; it has versions 1 to 1"),
    ("post", "/api/experiments", {"task_set": "nope", "variants": [{"name": "A"}]}, "task_set",
     "unknown task set 'nope'; known ones: "),
])
def test_bad_task_sets_are_422_naming_the_field(http: httpx.Client, method: str, path: str, body: Any, field: str,
                                                 fragment: str) -> None:
    for name, n in (("errors", 2), ("single", 1)):
        if http.get(f"/api/tasksets/{name}").status_code == 404:
            assert http.post("/api/tasksets", json={"name": name, "tasks": _tasks(n)}).status_code == 201
    answer = http.request(method.upper(), path, json=body)
    assert answer.status_code == 422, answer.text
    (detail,) = answer.json()["detail"]
    assert detail["field"] == field and fragment in detail["message"], detail
    assert http.get("/api/tasksets/errors").json()["version"] == 1  # nothing changed


def test_unknown_sets_versions_tasks_and_runs_are_404_and_a_taken_name_409(http: httpx.Client) -> None:
    http.post("/api/tasksets", json={"name": "kept", "tasks": _tasks(2)})
    missing = http.get("/api/tasksets/nope")
    assert missing.status_code == 404 and "unknown task set 'nope'; known ones: " in missing.json()["detail"]
    assert "demo-shop" in missing.json()["detail"]
    assert http.get("/api/tasksets/kept", params={"version": 7}).json()["detail"] == \
        "task set 'kept' has no version 7; it has versions 1 to 1"
    gone = http.delete("/api/tasksets/kept/tasks/nope")
    assert gone.status_code == 404 and gone.json()["detail"] == "task set 'kept' has no task 'nope'; its tasks: t0, t1"
    assert http.post("/api/tasksets/kept/tasks", json={"from_run": 987654}).status_code == 404
    assert http.post("/api/tasksets/nope/tasks", json=_tasks(1)[0]).status_code == 404
    for name in ("kept", "demo-shop"):
        taken = http.post("/api/tasksets", json={"name": name, "tasks": _tasks(1)})
        assert taken.status_code == 409 and f"a task set named '{name}' exists" in taken.json()["detail"]


# ------------------------------------------------------------------ the history's experiment filters (API)
def test_the_runs_list_hides_experiment_runs_unless_asked(http: httpx.Client) -> None:
    report = experiment(http, tasks=COLOURS, name="hidden", repeats=2,
                        variants=[{"name": "good", "model": "m-good"}, {"name": "wrong", "model": "m-wrong"}])
    ids = {c["run_id"] for c in report["cells"]}
    shown = {r["id"] for r in http.get("/api/runs", params={"limit": 1000}).json()["runs"]}
    assert len(ids) == 8 and not ids & shown
    every = http.get("/api/runs", params={"limit": 1000, "include_experiments": "true"}).json()
    assert ids <= {r["id"] for r in every["runs"]} and every["totals"]["runs"] == every["total"]
    mine = http.get("/api/runs", params={"experiment_id": report["experiment_id"]}).json()
    assert {r["id"] for r in mine["runs"]} == ids and mine["total"] == 8
    assert {(r["experiment_name"], r["experiment_id"]) for r in mine["runs"]} == {("hidden", report["experiment_id"])}
    wrong = http.get("/api/runs", params={"experiment_id": report["experiment_id"], "variant": "wrong"}).json()
    assert wrong["total"] == 4 and {r["variant"] for r in wrong["runs"]} == {"wrong"}
    assert {r["id"] for r in wrong["runs"]} == {c["run_id"] for c in report["cells"] if c["variant"] == "wrong"}
    bad = http.get("/api/runs", params={"experiment_id": "x"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "experiment_id"


def test_m010_on_an_older_run_log_marks_every_run_an_experiment_played(tmp_path: Any) -> None:
    """A log written before task sets: its experiments get no version, and their runs (replays too, from the
    cells' attempt lists) leave the history's default list; a run made by hand stays."""
    import duckdb

    from agent.filters import RunFilter
    from agent.log.migrations import MIGRATIONS
    from agent.log.store import Store

    data = tmp_path / "data"
    data.mkdir()
    con = duckdb.connect(str(data / "runs.duckdb"))
    con.execute("CREATE TABLE _migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")
    for fn in MIGRATIONS[:MIGRATIONS.index(next(m for m in MIGRATIONS if m.__name__ == "m010_task_sets"))]:
        fn(con)
        con.execute("INSERT INTO _migrations VALUES (?, now())", [fn.__name__])
    con.execute("INSERT INTO tasks VALUES (1, 'p', '{}', now(), NULL)")
    for run_id in (1, 2, 3):  # 1 lost and played again as 2 (one cell); 3 made by hand
        con.execute("INSERT INTO runs (id, task_id, status, mode, created_at, started_at, request_json, prompt) "
                    "VALUES (?, 1, 'success', 'agent', now(), now(), '{}', 'p')", [run_id])
    con.execute("INSERT INTO experiments (id, name, status, task_set, repeats, concurrency, backend, created_at, "
                "spec_json) VALUES (1, 'old', 'done', 'demo-shop', 1, 1, 'local', now(), '{}')")
    con.execute("INSERT INTO experiment_tasks VALUES (1, 't', 0, NULL, 'p', 'equals', '{}')")
    con.execute("INSERT INTO experiment_variants VALUES (1, 'A', 0, '{}')")
    con.execute("INSERT INTO experiment_cells (experiment_id, task_key, variant, repeat, status, run_id, attempts, "
                "passed, attempt_run_ids) VALUES (1, 't', 'A', 1, 'done', 2, 2, true, [1, 2])")
    con.close()

    store = Store(data, snapshot_interval_s=None)
    try:
        assert [r["id"] for r in store.list_runs()[0]] == [3]
        every = store.list_runs(RunFilter(include_experiments=True))[0]
        assert [(r["id"], r["experiment_id"], r["variant"]) for r in every] == [(3, None, None), (2, 1, "A"),
                                                                                (1, 1, "A")]
        progress = store.experiment_progress(1)
        assert progress is not None and (progress["task_set"], progress["task_set_version"]) == ("demo-shop", None)
        assert store.list_task_sets() == []  # a bundled set enters the log when the app first reads it
    finally:
        store.close()


# ------------------------------------------------------------------ in the browser
@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Any, app: App) -> Any:
    chromium = await browser.start()
    context = await chromium.new_context(viewport={"width": 1440, "height": 1400})
    context.set_default_timeout(30_000)
    page = await context.new_page()
    try:
        await page.goto(app.base + "/")
        await page.locator("#wb-history").wait_for()
        await page.locator("#wb-tasksets").wait_for()
        yield page
    finally:
        await context.close()


async def history_rows(page: Any) -> list[dict[str, str]]:
    """The history table's rows, by column name (the table's cells carry their row and column)."""
    cells = await page.evaluate("""() => [...document.querySelectorAll('#wb-history [role=gridcell]')].map(
        c => [Number(c.dataset.row), Number(c.dataset.col), c.textContent.trim()])""")
    rows: dict[int, dict[str, str]] = {}
    for row, col, text in cells:
        rows.setdefault(row, {})[HISTORY_COLUMNS[col]] = text
    return [rows[r] for r in sorted(rows)]


async def test_the_history_shows_experiment_runs_with_one_switch_and_filters_them(page: Any, http: httpx.Client,
                                                                                  app: App) -> None:
    report = await asyncio.to_thread(experiment, http, tasks=COLOURS, name="shown in history",
                                     variants=[{"name": "good", "model": "m-good"}, {"name": "wrong", "model": "m-wrong"}])
    exp_id, ids = report["experiment_id"], {str(c["run_id"]) for c in report["cells"]}
    by_hand = str((await asyncio.to_thread(run, http, app, "number"))["task_run_id"])
    await page.reload()
    await page.click("#wb-refresh")
    rows = await until(lambda: history_rows(page), what="the history",
                       check=lambda r: by_hand in {x["run"] for x in r})
    assert not ids & {r["run"] for r in rows} and all(r["experiment"] == "" for r in rows)
    await page.locator("#wb-filter-show-experiments input").check()
    rows = await until(lambda: history_rows(page), what="experiment runs shown",
                       check=lambda r: ids <= {row["run"] for row in r})
    for row in rows:
        if row["run"] in ids:
            assert row["experiment"] == f"#{exp_id} shown in history" and row["variant"] in ("good", "wrong")
    await page.locator("#wb-filter-show-experiments input").uncheck()
    experiment_box = page.locator("#wb-filter-experiment input")
    await experiment_box.fill(str(exp_id))
    await experiment_box.press("Enter")
    variant_box = box(page, "wb-filter-variant")
    await variant_box.fill("wrong")
    await variant_box.press("Enter")
    wrong = {str(c["run_id"]) for c in report["cells"] if c["variant"] == "wrong"}
    rows = await until(lambda: history_rows(page), what="the experiment's wrong variant only",
                       check=lambda r: {row["run"] for row in r} == wrong)
    assert {(r["experiment"], r["variant"]) for r in rows} == {(f"#{exp_id} shown in history", "wrong")}
    totals = await page.locator("#wb-history-totals").inner_text()
    assert totals.startswith("2 runs match")
    await variant_box.fill("")
    await variant_box.press("Enter")
    await experiment_box.fill("all")
    await experiment_box.press("Enter")
    await until(lambda: history_rows(page), what="experiment runs hidden again",
                check=lambda r: not ids & {row["run"] for row in r})


async def test_add_to_task_set_from_the_history(page: Any, http: httpx.Client, app: App) -> None:
    text = await asyncio.to_thread(run, http, app, "text")
    number = await asyncio.to_thread(run, http, app, "number")
    await page.reload()
    await page.click("#wb-refresh")
    await page.locator("#wb-add-to-set > button, #wb-add-to-set .label-wrap").first.click()
    for run_id in (text["task_run_id"], number["task_run_id"]):  # select the two runs in the history
        cell = page.locator('#wb-history [role=gridcell][data-col="0"]', has_text=re.compile(rf"^\s*{run_id}\s*$"))
        await cell.first.click()
    picked = await until(lambda: box(page, "wb-add-runs").input_value(), what="the runs picked",
                         check=lambda v: v == f"{text['task_run_id']}, {number['task_run_id']}")
    assert picked
    target = page.locator("#wb-add-set input")
    await target.fill("picked-in-history")
    await target.press("Enter")
    await page.click("#wb-add-suggest")
    jsonl = await until(lambda: page.locator("#wb-add-tasks .cm-content").inner_text(), what="the suggested tasks",
                        check=lambda v: "Sonora Audio" in v)
    tasks = parse_jsonl(jsonl)
    assert [t.id for t in tasks] == [f"run-{text['task_run_id']}", f"run-{number['task_run_id']}"]
    assert tasks[1].check is not None and tasks[1].check.as_json() == {"number": 43.93, "tolerance": 0.005}
    notes = await page.locator("#wb-add-notes").inner_text()
    assert "suggested because the run succeeded" in notes
    # Edited before saving: the first task renamed.
    await set_code(page, "wb-add-tasks", jsonl.replace(f'"run-{text["task_run_id"]}"', '"headphones-maker"'))
    await page.click("#wb-add-save")
    said = await until(lambda: page.locator("#wb-add-notes").inner_text(), what="the save",
                       check=lambda v: v.startswith("✓"))
    assert said.startswith("✓ Created task set 'picked-in-history' with 2 tasks (version 1)")
    stored = (await asyncio.to_thread(http.get, "/api/tasksets/picked-in-history")).json()
    assert [t["id"] for t in stored["tasks"]] == ["headphones-maker", f"run-{number['task_run_id']}"]
    check = Check.model_validate(stored["tasks"][0]["check"])
    assert grade(check, text["result"]).passed is True and check.kind == "contains"


async def test_the_task_sets_section_opens_edits_deletes_and_downloads(page: Any, http: httpx.Client,
                                                                      app: App) -> None:
    await asyncio.to_thread(http.post, "/api/tasksets", json={"name": "ui-colours", "tasks": COLOURS})
    await page.reload()
    await page.locator("#wb-tasksets > button, #wb-tasksets .label-wrap").first.click()
    await page.click("#wb-tasksets-refresh")
    row = page.locator('#wb-tasksets-table [role=gridcell][data-col="0"]', has_text=re.compile(r"^\s*ui-colours\s*$"))
    await row.first.click()
    detail = page.locator("#wb-taskset-detail .wb-taskset")
    await until(lambda: detail.get_attribute("data-name"), what="the set opened", check=lambda v: v == "ui-colours")
    assert await detail.get_attribute("data-version") == "1"
    task = page.locator('#wb-taskset-tasks [role=gridcell][data-col="0"]', has_text=re.compile(r"^\s*grass\s*$"))
    await task.first.click()
    shown = await until(lambda: page.locator("#wb-taskset-task .cm-content").inner_text(), what="the task's JSON",
                        check=lambda v: '"grass"' in v)
    assert json.loads(shown) == COLOURS[1]
    await set_code(page, "wb-taskset-task", json.dumps({**COLOURS[1], "title": "Grass, edited"}))
    await page.click("#wb-taskset-save")
    await until(lambda: detail.get_attribute("data-version"), what="version 2", check=lambda v: v == "2")
    assert (await asyncio.to_thread(http.get, "/api/tasksets/ui-colours")).json()["tasks"][1]["title"] == \
        "Grass, edited"
    # The download link: this version's tasks as JSONL.
    href = await page.locator("#wb-taskset-detail a.wb-taskset-download").get_attribute("href")
    assert href == "api/tasksets/ui-colours?format=jsonl&version=2"
    got = await asyncio.to_thread(http.get, "/" + href)
    assert [t.title for t in parse_jsonl(got.text)] == [None, "Grass, edited"]
    # Delete the opened task: version 3 without it; version 1 still has both, untouched.
    await page.click("#wb-taskset-delete")
    await until(lambda: detail.get_attribute("data-version"), what="version 3", check=lambda v: v == "3")
    ids = await page.locator('#wb-taskset-tasks [role=gridcell][data-col="0"]').all_inner_texts()
    assert [i.strip() for i in ids] == ["sky"]
    version = page.locator("#wb-taskset-version input")
    await version.click()
    await page.locator('[role=listbox] [role=option][aria-label="1"]').click()
    await until(lambda: detail.get_attribute("data-version"), what="version 1 shown", check=lambda v: v == "1")
    ids = await until(lambda: page.locator('#wb-taskset-tasks [role=gridcell][data-col="0"]').all_inner_texts(),
                      what="version 1's tasks", check=lambda v: len(v) == 2)
    assert [i.strip() for i in ids] == ["sky", "grass"]
    # The Experiments section offers the stored set, and a version of it: its preview counts that version's tasks.
    await page.locator("#wb-exp-taskset input").click()
    await page.locator('[role=listbox] [role=option][aria-label="ui-colours"]').click()
    estimate = page.locator("#wb-exp-estimate")
    await until(lambda: estimate.inner_text(), what="the preview of the latest version (1 task)",
                check=lambda v: v.startswith("Start: 6 runs"))  # 1 task × 2 variants × 3 repeats
    await box(page, "wb-exp-taskset-version").fill("1")
    await until(lambda: estimate.inner_text(), what="the preview of version 1 (2 tasks)",
                check=lambda v: v.startswith("Start: 12 runs"))
    # A set made here (New task set) opens, and the Experiments section offers it at once.
    await page.locator("#wb-taskset-new > button, #wb-taskset-new .label-wrap").first.click()
    await box(page, "wb-taskset-new-name").fill("ui-made")
    await set_code(page, "wb-taskset-new-jsonl", json.dumps(COLOURS[0]))
    await page.click("#wb-taskset-create")
    await until(lambda: detail.get_attribute("data-name"), what="the new set opened", check=lambda v: v == "ui-made")
    await page.locator("#wb-exp-taskset input").click()
    await page.locator('[role=listbox] [role=option][aria-label="ui-made"]').click()
    await until(lambda: estimate.inner_text(), what="the preview of the new set", check=lambda v: v.startswith(
        "Start: 6 runs"))
