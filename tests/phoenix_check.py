"""`make phoenix`: the OpenTelemetry export checked against a real Arize Phoenix, read back through
Phoenix's own client. Not part of `make test` (Phoenix is a large install, in its own .venv-phoenix).

Runs under .venv-phoenix's Python with the repository on the path: starts Phoenix on 127.0.0.1 (its
own working folder, telemetry off: nothing leaves the machine), the fake model, and the app (under
the project's .venv) exporting to Phoenix with message content on; sends a few runs (a tool run and
a vision run in one session, a run on its own); then reads them back with `phoenix.client.Client`
and checks the span kinds, messages, tools, tokens, cost, sessions and the project; prints a summary.
With `--screenshot FILE`, the trace of the tool run as Phoenix's UI draws it (headless Chromium, through
the project's .venv Playwright). Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.testing.fakellm import FakeLLM, call, last_user_text, reply  # noqa: E402
from tests.apphelpers import free_port, poll  # noqa: E402

PROJECT = "web-agent-phoenix-check"
SESSION = "phoenix-check"
ANSWERED_BY = "gpt-4o-mini-2024-07-18"  # what OpenAI's server says answered a request for gpt-4o-mini
APP_PYTHON = ROOT / ".venv" / "bin" / "python"
URL_RE = re.compile(r"https?://[^\s\]<>\"]+")


def model(body: dict[str, Any]) -> Any:
    """The fake model, answering as the dated model a real server names (Phoenix prices it)."""
    return {**answer(body), "model": ANSWERED_BY}


def answer(body: dict[str, Any]) -> Any:
    """[tool] opens the shop, scrolls, then is done; anything else is done at once."""
    text = last_user_text(body)
    step = int(re.search(r"Step (\d+) of at most", text).group(1))  # type: ignore[union-attr]
    task = re.search(r"<task>\n(.*?)\n</task>", text, re.S).group(1)  # type: ignore[union-attr]
    if "[tool]" in task:
        if step == 1:
            return reply("Open the shop.", call("navigate", url=URL_RE.findall(task)[0]), usage=(1200, 40))
        if step == 2:
            return reply("Look further down.", call("scroll", down=True), usage=(1500, 30))
        return reply("Report what is there.", call("done", text="a shop with cables", success=True), usage=(1600, 50))
    return reply("Answer at once.", call("done", text="seen", success=True), usage=(900, 20))


def start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """A process in its own group, its output in `log`."""
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 180) -> None:
    """Until `url` answers 200 (bounded); the process log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited ({proc.returncode}):\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{what} did not answer {url} within {timeout} s")


def send_runs(base: str) -> dict[str, dict[str, Any]]:
    """A tool run and a vision run in one session, and a run on its own; their responses by name."""
    bodies = {
        "tool": {"prompt": f"Open {base}/demo/ and tell what is there [tool]", "model": "gpt-4o-mini",
                 "session_id": SESSION},
        "vision": {"prompt": "Look at the shop's start page", "model": "gpt-4o-mini", "use_vision": True,
                   "start_url": f"{base}/demo/", "session_id": SESSION},
        "alone": {"prompt": "Say hello", "model": "gpt-4o-mini"},
    }
    runs = {}
    with httpx.Client(base_url=base, timeout=180) as http:
        for name, body in bodies.items():
            runs[name] = {**http.post("/api/runs", json=body).raise_for_status().json(), "prompt": body["prompt"]}
            if runs[name]["status"] != "success":
                raise SystemExit(f"the {name} run failed: {runs[name].get('error')}")
    return runs


def read_back(phoenix_url: str, runs: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], Any]:
    """Every span of the project, through Phoenix's client, once the runs' roots are all in."""
    from phoenix.client import Client

    client = Client(base_url=phoenix_url)

    def spans() -> list[dict[str, Any]] | None:
        try:
            found = [dict(s) for s in client.spans.get_spans(project_identifier=PROJECT, limit=1000)]
        except Exception:  # the project does not exist until the first span arrives
            return None
        roots = {s["attributes"].get("workbench.run_id") for s in found if not s.get("parent_id")}
        return found if all(r["task_run_id"] in roots for r in runs.values()) else None

    return poll(spans, timeout=90, what="the runs in Phoenix"), client


