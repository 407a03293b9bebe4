"""The event loop an async store is used from, looked up once rather than on every request."""

from __future__ import annotations

import asyncio


class RunningLoop:
    """`asyncio.get_running_loop()`, remembered: each call of it makes a getpid() system call
    (to notice a fork), which the limit stores would otherwise pay once per request. A closed
    loop (a test's `asyncio.run` that ended) is replaced by the running one."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop
