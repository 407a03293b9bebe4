"""SDK retries: what is retried, how long it waits, and one Idempotency-Key per logical call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

import keyrack
from keyrack.client.core import RetryPolicy
from tests.unit.fake_keyrack import FakeKeyrack, problem

Handler = Callable[[httpx.Request], httpx.Response]


def ceiling_jitter(_low: float, high: float) -> float:
    """Deterministic 'jitter': always the ceiling, so delays are exactly the backoff bounds."""
    return high


class Flaky:
    """Answers with `failures` (responses or exceptions to raise) first, then with the fake."""

    def __init__(self, *failures: httpx.Response | Exception) -> None:
        self.failures = list(failures)
        self.fake = FakeKeyrack()
        self.fake.add_key("existing", ["read"])
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        return self.fake.handle(request)

    def client(self, max_retries: int = 3) -> tuple[keyrack.Client, list[float]]:
        slept: list[float] = []
        client = keyrack.Client(
            "http://keyrack.test",
            api_key=self.fake.admin_key,
            transport=httpx.MockTransport(self),
            retry=RetryPolicy(max_retries=max_retries, jitter=ceiling_jitter),
            sleep=slept.append,
        )
        return client, slept


def connect_error() -> httpx.ConnectError:
    return httpx.ConnectError("connection refused")


def test_create_retries_transient_failures_with_one_idempotency_key() -> None:
    flaky = Flaky(
        problem(503, "SERVICE_UNAVAILABLE", "db down", **{"Retry-After": "1"}),
        connect_error(),
        httpx.Response(502),
    )
    client, slept = flaky.client()
    created = client.create_key("acme", name="ci", permissions=["read"])
    assert created.name == "ci" and created.key.startswith("kr_")
    keys = {request.headers["Idempotency-Key"] for request in flaky.requests}
    assert len(flaky.requests) == 4 and len(keys) == 1
    assert slept == [1.0, 1.0, 2.0]  # 503 sent Retry-After: 1 > the 0.5 s first backoff


def test_each_logical_call_gets_its_own_idempotency_key_and_a_given_one_is_kept() -> None:
    flaky = Flaky()
    client, _ = flaky.client()
    client.create_key("acme", name="a", permissions=["read"])
    client.create_key("acme", name="b", permissions=["read"])
    client.create_key("acme", name="c", permissions=["read"], idempotency_key="mine-1")
    sent = [request.headers["Idempotency-Key"] for request in flaky.requests]
    assert len(set(sent)) == 3 and sent[2] == "mine-1"


def test_create_waits_while_its_first_attempt_is_still_in_flight() -> None:
    in_flight = problem(409, "IDEMPOTENCY_IN_FLIGHT", "still running")
    flaky = Flaky(httpx.ReadTimeout("slow"), in_flight, in_flight)
    client, slept = flaky.client()
    assert client.create_key("acme", name="slow", permissions=["read"]).name == "slow"
    assert len({request.headers["Idempotency-Key"] for request in flaky.requests}) == 1
    assert slept == [0.5, 1.0, 2.0]


def test_other_conflicts_are_not_retried() -> None:
    flaky = Flaky(problem(409, "IDEMPOTENCY_IN_FLIGHT", "x"), problem(409, "ORG_EXISTS", "x"))
    client, slept = flaky.client()
    key_id = next(iter(flaky.fake.keys))
    with pytest.raises(keyrack.Conflict):  # no Idempotency-Key: nothing of ours is in flight
        client.revoke_keys("acme", key_ids=[key_id])
    with pytest.raises(keyrack.Conflict) as caught:
        client.create_key("acme", name="x", permissions=["read"])
    assert caught.value.code == "ORG_EXISTS" and slept == []


def test_rotate_reuses_its_idempotency_key_across_attempts() -> None:
    flaky = Flaky(httpx.Response(504), httpx.ReadTimeout("slow"))
    client, _ = flaky.client()
    key_id = next(iter(flaky.fake.keys))
    client.rotate_key("acme", key_id, grace_period_seconds=60)
    assert len({request.headers["Idempotency-Key"] for request in flaky.requests}) == 1
    assert len(flaky.requests) == 3


def test_backoff_grows_exponentially_and_stops_after_max_retries() -> None:
    flaky = Flaky(*[httpx.Response(502) for _ in range(10)])
    client, slept = flaky.client(max_retries=3)
    with pytest.raises(keyrack.ServerError) as caught:
        list(client.list_keys("acme"))
    assert caught.value.status == 502 and caught.value.code == "HTTP_502"
    assert slept == [0.5, 1.0, 2.0] and len(flaky.requests) == 4


def test_jitter_stays_within_the_backoff_ceiling() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=3.0)
    for attempt in range(6):
        ceiling = min(3.0, 0.5 * 2**attempt)
        assert all(0 <= policy.backoff(attempt) <= ceiling for _ in range(50))


def test_429_waits_for_retry_after_even_on_a_non_idempotent_call() -> None:
    flaky = Flaky(problem(429, "RATE_LIMITED", "slow down", **{"Retry-After": "3"}))
    client, slept = flaky.client()
    key_id = next(iter(flaky.fake.keys))
    assert client.revoke_keys("acme", key_ids=[key_id]).revoked == [key_id]
    assert slept == [3.0]


def test_a_retry_after_longer_than_the_cap_is_raised_with_its_value() -> None:
    flaky = Flaky(problem(429, "RATE_LIMITED", "slow down", **{"Retry-After": "3600"}))
    client, slept = flaky.client()
    with pytest.raises(keyrack.RateLimited) as caught:
        client.get_policy("acme")
    assert caught.value.retry_after == 3600 and caught.value.code == "RATE_LIMITED"
    assert slept == []


@pytest.mark.parametrize(
    "failure", [httpx.Response(502), httpx.Response(503), httpx.ReadTimeout("lost")]
)
def test_unclear_outcomes_of_non_idempotent_calls_are_not_replayed(
    failure: httpx.Response | Exception,
) -> None:
    flaky = Flaky(failure)
    client, slept = flaky.client()
    key_id = next(iter(flaky.fake.keys))
    with pytest.raises((keyrack.ServerError, keyrack.ConnectionFailed)):
        client.revoke_keys("acme", key_ids=[key_id])
    with pytest.raises((keyrack.ServerError, keyrack.ConnectionFailed)):
        flaky.failures.append(failure)
        client.update_key("acme", key_id, name="renamed")
    assert len(flaky.requests) == 2 and slept == []
    assert key_id in flaky.fake.keys and flaky.fake.keys[key_id]["name"] == "existing"


def test_a_request_that_never_left_is_replayed_for_any_method() -> None:
    flaky = Flaky(connect_error(), httpx.ConnectTimeout("no answer to SYN"))
    client, slept = flaky.client()
    key_id = next(iter(flaky.fake.keys))
    assert client.update_key("acme", key_id, enabled=False).enabled is False
    assert len(flaky.requests) == 3 and slept == [0.5, 1.0]


def test_connection_refused_ends_as_connection_failed() -> None:
    flaky = Flaky(*[connect_error() for _ in range(5)])
    client, _ = flaky.client(max_retries=2)
    with pytest.raises(keyrack.ConnectionFailed, match="cannot reach the keyrack server"):
        client.get_key("acme", "key-x")
    assert isinstance(keyrack.ConnectionFailed("x"), keyrack.KeyrackClientError)


def test_a_rate_limited_verify_is_a_verdict_not_a_retry() -> None:
    flaky = Flaky()
    client, slept = flaky.client()
    _, secret = flaky.fake.add_key(
        "limited", ["read"], rate_limit={"limit": 0, "window_seconds": 60}
    )
    result = client.verify(secret)
    assert (result.valid, result.code, result.status, result.retry_after) == (
        False,
        "RATE_LIMITED",
        429,
        7.0,
    )
    assert slept == [] and len(flaky.requests) == 1


def test_async_client_follows_the_same_rules() -> None:
    flaky = Flaky(httpx.Response(503), connect_error())
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def scenario() -> keyrack.CreatedApiKey:
        async with keyrack.AsyncClient(
            "http://keyrack.test",
            api_key=flaky.fake.admin_key,
            transport=httpx.MockTransport(flaky),
            retry=RetryPolicy(max_retries=3, jitter=ceiling_jitter),
            sleep=sleep,
        ) as client:
            return await client.create_key("acme", name="async", permissions=["read"])

    assert asyncio.run(scenario()).name == "async"
    assert len({request.headers["Idempotency-Key"] for request in flaky.requests}) == 1
    assert slept == [0.5, 1.0]


def test_a_timeout_after_sending_says_the_server_did_not_answer() -> None:
    flaky = Flaky(httpx.ReadTimeout("timed out"))
    client, slept = flaky.client(max_retries=0)
    with pytest.raises(keyrack.ConnectionFailed, match="did not answer in time"):
        client.get_key("acme", "key-x")
    assert slept == []
