"""The analysis API and the notebooks, on a real run log: the real run service drives the real engine
in real Chromium on local pages, with the fake OpenAI-compatible model; every notebook is then
executed with nbclient against the published snapshot while the store is still open (the app is
running), and the numbers it prints are checked against what the runs returned.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
import pytest_asyncio
from nbclient import NotebookClient

from agent import analysis as an
from agent.engine.loop import EngineOptions
from agent.log.snapshots import snapshot_path
from agent.log.store import Store
from agent.models import ReviewIn, RunResponse, StepFinished
from agent.service.runs import RunService
from agent.testing.fakellm import FakeLLM, call, reply

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK_NAMES = ("01_overview", "02_failures", "03_cost_latency", "04_compare", "05_experiments")

MODEL_A, MODEL_B = "gpt-4o-mini", "gpt-4.1-mini"
USAGE = {MODEL_A: (200, 30), MODEL_B: (500, 50)}
TASK = "Open the test site and report its main heading"
TASK_2 = "Report the main heading of the test site"
TASK_3 = "Summarise the test site"  # runs lost to the infrastructure (a refused key, no key at all)
TASK_4 = "Wait on the test site until cancelled"
CLAUDE = "claude-sonnet-4-5"


# ------------------------------------------------------------------ recording a real run log
def scripted(model: str, *answers: Callable[[str], dict[str, Any]]) -> Callable[[dict[str, Any]], Any]:
    """A fake-model handler answering the Nth step with the Nth answer (the last repeats)."""
    counter = {"n": 0}

    def handler(body: dict[str, Any]) -> Any:
        assert body["model"] == model, f"the run asked {body['model']!r}, expected {model!r}"
        n = min(counter["n"], len(answers) - 1)
        counter["n"] += 1
        return answers[n](model)

    return handler


def navigate(url: str) -> Callable[[str], dict[str, Any]]:
    return lambda model: reply("Open the site.", call("navigate", url=url), usage=USAGE[model])


def done(model: str) -> dict[str, Any]:
    return reply("Report the heading.", call("done", text="Test site", success=True), usage=USAGE[model])


def scroll(model: str) -> dict[str, Any]:
    return reply("Look further down.", call("scroll", down=True, pages=1), usage=USAGE[model])


def bad_click(model: str) -> dict[str, Any]:
    return reply("Click the heading.", call("click", index=9999), usage=USAGE[model])


def refused(model: str) -> int:
    return 401  # the provider refuses the key: the run ends at once, the agent had no chance


def slow_scroll(model: str) -> dict[str, Any]:
    time.sleep(1.0)  # long enough for the cancel to land while the model "thinks"
    return reply("Look further down.", call("scroll", down=True, pages=1), usage=USAGE[model])


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson interval, computed here independently of the views' SQL."""
    z = 1.96
    p = k / n
    centre, half = p + z * z / (2 * n), z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


@dataclass
class Recorded:
    """A real run log and what the runs returned."""

    data: Path
    exports: Path
    store: Store
    prompts: list[str] = field(default_factory=list)
    responses: list[RunResponse] = field(default_factory=list)

    def by_model(self, model: str, prompt: str | None = None) -> list[RunResponse]:
        """The responses of `model`'s runs (of `prompt` only, when given), in run order."""
        return [r for p, r in zip(self.prompts, self.responses)
                if r.model == model and (prompt is None or p == prompt)]


def records(df: Any, columns: list[str]) -> list[dict[str, Any]]:
    """Rows as dicts, pandas' missing values as None."""
    part = df[columns].astype(object)
    return part.where(part.notna(), None).to_dict("records")


def tokens(responses: list[RunResponse]) -> int:
    return sum(r.usage.input_tokens + r.usage.output_tokens for r in responses)


