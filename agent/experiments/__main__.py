"""`python -m agent.experiments run tasks.jsonl --variant NAME=provider:model [--extend FILE] ... --repeats 3`

Against a running workbench (`--server URL`: through its REST API, so the app stays the one writer of
its run log) or, when none runs, on a data folder of its own (`--data-dir`, default ./data; the demo
shop is served locally for `{BASE_URL}`). A progress bar while it runs, then the per-variant table
with 95% intervals and the verdicts. `--dry-run` prints the cell count, the estimated cost and the
smallest difference the design would likely see, and starts nothing.

For CI: `--fail-under 0.8` fails when a variant's success rate is below 0.8; `--fail-on-regression`
fails when a variant is significantly worse than the baseline (`--baseline NAME`, default the first).
Exit code 0 when the experiment ended with every cell played and no such failure, 1 when it failed,
was cancelled or stopped by its budget, or a check above failed (the reasons on stderr), 2 for bad
arguments.
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

from agent.experiments.report import lost, not_graded

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
    """The per-variant table, the verdicts and the warnings, as plain text."""
    version = report.get("task_set_version")
    lines = [f"task set {report['task_set']}" + (f" version {version}" if version else "")] \
        if report.get("task_set") else []
    lines += [f"{'variant':<14} {'passes':>8} {'rate':>6} {'95% CI':>11} {'pass@k':>9} {'pass^k':>9} "
             f"{'steps':>6} {'cost $':>9} {'p50 s':>7}  lost / not graded"]
    for v in report["variants"]:
        ci = "–" if v["ci_low"] is None else f"{100 * v['ci_low']:.0f}-{100 * v['ci_high']:.0f}%"
        k = v["k"] or "k"
        cost = "unknown" if v["cost_usd"] is None else f"{v['cost_usd']:.4f}"
        tries = int(v["passes"]) + int(v["failures"]) + int(v["lost"])
        lines.append(f"{v['name']:<14} {v['passes']:>4}/{tries:<3} {_fmt(v['success_rate'], True):>6} {ci:>11} "
                     f"{'@' + str(k) + ' ' + _fmt(v['pass_at_k'], True):>9} "
                     f"{'^' + str(k) + ' ' + _fmt(v['pass_hat_k'], True):>9} {_fmt(v['mean_steps']):>6} "
                     f"{cost:>9} {_fmt(v['p50_duration_s']):>7}  {lost(v)} / {not_graded(v)}")
    lines += ["", *[str(c["verdict"]) for c in report["comparisons"]]]
    lines += [f"warning: {w}" for w in report.get("warnings") or []]
    return "\n".join(lines)


def ci_failures(report: dict[str, Any], *, fail_under: float | None, fail_on_regression: bool) -> list[str]:
    """Why a CI job should fail on this report (empty: it passes)."""
    out = []
    if fail_under is not None:
        for v in report["variants"]:
            rate = v["success_rate"]
            if rate is None or rate < fail_under:
                shown = "no graded run" if rate is None else f"{100 * rate:.0f}%"
                out.append(f"{v['name']}: success rate {shown} is under --fail-under {fail_under:g}")
    if fail_on_regression:
        base = report["baseline"]
        for c in report["comparisons"]:
            if c["a"] == base and c["significant"] and (c["difference"] or 0) < 0:
                out.append(f"{c['b']} is significantly worse than {base}: {c['verdict']}")
    return out


def _progress(report: dict[str, Any]) -> None:
    done, total = report["progress"]["done"], report["progress"]["total"] or 1
    bar = "#" * int(30 * done / total)
    print(f"\r[{bar:<30}] {report['progress']['text']}", end="", file=sys.stderr, flush=True)


def run_on_server(server: str, spec: dict[str, Any], *, api_key: str | None) -> dict[str, Any]:
    """Start the experiment through a running workbench's REST API and follow it to the end (or the dry run)."""
    import httpx

    headers = {"X-API-Key": api_key} if api_key else {}
    with httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60) as http:
        started = http.post("/api/experiments", json=spec)
        if started.status_code == 422:
            detail = started.json()["detail"][0]
            raise ValueError(f"{detail['field']}: {detail['message']}")
        started.raise_for_status()
        if spec.get("dry_run"):
            return dict(started.json())
        exp_id = started.json()["experiment_id"]
        while True:  # the light form while it runs; the report (without its cells) at the end
            state = http.get(f"/api/experiments/{exp_id}/progress").json()
            _progress(state)
            if state["status"] != "running":
                print(file=sys.stderr)
                return dict(http.get(f"/api/experiments/{exp_id}", params={"cells_limit": 0}).json())
            time.sleep(POLL_S)


