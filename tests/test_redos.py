"""No regular expression a user gives can freeze the server: JSON Schema patterns (pattern,
patternProperties, with additionalProperties / unevaluatedProperties) and an experiment's regex check run
with RE2, in linear time. Direct checks, then `python app.py` over real HTTP with the fake model: the run and
the experiment end promptly and /api/health keeps answering meanwhile; patterns RE2 cannot run are a 422."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agent.experiments.checks import grade
from agent.experiments.tasks import Check
from agent.regexes import RegexError, check_regex
from agent.schemas import parse_json_schema, schema_problem
from agent.testing.fakellm import FakeLLM, call, last_user_text, reply
from tests.apphelpers import App, agent_script, poll

EVIL = "^(a+)+$"
N = 26  # Python's re needs about 5 s for "a" * 26 + "!", twice that per further "a"
SUBJECT = "a" * N + "!"
SCHEMAS: dict[str, tuple[dict[str, Any], Any]] = {
    "pattern": ({"type": "object", "properties": {"code": {"type": "string", "pattern": EVIL}}}, {"code": SUBJECT}),
    "patternProperties": ({"type": "object", "patternProperties": {EVIL: {"type": "integer"}}}, {SUBJECT: "x"}),
    "additionalProperties": ({"type": "object", "patternProperties": {EVIL: {}}, "additionalProperties": False},
                             {SUBJECT: 1}),
    "unevaluatedProperties": ({"type": "object", "patternProperties": {EVIL: {}}, "unevaluatedProperties": False},
                              {SUBJECT: 1}),
    "propertyNames": ({"type": "object", "propertyNames": {"pattern": EVIL}}, {SUBJECT: 1}),
}


@pytest.mark.parametrize("keyword", sorted(SCHEMAS))
def test_schema_patterns_match_in_linear_time(keyword: str) -> None:
    schema, value = SCHEMAS[keyword]
    parse_json_schema(schema)
    started = time.monotonic()
    problem = schema_problem(schema, value)
    elapsed = time.monotonic() - started
    if keyword == "patternProperties":  # the key matches no pattern: nothing applies to it
        assert problem is None
    else:
        assert problem is not None and problem.startswith("the result does not match the JSON schema"), problem
    assert elapsed < 1.0, f"{keyword}: {elapsed:.1f} s"  # generous: RE2 takes microseconds, re takes seconds


def test_the_regex_check_matches_in_linear_time() -> None:
    started = time.monotonic()
    got = grade(Check(regex=EVIL), SUBJECT)
    assert time.monotonic() - started < 1.0
    assert (got.passed, got.detail) == (False, f"no match for /{EVIL}/")
    assert grade(Check(regex="ds-[0-9a-f]{3}"), "got DS-1AF").passed  # case-insensitive, as before


@pytest.mark.parametrize(("pattern", "unsupported"), [
    (r"(a)\1", "backreferences"), ("(?=a)b", "lookahead"), ("(?!a)b", "negative lookahead"),
    ("(?<=a)b", "lookbehind"), ("(?<!a)b", "negative lookbehind"), ("a{2000}", "repetition count above 1000"),
])
def test_patterns_re2_cannot_run_are_refused_saying_why(pattern: str, unsupported: str) -> None:
    with pytest.raises(RegexError, match=unsupported):
        check_regex(pattern)
    with pytest.raises(ValueError, match=f"has a pattern at /properties/id/pattern that cannot be used: .*{unsupported}"):
        parse_json_schema({"type": "object", "properties": {"id": {"type": "string", "pattern": pattern}}})
    with pytest.raises(ValueError, match=unsupported):
        Check(regex=pattern)


# ------------------------------------------------------------------ through the real app
def model_script(body: dict[str, Any]) -> Any:
    """agent_script, plus [redos]: answer with the subject that makes a backtracking engine stall."""
    text = last_user_text(body)
    if body.get("tools") and "[redos" in text:
        done = next(t["function"]["parameters"] for t in body["tools"] if t["function"]["name"] == "done")
        if "data" not in done.get("properties", {}):
            return reply("Answer.", call("done", text=SUBJECT, success=True))
        data = SCHEMAS["pattern"][1] if "[redos-pattern]" in text else SCHEMAS["patternProperties"][1]
        return reply("Answer.", call("done", data=data, success=True))
    return agent_script(body)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    model = FakeLLM(model_script)
    app = App(tmp_path_factory.mktemp("redos") / "data",
              {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-test"}).start()
    try:
        app.ready()
        yield app
    finally:
        app.stop()
        model.close()


class HealthProbe:
    """Asks /api/health every 50 ms in a thread while the test works; keeps the slowest answer."""

    def __init__(self, base: str) -> None:
        self.base, self.worst, self.count = base, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=120) as client:
            while not self._stop.is_set() and self.count < 5_000:
                started = time.monotonic()
                assert client.get("/api/health").status_code == 200
                self.worst = max(self.worst, time.monotonic() - started)
                self.count += 1
                self._stop.wait(0.05)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(150)


@pytest.mark.slow
def test_evil_patterns_never_stall_the_server(app: App) -> None:
    http = httpx.Client(base_url=app.base, timeout=120)
    with HealthProbe(app.base) as probe:
        for marker, keyword in (("[redos-pattern]", "pattern"), ("[redos-keys]", "additionalProperties")):
            started = time.monotonic()
            run = http.post("/api/runs", json={"prompt": f"Give the code {marker}", "model": "gpt-4o-mini",
                                               "json_schema": SCHEMAS[keyword][0]}).json()
            assert time.monotonic() - started < 60, "the run ended promptly"
            assert (run["status"], run["stop_reason"]) == ("failure", "invalid_result"), run
            assert "does not match" in run["error"], run["error"]
        exp = http.post("/api/experiments", json={
            "tasks": [{"id": "evil", "prompt": "Say the code [redos-text]", "check": {"regex": EVIL}}],
            "variants": [{"name": "v", "model": "gpt-4o-mini"}]})
        assert exp.status_code == 202, exp.text
        url = f"/api/experiments/{exp.json()['experiment_id']}"
        report = poll(lambda: (r := http.get(url).json())["status"] == "done" and r, timeout=60,
                      what="the experiment to end")
    (cell,) = report["cells"]
    assert (cell["passed"], cell["detail"]) == (False, f"no match for /{EVIL}/"), cell
    assert probe.count > 10 and probe.worst < 1.0, f"/api/health took up to {probe.worst:.2f} s"


@pytest.mark.slow
def test_patterns_re2_cannot_run_are_a_422_naming_the_field(app: App) -> None:
    http = httpx.Client(base_url=app.base, timeout=60)
    r = http.post("/api/runs", json={"prompt": "Give the code", "json_schema": {
        "type": "object", "patternProperties": {r"^(\w)\1$": {}}}})
    assert r.status_code == 422, r.text
    (detail,) = r.json()["detail"]
    assert detail["field"] == "json_schema" and "backreferences" in detail["message"], detail
    assert "/patternProperties/" in detail["message"], detail
    r = http.post("/api/experiments", json={"tasks": [{"id": "t", "prompt": "Say it", "check": {"regex": "(?<=x)y"}}],
                                            "variants": [{"name": "v", "model": "gpt-4o-mini"}]})
    assert r.status_code == 422, r.text
    (detail,) = r.json()["detail"]
    assert detail["field"].endswith("check.regex") and "lookbehind" in detail["message"], detail
