"""The raw-ASGI /verify endpoint and the embedding guards, driven in-process over fakes."""

# No `from __future__ import annotations`: FastAPI must resolve the local Annotated aliases.

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI

from keyrack.api.guards import KeyrackMiddleware, KeyRejected, RequireKey, problem_handler
from keyrack.api.verify import VerifyEndpoint
from keyrack.service.key_cache import VerifiedKey
from tests.unit.test_verifier import FORMAT, Harness


async def fallback(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b"management"})


def call(app: Any, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


def endpoint(harness: Harness) -> VerifyEndpoint:
    return VerifyEndpoint(fallback, harness.verifier, max_body_bytes=1024)


def test_get_valid_key_answers_headers_and_body() -> None:
    harness = Harness()
    secret, key_id = harness.create(("read", "write"))
    response = call(
        endpoint(harness),
        "GET",
        "/verify?permission=read&permission=write",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200
    assert response.headers["x-keyrack-org-id"] == "acme"
    assert response.headers["x-keyrack-key-id"] == key_id
    assert response.headers["x-keyrack-permissions"] == "read,write"
    assert response.json() == {
        "valid": True,
        "code": "VALID",
        "org_id": "acme",
        "key_id": key_id,
        "name": "k",
        "permissions": ["read", "write"],
    }
    assert secret not in response.text


def test_rejections_are_problems_with_codes() -> None:
    harness = Harness()
    secret, _ = harness.create(("read",))
    app = endpoint(harness)
    cases: list[tuple[dict[str, str], str, int, str]] = [
        ({}, "", 401, "MISSING"),
        ({"X-API-Key": "kr_nope"}, "", 401, "MALFORMED"),
        ({"X-API-Key": FORMAT.generate()}, "", 401, "NOT_FOUND"),
        ({"X-API-Key": secret}, "?permission=admin", 403, "INSUFFICIENT_PERMISSIONS"),
    ]
    for headers, query, status, code in cases:
        response = call(app, "GET", "/verify" + query, headers=headers)
        assert response.status_code == status, code
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code
        assert ("www-authenticate" in response.headers) == (status == 401)


def test_post_body_and_its_input_errors() -> None:
    harness = Harness()
    secret, _ = harness.create(("read",))
    app = endpoint(harness)
    ok = call(app, "POST", "/verify", json={"key": secret, "permissions": ["read"]})
    assert ok.status_code == 200 and ok.json()["code"] == "VALID"
    header_only = call(app, "POST", "/verify", headers={"X-API-Key": secret})
    assert header_only.status_code == 200
    # The body key is the subject, the header key only its fallback (as the OpenAPI page says).
    beside_bad_header = call(
        app, "POST", "/verify", json={"key": secret}, headers={"Authorization": "Bearer kr_nope"}
    )
    assert beside_bad_header.status_code == 200
    bad_body_key = call(
        app, "POST", "/verify", json={"key": "kr_nope"}, headers={"X-API-Key": secret}
    )
    assert bad_body_key.status_code == 401 and bad_body_key.json()["code"] == "MALFORMED"
    bad: list[tuple[dict[str, Any], int, str]] = [
        ({"content": b"{", "headers": {"content-type": "application/json"}}, 400, "MALFORMED_JSON"),
        ({"json": {"key": secret, "extra": 1}}, 400, "INVALID_INPUT"),
        ({"json": {"key": 5}}, 400, "INVALID_INPUT"),
        ({"json": {"key": secret, "permissions": "read"}}, 400, "INVALID_INPUT"),
        ({"json": [secret]}, 400, "INVALID_INPUT"),
        ({"content": b"key=x", "headers": {"content-type": "text/plain"}}, 415, None),
        ({"json": {"key": "x" * 2000}}, 413, "CONTENT_TOO_LARGE"),
    ]
    for kwargs, status, code in bad:
        response = call(app, "POST", "/verify", **kwargs)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        if code:
            assert response.json()["code"] == code
    put = call(app, "PUT", "/verify")
    assert put.status_code == 405 and put.headers["allow"] == "GET, HEAD, POST"


def test_other_paths_go_to_the_management_app() -> None:
    response = call(endpoint(Harness()), "GET", "/orgs/x/api_keys")
    assert response.status_code == 299 and response.text == "management"


def test_fastapi_dependency_and_asgi_middleware() -> None:
    harness = Harness()
    secret, key_id = harness.create(("read",))
    app = FastAPI()
    app.add_exception_handler(KeyRejected, problem_handler)
    ReadKey = Annotated[VerifiedKey, Depends(RequireKey(harness.verifier, ["read"]))]
    AdminKey = Annotated[VerifiedKey, Depends(RequireKey(harness.verifier, ["admin"]))]

    @app.get("/read")
    def read(key: ReadKey) -> dict[str, str]:
        return {"key_id": key.key_id}

    @app.get("/admin")
    def admin(key: AdminKey) -> dict[str, str]:
        return {"key_id": key.key_id}

    headers = {"X-API-Key": secret}
    assert call(app, "GET", "/read", headers=headers).json() == {"key_id": key_id}
    denied = call(app, "GET", "/admin", headers=headers)
    assert denied.status_code == 403 and denied.json()["code"] == "INSUFFICIENT_PERMISSIONS"
    assert call(app, "GET", "/read").json()["code"] == "MISSING"

    seen: list[str] = []

    async def inner(scope: Any, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        key = scope.get("keyrack.key")
        seen.append(key.key_id if key else "public")
        await fallback(scope, receive, send)

    guarded = KeyrackMiddleware(inner, verifier=harness.verifier, public_paths=["/healthz"])
    assert call(guarded, "GET", "/x", headers=headers).status_code == 299
    assert seen == [key_id]
    assert call(guarded, "GET", "/x", headers={"X-API-Key": FORMAT.generate()}).status_code == 401
    assert call(guarded, "GET", "/healthz").status_code == 299
    assert seen == [key_id, "public"]
