"""`keyrack audit list`, `keyrack policy get|set` and `keyrack verify` against a server."""

from __future__ import annotations

import itertools
import sys
from typing import Annotated, Any

import typer

from keyrack.cli_remote import render
from keyrack.cli_remote.common import (
    EXIT_AUTH,
    EXIT_INVALID,
    EXIT_RATE_LIMITED,
    JsonOption,
    KeyOption,
    UrlOption,
    connect,
    fail,
    parse_moment,
    parse_optional_int,
    parse_quota,
    parse_rate_limit,
    require_url,
)

audit_app = typer.Typer(help="Read the audit log (needs --url).", no_args_is_help=True)
policy_app = typer.Typer(help="An organization's key policy (needs --url).", no_args_is_help=True)


@audit_app.command("list")
def audit_list(
    org_id: str,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. key.create")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time or a duration ago (7d)")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339 time")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Show at most this many")] = 100,
    url: UrlOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """The organization's audit events, newest first as the server orders them."""
    server = require_url(url, "audit list")
    with connect(server, key) as client:
        events = client.list_audit_events(
            org_id,
            action=action,
            since=parse_moment(since, "--since", past=True) if since else None,
            until=parse_moment(until, "--until") if until else None,
            page_size=min(limit, 1000),
        )
        shown = list(itertools.islice(events, limit))
    render.print_events(shown, as_json=as_json)


@policy_app.command("get")
def policy_get(
    org_id: str, url: UrlOption = None, key: KeyOption = None, as_json: JsonOption = False
) -> None:
    """Show the organization's policy."""
    with connect(require_url(url, "policy get"), key) as client:
        policy = client.get_policy(org_id)
    render.print_policy(policy, as_json=as_json)


@policy_app.command("set")
def policy_set(
    org_id: str,
    max_key_lifetime: Annotated[str | None, typer.Option(help="Seconds, or none")] = None,
    require_expiry: Annotated[
        bool | None, typer.Option("--require-expiry/--no-require-expiry")
    ] = None,
    allowed_permission: Annotated[
        list[str] | None, typer.Option("--allowed-permission", help="Replace the list; repeat")
    ] = None,
    max_active_keys: Annotated[str | None, typer.Option(help="A number, or none")] = None,
    default_rate_limit: Annotated[
        str | None, typer.Option(help="LIMIT/WINDOW_SECONDS, or none")
    ] = None,
    default_quota: Annotated[str | None, typer.Option(help="LIMIT/day|month, or none")] = None,
    url: UrlOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change the given settings; the others keep their current values."""
    changes: dict[str, Any] = {}
    if max_key_lifetime is not None:
        changes["max_key_lifetime_seconds"] = parse_optional_int(
            max_key_lifetime, "--max-key-lifetime"
        )
    if require_expiry is not None:
        changes["require_expiry"] = require_expiry
    if allowed_permission:
        changes["allowed_permissions"] = allowed_permission
    if max_active_keys is not None:
        changes["max_active_keys"] = parse_optional_int(max_active_keys, "--max-active-keys")
    if default_rate_limit is not None:
        changes["default_rate_limit"] = parse_rate_limit(default_rate_limit, "--default-rate-limit")
    if default_quota is not None:
        changes["default_quota"] = parse_quota(default_quota, "--default-quota")
    if not changes:
        fail("nothing to change: give at least one setting (see --help)", EXIT_INVALID)
    with connect(require_url(url, "policy set"), key) as client:
        # PUT replaces the whole policy: start from the current one so unnamed settings stay.
        current = client.get_policy(org_id)
        policy = client.set_policy(org_id, current.model_copy(update=changes))
    render.print_policy(policy, as_json=as_json)


def verify(
    key_to_check: Annotated[
        str | None,
        typer.Argument(
            metavar="[KEY]", help="The key to check; - reads it from stdin; default: --key"
        ),
    ] = None,
    permission: Annotated[
        list[str] | None, typer.Option("--permission", help="Permission it must hold; repeat")
    ] = None,
    url: UrlOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask the server whether a key is valid. Exit 0 if so, 5 if refused, 9 if rate limited."""
    server = require_url(url, "verify")
    checked = sys.stdin.readline().strip() if key_to_check == "-" else (key_to_check or key)
    if not checked:
        fail("no key to verify: give KEY, - for stdin, or --key/KEYRACK_API_KEY", EXIT_INVALID)
    with connect(server, None, need_key=False) as client:
        result = client.verify(checked, permissions=permission or [])
    render.print_verdict(result, as_json=as_json)
    if not result.valid:
        raise typer.Exit(EXIT_RATE_LIMITED if result.status == 429 else EXIT_AUTH)
