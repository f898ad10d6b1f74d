"""The composition root: builds the store, the shared browser, the run service, the /api routes,
the demo shop at /demo/ and (when present) the Gradio UI at /, then serves them with uvicorn.

    python app.py --host 127.0.0.1 --port 7860 --data-dir ./data
"""

from __future__ import annotations

import os

# Before anything imports gradio or litellm: no telemetry, no hub, no network at import.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, AsyncIterator  # noqa: E402

ROOT = Path(__file__).resolve().parent
DEMO_DIR = ROOT / "data" / "demo"
log = logging.getLogger("workbench")


@dataclass(frozen=True)
class Settings:
    """How the app was asked to run (the API key is kept here and never printed)."""

    host: str = "127.0.0.1"
    port: int = 7860
    data_dir: Path = field(default_factory=lambda: Path("data"))
    api_key: str | None = field(default=None, repr=False)
    demo_dir: Path = DEMO_DIR


def parse_args(argv: list[str] | None = None) -> Settings:
    """Settings from the command line and the environment."""
    parser = argparse.ArgumentParser(description="LLM web-agent workbench: Gradio UI, /api routes and run log")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--data-dir", default=os.environ.get("WORKBENCH_DATA_DIR") or "data",
                        help="database, snapshots and screenshots (env WORKBENCH_DATA_DIR, default ./data)")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port} is out of range; use 1-65535")
    api_key = os.environ.get("WORKBENCH_API_KEY", "").strip() or None
    return Settings(host=args.host, port=args.port, data_dir=Path(args.data_dir), api_key=api_key)


# ================================================================================ the Gradio UI
# Everything from here to "end of the Gradio UI" is the browser workbench: build_ui() and its helpers.
# gradio is imported only inside build_ui()/ui_mount_options() (it takes ~6 s), so `--help`, the
# tests of the other parts and the notebooks never pay for it.

# The request fields, in the contract's order: the form's inputs and the Gradio API's parameters.
FORM_FIELDS: tuple[str, ...] = (
    "prompt", "model", "provider", "wait_for_completion", "webhook_url", "response_format", "json_schema",
    "use_cached_workflow", "cached_workflow", "workflow_id", "workflow_params", "start_url", "max_steps",
    "use_vision", "allowed_domains",
)
UI_HISTORY_LIMIT = 100  # rows shown in the history table (newest first, after the filters)
UI_TEXT_LIMIT = 4000  # characters of one extracted content / result / error shown before "… (cut)"
UI_PARAM_LIMIT = 400  # characters of one action's params shown inline
UI_SESSION_COOKIE = "workbench_session"
UI_LOGIN_PATH = "/login-key"
UI_LOGIN_FAIL_DELAY_S = 0.5  # slows down guessing the key through the login form


class FormError(ValueError):
    """The form (or a Gradio API call) holds fields that cannot make a run request."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def form_request(values: dict[str, Any]) -> Any:
    """The RunRequest the form's values describe; FormError naming each bad field and its fix."""
    from pydantic import ValidationError

    from agent.models import RequestError, RunRequest, validation_errors
    from agent.runs import check_webhook_url

    data: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    for name in FORM_FIELDS:
        value = values.get(name)
        if isinstance(value, str):
            value = value.strip()
        if value is None or value == "":
            continue  # an empty box means "the default"
        if name == "use_vision" and value is False:
            continue  # unticked is the engine's default; keep the logged request minimal
        if name in ("workflow_id", "max_steps") and isinstance(value, float):
            if not value.is_integer():
                errors.append({"field": name, "message": f"must be a whole number, got {value:g}"})
                continue
            value = int(value)
        if name == "max_steps" and isinstance(value, int) and not 1 <= value <= 200:
            errors.append({"field": name, "message": f"must be between 1 and 200 (empty: the default, 25), got {value}"})
            continue
        if name == "workflow_params" and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                errors.append({"field": name, "message": f"is not valid JSON ({exc.msg}); give an object such "
                                                          'as {"product": "HDMI cable"}'})
                continue
            if not isinstance(value, dict):
                errors.append({"field": name, "message": 'must be a JSON object such as {"product": "HDMI cable"}'})
                continue
        data[name] = value
    # The other fields are checked too, so that one answer lists every problem.
    try:
        request = RunRequest.model_validate(data)
        check_webhook_url(request.webhook_url)
    except ValidationError as exc:
        errors += validation_errors(exc)
    except RequestError as exc:
        errors.append({"field": exc.field, "message": exc.message})
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. a schema nested too deeply to check
        errors.append({"field": "request", "message": f"could not be read: {str(exc)[:300]}"})
    if errors:
        raise FormError(errors)
    return request


def request_form_values(request: Any) -> list[Any]:
    """The form's values (in FORM_FIELDS order) that reproduce `request`: "Run again"."""
    def dumps(value: Any) -> str:
        return json.dumps(value, indent=2, ensure_ascii=False) if value is not None else ""

    fields = request.model_dump()
    out: dict[str, Any] = {
        **{name: fields.get(name) for name in FORM_FIELDS},
        "webhook_url": request.webhook_url or "",
        "json_schema": dumps(request.json_schema),
        "cached_workflow": dumps(request.cached_workflow),
        "workflow_params": dumps(request.workflow_params),
        "start_url": request.start_url or "",
        "use_vision": bool(request.use_vision),
        "allowed_domains": ", ".join(request.allowed_domains or []),
    }
    return [out[name] for name in FORM_FIELDS]


