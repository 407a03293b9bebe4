"""uvicorn's httptools protocol, with `GET /verify` cache hits answered inside the protocol.

Why by hand: on uvicorn an ASGI request costs about 20 us before the application runs (a scope,
a `RequestResponseCycle`, an asyncio task, two `send` calls that re-check every header, two
socket writes), while a cached verification costs about 5 us. No server or library offers a
hook below ASGI, so this subclass answers the common case, a valid key found in the cache from
an address nobody watches, right where the request headers have been parsed, in one write. A
key with limits waits for the limit store's answer (a callback from the store's reply handler:
no task, no future) while later requests on the connection queue behind it. Everything else
(a miss, a refusal, a watched or throttled address, POST, HEAD, HTTP/1.0, pipelined requests
behind an unfinished one, a paused transport) goes through ASGI exactly as before, and so does
every other path. The answer is byte for byte what the ASGI path sends.

`keyrack serve` uses this protocol; `uvicorn --http keyrack.api.http_protocol:HttpProtocol`
does the same. It depends on uvicorn's `HttpToolsProtocol` internals, so pyproject pins uvicorn's
minor version and tests/unit/test_http_protocol.py checks the two paths against each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from keyrack.api.verify import DEFERRED, Deferred
from keyrack.api.verify_wire import header_lines

log = logging.getLogger("keyrack.verify")

PROTOCOL_PATH = "keyrack.api.http_protocol:HttpProtocol"
_VERIFY = b"/verify"


class InlineVerifier(Protocol):
    def answer_inline(
        self,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        respond: Callable[..., None] | None,
    ) -> bytes | Deferred | None:
        """A 200's header fields after the server's own, the blank line and the body; or
        DEFERRED when the answer will come through `respond`; or None to leave the request to
        ASGI."""


class _NoEvent:
    def set(self) -> None:
        pass


class _Answered:
    """Stands in for the request/response cycle of a request the protocol answered itself:
    uvicorn's later callbacks for that request (body, message complete, shutdown, connection
    lost) then see a finished response and do nothing."""

    response_complete = True
    disconnected = False
    keep_alive = True
    message_event = _NoEvent()


_ANSWERED: Any = _Answered()


class _Waiting:
    """The cycle of a request whose inline answer waits for the limit store: uvicorn queues
    the connection's next requests behind it, marks it on disconnect or shutdown, and feeds it
    any body (which a GET to /verify does not use). Class attributes are the defaults: one
    is made per limited request, and an empty `__init__` is the cheapest."""

    response_complete = False
    disconnected = False
    keep_alive = True
    message_event = _Answered.message_event
    body = b""
    more_body = True


def find_inline_verifier(app: object) -> InlineVerifier | None:
    """The application's inline verifier, looking through uvicorn's proxy-headers wrapper only
    (any other wrapper may change what a request means, so it disables the fast path)."""
    while isinstance(app, ProxyHeadersMiddleware):
        app = app.app
    answer = getattr(app, "answer_inline", None)
    return app if callable(answer) else None  # type: ignore[return-value]


class HttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Settings under which a request means more than its headers: leave them all to ASGI.
        plain = not self.limit_concurrency and not self.root_path and not self.access_log
        self.inline = find_inline_verifier(self.app) if plain else None
        self._defaults: list[tuple[bytes, bytes]] | None = None
        self._default_lines = b""
        self._waiting: _Waiting | None = None  # the deferred answer in flight (one at most)

    def on_headers_complete(self) -> None:
        inline = self.inline
        if inline is not None and self.url.startswith(_VERIFY) and self._can_answer_inline():
            try:
                answer = inline.answer_inline(self.url, self.headers, self.client, self._respond)
            except Exception as error:  # noqa: BLE001 - the ASGI path answers (and reports) instead
                # the type only, as on the ASGI path: a message or traceback could hold the key
                log.error("inline verification failed (%s); through ASGI", type(error).__name__)
                answer = None
            if type(answer) is bytes:
                self.transport.write(STATUS_LINE[200] + self._server_lines() + answer)
                self.cycle = _ANSWERED
                self.on_response_complete()  # counts the request, arms the keep-alive timer
                return
            if answer is DEFERRED:
                # `_respond` runs later. uvicorn's callbacks see this cycle meanwhile, and put a
                # pipelined request in a cycle of its own, queued behind it.
                self._waiting = _Waiting()
                self.cycle = self._waiting  # type: ignore[assignment]  # uvicorn reads only these
                return
        super().on_headers_complete()

    def _respond(self, finish: Callable[..., tuple[int, bytes]], *args: Any) -> None:
        """The deferred answer: `finish(*args)` gives it (see `VerifyEndpoint.answer_inline`)."""
        cycle = self._waiting
        if cycle is None or cycle.response_complete:  # the request went to ASGI after all
            return
        try:
            status, answer = finish(*args)
        except (Exception, asyncio.CancelledError) as error:  # noqa: BLE001 - never a trace
            log.error("inline verification failed (%s); closing", type(error).__name__)
            self.transport.close()
            return
        cycle.response_complete = True
        if cycle.disconnected or self.transport.is_closing():
            return
        self.transport.write(STATUS_LINE[status] + self._server_lines() + answer)
        if not cycle.keep_alive:  # the server is shutting down
            self.transport.close()
        self.on_response_complete()  # starts the next pipelined request, if any

    def _can_answer_inline(self) -> bool:
        parser = self.parser
        cycle = self.cycle
        return (
            (cycle is None or cycle.response_complete)  # nothing in flight: answers stay in order
            and not self.pipeline
            and not self.flow.write_paused
            and not self.expect_100_continue
            and parser.get_method() == b"GET"
            and parser.get_http_version() == "1.1"
            and parser.should_keep_alive()
            and not parser.should_upgrade()
        )

    def _server_lines(self) -> bytes:
        """The server's default header fields (`date`, and `server` when enabled), encoded once
        per change: uvicorn replaces the list every second for the date."""
        defaults = self.server_state.default_headers
        if defaults is not self._defaults:
            self._defaults = defaults
            self._default_lines = header_lines(defaults)
        return self._default_lines
