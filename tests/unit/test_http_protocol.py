"""keyrack's HTTP protocol: cached /verify hits answered inside it, byte for byte as through ASGI,
and everything else left to ASGI in order. Driven over a fake transport, as uvicorn's own tests."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from keyrack.api.http_protocol import HttpProtocol, find_inline_verifier
from keyrack.api.verify import VerifyEndpoint
from keyrack.store.limits_memory import InProcessLimitStore
from tests.unit.test_verifier import Harness
from tests.unit.test_verify_endpoint import fallback
from tests.unit.test_verify_limits import Limited

DATE = [(b"date", b"Thu, 26 Nov 2026 12:00:00 GMT")]


class Transport:
    """The part of `asyncio.Transport` uvicorn's protocol uses."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Connection:
    def __init__(self, protocol_class: type[HttpToolsProtocol], app: Any) -> None:
        self.state = ServerState()
        self.state.default_headers = DATE
        config = Config(app=app, access_log=False, log_config=None)
        self.protocol = protocol_class(  # type: ignore[call-arg]
            config=config,
            server_state=self.state,
            app_state={},
            _loop=asyncio.get_running_loop(),
        )
        self.transport = Transport()
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]
        self.asgi_tasks = 0
        start = self.protocol._start_asgi_task

        def counted(*args: Any) -> None:
            self.asgi_tasks += 1
            start(*args)

        self.protocol._start_asgi_task = counted  # type: ignore[method-assign]

    def answered(self) -> bool:
        cycle = self.protocol.cycle
        return cycle is None or cycle.response_complete

    async def exchange(self, data: bytes) -> tuple[bytes, int]:
        """What the server wrote for `data`, and how many ASGI tasks that took."""
        before, tasks_before = self.transport.written, self.asgi_tasks
        self.protocol.data_received(data)
        while self.state.tasks or self.protocol.pipeline or not self.answered():
            await asyncio.gather(*self.state.tasks, asyncio.sleep(0.001))
        return self.transport.written[len(before) :], self.asgi_tasks - tasks_before


def get(secret: str, target: str = "/verify", *extra: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: keyrack", f"X-API-Key: {secret}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def run(scenario: Any) -> Any:
    return asyncio.run(scenario())


@pytest.fixture
def harness() -> Harness:
    return Harness()


def endpoint(harness: Harness) -> VerifyEndpoint:
    return VerifyEndpoint(fallback, harness.verifier, max_body_bytes=1024)


def test_a_cache_hit_is_answered_inline_exactly_as_through_asgi(harness: Harness) -> None:
    secret, _ = harness.create(("read", "write"))
    app = endpoint(harness)
    request = get(secret, "/verify?permission=read", "X-Request-ID: req-1")

    async def scenario() -> tuple[bytes, int, bytes, int]:
        stock = Connection(HttpToolsProtocol, app)
        through_asgi, asgi_tasks = await stock.exchange(request)  # a miss: the cache fills
        inline = Connection(HttpProtocol, app)
        answered, inline_tasks = await inline.exchange(request)
        return through_asgi, asgi_tasks, answered, inline_tasks

    through_asgi, asgi_tasks, answered, inline_tasks = run(scenario)
    assert (asgi_tasks, inline_tasks) == (1, 0)
    assert answered.startswith(b"HTTP/1.1 200 OK\r\ndate: ")
    assert b"\r\nx-request-id: req-1\r\n" in answered
    assert answered == through_asgi
    assert harness.loads == 1  # the inline answer came from the cache


def test_a_miss_and_every_refusal_go_through_asgi(harness: Harness) -> None:
    secret, _ = harness.create(("read",))
    app = endpoint(harness)

    async def scenario() -> list[tuple[bytes, int]]:
        connection = Connection(HttpProtocol, app)
        return [
            await connection.exchange(get(secret)),  # a miss: the database, in a thread
            await connection.exchange(get(secret)),  # now cached: inline
            await connection.exchange(get(secret, "/verify?permission=admin")),  # 403
            await connection.exchange(get("kr_malformed")),  # 401
        ]

    answers = run(scenario)
    assert [tasks for _, tasks in answers] == [1, 0, 1, 1]
    assert [answer.split(b"\r\n", 1)[0] for answer, _ in answers] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 403 Forbidden",
        b"HTTP/1.1 401 Unauthorized",
    ]


def test_pipelined_requests_are_answered_in_order(harness: Harness) -> None:
    secret, _ = harness.create(("read",))
    app = endpoint(harness)
    harness.verify(secret)  # cached

    async def scenario() -> tuple[bytes, int]:
        connection = Connection(HttpProtocol, app)
        # inline, then the management app (ASGI), then a hit that must wait its turn behind it
        return await connection.exchange(get(secret) + get(secret, "/orgs") + get(secret))

    written, tasks = run(scenario)
    assert tasks == 2
    assert re.findall(rb"HTTP/1\.1 (\d{3})", written) == [b"200", b"299", b"200"]
    assert written.index(b"management") < written.rindex(b'"valid":true')


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /verify HTTP/1.0\r\nX-API-Key: {secret}\r\n\r\n", b"200"),
        (b"GET /verify HTTP/1.1\r\nConnection: close\r\nX-API-Key: {secret}\r\n\r\n", b"200"),
        (b"HEAD /verify HTTP/1.1\r\nX-API-Key: {secret}\r\n\r\n", b"200"),
        (b"GET /verify/ HTTP/1.1\r\nX-API-Key: {secret}\r\n\r\n", b"299"),
        (b"GET /verif%79 HTTP/1.1\r\nX-API-Key: {secret}\r\n\r\n", b"200"),
    ],
    ids=["http-1.0", "connection-close", "head", "other-path", "encoded-path"],
)
def test_requests_that_mean_more_than_a_lookup_go_through_asgi(
    harness: Harness, request_bytes: bytes, status: bytes
) -> None:
    secret, _ = harness.create(("read",))
    harness.verify(secret)
    app = endpoint(harness)

    async def scenario() -> tuple[bytes, int, bool]:
        connection = Connection(HttpProtocol, app)
        sent = request_bytes.replace(b"{secret}", secret.encode())
        written, tasks = await connection.exchange(sent)
        return written, tasks, connection.transport.closed

    written, tasks, closed = run(scenario)
    assert tasks == 1
    assert written.startswith(b"HTTP/1.1 " + status)
    assert closed == (b"close" in request_bytes or b"HTTP/1.0" in request_bytes)