def _clean_json(value: Any) -> Any:
    """NaN and infinities (not JSON) become null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v) for v in value]
    return value


def response_payload(response: Any) -> dict[str, Any]:
    """A RunResponse as the contract's JSON object (what the Gradio API returns)."""
    return _clean_json(response.model_dump(mode="json"))


async def follow_run(service: Any, run_id: int, *, skip_first: bool = False) -> AsyncIterator[dict[str, Any]]:
    """The run's response now, again after each finished step, and at the end (bounded by subscribe())."""
    from agent.models import RunFinished, StepFinished
    from agent.runs import NotFound

    current = await service.aget(run_id)
    if current is None:
        raise NotFound("run", run_id)
    if not skip_first:
        yield response_payload(current)
    if current.status != "in_progress":
        return
    shown = len(current.history)
    async for event in service.subscribe(run_id):
        if isinstance(event, RunFinished):
            yield response_payload(event.response)
            return
        if isinstance(event, StepFinished):
            snapshot = await service.aget(run_id)
            # Events already seen (a viewer joining mid-run) give the same snapshot: send it once.
            if snapshot is not None and len(snapshot.history) > shown:
                shown = len(snapshot.history)
                yield response_payload(snapshot)
    final = await service.aget(run_id)  # the subscription gave up (the run outlived its bound)
    if final is not None:
        yield response_payload(final)


