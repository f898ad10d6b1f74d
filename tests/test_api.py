"""The app end to end over real HTTP: `python app.py` in a subprocess, real Chromium on the bundled
demo shop, the fake OpenAI server for the model, a real webhook receiver, the DuckDB run log."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.service.webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from agent.testing.fakellm import FakeLLM, last_user_text
from tests.apphelpers import RENDEZVOUS, ROOT, App, Receiver, agent_script, poll

pytestmark = pytest.mark.slow

SECRET = "whsec-api-test-51c2"
API_KEY = "wb-key-test-9d1e"
CONTRACT_FIELDS = {"task_id", "task_run_id", "history", "result", "is_done", "is_successful", "status"}
ACTION_FIELDS = {"name", "params", "is_done", "success", "extracted_content", "error", "include_in_memory"}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
          "required": ["name", "price"]}


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def model() -> Iterator[FakeLLM]:
    fake = FakeLLM(agent_script)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def apps(model: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, App]]:
    """Two apps started together (their start-up overlaps): "main" may call private webhook receivers
    and signs them; "locked" needs an API key and refuses private webhook addresses."""
    root = tmp_path_factory.mktemp("apps")
    common = {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "MAX_CONCURRENT_RUNS": "4"}
    main = App(root / "main", {**common, "WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_SECRET": SECRET}).start()
    locked = App(root / "locked", {**common, "WORKBENCH_API_KEY": API_KEY}).start()
    try:
        main.ready()
        locked.ready(headers={"X-API-Key": API_KEY})
        yield {"main": main, "locked": locked}
    finally:
        for app in (main, locked):
            app.stop()


@pytest.fixture(scope="module")
def app(apps: dict[str, App]) -> App:
    return apps["main"]


@pytest.fixture(scope="module")
def http(app: App) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.base, timeout=180) as client:
        yield client


def wait_terminal(http: httpx.Client, run_id: int, *, timeout: float = 120.0) -> dict[str, Any]:
    """Poll GET /api/runs/{id} until the run has ended."""
    def ended() -> dict[str, Any] | None:
        body = http.get(f"/api/runs/{run_id}").json()
        return body if body["status"] != "in_progress" else None

    return poll(ended, timeout=timeout, what=f"run {run_id} to end")


def check_contract(body: dict[str, Any]) -> None:
    """Every field of the contract is there with its type."""
    assert set(body) >= CONTRACT_FIELDS
    assert isinstance(body["task_id"], int) and isinstance(body["task_run_id"], int)
    assert body["status"] in ("success", "failure", "in_progress")
    assert isinstance(body["is_done"], bool)
    for item in body["history"]:
        assert isinstance(item["description"], str)
        for action in item["actions"]:
            assert set(action) >= ACTION_FIELDS
            assert isinstance(action["params"], dict)


def shop_steps(base: str) -> list[tuple[str, dict[str, Any], str | None]]:
    """(action, params, error) of the three steps of a [shop] run."""
    return [("navigate", {"url": f"{base}/demo/"}, None), ("scroll", {"down": True}, None),
            ("done", {"text": f"finished: open {base}/demo/ [shop]", "success": True}, None)]


def step_summary(body: dict[str, Any]) -> list[tuple[str, dict[str, Any], str | None]]:
    return [(a["name"], a["params"], a["error"]) for item in body["history"] for a in item["actions"]]


# ------------------------------------------------------------------ health
def test_health_names_keys_never_values(app: App, http: httpx.Client) -> None:
    r = http.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["data_dir"] == {"exists": True, "writable": True}
    assert body["browser"] == {"description": "local Chromium", "remote": False, "found": True}
    assert str(app.data_dir.resolve()) not in r.text and '"/' not in r.text  # no absolute server path
    assert body["providers"]["openai"] == {"ready": True, "keys_present": ["OPENAI_API_KEY"],
                                           "key_vars": ["OPENAI_API_KEY"]}
    assert body["providers"]["anthropic"]["ready"] is False
    assert body["runs"] == {"active": 0, "queued": 0, "max_concurrent": 4}
    assert "sk-test" not in r.text and SECRET not in r.text
    assert "provider keys present: OPENAI_API_KEY" in app.log()
    assert "sk-test" not in app.log()


def _health(app: App) -> dict[str, Any] | None:
    """/api/health's body, or None while the server does not answer yet."""
    try:
        answer = httpx.get(app.base + "/api/health", timeout=5)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def test_health_says_warming_until_warm_and_a_run_posted_at_once_completes(model: FakeLLM, tmp_path: Path) -> None:
    early = App(tmp_path / "data", {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test"}).start()
    try:
        # The server answers before the UI, the model library and the browser are up (they take seconds).
        first = poll(lambda: _health(early), interval=0.05, timeout=120, what="/api/health to answer")
        assert first["status"] == "warming" and "waiting" in first["warm_up"].values(), first
        assert set(first["warm_up"]) == {"model library", "browser", "ui", "run service"}
        assert httpx.get(early.base + "/", timeout=30).status_code == 200  # the UI, or a page that reloads itself
        with httpx.Client(base_url=early.base, timeout=120) as http:
            run = http.post("/api/runs", json={"prompt": "say hi [quick]", "model": "gpt-4o-mini"}).json()
        assert (run["status"], run["result"]) == ("success", "quick answer to: say hi [quick]")  # it waited for them
        warm = poll(lambda: (b := _health(early)) and b["status"] == "ok" and b, timeout=120, what="health to say ok")
        assert warm["warm_up"] == {"model library": "ready", "browser": "ready", "ui": "ready", "run service": "ready"}
        assert "gradio" in httpx.get(early.base + "/", timeout=30).text.lower()  # the UI itself now
    finally:
        early.stop()


# ------------------------------------------------------------------ the contract
def test_seed_example_body_returns_the_full_contract(app: App, http: httpx.Client, receiver: Receiver) -> None:
    # The body of shared/seed/run-agent-api.txt, with real values; json_schema as a JSON string.
    body = {
        "prompt": f"Open {app.base}/demo/ and report the cheapest USB-C cable [seed]",
        "model": "o3",
        "provider": "openai",
        "wait_for_completion": True,
        "webhook_url": f"{receiver.url}/ok-seed",
        "response_format": "json",
        "json_schema": json.dumps(SCHEMA),
        "use_cached_workflow": True,
        "cached_workflow": {},
    }
    r = http.post("/api/runs", json=body)
    assert r.status_code == 200, r.text
    run = r.json()
    check_contract(run)
    assert r.headers["location"] == f"/api/runs/{run['task_run_id']}"
    assert (run["status"], run["is_done"], run["is_successful"], run["error"]) == ("success", True, True, None)
    assert run["result"] == {"name": "USB-C cable 1 m", "price": 9.99}  # parsed JSON, not a string
    assert (run["model"], run["provider"], run["mode"]) == ("o3", "openai", "agent")
    assert step_summary(run) == [("navigate", {"url": f"{app.base}/demo/"}, None),
                                 ("done", {"data": {"name": "USB-C cable 1 m", "price": 9.99}, "success": True}, None)]
    assert [item["step"] for item in run["history"]] == [1, 2]
    assert run["history"][1]["url"] == f"{app.base}/demo/"
    assert run["usage"]["llm_calls"] == 2 and run["usage"]["input_tokens"] == 200
    # The same record comes back from the store, and in the webhook.
    assert http.get(f"/api/runs/{run['task_run_id']}").json() == run
    hits = poll(lambda: receiver.on("/ok-seed"), timeout=30, what="the seed run's webhook")
    assert json.loads(hits[0].body) == run
    # Screenshots are files served per step: the response gives the URL to fetch, never a server path.
    assert run["history"][0]["screenshot"] == f"/api/runs/{run['task_run_id']}/screenshots/1"
    assert run["stop_reason"] == "done"
    shot = http.get(run["history"][0]["screenshot"])
    assert shot.status_code == 200 and shot.headers["content-type"] == "image/jpeg"
    assert shot.content[:2] == b"\xff\xd8"
    missing = http.get(f"/api/runs/{run['task_run_id']}/screenshots/9")
    assert (missing.status_code, missing.json()) == (404, {"detail": f"no screenshot for step 9 of run {run['task_run_id']}"})


def test_background_run_then_polling(app: App, http: httpx.Client) -> None:
    t0 = time.monotonic()
    r = http.post("/api/runs", json={"prompt": f"open {app.base}/demo/ [shop]", "model": "gpt-4o-mini",
                                     "wait_for_completion": False})
    assert r.status_code == 200 and time.monotonic() - t0 < 5
    started = r.json()
    check_contract(started)
    assert (started["status"], started["is_done"], started["result"], started["history"]) == ("in_progress", False, None, [])
    run_id = started["task_run_id"]
    seen_lengths: list[int] = []

    def ended() -> dict[str, Any] | None:
        body = http.get(f"/api/runs/{run_id}").json()
        seen_lengths.append(len(body["history"]))
        return body if body["status"] != "in_progress" else None

    final = poll(ended, timeout=120, interval=0.1, what="the background run")
    check_contract(final)
    assert (final["task_id"], final["task_run_id"]) == (started["task_id"], run_id)
    assert (final["status"], final["result"]) == ("success", f"finished: open {app.base}/demo/ [shop]")
    assert step_summary(final) == shop_steps(app.base)
    assert seen_lengths == sorted(seen_lengths)  # the history only grows while polling
    listed = http.get("/api/runs", params={"task_id": started["task_id"]}).json()
    assert listed["total"] == 1 and listed["runs"][0]["task_run_id"] == run_id
    assert listed["runs"][0]["status"] == "success" and listed["runs"][0]["steps"] == 3


def test_tasks_listed_and_run_again_with_overrides(app: App, http: httpx.Client) -> None:
    first = http.post("/api/runs", json={"prompt": "say hello [quick]", "model": "gpt-4o-mini"}).json()
    task_id = first["task_id"]
    task = http.get(f"/api/tasks/{task_id}").json()
    assert task["task_id"] == task_id and task["runs"] == 1 and task["last_status"] == "success"
    assert task["request"]["prompt"] == "say hello [quick]" and task["request"]["model"] == "gpt-4o-mini"
    assert any(t["task_id"] == task_id for t in http.get("/api/tasks").json()["tasks"])
    again = http.post(f"/api/tasks/{task_id}/runs", json={"model": "gpt-4.1-mini"})
    assert again.status_code == 200, again.text
    rerun = again.json()
    assert (rerun["task_id"], rerun["status"], rerun["model"]) == (task_id, "success", "gpt-4.1-mini")
    assert rerun["task_run_id"] != first["task_run_id"]
    assert rerun["result"] == "quick answer to: say hello [quick]"
    no_body = http.post(f"/api/tasks/{task_id}/runs")  # no body: the saved request as it was
    assert no_body.status_code == 200 and no_body.json()["model"] == "gpt-4o-mini"
    assert http.get(f"/api/tasks/{task_id}").json()["runs"] == 3
    bad = http.post(f"/api/tasks/{task_id}/runs", json={"max_steps": 0})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "max_steps"


# ------------------------------------------------------------------ cancel and queue
def test_cancel_a_slow_run_and_a_queued_one(app: App, http: httpx.Client) -> None:
    ids = []
    for n in range(5):  # 4 slots: the fifth waits in the queue
        r = http.post("/api/runs", json={"prompt": f"look forever {n} [slow]", "model": "gpt-4o-mini",
                                         "wait_for_completion": False})
        ids.append(r.json()["task_run_id"])
    poll(lambda: http.get("/api/health").json()["runs"] == {"active": 5, "queued": 1, "max_concurrent": 4},
         timeout=30, what="four running and one queued")
    queued = http.post(f"/api/runs/{ids[4]}/cancel")
    assert queued.status_code == 200
    body = queued.json()
    assert (body["status"], body["error"], body["history"], body["is_successful"]) == ("failure", "cancelled", [], False)
    poll(lambda: len(http.get(f"/api/runs/{ids[0]}").json()["history"]) >= 1, timeout=60, what="a slow step")
    for run_id in ids[:4]:
        t0 = time.monotonic()
        r = http.post(f"/api/runs/{run_id}/cancel")
        assert r.status_code == 200 and time.monotonic() - t0 < 6
        body = r.json()
        assert (body["status"], body["error"], body["is_done"]) == ("failure", "cancelled", False)
        assert http.get(f"/api/runs/{run_id}").json() == body  # the store has the same end
    assert all(a[0] == "scroll" for a in step_summary(http.get(f"/api/runs/{ids[0]}").json()))
    again = http.post(f"/api/runs/{ids[0]}/cancel")
    assert (again.status_code, again.json()) == (409, {"detail": f"run {ids[0]} has already ended (failure); nothing to cancel"})
    assert http.get("/api/health").json()["runs"]["active"] == 0


# ------------------------------------------------------------------ concurrency + snapshot readers
READER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from agent.log.errors import SnapshotMissing
    from agent.log.snapshots import open_snapshot
    data_dir, out, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    n = 0
    deadline = time.monotonic() + 150
    while not stop.exists() and time.monotonic() < deadline:
        try:
            con = open_snapshot(data_dir)
        except SnapshotMissing:
            time.sleep(0.05)
            continue
        try:
            rows = con.execute(
                "SELECT r.id, r.status, r.steps, (SELECT count(*) FROM steps s WHERE s.run_id = r.id), "
                "(SELECT count(*) FROM actions a WHERE a.run_id = r.id), "
                "(SELECT count(*) FROM llm_calls c WHERE c.run_id = r.id) FROM runs r").fetchall()
        finally:
            con.close()
        n += 1
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"reads": n, "runs": {str(r[0]): list(r[1:]) for r in rows}}))
        os.replace(tmp, out)
        time.sleep(0.05)
    print("reads", n)
