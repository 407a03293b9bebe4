"""`keyrack keys ...` against a server: create, list, get, update, rotate, delete, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from keyrack.cli_remote import render
from keyrack.cli_remote.common import (
    EXIT_INVALID,
    JsonOption,
    KeyOption,
    UrlOption,
    connect,
    fail,
    is_none,
    parse_moment,
    parse_quota,
    parse_rate_limit,
    require_url,
)
from keyrack.client import UNSET
from keyrack.client.operations import Unset


def create(
    *,
    url: str,
    key: str | None,
    org_id: str,
    name: str,
    permissions: list[str],
    expires_at: str | None,
    rate_limit: str | None,
    quota: str | None,
    idempotency_key: str | None,
    as_json: bool,
) -> None:
    with connect(url, key) as client:
        created = client.create_key(
            org_id,
            name=name,
            permissions=permissions,
            expires_at=parse_moment(expires_at, "--expires-at") if expires_at else None,
            rate_limit=parse_rate_limit(rate_limit, "--rate-limit") if rate_limit else None,
            quota=parse_quota(quota, "--quota") if quota else None,
            idempotency_key=idempotency_key,
        )
    render.print_secret(created, verb=f"created in {org_id}:", as_json=as_json)


def list_all(*, url: str, key: str | None, org_id: str, as_json: bool) -> None:
    with connect(url, key) as client:
        # Every page is fetched before printing, so an error never leaves half a table.
        keys = list(client.list_keys(org_id, page_size=1000))
    render.print_keys(keys, as_json=as_json)


def delete(*, url: str, key: str | None, org_id: str, key_id: str) -> None:
    with connect(url, key) as client:
        client.delete_key(org_id, key_id)


def get(
    org_id: str,
    key_id: str,
    url: UrlOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one key (never its secret)."""
    with connect(require_url(url, "keys get"), key) as client:
        found = client.get_key(org_id, key_id)
    render.print_key(found, as_json=as_json)


def update(
    org_id: str,
    key_id: str,
    name: Annotated[str | None, typer.Option(help="New name")] = None,
    permission: Annotated[
        list[str] | None, typer.Option("--permission", help="Replace permissions; repeat")
    ] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Enable or disable the key")
    ] = None,
    expires_at: Annotated[
        str | None, typer.Option(help="RFC 3339 time, a duration from now (30d), or none")
    ] = None,
    rate_limit: Annotated[str | None, typer.Option(help="LIMIT/WINDOW_SECONDS, or none")] = None,
    quota: Annotated[str | None, typer.Option(help="LIMIT/day or LIMIT/month, or none")] = None,
    url: UrlOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a key's name, permissions, state, expiry or limits."""
    with connect(require_url(url, "keys update"), key) as client:
        updated = client.update_key(
            org_id,
            key_id,
            name=UNSET if name is None else name,
            permissions=permission or UNSET,
            enabled=UNSET if enabled is None else enabled,
            expires_at=_expiry(expires_at),
            rate_limit=UNSET
            if rate_limit is None
            else parse_rate_limit(rate_limit, "--rate-limit"),
            quota=UNSET if quota is None else parse_quota(quota, "--quota"),
        )
    render.print_key(updated, as_json=as_json)


def _expiry(value: str | None) -> datetime | Unset | None:
    if value is None:
        return UNSET
    return None if is_none(value) else parse_moment(value, "--expires-at")


def rotate(
    org_id: str,
    key_id: str,
    grace_period: Annotated[
        int,
        typer.Option(
            "--grace-period", min=0, max=604800, help="Seconds the old secret keeps working"
        ),
    ] = 0,
    url: UrlOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give a key a new secret (same id); prints the new secret once."""
    with connect(require_url(url, "keys rotate"), key) as client:
        rotated = client.rotate_key(org_id, key_id, grace_period_seconds=grace_period)
    render.print_secret(rotated, verb="rotated", as_json=as_json)


def revoke(
    org_id: str,
    key_ids: Annotated[list[str] | None, typer.Argument(help="Key ids to revoke")] = None,
    all_except_caller: Annotated[
        bool, typer.Option("--all-except-caller", help="Revoke every key but the one in use")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke keys at once: the given ids, or all but the caller's."""
    server = require_url(url, "keys revoke")
    if bool(key_ids) == all_except_caller:
        fail("give key ids or --all-except-caller (not both)", EXIT_INVALID)
    if all_except_caller and not yes:
        typer.confirm(f"Revoke every key of {org_id} except the one in use?", abort=True)
    with connect(server, key) as client:
        result = client.revoke_keys(
            org_id, key_ids=key_ids or None, all_except_caller=all_except_caller
        )
    if as_json:
        render.print_json(render.dump(result))
    else:
        print(f"revoked {len(result.revoked)} key(s)" + "".join(f"\n{i}" for i in result.revoked))


def register(keys_app: typer.Typer) -> None:
    """Add the server-only key commands next to the local ones."""
    keys_app.command("get")(get)
    keys_app.command("update")(update)
    keys_app.command("rotate")(rotate)
    keys_app.command("revoke")(revoke)