async def run_locally(data_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Play the experiment in this process on `data_dir` (the app must not be running on it)."""
    from agent.engine.browser import Browser
    from agent.experiments.report import progress, summary
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
        if spec.get("dry_run"):
            return await runner.dry_run(spec)
        exp_id = await runner.start(spec)
        while runner.is_running(exp_id):
            _progress(progress(await service.experiment_progress(exp_id)))
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
    run.add_argument("tasks", help="a JSONL task file, or the name of a task set kept in the workbench (bundled, "
                                   "e.g. demo-shop, or stored)")
    run.add_argument("--task-set-version", type=int, default=None, metavar="N",
                     help="the version of the named task set to run (default: its latest)")
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
    run.add_argument("--baseline", default=None, help="the variant the others are compared with (default: first)")
    run.add_argument("--compare-all", action="store_true", help="compare every pair of variants (Holm)")
    run.add_argument("--max-replays", type=int, default=None, help="plays of a run lost to the infrastructure")
    run.add_argument("--max-cost-usd", type=float, default=None, help="start no new run once this is spent")
    run.add_argument("--dry-run", action="store_true", help="print the cells, cost estimate and mde; start nothing")
    run.add_argument("--fail-under", type=float, default=None, metavar="RATE",
                     help="CI: exit 1 when a variant's success rate is below RATE (0-1), e.g. 0.8")
    run.add_argument("--fail-on-regression", action="store_true",
                     help="CI: exit 1 when a variant is significantly worse than the baseline")
    args = parser.parse_args(argv)
    try:
        variants = parse_variants(getattr(args, "ordered", None) or [])
        source = Path(args.tasks)
        if args.fail_under is not None and not 0 <= args.fail_under <= 1:
            raise ValueError(f"--fail-under: {args.fail_under:g} is not a rate; give one from 0 to 1, e.g. 0.8")
        spec: dict[str, Any] = {"name": args.name or source.stem, "variants": variants, "repeats": args.repeats,
                                "concurrency": args.concurrency, "backend": args.backend}
        optional = {"baseline": args.baseline, "max_replays": args.max_replays, "max_cost_usd": args.max_cost_usd,
                    "compare": "all" if args.compare_all else None, "dry_run": True if args.dry_run else None}
        spec.update({k: v for k, v in optional.items() if v is not None})
        if source.is_file():
            if args.task_set_version is not None:
                raise ValueError("--task-set-version: goes with a task set's name, not a file")
            spec["tasks_jsonl"] = source.read_text(encoding="utf-8")
        else:
            spec["task_set"] = args.tasks
            if args.task_set_version is not None:
                spec["task_set_version"] = args.task_set_version
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
    if args.dry_run:
        from agent.experiments.estimate import describe

        print(describe(report))
        print(json.dumps(report, indent=1))
        return 0
    print(table(report))
    print(json.dumps({"experiment_id": report["experiment_id"], "status": report["status"],
                      "stop_reason": report["stop_reason"]}), file=sys.stderr)
    failures = ci_failures(report, fail_under=args.fail_under, fail_on_regression=args.fail_on_regression)
    for reason in failures:
        print(f"fail: {reason}", file=sys.stderr)
    return 0 if report["status"] == "done" and not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
