"""The `keyrack` command: serve, migrate, and manage orgs and keys on the configured database."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from keyrack.api.schemas import CreatedKeyOut, KeyOut
from keyrack.cli_remote import keys as remote_keys
from keyrack.cli_remote import org as remote_org
from keyrack.cli_remote.common import KeyOption, UrlOption
from keyrack.domain import errors
from keyrack.runtime import OutdatedSchema, Runtime, build_runtime, check_schema
from keyrack.service import keys as key_service
from keyrack.settings import InsecureConfiguration, Settings
from keyrack.store import migrate as migrations

app = typer.Typer(help="keyrack: API keys for organizations.", no_args_is_help=True)
orgs_app = typer.Typer(help="Manage organizations.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")
app.add_typer(keys_app, name="keys")
app.add_typer(remote_org.audit_app, name="audit")
app.add_typer(remote_org.policy_app, name="policy")
app.command("verify")(remote_org.verify)
remote_keys.register(keys_app)
out = Console(soft_wrap=True)

# Exit codes scripts can rely on (documented in the README).
EXIT_CODES: tuple[tuple[type[Exception], int], ...] = (
    (errors.InvalidInput, 2),
    (errors.NotFound, 3),
    (errors.Conflict, 4),
    (errors.Unauthenticated, 5),
    (errors.PermissionDenied, 5),
    (errors.ServiceUnavailable, 6),
    (OutdatedSchema, 7),
)


def fail(message: str, code: int = 1) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """A user's mistake is one line on stderr and a non-zero exit, never a traceback."""
    try:
        yield
    except (errors.KeyrackError, OutdatedSchema) as error:
        code = next((c for t, c in EXIT_CODES if isinstance(error, t)), 1)
        detail = error.detail if isinstance(error, errors.KeyrackError) else str(error)
        fail(detail, code)
    except (InsecureConfiguration, ValidationError) as error:
        fail(f"invalid configuration: {error}", 2)


def load_settings() -> Settings:
    with user_errors():
        return Settings()
    raise AssertionError("unreachable")


@contextmanager
def open_runtime(
    settings: Settings | None = None, *, require_current: bool = True
) -> Iterator[Runtime]:
    settings = settings or load_settings()
    with user_errors():
        try:
            runtime = build_runtime(settings)
        except Exception as error:  # noqa: BLE001 - any failure to open the store is one line
            fail(f"cannot open the database: {type(error).__name__}: {error}", 6)
        try:
            if require_current:
                check_schema(runtime)
            yield runtime
        finally:
            runtime.close()


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


@app.command()
def migrate() -> None:
    """Apply pending database migrations (the explicit step on PostgreSQL)."""
    settings = load_settings()
    with open_runtime(settings, require_current=False) as runtime:
        migrations.upgrade(runtime.engine)
        print(f"database at revision {migrations.current_revision(runtime.engine)}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
    bootstrap: Annotated[
        bool,
        typer.Option(
            "--bootstrap/--no-bootstrap",
            help="On an empty database, create org 'default' and print one admin key",
        ),
    ] = True,
) -> None:
    """Run the HTTP server."""
    import uvicorn

    from keyrack.api.http_protocol import PROTOCOL_PATH
    from keyrack.logs import log_config

    settings = load_settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    with open_runtime(settings) as runtime:
        if bootstrap:
            _bootstrap(runtime, host=host, port=port)
    from keyrack.metrics import use_multiprocess_directory

    use_multiprocess_directory(workers)  # before the workers start: they read it at import
    uvicorn.run(
        "keyrack.api.app:create_app_from_env",
        factory=True,
        http=PROTOCOL_PATH,  # uvicorn's httptools protocol, answering cached /verify hits itself
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=log_config(settings.log_level),
        server_header=False,
    )


