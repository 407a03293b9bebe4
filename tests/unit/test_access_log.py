"""The access-log layer: request ids, one line per request, counted successes, no secrets."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest

from keyrack.api.asgi import AccessLog, Message, Receive, Scope, Send

SECRET = "kr_3mVq8ZkT1pXw7RbN2cLs9dHf4GjY6aUe0x1Yz2"


def make_app(status: int, seen: dict[str, Any]) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["request_id"] = scope["state"]["request_id"]
        scope["state"]["org_id"] = "acme"
        scope["state"]["key_id"] = "key-abc"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def call(
    layer: AccessLog, path: str = "/orgs/acme/api_keys", headers: list[tuple[bytes, bytes]] = ()
) -> list[Message]:  # type: ignore[assignment]
    sent: list[Message] = []
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": f"api_key={SECRET}".encode(),
        "headers": [(b"authorization", f"Bearer {SECRET}".encode()), *headers],
        "client": ("127.0.0.1", 5000),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(layer(scope, receive, send))
    return sent


def response_header(sent: list[Message], name: bytes) -> bytes | None:
    return dict(sent[0]["headers"]).get(name)


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "keyrack.access"]


def test_generates_a_request_id_and_logs_one_line_with_caller_and_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: dict[str, Any] = {}
    with caplog.at_level(logging.INFO, logger="keyrack.access"):
        sent = call(AccessLog(make_app(200, seen)))
    request_id = response_header(sent, b"x-request-id")
    assert request_id is not None and re.fullmatch(rb"[0-9a-f]{16}-[0-9a-f]+", request_id)
    assert call(AccessLog(make_app(200, {})))[0]["headers"][-1][1] != request_id  # unique
    assert request_id.decode() == seen["request_id"]
    [record] = access_records(caplog)
    fields = record.__dict__
    assert fields["request_id"] == seen["request_id"]
    assert (fields["org_id"], fields["key_id"]) == ("acme", "key-abc")
    assert (fields["method"], fields["path"], fields["status"]) == (
        "GET",
        "/orgs/acme/api_keys",
        200,
    )
    assert fields["duration_ms"] >= 0
    assert SECRET not in repr(fields) and "api_key=" not in repr(fields)


def test_honours_a_token_request_id_and_replaces_an_unsafe_one() -> None:
    seen: dict[str, Any] = {}
    sent = call(AccessLog(make_app(200, seen)), headers=[(b"x-request-id", b"abc-123.x")])
    assert response_header(sent, b"x-request-id") == b"abc-123.x"
    assert seen["request_id"] == "abc-123.x"
    sent = call(AccessLog(make_app(200, seen)), headers=[(b"x-request-id", b"a b\x01" * 3)])
    replaced = response_header(sent, b"x-request-id")
    assert replaced is not None and replaced != b"a b\x01" * 3
    sent = call(AccessLog(make_app(200, seen)), headers=[(b"x-request-id", b"x" * 129)])
    assert response_header(sent, b"x-request-id") != b"x" * 129
    # a key sent as a request id would be logged and stored with audit events: replaced
    sent = call(AccessLog(make_app(200, seen)), headers=[(b"x-request-id", SECRET.encode())])
    assert response_header(sent, b"x-request-id") != SECRET.encode()
    assert seen["request_id"] != SECRET


def test_successful_verifications_are_counted_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    layer = AccessLog(make_app(200, {}), summary_seconds=3600)
    with caplog.at_level(logging.INFO, logger="keyrack.access"):
        for _ in range(50):
            call(layer, path="/verify")
    assert access_records(caplog) == []
    layer.summary_seconds = 0
    with caplog.at_level(logging.INFO, logger="keyrack.access"):
        call(layer, path="/verify")
    [summary] = access_records(caplog)
    assert summary.__dict__["counts"] == {"/verify": 51}


def test_failed_verifications_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="keyrack.access"):
        call(AccessLog(make_app(401, {})), path="/verify")
    [record] = access_records(caplog)
    assert record.__dict__["status"] == 401


def test_a_key_pasted_into_the_path_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="keyrack.access"):
        call(AccessLog(make_app(404, {})), path=f"/orgs/{SECRET}/api_keys")
    [record] = access_records(caplog)
    assert record.__dict__["path"] == "/orgs/[redacted]/api_keys"