async def record_runs(service: RunService, fake: FakeLLM, site_url: str) -> tuple[list[str], list[RunResponse]]:
    """Three successes with model A (two prompts), two agent failures with model B (max_steps, action errors),
    then runs where the agent had no fair chance: B's key refused, no key for anthropic, A's run cancelled."""
    home = f"{site_url}/index.html"
    plan = [
        (MODEL_A, TASK, {}, (navigate(home), done)),
        (MODEL_A, TASK, {}, (navigate(home), done)),
        (MODEL_A, TASK_2, {}, (navigate(home), done)),
        (MODEL_B, TASK, {"max_steps": 2}, (navigate(home), scroll)),
        (MODEL_B, TASK, {}, (navigate(home), bad_click)),
        (MODEL_B, TASK_3, {}, (refused,)),
        (CLAUDE, TASK_3, {"provider": "anthropic"}, (done,)),
        (MODEL_A, TASK_4, {"cancel": True}, (navigate(home), slow_scroll)),
    ]
    responses = []
    for model, prompt, extra, answers in plan:
        fake.reset(scripted(model, *answers))
        request = {"prompt": prompt, "model": model, "provider": "openai", **extra}
        if not request.pop("cancel", False):
            responses.append(await service.run(request))
            continue
        _, run_id = await service.submit(request)
        async for event in service.subscribe(run_id):  # cancelled once its first step is recorded
            if isinstance(event, StepFinished):
                await service.cancel(run_id)
                break
        responses.append(await service.wait(run_id, timeout=60))
    return [prompt for _, prompt, _, _ in plan], responses


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def recorded(browser, site_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Five real runs in a real store; the snapshot and a Parquet export published; the store stays open."""
    root = tmp_path_factory.mktemp("runlog")
    data, exports = root / "data", root / "exports"
    fake = FakeLLM()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_BASE_URL", fake.url)
        mp.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"):
            mp.delenv(var, raising=False)
        store = Store(data, snapshot_interval_s=60)
        service = RunService(store, browser, data_dir=data, engine_options=EngineOptions(timeout_s=60))
        try:
            prompts, responses = await record_runs(service, fake, site_url)
            # A person fails A's run of TASK_2, which its agent called a success: graded, it is a failure.
            await service.review(responses[2].task_run_id, ReviewIn(verdict="fail", comment="wrong heading"),
                                 reviewer="ana", source="body")
        finally:
            await service.close()
            fake.close()
    store.publish_snapshot()
    # The export as `make export` runs it, from another process, while the app (this store) is open.
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent.log", "export", "--data-dir", str(data), "--out", str(exports)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    rec = Recorded(data=data, exports=exports, store=store, prompts=prompts, responses=responses)
    yield rec
    store.close()


def test_the_recorded_runs_are_what_the_notebooks_are_checked_against(recorded: Recorded) -> None:
    """Sanity of the scenario itself: 3 successes with A, 2 agent failures with B, each for its own reason,
    then B's key refused, no key for anthropic and A's run cancelled (no fair chance, counted apart)."""
    ends = [(r.model, r.status, r.stop_reason) for r in recorded.responses]
    assert ends == [
        (MODEL_A, "success", "done"), (MODEL_A, "success", "done"), (MODEL_A, "success", "done"),
        (MODEL_B, "failure", "max_steps"), (MODEL_B, "failure", "max_failures"), (MODEL_B, "failure", "model_error"),
        (CLAUDE, "failure", "missing_key"), (MODEL_A, "failure", "cancelled"),
    ]
    errors = [r.error for r in recorded.responses]
    assert errors[3] == "reached max_steps (2) without calling done"
    assert errors[4].startswith("stopped after 3 consecutive failures; last:")
    assert errors[5].startswith("the model could not be used (auth): the openai API refused the key")
    assert errors[6].startswith("No API key for provider 'anthropic': set ANTHROPIC_API_KEY")
    assert errors[7] == "cancelled"
    assert [len(r.history) for r in recorded.responses][:7] == [2, 2, 2, 2, 4, 1, 0]
    assert len(recorded.responses[7].history) >= 1
    assert all(r.usage.cost_usd > 0 for r in recorded.responses[:5]), "litellm priced both models"


def fair(responses: list[RunResponse]) -> list[RunResponse]:
    """The runs where the agent had a fair chance (not stopped from outside, not lost to the infrastructure)."""
    apart = ("cancelled", "interrupted", "shutdown", "model_error", "missing_key", "browser_error", "internal_error")
    return [r for r in responses if r.stop_reason not in apart]


# ------------------------------------------------------------------ the analysis API, in process
def test_helpers_match_the_recorded_runs(recorded: Recorded) -> None:
    """Each helper's rows agree with the responses the run service returned."""
    con = an.connect(recorded.data)
    runs = an.runs(con=con)
    assert runs.id.tolist() == [r.task_run_id for r in recorded.responses]
    assert runs.status.tolist() == [r.status for r in recorded.responses]
    assert runs.stop_reason.tolist() == [r.stop_reason for r in recorded.responses]
    assert runs.outcome.tolist() == ["success"] * 3 + ["agent_failure"] * 2 + ["infrastructure"] * 2 + ["stopped"]
    assert (runs.input_tokens + runs.output_tokens).tolist() == [
        r.usage.input_tokens + r.usage.output_tokens for r in recorded.responses
    ]
    assert runs.cost_usd.tolist() == pytest.approx([r.usage.cost_usd for r in recorded.responses])
    for r, row in zip(recorded.responses, runs.itertuples()):  # the run's time split, summed from its steps
        assert row.llm_ms == pytest.approx(sum(item.llm_ms for item in r.history))
        assert row.llm_ms + row.browser_ms + row.own_ms == pytest.approx(row.duration_s * 1000)

    by_model = an.success_by_model(con=con)
    cols = ["provider", "model", "runs", "fair_runs", "successes", "success_rate", "ci_low", "ci_high",
            "agent_failures", "stopped", "infra_failures"]
    a_low, a_high = wilson(2, 3)
    b_low, b_high = wilson(0, 2)
    assert records(by_model, cols) == [  # A's third success was failed by a person: what was graded counts
        {"provider": "openai", "model": MODEL_A, "runs": 4, "fair_runs": 3, "successes": 2,
         "success_rate": pytest.approx(2 / 3), "ci_low": pytest.approx(a_low), "ci_high": pytest.approx(a_high),
         "agent_failures": 1, "stopped": 1, "infra_failures": 0},
        {"provider": "openai", "model": MODEL_B, "runs": 3, "fair_runs": 2, "successes": 0, "success_rate": 0.0,
         "ci_low": pytest.approx(b_low, abs=1e-12), "ci_high": pytest.approx(b_high), "agent_failures": 2,
         "stopped": 0, "infra_failures": 1},
        {"provider": "anthropic", "model": CLAUDE, "runs": 1, "fair_runs": 0, "successes": 0, "success_rate": None,
         "ci_low": None, "ci_high": None, "agent_failures": 0, "stopped": 0, "infra_failures": 1},
    ]
    assert records(by_model, ["graded_by_person", "graded_by_agent", "success_source", "claimed_successes",
                              "claimed_success_rate"]) == [
        {"graded_by_person": 1, "graded_by_agent": 2, "success_source": "mixed", "claimed_successes": 3,
         "claimed_success_rate": 1.0},
        {"graded_by_person": 0, "graded_by_agent": 2, "success_source": "agent", "claimed_successes": 0,
         "claimed_success_rate": 0.0},
        {"graded_by_person": 0, "graded_by_agent": 0, "success_source": "agent", "claimed_successes": 0,
         "claimed_success_rate": None}]
    total = an.success_overall(con=con).iloc[0]
    low, high = wilson(2, 5)
    assert (total.runs, total.fair_runs, total.successes, total.stopped, total.infra_failures) == (8, 5, 2, 1, 2)
    assert (total.graded_runs, total.graded_by_agent, total.claimed_successes) == (1, 4, 3)
    assert runs.graded_by.tolist() == ["agent", "agent", "person"] + ["agent"] * 5
    assert runs.graded_outcome.tolist()[:3] == ["success", "success", "agent_failure"]
    assert (total.ci_low, total.ci_high) == (pytest.approx(low), pytest.approx(high))
    reasons = an.stop_reasons(con=con)
    assert sorted(zip(reasons.model, reasons.stop_reason, reasons.runs)) == sorted([
        (MODEL_A, "done", 3), (MODEL_A, "cancelled", 1), (MODEL_B, "max_steps", 1), (MODEL_B, "max_failures", 1),
        (MODEL_B, "model_error", 1), (CLAUDE, "missing_key", 1)])

    b_max, b_fail, b_refused = recorded.by_model(MODEL_B)
    (claude,) = recorded.by_model(CLAUDE)
    a_cancelled = recorded.responses[7]
    hits = an.limit_hits(con=con)
    assert hits[["run_id", "model", "limit_hit", "steps", "error"]].to_dict("records") == [
        {"run_id": b_max.task_run_id, "model": MODEL_B, "limit_hit": "max_steps", "steps": 2, "error": b_max.error},
        {"run_id": b_fail.task_run_id, "model": MODEL_B, "limit_hit": "max_failures", "steps": 4,
         "error": b_fail.error},
    ]

    wrong = an.failure_step(con=con)
    click_error = b_fail.history[1].actions[0].error
    refusal = b_refused.history[0].llm_calls[0].error
    assert click_error and refusal
    last = a_cancelled.history[-1]
    assert records(wrong, ["run_id", "stop_reason", "outcome", "seq", "step", "why", "action", "action_error"]) == [
        {"run_id": b_max.task_run_id, "stop_reason": "max_steps", "outcome": "agent_failure", "seq": 1, "step": 2,
         "why": "last step", "action": "scroll", "action_error": None},
        {"run_id": b_fail.task_run_id, "stop_reason": "max_failures", "outcome": "agent_failure", "seq": 1,
         "step": 2, "why": "first action error", "action": "click", "action_error": click_error},
        {"run_id": b_refused.task_run_id, "stop_reason": "model_error", "outcome": "infrastructure", "seq": 0,
         "step": 1, "why": "model error", "action": "model call", "action_error": refusal},
        {"run_id": claude.task_run_id, "stop_reason": "missing_key", "outcome": "infrastructure", "seq": None,
         "step": None, "why": "no step", "action": None, "action_error": None},
        {"run_id": a_cancelled.task_run_id, "stop_reason": "cancelled", "outcome": "stopped",
         "seq": len(a_cancelled.history) - 1, "step": last.step, "why": "last step", "action": last.actions[-1].name,
         "action_error": None},
    ]
    errors = an.model_errors(con=con)
    assert records(errors, ["provider", "model", "purpose", "error", "calls", "runs"]) == [
        {"provider": "openai", "model": MODEL_B, "purpose": "step", "error": refusal, "calls": 1,
         "runs": 1}]

    failing = an.failing_actions(con=con)
    assert records(failing, ["name", "error", "count", "runs"]) == [
        {"name": "click", "error": click_error, "count": 3, "runs": 1},
    ]

    cl = an.cost_latency_by_model(con=con).set_index("model")
    for model in (MODEL_A, MODEL_B):
        mine = recorded.by_model(model)
        steps = sum(len(r.history) for r in mine)
        assert cl.loc[model, "runs"] == len(mine)
        assert cl.loc[model, "steps"] == steps
        assert cl.loc[model, "total_tokens"] == tokens(mine)
        assert cl.loc[model, "tokens_per_step"] == pytest.approx(tokens(mine) / steps)
        assert cl.loc[model, "cost_per_run_usd"] == pytest.approx(sum(r.usage.cost_usd for r in mine) / len(mine))
        latencies = sorted(c.latency_ms for r in mine for item in r.history for c in item.llm_calls)
        assert cl.loc[model, "llm_latency_p50_ms"] == pytest.approx(_median(latencies))
        p90, p99 = cl.loc[model, "llm_latency_p90_ms"], cl.loc[model, "llm_latency_p99_ms"]
        assert latencies[0] <= p90 <= p99 <= latencies[-1]

    split = an.time_split(con=con)
    assert len(split) == sum(len(r.history) for r in recorded.responses)
    assert (split.own_ms >= 0).all()
    assert (split.llm_ms + split.browser_ms + split.own_ms).tolist() == pytest.approx(split.duration_ms.tolist())
    first = recorded.responses[0].history[0]
    assert split.iloc[0][["llm_ms", "browser_ms", "own_ms", "duration_ms"]].tolist() == pytest.approx(
        [first.llm_ms, first.browser_ms, first.own_ms, first.duration_ms])
    refused_step = split[split.run_id == b_refused.task_run_id].iloc[0]  # a failed call's time is the model's
    assert refused_step.llm_ms == pytest.approx(b_refused.history[0].llm_calls[0].latency_ms, rel=0.5)
    assert refused_step.llm_ms > 0

    side = an.compare(MODEL_A, MODEL_B, con=con)  # on TASK only: the one prompt both models ran
    a_same = recorded.by_model(MODEL_A, TASK)
    assert side.index.tolist() == [MODEL_A, MODEL_B]
    assert side.runs.tolist() == [2, 2] and len(a_same) == 2
    assert side.success_rate.tolist() == [1.0, 0.0]
    assert side.fair_runs.tolist() == [2, 2]
    assert side.ci_low.tolist() == pytest.approx([wilson(2, 2)[0], 0.0], abs=1e-12)
    assert side.ci_high.tolist() == pytest.approx([1.0, wilson(0, 2)[1]])
    assert side.prompts.tolist() == [1, 1]
    assert side.avg_tokens.tolist() == pytest.approx([tokens(a_same) / 2, tokens(recorded.by_model(MODEL_B)) / 2])
    prompts = an.compare(TASK, TASK_2, by="prompt", model=MODEL_A, con=con)
    assert prompts.runs.tolist() == [2, 1] and prompts.success_rate.tolist() == [1.0, 0.0]  # TASK_2's: failed
    assert an.most_common("model", con=con) == [MODEL_A, MODEL_B]
    assert an.most_common("prompt", con=con) == [TASK, TASK_3]


def test_run_timeline_lays_out_a_run_with_its_screenshots(recorded: Recorded) -> None:
    """One failed run step by step, screenshot files found on disk."""
    b_fail = recorded.by_model(MODEL_B)[1]
    con = an.connect(recorded.data)
    timeline = an.run_timeline(b_fail.task_run_id, con=con)
    assert timeline.step.tolist() == [item.step for item in b_fail.history] == [1, 2, 3, 4]
    assert timeline.description.tolist() == [item.description for item in b_fail.history]
    assert timeline.failed_actions.tolist() == [0, 1, 1, 1]
    assert timeline.actions.iloc[1] == 'click {"index":9999}'
    assert timeline.errors.iloc[1] == f"click: {b_fail.history[1].actions[0].error}"
    assert timeline.input_tokens.tolist() == [USAGE[MODEL_B][0]] * 4
    assert timeline.screenshot.tolist() == [item.screenshot for item in b_fail.history]
    assert all(Path(p).is_file() and Path(p).is_relative_to(recorded.data) for p in timeline.screenshot)
    assert an.run_timeline(10_000, con=con).empty
    con.close()


def test_bad_arguments_name_the_fix(recorded: Recorded) -> None:
    con = an.connect(recorded.data)
    with pytest.raises(ValueError, match="by must be 'model' or 'prompt'"):
        an.compare("a", "b", by="provider", con=con)
    with pytest.raises(ValueError, match="pick two different ones"):
        an.compare(MODEL_A, MODEL_A, con=con)
    with pytest.raises(ValueError, match=r"run_id must be a run's integer id \(see runs\(\).id\)"):
        an.steps("latest", con=con)
    con.close()


def test_an_empty_log_gives_empty_frames_with_the_same_columns(recorded: Recorded, tmp_path: Path) -> None:
    """A log with no runs yet: every helper returns no rows and the columns it has on a real log."""
    Store(tmp_path / "data").close()  # migrates and publishes an empty snapshot
    full, empty = an.connect(recorded.data), an.connect(tmp_path / "data")
    helpers: dict[str, Callable[..., Any]] = {
        "runs": an.runs, "steps": an.steps, "actions": an.actions, "llm_calls": an.llm_calls,
        "webhooks": an.webhooks, "success_by_model": an.success_by_model, "failing_actions": an.failing_actions,
        "cost_latency_by_model": an.cost_latency_by_model, "time_split": an.time_split,
        "limit_hits": an.limit_hits, "failure_step": an.failure_step, "stop_reasons": an.stop_reasons,
        "model_errors": an.model_errors, "success_overall": an.success_overall,
        "run_timeline": lambda con: an.run_timeline(1, con=con),
        "compare": lambda con: an.compare(MODEL_A, MODEL_B, con=con),
    }
    for name, helper in helpers.items():
        got, reference = helper(con=empty), helper(con=full)
        assert list(got.columns) == list(reference.columns), name
        if name == "compare":
            assert got.runs.tolist() == [0, 0]
        elif name == "success_overall":  # one row of totals: zero runs, no rate
            assert got.runs.tolist() == [0] and got.success_rate.isna().all()
        else:
            assert got.empty, name
    assert an.most_common(con=empty) == []
    assert an.ready(tmp_path / "data") is False


def test_no_snapshot_gives_the_friendly_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "nothing"))
    assert an.data_dir() == tmp_path / "nothing"
    message = (f"no run log yet at {tmp_path / 'nothing'}: start the workbench with `make run` and run a task, "
               "or set WORKBENCH_DATA_DIR")
    with pytest.raises(an.NoRunLog) as err:
        an.connect()
    assert str(err.value) == message
    assert an.ready() is False
    assert capsys.readouterr().out == message + "\n"
    monkeypatch.delenv("WORKBENCH_DATA_DIR")
    assert an.data_dir() == ROOT / "data"


