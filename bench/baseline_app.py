"""The floor for benchmark ratios: a trivial raw-ASGI app answering a small JSON body."""

from __future__ import annotations

from typing import Any

BODY = b'{"valid":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"14")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
