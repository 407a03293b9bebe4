"""Usage limits across instances: two real `keyrack serve` processes sharing one Redis and one
database, hit by bursts of parallel requests through both."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keyrack.service import keys as key_service
from tests.conftest import TEST_PEPPER
from tests.e2e.conftest import ISSUED_SECRETS, new_org_admin, server_runtime
from tests.e2e.server import Server, start_server
from tests.random_refs import random_org_id

Pair = tuple[Server, Server]


@pytest.fixture(scope="module")
def pair(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("pair")
    env = {
        "KEYRACK_DATABASE_URL": f"sqlite:///{Path(tmp, 'shared.db')}",
        "KEYRACK_PEPPER": TEST_PEPPER,
        "KEYRACK_REDIS_URL": redis_url,
        "KEYRACK_TRUSTED_PROXIES": "127.0.0.1/32",  # so X-Forwarded-For can play other clients
    }
    first = start_server(tmp, env=env, name="first", args=("--no-bootstrap",))
    try:
        second = start_server(tmp, env=env, name="second", args=("--no-bootstrap",))
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def new_key(server: Server, **limits: object) -> str:
    runtime = server_runtime(server)
    org_id = random_org_id()
    key_service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    created = key_service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id=org_id,
        name="limited",
        permissions=["read"],
        **limits,
    )
    ISSUED_SECRETS.append(created.secret)
    return created.secret


def random_address() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


async def burst(pair: Pair, requests: list[dict[str, str]]) -> list[httpx.Response]:
    """Every request at once, alternating between the two servers."""
    limits = httpx.Limits(max_connections=16)
    async with (
        httpx.AsyncClient(base_url=pair[0].url, limits=limits, timeout=20) as first,
        httpx.AsyncClient(base_url=pair[1].url, limits=limits, timeout=20) as second,
    ):
        clients = (first, second)
        return await asyncio.gather(
            *(clients[n % 2].get("/verify", headers=h) for n, h in enumerate(requests))
        )


def statuses(answers: list[httpx.Response]) -> Counter[int]:
    return Counter(answer.status_code for answer in answers)


def test_rate_limit_holds_exactly_across_two_instances(pair: Pair) -> None:
    secret = new_key(pair[0], rate_limit={"limit": 25, "window_seconds": 60}, quota=None)
    answers = asyncio.run(burst(pair, [{"X-API-Key": secret}] * 80))
    assert statuses(answers) == {200: 25, 429: 55}
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-policy"] == '"rate";q=25;w=60'


def test_quota_holds_exactly_across_two_instances(pair: Pair) -> None:
    secret = new_key(pair[0], quota={"limit": 20, "period": "day"}, rate_limit=None)
    answers = asyncio.run(burst(pair, [{"X-API-Key": secret}] * 60))
    assert statuses(answers) == {200: 20, 429: 40}
    assert {a.json()["code"] for a in answers if a.status_code == 429} == {"USAGE_EXCEEDED"}
    remaining = sorted(
        int(a.headers["ratelimit"].split(";r=")[1].split(";")[0])
        for a in answers
        if a.status_code == 200
    )
    assert remaining == list(range(20))  # every success reports what is left, each once


def test_brute_force_blocks_the_address_on_both_instances_only(pair: Pair) -> None:
    secret = new_key(pair[0])  # no limits of its own
    attacker, bystander = random_address(), random_address()
    runtime = server_runtime(pair[0])
    guesses = [
        {"X-API-Key": runtime.key_format.generate(), "X-Forwarded-For": attacker}
        for _ in range(100)
    ]
    assert statuses(asyncio.run(burst(pair, guesses))) == {401: 100}
    after = asyncio.run(
        burst(
            pair,
            [
                {"X-API-Key": secret, "X-Forwarded-For": attacker},  # the right key, both servers
                {"X-API-Key": secret, "X-Forwarded-For": attacker},
                {"X-API-Key": secret, "X-Forwarded-For": bystander},  # another client
                {"X-API-Key": secret, "X-Forwarded-For": bystander},
                {"X-API-Key": secret},  # the proxy itself
            ],
        )
    )
    assert [a.status_code for a in after] == [429, 429, 200, 200, 200]
    assert after[0].json()["code"] == "RATE_LIMITED"
    assert after[0].headers["ratelimit-policy"] == '"auth-failures";q=100;w=60'
    assert 1 <= int(after[0].headers["retry-after"]) <= 60


def test_silent_redis_fails_closed_fast_with_one_log_line(tmp_path: Path) -> None:
    """A Redis that accepts connections and never answers: limited keys get 503 with
    Retry-After within the timeout, keys without limits are unaffected, one warning is logged
    for the burst and every request decided without Redis is counted."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        server = start_server(
            tmp_path,
            env={
                "KEYRACK_PEPPER": TEST_PEPPER,
                "KEYRACK_REDIS_URL": f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
                "KEYRACK_LIMITS_FAILURE_MODE": "closed",
                "KEYRACK_REDIS_TIMEOUT_SECONDS": "0.2",
            },
        )
        try:
            admin = new_org_admin(server)
            limited = admin.client.post(
                f"/orgs/{admin.org_id}/api_keys",
                json={
                    "name": "l",
                    "permissions": ["read", "admin"],
                    "quota": {"limit": 9, "period": "day"},
                },
            ).json()
            ISSUED_SECRETS.append(limited["key"])
            started = time.monotonic()
            with server.client(limited["key"]) as client:
                answers = [client.get("/verify") for _ in range(5)]
                answers.append(client.get(f"/orgs/{admin.org_id}/api_keys"))
                plain = client.get("/verify", headers={"Authorization": f"Bearer {admin.key}"})
                scraped = client.get("/metrics").text
            assert time.monotonic() - started < 5
            assert [a.status_code for a in answers] == [503] * 6
            assert {a.headers["retry-after"] for a in answers} == {"1"}
            assert {a.json()["code"] for a in answers} == {"SERVICE_UNAVAILABLE"}
            assert plain.status_code == 200
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in scraped.splitlines()
                if line.startswith("keyrack_limit_store_failures_total{")
            )
            assert counted >= 6
            assert server.log().count("usage limits: Redis unreachable") == 1
        finally:
            server.stop()