# ------------------------------------------------------------------ executing the notebooks
def _median(values: list[float]) -> float:
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def kernel_env(data: Path, exports: Path) -> dict[str, str]:
    """The environment a notebook's kernel gets: the data dir, no key, matplotlib's inline backend."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MPLBACKEND"))}
    env["WORKBENCH_DATA_DIR"] = str(data)
    env["WORKBENCH_EXPORTS_DIR"] = str(exports)
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


@dataclass
class Executed:
    """An executed notebook: its cells with outputs, and all its text output joined."""

    nb: Any
    text: str
    images: dict[str, int]


async def execute(name: str, env: dict[str, str]) -> Executed:
    """Run every cell of notebooks/<name>.ipynb in a fresh python3 kernel, from the notebooks folder."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=120,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    await client.async_execute(env=env)
    texts: list[str] = []
    images: dict[str, int] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{name}: {out.get('ename')}: {out.get('evalue')}"
            if out["output_type"] == "stream":
                assert out["name"] == "stdout" or "Traceback" not in out["text"], f"{name}: {out['text']}"
                if out["name"] == "stdout":
                    texts.append(out["text"])
            for mime, value in out.get("data", {}).items():
                if mime == "text/plain":
                    texts.append(value)
                elif mime.startswith("image/"):
                    images[mime] = images.get(mime, 0) + 1
    return Executed(nb=nb, text="\n".join(texts), images=images)