def check(spans: list[dict[str, Any]], client: Any, runs: dict[str, dict[str, Any]]) -> list[str]:
    """What Phoenix shows, checked; returns the failures (empty: all good) and prints the summary."""
    failures: list[str] = []

    def expect(ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            failures.append(what)

    def attr(span: dict[str, Any], key: str) -> Any:
        return span["attributes"].get(key)

    def kind(span: dict[str, Any]) -> str:  # Phoenix files openinference.span.kind as the span's span_kind
        return str(span.get("span_kind"))

    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(span["context"]["trace_id"], []).append(span)
    roots = {attr(s, "workbench.run_id"): s for s in spans if not s.get("parent_id")}
    print(f"Phoenix project {PROJECT!r}: {len(spans)} spans in {len(by_trace)} traces")
    for name, run in runs.items():
        root = roots[run["task_run_id"]]
        trace = by_trace[root["context"]["trace_id"]]
        kinds = Counter(kind(s) for s in trace)
        llm = [s for s in trace if kind(s) == "LLM"]
        tokens = sum(int(attr(s, "llm.token_count.total") or 0) for s in llm)
        print(f"- run {run['task_run_id']} ({name}): {dict(sorted(kinds.items()))}, {tokens} tokens, "
              f"session {attr(root, 'session.id')!r}, input {str(attr(root, 'input.value'))[:40]!r}, "
              f"output {str(attr(root, 'output.value'))[:40]!r}")
        expect(set(kinds) == {"AGENT", "CHAIN", "LLM", "TOOL"}, f"{name}: every span has its kind (AGENT, CHAIN, LLM, TOOL)")
        expect(attr(root, "input.value") == run["prompt"], f"{name}: the run's span has its input (the task)")
        expect(attr(root, "output.value") == run["result"], f"{name}: the run's span has its output (the result)")
        expect(tokens == run["usage"]["input_tokens"] + run["usage"]["output_tokens"],
               f"{name}: LLM token counts add up to the run's ({tokens})")
        expect(all(attr(s, "llm.input_messages") or any(k.startswith("llm.input_messages") for k in s["attributes"])
                   for s in llm), f"{name}: every LLM span has its input messages")
        expect(all(attr(s, "llm.tools") or any(k.startswith("llm.tools") for k in s["attributes"]) for s in llm),
               f"{name}: every LLM span has the tools offered")
        steps = [s for s in trace if kind(s) == "CHAIN"]
        expect(all(attr(s, "input.value") for s in steps), f"{name}: every step has its goal as input")
        tools = [s for s in trace if kind(s) == "TOOL"]
        expect(all(attr(s, "output.value") for s in tools), f"{name}: every tool span has its outcome")
        if name == "tool":
            with_id = [s for s in tools if attr(s, "tool.id")]
            expect(len(with_id) == 3, f"{name}: the model's tool calls have their ids on the tool spans")
        if name == "vision":
            user = [s for s in llm if _flat(s["attributes"], "llm.input_messages")]
            text = next((v for k, v in _flat(user[0]["attributes"], "llm.input_messages").items()
                         if k.endswith("message_content.text")), "") if user else ""
            expect("Look at the shop's start page" in text, f"{name}: the user message's text part is there")
            types = [v for k, v in _flat(user[0]["attributes"], "llm.input_messages").items()
                     if k.endswith("message_content.type")] if user else []
            expect(types == ["text", "image"], f"{name}: the user message has its text and its screenshot {types}")
    traces = client.traces.get_traces(project_identifier=PROJECT, limit=100)
    totals = {t["trace_id"]: t.get("token_count_total") for t in traces}
    for name, run in runs.items():
        total = totals.get(roots[run["task_run_id"]]["context"]["trace_id"])
        expect(total == run["usage"]["input_tokens"] + run["usage"]["output_tokens"],
               f"{name}: Phoenix's own token total for the trace is the run's ({total})")
    costs = trace_costs(client, [roots[r["task_run_id"]]["context"]["trace_id"] for r in runs.values()])
    for name, run in runs.items():
        cost = costs.get(roots[run["task_run_id"]]["context"]["trace_id"])
        ours = run["usage"]["cost_usd"]
        expect(cost is not None and abs(cost - ours) <= 1e-9 + 1e-6 * ours,
               f"{name}: the cost Phoenix works out for the trace is the workbench's (${cost} vs ${ours})")
    in_session = client.traces.get_traces(project_identifier=PROJECT, session_id=SESSION, limit=100)
    expect(len(in_session) == 2, f"Phoenix's traces of session {SESSION!r}: {len(in_session)}")
    sessions = client.sessions.list(project_name=PROJECT) if _takes(client.sessions.list, "project_name") else \
        client.sessions.list(project_identifier=PROJECT)
    found = {str(s.get("session_id")): s for s in sessions}
    print(f"- sessions: {sorted(found)}")
    expect(set(found) == {SESSION}, f"one session, {SESSION!r} (the run on its own is in none)")
    session_traces = {r["context"]["trace_id"] for r in roots.values() if attr(r, "session.id") == SESSION}
    expect(len(session_traces) == 2, f"the session holds the tool run and the vision run ({len(session_traces)} traces)")
    return failures


def trace_costs(client: Any, trace_ids: list[str]) -> dict[str, float | None]:
    """Each trace's total cost as Phoenix computes it from its own price table (its GraphQL API, through the
    client's HTTP connection: the REST API does not give costs)."""
    query = """query ($name: String!, $trace: ID!) { projects(filter: {col: name, value: $name}) { edges { node {
        trace(traceId: $trace) { costSummary { total { cost } } } } } } }"""
    out: dict[str, float | None] = {}
    for trace_id in trace_ids:
        answer = client._client.post("/graphql", json={"query": query, "variables": {"name": PROJECT,
                                                                                     "trace": trace_id}})
        edges = answer.raise_for_status().json()["data"]["projects"]["edges"]
        out[trace_id] = edges[0]["node"]["trace"]["costSummary"]["total"]["cost"] if edges else None
    return out


def _flat(attributes: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Attributes under `prefix`, flattened to dotted keys whether the client nested them or not."""
    out: dict[str, Any] = {}

    def walk(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{key}.{k}", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{key}.{i}", v)
        else:
            out[key] = value

    for key, value in attributes.items():
        if key == prefix or key.startswith(prefix + "."):
            walk(key, value)
    return out


def _takes(fn: Any, name: str) -> bool:
    import inspect

    return name in inspect.signature(fn).parameters


def screenshot(url: str, out: Path) -> None:
    """Phoenix's page at `url` in headless Chromium (the project's .venv Playwright), saved to `out`."""
    code = f"""
import asyncio
from playwright.async_api import async_playwright
from agent.engine.browser import find_chromium

async def main():
    async with async_playwright() as p:
        # Phoenix's page links web fonts on the internet: no name but loopback resolves, and no request leaves.
        browser = await p.chromium.launch(executable_path=find_chromium(), headless=True,
                                          args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"])
        page = await browser.new_page(viewport={{"width": 1500, "height": 900}})
        await page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
            ("http://127.0.0.1", "data:", "blob:")) else route.abort())
        await page.goto({url!r}, wait_until="load")
        await page.get_by_text("chat gpt-4o-mini").nth(1).click(timeout=60000)  # step 2's call: its messages
        await page.get_by_text("Look further down.").first.wait_for(timeout=30000)
        await page.wait_for_timeout(1000)
        await page.screenshot(path={str(out)!r})
        await browser.close()

