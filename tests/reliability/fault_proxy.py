"""A loopback TCP proxy the tests put between keyrack and a dependency, to cut and restore it.

Hand-written (about 100 lines of asyncio) because the faults we need, refusing like a stopped
server, or swallowing traffic like a dead network, on a port that stays the same across restores,
are not what the usual proxy packages offer without an extra daemon (toxiproxy is a Go binary).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Literal, Self

Mode = Literal["open", "refuse", "blackhole", "silence"]
Fault = Literal["refuse", "blackhole", "silence"]
_CHUNK = 65536


class FaultProxy:
    """Forwards 127.0.0.1:<port> to an upstream; `cut()` and `restore()` switch it.

    - "refuse": open connections are reset and the port refuses new ones, like a stopped server.
    - "blackhole": connections are accepted but nothing passes either way, like a lost network.
    - "silence": like blackhole, but open connections are not reset first: they stay up and
      go quiet, like a peer behind a dead NAT or firewall that sends no reset.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.mode: Mode = "open"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(self, *_exc: object) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def cut(self, mode: Fault = "refuse") -> None:
        self._call(self._cut(mode))

    def restore(self) -> None:
        self._call(self._restore())

    def _call(self, coroutine: object) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]
        future.result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self, mode: Mode) -> None:
        self.mode = mode
        if mode != "silence":
            self._reset_all()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            self._server = None

    async def _restore(self) -> None:
        self._reset_all()  # blackholed connections lost bytes: they cannot be resumed
        self.mode = "open"
        if self._server is None:
            await self._listen()

    async def _shutdown(self) -> None:
        self._reset_all()
        if self._server is not None:
            self._server.close()
            self._server = None

    def _reset_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.mode != "open":
            await self._swallow(reader)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(upstream_writer)
        await asyncio.gather(
            self._pipe(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )
        for side in (writer, upstream_writer):
            side.transport.abort()
            self._writers.discard(side)

    async def _pipe(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        while data := await source.read(_CHUNK):
            if self.mode != "open":
                continue
            target.write(data)
            await target.drain()
        target.transport.abort()

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(_CHUNK):
                pass
        except OSError:
            return