async def execute_all(env: dict[str, str]) -> dict[str, Executed]:
    # Kernels start and import pandas/matplotlib concurrently: the slow part is waiting, not CPU.
    done = await asyncio.gather(*(execute(name, env) for name in NOTEBOOK_NAMES))
    return dict(zip(NOTEBOOK_NAMES, done))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def executed(recorded: Recorded) -> dict[str, Executed]:
    """Every notebook executed against the recorded log (the store still open: the app is running)."""
    return await execute_all(kernel_env(recorded.data, recorded.exports))


def test_notebooks_are_committed_without_outputs() -> None:
    for name in NOTEBOOK_NAMES:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        assert nb.cells[0].cell_type == "markdown" and "**Question" in nb.cells[0].source, name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name} has outputs"


def rate(k: int, n: int) -> str:
    """How the notebooks print a success rate: with n and the 95% interval."""
    low, high = wilson(k, n)
    return f"{k / n:.0%} (n={n}, 95% CI {low:.0%}–{high:.0%})"


def test_overview_numbers(recorded: Recorded, executed: dict[str, Executed]) -> None:
    out = executed["01_overview"]
    total_tokens = tokens(recorded.responses)
    cost = sum(r.usage.cost_usd for r in recorded.responses)
    assert (f"runs: 8 (8 finished, 2 succeeded; success rate {rate(2, 5)} over the runs where the agent had a fair "
            "chance; 1 stopped from outside, 2 lost to the infrastructure)") in out.text
    assert ("graded: 1 of the 5 fair runs by a check, a judge or a person, 4 by the agent's own claim; the agents "
            "claimed 3 successes (60%)") in out.text
    assert f"tokens: {total_tokens}, cost: ${cost:.6f}" in out.text
    a, b = recorded.by_model(MODEL_A), recorded.by_model(MODEL_B)
    a_cost, b_cost = sum(r.usage.cost_usd for r in a) / 4, sum(r.usage.cost_usd for r in b) / 3
    a_steps, b_steps = sum(len(r.history) for r in a) / 4, sum(len(r.history) for r in b) / 3
    assert (f"openai/{MODEL_A}: 2/3 succeeded, {rate(2, 3)} (graded 1 by people; the agents claimed 3); 1 stopped, "
            f"0 infrastructure, avg {a_steps:.1f} steps, avg ${a_cost:.6f} per run") in out.text
    assert (f"openai/{MODEL_B}: 0/2 succeeded, {rate(0, 2)} (as the agents claimed (nothing graded)); 0 stopped, "
            f"1 infrastructure, avg {b_steps:.1f} steps, avg ${b_cost:.6f} per run") in out.text
    assert (f"anthropic/{CLAUDE}: 0/0 succeeded, no fair run (as the agents claimed (nothing graded)); 0 stopped, "
            "1 infrastructure, avg 0.0 steps, avg $0.000000 per run") in out.text
    assert f"Parquet export at {recorded.exports}: 8 runs" in out.text
    assert out.images.get("image/png", 0) >= 3  # runs per day, success rate, distributions


