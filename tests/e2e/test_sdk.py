"""The SDK against a real server process, for every endpoint and error this branch serves."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest

import keyrack
from tests.e2e.conftest import ISSUED_SECRETS, OrgAdmin, new_org_admin
from tests.e2e.server import Server, free_port


@pytest.fixture
def sdk(server: Server, admin: OrgAdmin) -> Iterator[keyrack.Client]:
    with keyrack.Client(server.url, api_key=admin.key, timeout=10) as client:
        yield client


def test_create_list_delete_round_trip(sdk: keyrack.Client, admin: OrgAdmin) -> None:
    created = sdk.create_key(admin.org_id, name="sdk key", permissions=["read", "write"])
    ISSUED_SECRETS.append(created.key)
    assert created.key.startswith(created.start) and created.name == "sdk key"
    assert created.permissions == ["read", "write"] and created.created_at.tzinfo is not None

    listed = {key.id: key for key in sdk.list_keys(admin.org_id)}
    assert listed[created.id].start == created.start
    assert not isinstance(listed[created.id], keyrack.CreatedApiKey)  # never the secret

    assert sdk.delete_key(admin.org_id, created.id) is None
    assert created.id not in {key.id for key in sdk.list_keys(admin.org_id)}
    with pytest.raises(keyrack.NotFound) as caught:
        sdk.delete_key(admin.org_id, created.id)
    assert (caught.value.status, caught.value.code) == (404, "KEY_NOT_FOUND")


def test_every_error_status_is_a_typed_exception(
    server: Server, sdk: keyrack.Client, admin: OrgAdmin
) -> None:
    with pytest.raises(keyrack.BadRequest) as bad:
        sdk.create_key(admin.org_id, name=" ", permissions=["read"])
    assert (bad.value.status, bad.value.code) == (400, "INVALID_INPUT")
    assert bad.value.errors and bad.value.errors[0]["field"] == "name"

    with pytest.raises(keyrack.BadRequest) as too_large:
        sdk.create_key(admin.org_id, name="x" * 70_000, permissions=["read"])
    assert (too_large.value.status, too_large.value.code) == (413, "CONTENT_TOO_LARGE")

    stranger = keyrack.Client(server.url, api_key="kr_" + "A" * 38)
    with stranger, pytest.raises(keyrack.Unauthorized) as unauthorized:
        list(stranger.list_keys(admin.org_id))
    assert unauthorized.value.status == 401
    assert "WWW-Authenticate" in unauthorized.value.headers

    reader = new_org_admin(server, permissions=("read",))
    read_only = keyrack.Client(server.url, api_key=reader.key)
    with read_only, pytest.raises(keyrack.Forbidden) as forbidden:
        read_only.create_key(reader.org_id, name="x", permissions=["read"])
    assert (forbidden.value.status, forbidden.value.code) == (403, "INSUFFICIENT_PERMISSIONS")

    with pytest.raises(keyrack.NotFound) as other_org:
        list(sdk.list_keys(reader.org_id))  # another org looks like no org at all
    assert other_org.value.status == 404

    with pytest.raises(keyrack.BadRequest) as bad_path:
        sdk.delete_key(admin.org_id, "not-a-key-id")
    assert bad_path.value.status == 400


def test_error_messages_never_carry_the_key(server: Server, admin: OrgAdmin) -> None:
    secret = "kr_" + "Z" * 38
    client = keyrack.Client(server.url, api_key=secret)
    with client, pytest.raises(keyrack.Unauthorized) as caught:
        list(client.list_keys(admin.org_id))
    assert secret not in str(caught.value) and secret not in caught.value.detail


def test_connection_refused_is_one_typed_error() -> None:
    slept: list[float] = []
    with (
        keyrack.Client(
            f"http://127.0.0.1:{free_port()}", api_key="kr_x", max_retries=2, sleep=slept.append
        ) as client,
        pytest.raises(keyrack.ConnectionFailed, match="cannot reach"),
    ):
        client.get_policy("acme")
    assert len(slept) == 2


def test_async_client_against_the_server(server: Server, admin: OrgAdmin) -> None:
    async def scenario() -> tuple[set[str], str]:
        async with keyrack.AsyncClient(server.url, api_key=admin.key) as client:
            created = await client.create_key(admin.org_id, name="async", permissions=["read"])
            ISSUED_SECRETS.append(created.key)
            ids = {key.id async for key in client.list_keys(admin.org_id)}
            await client.delete_key(admin.org_id, created.id)
            with pytest.raises(keyrack.NotFound):
                await client.delete_key(admin.org_id, created.id)
            return ids, created.id

    ids, created_id = asyncio.run(scenario())
    assert created_id in ids


def python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_server_does_not_import_the_sdk() -> None:
    assert python("import sys, keyrack.api.app; print('keyrack.client' in sys.modules)") == "False"
    assert python("import keyrack; print(keyrack.Client.__module__)") == "keyrack.client.sync"
