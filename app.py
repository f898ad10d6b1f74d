"""The composition root: builds the store, the shared browser, the run service, the /api routes,
the demo shop at /demo/ and the Gradio UI at /, then serves them with uvicorn.

    python app.py --host 127.0.0.1 --port 7860 --data-dir ./data

Start-up order: the server answers first (about a second after start); then, in the background, the
UI is built and mounted at / (until then / answers a page that reloads itself, agent.service.warmup),
then the run service starts (the model library and the browser warm up, owed webhooks and interrupted
experiments resume). /api/health says "warming" until all of it is done.
"""

from __future__ import annotations

import os

# Before anything imports gradio or litellm: no telemetry, no hub, no network at import.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agent.settings import Settings, agent_paths_from_env, form_model_from_env, hosts_from_env, named_keys_from_env

log = logging.getLogger("workbench")


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
    try:
        paths, form_model = agent_paths_from_env(), form_model_from_env()
        named_keys = named_keys_from_env()
    except ValueError as exc:
        parser.error(str(exc))
    return Settings(host=args.host, port=args.port, data_dir=Path(args.data_dir), api_key=api_key,
                    named_keys=named_keys, allowed_hosts=hosts_from_env(), agent_paths=paths, form_model=form_model)



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
    from agent.engine.llm import KEY_VARS, base_url

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
    if settings.keys_required:
        given = [v for v, on in (("WORKBENCH_API_KEY", settings.api_key), ("WORKBENCH_API_KEYS", settings.named_keys))
                 if on]
        names = f"; named keys: {', '.join(n for n, _k in settings.named_keys)}" if settings.named_keys else ""
        lines.append(f"API key: required on /api and /gradio_api ({' and '.join(given)} set{names})")
    elif not is_loopback(settings.host):
        lines.append(
            f"warning: listening on {settings.host} without an API key: anyone who can reach this port can "
            "start runs; set WORKBENCH_API_KEY"
        )
    hosts = ", ".join(sorted(settings.served_hosts()))
    lines.append(f"answers to Host: {hosts} (others get 400; add names to ALLOWED_HOSTS)")
    if store.interrupted_runs:
        lines.append(f"runs interrupted by the last stop (now failure): {len(store.interrupted_runs)}")
    return lines


def create_app(settings: Settings) -> Any:
    """Build every part and the FastAPI app that serves them; closing happens in its lifespan."""
    from fastapi.responses import RedirectResponse
    from fastapi.staticfiles import StaticFiles

    from agent.engine.browser import Browser
    from agent.engine.guard import OwnOrigin
    from agent.experiments.miniwob import html_dir as miniwob_html_dir
    from agent.experiments.routes import create_experiment_router
    from agent.experiments.runner import ExperimentRunner
    from agent.experiments.taskset_routes import create_taskset_router
    from agent.log.store import Store
    from agent.service.api import create_api
    from agent.service.runs import RunService
    from agent.service.warmup import LateApp, after, wind_down
    from agent.settings import demo_base_url
    from agent.ui.export import export_html

    store = Store(settings.data_dir)
    try:
        # The agent may not open the workbench itself, except the paths it serves to it (the demo shop).
        own = OwnOrigin(hosts=settings.served_hosts(), port=settings.port, open_paths=settings.agent_paths)
        browser = Browser(own_origin=own)
        service = RunService(store, browser, data_dir=settings.data_dir)
        experiments = ExperimentRunner(service, base_url=demo_base_url(settings))
    except BaseException:
        store.close()
        raise

    ui = LateApp()  # stands in at / until the Gradio UI is built (seconds of imports)
    service.warm_up.expect("ui")
    service.warm_up.expect("run service")

    async def start_service() -> None:
        await service.start()  # the model library and the browser warm up from here on
        resumed = await experiments.resume()
        if resumed:
            print(f"experiments resumed after the last stop: {', '.join(map(str, resumed))}", flush=True)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        for line in startup_checks(settings, browser, store):
            print(line, flush=True)
        async with contextlib.AsyncExitStack() as ui_life:
            # The server answers now; the UI comes first (so / shows it soonest), then the run service. A run
            # posted meanwhile loads the engine and the browser itself.
            mounting = asyncio.create_task(mount_ui(app, ui, ui_life, settings, service, experiments))
            service.warm_up.track("ui", mounting)
            starting = asyncio.create_task(after(mounting, start_service()))
            service.warm_up.track("run service", starting)
            try:
                yield
            finally:
                await wind_down(mounting, starting)
                # Experiments stop handing out cells, then runs end (as "shutdown"), then the browser,
                # then the store's final snapshot.
                await experiments.close()
            await service.close()
            try:
                await asyncio.wait_for(browser.close(), timeout=15)
            except Exception:
                log.exception("the browser did not close cleanly")
            await asyncio.to_thread(store.close)
            print("stopped: runs closed, browser closed, final snapshot published", flush=True)

    # Every /api router is mounted by create_api; the ones above the service's floor are handed in here.
    app = create_api(service, routers=[create_experiment_router(experiments),
                                       create_taskset_router(experiments.tasksets)], html_export=export_html,
                     api_key=settings.api_key, named_keys=settings.named_keys, allowed_hosts=settings.served_hosts(),
                     lifespan=lifespan)
    app.state.store, app.state.browser, app.state.settings = store, browser, settings
    if settings.demo_dir.is_dir():
        @app.get("/demo", include_in_schema=False)
        async def demo_slash() -> RedirectResponse:
            # Otherwise the Gradio app mounted at "/" answers /demo with a 404.
            return RedirectResponse("/demo/", status_code=307)

        app.mount("/demo", StaticFiles(directory=settings.demo_dir, html=True), name="demo")
    miniwob_pages = miniwob_html_dir()
    if miniwob_pages is not None:  # the MiniWoB++ task set's pages, served by the workbench itself
        app.mount("/miniwob", StaticFiles(directory=miniwob_pages, html=True), name="miniwob")
    app.mount("/", ui, name="ui")  # the Gradio UI, once built (mount_ui)
    return app


async def mount_ui(app: Any, ui: Any, life: contextlib.AsyncExitStack, settings: Settings, service: Any,
                   experiments: Any) -> None:
    """Build the Gradio UI off the event loop (importing gradio takes seconds), start it, and let `ui` (the
    LateApp at /) hand every request to it; `ui` answers 503 with the reason if it cannot be built."""

    def build() -> Any:
        import gradio as gr
        from fastapi import FastAPI

        from agent.ui.app import build_ui, ui_mount_options

        holder = FastAPI()  # mount_gradio_app's own mount and lifespan are not used: `ui` routes, we start it
        gr.mount_gradio_app(holder, build_ui(service, settings, experiments), path="/", **ui_mount_options())
        return holder.routes[-1].app  # type: ignore[attr-defined]

    try:
        gradio_app = await asyncio.to_thread(build)
        await life.enter_async_context(gradio_app.router.lifespan_context(gradio_app))
        blocks = gradio_app.get_blocks()
        blocks.run_startup_events()
        await blocks.run_extra_startup_events()
    except Exception as exc:
        log.exception("the UI could not be built")
        ui.failed(f"the UI could not be built: {type(exc).__name__}: {str(exc)[:200]}")
        raise
    ui.ready(gradio_app)



def main(argv: list[str] | None = None) -> int:
    """Parse the settings, build the app and serve it until interrupted."""
    settings = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("LiteLLM", "litellm", "httpx", "httpcore"):  # one line per model call or webhook POST otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import uvicorn

    from agent.log.errors import StoreError

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