def demo_base_url(settings: Settings, request_url: str | None = None) -> str:
    """Where the agent's browser (on this machine) reaches this server: for the demo shop's examples."""
    if settings.port:
        host = settings.host
        if host in ("", "0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"  # listening everywhere: loopback is always among them
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{settings.port}"
    if request_url:  # --port 0: only the request knows the port picked
        from urllib.parse import urlsplit

        parts = urlsplit(request_url)
        return f"{parts.scheme}://{parts.netloc}"
    return "http://127.0.0.1:7860"


def load_examples(demo_dir: Path) -> list[dict[str, Any]]:
    """The demo shop's ready tasks (data/demo/examples.json); [] when missing or unreadable."""
    path = Path(demo_dir) / "examples.json"
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("no examples for the form (%s): %s", path, exc)
        return []
    good = [e for e in items if isinstance(e, dict) and isinstance(e.get("title"), str)
            and isinstance(e.get("prompt"), str)]
    return good[:50]


# ------------------------------------------------------------------ rendering the run viewer
def _esc(value: Any) -> str:
    import html

    return html.escape(str(value), quote=True)


def _cut(text: str, limit: int = UI_TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + f"… (cut: {len(text) - limit} more characters)"


def fmt_duration(ms: float | None) -> str:
    """12345 -> "12.3 s"; minutes past a minute; "–" when unknown."""
    if ms is None:
        return "–"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def fmt_cost(usd: float | None) -> str:
    """0.01234 -> "$0.0123"."""
    return "–" if usd is None else f"${usd:.4f}"


def _status_of(run: dict[str, Any]) -> str:
    return {"success": "success", "failure": "failure"}.get(str(run.get("status")), "running")


def _render_action(action: dict[str, Any], step_by: str) -> str:
    name = _esc(action.get("name", "?"))
    params = action.get("params") or {}
    shown = _cut(json.dumps(params, ensure_ascii=False), UI_PARAM_LIMIT) if params else ""
    if action.get("error"):
        mark, cls = "✗", "err"
    elif action.get("success") is False:
        mark, cls = "✗", "err"
    else:
        mark, cls = "✓", "ok"
    who = action.get("executed_by") or "agent"  # badged only when it differs from its step's (a healed action)
    parts = [f'<li class="wb-action wb-{cls}"><span class="wb-mark">{mark}</span> <code class="wb-name">{name}</code>']
    if shown:
        parts.append(f' <code class="wb-params">{_esc(shown)}</code>')
    if who != step_by:
        parts.append(f' <span class="wb-badge wb-{_esc(who)}">{_esc(who)}</span>')
    if action.get("error"):
        parts.append(f'<div class="wb-error">{_esc(_cut(str(action["error"])))}</div>')
    if action.get("extracted_content") and not action.get("is_done"):
        parts.append(f'<div class="wb-extracted">{_esc(_cut(str(action["extracted_content"])))}</div>')
    parts.append("</li>")
    return "".join(parts)


def _render_step(run_id: Any, item: dict[str, Any]) -> str:
    step = item.get("step") or 0
    calls = item.get("llm_calls") or []
    meta = [fmt_duration(item.get("duration_ms"))]
    if calls:
        meta.append(f"{len(calls)} LLM call{'s' if len(calls) != 1 else ''}")
    who = item.get("executed_by") or "agent"
    badge = f' <span class="wb-badge wb-{_esc(who)}">{_esc(who)}</span>' if who != "agent" else ""
    actions = "".join(_render_action(a, who) for a in item.get("actions") or [])
    url, title = item.get("url"), item.get("title")
    page = ""
    if url:
        # Only web addresses become links (never a javascript: or data: URL from a page).
        link = (f'<a class="wb-url" href="{_esc(url)}" target="_blank" rel="noopener">{_esc(_cut(url, 300))}</a>'
                if url.startswith(("http://", "https://")) else f'<span class="wb-url">{_esc(_cut(url, 300))}</span>')
        page = f'<div class="wb-page"><span class="wb-title">{_esc(title or "(no title)")}</span> {link}</div>'
    shot = ""
    if item.get("screenshot") and run_id and url != "about:blank":  # a blank tab: nothing to see
        src = f"api/runs/{int(run_id)}/screenshots/{int(step)}"
        shot = (f'<a class="wb-shot" href="{src}" target="_blank" rel="noopener">'
                f'<img src="{src}" alt="the page at step {int(step)}" loading="lazy"></a>')
    return (
        f'<div class="wb-step" data-step="{int(step)}"><div class="wb-step-head"><b>Step {int(step)}</b>{badge}'
        f' <span class="wb-muted">{_esc(" · ".join(meta))}</span></div>'
        f'<div class="wb-step-body"><div class="wb-step-main">'
        f'<div class="wb-goal">{_esc(_cut(item.get("description") or "(no description)"))}</div>'
        f'<ul class="wb-actions">{actions or "<li class=wb-muted>no action</li>"}</ul>{page}</div>{shot}</div></div>'
    )


def render_run_html(run: dict[str, Any] | None) -> str:
    """The viewer: status, result and metrics on top, then every step with its actions and screenshot."""
    if not run:
        return ('<div class="wb-run wb-empty" data-status="none"><p>No run yet. Write a task (or pick an '
                "example) and press <b>Run</b>; each step appears here the moment it finishes.</p></div>")
    status = _status_of(run)
    history = run.get("history") or []
    usage = run.get("usage") or {}
    run_id = run.get("task_run_id")
    label = {"running": "running", "success": "success", "failure": "failure"}[status]
    icon = {"running": '<span class="wb-spinner"></span>', "success": "✓", "failure": "✗"}[status]
    who = " · ".join(_esc(x) for x in (run.get("provider"), run.get("model")) if x)
    head = (f'<div class="wb-run-head"><span class="wb-status wb-{status}">{icon} {label}</span> '
            f'<span>Run #{_esc(run_id or "?")}</span> <span class="wb-muted">task {_esc(run.get("task_id") or "?")}'
            f'{" · " + who if who else ""} · {_esc(run.get("mode") or "agent")}</span></div>')
    metrics = [
        f"duration {fmt_duration(run.get('duration_ms'))}" if status != "running" else "",
        f"{len(history)} step{'s' if len(history) != 1 else ''}",
        f"{usage.get('llm_calls', 0)} LLM calls",
        f"{usage.get('input_tokens', 0):,} in / {usage.get('output_tokens', 0):,} out tokens",
        f"cost {fmt_cost(usage.get('cost_usd'))}",
    ]
    if run.get("mode") == "replay":
        metrics.append(f"{run.get('replayed_steps', 0)} replayed, {run.get('healed_steps', 0)} healed")
    body = [f'<div class="wb-metrics">{_esc(" · ".join(m for m in metrics if m))}</div>']
    if run.get("error"):
        body.append(f'<div class="wb-error wb-run-error">{_esc(_cut(str(run["error"])))}</div>')
    result = run.get("result")
    if status != "running" and result is not None:
        if isinstance(result, (dict, list)):
            text, cls = json.dumps(result, indent=2, ensure_ascii=False), "wb-json"
        else:
            text, cls = str(result), "wb-text"
        body.append(f'<div class="wb-result"><div class="wb-label">Result</div>'
                    f'<pre class="{cls}">{_esc(_cut(text))}</pre></div>')
    steps = [_render_step(run_id, item) for item in history]
    if status == "running":
        nxt = len(history) + 1
        finishing = bool(history) and any(a.get("is_done") for a in history[-1].get("actions") or [])
        if finishing:
            label, what = "Finishing", "recording the result"
        else:
            label = f"Step {nxt}"
            what = "the model is thinking" if history else "starting the browser and the model"
        steps.append(f'<div class="wb-step wb-pending" data-step="{nxt}"><div class="wb-step-head">'
                     f'<span class="wb-spinner"></span> <b>{label}</b> <span class="wb-muted">{what}…</span></div></div>')
    return (f'<div class="wb-run wb-{status}" data-status="{status}" data-run-id="{_esc(run_id or "")}">{head}'
            f'{"".join(body)}<div class="wb-steps">{"".join(steps)}</div></div>')


def history_frame(rows: list[dict[str, Any]]) -> Any:
    """The history table's rows as a DataFrame (run id first: selecting a row opens that run)."""
    import pandas as pd

    out = []
    for row in rows:
        started = row.get("started_at")
        if hasattr(started, "astimezone") and getattr(started, "tzinfo", None) is not None:
            started = started.astimezone(timezone.utc)
        prompt = " ".join(str(row.get("prompt") or "").split())
        out.append({
            "run": row.get("id"),
            "status": row.get("status"),
            "prompt": prompt if len(prompt) <= 90 else prompt[:89] + "…",
            "provider / model": f"{row.get('provider') or ''} / {row.get('model') or ''}",
            "steps": row.get("steps") or 0,
            "duration": fmt_duration(row.get("duration_ms")),
            "cost": fmt_cost(row.get("cost_usd")),
            "started (UTC)": started.strftime("%Y-%m-%d %H:%M:%S") if hasattr(started, "strftime") else (started or ""),
        })
    columns = ["run", "status", "prompt", "provider / model", "steps", "duration", "cost", "started (UTC)"]
    return pd.DataFrame(out, columns=columns)


UI_CSS = """
.wb-run { font-size: 14px; line-height: 1.45; }
.wb-empty { color: var(--body-text-color-subdued); padding: 24px 8px; }
.wb-run-head { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; font-size: 15px; }
.wb-status { font-weight: 600; padding: 2px 10px; border-radius: 999px; }
.wb-status.wb-running { background: #e0ecff; color: #1d4ed8; }
.wb-status.wb-success { background: #dcfce7; color: #166534; }
.wb-status.wb-failure { background: #fee2e2; color: #991b1b; }
.wb-muted { color: var(--body-text-color-subdued); font-size: 13px; }
.wb-metrics { margin: 6px 0; color: var(--body-text-color-subdued); font-size: 13px; }
.wb-result { margin: 8px 0 12px; }
.wb-label { font-weight: 600; margin-bottom: 4px; }
.wb-result pre { background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);
  border-radius: 8px; padding: 10px; white-space: pre-wrap; word-break: break-word; margin: 0; }
.wb-step { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 10px 12px; margin: 8px 0;
  background: var(--background-fill-primary); }
.wb-step.wb-pending { border-style: dashed; }
.wb-step-head { display: flex; gap: 8px; align-items: center; }
.wb-step-body { display: flex; gap: 12px; align-items: flex-start; margin-top: 6px; }
.wb-step-main { flex: 1; min-width: 0; }
.wb-goal { font-style: italic; margin-bottom: 4px; }
.wb-actions { list-style: none; padding: 0; margin: 0 0 4px; }
.wb-action { margin: 2px 0; word-break: break-word; }
.wb-action.wb-ok .wb-mark { color: #15803d; }
.wb-action.wb-err .wb-mark { color: #b91c1c; }
.wb-params { font-size: 12px; }
.wb-error { color: #b91c1c; font-size: 13px; white-space: pre-wrap; }
.wb-run-error { margin: 4px 0; }
.wb-extracted { font-size: 13px; white-space: pre-wrap; background: var(--background-fill-secondary);
  border-radius: 6px; padding: 4px 8px; margin-top: 2px; max-height: 220px; overflow: auto; }
.wb-page { font-size: 12px; color: var(--body-text-color-subdued); word-break: break-all; }
.wb-title { font-weight: 600; margin-right: 6px; }
.wb-shot img { width: 260px; max-width: 40vw; border: 1px solid var(--border-color-primary); border-radius: 6px; }
.wb-badge { font-size: 11px; padding: 1px 6px; border-radius: 6px; background: #fef3c7; color: #92400e; }
.wb-spinner { display: inline-block; width: 12px; height: 12px; border: 2px solid #93c5fd; border-top-color: #1d4ed8;
  border-radius: 50%; animation: wb-spin 0.8s linear infinite; }
@keyframes wb-spin { to { transform: rotate(360deg); } }
#wb-key-hint.wb-key-missing, #wb-key-hint.wb-key-missing * { color: #b45309; }
#wb-schema-status.wb-error, #wb-schema-status.wb-error * { color: #b91c1c; }
"""


def ui_mount_options() -> dict[str, Any]:
    """Keyword arguments for gr.mount_gradio_app: style, system fonts (no font CDN), footer."""
    import gradio as gr

    theme = gr.themes.Default(
        primary_hue="indigo",
        font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )
    # Gradio's own browser-side run history would sit next to ours and confuse: off.
    return {"css": UI_CSS, "theme": theme, "footer_links": ["api"], "run_history": False}


def ui_session_token(api_key: str) -> str:
    """The browser's session cookie value: derived from the key, so the cookie never holds the key."""
    import hashlib
    import hmac

    return hmac.new(api_key.encode("utf-8"), b"workbench-ui-session-v1", hashlib.sha256).hexdigest()


class UiSessionMiddleware:
    """With WORKBENCH_API_KEY set: a browser logs in once with the key, then its cookie stands for the key.

    Requests carrying the session cookie get the key header added (inside this process only), so the
    Gradio UI (/ and /gradio_api) and its screenshots (/api/...) work from a browser; pages without key
    or cookie redirect to the login form. The demo shop stays public; programs keep sending the header.
    """

    PUBLIC_PREFIXES = ("/demo", UI_LOGIN_PATH, "/favicon.ico")

    def __init__(self, app: Any, *, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode("utf-8")
        self._token = ui_session_token(api_key).encode("ascii")

    def _cookie_ok(self, headers: list[tuple[bytes, bytes]]) -> bool:
        import hmac
        from http.cookies import CookieError, SimpleCookie

        ok = False
        for name, value in headers:
            if name != b"cookie":
                continue
            try:
                jar = SimpleCookie(value.decode("latin-1"))
            except CookieError:
                continue
            morsel = jar.get(UI_SESSION_COOKIE)
            if morsel is not None:
                ok |= hmac.compare_digest(morsel.value.encode("latin-1", "replace"), self._token)
        return ok

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = list(scope.get("headers") or [])
        has_key = any(name in (b"authorization", b"x-api-key") for name, _ in headers)
        if not has_key and self._cookie_ok(headers):
            scope = dict(scope, headers=[*headers, (b"x-api-key", self._key)])
            has_key = True
        public = any(path == p or path.startswith(p + "/") for p in self.PUBLIC_PREFIXES)
        # /api and /gradio_api answer for themselves (401 naming the header); the UI pages go to the login.
        protected_elsewhere = any(path == p or path.startswith(p + "/") for p in ("/api", "/gradio_api"))
        if not has_key and not public and not protected_elsewhere and scope["type"] == "http":
            from starlette.responses import JSONResponse, RedirectResponse

            if scope.get("method") == "GET" and path in ("/", ""):
                response: Any = RedirectResponse(UI_LOGIN_PATH, status_code=303)
            else:
                response = JSONResponse({"detail": f"log in at {UI_LOGIN_PATH} with the key set in "
                                                   "WORKBENCH_API_KEY, or send 'X-API-Key: <key>'"}, status_code=401)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


_LOGIN_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Workbench: log in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:420px;margin:12vh auto;padding:0 16px}}
input{{width:100%;padding:8px;margin:8px 0;box-sizing:border-box}}button{{padding:8px 16px}}.err{{color:#b91c1c}}</style>
</head><body><h2>LLM web-agent workbench</h2><p>This server requires the API key (WORKBENCH_API_KEY).</p>
{error}<form method="post" action="{path}"><label>API key<input type="password" name="key" autofocus
autocomplete="current-password"></label><button type="submit">Log in</button></form></body></html>"""


def install_ui_login(app: Any, api_key: str) -> None:
    """The login form for browsers when WORKBENCH_API_KEY is set, and the cookie middleware behind it."""
    import hmac

    from fastapi import Request
    from fastapi.responses import HTMLResponse, RedirectResponse

    token = ui_session_token(api_key)

    @app.get(UI_LOGIN_PATH, include_in_schema=False)
    async def login_form() -> HTMLResponse:
        return HTMLResponse(_LOGIN_HTML.format(error="", path=UI_LOGIN_PATH))

    async def login(request: Request) -> Any:
        body = (await request.body())[:4096]  # a key, not a document
        from urllib.parse import parse_qs

        given = (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0].strip()
        if not hmac.compare_digest(given.encode("utf-8"), api_key.encode("utf-8")):
            await asyncio.sleep(UI_LOGIN_FAIL_DELAY_S)
            return HTMLResponse(_LOGIN_HTML.format(error='<p class="err">Wrong key.</p>', path=UI_LOGIN_PATH),
                                status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(UI_SESSION_COOKIE, token, httponly=True, samesite="lax", max_age=7 * 24 * 3600,
                            secure=request.url.scheme == "https")
        return response

    # String annotations (PEP 563) and a local import: FastAPI needs the real class to inject the request.
    login.__annotations__ = {"request": Request, "return": Any}
    app.post(UI_LOGIN_PATH, include_in_schema=False)(login)
    app.add_middleware(UiSessionMiddleware, api_key=api_key)


def build_ui(service: Any, settings: Settings) -> Any | None:
    """The Gradio Blocks mounted at "/": run form, live viewer, run history and the `run` API endpoint."""
    import gradio as gr

    from agent.llm import SUGGESTED_MODELS, key_status
    from agent.models import DEFAULT_MODELS, PROVIDERS, RequestError
    from agent.runs import NotFound, ServiceBusy, ServiceClosed

    examples = load_examples(settings.demo_dir)

    def key_hint(provider: str) -> Any:
        ready, advice = key_status(provider) if provider in PROVIDERS else (False, f"unknown provider {provider!r}")
        text = f"✓ {advice}" if ready else f"⚠ {advice}, then restart the app."
        return gr.update(value=text, elem_classes=[] if ready else ["wb-key-missing"])

    def run_id_of(current: Any) -> int | None:
        if isinstance(current, dict) and isinstance(current.get("task_run_id"), int):
            return int(current["task_run_id"])
        return None

    # ---------------------------------------------------------------- the run endpoint (UI and API)
    async def run(
        prompt: str,
        model: str = "",
        provider: str = "openai",
        wait_for_completion: bool = True,
        webhook_url: str = "",
        response_format: str = "text",
        json_schema: str = "",
        use_cached_workflow: bool = False,
        cached_workflow: str = "",
        workflow_id: int | None = None,
        workflow_params: str = "",
        start_url: str = "",
        max_steps: int | None = None,
        use_vision: bool = False,
        allowed_domains: str = "",
    ) -> AsyncIterator[dict[str, Any]]:
        """Run the agent on a task; yields the run response (the contract's JSON) after each step, the final one last.

        With wait_for_completion false, yields once at the start (status "in_progress", with the ids);
        poll GET /api/runs/{task_run_id} or watch it in the UI.
        """
        values = dict(zip(FORM_FIELDS, (
            prompt, model, provider, wait_for_completion, webhook_url, response_format, json_schema,
            use_cached_workflow, cached_workflow, workflow_id, workflow_params, start_url, max_steps, use_vision,
            allowed_domains,
        )))
        try:
            request = form_request(values)
            _task_id, run_id = await service.submit(request)
        except (FormError, RequestError, ServiceBusy, ServiceClosed) as exc:  # the caller's to fix, or retry
            raise gr.Error(str(exc), print_exception=False) from None
        if not request.wait_for_completion:
            current = await service.aget(run_id)
            yield response_payload(current)
            return
        # Closing this generator (client gone, another run opened) only stops watching: the run goes on.
        async for snapshot in follow_run(service, run_id):
            yield snapshot

    def validate(*values: Any) -> list[Any]:
        """One gr.validate per form field: the message shows next to the field and nothing starts."""
        try:
            form_request(dict(zip(FORM_FIELDS, values)))
        except FormError as exc:
            by_field: dict[str, list[str]] = {}
            for err in exc.errors:
                name = err["field"].split(".")[0]
                by_field.setdefault(name if name in FORM_FIELDS else "prompt", []).append(err["message"])
            return [gr.validate(name not in by_field, "; ".join(by_field.get(name, [])))
                    for name in FORM_FIELDS]
        return [gr.validate(True, "") for _ in FORM_FIELDS]

    async def follow(current: Any) -> AsyncIterator[Any]:
        """Keep the viewer up to date with a run that is still going (background runs, opened runs)."""
        run_id = run_id_of(current)
        if run_id is None or current.get("status") != "in_progress":
            yield gr.skip()
            return
        try:
            async for snapshot in follow_run(service, run_id, skip_first=True):
                yield snapshot
        except NotFound:
            yield gr.skip()

    # ---------------------------------------------------------------- the other handlers
    def render(current: Any) -> tuple[Any, ...]:
        run_id = run_id_of(current)
        running = bool(run_id) and current.get("status") == "in_progress"
        ended = bool(run_id) and not running
        can_save = ended and current.get("status") == "success"
        return (render_run_html(current), gr.update(interactive=running), gr.update(interactive=ended),
                gr.update(interactive=can_save))

    async def cancel(current: Any) -> None:
        run_id = run_id_of(current)
        if run_id is None:
            gr.Warning("No run in the viewer to cancel.")
            return
        try:
            stopped = await service.cancel(run_id)
        except NotFound:
            gr.Warning(f"Run {run_id} no longer exists.")
            return
        if stopped:
            gr.Info(f"Cancelling run {run_id}: it stops at its next check.")
        else:
            gr.Info(f"Run {run_id} had already ended.")

    async def rerun(current: Any) -> list[Any]:
        run_id = run_id_of(current)
        request = await asyncio.to_thread(service.store.get_run_request, run_id) if run_id else None
        if request is None:
            gr.Warning("Open a run first (from the history), then press Run again.")
            return [gr.skip()] * (len(FORM_FIELDS) + 1)
        gr.Info(f"The form now holds run {run_id}'s request: change what you like and press Run.")
        return [*request_form_values(request), key_hint(request.provider)]

    async def save_workflow(current: Any) -> None:
        run_id = run_id_of(current)
        if run_id is None:
            gr.Warning("Open a successful run first.")
            return
        from agent.workflows import WorkflowError, save_run_as_workflow

        response = await service.aget(run_id)
        request = await asyncio.to_thread(service.store.get_run_request, run_id)
        if response is None or request is None:
            gr.Warning(f"Run {run_id} no longer exists.")
            return
        try:
            wid, version, document = await asyncio.to_thread(
                save_run_as_workflow, service.store, run_id, request, response)
        except WorkflowError as exc:
            gr.Warning(f"Run {run_id} cannot be saved as a workflow: {exc}")
            return
        names = ", ".join(p.get("name", "?") for p in document.get("parameters") or []) or "none"
        gr.Info(f"Saved as workflow {wid} (version {version}; parameters: {names}). Replay it: tick "
                f"'Use cached workflow' and give workflow id {wid}.")

    async def history(status: str, provider: str, model: str) -> Any:
        rows, total = await asyncio.to_thread(
            service.store.list_runs, status=None if status == "all" else status,
            provider=None if provider == "all" else provider, model=(model or "").strip() or None,
            limit=UI_HISTORY_LIMIT,
        )
        label = f"Run history ({total} run{'s' if total != 1 else ''}" + (
            f", newest {UI_HISTORY_LIMIT} shown)" if total > UI_HISTORY_LIMIT else ")")
        return gr.update(value=history_frame(rows), label=label)

    async def open_run(evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        try:
            run_id = int(row[0])
        except (IndexError, TypeError, ValueError):
            return gr.skip()
        response = await service.aget(run_id)
        if response is None:
            gr.Warning(f"Run {run_id} no longer exists.")
            return gr.skip()
        return response_payload(response)

    def on_provider(provider: str) -> tuple[Any, Any]:
        choices = SUGGESTED_MODELS.get(provider, [])
        return gr.update(choices=choices, value=DEFAULT_MODELS.get(provider, "")), key_hint(provider)

    def check_schema(text: str) -> Any:
        from agent.models import parse_json_schema

        if not (text or "").strip():
            return gr.update(value="No schema: the result is free text (or any JSON with format json).",
                             elem_classes=[])
        try:
            parse_json_schema(text)
        except ValueError as exc:
            return gr.update(value=f"✗ json_schema {exc}", elem_classes=["wb-error"])
        return gr.update(value="✓ valid JSON Schema: the result will be checked against it.", elem_classes=[])

    def fill_example(index: int, request: gr.Request) -> tuple[Any, ...]:
        example = examples[int(index)]
        url = demo_base_url(settings, str(getattr(request, "url", "") or "")) + "/demo/"
        schema = example.get("json_schema")
        return (example["prompt"].replace("{DEMO_URL}", url), example.get("response_format") or "text",
                json.dumps(schema, indent=2) if schema else "")

    # This module uses string annotations (PEP 563) and `gr` is local here, so Gradio could not resolve
    # the hints that make it pass the selected row and the request: give it the real classes.
    open_run.__annotations__ = {"evt": gr.SelectData, "return": Any}
    fill_example.__annotations__ = {"index": int, "request": gr.Request, "return": tuple}

    def on_load() -> tuple[Any, Any]:
        # The model box's configured value stays "" so that API callers who give only a provider get
        # that provider's default model; the page shows the default for the provider picked.
        return gr.update(value=DEFAULT_MODELS["openai"]), key_hint("openai")

    # ---------------------------------------------------------------- the layout
    with gr.Blocks(title="Web-agent workbench", fill_width=True) as ui:
        gr.Markdown(
            "## LLM web-agent workbench\nDescribe a task; an agent drives a real Chromium step by step. "
            "[API docs](api/docs) · [demo shop](demo/) · [health](api/health)", elem_id="wb-header",
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=360):
                prompt = gr.Textbox(label="Task (prompt)", lines=4, max_lines=14, elem_id="wb-prompt",
                                    placeholder="e.g. Go to the demo shop and find the cheapest USB-C cable. "
                                                "Return its name and price.")
                with gr.Row():
                    provider = gr.Dropdown(list(PROVIDERS), value="openai", label="Provider", elem_id="wb-provider")
                    model = gr.Dropdown(SUGGESTED_MODELS["openai"], value="", label="Model", allow_custom_value=True,
                                        elem_id="wb-model", info="Suggestions, or type any model name")
                hint = gr.Markdown(elem_id="wb-key-hint")
                with gr.Row():
                    response_format = gr.Radio(["text", "json"], value="text", label="Response format",
                                               elem_id="wb-format")
                    wait_for_completion = gr.Checkbox(value=True, label="Wait for completion",
                                                      info="Off: start in the background", elem_id="wb-wait")
                json_schema = gr.Code(value="", language="json", label="JSON schema (optional)", lines=5,
                                      max_lines=18, elem_id="wb-schema")
                schema_status = gr.Markdown(elem_id="wb-schema-status")
                webhook_url = gr.Textbox("", label="Webhook URL (optional)", elem_id="wb-webhook",
                                         placeholder="https://example.com/hook: receives the final response")
                with gr.Accordion("Cached workflow", open=False, elem_id="wb-workflow-box"):
                    use_cached_workflow = gr.Checkbox(value=False, label="Use cached workflow",
                                                      elem_id="wb-use-cached")
                    workflow_id = gr.Number(value=None, precision=0, label="Workflow id (a saved workflow)",
                                            elem_id="wb-workflow-id")
                    workflow_params = gr.Code(value="", language="json", lines=3, label="Workflow parameters (JSON)",
                                              elem_id="wb-workflow-params")
                    cached_workflow = gr.Code(value="", language="json", lines=4, max_lines=18,
                                              label="Cached workflow (JSON document)", elem_id="wb-cached-workflow")
                with gr.Accordion("Advanced", open=False, elem_id="wb-advanced"):
                    max_steps = gr.Number(value=None, precision=0, label="Max steps (1-200; empty: 25)",
                                          elem_id="wb-max-steps")
                    use_vision = gr.Checkbox(value=False, label="Use vision (send screenshots to the model)",
                                             elem_id="wb-use-vision")
                    allowed_domains = gr.Textbox("", label="Allowed domains (comma separated; empty: any public site)",
                                                 elem_id="wb-allowed-domains", placeholder="shop.example, *.example.org")
                    start_url = gr.Textbox("", label="Start URL (opened before the first step)", elem_id="wb-start-url")
                with gr.Row():
                    run_btn = gr.Button("Run", variant="primary", elem_id="wb-run")
                    cancel_btn = gr.Button("Cancel", variant="stop", interactive=False, elem_id="wb-cancel")
                example_set = gr.Dataset(components=["textbox"], samples=[[e["title"]] for e in examples],
                                         headers=["Task"], label="Examples (against the bundled demo shop)",
                                         type="index", samples_per_page=10, elem_id="wb-examples")
            with gr.Column(scale=6, min_width=420):
                viewer = gr.HTML(render_run_html(None), elem_id="wb-viewer", autoscroll=False,
                                 js_on_load=None)
                with gr.Row():
                    rerun_btn = gr.Button("Run again (refill the form)", interactive=False, elem_id="wb-rerun")
                    save_btn = gr.Button("Save as workflow", interactive=False, elem_id="wb-save-workflow")
                with gr.Accordion("Response JSON (what the API returns)", open=False, elem_id="wb-response-box"):
                    response_json = gr.JSON(value=None, label="Run response", elem_id="wb-response")
        gr.Markdown("### Run history", elem_id="wb-history-title")
        with gr.Row():
            status_filter = gr.Dropdown(["all", "success", "failure", "in_progress"], value="all", label="Status",
                                        elem_id="wb-filter-status", scale=1)
            provider_filter = gr.Dropdown(["all", *PROVIDERS], value="all", label="Provider",
                                          elem_id="wb-filter-provider", scale=1)
            model_filter = gr.Textbox(label="Model (exact)", elem_id="wb-filter-model", scale=2)
            refresh_btn = gr.Button("Refresh", elem_id="wb-refresh", scale=0, min_width=100)
        history_table = gr.Dataframe(history_frame([]), label="Run history", interactive=False, wrap=True,
                                     max_height=420, elem_id="wb-history",
                                     column_widths=["6%", "9%", "37%", "15%", "6%", "8%", "7%", "12%"])
        gr.Markdown("Select a row to open that run in the viewer (from the log, screenshots included).",
                    elem_id="wb-history-help")

        form = [prompt, model, provider, wait_for_completion, webhook_url, response_format, json_schema,
                use_cached_workflow, cached_workflow, workflow_id, workflow_params, start_url, max_steps,
                use_vision, allowed_domains]
        filters = [status_filter, provider_filter, model_filter]

        # ------------------------------------------------------------ events
        # Every event but `run` is private (not in the API) and light: no queue slot limit, no spinner.
        quiet: dict[str, Any] = {"api_visibility": "private", "concurrency_limit": None, "show_progress": "hidden"}
        # Instant ones skip the queue: the viewer redraws ~0.2 s after each step instead of ~1 s.
        instant: dict[str, Any] = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}
        run_event = run_btn.click(
            run, form, [response_json], api_name="run", validator=validate,
            concurrency_limit=service.max_concurrent, concurrency_id="run",
        )
        run_follow = run_event.then(follow, [response_json], [response_json], **quiet)  # background runs
        run_event.then(history, filters, [history_table], **quiet)
        run_follow.then(history, filters, [history_table], **quiet)
        response_json.change(render, [response_json], [viewer, cancel_btn, rerun_btn, save_btn], **instant)
        cancel_btn.click(cancel, [response_json], None, trigger_mode="multiple", **quiet)
        rerun_btn.click(rerun, [response_json], [*form, hint], **quiet)
        save_btn.click(save_workflow, [response_json], None, **quiet)
        open_event = history_table.select(open_run, None, [response_json], cancels=[run_event, run_follow],
                                          **quiet)
        open_follow = open_event.then(follow, [response_json], [response_json], **quiet)
        # Opening another run, or starting one, stops following the run opened before.
        history_table.select(None, None, None, cancels=[open_follow], api_visibility="private")
        run_btn.click(None, None, None, cancels=[open_follow], api_visibility="private")
        refresh_btn.click(history, filters, [history_table], **quiet)
        for box in filters:
            box.change(history, filters, [history_table], **quiet)
        provider.input(on_provider, [provider], [model, hint], trigger_mode="always_last", **instant)
        json_schema.change(check_schema, [json_schema], [schema_status], **instant)
        example_set.click(fill_example, [example_set], [prompt, response_format, json_schema], **quiet)
        ui.load(on_load, None, [model, hint], **quiet)
        ui.load(history, filters, [history_table], **quiet)
    return ui

# ========================================================================= end of the Gradio UI


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def startup_checks(settings: Settings, browser: Any, store: Any) -> list[str]:
    """One line per thing a user should know at start: browser, data folder, keys (names only), auth."""
    from agent.llm import KEY_VARS, base_url

    lines = [f"browser: {browser.description}"]
    if not browser.cdp_url and "not found" in browser.description:
        lines.append("  warning: no Chromium found; run `make setup` or set CHROMIUM_PATH (runs will fail)")
    data = Path(settings.data_dir).resolve()
    writable = os.access(data, os.W_OK)
    lines.append(f"data folder: {data} ({'writable' if writable else 'NOT writable'}); run log {store.path}")
    present = [name for names in KEY_VARS.values() for name in names if os.environ.get(name)]
    lines.append(f"provider keys present: {', '.join(present) if present else 'none'}")
    if base_url("openai"):
        lines.append("OPENAI_BASE_URL is set: openai runs go to that OpenAI-compatible server")
    if settings.api_key:
        lines.append("API key: required on /api and /gradio_api (WORKBENCH_API_KEY is set)")
    elif not is_loopback(settings.host):
        lines.append(
            f"warning: listening on {settings.host} without an API key: anyone who can reach this port can "
            "start runs; set WORKBENCH_API_KEY"
        )
    if store.interrupted_runs:
        lines.append(f"runs interrupted by the last stop (now failure): {len(store.interrupted_runs)}")
    return lines


def create_app(settings: Settings) -> Any:
    """Build every part and the FastAPI app that serves them; closing happens in its lifespan."""
    from fastapi.responses import HTMLResponse, RedirectResponse
    from fastapi.staticfiles import StaticFiles

    from agent.api import create_api
    from agent.browser import Browser
    from agent.runs import RunService
    from agent.store import Store

    store = Store(settings.data_dir)
    try:
        browser = Browser()
        service = RunService(store, browser, data_dir=settings.data_dir)
    except BaseException:
        store.close()
        raise

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await service.start()
        for line in startup_checks(settings, browser, store):
            print(line, flush=True)
        try:
            yield
        finally:
            # Runs first (they end as "shutdown"), then the browser, then the store's final snapshot.
            await service.close()
            try:
                await asyncio.wait_for(browser.close(), timeout=15)
            except Exception:
                log.exception("the browser did not close cleanly")
            await asyncio.to_thread(store.close)
            print("stopped: runs closed, browser closed, final snapshot published", flush=True)

    app = create_api(service, api_key=settings.api_key, lifespan=lifespan)
    app.state.store, app.state.browser, app.state.settings = store, browser, settings
    if settings.demo_dir.is_dir():
        @app.get("/demo", include_in_schema=False)
        async def demo_slash() -> RedirectResponse:
            # Otherwise the Gradio app mounted at "/" answers /demo with a 404.
            return RedirectResponse("/demo/", status_code=307)

        app.mount("/demo", StaticFiles(directory=settings.demo_dir, html=True), name="demo")
    ui = build_ui(service, settings)
    if ui is not None:
        import gradio as gr

        if settings.api_key:  # browsers log in once with the key; a cookie then stands for it
            install_ui_login(app, settings.api_key)
        app = gr.mount_gradio_app(app, ui, path="/", **ui_mount_options())
    else:
        @app.get("/", include_in_schema=False)
        async def index() -> HTMLResponse:
            return HTMLResponse(
                "<!doctype html><title>Workbench</title><h1>LLM web-agent workbench</h1><ul>"
                '<li><a href="/api/docs">API docs</a></li><li><a href="/api/health">health</a></li>'
                '<li><a href="/demo/">demo shop</a></li></ul>'
            )
    return app


def main(argv: list[str] | None = None) -> int:
    """Parse the settings, build the app and serve it until interrupted."""
    settings = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("LiteLLM", "litellm", "httpx", "httpcore"):  # one line per model call or webhook POST otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import uvicorn

    from agent.store import StoreError

    try:
        app = create_app(settings)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad setting, e.g. MAX_CONCURRENT_RUNS=abc
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"serving on http://{settings.host}:{settings.port}/ (API under /api, demo shop under /demo/)", flush=True)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="info", lifespan="on",
        # Requests still waiting for a run are cut after this, then the runs end as "shutdown".
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