def _bootstrap(runtime: Runtime, *, host: str, port: int) -> None:
    with runtime.uow() as uow:
        if uow.repo.count_orgs():
            return
    key_service.create_org(uow=runtime.uow(write=True), org_id="default")
    created = key_service.create_key(
        uow=runtime.uow(write=True),
        key_format=runtime.key_format,
        hasher=runtime.hasher,
        org_id="default",
        name="bootstrap admin",
        permissions=["read", "write", "admin"],
    )
    wildcard = host in ("0.0.0.0", "::")  # noqa: S104 - a comparison, not a bind
    base = f"http://{'127.0.0.1' if wildcard else host}:{port}"
    print(
        "\nEmpty database: created organization 'default' and this admin key.\n"
        "It is shown once and never again; store it now.\n\n"
        f"  {created.secret}\n\n"
        "Try it:\n"
        f"  export KEYRACK_API_KEY={created.secret}\n"
        f'  curl -H "Authorization: Bearer $KEYRACK_API_KEY" {base}/orgs/default/api_keys\n'
        f"API docs: {base}/docs\n",
        flush=True,
    )


@orgs_app.command("create")
def orgs_create(org_id: str) -> None:
    """Create an organization."""
    with open_runtime() as runtime, user_errors():
        org = key_service.create_org(uow=runtime.uow(write=True), org_id=org_id)
    print(f"created organization {org.id}")


@orgs_app.command("list")
def orgs_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False) -> None:
    """List organizations."""
    with open_runtime() as runtime, user_errors():
        orgs = key_service.list_orgs(uow=runtime.uow())
    if as_json:
        print_json(
            [
                {"id": org.id, "created_at": org.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
                for org in orgs
            ]
        )
        return
    table = Table("id", "created_at")
    for org in orgs:
        table.add_row(org.id, org.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    out.print(table)


@keys_app.command("create")
def keys_create(
    org_id: str,
    name: Annotated[str, typer.Option("--name", help="A descriptive name")],
    permission: Annotated[
        list[str], typer.Option("--permission", help="read, write or admin; repeat")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON object")] = False,
    expires_at: Annotated[
        str | None, typer.Option(help="With --url: RFC 3339 time or a duration from now (30d)")
    ] = None,
    rate_limit: Annotated[
        str | None, typer.Option(help="With --url: LIMIT/WINDOW_SECONDS, e.g. 100/60")
    ] = None,
    quota: Annotated[str | None, typer.Option(help="With --url: LIMIT/day or LIMIT/month")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="With --url: makes a retried create return the same key")
    ] = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Create a key and print its secret (shown this once)."""
    if url:
        remote_keys.create(
            url=url,
            key=key,
            org_id=org_id,
            name=name,
            permissions=permission,
            expires_at=expires_at,
            rate_limit=rate_limit,
            quota=quota,
            idempotency_key=idempotency_key,
            as_json=as_json,
        )
        return
    if expires_at or rate_limit or quota or idempotency_key:
        fail("--expires-at, --rate-limit, --quota and --idempotency-key need --url", 2)
    with open_runtime() as runtime, user_errors():
        created = key_service.create_key(
            uow=runtime.uow(write=True),
            key_format=runtime.key_format,
            hasher=runtime.hasher,
            org_id=org_id,
            name=name,
            permissions=permission,
        )
    if as_json:
        print(CreatedKeyOut.of_created(created).model_dump_json(indent=2))
        return
    print(f"created {created.key.id} in {org_id} with {', '.join(created.key.permissions)}")
    print("secret (shown once, store it now):", file=sys.stderr)
    print(created.secret)


@keys_app.command("list")
def keys_list(
    org_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """List an organization's keys (never their secrets)."""
    if url:
        remote_keys.list_all(url=url, key=key, org_id=org_id, as_json=as_json)
        return
    with open_runtime() as runtime, user_errors():
        found = key_service.list_keys(uow=runtime.uow(), org_id=org_id)
    rows = [KeyOut.of(key) for key in found]
    if as_json:
        print_json([row.model_dump(mode="json") for row in rows])
        return
    table = Table("id", "name", "start", "permissions", "created_at")
    for row in rows:
        data = row.model_dump(mode="json")
        table.add_row(row.id, row.name, row.start, ",".join(row.permissions), data["created_at"])
    out.print(table)


@keys_app.command("delete")
def keys_delete(
    org_id: str,
    key_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON answer")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Delete (revoke) a key."""
    if url:
        remote_keys.delete(url=url, key=key, org_id=org_id, key_id=key_id)
    else:
        with open_runtime() as runtime, user_errors():
            key_service.delete_key(
                uow=runtime.uow(write=True), org_id=org_id, key_id=key_id, events=runtime.events
            )
    message = "API key deleted successfully"
    print(json.dumps({"message": message}) if as_json else message)


if __name__ == "__main__":
    app()
