"""The app factory: FastAPI for management, wrapped in lean pure-ASGI layers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from keyrack import __version__, metrics
from keyrack.api import errors
from keyrack.api.asgi import AccessLog, ASGIApp, BodyLimit
from keyrack.api.dashboard import mount_dashboard
from keyrack.api.docs import mount_docs
from keyrack.api.routes import audit, key_lifecycle, keys, operations, policy
from keyrack.api.verify import VerifyEndpoint
from keyrack.api.verify_docs import verify_path_item
from keyrack.api.verify_telemetry import RefusalLog, VerifyTelemetry
from keyrack.runtime import Runtime, build_runtime, check_schema
from keyrack.settings import Settings


def create_management_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runtime.start_background()
        yield
        await runtime.aclose()

    app = FastAPI(
        title="keyrack",
        version=__version__,
        summary="API keys for organizations: create, list, revoke, verify.",
        lifespan=lifespan,
        docs_url=None,  # served by mount_docs, with local assets
        redoc_url=None,
    )
    app.state.runtime = runtime
    errors.install(app)
    app.include_router(keys.router)
    app.include_router(key_lifecycle.router)
    app.include_router(audit.router)
    app.include_router(policy.router)
    app.include_router(operations.router)
    mount_docs(app)
    mount_dashboard(app)
    metrics.watch_database_errors(runtime.engine)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI documents a 422 we never send (validation errors are 400 problem+json): drop it."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if "HTTPValidationError" in str(responses.get("422")):  # keep our own 422s
                responses.pop("422")
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    schema["security"] = [{"bearer": []}, {"apiKeyHeader": []}]
    schema["paths"]["/verify"] = verify_path_item()
    app.openapi_schema = schema
    return schema


def create_app(runtime: Runtime) -> ASGIApp:
    management = create_management_app(runtime)
    app: ASGIApp = BodyLimit(management, max_bytes=runtime.settings.max_body_bytes)
    settings = runtime.settings
    telemetry = VerifyTelemetry(
        recorder=metrics.verify_recorder if settings.metrics else None,
        refusals=RefusalLog(interval=settings.verify_refusal_log_seconds),
    )
    # /verify is answered before the access log and FastAPI: it must stay lean.
    return VerifyEndpoint(
        AccessLog(app, metered=settings.metrics),
        runtime.verifier,
        max_body_bytes=settings.max_body_bytes,
        gate=runtime.usage_gate,
        trusted_proxies=runtime.usage_controls.trusted_proxies,
        telemetry=telemetry,
    )


def create_app_from_env() -> ASGIApp:
    """Factory for `uvicorn --factory` (each worker process builds its own runtime)."""
    runtime = build_runtime(Settings())
    check_schema(runtime)
    return create_app(runtime)