def test_failures_numbers(recorded: Recorded, executed: dict[str, Executed]) -> None:
    out = executed["02_failures"]
    b_max, b_fail, b_refused = recorded.by_model(MODEL_B)
    (claude,) = recorded.by_model(CLAUDE)
    cancelled = recorded.responses[7]
    click_error = b_fail.history[1].actions[0].error
    refusal = b_refused.history[0].llm_calls[0].error
    assert "runs by outcome: agent_failure 2, infrastructure 2, stopped 1, success 3\n" in out.text
    assert f"  model_error (infrastructure): 1 run of openai/{MODEL_B}\n" in out.text
    assert f"  cancelled (stopped): 1 run of openai/{MODEL_A}\n" in out.text
    assert "failed actions: 3 in 1 kinds (name, error)" in out.text
    assert "model errors (the provider's, not the agent's): 1 failed calls in 1 runs\n" in out.text
    assert f"  openai/{MODEL_B} (step): 1× {refusal}\n" in out.text
    assert "runs that hit a limit: 2\n  max_steps: 1\n  max_failures: 1\n" in out.text
    assert "failed runs: 5\n" in out.text
    assert f"  run {b_max.task_run_id} ({MODEL_B}): max_steps (agent_failure), step 2, last step: scroll\n" in out.text
    assert (f"  run {b_fail.task_run_id} ({MODEL_B}): max_failures (agent_failure), step 2, first action error: "
            f"click {click_error}\n") in out.text
    assert (f"  run {b_refused.task_run_id} ({MODEL_B}): model_error (infrastructure), step 1, model error: "
            f"model call {refusal}\n") in out.text
    assert f"  run {claude.task_run_id} ({CLAUDE}): missing_key (infrastructure), no step: {claude.error}\n" in out.text
    last = cancelled.history[-1]
    assert (f"  run {cancelled.task_run_id} ({MODEL_A}): cancelled (stopped), step {last.step}, last step: "
            f"{last.actions[-1].name}\n") in out.text
    printed = [line for line in out.text.splitlines() if line.startswith("  run ")]
    assert len(printed) == 5 and not any("<NA>" in line or "nan" in line for line in printed)
    assert f"run {b_fail.task_run_id}: 4 steps" in out.text
    assert f"  errors: click: {click_error}" in out.text
    assert out.images.get("image/jpeg", 0) == 4  # the failed run's four screenshots
    assert out.images.get("image/png", 0) >= 1


