"""What the app refuses, end to end: `python app.py` in a subprocess, real HTTP, real Chromium, the fake
model. Schemas that would fetch, cross-site and foreign-host requests, an over-full queue, oversized
input, out-of-range ids, webhook tokens and secrets that must not be kept, webhooks owed across a crash."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from agent.filters import RunFilter
from agent.models import STOP_REASONS
from agent.testing.fakellm import FakeLLM, call, find_index, last_user_text, reply
from tests.apphelpers import ROOT, App, agent_script, poll

pytestmark = pytest.mark.slow

KEY = "wb-security-key-7e2a"
HEADERS = {"X-API-Key": KEY}
TOKEN = "tok-77aa-secret-value"
PASSWORD = "Hunter2-pw-value!"
HOOK_TOKEN = "hook-token-5b1f90"


class Server:
    """A small site on 127.0.0.1: a schema that must never be fetched, a login page, a webhook receiver
    whose answer the test switches, and a page that attacks the app from another port."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, str, bytes]] = []  # (method, path?query, body)
        self.webhook_status = 200
        self.attack_target = ""
        server = self

        class _H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes = b"", ctype: str = "text/html") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                server.hits.append(("GET", self.path, b""))
                path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
                if path == "/schema.json":
                    self._answer(200, b'{"type": "string"}', "application/json")
                elif path == "/login":
                    self._answer(200, b"""<!doctype html><title>Login</title><form action="/welcome">
<label for="token">Token</label><input id="token" name="token">
<label for="pw">Password</label><input id="pw" name="pw" type="password"><button>Log in</button></form>""")
                elif path == "/welcome":
                    token = (query.get("token") or [""])[0]
                    self._answer(200, f"<!doctype html><title>Welcome</title><p>Welcome, token {token}</p>".encode())
                elif path == "/attack":  # posts a run to the app as a page on another port would
                    self._answer(200, f"""<!doctype html><title>Attack</title><script>
fetch({json.dumps(server.attack_target)}, {{method: "POST", mode: "no-cors", credentials: "include",
  body: JSON.stringify({{prompt: "started by another site [quick]"}})}})
  .then(() => document.title = "sent", () => document.title = "sent");</script>""".encode())
                else:
                    self._answer(404)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.hits.append(("POST", self.path, body))
                self._answer(server.webhook_status)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def got(self, method: str, path: str) -> list[tuple[str, str, bytes]]:
        return [h for h in self.hits if h[0] == method and urlsplit(h[1]).path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def model_script(body: dict[str, Any]) -> Any:
    """agent_script, plus [login]: type the secrets by placeholder, log in, report."""
    text = last_user_text(body)
    if body.get("tools") and "[login]" in text:
        if "Welcome" in text:
            return reply("In.", call("done", text="logged in", success=True))
        if "Log in" in text:
            return reply("Log in.", call("input", index=find_index(body, "Token", tag="input"), text="<secret>tok</secret>"),
                         call("input", index=find_index(body, "Password", tag="input"), text="<secret>pw</secret>"),
                         call("click", index=find_index(body, "Log in", tag="button")))
    return agent_script(body)


@pytest.fixture(scope="module")
def site() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def model() -> Iterator[FakeLLM]:
    fake = FakeLLM(model_script)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def app(model: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One run at a time and one queued, behind an API key, webhooks to loopback allowed."""
    env = {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "MAX_CONCURRENT_RUNS": "1",
           "MAX_QUEUED_RUNS": "1", "WORKBENCH_API_KEY": KEY, "WEBHOOK_ALLOW_PRIVATE": "1"}
    app = App(tmp_path_factory.mktemp("security") / "data", env).start()
    try:
        app.ready(headers=HEADERS)
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def http(app: App) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app.base, headers=HEADERS, timeout=120) as client:
        yield client


def fields(r: httpx.Response) -> list[str]:
    return [d["field"] for d in r.json()["detail"]]


def total_runs(http: httpx.Client) -> int:
    return int(http.get("/api/runs", params={"limit": 1}).json()["total"])


# ------------------------------------------------------------------ 1. schemas never fetch
def test_a_schema_never_makes_the_server_fetch_or_read(http: httpx.Client, site: Server) -> None:
    site.hits.clear()
    for ref in (f"{site.url}/schema.json", "file:///etc/passwd", "schema.json#/x", "//127.0.0.1/x"):
        for schema in ({"$ref": ref}, {"type": "object", "properties": {"a": {"$ref": ref}}},
                       {"$id": ref, "type": "string"}, {"$dynamicRef": ref}):
            r = http.post("/api/runs", json={"prompt": "report a cable [quick]", "json_schema": schema})
            assert r.status_code == 422 and fields(r) == ["json_schema"], r.text
            assert "may only refer inside itself" in r.json()["detail"][0]["message"]
    # As a JSON string, through Gradio's API and in a workflow document: the same check.
    r = http.post("/api/runs", json={"prompt": "x [quick]", "json_schema": json.dumps({"$ref": f"{site.url}/schema.json"})})
    assert fields(r) == ["json_schema"]
    gr = http.post("/gradio_api/call/v2/run", json={"prompt": "x [quick]", "json_schema": '{"$ref": "file:///etc/passwd"}'})
    assert gr.status_code == 422 and "may only refer inside itself" in json.dumps(gr.json())
    # A local $ref is fine, and one that points at nothing is refused now, not when the result comes.
    ok = {"$defs": {"s": {"type": "string"}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/s"}}}
    accepted = http.post("/api/runs", json={"prompt": "x [quick]", "json_schema": ok, "wait_for_completion": False})
    assert accepted.status_code == 200, accepted.text
    poll(lambda: http.get("/api/health").json()["runs"]["active"] == 0, timeout=60, what="the run to end")
    dangling = http.post("/api/runs", json={"prompt": "x [quick]", "json_schema": {"$ref": "#/$defs/none"}})
    assert fields(dangling) == ["json_schema"] and "points at nothing" in dangling.text
    assert site.hits == []  # nothing was ever fetched


# ------------------------------------------------------------------ 2. cross-site, content type, Host
def test_json_routes_take_json_from_their_own_origin_and_host(app: App, http: httpx.Client) -> None:
    before = total_runs(http)
    body = json.dumps({"prompt": "say hi [quick]"})
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"content-type": ctype} if ctype else {}
        r = http.post("/api/runs", content=body, headers=headers)
        assert r.status_code == 415 and "Content-Type: application/json" in r.json()["detail"], (ctype, r.text)
        g = http.post("/gradio_api/call/v2/run", content=body, headers=headers)
        assert g.status_code == 415, ctype
    other = f"http://127.0.0.1:{app.port + 1}"
    for headers in ({"Origin": other}, {"Origin": "null"}, {"Origin": "http://evil.example"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        for url in ("/api/runs", "/gradio_api/call/v2/run", "/api/tasks/1/runs"):
            r = http.post(url, json={"prompt": "say hi [quick]"}, headers=headers)
            assert r.status_code == 403, (url, headers, r.text)
    assert http.get("/api/runs", headers={"Origin": other}).status_code == 403  # no cross-origin reads either
    assert total_runs(http) == before
    same = http.post("/api/runs", json={"prompt": "say hi [quick]"},
                     headers={"Origin": app.base, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200 and same.json()["status"] == "success"
    # Only the names the app is served as: DNS rebinding gets a 400 on every route.
    for host in ("evil.example", "evil.example:80", f"attacker.test:{app.port}", "127.0.0.2"):
        for url in ("/api/health", "/gradio_api/info", "/", "/demo/"):
            r = http.get(url, headers={"Host": host})
            assert r.status_code == 400 and "ALLOWED_HOSTS" in r.json()["detail"], (host, url)
    assert http.get("/api/health", headers={"Host": f"localhost:{app.port}"}).status_code == 200
    assert "answers to Host: 127.0.0.1, ::1, localhost" in app.log()


async def test_a_page_on_another_port_cannot_start_runs_with_the_login_cookie(app: App, http: httpx.Client,
                                                                              site: Server, browser: Any) -> None:
    before = total_runs(http)
    refusals = app.log().count('"POST /api/runs HTTP/1.1" 403')
    site.attack_target = f"{app.base}/api/runs"
    async with browser.session() as session:
        page = session.page
        await page.goto(f"{app.base}/login-key")
        await page.fill("input[name=key]", KEY)
        async with page.expect_navigation():
            await page.click("button")
        cookie = next(c for c in await session.context.cookies() if c["name"] == "workbench_session")
        assert cookie["sameSite"] == "Strict" and cookie["httpOnly"]
        await page.goto(f"{site.url}/attack")  # same site (127.0.0.1), another port
        await page.wait_for_function("document.title === 'sent'", timeout=10_000)
    # The page's POST reached the app and was refused (same site, another origin); nothing started.
    poll(lambda: app.log().count('"POST /api/runs HTTP/1.1" 403') > refusals, timeout=10, what="the refusal")
    assert total_runs(http) == before


# ------------------------------------------------------------------ 4. the queue limit holds under concurrency
def test_the_queue_limit_holds_for_simultaneous_requests(http: httpx.Client) -> None:
    body = {"prompt": "look forever [slow]", "model": "gpt-4o-mini", "wait_for_completion": False}
    barrier = threading.Barrier(20)

    def post(_: int) -> httpx.Response:
        barrier.wait(10)
        return http.post("/api/runs", json=body)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    accepted = [a for a in answers if a.status_code == 200]
    busy = [a for a in answers if a.status_code == 429]
    assert (len(accepted), len(busy)) == (2, 18), [a.status_code for a in answers]
    assert all(a.headers["retry-after"] == "5" and "MAX_QUEUED_RUNS" in a.json()["detail"] for a in busy)
    for a in accepted:
        assert http.post(f"/api/runs/{a.json()['task_run_id']}/cancel").status_code == 200
    poll(lambda: http.get("/api/health").json()["runs"]["active"] == 0, timeout=30, what="the runs to end")


# ------------------------------------------------------------------ 5. caps, and the server stays responsive
def test_large_inputs_are_refused_while_the_server_keeps_answering(app: App, http: httpx.Client) -> None:
    big_schema = {"type": "object", "properties": {f"field_{i}": {"type": "string", "description": "x" * 80}
                                                   for i in range(6500)}}
    deep_schema: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        deep_schema = {"type": "array", "items": deep_schema}
    cases: list[tuple[str, dict[str, Any] | bytes, int, str]] = [
        ("/api/runs", {"prompt": "p" * 20_001}, 422, "prompt"),
        ("/api/runs", {"prompt": "find it", "json_schema": big_schema}, 422, "json_schema"),
        ("/api/runs", {"prompt": "find it", "json_schema": deep_schema}, 422, "json_schema"),
        ("/api/runs", {"prompt": "find it", "allowed_domains": [f"d{i}.example" for i in range(101)]}, 422,
         "allowed_domains"),
        ("/api/runs", {"prompt": "find it", "workflow_params": {"q": "v" * 17_000}}, 422, "workflow_params"),
        ("/api/runs", {"prompt": "p" * 3_000_000}, 413, ""),
        ("/gradio_api/call/v2/run", {"prompt": "find it", "json_schema": json.dumps(big_schema) * 3}, 413, ""),
        ("/gradio_api/call/v2/run", {"prompt": "find it", "json_schema": json.dumps(big_schema)}, 422, ""),
    ]
    slowest = 0.0
    stop = threading.Event()

    def watch() -> None:
        nonlocal slowest
        with httpx.Client(base_url=app.base, headers=HEADERS, timeout=30) as probe:
            while not stop.is_set():
                t0 = time.monotonic()
                assert probe.get("/api/health").status_code == 200
                slowest = max(slowest, time.monotonic() - t0)
                time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for url, body, status, field in cases:
            r = http.post(url, json=body)
            assert r.status_code == status, (url, field, r.text[:300])
            if field:
                assert fields(r) == [field], r.text[:300]
    finally:
        stop.set()
        watcher.join(30)
    assert slowest < 1.0, f"/api/health took {slowest:.2f} s while large requests were refused"
    assert len(http.get("/api/tasks", params={"limit": 1000}).text) < 1_000_000  # nothing huge was stored


# ------------------------------------------------------------------ 6. ids in range, bodies in depth: no 500
def test_ids_are_bounded_and_deep_bodies_refused(app: App, http: httpx.Client) -> None:
    first = http.post("/api/runs", json={"prompt": "say hi [quick]"}).json()
    tasks_before = http.get("/api/tasks").json()["total"]
    for wid in (2**63, 2**64 + 5, 0, -1):
        for url in ("/api/runs", f"/api/tasks/{first['task_id']}/runs"):
            r = http.post(url, json={"prompt": "say hi [quick]", "use_cached_workflow": True, "workflow_id": wid})
            assert r.status_code == 422 and fields(r) == ["workflow_id"], (wid, url, r.text)
    assert http.get("/api/tasks").json()["total"] == tasks_before  # no orphan task rows
    deep = b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    for method, url in (("POST", f"/api/runs/{first['task_run_id']}/workflow"), ("PUT", "/api/workflows/1"),
                        ("POST", "/api/runs")):
        r = http.request(method, url, content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 422 and fields(r) == ["body"], (url, r.text)
    doc = {"document": {"name": "d", "prompt": "p", "steps": [{"description": "x", "actions": [
        {"name": "done", "params": {"text": "t", "data": json.loads("[" * 70 + "]" * 70)}}]}]}}
    r = http.put("/api/workflows/1", json=doc)
    assert r.status_code == 422 and fields(r) == ["body"], r.text
    assert "unhandled error" not in app.log() and "Traceback" not in app.log()


# ------------------------------------------------------------------ 7. webhook tokens and secrets are never kept
def test_webhook_tokens_and_secrets_never_reach_the_log_files(app: App, http: httpx.Client, site: Server,
                                                               tmp_path: Path) -> None:
    site.webhook_status = 200
    hook = f"{site.url}/hook?token={HOOK_TOKEN}"
    run = http.post("/api/runs", json={
        "prompt": f"Log in at {site.url}/login with token <secret>tok</secret> [login]", "model": "gpt-4o-mini",
        "start_url": f"{site.url}/login", "webhook_url": hook,
        "sensitive_data": {"tok": TOKEN, "https://127.0.0.1": {"pw": PASSWORD}}}).json()
    assert run["status"] == "success", run
    assert [parse_qs(urlsplit(h[1]).query) for h in site.got("GET", "/welcome")][-1] == {
        "token": [TOKEN], "pw": [PASSWORD]}  # the page got the values
    poll(lambda: site.got("POST", "/hook"), timeout=30, what="the webhook")
    attempts = poll(lambda: http.get(f"/api/runs/{run['task_run_id']}/webhooks").json()["attempts"], timeout=30,
                    what="the attempt")
    assert attempts[0]["url"] == f"{site.url}/..."
    saved = http.post(f"/api/runs/{run['task_run_id']}/workflow", json={"name": "login"}).json()
    shown = [json.dumps(run), http.get(f"/api/runs/{run['task_run_id']}").text, http.get("/api/runs").text,
             http.get(f"/api/tasks/{run['task_id']}").text, http.get("/api/tasks").text, json.dumps(saved),
             http.get(f"/api/runs/{run['task_run_id']}/webhooks").text, site.got("POST", "/hook")[0][2].decode()]
    assert "<secret>tok</secret>" in json.dumps(saved["document"])
    for text in shown[:-1]:
        assert TOKEN not in text and PASSWORD not in text and HOOK_TOKEN not in text
    assert TOKEN not in shown[-1] and PASSWORD not in shown[-1]  # the webhook's body
    # Nor any file a reader gets: the snapshot and the Parquet export.
    last = http.post("/api/runs", json={"prompt": "say hi [quick]"}).json()["task_run_id"]

    def published() -> bool:  # the end of a run publishes a snapshot (within the publisher's 2 s)
        from agent.log.snapshots import open_snapshot

        con = open_snapshot(app.data_dir)
        try:
            return con.execute("SELECT count(*) FROM runs WHERE id = ? AND status <> 'in_progress'",
                               [last]).fetchone()[0] == 1
        finally:
            con.close()

    poll(published, timeout=30, what="a snapshot with the last run")
    out = tmp_path / "export"
    done = subprocess.run([sys.executable, "-m", "agent.log", "export", "--data-dir", str(app.data_dir), "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    files = [p for p in [*out.rglob("*"), *(app.data_dir / "snapshot").rglob("*")] if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    for p in files:
        data = p.read_bytes()
        for value in (TOKEN, PASSWORD, HOOK_TOKEN):
            assert value.encode() not in data, (p, value)
    for value in (TOKEN, PASSWORD, HOOK_TOKEN):
        assert value not in app.log()


# ------------------------------------------------------------------ 9. the OpenAPI document tells the truth
def test_the_openapi_document_has_the_real_request_and_error_shapes(http: httpx.Client) -> None:
    doc = http.get("/api/openapi.json").json()
    post = doc["paths"]["/api/runs"]["post"]
    body_schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/RunRequest"}
    request = doc["components"]["schemas"]["RunRequest"]
    assert {"prompt", "json_schema", "sensitive_data", "workflow_id"} <= set(request["properties"])
    assert request["properties"]["prompt"]["maxLength"] == 20_000
    assert set(post["responses"]) >= {"200", "400", "401", "403", "413", "415", "422", "429", "503"}
    assert post["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationErrors"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert doc["paths"]["/api/runs/{task_run_id}"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"] == {"$ref": "#/components/schemas/RunResponse"}
    # Saving a run: 201 the first time, 200 (the workflow saved then) every time after.
    assert {"200", "201"} <= set(doc["paths"]["/api/runs/{task_run_id}/workflow"]["post"]["responses"])
    # The runs list's query parameters are the history's filters (RunFilter), then the page.
    listed = {p["name"]: p for p in doc["paths"]["/api/runs"]["get"]["parameters"]}
    assert list(listed) == [*RunFilter.model_fields, "limit", "offset"]
    assert all(p["in"] == "query" and not p["required"] for p in listed.values())
    assert listed["stop_reason"]["schema"]["anyOf"][0]["enum"] == list(STOP_REASONS)


# ------------------------------------------------------------------ 8. webhooks owed across a crash
def test_webhook_retries_resume_after_a_crash(model: FakeLLM, site: Server, tmp_path: Path) -> None:
    env = {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test", "WEBHOOK_ALLOW_PRIVATE": "1"}
    app = App(tmp_path / "data", env).start()
    try:
        app.ready()
        site.webhook_status = 503
        site.hits.clear()
        with httpx.Client(base_url=app.base, timeout=60) as http:
            run = http.post("/api/runs", json={"prompt": "answer now [quick]", "model": "gpt-4o-mini",
                                               "webhook_url": f"{site.url}/owed?token={HOOK_TOKEN}"}).json()
            run_id = run["task_run_id"]
            poll(lambda: len(http.get(f"/api/runs/{run_id}/webhooks").json()["attempts"]) >= 2, timeout=30,
                 what="two failed attempts")
        app.kill()  # mid-retry: the remaining attempts were owed
        made = len(site.got("POST", "/owed"))
        assert 2 <= made < 5
        site.webhook_status = 200
        app.start().ready()
        with httpx.Client(base_url=app.base, timeout=60) as http:
            attempts = poll(lambda: (a := http.get(f"/api/runs/{run_id}/webhooks").json()["attempts"]) and a[-1]["ok"]
                            and a, timeout=60, what="the resumed delivery")
        assert [a["attempt"] for a in attempts] == list(range(1, made + 2))  # numbering goes on; within the limit
        assert [a["ok"] for a in attempts] == [False] * made + [True]
        hits = site.got("POST", "/owed")
        assert len(hits) == made + 1 and json.loads(hits[-1][2]) == run
        assert all(urlsplit(h[1]).query == f"token={HOOK_TOKEN}" for h in hits)  # delivered to the full URL
        assert all(a["url"] == f"{site.url}/..." for a in attempts)
    finally:
        app.stop()
