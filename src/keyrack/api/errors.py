"""Exception handlers: every failure leaves as problem+json, never FastAPI's 422 or a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from keyrack.api.deps import invalid_input
from keyrack.api.problems import PROBLEM_JSON, HttpProblem, from_error, problem_body
from keyrack.domain.errors import InvalidInput, KeyrackError

log = logging.getLogger("keyrack.errors")

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "CONTENT_TOO_LARGE"}


def problem_response(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


async def _keyrack_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, KeyrackError)
    status, body, headers = from_error(error)
    return problem_response(status, body, headers)


async def _http_problem(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HttpProblem)
    return problem_response(
        error.status, problem_body(error.status, error.code, error.detail), error.headers
    )


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    field_errors = []
    for item in error.errors():
        location = [
            str(part)
            for part in item.get("loc", ())
            if part not in ("body", "path", "query", "header")
        ]
        field_errors.append(
            {"field": ".".join(location) or "body", "message": str(item.get("msg", ""))}
        )
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in field_errors) or "invalid input"
    first = field_errors[0]["field"] if field_errors else None
    return await _keyrack_error(_request, InvalidInput(summary, field=first, errors=field_errors))


def _allowed_methods(request: Request) -> str:
    """Every method some route accepts on this path (Starlette names only the first route's);
    found by asking the routes to match each method, which works for nested routers too."""
    allowed = []
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


async def _starlette_http(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _HTTP_CODES.get(error.status_code, f"HTTP_{error.status_code}")
    detail = "no such resource" if error.status_code == 404 else str(error.detail)
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
        detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
    return problem_response(
        error.status_code, problem_body(error.status_code, code, detail), headers
    )


async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
    log.error("unhandled error: %s", type(error).__name__, exc_info=error)
    return problem_response(
        500, problem_body(500, "INTERNAL_ERROR", "an unexpected error occurred; it has been logged")
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(KeyrackError, _keyrack_error)
    app.add_exception_handler(HttpProblem, _http_problem)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _starlette_http)
    app.add_exception_handler(Exception, _unexpected)


__all__ = ["install", "invalid_input", "problem_response"]