def test_cost_latency_numbers(recorded: Recorded, executed: dict[str, Executed]) -> None:
    out = executed["03_cost_latency"]
    for model in (MODEL_A, MODEL_B):
        mine = recorded.by_model(model)
        steps = sum(len(r.history) for r in mine)
        cost = sum(r.usage.cost_usd for r in mine)
        line = (f"openai/{model}: {len(mine)} runs, {tokens(mine)} tokens, {tokens(mine) / len(mine):.0f} tokens/run, "
                f"{tokens(mine) / steps:.0f} tokens/step, ${cost / len(mine):.6f}/run, ${cost / steps:.6f}/step")
        assert line in out.text
        latencies = sorted(c.latency_ms for r in mine for item in r.history for c in item.llm_calls)
        assert f"openai/{model}: LLM latency p50 {_median(latencies):.0f} ms," in out.text
        assert f"over {len(latencies)} calls" in out.text
    steps = sum(len(r.history) for r in recorded.responses)
    assert re.search(rf"time over {steps} steps: LLM \d+%, browser \d+%, own \d+% \(the parts add up to each "
                     r"step's duration: True\)", out.text)
    assert out.images.get("image/png", 0) >= 3


def test_compare_numbers(recorded: Recorded, executed: dict[str, Executed]) -> None:
    out = executed["04_compare"]
    a_same = recorded.by_model(MODEL_A, TASK)
    b = recorded.by_model(MODEL_B, TASK)
    assert f"comparing models: A = {MODEL_A!r}, B = {MODEL_B!r}" in out.text
    assert f"A: 2 runs, success rate {rate(2, 2)}, 2.0 steps" in out.text
    assert f"{tokens(a_same) / 2:.0f} tokens, ${sum(r.usage.cost_usd for r in a_same) / 2:.6f} per run" in out.text
    assert f"B: 2 runs, success rate {rate(0, 2)}, 3.0 steps" in out.text
    assert f"{tokens(b) / 2:.0f} tokens, ${sum(r.usage.cost_usd for r in b) / 2:.6f} per run" in out.text
    assert out.images.get("image/png", 0) == 1


