"""The lean forward-auth endpoint: `GET|POST /verify` as raw ASGI, dispatched before FastAPI.

No FastAPI or Starlette machinery and no per-request success logging on this path: a cache hit
is header parsing, one HMAC, one dict lookup and two `send` calls. It is also the target of
nginx `auth_request` (which only understands 2xx, 401 and 403). Every answer carries an
`X-Request-ID` (honoured or generated, as on the management API) and is reported to
`VerifyTelemetry` (batched metrics; refusals logged at most once per interval per code).
`answer_inline` gives keyrack's HTTP protocol (`http_protocol.py`) the same answers for cache
hits, which it then writes without any ASGI machinery.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial

from keyrack.api.asgi import ASGIApp, Receive, Scope, Send, request_id_header
from keyrack.api.client_address import IPNetwork, client_address
from keyrack.api.verify_telemetry import VerifyTelemetry
from keyrack.api.verify_wire import (
    JSON,
    NO_STORE,
    BadRequest,
    add_content_fields,
    admitted_answer,
    error_answer,
    header_lines,
    key_from_headers,
    limit_fields,
    problem_content,
    query_permissions,
    read_body,
    send_answer,
    send_rejection,
)
from keyrack.domain.errors import KeyrackError
from keyrack.domain.limits import Decision
from keyrack.service.key_cache import VerifiedKey
from keyrack.service.limits import Usage
from keyrack.service.usage_gate import UsageGate
from keyrack.service.verify import (
    MALFORMED,
    MISSING,
    VALID,
    Verifier,
    VerifyResult,
)

log = logging.getLogger("keyrack.verify")

VERIFY_PATH = "/verify"
_ALLOWED_METHODS = "GET, HEAD, POST"
_NO_CACHE_LOOKUP = frozenset({MISSING, MALFORMED})  # decided before the cache is asked
_VERIFY_BYTES = VERIFY_PATH.encode()
# A cached key's 200 answer: the key, its header fields, the body, the fields as HTTP/1.1 lines.
_Answer = tuple[VerifiedKey, list[tuple[bytes, bytes]], bytes, bytes]


class Deferred:
    """`answer_inline`'s answer for a key with limits: it comes later, through `respond`."""


DEFERRED = Deferred()
# `respond(finish, *args)`: the protocol calls `finish(*args)` for the status and the bytes
# after the server's own header fields (and closes the connection should that fail).
Respond = Callable[..., None]