def test_a_failing_inline_answer_falls_back_to_asgi(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    secret, _ = harness.create(("read",))
    harness.verify(secret)
    app = endpoint(harness)

    def broken(
        target: bytes, headers: list[tuple[bytes, bytes]], client: object, respond: object
    ) -> None:
        raise RuntimeError("boom")

    app.answer_inline = broken  # type: ignore[method-assign]

    async def scenario() -> tuple[bytes, int]:
        return await Connection(HttpProtocol, app).exchange(get(secret))

    with caplog.at_level(logging.ERROR, logger="keyrack.verify"):
        written, tasks = run(scenario)
    assert tasks == 1
    assert written.startswith(b"HTTP/1.1 200 OK")
    assert "inline verification failed" in caplog.text
    assert secret not in caplog.text


def test_the_inline_verifier_is_found_through_uvicorns_proxy_headers_only(
    harness: Harness,
) -> None:
    app = endpoint(harness)
    assert find_inline_verifier(app) is app
    assert find_inline_verifier(ProxyHeadersMiddleware(app)) is app  # type: ignore[arg-type]

    class OtherWrapper:
        def __init__(self, inner: Any) -> None:
            self.app = inner

    assert find_inline_verifier(OtherWrapper(app)) is None
    assert find_inline_verifier(fallback) is None


def limited_app(store: InProcessLimitStore | None = None) -> tuple[Limited, str]:
    limited = Limited(store=store or InProcessLimitStore(clock=lambda: 1_800_000_000.0))
    secret, _ = limited.create(rate_limit={"limit": 2, "window_seconds": 60}, quota=None)
    limited.harness.verify(secret)  # cached (a plain lookup counts against no limit)
    return limited, secret


def test_a_limited_key_is_answered_inline_as_through_asgi() -> None:
    limited, secret = limited_app()

    async def scenario() -> list[tuple[bytes, int]]:
        inline = Connection(HttpProtocol, limited.app)
        stock = Connection(HttpToolsProtocol, limited.app)
        request = get(secret, "/verify", "X-Request-ID: req-1")
        return [
            await inline.exchange(request),  # 200, r=1
            await stock.exchange(request),  # 200, r=0
            await inline.exchange(request),  # 429
            await stock.exchange(request),  # 429
        ]

    (ok_inline, t1), (ok_asgi, t2), (refused_inline, t3), (refused_asgi, t4) = run(scenario)
    assert (t1, t2, t3, t4) == (0, 1, 0, 1)
    assert limited.store_calls == 4
    assert b'\r\nratelimit: "rate";r=1;t=60\r\n' in ok_inline
    assert ok_inline.replace(b"r=1", b"r=0") == ok_asgi
    assert refused_inline.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"\r\nretry-after: 60\r\n" in refused_inline
    assert refused_inline == refused_asgi
    assert limited.decisions == ["allowed", "allowed", "rate_limited", "rate_limited"]


class SlowStore(InProcessLimitStore):
    """Answers like the in-process store, a moment later (as Redis does)."""

    def acquire_then(self, then: Any, **kwargs: Any) -> None:
        usage = self.acquire_sync(**kwargs)
        asyncio.get_running_loop().call_later(0.01, then, usage)


def test_requests_pipelined_behind_a_waiting_answer_keep_their_order() -> None:
    limited, secret = limited_app(SlowStore())
    plain, _ = limited.create()
    limited.harness.verify(plain)

    async def scenario() -> tuple[bytes, int]:
        connection = Connection(HttpProtocol, limited.app)
        exchange = asyncio.ensure_future(connection.exchange(get(secret) + get(plain)))
        await asyncio.sleep(0.02)
        return await exchange

    written, tasks = run(scenario)
    assert tasks == 1  # the plain key queued behind the limited one, then went through ASGI
    assert re.findall(rb"HTTP/1\.1 (\d{3})", written) == [b"200", b"200"]
    assert written.index(b"ratelimit: ") < written.index(b"x-keyrack-key-id", 200)


def test_nothing_is_written_when_the_client_left_while_waiting() -> None:
    limited, secret = limited_app(SlowStore())

    async def scenario() -> tuple[bytes, bool]:
        connection = Connection(HttpProtocol, limited.app)
        connection.protocol.data_received(get(secret))
        connection.protocol.connection_lost(None)
        await asyncio.sleep(0.05)
        return connection.transport.written, connection.transport.closed

    assert run(scenario) == (b"", True)