async def test_notebooks_on_an_empty_data_dir_print_the_friendly_message(tmp_path: Path) -> None:
    """No run log at all: each notebook says what to do, and no cell raises."""
    data = tmp_path / "data"
    executed = await execute_all(kernel_env(data, tmp_path / "exports"))
    message = (f"no run log yet at {data}: start the workbench with `make run` and run a task, "
               "or set WORKBENCH_DATA_DIR")
    for name, out in executed.items():
        assert message in out.text, name
        assert out.images == {}, name
    assert f"no Parquet export at {tmp_path / 'exports'} yet: run `make export`" in executed["01_overview"].text


# ------------------------------------------------------------------ a reader open while the app records
async def test_a_reader_left_open_never_blocks_the_app_and_sees_new_runs_after_reconnecting(
    browser: Any, site_url: str, fake_llm: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(data))  # the reader finds the log as a notebook does
    store = Store(data, snapshot_interval_s=60)  # publishes below are explicit
    service = RunService(store, browser, data_dir=data, engine_options=EngineOptions(timeout_s=60))
    home = f"{site_url}/index.html"
    try:
        fake_llm.reset(scripted(MODEL_A, navigate(home), done))
        first = await service.run({"prompt": TASK, "model": MODEL_A})
        store.publish_snapshot()

        reader = an.connect()  # a notebook's first cell; kept open from here on
        attached = reader.execute(
            "SELECT path FROM duckdb_databases() WHERE NOT internal AND path IS NOT NULL").fetchall()
        assert attached == [(str(snapshot_path(data)),)]  # the snapshot, never the app's live file
        before = an.runs(con=reader)
        assert before[["id", "status", "model", "steps"]].to_dict("records") == [
            {"id": first.task_run_id, "status": "success", "model": MODEL_A, "steps": 2}]

        # The app records a second run while the reader keeps reading.
        fake_llm.reset(scripted(MODEL_B, navigate(home), scroll, done))
        t0 = time.monotonic()
        task = asyncio.create_task(service.run({"prompt": TASK, "model": MODEL_B}))
        reads = []
        while not task.done() and time.monotonic() - t0 < 60:
            reads.append(len(an.runs(con=reader)))
            await asyncio.sleep(0.05)
        second = await task
        assert second.status == "success" and len(second.history) == 3
        assert reads and set(reads) == {1}  # a consistent snapshot: never a half-written run
        stored = store.get_run(second.task_run_id)
        assert stored is not None and stored.status == "success" and len(stored.history) == 3

        t1 = time.monotonic()
        path = store.publish_snapshot()  # replaces the file the reader has open
        assert time.monotonic() - t1 < 10 and path == snapshot_path(data)
        assert store.snapshot_error is None

        assert an.runs(con=reader).id.tolist() == [first.task_run_id]  # still its own snapshot, no error
        fresh = an.connect()  # reconnect: the new run is there
        after = an.runs(con=fresh)
        assert after[["id", "status", "model", "steps"]].to_dict("records") == [
            {"id": first.task_run_id, "status": "success", "model": MODEL_A, "steps": 2},
            {"id": second.task_run_id, "status": "success", "model": MODEL_B, "steps": 3},
        ]
        assert an.steps(second.task_run_id, con=fresh).step.tolist() == [1, 2, 3]
        # Without con=, as a notebook calls them, helpers read the latest snapshot of the data dir.
        assert an.runs().id.tolist() == [first.task_run_id, second.task_run_id]
        assert an.steps(second.task_run_id).step.tolist() == [1, 2, 3]
        fresh.close()
        reader.close()
    finally:
        await service.close()
        store.close()


