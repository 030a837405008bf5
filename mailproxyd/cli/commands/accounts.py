"""``mail-proxy NAME TENANT accounts list|show|add|update|delete`` (reference §15.4, §5.4)."""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated, Any

from cyclopts import Parameter

from mailproxyd.cli import prompts
from mailproxyd.cli.apps import group, instance_name, tenant_id
from mailproxyd.cli.apps import tenant as tenant_app
from mailproxyd.cli.context import open_instance
from mailproxyd.cli.errors import UsageError, require_interactive
from mailproxyd.cli.output import print_fields, print_json, print_table
from mailproxyd.core.models.account import LIMIT_BEHAVIORS, TLS_MODES, LimitBehaviorName, TlsMode
from mailproxyd.services import admin

JsonFlag = Annotated[bool, Parameter(name="--json", help="Print one JSON document.")]

accounts_app = group(tenant_app, "accounts", "SMTP accounts of the tenant.")


@accounts_app.command(name="list")
def list_(*, json_output: JsonFlag = False) -> int:
    """The tenant's accounts, ordered by id (passwords shown as set/unset)."""
    tenant = tenant_id()
    with open_instance(instance_name()) as ctx:
        found = ctx.run(admin.list_accounts, tenant)
    if json_output:
        print_json({"ok": True, "accounts": found})
        return 0
    print_table(
        ("ID", "HOST", "PORT", "USER", "PASSWORD", "TLS", "LIMITS m/h/d", "DEFAULT"),
        (
            (
                a["id"],
                a.get("host"),
                a.get("port"),
                a.get("user"),
                "set" if a.get("password_set") else "unset",
                a.get("tls_mode", "opportunistic"),
                "/".join(str(a.get(f"limit_per_{p}") or 0) for p in ("minute", "hour", "day")),
                a.get("is_default"),
            )
            for a in found
        ),
        empty=f"no accounts for tenant '{tenant}'",
    )
    return 0


@accounts_app.command
def show(account_id: str, /, *, json_output: JsonFlag = False) -> int:
    """One account (password shown as set/unset).

    Parameters
    ----------
    account_id
        Account id.
    """
    with open_instance(instance_name()) as ctx:
        found = ctx.run(admin.get_account, tenant_id(), account_id)
    if json_output:
        print_json(found)
        return 0
    print_fields(
        [
            ("id", found["id"]),
            ("tenant", found.get("tenant_id")),
            ("host", found.get("host")),
            ("port", found.get("port")),
            ("user", found.get("user")),
            ("password", "set" if found.get("password_set") else "unset"),
            ("tls mode", found.get("tls_mode", "opportunistic")),
            ("tls verify", found.get("tls_verify")),
            ("limit per minute", found.get("limit_per_minute") or "unlimited"),
            ("limit per hour", found.get("limit_per_hour") or "unlimited"),
            ("limit per day", found.get("limit_per_day") or "unlimited"),
            ("limit behavior", found.get("limit_behavior")),
            ("batch size", found.get("batch_size", "instance default")),
            ("max concurrent", found.get("max_concurrent")),
            ("ttl", found.get("ttl")),
            ("default", found.get("is_default")),
            ("created", found.get("created_at")),
            ("updated", found.get("updated_at")),
        ]
    )
    return 0


Host = Annotated[str | None, Parameter(help="SMTP server host name or IP.")]
Port = Annotated[int | None, Parameter(name=["--port", "-p"], help="SMTP port [587].")]
User = Annotated[str | None, Parameter(help="SMTP AUTH user.")]
Password = Annotated[str | None, Parameter(help="SMTP AUTH password.")]
PasswordStdin = Annotated[bool, Parameter(help="Read the password from standard input.")]
Mode = Annotated[TlsMode | None, Parameter(help="Transport security [starttls].")]
Tls = Annotated[bool, Parameter(help="Legacy: STARTTLS (same as --tls-mode starttls).")]
NoTls = Annotated[bool, Parameter(help="Legacy: plain text (same as --tls-mode none).")]
NoVerify = Annotated[bool, Parameter(help="Do not verify the server certificate.")]
BatchSize = Annotated[int | None, Parameter(help="Messages claimed per batch (1-10000).")]
MaxConcurrent = Annotated[int | None, Parameter(help="Simultaneous SMTP sessions (1-50).")]
Ttl = Annotated[int | None, Parameter(help="Seconds an idle connection is kept (10-3600).")]
LimitMinute = Annotated[int | None, Parameter(help="Messages per minute (0 = unlimited).")]
LimitHour = Annotated[int | None, Parameter(help="Messages per hour (0 = unlimited).")]
LimitDay = Annotated[int | None, Parameter(help="Messages per day (0 = unlimited).")]
LimitBehavior = Annotated[
    LimitBehaviorName | None, Parameter(help="Over a limit: defer or reject.")
]
Default = Annotated[bool, Parameter(help="Make this the tenant's default account.")]


def _password(password: str | None, password_stdin: bool) -> str | None:
    if password_stdin:
        if password is not None:
            raise UsageError("--password and --password-stdin cannot be combined")
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise UsageError("--password-stdin: no password on standard input")
        return line
    return password


