"""`python -m agent.experiments run tasks.jsonl --variant NAME=provider:model [--extend FILE] ... --repeats 3`

Against a running workbench (`--server URL`: through its REST API, so the app stays the one writer of
its run log) or, when none runs, on a data folder of its own (`--data-dir`, default ./data; the demo
shop is served locally for `{BASE_URL}`). A progress bar while it runs, then the per-variant table
with 95% intervals and the paired verdicts. Exit code 0 when the experiment ended, 1 when it failed
or was cancelled, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from agent.experiments.report import not_graded

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[2]
POLL_S = 1.0


class _Ordered(argparse.Action):
    """Keeps --variant and --extend in the order given: an --extend belongs to the --variant before it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        items = list(getattr(namespace, "ordered", None) or [])
        items.append((self.dest, values))
        namespace.ordered = items


def parse_variants(ordered: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """[{"name", "provider", "model", "extend_system_message"?}] from NAME=provider:model (+ --extend FILE)."""
    variants: list[dict[str, Any]] = []
    for kind, value in ordered:
        if kind == "variant":
            name, eq, target = value.partition("=")
            provider, colon, model = target.partition(":")
            if not eq or not colon or not name or not provider or not model:
                raise ValueError(f"--variant: {value!r} is not NAME=provider:model, e.g. base=openai:gpt-4.1-mini")
            variants.append({"name": name, "provider": provider, "model": model})
        else:
            if not variants:
                raise ValueError("--extend: give it after the --variant it belongs to")
            variants[-1]["extend_system_message"] = Path(value).read_text(encoding="utf-8")
    if not variants:
        raise ValueError("--variant: give at least one, e.g. --variant base=openai:gpt-4.1-mini")
    return variants


def _fmt(x: float | None, p: bool = False) -> str:
    return "–" if x is None else (f"{100 * x:.0f}%" if p else f"{x:.1f}")


def table(report: dict[str, Any]) -> str:
    """The per-variant table and the verdicts, as plain text."""
    lines = [f"{'variant':<14} {'passes':>8} {'rate':>6} {'95% CI':>11} {'pass@k':>7} {'pass^k':>7} "
             f"{'steps':>6} {'cost $':>9} {'p50 s':>7}  not graded"]
    for v in report["variants"]:
        rate = "–" if v["success_rate"] is None else f"{100 * v['success_rate']:.0f}%"
        ci = "–" if v["wilson_low"] is None else f"{100 * v['wilson_low']:.0f}-{100 * v['wilson_high']:.0f}%"
        lines.append(f"{v['name']:<14} {v['passes']:>4}/{v['graded']:<3} {rate:>6} {ci:>11} "
                     f"{_fmt(v['pass_at_k'], True):>7} {_fmt(v['pass_hat_k'], True):>7} {_fmt(v['mean_steps']):>6} "
                     f"{(v['cost_usd'] or 0):>9.4f} {_fmt(v['p50_duration_s']):>7}  {not_graded(v)}")
    lines += ["", *[c["verdict"] for c in report["comparisons"]]]
    return "\n".join(lines)


def _progress(report: dict[str, Any]) -> None:
    done, total = report["progress"]["done"], report["progress"]["total"] or 1
    bar = "#" * int(30 * done / total)
    print(f"\r[{bar:<30}] {done}/{total} runs, {report['progress']['running']} running", end="",
          file=sys.stderr, flush=True)


def run_on_server(server: str, spec: dict[str, Any], *, api_key: str | None) -> dict[str, Any]:
    """Start the experiment through a running workbench's REST API and follow it to the end."""
    import httpx

    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60) as http:
        started = http.post("/api/experiments", json=spec)
        if started.status_code == 422:
            detail = started.json()["detail"][0]
            raise ValueError(f"{detail['field']}: {detail['message']}")
        started.raise_for_status()
        exp_id = started.json()["experiment_id"]
        while True:
            report = http.get(f"/api/experiments/{exp_id}").json()
            _progress(report)
            if report["status"] != "running":
                print(file=sys.stderr)
                return dict(report)
            time.sleep(POLL_S)


async def run_locally(data_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Play the experiment in this process on `data_dir` (the app must not be running on it)."""
    from agent.engine.browser import Browser
    from agent.experiments.report import summary
    from agent.experiments.runner import ExperimentRunner
    from agent.log.store import Store
    from agent.service.runs import RunService
    from agent.testing.sites import serve_dir

    site, base_url = serve_dir(ROOT / "data")  # the demo shop at {base_url}/demo/, for {BASE_URL} in tasks
    store, browser = Store(data_dir), Browser()
    service = RunService(store, browser, data_dir=data_dir)
    runner = ExperimentRunner(service, base_url=base_url)
    try:
        await service.start()
        exp_id = await runner.start(spec)
        while runner.is_running(exp_id):
            _progress(summary(await service.get_experiment(exp_id)))
            await asyncio.sleep(POLL_S)
        report = summary(await service.get_experiment(exp_id))
        _progress(report)
        print(file=sys.stderr)
        return report
    finally:
        await runner.close()
        await service.close()
        await browser.close()
        store.close()
        site.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the experiment, print the table; the exit code."""
    parser = argparse.ArgumentParser(prog="python -m agent.experiments", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a task set across variants")
    run.add_argument("tasks", help="a JSONL task file, or the name of a bundled set (e.g. demo-shop)")
    run.add_argument("--variant", action=_Ordered, metavar="NAME=provider:model", help="a variant (repeatable)")
    run.add_argument("--extend", action=_Ordered, metavar="FILE",
                     help="text appended to the system prompt of the --variant before it")
    run.add_argument("--repeats", type=int, default=1)
    run.add_argument("--concurrency", type=int, default=2)
    run.add_argument("--backend", choices=["local", "ray"], default="local")
    run.add_argument("--name", default=None)
    run.add_argument("--server", default=None, help="a running workbench, e.g. http://127.0.0.1:7860")
    run.add_argument("--data-dir", default=os.environ.get("WORKBENCH_DATA_DIR") or "data",
                     help="without --server: the data folder to run on (default ./data)")
    args = parser.parse_args(argv)
    try:
        variants = parse_variants(getattr(args, "ordered", None) or [])
        source = Path(args.tasks)
        spec: dict[str, Any] = {"name": args.name or source.stem, "variants": variants, "repeats": args.repeats,
                                "concurrency": args.concurrency, "backend": args.backend}
        if source.is_file():
            spec["tasks_jsonl"] = source.read_text(encoding="utf-8")
        else:
            spec["task_set"] = args.tasks
        if args.server:
            report = run_on_server(args.server, spec, api_key=os.environ.get("WORKBENCH_API_KEY"))
        else:
            from agent.experiments.tasks import TaskError
            from agent.log.errors import StoreLocked

            try:
                report = asyncio.run(run_locally(Path(args.data_dir), spec))
            except StoreLocked:
                raise ValueError(f"--data-dir: the workbench is running on {args.data_dir}; pass --server URL "
                                 "to run the experiment through it") from None
            except TaskError as exc:
                raise ValueError(str(exc)) from None
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(report))
    print(json.dumps({"experiment_id": report["experiment_id"], "status": report["status"]}), file=sys.stderr)
    return 0 if report["status"] == "done" else 1


if __name__ == "__main__":
    raise SystemExit(main())