""")


def test_four_runs_at_once_fully_logged_while_a_reader_reads_snapshots(app: App, http: httpx.Client, tmp_path: Path) -> None:
    out, stop = tmp_path / "reader.json", tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(app.data_dir), str(out), str(stop)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        body = {"prompt": f"open {app.base}/demo/ [shop]", "model": "gpt-4o-mini"}
        RENDEZVOUS[body["prompt"]] = threading.Barrier(4)  # the four meet at step 2 (MAX_CONCURRENT_RUNS=4)
        try:
            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(lambda _: http.post("/api/runs", json=body), range(4)))
        finally:
            del RENDEZVOUS[body["prompt"]]
        runs = [r.json() for r in results]
        assert [r.status_code for r in results] == [200] * 4
        assert len({r["task_run_id"] for r in runs}) == 4
        for run in runs:
            assert (run["status"], run["error"]) == ("success", None)
            assert step_summary(run) == shop_steps(app.base)
            assert http.get(f"/api/runs/{run['task_run_id']}").json() == run
        # They really ran at once: every run started before any of them finished.
        starts = [datetime.fromisoformat(r["started_at"]) for r in runs]
        ends = [datetime.fromisoformat(r["finished_at"]) for r in runs]
        assert max(starts) < min(ends)
        # The reader process sees every step, action and model call of the four runs.
        want = {str(r["task_run_id"]): ["success", 3, 3, 3, 3] for r in runs}

        def caught_up() -> bool:
            if not out.exists():
                return False
            seen = json.loads(out.read_text())["runs"]
            return all(seen.get(k) == v for k, v in want.items())

        poll(caught_up, timeout=60, what="the snapshot to show the four runs")
    finally:
        stop.touch()
        stdout, stderr = reader.communicate(timeout=60)
    assert reader.returncode == 0, stderr
    assert stderr == "" and int(stdout.split()[1]) > 1


# ------------------------------------------------------------------ webhooks
def test_webhook_retried_until_accepted_and_signed(app: App, http: httpx.Client, receiver: Receiver) -> None:
    run = http.post("/api/runs", json={"prompt": "answer now [quick]", "model": "gpt-4o-mini",
                                       "webhook_url": f"{receiver.url}/flaky-1?token=abc"}).json()
    assert run["status"] == "success"  # the run ended without waiting for the webhook
    run_id = run["task_run_id"]
    attempts = poll(lambda: (a := http.get(f"/api/runs/{run_id}/webhooks").json()["attempts"]) and a[-1]["ok"] and a,
                    timeout=60, what="the webhook to be accepted")
    assert [(a["attempt"], a["status_code"], a["ok"], a["event"]) for a in attempts] == [
        (1, 500, False, "run.finished"), (2, 500, False, "run.finished"), (3, 200, True, "run.finished")]
    assert attempts[0]["error"].startswith("HTTP 500") and attempts[2]["error"] is None
    # The token in the URL is never shown: attempts, the task's request and the run list show it redacted.
    assert all(a["url"] == f"{receiver.url}/..." and a["duration_ms"] >= 0 for a in attempts)
    assert http.get(f"/api/tasks/{run['task_id']}").json()["request"]["webhook_url"] == f"{receiver.url}/..."
    for url in (f"/api/runs/{run_id}/webhooks", f"/api/tasks/{run['task_id']}", "/api/tasks", "/api/runs"):
        assert "token=abc" not in http.get(url).text, url
    hits = receiver.on("/flaky-1?token=abc")
    assert len(hits) == 3
    for hit in hits:
        assert verify(SECRET, hit.headers[TIMESTAMP_HEADER.lower()], hit.body, hit.headers[SIGNATURE_HEADER.lower()])
        assert json.loads(hit.body) == run
    assert not verify("another-secret", hits[0].headers[TIMESTAMP_HEADER.lower()], hits[0].body,
                      hits[0].headers[SIGNATURE_HEADER.lower()])
    assert len({h.headers[DELIVERY_HEADER.lower()] for h in hits}) == 1  # one delivery id for the retries
    assert http.get(f"/api/runs/{run_id}").json() == run  # delivery changed nothing in the run
    assert SECRET not in app.log()


# ------------------------------------------------------------------ bad input
P = "find the cheapest cable"
MALFORMED: list[tuple[str, Any, str]] = [
    ("missing prompt", {}, "prompt"),
    ("short prompt", {"prompt": "ab"}, "prompt"),
    ("blank prompt", {"prompt": "     "}, "prompt"),
    ("prompt as number", {"prompt": 12345}, "prompt"),
    ("prompt null", {"prompt": None}, "prompt"),
    ("bad provider", {"prompt": P, "provider": "openia"}, "provider"),
    ("model as number", {"prompt": P, "model": 5}, "model"),
    ("json_schema not JSON", {"prompt": P, "json_schema": "{not json"}, "json_schema"),
    ("json_schema invalid schema", {"prompt": P, "json_schema": {"type": "nonsense"}}, "json_schema"),
    ("json_schema as number", {"prompt": P, "json_schema": 42}, "json_schema"),
    ("json_schema string of invalid schema", {"prompt": P, "json_schema": '{"properties": 3}'}, "json_schema"),
    ("bad response_format", {"prompt": P, "response_format": "xml"}, "response_format"),
    ("webhook ftp", {"prompt": P, "webhook_url": "ftp://example.com/hook"}, "webhook_url"),
    ("webhook not a URL", {"prompt": P, "webhook_url": "not a url"}, "webhook_url"),
    ("webhook metadata", {"prompt": P, "webhook_url": "http://169.254.169.254/latest/meta-data"}, "webhook_url"),
    ("webhook as list", {"prompt": P, "webhook_url": ["http://example.com"]}, "webhook_url"),
    ("cached_workflow as list", {"prompt": P, "cached_workflow": [1, 2]}, "cached_workflow"),
    ("cached_workflow bad JSON", {"prompt": P, "cached_workflow": "{bad"}, "cached_workflow"),
    ("unknown field", {"prompt": P, "promt": "typo"}, "promt"),
    ("wait_for_completion maybe", {"prompt": P, "wait_for_completion": "maybe"}, "wait_for_completion"),
    ("use_cached_workflow text", {"prompt": P, "use_cached_workflow": "yes please"}, "use_cached_workflow"),
    ("max_steps 0", {"prompt": P, "max_steps": 0}, "max_steps"),
    ("max_steps huge", {"prompt": P, "max_steps": 10**30}, "max_steps"),
    ("start_url file:", {"prompt": P, "start_url": "file:///etc/passwd"}, "start_url"),
    ("allowed_domains number", {"prompt": P, "allowed_domains": 5}, "allowed_domains"),
    ("workflow_params list", {"prompt": P, "workflow_params": [1]}, "workflow_params"),
    ("schema google cannot take", {"prompt": P, "provider": "google", "json_schema": {
        "type": "object", "properties": {"pair": {"type": "array", "prefixItems": [{"type": "string"}]}}}}, "json_schema"),
    ("vision for a text-only model", {"prompt": P, "model": "gpt-3.5-turbo", "use_vision": True}, "use_vision"),
]
RAW: list[tuple[str, bytes, str, str]] = [
    ("non-JSON body", b'{"prompt": "abc', "application/json", "body"),
    ("array body", b'[{"prompt": "find it"}]', "application/json", "body"),
    ("string body", b'"find the cheapest cable"', "application/json", "body"),
    ("null body", b"null", "application/json", "body"),
    ("empty body", b"", "application/json", "body"),
    ("NaN in body", b'{"prompt": "find it", "max_steps": NaN}', "application/json", "body"),
    ("not UTF-8", b'{"prompt": "caf\xe9 \xff"}', "application/json", "body"),
    ("deeply nested", b'{"prompt": "abc", "cached_workflow": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "application/json", "body"),
]


@pytest.mark.parametrize("name,body,field", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_request_is_422_naming_the_field(http: httpx.Client, name: str, body: Any, field: str) -> None:
    r = http.post("/api/runs", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert [d["field"] for d in detail] == [field], detail
    assert all(isinstance(d["message"], str) and len(d["message"]) > 8 for d in detail)


@pytest.mark.parametrize("name,raw,ctype,field", RAW, ids=[m[0] for m in RAW])
def test_malformed_body_is_422_naming_the_problem(http: httpx.Client, name: str, raw: bytes, ctype: str, field: str) -> None:
    r = http.post("/api/runs", content=raw, headers={"content-type": ctype})
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["detail"]] == [field]


def test_messages_say_what_to_fix(http: httpx.Client) -> None:
    def detail(body: Any) -> list[dict[str, str]]:
        return http.post("/api/runs", json=body).json()["detail"]

    assert detail({}) == [{"field": "prompt", "message": "is required: describe the task in plain words (at least 3 characters)"}]
    assert detail({"prompt": P, "provider": "openia"}) == [
        {"field": "provider", "message": "must be one of openai, deepseek, anthropic, google, groq, mistral, together"}]
    assert detail({"prompt": P, "webhook_url": "ftp://x.org/h"}) == [
        {"field": "webhook_url", "message": "must be an http:// or https:// URL with a host, e.g. https://example.com/hook"}]
    assert detail({"prompt": P, "json_schema": "{oops"})[0]["message"].startswith("is not valid JSON")
    assert detail([1]) == [{"field": "body", "message": 'must be a JSON object with the run request fields, e.g. {"prompt": "..."}, got an array'}]
    assert detail({"prompt": P, "provider": "google", "json_schema": {"type": "object", "properties": {
        "child": {"$ref": "#"}}}}) == [{"field": "json_schema", "message": (
            "`$ref` at child/child cannot be sent to google: # refers to itself and Gemini takes no recursive "
            "schemas; bound the nesting (e.g. two explicit levels)")}]
    assert detail({"prompt": P, "model": "gpt-3.5-turbo", "use_vision": True}) == [{"field": "use_vision", "message": (
        "the model 'gpt-3.5-turbo' (openai) takes no images according to litellm's model map; turn use_vision off "
        "or pick a vision model")}]
    several = detail({"prompt": "x", "provider": "nope", "max_steps": -1})
    assert [d["field"] for d in several] == ["prompt", "provider", "max_steps"]


def test_bad_query_and_path_params_are_422(http: httpx.Client) -> None:
    cases = [
        ("/api/runs?limit=0", "limit"), ("/api/runs?limit=abc", "limit"), ("/api/runs?limit=5000", "limit"),
        ("/api/runs?offset=-1", "offset"), ("/api/runs?status=done", "status"), ("/api/runs?provider=x", "provider"),
        ("/api/runs?task_id=0", "task_id"), ("/api/runs?task_id=99999999999999999999999", "task_id"),
        ("/api/runs/abc", "task_run_id"), ("/api/runs/0", "task_run_id"),
        ("/api/runs/99999999999999999999999", "task_run_id"), ("/api/runs/1/screenshots/x", "step"),
        ("/api/tasks/-4", "task_id"), ("/api/tasks?limit=-1", "limit"),
    ]
    for url, field in cases:
        r = http.get(url)
        assert r.status_code == 422, (url, r.text)
        assert [d["field"] for d in r.json()["detail"]] == [field], url
    assert http.get("/api/runs?limit=1&offset=0&status=success&provider=openai&model=o3").status_code == 200
    big = http.post("/api/runs", content=b'{"prompt": "' + b"a" * 1_100_000 + b'"}',
                    headers={"content-type": "application/json"})
    assert big.status_code == 413 and "limit" in big.json()["detail"]


def test_unknown_ids_are_404(http: httpx.Client) -> None:
    missing = 987654
    for method, url, what in [
        ("GET", f"/api/runs/{missing}", "run"), ("POST", f"/api/runs/{missing}/cancel", "run"),
        ("GET", f"/api/runs/{missing}/webhooks", "run"), ("GET", f"/api/runs/{missing}/screenshots/1", "run"),
        ("GET", f"/api/tasks/{missing}", "task"), ("POST", f"/api/tasks/{missing}/runs", "task"),
    ]:
        r = http.request(method, url)
        assert (r.status_code, r.json()) == (404, {"detail": f"{what} {missing} not found"}), url
    assert http.get("/api/nothing-here").status_code == 404


def test_no_client_input_reached_the_internal_error_handler(app: App) -> None:
    log = app.log()
    assert "unhandled error" not in log and "Traceback" not in log
    assert not re.search(r'HTTP/1\.1" 5\d\d', log)  # uvicorn's access log: no 5xx answered
    assert SECRET not in log


def test_clean_shutdown_ends_running_runs_and_publishes_the_log(apps: dict[str, App]) -> None:
    from agent.log.snapshots import open_snapshot

    app = apps["main"]  # the last test of this app: its model library is loaded, a first step comes fast
    with httpx.Client(base_url=app.base, timeout=60) as http:
        run_id = http.post("/api/runs", json={"prompt": "look forever [slow]", "model": "gpt-4o-mini",
                                              "wait_for_completion": False}).json()["task_run_id"]
        poll(lambda: http.get(f"/api/runs/{run_id}").json()["history"], timeout=60, what="a first step")
    # SIGTERM: runs end, the browser closes, the store publishes a last snapshot; uvicorn then
    # re-raises the signal, so the exit status is "terminated by SIGTERM" after a clean shutdown.
    assert app.stop() in (0, -15)
    assert "stopped: runs closed, browser closed, final snapshot published" in app.log()
    con = open_snapshot(app.data_dir)
    try:
        status, error, steps = con.execute("SELECT status, error, steps FROM runs WHERE id = ?", [run_id]).fetchone()
    finally:
        con.close()
    assert (status, error) == ("failure", "shutdown") and steps >= 1
    assert "Traceback" not in app.log()


# ------------------------------------------------------------------ the locked app: key, private webhooks, crash
def test_loopback_hosts_and_settings() -> None:
    from app import is_loopback, parse_args

    assert [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", "192.168.1.5", "")] == [
        True, True, True, True, False, False, False]
    settings = parse_args(["--host", "0.0.0.0", "--port", "8001", "--data-dir", "/tmp/x"])
    assert (settings.host, settings.port, settings.data_dir) == ("0.0.0.0", 8001, Path("/tmp/x"))


def test_the_forms_default_model_comes_from_the_operator(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """DEFAULT_PROVIDER and DEFAULT_MODEL set the model a fresh form shows; a bad one stops the app naming the fix."""
    from agent.providers import DEFAULT_MODELS
    from app import parse_args

    for name in ("DEFAULT_PROVIDER", "DEFAULT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert parse_args([]).form_model == ("openai", "o3")  # unset: the contract's default
    monkeypatch.setenv("DEFAULT_MODEL", " gpt-4.1-mini ")
    assert parse_args([]).form_model == ("openai", "gpt-4.1-mini")
    monkeypatch.setenv("DEFAULT_PROVIDER", "Anthropic")
    monkeypatch.delenv("DEFAULT_MODEL")
    assert parse_args([]).form_model == ("anthropic", DEFAULT_MODELS["anthropic"])  # that provider's default
    for name, value, message in (
            ("DEFAULT_PROVIDER", "openia", "DEFAULT_PROVIDER 'openia' is not a provider; use one of: openai, "),
            ("DEFAULT_MODEL", "gpt 4", "DEFAULT_MODEL 'gpt 4' is not a model name; give one such as gpt-4.1-mini")):
        monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit) as stopped:
            parse_args([])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
        monkeypatch.delenv(name)


def test_api_key_required_when_set(apps: dict[str, App]) -> None:
    base = apps["locked"].base
    for url in ("/api/health", "/api/runs", "/api/tasks", "/gradio_api/info"):
        r = httpx.get(base + url)
        assert r.status_code == 401 and "WORKBENCH_API_KEY" in r.json()["detail"], url
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.post(base + "/api/runs", json={"prompt": "x [quick]"}).status_code == 401
    assert httpx.get(base + "/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(base + "/api/health", headers={"X-API-Key": API_KEY + "x"}).status_code == 401
    assert httpx.get(base + "/api/health", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    assert httpx.get(base + "/api/health", headers={"X-API-Key": API_KEY}).status_code == 200
    assert httpx.get(base + "/demo/").status_code == 200  # the demo shop is not behind the key
    assert API_KEY not in apps["locked"].log()


def test_private_webhook_refused_without_changing_the_run(apps: dict[str, App], receiver: Receiver) -> None:
    with httpx.Client(base_url=apps["locked"].base, headers={"X-API-Key": API_KEY}, timeout=180) as http:
        run = http.post("/api/runs", json={"prompt": "answer now [quick]", "model": "gpt-4o-mini",
                                           "webhook_url": f"{receiver.url}/private"}).json()
        assert (run["status"], run["error"]) == ("success", None)
        attempts = poll(lambda: http.get(f"/api/runs/{run['task_run_id']}/webhooks").json()["attempts"],
                        timeout=30, what="the refused attempt")
        assert len(attempts) == 1
        a = attempts[0]
        assert (a["attempt"], a["ok"], a["status_code"], a["url"]) == (1, False, None, f"{receiver.url}/...")
        assert a["error"].startswith("refused:") and "127.0.0.1" in a["error"]
        assert receiver.on("/private") == []  # refused before connecting: the receiver never heard of it
        assert http.get(f"/api/runs/{run['task_run_id']}").json() == run


def test_crash_mid_run_leaves_an_interrupted_run_with_its_steps(apps: dict[str, App], model: FakeLLM) -> None:
    app = apps["locked"]
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=app.base, headers=headers, timeout=60) as http:
        started = http.post("/api/runs", json={"prompt": f"open {app.base}/demo/ [crash]", "model": "gpt-4o-mini",
                                               "wait_for_completion": False,
                                               "webhook_url": "http://127.0.0.1:9/after-crash"}).json()
        run_id = started["task_run_id"]
        before = poll(lambda: (b := http.get(f"/api/runs/{run_id}").json()) and len(b["history"]) == 2 and b,
                      timeout=90, what="two steps before the hang")
        poll(lambda: any("[crash]" in last_user_text(b) and "Step 3 of" in last_user_text(b) for b in model.requests),
             timeout=30, what="step 3 waiting on the (hanging) model")
    app.kill()
    app.start().ready(headers=headers)
    with httpx.Client(base_url=app.base, headers=headers, timeout=60) as http:
        after = http.get(f"/api/runs/{run_id}").json()
    assert (after["status"], after["error"], after["is_done"], after["is_successful"]) == ("failure", "interrupted", False, False)
    assert after["history"] == before["history"]  # the steps written before the kill are all there
    assert step_summary(after) == [("navigate", {"url": f"{app.base}/demo/"}, None), ("scroll", {"down": True}, None)]
    assert "runs interrupted by the last stop (now failure): 1" in app.log()
    # The interrupted end is a terminal status too: its webhook was attempted after the restart
    # (and refused here, as this app does not allow private receivers).
    with httpx.Client(base_url=app.base, headers=headers, timeout=60) as http:
        attempts = poll(lambda: http.get(f"/api/runs/{run_id}/webhooks").json()["attempts"], timeout=30,
                        what="the interrupted run's webhook")
    assert [(a["attempt"], a["ok"], a["url"]) for a in attempts] == [(1, False, "http://127.0.0.1:9/...")]
    assert attempts[0]["error"].startswith("refused:")