asyncio.run(main())
"""
    subprocess.run([str(APP_PYTHON), "-c", code], cwd=ROOT, check=True, timeout=180)


def main() -> int:
    """Start Phoenix, the fake model and the app; send runs; read them back; print what Phoenix has."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, help="save a picture of the tool run's trace in Phoenix here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="phoenix-check-"))
    phoenix_port, app_port = free_port(), free_port()
    phoenix_url, base = f"http://127.0.0.1:{phoenix_port}", f"http://127.0.0.1:{app_port}"
    quiet = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))}
    phoenix_env = {**quiet, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(phoenix_port),
                   "PHOENIX_GRPC_PORT": str(free_port()), "PHOENIX_WORKING_DIR": str(work / "phoenix"),
                   "PHOENIX_TELEMETRY_ENABLED": "false", "PHOENIX_DISABLE_AGENT_ASSISTANT": "true"}
    fake = FakeLLM(model)
    app_env = {**quiet, "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test", "GRADIO_ANALYTICS_ENABLED": "False",
               "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1",
               "OTEL_EXPORTER_OTLP_ENDPOINT": phoenix_url, "OTEL_SERVICE_NAME": PROJECT,
               "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true", "OTEL_BSP_SCHEDULE_DELAY": "200"}
    phoenix = start([sys.executable, "-m", "phoenix.server.main", "serve"], phoenix_env, work / "phoenix.log", work)
    app = start([str(APP_PYTHON), "app.py", "--port", str(app_port), "--data-dir", str(work / "data")], app_env,
                work / "app.log", ROOT)
    failures = ["did not get as far as the checks"]
    try:
        import phoenix as px

        print(f"Phoenix {px.__version__} on {phoenix_url}; the app on {base}; logs in {work}")
        wait_http(f"{phoenix_url}/healthz", phoenix, work / "phoenix.log", "Phoenix")
        wait_http(f"{base}/api/health", app, work / "app.log", "the app")
        runs = send_runs(base)
        spans, client = read_back(phoenix_url, runs)
        (work / "spans.json").write_text(json.dumps(spans, indent=1, default=str))  # as Phoenix's client gave them
        failures = check(spans, client, runs)
        if args.screenshot:
            project = client.projects.get(project_name=PROJECT)
            root = next(s for s in spans if not s.get("parent_id")
                        and s["attributes"].get("workbench.run_id") == runs["tool"]["task_run_id"])
            url = f"{phoenix_url}/projects/{project['id']}/traces/{root['context']['trace_id']}"
            screenshot(url, args.screenshot)
            print(f"screenshot of {url} -> {args.screenshot}")
    finally:
        stop(app)
        stop(phoenix)
        fake.close()
        if not failures:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'all checks passed' if not failures else f'{len(failures)} check(s) failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