def _prompt_account(account_id: str | None, fields: dict[str, Any]) -> str:
    """The interactive form of ``accounts add``: every value not given as a flag."""
    account_id = account_id or prompts.ask("Account ID", required=True)
    assert account_id is not None
    if "host" not in fields:
        fields["host"] = prompts.ask("Host", required=True)
    if "port" not in fields:
        fields["port"] = prompts.ask_int("Port", 587)
    if "user" not in fields:
        user = prompts.ask("User")
        if user:
            fields["user"] = user
    if fields.get("user") and "password" not in fields:
        secret = prompts.ask_secret("Password")
        if secret:
            fields["password"] = secret
    if "tls_mode" not in fields and "use_tls" not in fields:
        fields["tls_mode"] = prompts.ask_choice("TLS mode", TLS_MODES, "starttls")
    for key, label in (
        ("limit_per_minute", "Limit per minute"),
        ("limit_per_hour", "Limit per hour"),
        ("limit_per_day", "Limit per day"),
    ):
        if key not in fields:
            fields[key] = prompts.ask_int(f"{label} (0 = unlimited)", 0)
    if "limit_behavior" not in fields:
        fields["limit_behavior"] = prompts.ask_choice(
            "Behaviour over a limit", LIMIT_BEHAVIORS, "defer"
        )
    return account_id


@Parameter(name="*")
@dataclasses.dataclass(frozen=True)
class AccountOptions:
    """The account fields ``add`` and ``update`` take as options (the same set for both)."""

    host: Host = None
    port: Port = None
    user: User = None
    password: Password = None
    password_stdin: PasswordStdin = False
    tls_mode: Mode = None
    tls: Tls = False
    no_tls: NoTls = False
    no_verify: NoVerify = False
    batch_size: BatchSize = None
    max_concurrent: MaxConcurrent = None
    ttl: Ttl = None
    limit_minute: LimitMinute = None
    limit_hour: LimitHour = None
    limit_day: LimitDay = None
    limit_behavior: LimitBehavior = None
    default: Default = False

    def fields(self) -> dict[str, Any]:
        """The given options as account fields (reference §5.4 names)."""
        if self.tls and self.no_tls:
            raise UsageError("--tls and --no-tls cannot be combined")
        given = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": _password(self.password, self.password_stdin),
            "tls_mode": self.tls_mode,
            "batch_size": self.batch_size,
            "max_concurrent": self.max_concurrent,
            "ttl": self.ttl,
            "limit_per_minute": self.limit_minute,
            "limit_per_hour": self.limit_hour,
            "limit_per_day": self.limit_day,
            "limit_behavior": self.limit_behavior,
        }
        fields = {k: v for k, v in given.items() if v is not None}
        if self.tls or self.no_tls:
            if "tls_mode" in fields:
                raise UsageError("--tls/--no-tls cannot be combined with --tls-mode")
            fields["use_tls"] = self.tls
        if self.no_verify:
            fields["tls_verify"] = False
        if self.default:
            fields["is_default"] = True
        return fields


NO_OPTIONS = AccountOptions()


@accounts_app.command
def add(
    account_id: Annotated[str | None, Parameter(help="Account id.")] = None,
    /,
    *,
    options: AccountOptions = NO_OPTIONS,
) -> int:
    """Create an SMTP account of the tenant (or replace one with the same id).

    On a terminal, missing values are asked for (the password without echo).
    """
    fields = options.fields()
    if (account_id is None or "host" not in fields) and prompts.interactive():
        account_id = _prompt_account(account_id, fields)
    account_id = prompts.require(account_id, "ID")
    prompts.require(fields.get("host"), "--host")
    fields.setdefault("port", 587)
    if "tls_mode" not in fields and "use_tls" not in fields:
        fields["tls_mode"] = "starttls"
    tenant = tenant_id()
    with open_instance(instance_name()) as ctx:
        created = ctx.run(admin.create_account, tenant, {"id": account_id, **fields})
    verb = "created" if created else "replaced"
    print(f"Account '{account_id}' {verb} for tenant '{tenant}'")
    return 0


@accounts_app.command
def update(account_id: str, /, *, options: AccountOptions = NO_OPTIONS) -> int:
    """Change the given fields of an account; the others stay as they are.

    Parameters
    ----------
    account_id
        Account id.
    """
    fields = options.fields()
    if not fields:
        raise UsageError("nothing to update: give at least one option")
    tenant = tenant_id()
    with open_instance(instance_name()) as ctx:
        ctx.run(admin.update_account, tenant, account_id, fields)
    print(f"Account '{account_id}' updated")
    return 0


@accounts_app.command
def delete(
    account_id: str,
    /,
    *,
    force: Annotated[bool, Parameter(help="Do not ask for confirmation.")] = False,
) -> int:
    """Delete an account; its queued messages fail with 'account deleted'.

    Parameters
    ----------
    account_id
        Account id.
    """
    tenant = tenant_id()
    if not force:
        require_interactive("--force")
    with open_instance(instance_name()) as ctx:
        ctx.run(admin.get_account, tenant, account_id)
        if not prompts.confirm(f"Delete account '{account_id}' of '{tenant}'?", force=force):
            print("not deleted")
            return 1
        failed = ctx.run(admin.delete_account, tenant, account_id)
    print(f"Account '{account_id}' deleted; {failed} queued message(s) failed")
    return 0
