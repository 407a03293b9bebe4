"""The hand-written Redis pipeline of the limit store: order, script reload, deadlines, URLs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import hiredis
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from keyrack.store.redis_pipeline import ScriptPipeline, supports

ECHO_FIRST_ARG = "return ARGV[1]"

pytestmark = pytest.mark.redis


def test_supports_plain_urls_only() -> None:
    assert supports("redis://127.0.0.1:6379/3")
    assert supports("redis://user:secret@127.0.0.1:6379/0")
    assert supports("unix:///run/redis.sock?db=2")
    assert not supports("rediss://127.0.0.1:6379/0")  # TLS stays with redis-py


def calls(pipeline: ScriptPipeline, count: int) -> list[asyncio.Future[Any]]:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(count)]
    for n, future in enumerate(futures):
        pipeline.call([f"call-{n}"], future.set_result)
    return futures


def test_calls_in_flight_are_answered_in_order(redis_url: str) -> None:
    async def scenario() -> list[Any]:
        pipeline = await ScriptPipeline.open(redis_url, ECHO_FIRST_ARG, timeout=2)
        try:
            return list(await asyncio.gather(*calls(pipeline, 200)))
        finally:
            pipeline.close()

    assert asyncio.run(scenario()) == [f"call-{n}".encode() for n in range(200)]


@asynccontextmanager
async def fake_redis(answer: Callable[[list[bytes]], bytes | None]) -> AsyncIterator[str]:
    """A loopback server speaking RESP; `answer` maps a command to its reply (None: silence)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                reply = answer(command)
                if reply is not None:
                    writer.write(reply)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.close()


def test_a_flushed_script_is_sent_again() -> None:
    def answer(command: list[bytes]) -> bytes:
        if command[0] == b"EVALSHA":
            return b"-NOSCRIPT No matching script\r\n"
        if command[0] == b"EVAL":
            return b":7\r\n"
        return b"+OK\r\n"

    async def scenario() -> list[Any]:
        async with fake_redis(answer) as url:
            pipeline = await ScriptPipeline.open(url, ECHO_FIRST_ARG, timeout=2)
            try:
                return list(await asyncio.gather(*calls(pipeline, 3)))
            finally:
                pipeline.close()

    assert asyncio.run(scenario()) == [7, 7, 7]


def test_a_silent_redis_fails_every_call_in_flight_at_the_deadline() -> None:
    def answer(command: list[bytes]) -> bytes | None:
        return None if command[0] == b"EVALSHA" else b"+OK\r\n"

    async def scenario() -> tuple[list[Any], float, bool]:
        async with fake_redis(answer) as url:
            pipeline = await ScriptPipeline.open(url, ECHO_FIRST_ARG, timeout=0.2)
            loop = asyncio.get_running_loop()
            started = loop.time()
            replies = await asyncio.wait_for(asyncio.gather(*calls(pipeline, 5)), 5)
            return list(replies), loop.time() - started, pipeline.connected

    replies, waited, connected = asyncio.run(scenario())
    assert all(isinstance(reply, TimeoutError) for reply in replies)
    assert 0.15 < waited < 2
    assert not connected  # its state is unknown: the owner connects anew


def test_a_refused_connection_raises_and_a_closed_pipeline_answers_with_an_error() -> None:
    async def scenario() -> Any:
        async with fake_redis(lambda _command: b"+OK\r\n") as url:
            pipeline = await ScriptPipeline.open(url, ECHO_FIRST_ARG, timeout=1)
        pipeline.close()
        (reply,) = await asyncio.gather(*calls(pipeline, 1))
        return reply

    assert isinstance(asyncio.run(scenario()), RedisConnectionError)
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(ScriptPipeline.open("redis://127.0.0.1:1/0", ECHO_FIRST_ARG, timeout=1))
