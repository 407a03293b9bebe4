"""The lean forward-auth endpoint: `GET|POST /verify` as raw ASGI, dispatched before FastAPI.

No FastAPI or Starlette machinery and no per-request success logging on this path: a cache hit
is header parsing, one HMAC, one dict lookup and two `send` calls. It is also the target of
nginx `auth_request` (which only understands 2xx, 401 and 403). Every answer carries an
`X-Request-ID` (honoured or generated, as on the management API) and is reported to
`VerifyTelemetry` (batched metrics; refusals logged at most once per interval per code).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from keyrack.api.asgi import ASGIApp, Receive, Scope, Send, request_id_header
from keyrack.api.client_address import IPNetwork, client_address
from keyrack.api.problems import PROBLEM_JSON, encode, from_error, problem_body
from keyrack.api.verify_telemetry import VerifyTelemetry
from keyrack.domain.errors import KeyrackError, LimitExceeded, Unauthenticated
from keyrack.domain.limits import Decision, limit_headers
from keyrack.service.key_cache import VerifiedKey
from keyrack.service.limits import Usage
from keyrack.service.usage_gate import UsageGate
from keyrack.service.verify import (
    INSUFFICIENT_PERMISSIONS,
    MALFORMED,
    MISSING,
    VALID,
    Verifier,
    VerifyResult,
)

log = logging.getLogger("keyrack.verify")

VERIFY_PATH = "/verify"
_ALLOWED_METHODS = "GET, HEAD, POST"
_BODY_FIELDS = frozenset({"key", "permissions"})
_JSON = b"application/json"
_NO_STORE = (b"cache-control", b"no-store")
_NO_CACHE_LOOKUP = frozenset({MISSING, MALFORMED})  # decided before the cache is asked
_VERIFY_BYTES = VERIFY_PATH.encode()
# A cached key's 200 answer: the key, its header fields, the body, the fields as HTTP/1.1 lines.
_Answer = tuple[VerifiedKey, list[tuple[bytes, bytes]], bytes, bytes]


def key_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key from `Authorization: Bearer` or `X-API-Key`; a query-string key is never read.
    An `Authorization` value of another shape is returned as is, to be reported malformed."""
    api_key = None
    for name, value in headers:
        if name == b"authorization" and value:
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer" and credentials.strip():
                return credentials.strip().decode("latin-1")
            return value.decode("latin-1")
        if name == b"x-api-key" and value:
            api_key = value.decode("latin-1")
    return api_key


class DeferredAnswer(NamedTuple):
    """An inline answer waiting for the limit store: once `waiting` is done, `finish()` gives
    the status and the bytes after the server's own header fields."""

    waiting: asyncio.Future[Any]
    finish: Callable[[], tuple[int, bytes]]


