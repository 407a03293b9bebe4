"""The wire side of `/verify`: where the key is read from, the POST body, and how answers and
problems are written (as ASGI messages or, for the inline path, as HTTP/1.1 header lines)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import parse_qsl

from keyrack.api.asgi import Receive, Scope, Send
from keyrack.api.problems import PROBLEM_JSON, encode, from_error, problem_body
from keyrack.domain.errors import KeyrackError, LimitExceeded, Unauthenticated
from keyrack.domain.limits import Decision, limit_headers
from keyrack.service.verify import INSUFFICIENT_PERMISSIONS, VerifyResult

BODY_FIELDS = frozenset({"key", "permissions"})
JSON = b"application/json"
NO_STORE = (b"cache-control", b"no-store")


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


class BadRequest(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


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
    await send_answer(send, status, extra, (PROBLEM_JSON.encode(), encode(problem)))
    return status


def parse_body(data: object, header_key: str | None) -> tuple[str | None, list[str]]:
    if not isinstance(data, dict):
        raise BadRequest(400, "INVALID_INPUT", "the request body must be a JSON object")
    unknown = sorted(set(data) - BODY_FIELDS)
    if unknown:
        raise BadRequest(400, "INVALID_INPUT", f"{unknown[0]}: unknown field")
    key = data.get("key", header_key)
    if key is not None and not isinstance(key, str):
        raise BadRequest(400, "INVALID_INPUT", "key: must be a string")
    permissions = data.get("permissions", [])
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        raise BadRequest(400, "INVALID_INPUT", "permissions: must be a list of strings")
    return key, permissions


def query_permissions(query: bytes) -> list[str]:
    return [value for name, value in parse_qsl(query.decode("latin-1")) if name == "permission"]


def problem_content(status: int, code: str, detail: str) -> tuple[bytes, bytes]:
    return PROBLEM_JSON.encode(), encode(problem_body(status, code, detail))


async def send_answer(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    content: tuple[bytes, bytes],
    length: int | None = None,
) -> None:
    body = add_content_fields(headers, content, length)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def add_content_fields(
    headers: list[tuple[bytes, bytes]], content: tuple[bytes, bytes], length: int | None = None
) -> bytes:
    """Appends the content's header fields to `headers`; returns the body."""
    content_type, body = content
    headers.append((b"content-type", content_type))
    headers.append((b"content-length", str(len(body) if length is None else length).encode()))
    headers.append(NO_STORE)
    return body


def error_answer(
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


def limit_fields(decisions: tuple[Decision, ...]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in limit_headers(decisions)]


def admitted_answer(
    fields: bytes, request_id: bytes, decisions: tuple[Decision, ...], body: bytes
) -> bytes:
    """An admitted limited request's answer after the server's own header fields: `fields`
    (header lines), `X-Request-ID`, the `RateLimit` fields of `decisions` (no `Retry-After`),
    the blank line, `body`. One formatting for the usual single rate limit: every limited
    request that passes writes it (tests/unit/test_limits_domain.py holds it to the bytes of
    `header_lines(limit_fields(decisions))`)."""
    if len(decisions) == 1:
        name, _, limit, remaining, reset, window, _ = decisions[0]
        if window:
            policy = name.encode()
            return (
                b"%sx-request-id: %s\r\n"
                b'ratelimit-policy: "%s";q=%d;w=%d\r\nratelimit: "%s";r=%d;t=%d\r\n\r\n%s'
            ) % (fields, request_id, policy, limit, window, policy, remaining, reset, body)
    limits = header_lines(limit_fields(decisions))
    return b"%sx-request-id: %s\r\n%s\r\n%s" % (fields, request_id, limits, body)


def header_lines(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Header fields as HTTP/1.1 lines, as uvicorn writes them."""
    return b"".join(b"%s: %s\r\n" % field for field in fields)


async def read_body(
    scope: Scope, receive: Receive, max_body_bytes: int
) -> tuple[str | None, list[str]]:
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
        if size > max_body_bytes:
            raise BadRequest(413, "CONTENT_TOO_LARGE", "the request body is too large")
        chunks.append(chunk)
        more = message.get("more_body", False)
    raw = b"".join(chunks)
    header_key = key_from_headers(scope["headers"])
    if not raw.strip():
        return header_key, []
    content_type = dict(scope["headers"]).get(b"content-type", b"")
    media_type = content_type.split(b";", 1)[0].strip().lower()
    if media_type != JSON and not media_type.endswith(b"+json"):
        raise BadRequest(415, "UNSUPPORTED_MEDIA_TYPE", "the body must be application/json")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(400, "MALFORMED_JSON", "the request body is not valid JSON") from None
    return parse_body(data, header_key)
