"""The FastAPI app that serves /api: the one place every /api router is mounted.

`create_api(service, routers=..., api_key=..., named_keys=...)` builds the app with the request guard, the key
check and the browsers' login (when a key is set), the error handlers and the OpenAPI document, then
includes the run service's own routers (`agent.service.routes.service_routers`) and the routers of
the floors above the service that the composition root (app.py) hands in (the experiments').
With an API key set (WORKBENCH_API_KEY, or the named ones of WORKBENCH_API_KEYS), every /api and /gradio_api
route needs `Authorization: Bearer <key>` or `X-API-Key: <key>`; a named key's holder is its reviews' reviewer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from agent.models import AskRequest, RunRequest
from agent.service.http import ApiKeyMiddleware, RequestGuard, install_error_handlers
from agent.service.login import install_ui_login
from agent.service.routes import HtmlExport, service_routers
from agent.service.runs import RunService

__all__ = ["create_api", "install_openapi", "request_schemas"]


def create_api(
    service: RunService,
    *,
    routers: Iterable[APIRouter] = (),
    html_export: HtmlExport | None = None,
    api_key: str | None = None,
    named_keys: Sequence[tuple[str, str]] = (),
    allowed_hosts: frozenset[str] | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
    title: str = "LLM web-agent workbench",
) -> FastAPI:
    """The FastAPI app with every /api route, the error handlers, the request guard and (if `api_key` or
    `named_keys`) the key check with the browsers' login; anything mounted on it later (Gradio) is behind them too.

    `routers`: the /api routers of the floors above the service (the app passes the experiments');
    `html_export`: the page renderer of `GET /api/runs/{id}/export?format=html` (the UI's).
    """
    app = FastAPI(title=title, lifespan=lifespan, docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.service = service
    if api_key or named_keys:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key, named_keys=list(named_keys))
        # Browsers log in once with a key; a cookie then stands for it (and for its name).
        install_ui_login(app, [k for k in (api_key,) if k] + [key for _name, key in named_keys])
    # Added last, so it runs first: a foreign host or origin never reaches the key check or a route.
    app.add_middleware(RequestGuard, allowed_hosts=allowed_hosts)
    install_error_handlers(app)
    install_openapi(app)
    for router in (*service_routers(service, html_export=html_export), *routers):
        app.include_router(router)
    return app


def request_schemas() -> dict[str, dict[str, Any]]:
    """The JSON bodies the routes read themselves (through `read_json`), as OpenAPI components."""
    run = RunRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    props = run["properties"]
    # Fields the contract also takes as a JSON string (or, for allowed_domains, a comma-separated one).
    for name in ("json_schema", "cached_workflow", "workflow_params", "allowed_domains", "sensitive_data"):
        props[name]["anyOf"].insert(-1, {"type": "string"})
    overrides = {**run, "title": "RunOverrides", "required": [],
                 "description": "Fields of the saved request to change for this run (all optional)"}
    save = {"title": "SaveWorkflow", "type": "object", "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200}}}
    edit = {"title": "EditWorkflow", "type": "object", "additionalProperties": False, "minProperties": 1,
            "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                           "parameters": {"type": "object"}, "document": {"type": "object"}}}
    ask = AskRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    nested = run.pop("$defs", {})  # models inside the request (Fork): components of their own
    overrides.pop("$defs", None)
    return {**nested, "RunRequest": run, "RunOverrides": overrides, "SaveWorkflow": save, "EditWorkflow": edit,
            "AskRequest": ask}


def install_openapi(app: FastAPI) -> None:
    """/api/openapi.json with the real request bodies and error shapes (a generated client works)."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                              description="The workbench's JSON API: start, follow and read runs; workflows.")
            doc.setdefault("components", {}).setdefault("schemas", {}).update(request_schemas())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
