"""For Python services that link keyrack: a FastAPI dependency and a pure ASGI middleware.

Both are thin shells around `keyrack.Verifier` and answer rejections exactly like `/verify`
(problem+json with the same `code`, `WWW-Authenticate` on 401).
"""

from __future__ import annotations

from collections.abc import Collection

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from keyrack.api.asgi import ASGIApp, Receive, Scope, Send
from keyrack.api.problems import PROBLEM_JSON, from_error, problem_body
from keyrack.api.verify_wire import key_from_headers, send_rejection
from keyrack.domain.errors import Unauthenticated
from keyrack.service.key_cache import VerifiedKey
from keyrack.service.verify import INSUFFICIENT_PERMISSIONS, VALID, Verifier, VerifyResult

SCOPE_KEY = "keyrack.key"  # where the middleware leaves the VerifiedKey for the app


class KeyRejected(HTTPException):
    """Raised by `RequireKey`; `problem_handler` renders it as problem+json."""

    def __init__(self, result: VerifyResult) -> None:
        if result.code == INSUFFICIENT_PERMISSIONS:
            status, body = 403, problem_body(403, result.code, result.detail)
            headers: dict[str, str] = {}
        else:
            status, body, headers = from_error(Unauthenticated(result.detail, code=result.code))
        super().__init__(status_code=status, detail=body, headers=headers or None)
        self.result = result


async def problem_handler(_request: Request, error: Exception) -> JSONResponse:
    """Register with `app.add_exception_handler(KeyRejected, problem_handler)`."""
    assert isinstance(error, KeyRejected)
    return JSONResponse(
        error.detail, status_code=error.status_code, headers=error.headers, media_type=PROBLEM_JSON
    )


class RequireKey:
    """A FastAPI dependency returning the verified key:
    `key: Annotated[VerifiedKey, Depends(RequireKey(verifier, ["read"]))]`."""

    def __init__(self, verifier: Verifier, permissions: Collection[str] = ()) -> None:
        self.verifier = verifier
        self.permissions = tuple(permissions)

    async def __call__(self, request: Request) -> VerifiedKey:
        result = await self.verifier.averify(
            key_from_headers(request.scope["headers"]), self.permissions
        )
        if result.code != VALID or result.key is None:
            raise KeyRejected(result)
        return result.key


class KeyrackMiddleware:
    """Verifies every HTTP request before `app` sees it (except `public_paths`); the verified
    key is in `scope["keyrack.key"]`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: Verifier,
        permissions: Collection[str] = (),
        public_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.permissions = tuple(permissions)
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        result = await self.verifier.averify(key_from_headers(scope["headers"]), self.permissions)
        if result.code != VALID:
            await send_rejection(send, result)
            return
        scope[SCOPE_KEY] = result.key
        await self.app(scope, receive, send)


__all__ = ["SCOPE_KEY", "KeyRejected", "KeyrackMiddleware", "RequireKey", "problem_handler"]