class BadRequest(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


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
                permissions = _query_permissions(query) if query else ()
            elif method == "POST":
                secret, permissions = await self._read_body(scope, receive)
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
            await _send(send, bad.status, extra, _problem(bad.status, bad.code, bad.detail))
            self._answered(bad.code, bad.status, started, request_id, scope)
            return
        except KeyrackError as error:  # 429 (limits), 503 (database or Redis, Retry-After)
            status, extra, content = _error_answer(error, request_id)
            await _send(send, status, extra, content)
            self._answered(error.code, status, started, request_id, scope, cache_hit)
            return
        except Exception as error:  # noqa: BLE001 - never a traceback (or a key) to the client
            await _send(
                send, 500, [request_id], _problem(500, "INTERNAL_ERROR", "verification failed")
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
    ) -> bytes | DeferredAnswer | None:
        """For `keyrack.api.http_protocol`: a GET's answer when it is a cache hit for a valid key
        from an address nobody watches, exactly as `__call__` would send it through ASGI. The
        bytes after the server's own header fields for a key without limits; for a limited key,
        the store's pending answer and how to finish (200 or 429). None, with nothing recorded,
        for everything else."""
        started = time.perf_counter()
        path, _, query = target.partition(b"?")
        gate = self.gate
        if path != _VERIFY_BYTES or (gate is not None and (gate.any_blocked or gate.any_watched)):
            return None
        permissions = _query_permissions(query) if query else ()
        result = self.verifier.verify_cached(key_from_headers(headers), permissions)
        if result is None or result.code != VALID:
            return None  # a miss goes to the database; a refusal is logged and throttled
        key = result.key
        assert key is not None
        answer = self._answers.get(id(key))
        if answer is None or answer[0] is not key:
            answer = self._answer(key)
        request_id = request_id_header(headers)
        if gate is not None and key.limited:
            waiting = gate.admission(key)
            assert waiting is not None  # a limited key always asks the store

            def finish() -> tuple[int, bytes]:
                return self._finish_limited(gate, key, answer, request_id, started, client, waiting)

            return DeferredAnswer(waiting, finish)
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
        waiting: asyncio.Future[Usage],
    ) -> tuple[int, bytes]:
        """The inline answer for a limited key once the store answered: what `__call__` and
        `respond` send for the same outcome."""
        scope: Scope = {"method": "GET", "client": client}  # what refusal logging reads
        try:
            decisions = gate.admitted(key, waiting.result())
        except KeyrackError as error:  # 429, or 503 when Redis is down and limits fail closed
            status, fields, content = _error_answer(error, request_id)
            body = _add_content_fields(fields, content)
            self._answered(error.code, status, started, request_id, scope, True)
            return status, _lines(fields) + b"\r\n" + body
        except Exception as error:  # noqa: BLE001 - never a traceback (or a key) to the client
            fields = [request_id]
            problem = _problem(500, "INTERNAL_ERROR", "verification failed")
            body = _add_content_fields(fields, problem)
            if self.telemetry is None:
                log.error("verification failed: %s", type(error).__name__)
            self._answered("INTERNAL_ERROR", 500, started, request_id, scope, True, error=error)
            return 500, _lines(fields) + b"\r\n" + body
        self._answered(VALID, 200, started, request_id, scope, True, key)
        # As `_lines` would write them, in one string formatting: this runs on every request.
        limits = "".join(
            [f"{name.lower()}: {value}\r\n" for name, value in limit_headers(decisions)]
        )
        return 200, b"%sx-request-id: %s\r\n%s\r\n%s" % (
            answer[3],
            request_id[1],
            limits.encode(),
            answer[2],
        )

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
            answer = self._answers.get(id(key))
            if answer is None or answer[0] is not key:
                answer = self._answer(key)
            headers = answer[1] + extra  # a new list: the cached one is shared by every answer
            if decisions:  # the key's limits: what is left of them
                headers += _limit_fields(decisions)
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if head else answer[2]})
            return 200
        return await send_rejection(send, result, extra)

    def _answer(self, key: VerifiedKey) -> _Answer:
        """The 200 answer for a cached key, built once per cache entry: its header fields (also
        as HTTP/1.1 lines) and body. Keyed by the entry's id and checked by identity: the stored
        reference keeps that id from being reused."""
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
            (b"content-type", _JSON),
            (b"content-length", str(len(body)).encode()),
            _NO_STORE,
        ]
        if len(self._answers) >= self.max_answers:
            self._answers.clear()  # bounded like the cache; rebuilt on the next hits
        answer = (key, headers, body, _lines(headers))
        self._answers[id(key)] = answer
        return answer

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[str | None, list[str]]:
        """POST: `{"key", "permissions"}`; an empty body means the key is in the headers (as
        when nginx forwards the original POST's headers without its body)."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BadRequest(413, "CONTENT_TOO_LARGE", "the request body is too large")
            chunks.append(chunk)
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        header_key = key_from_headers(scope["headers"])
        if not raw.strip():
            return header_key, []
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        media_type = content_type.split(b";", 1)[0].strip().lower()
        if media_type != _JSON and not media_type.endswith(b"+json"):
            raise BadRequest(415, "UNSUPPORTED_MEDIA_TYPE", "the body must be application/json")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(400, "MALFORMED_JSON", "the request body is not valid JSON") from None
        return _parse_body(data, header_key)


async def send_rejection(
    send: Send, result: VerifyResult, headers: list[tuple[bytes, bytes]] | None = None
) -> int:
    """401 (with `WWW-Authenticate`) or 403, as problem+json carrying the verification code;
    returns the status."""
    code = result.code
    challenge: dict[str, str] = {}
    if code == INSUFFICIENT_PERMISSIONS:
        status, problem = 403, problem_body(403, code, result.detail)
    else:
        status, problem, challenge = from_error(Unauthenticated(result.detail, code=code))
    problem["valid"] = False
    extra = [*(headers or ()), *((k.lower().encode(), v.encode()) for k, v in challenge.items())]
    await _send(send, status, extra, (PROBLEM_JSON.encode(), encode(problem)))
    return status


def _parse_body(data: object, header_key: str | None) -> tuple[str | None, list[str]]:
    if not isinstance(data, dict):
        raise BadRequest(400, "INVALID_INPUT", "the request body must be a JSON object")
    unknown = sorted(set(data) - _BODY_FIELDS)
    if unknown:
        raise BadRequest(400, "INVALID_INPUT", f"{unknown[0]}: unknown field")
    key = data.get("key", header_key)
    if key is not None and not isinstance(key, str):
        raise BadRequest(400, "INVALID_INPUT", "key: must be a string")
    permissions = data.get("permissions", [])
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise BadRequest(400, "INVALID_INPUT", "permissions: must be a list of strings")
    return key, permissions


def _query_permissions(query: bytes) -> list[str]:
    return [value for name, value in parse_qsl(query.decode("latin-1")) if name == "permission"]


def _problem(status: int, code: str, detail: str) -> tuple[bytes, bytes]:
    return PROBLEM_JSON.encode(), encode(problem_body(status, code, detail))


async def _send(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    content: tuple[bytes, bytes],
    length: int | None = None,
) -> None:
    body = _add_content_fields(headers, content, length)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _add_content_fields(
    headers: list[tuple[bytes, bytes]], content: tuple[bytes, bytes], length: int | None = None
) -> bytes:
    """Appends the content's header fields to `headers`; returns the body."""
    content_type, body = content
    headers.append((b"content-type", content_type))
    headers.append((b"content-length", str(len(body) if length is None else length).encode()))
    headers.append(_NO_STORE)
    return body


def _error_answer(
    error: KeyrackError, request_id: tuple[bytes, bytes]
) -> tuple[int, list[tuple[bytes, bytes]], tuple[bytes, bytes]]:
    """Status, header fields and content of the problem answer for `error` (429, 503)."""
    status, body, fields = from_error(error)
    if isinstance(error, LimitExceeded):
        body["valid"] = False
        # nginx auth_request cannot read the body: the code travels in a header too.
        fields["X-Keyrack-Code"] = error.code
    headers = [request_id, *((k.lower().encode(), v.encode()) for k, v in fields.items())]
    return status, headers, (PROBLEM_JSON.encode(), encode(body))


def _limit_fields(decisions: tuple[Decision, ...]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in limit_headers(decisions)]


def _lines(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Header fields as HTTP/1.1 lines, as uvicorn writes them."""
    return b"".join(b"%s: %s\r\n" % field for field in fields)