class VerifyEndpoint:
    """Answers `/verify` itself and passes every other request to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        max_body_bytes: int,
        gate: UsageGate | None = None,
        trusted_proxies: Sequence[IPNetwork] = (),
        telemetry: VerifyTelemetry | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.max_body_bytes = max_body_bytes
        self.gate = gate
        self.trusted_proxies = trusted_proxies
        self.telemetry = telemetry
        self.max_answers = verifier.cache.max_entries if verifier.cache is not None else 1024
        self._answers: dict[int, _Answer] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != VERIFY_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_header(scope["headers"])
        method = scope["method"]
        cache_hit: bool | None = None
        try:
            if method == "GET" or method == "HEAD":
                secret = key_from_headers(scope["headers"])
                query = scope["query_string"]
                permissions = query_permissions(query) if query else ()
            elif method == "POST":
                secret, permissions = await read_body(scope, receive, self.max_body_bytes)
            else:
                raise BadRequest(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"{method} is not allowed here; allowed: {_ALLOWED_METHODS}",
                )
            gate = self.gate
            if gate is not None and gate.any_blocked:
                self._refuse_blocked(gate, scope, secret)
            result = self.verifier.verify_cached(secret, permissions)
            if result is None:
                cache_hit = False
                result = await self.verifier.averify(secret, permissions)
            elif result.code not in _NO_CACHE_LOOKUP:
                cache_hit = True
            decisions: tuple[Decision, ...] = ()
            # A valid key without limits goes straight on (no store, no client address)
            # unless some address failed to authenticate here recently.
            key = result.key
            if gate is not None and (
                key is None or key.limited or result.code != VALID or gate.any_watched
            ):
                decisions = await self._apply_limits(gate, scope, result)
        except BadRequest as bad:
            extra = [request_id]
            if bad.status == 405:
                extra.append((b"allow", _ALLOWED_METHODS.encode()))
            await send_answer(
                send, bad.status, extra, problem_content(bad.status, bad.code, bad.detail)
            )
            self._answered(bad.code, bad.status, started, request_id, scope)
            return
        except KeyrackError as error:  # 429 (limits), 503 (database or Redis, Retry-After)
            status, extra, content = error_answer(error, request_id)
            await send_answer(send, status, extra, content)
            self._answered(error.code, status, started, request_id, scope, cache_hit)
            return
        except Exception as error:  # noqa: BLE001 - never a traceback (or a key) to the client
            await send_answer(
                send,
                500,
                [request_id],
                problem_content(500, "INTERNAL_ERROR", "verification failed"),
            )
            if self.telemetry is None:
                log.error("verification failed: %s", type(error).__name__)
            self._answered(
                "INTERNAL_ERROR", 500, started, request_id, scope, cache_hit, error=error
            )
            return
        status = await self.respond(
            send, result, head=method == "HEAD", request_id=request_id, decisions=decisions
        )
        telemetry = self.telemetry
        if telemetry is not None:  # positional arguments: this runs on every verification
            telemetry.answered(
                result.code, status, started, cache_hit, result.key, request_id, scope
            )

    def answer_inline(
        self,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        client: tuple[str, int] | None = None,
        respond: Respond | None = None,
    ) -> bytes | Deferred | None:
        """For `keyrack.api.http_protocol`: a GET's answer when it is a cache hit for a valid key
        from an address nobody watches, exactly as `__call__` would send it through ASGI. The
        bytes after the server's own header fields for a key without limits; for a limited key
        (given `respond`), DEFERRED, and the answer (200 or 429) goes to `respond` once the
        limit store has answered, from the event loop, never before this returns. None, with
        nothing recorded, for everything else."""
        started = time.perf_counter()
        path, _, query = target.partition(b"?")
        gate = self.gate
        if path != _VERIFY_BYTES or (gate is not None and (gate.any_blocked or gate.any_watched)):
            return None
        permissions = query_permissions(query) if query else ()
        result = self.verifier.verify_cached(key_from_headers(headers), permissions)
        if result is None or result.code != VALID:
            return None  # a miss goes to the database; a refusal is logged and throttled
        key = result.key
        assert key is not None
        answer = self._answer(key)
        request_id = request_id_header(headers)
        if gate is not None and key.limited:
            if respond is None:
                return None
            # `respond(finish, ..., outcome)` once the store answers: a partial rather than a
            # closure, one Python call less per limited request.
            finish = self._finish_limited
            gate.admission(
                key, partial(respond, finish, gate, key, answer, request_id, started, client)
            )
            return DEFERRED
        if self.telemetry is not None:
            self.telemetry.valid_hit(started)
        return b"%sx-request-id: %s\r\n\r\n%s" % (answer[3], request_id[1], answer[2])

    def _finish_limited(
        self,
        gate: UsageGate,
        key: VerifiedKey,
        answer: _Answer,
        request_id: tuple[bytes, bytes],
        started: float,
        client: tuple[str, int] | None,
        outcome: Usage | BaseException,
    ) -> tuple[int, bytes]:
        """The inline answer for a limited key once the store answered: what `__call__` and
        `respond` send for the same outcome."""
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            decisions = gate.admitted(key, outcome)
        except Exception as error:  # noqa: BLE001 - answered as a problem, never a traceback
            return self._refuse_limited(error, request_id, started, client)
        if self.telemetry is not None:
            self.telemetry.valid_hit(started)  # the series `answered` would count it in
        return 200, admitted_answer(answer[3], request_id[1], decisions, answer[2])

    def _refuse_limited(
        self,
        error: Exception,
        request_id: tuple[bytes, bytes],
        started: float,
        client: tuple[str, int] | None,
    ) -> tuple[int, bytes]:
        """`_finish_limited`'s answer when the key is over a limit (429), Redis is down and
        limits fail closed (503), or something broke (500)."""
        scope: Scope = {"method": "GET", "client": client}  # what refusal logging reads
        failure: Exception | None = None
        if isinstance(error, KeyrackError):
            status, fields, content = error_answer(error, request_id)
            code = error.code
        else:
            status, fields = 500, [request_id]
            content = problem_content(500, "INTERNAL_ERROR", "verification failed")
            code, failure = "INTERNAL_ERROR", error
            if self.telemetry is None:
                log.error("verification failed: %s", type(error).__name__)
        body = add_content_fields(fields, content)
        self._answered(code, status, started, request_id, scope, True, error=failure)
        return status, header_lines(fields) + b"\r\n" + body

    def _refuse_blocked(self, gate: UsageGate, scope: Scope, secret: str | None) -> None:
        """Raise 429 for an address known to be blocked, before any database lookup; a cached
        key it presented is named in the audit log."""
        address = client_address(scope, self.trusted_proxies)
        refusal = gate.refusal_for(address)
        if refusal is not None and address is not None:
            cached = self.verifier.verify_cached(secret)
            key = cached.key if cached is not None else None
            raise gate.throttled(refusal, address=address, key=key, request_id=None)

    async def _apply_limits(
        self, gate: UsageGate, scope: Scope, result: VerifyResult
    ) -> tuple[Decision, ...]:
        if result.code == VALID:
            assert result.key is not None
            # The address matters to a valid key only if it failed here recently.
            watched = gate.any_watched
            address = client_address(scope, self.trusted_proxies) if watched else None
            return await gate.admit(key=result.key, address=address)
        address = client_address(scope, self.trusted_proxies)
        await gate.failed(code=result.code, address=address, key=result.key, request_id=None)
        return ()

    def _answered(
        self,
        code: str,
        status: int,
        started: float,
        request_id: tuple[bytes, bytes],
        scope: Scope,
        cache_hit: bool | None = None,
        key: VerifiedKey | None = None,
        *,
        error: Exception | None = None,
    ) -> None:
        if self.telemetry is not None:
            self.telemetry.answered(
                code, status, started, cache_hit, key, request_id, scope, error=error
            )

    async def respond(
        self,
        send: Send,
        result: VerifyResult,
        *,
        head: bool = False,
        decisions: tuple[Decision, ...] = (),
        request_id: tuple[bytes, bytes] | None = None,
    ) -> int:
        """Sends the answer for `result` and returns its status (the one place where the
        outcome code is known)."""
        extra = [request_id] if request_id is not None else []
        if result.code == VALID:
            key = result.key
            assert key is not None
            answer = self._answer(key)
            headers = answer[1] + extra  # a new list: the cached one is shared by every answer
            if decisions:  # the key's limits: what is left of them
                headers += limit_fields(decisions)
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if head else answer[2]})
            return 200
        return await send_rejection(send, result, extra)

    def _answer(self, key: VerifiedKey) -> _Answer:
        """The 200 answer for a cached key, built once per cache entry: its header fields (also
        as HTTP/1.1 lines) and body. Keyed by the entry's id and checked by identity: the stored
        reference keeps that id from being reused."""
        answer = self._answers.get(id(key))
        if answer is not None and answer[0] is key:
            return answer
        body = json.dumps(
            {
                "valid": True,
                "code": VALID,
                "org_id": key.org_id,
                "key_id": key.key_id,
                "name": key.name,
                "permissions": list(key.permissions),
            },
            separators=(",", ":"),
        ).encode()
        headers = [
            (b"x-keyrack-org-id", key.org_id.encode()),
            (b"x-keyrack-key-id", key.key_id.encode()),
            (b"x-keyrack-permissions", ",".join(key.permissions).encode()),
            (b"content-type", JSON),
            (b"content-length", str(len(body)).encode()),
            NO_STORE,
        ]
        if len(self._answers) >= self.max_answers:
            self._answers.clear()  # bounded like the cache; rebuilt on the next hits
        answer = (key, headers, body, header_lines(headers))
        self._answers[id(key)] = answer
        return answer
