"""`make fuzz`: schemathesis against the real app, bounded to a few minutes (not part of `make test`).

Starts the fake model and `python app.py` on a free port (a fresh data folder), then runs
schemathesis on /api/openapi.json with the checks that matter here: no 5xx, no status code the
document does not list, and answers that match their documented schema. Prints schemathesis's
summary and exits with its status.

    python tests/fuzz.py [--max-examples 40] [--max-time 240] [--seed 1] [schemathesis options...]

Options it does not know go to schemathesis as they are, e.g. `--include-path-regex tasksets`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.testing.fakellm import FakeLLM, call, reply
from tests.apphelpers import App

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz session; schemathesis's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=40, help="cases per operation (default 40)")
    parser.add_argument("--max-time", type=int, default=240, help="time budget in seconds (default 240)")
    parser.add_argument("--seed", type=int, default=1, help="hypothesis seed, for a repeatable session")
    args, passed_on = parser.parse_known_args(argv)
    # Every run the fuzzer starts ends at once: the model answers `done` on the first step.
    model = FakeLLM(lambda body: reply("Done.", call("done", text="fuzzed", success=True)))
    with tempfile.TemporaryDirectory(prefix="workbench-fuzz-") as tmp:
        env = {"OPENAI_BASE_URL": model.url, "OPENAI_API_KEY": "sk-fuzz", "MAX_QUEUED_RUNS": "1000"}
        app = App(Path(tmp) / "data", env).start()
        try:
            app.ready()
            command = [
                str(Path(sys.executable).with_name("schemathesis")), "run", f"{app.base}/api/openapi.json",
                "--checks", CHECKS, "--max-examples", str(args.max_examples), "--max-time", str(args.max_time),
                "--seed", str(args.seed), "--workers", "1", "--request-timeout", "60", "--continue-on-failure",
                "--generation-codec", "utf-8", "--warnings", "off", *passed_on,
            ]
            print("$", " ".join(command), flush=True)
            status = subprocess.run(command, env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"}).returncode
            log = app.log()
            server_errors = [line for line in log.splitlines() if '" 5' in line and "HTTP/1.1" in line]
            print(f"app log: {len(server_errors)} 5xx answers, "
                  f"{'a traceback' if 'Traceback' in log else 'no traceback'}", flush=True)
            return status or (1 if server_errors else 0)
        finally:
            app.stop()
            model.close()


if __name__ == "__main__":
    sys.exit(main())
