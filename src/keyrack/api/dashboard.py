"""The web dashboard: static files from keyrack/web served at /ui/ with strict browser headers."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from keyrack.api.asgi import ASGIApp, Message, Receive, Scope, Send

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

# The dashboard holds an admin key in sessionStorage: script may come only from this server,
# and no page of another origin may frame it.
SECURITY_HEADERS = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-cache"),
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount_dashboard(app: FastAPI) -> None:
    static = StaticFiles(directory=WEB_DIR, html=True)
    app.mount("/ui", SecurityHeaders(static), name="dashboard")
