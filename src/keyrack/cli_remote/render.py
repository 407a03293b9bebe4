"""How remote-mode answers look: rich tables for people, the API's JSON with `--json`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from keyrack.client import ApiKey, AuditEvent, CreatedApiKey, Policy, VerifyResult

console = Console(soft_wrap=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def dump(model: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json")
    return data


def _limits(value: BaseModel | None) -> str:
    if value is None:
        return "-"
    data = dump(value)
    return f"{data['limit']}/{data.get('window_seconds', data.get('period'))}"


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def key_table(keys: Iterable[ApiKey]) -> Table:
    table = Table(
        "id", "name", "start", "permissions", "enabled", "expires_at", "last_used_at", "created_at"
    )
    for key in keys:
        data = dump(key)
        table.add_row(
            key.id,
            key.name,
            key.start,
            ",".join(key.permissions),
            "yes" if key.enabled else "no",
            _or_dash(data["expires_at"]),
            _or_dash(data["last_used_at"]),
            data["created_at"],
        )
    return table


def print_keys(keys: Iterable[ApiKey], *, as_json: bool) -> None:
    if as_json:
        print_json([dump(key) for key in keys])
    else:
        console.print(key_table(keys))


def print_key(key: ApiKey, *, as_json: bool) -> None:
    if as_json:
        print_json(dump(key))
        return
    table = Table("field", "value", show_header=False)
    for name, value in dump(key).items():
        if name in ("rate_limit", "quota"):
            value = _limits(getattr(key, name))
        elif isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        table.add_row(name, _or_dash(value))
    console.print(table)


def print_secret(created: CreatedApiKey, *, verb: str, as_json: bool) -> None:
    """The secret goes alone to stdout (pipe-friendly), the explanation to stderr."""
    if as_json:
        print_json(dump(created))
        return
    print(f"{verb} {created.id} with {', '.join(created.permissions)}", file=sys.stderr)
    print("secret (shown once, store it now):", file=sys.stderr)
    print(created.key)


def print_events(events: Iterable[AuditEvent], *, as_json: bool) -> None:
    if as_json:
        print_json([dump(event) for event in events])
        return
    table = Table("occurred_at", "action", "actor_key_id", "target", "client_ip", "details")
    for event in events:
        data = dump(event)
        table.add_row(
            data["occurred_at"],
            event.action,
            _or_dash(event.actor_key_id),
            _or_dash(event.target),
            _or_dash(event.client_ip),
            json.dumps(event.details, separators=(",", ":")) if event.details else "",
        )
    console.print(table)


def print_policy(policy: Policy, *, as_json: bool) -> None:
    if as_json:
        print_json(dump(policy))
        return
    table = Table("setting", "value", show_header=False)
    table.add_row("max_key_lifetime_seconds", _or_dash(policy.max_key_lifetime_seconds))
    table.add_row("require_expiry", "yes" if policy.require_expiry else "no")
    table.add_row("allowed_permissions", ",".join(policy.allowed_permissions))
    table.add_row("max_active_keys", _or_dash(policy.max_active_keys))
    table.add_row("default_rate_limit", _limits(policy.default_rate_limit))
    table.add_row("default_quota", _limits(policy.default_quota))
    console.print(table)


def print_verdict(result: VerifyResult, *, as_json: bool) -> None:
    if as_json:
        print_json(dump(result))
        return
    if result.valid:
        print(
            f"valid: {result.key_id} ({result.name}) in {result.org_id} "
            f"with {','.join(result.permissions)}"
        )
    else:
        print(f"invalid: {result.code}: {result.detail}")
