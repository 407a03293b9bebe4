"""SDK calls against the documented shapes: requests sent, pagination, models, error mapping."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import httpx
import pytest

import keyrack
from tests.unit.fake_keyrack import FakeKeyrack, problem


def client_for(fake: FakeKeyrack) -> keyrack.Client:
    return keyrack.Client("http://keyrack.test", api_key=fake.admin_key, transport=fake.transport())


def sent_json(request: httpx.Request) -> object:
    return json.loads(request.content)


def test_list_keys_follows_every_next_link() -> None:
    fake = FakeKeyrack()
    made = [fake.add_key(f"k{i}", ["read"])[0] for i in range(7)]
    with client_for(fake) as client:
        listed = [key.id for key in client.list_keys("acme", page_size=3)]
    assert listed == made
    urls = [str(request.url) for request in fake.requests]
    assert urls[0] == "http://keyrack.test/orgs/acme/api_keys?limit=3"
    assert urls[1:] == [
        "http://keyrack.test/orgs/acme/api_keys?limit=3&cursor=3",
        "http://keyrack.test/orgs/acme/api_keys?limit=3&cursor=6",
    ]


def test_pages_are_fetched_lazily() -> None:
    fake = FakeKeyrack()
    for i in range(5):
        fake.add_key(f"k{i}", ["read"])
    with client_for(fake) as client:
        first = next(iter(client.list_keys("acme", page_size=2)))
    assert first.name == "k0" and len(fake.requests) == 1


def test_a_next_link_to_the_same_page_is_refused_instead_of_looping() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[], headers={"Link": f'<{request.url}>; rel="next"'})

    client = keyrack.Client("http://t", api_key="k", transport=httpx.MockTransport(handler))
    with pytest.raises(keyrack.InvalidResponse):
        list(client.list_keys("acme"))


def test_key_lifecycle_requests_and_models() -> None:
    fake = FakeKeyrack()
    expiry = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with client_for(fake) as client:
        created = client.create_key(
            "acme",
            name="ci",
            permissions=["read", "write"],
            expires_at=expiry,
            rate_limit=keyrack.RateLimit(limit=100, window_seconds=60),
            quota={"limit": 1000, "period": "day"},
        )
        assert sent_json(fake.requests[-1]) == {
            "name": "ci",
            "permissions": ["read", "write"],
            "expires_at": "2030-01-02T03:04:05Z",
            "rate_limit": {"limit": 100, "window_seconds": 60},
            "quota": {"limit": 1000, "period": "day"},
        }
        assert created.expires_at == expiry and created.quota == keyrack.Quota(
            limit=1000, period="day"
        )
        assert created.key not in repr(created)  # a logged model never leaks the secret

        assert client.get_key("acme", created.id) == keyrack.ApiKey.model_validate(
            created.model_dump(exclude={"key"})
        )
        updated = client.update_key("acme", created.id, enabled=False, expires_at=None, quota=None)
        assert sent_json(fake.requests[-1]) == {"enabled": False, "expires_at": None, "quota": None}
        assert (updated.enabled, updated.expires_at, updated.quota) == (False, None, None)
        with pytest.raises(ValueError, match="at least one field"):
            client.update_key("acme", created.id)

        rotated = client.rotate_key("acme", created.id, grace_period_seconds=300)
        assert sent_json(fake.requests[-1]) == {"grace_period_seconds": 300}
        assert rotated.id == created.id and rotated.key != created.key

        assert client.delete_key("acme", created.id) is None
        assert fake.requests[-1].method == "DELETE"
        with pytest.raises(keyrack.NotFound) as caught:
            client.get_key("acme", created.id)
        assert (caught.value.status, caught.value.code) == (404, "KEY_NOT_FOUND")


def test_ids_cannot_change_the_route() -> None:
    fake = FakeKeyrack()
    with client_for(fake) as client, pytest.raises(keyrack.NotFound):
        client.get_key("acme", "../../policy")
    assert fake.requests[-1].url.raw_path == b"/orgs/acme/api_keys/..%2F..%2Fpolicy"


def test_revoke_audit_and_policy() -> None:
    fake = FakeKeyrack()
    first, _ = fake.add_key("caller", ["admin"])
    others = [fake.add_key(f"k{i}", ["read"])[0] for i in range(3)]
    with client_for(fake) as client:
        assert client.revoke_keys("acme", key_ids=[others[0]]).revoked == [others[0]]
        assert sent_json(fake.requests[-1]) == {"key_ids": [others[0]]}
        assert client.revoke_keys("acme", all_except_caller=True).revoked == others[1:]
        assert sent_json(fake.requests[-1]) == {"all_except_caller": True}
        with pytest.raises(ValueError, match="either"):
            client.revoke_keys("acme")

        since = datetime(2023, 11, 1, tzinfo=UTC)
        events = list(
            client.list_audit_events("acme", action="key.create", since=since, page_size=2)
        )
        assert [event.target for event in events] == [first, *others]
        audit_requests = [r for r in fake.requests if r.url.path.endswith("/audit_events")]
        assert len(audit_requests) == 2
        assert audit_requests[0].url.params.multi_items() == [
            ("action", "key.create"),
            ("since", "2023-11-01T00:00:00Z"),
            ("limit", "2"),
        ]
        assert events[0].details == {"name": "caller"}
        assert events[0].id == 1  # the server numbers its events

        policy = client.get_policy("acme")
        assert policy.require_expiry is False and policy.max_active_keys is None
        changed = policy.model_copy(
            update={
                "max_active_keys": 5,
                "default_rate_limit": keyrack.RateLimit(limit=10, window_seconds=1),
            }
        )
        assert client.set_policy("acme", changed) == changed
        assert fake.requests[-1].method == "PUT"
        assert sent_json(fake.requests[-1])["default_rate_limit"] == {
            "limit": 10,
            "window_seconds": 1,
        }  # type: ignore[index]


def test_verify_answers_with_a_verdict_for_every_refusal() -> None:
    fake = FakeKeyrack()
    key_id, secret = fake.add_key("svc", ["read"])
    with client_for(fake) as client:
        valid = client.verify(secret, permissions=["read"])
        assert (valid.valid, valid.code, valid.key_id, valid.org_id) == (
            True,
            "VALID",
            key_id,
            "acme",
        )
        request = fake.requests[-1]
        assert sent_json(request) == {"key": secret, "permissions": ["read"]}
        assert "authorization" not in request.headers  # the admin key is not mixed in
        assert secret not in str(request.url)

        denied = client.verify(secret, permissions=["admin"])
        assert (denied.valid, denied.code, denied.status) == (
            False,
            "INSUFFICIENT_PERMISSIONS",
            403,
        )
        unknown = client.verify("kr_nope")
        assert (unknown.valid, unknown.code, unknown.status) == (False, "NOT_FOUND", 401)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, keyrack.BadRequest),
        (401, keyrack.Unauthorized),
        (403, keyrack.Forbidden),
        (404, keyrack.NotFound),
        (409, keyrack.Conflict),
        (413, keyrack.BadRequest),
        (422, keyrack.BadRequest),
        (429, keyrack.RateLimited),
        (500, keyrack.ServerError),
        (503, keyrack.ServerError),
    ],
)
def test_problems_map_to_typed_errors(status: int, error_type: type[keyrack.ApiError]) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return problem(status, f"CODE_{status}", f"detail {status}", **{"Retry-After": "999"})

    transport = httpx.MockTransport(handler)
    client = keyrack.Client("http://t", api_key="k", transport=transport, sleep=pytest.fail)
    with pytest.raises(error_type) as caught:
        client.get_policy("acme")
    error = caught.value
    assert isinstance(error, keyrack.KeyrackClientError)
    assert (error.status, error.code, error.detail) == (
        status,
        f"CODE_{status}",
        f"detail {status}",
    )
    assert "detail" in str(error) and type(error) is error_type


def test_a_proxy_page_without_problem_json_still_maps() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    client = keyrack.Client(
        "http://t", api_key="k", transport=httpx.MockTransport(handler), max_retries=0
    )
    with pytest.raises(keyrack.ServerError) as caught:
        client.get_key("acme", "key-x")
    assert (caught.value.code, caught.value.detail) == ("HTTP_502", "Bad Gateway")


def test_an_undocumented_answer_is_an_invalid_response() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"unexpected": True})

    client = keyrack.Client("http://t", api_key="k", transport=httpx.MockTransport(handler))
    with pytest.raises(keyrack.InvalidResponse):
        client.get_key("acme", "key-x")


def test_async_client_covers_the_same_calls() -> None:
    fake = FakeKeyrack()
    for i in range(5):
        fake.add_key(f"k{i}", ["read"])

    async def scenario() -> tuple[list[str], keyrack.VerifyResult, keyrack.Policy]:
        async with keyrack.AsyncClient(
            "http://keyrack.test",
            api_key=fake.admin_key,
            transport=httpx.MockTransport(fake.handle),
        ) as client:
            created = await client.create_key("acme", name="new", permissions=["read"])
            names = [key.name async for key in client.list_keys("acme", page_size=2)]
            await client.update_key("acme", created.id, name="renamed")
            await client.rotate_key("acme", created.id)
            verdict = await client.verify(fake.secrets_by_key_id[created.id])
            events = [event async for event in client.list_audit_events("acme")]
            assert len(events) == 6
            await client.delete_key("acme", created.id)
            with pytest.raises(keyrack.NotFound):
                await client.get_key("acme", created.id)
            return names, verdict, await client.get_policy("acme")

    names, verdict, policy = asyncio.run(scenario())
    assert names == ["k0", "k1", "k2", "k3", "k4", "new"]
    assert verdict.valid and verdict.name == "renamed"
    assert policy.allowed_permissions == ["read", "write", "admin"]


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://host", "http://", "http://host:port"])
def test_an_unusable_server_url_is_refused_at_once(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        keyrack.Client(url)