# ------------------------------------------------------------------ the docs
def test_run_log_docs_views_section_is_generated_from_code() -> None:
    page = ROOT / "docs" / "run-log.md"
    found = re.search(r"<!-- views:start -->(.*?)<!-- views:end -->", page.read_text(encoding="utf-8"), re.S)
    assert found is not None, "docs/run-log.md lost its <!-- views:start --> / <!-- views:end --> markers"
    assert found.group(1).strip() == an.views_markdown().strip(), (
        "docs/run-log.md's views section is stale: paste the output of "
        "`python -m agent.log.analysis views-markdown` between the markers")


def test_views_markdown_cli_prints_every_view() -> None:
    out = subprocess.run([sys.executable, "-m", "agent.log.analysis", "views-markdown"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == an.views_markdown().strip()
    lines = out.stdout.strip().splitlines()
    assert lines[:2] == ["| view | what it answers | columns |", "|---|---|---|"]
    views = [re.match(r"\| `(\w+)` \|", line).group(1) for line in lines[2:]]
    assert views == sorted(views) and set(an.VIEW_DOCS) <= set(views)
    assert "`success_rate` double" in out.stdout


def test_importing_analysis_loads_neither_pandas_nor_duckdb() -> None:
    code = ("import sys, agent.log.analysis; "
            "print(sorted(m for m in ('pandas', 'duckdb', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.replace("'", '"')) == []
