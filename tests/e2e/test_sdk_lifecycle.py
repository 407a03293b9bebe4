"""The SDK's lifecycle calls (get, update, rotate, revoke, audit, policy, pages, idempotency)
against a real server process; tests/unit keeps the fake only for injected faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import keyrack
from tests.e2e.conftest import ISSUED_SECRETS, OrgAdmin
from tests.e2e.server import Server


@pytest.fixture
def sdk(server: Server, admin: OrgAdmin) -> Iterator[keyrack.Client]:
    with keyrack.Client(server.url, api_key=admin.key, timeout=10) as client:
        yield client


def created(
    client: keyrack.Client, org_id: str, name: str, **fields: object
) -> keyrack.CreatedApiKey:
    key = client.create_key(org_id, name=name, permissions=["read"], **fields)  # type: ignore[arg-type]
    ISSUED_SECRETS.append(key.key)
    return key


def answer_of(server: Server, org_id: str, secret: str) -> tuple[int, str]:
    """How the server treats a read-only `secret` on a management call of its org: 403 once it
    is authenticated, 401 with the reason when it is not (SDK verify stays on the fake for now)."""
    with server.client(secret) as client:
        response = client.get(f"/orgs/{org_id}/api_keys")
    return response.status_code, response.json()["code"]


AUTHENTICATED = (403, "INSUFFICIENT_PERMISSIONS")


def test_get_and_update_round_trip(sdk: keyrack.Client, admin: OrgAdmin) -> None:
    key = created(sdk, admin.org_id, "worker")
    fetched = sdk.get_key(admin.org_id, key.id)
    assert fetched == keyrack.ApiKey.model_validate(key.model_dump(exclude={"key"}))
    assert not isinstance(fetched, keyrack.CreatedApiKey)

    expiry = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    updated = sdk.update_key(
        admin.org_id,
        key.id,
        name="worker v2",
        permissions=["read", "write"],
        expires_at=expiry,
        rate_limit=keyrack.RateLimit(limit=10, window_seconds=60),
        quota={"limit": 500, "period": "month"},
    )
    assert (updated.name, updated.permissions, updated.expires_at) == (
        "worker v2",
        ["read", "write"],
        expiry,
    )
    assert updated.rate_limit == keyrack.RateLimit(limit=10, window_seconds=60)
    assert updated.quota == keyrack.Quota(limit=500, period="month")
    assert sdk.get_key(admin.org_id, key.id) == updated

    cleared = sdk.update_key(admin.org_id, key.id, expires_at=None, rate_limit=None, quota=None)
    assert (cleared.expires_at, cleared.rate_limit, cleared.quota) == (None, None, None)
    assert cleared.name == "worker v2"  # fields left out stay as they were

    with pytest.raises(keyrack.NotFound) as missing:
        sdk.get_key(admin.org_id, "key-doesnotexist")
    assert missing.value.code == "KEY_NOT_FOUND"


def test_disabling_refuses_the_key_until_enabled_again(
    server: Server, sdk: keyrack.Client, admin: OrgAdmin
) -> None:
    key = created(sdk, admin.org_id, "toggle")
    assert answer_of(server, admin.org_id, key.key) == AUTHENTICATED
    assert sdk.update_key(admin.org_id, key.id, enabled=False).enabled is False
    assert answer_of(server, admin.org_id, key.key) == (401, "DISABLED")
    assert sdk.update_key(admin.org_id, key.id, enabled=True).enabled is True
    assert answer_of(server, admin.org_id, key.key) == AUTHENTICATED


def test_rotate_with_and_without_grace(
    server: Server, sdk: keyrack.Client, admin: OrgAdmin
) -> None:
    key = created(sdk, admin.org_id, "rotating")
    graced = sdk.rotate_key(admin.org_id, key.id, grace_period_seconds=3600)
    ISSUED_SECRETS.append(graced.key)
    assert graced.id == key.id and graced.key != key.key and graced.key.startswith(graced.start)
    # the old secret works during the grace period
    assert answer_of(server, admin.org_id, key.key) == AUTHENTICATED
    assert answer_of(server, admin.org_id, graced.key) == AUTHENTICATED

    again = sdk.rotate_key(admin.org_id, key.id)  # no grace: the previous secret stops now
    ISSUED_SECRETS.append(again.key)
    assert answer_of(server, admin.org_id, graced.key) == (401, "NOT_FOUND")
    assert answer_of(server, admin.org_id, again.key) == AUTHENTICATED
    assert sdk.get_key(admin.org_id, key.id).start == again.start


def test_revoke_listed_keys_and_all_but_the_caller(
    server: Server, sdk: keyrack.Client, admin: OrgAdmin
) -> None:
    first, second, third = (created(sdk, admin.org_id, f"bulk {n}") for n in range(3))
    result = sdk.revoke_keys(admin.org_id, key_ids=[first.id, second.id])
    assert sorted(result.revoked) == sorted([first.id, second.id])
    assert answer_of(server, admin.org_id, first.key) == (401, "NOT_FOUND")

    rest = sdk.revoke_keys(admin.org_id, all_except_caller=True)
    assert rest.revoked == [third.id]
    assert [key.name for key in sdk.list_keys(admin.org_id)] == ["admin"]

    with pytest.raises(keyrack.BadRequest):
        sdk.revoke_keys(admin.org_id, key_ids=[])


def test_audit_events_filter_and_page(sdk: keyrack.Client, admin: OrgAdmin) -> None:
    key = created(sdk, admin.org_id, "audited")
    sdk.update_key(admin.org_id, key.id, name="audited v2")
    ISSUED_SECRETS.append(sdk.rotate_key(admin.org_id, key.id).key)
    every = list(sdk.list_audit_events(admin.org_id, page_size=1))  # one event a page
    events = [event for event in every if event.target == key.id]
    assert [event.action for event in events] == ["key.rotate", "key.update", "key.create"]
    assert len({event.id for event in every}) == len(every)
    admin_id = next(k.id for k in sdk.list_keys(admin.org_id) if k.name == "admin")
    assert {event.actor_key_id for event in events} == {admin_id}
    for event in events:  # never a secret in the log
        assert key.key not in event.model_dump_json()

    rotations = list(sdk.list_audit_events(admin.org_id, action="key.rotate"))
    assert [event.target for event in rotations] == [key.id]
    future = datetime.now(UTC) + timedelta(days=1)
    assert list(sdk.list_audit_events(admin.org_id, since=future)) == []
    past = datetime.now(UTC) - timedelta(days=1)
    assert list(sdk.list_audit_events(admin.org_id, until=past)) == []


def test_policy_get_set_and_enforced(sdk: keyrack.Client, admin: OrgAdmin) -> None:
    assert sdk.get_policy(admin.org_id) == keyrack.Policy()
    policy = keyrack.Policy(
        max_key_lifetime_seconds=86_400,
        require_expiry=True,
        allowed_permissions=["read", "write"],
        max_active_keys=50,
        default_rate_limit=keyrack.RateLimit(limit=5, window_seconds=1),
        default_quota=keyrack.Quota(limit=100, period="day"),
    )
    assert sdk.set_policy(admin.org_id, policy) == policy
    assert sdk.get_policy(admin.org_id) == policy

    with pytest.raises(keyrack.BadRequest) as refused:
        created(sdk, admin.org_id, "forever")
    assert refused.value.code == "POLICY_VIOLATION"
    expiring = created(
        sdk, admin.org_id, "short", expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    assert expiring.rate_limit == policy.default_rate_limit
    assert expiring.quota == policy.default_quota
    sdk.set_policy(admin.org_id, keyrack.Policy())
    assert sdk.get_policy(admin.org_id) == keyrack.Policy()


def test_list_keys_follows_real_pages(sdk: keyrack.Client, admin: OrgAdmin) -> None:
    made = [created(sdk, admin.org_id, f"page {n}").id for n in range(7)]
    listed = [key.id for key in sdk.list_keys(admin.org_id, page_size=3)]
    assert len(listed) == len(set(listed)) == 8  # the admin key and seven more, each once
    assert set(made) <= set(listed)


def test_idempotent_create_and_rotate_replay_the_first_answer(
    sdk: keyrack.Client, admin: OrgAdmin
) -> None:
    token = str(uuid.uuid4())
    first = created(sdk, admin.org_id, "once", idempotency_key=token)
    replay = sdk.create_key(admin.org_id, name="once", permissions=["read"], idempotency_key=token)
    assert replay == first and replay.key == first.key
    assert [key.name for key in sdk.list_keys(admin.org_id)].count("once") == 1
    with pytest.raises(keyrack.ApiError) as reused:
        sdk.create_key(admin.org_id, name="other", permissions=["read"], idempotency_key=token)
    assert (reused.value.status, reused.value.code) == (422, "IDEMPOTENCY_KEY_REUSED")

    rotation = str(uuid.uuid4())
    rotated = sdk.rotate_key(admin.org_id, first.id, idempotency_key=rotation)
    ISSUED_SECRETS.append(rotated.key)
    assert sdk.rotate_key(admin.org_id, first.id, idempotency_key=rotation).key == rotated.key
    assert sdk.get_key(admin.org_id, first.id).start == rotated.start


def test_async_client_lifecycle_against_the_server(server: Server, admin: OrgAdmin) -> None:
    async def scenario() -> None:
        async with keyrack.AsyncClient(server.url, api_key=admin.key, timeout=10) as client:
            first = await client.create_key(admin.org_id, name="async", permissions=["read"])
            ISSUED_SECRETS.append(first.key)
            token = str(uuid.uuid4())
            rotated = await client.rotate_key(
                admin.org_id, first.id, grace_period_seconds=60, idempotency_key=token
            )
            ISSUED_SECRETS.append(rotated.key)
            replayed = await client.rotate_key(
                admin.org_id, first.id, grace_period_seconds=60, idempotency_key=token
            )
            assert replayed.key == rotated.key != first.key
            renamed = await client.update_key(admin.org_id, first.id, name="async v2")
            assert (await client.get_key(admin.org_id, first.id)) == renamed
            names = [key.name async for key in client.list_keys(admin.org_id, page_size=1)]
            assert sorted(names) == ["admin", "async v2"]
            actions = [
                event.action
                async for event in client.list_audit_events(admin.org_id, page_size=2)
                if event.target == first.id
            ]
            assert actions == ["key.update", "key.rotate", "key.create"]
            policy = keyrack.Policy(max_active_keys=10)
            assert await client.set_policy(admin.org_id, policy) == policy
            assert await client.get_policy(admin.org_id) == policy
            revoked = await client.revoke_keys(admin.org_id, key_ids=[first.id])
            assert revoked.revoked == [first.id]
            with pytest.raises(keyrack.NotFound):
                await client.get_key(admin.org_id, first.id)

    asyncio.run(scenario())
