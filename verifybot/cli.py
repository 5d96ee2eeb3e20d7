"""``verifybot``: run the bot, talk to it in a terminal, and look members up.

Bad configuration is reported in one line with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import asyncio
import enum
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.logs import configure_logging
from bot.report import export_rows, render
from bot.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:  # the directory pulls in SQLAlchemy and Alembic: only commands that use it
    from bot.directory import Directory, PhoneLink
    from bot.moderation import Actor, Moderation, Result

app = typer.Typer(
    name="verifybot",
    help="Verify community members' phone numbers in chat, with the Vonage Verify API.",
    epilog="Settings come from the environment and ./.env (every one is documented in "
    "config/.env.example). New here? Try `verifybot console`, then `verifybot doctor`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
users_app = typer.Typer(
    help="Look up members and their verified phone links.", no_args_is_help=True
)
db_app = typer.Typer(help="Manage the SQL database (DATABASE_URL).", no_args_is_help=True)
roles_app = typer.Typer(
    help="The roles in ROLES_FILE, and who holds them. Grants are recorded in the database "
    "and applied on the member's platform when its token is set here.",
    no_args_is_help=True,
)
policy_app = typer.Typer(
    help="Each community's own rules (what /settings changes in a Telegram group), over the "
    "defaults in the settings. SCOPE is telegram:<chat id> or slack:<team id>.",
    no_args_is_help=True,
)
fraud_app = typer.Typer(
    help="The SMS-fraud breaker: the countries and prefixes where sending codes is paused "
    "because they were texted many codes and few were entered (FRAUD_* settings).",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")
app.add_typer(fraud_app, name="fraud")
app.add_typer(policy_app, name="policy")
app.add_typer(roles_app, name="roles")
app.add_typer(db_app, name="db")


EXIT_CONFIG = 2


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class Platform(enum.StrEnum):
    telegram = "telegram"
    slack = "slack"


def fail(message: str, code: int = EXIT_CONFIG) -> typer.Exit:
    typer.echo(f"verifybot: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn configuration problems into one clear line and exit code 2."""
    try:
        yield
    except ConfigError as exc:
        raise fail(str(exc)) from None


def settings_for(**overrides: Any) -> Settings:
    settings = load_settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def run_async(factory: Callable[[], Any]) -> None:
    lean_tls_buffers()
    with suppress(KeyboardInterrupt):
        asyncio.run(factory())


#: What asyncio's TLS reads ask for at once. A TLS record carries at most 16 KiB.
TLS_READ_BUFFER = 32 * 1024


def lean_tls_buffers() -> None:
    """asyncio gives every TLS connection a zero-filled 256 KiB read buffer (``SSLProtocol.
    max_size``): 2 MiB of resident memory for the eight Vonage connections alone, more for a
    Bot API pool over TLS (bench/README.md). Reading two records' worth at a time costs no
    throughput a bot can notice."""
    from asyncio import sslproto

    if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


@app.command()
def console(
    user: Annotated[
        str | None, typer.Option(help="The member id to chat as (default: your login name).")
    ] = None,
    lang: Annotated[
        str | None, typer.Option(help="Language of the replies, e.g. en or es.")
    ] = None,
) -> None:
    """Chat with the bot in this terminal, as a member would.

    Uses the sandbox verifier (the code is printed here, no SMS is sent) unless Vonage
    credentials are set, and a private embedded Redis unless REDIS_URL is set.
    """
    from adapters.console import ConsoleChat
    from verifybot.bootstrap import open_app

    with operator_errors():
        settings = settings_for()

        async def chat() -> None:
            async with open_app(settings) as app:
                await ConsoleChat(
                    app.engine,
                    app.catalogue,
                    user_id=user,
                    locale=lang or settings.default_language,
                    stdin=sys.stdin,
                    stdout=sys.stdout,
                ).run()

        run_async(chat)


@app.command()
def run(
    platform: Annotated[Platform, typer.Argument(help="Which chat platform to serve.")],
    webhook: Annotated[
        bool,
        typer.Option(
            help="Telegram: receive updates by webhook at TELEGRAM_WEBHOOK_URL (listening on "
            "LISTEN_HOST:PORT) instead of long polling. Implied when TELEGRAM_WEBHOOK_URL is set."
        ),
    ] = False,
    socket: Annotated[
        bool,
        typer.Option(
            help="Slack: connect out by Socket Mode with SLACK_APP_TOKEN instead of serving "
            "HTTP on LISTEN_HOST:PORT (no public URL needed)."
        ),
    ] = False,
) -> None:
    """Run the bot on a chat platform until interrupted.

    Telegram needs TELEGRAM_BOT_TOKEN; Slack needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET
    (or SLACK_APP_TOKEN with --socket). The README walks through creating both apps.
    """
    from verifybot import ops
    from verifybot.bootstrap import open_app

    if webhook and platform is not Platform.telegram:
        raise fail("--webhook is for telegram; Slack uses HTTP by default, or --socket")
    if socket and platform is not Platform.slack:
        raise fail("--socket is for slack; Telegram uses long polling by default, or --webhook")
    with operator_errors():
        settings = settings_for()
        if platform is Platform.telegram:
            import adapters.telegram as telegram

            telegram.check_settings(settings, webhook=webhook)
            serve = partial(telegram.serve, webhook=webhook)
            own_port = webhook or bool(settings.telegram_webhook_url)
        else:
            import adapters.slack as slack

            slack.check_settings(settings, socket=socket)
            serve = partial(slack.serve, socket=socket)
            own_port = not socket

        async def serve_until_stopped() -> None:
            async with open_app(settings) as app, ops.serving(app, own_port=own_port) as health:
                await serve(app, health=health)

        run_async(serve_until_stopped)


@app.command()
def doctor() -> None:
    """Check the settings, Redis, the database, the Vonage credentials and the platform tokens."""
    from verifybot.doctor import run_checks

    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"✗ settings: {exc}")
        raise typer.Exit(1) from None
    configure_logging("ERROR", settings.log_format)
    results = asyncio.run(run_checks(settings))
    for result in results:
        typer.echo(f"{'✓' if result.ok else '✗'} {result.name}: {result.detail}")
    if not all(result.ok for result in results):
        raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (also done when the bot starts)."""
    from verifybot.bootstrap import open_directory, redact_url

    with operator_errors():
        settings = settings_for()
        directory = open_directory(settings)
        try:
            revision = directory.revision()
        finally:
            directory.close()
        typer.echo(f"{redact_url(settings.database_url)} is at revision {revision}")


def _links(
    settings: Settings, query: Callable[..., list[PhoneLink]], *args: Any, **kw: Any
) -> list[PhoneLink]:
    from verifybot.bootstrap import open_directory

    directory = open_directory(settings)
    try:
        return query(directory, *args, **kw)
    finally:
        directory.close()


@users_app.command("list")
def users_list(
    platform: Annotated[str | None, typer.Option(help="Only this platform.")] = None,
    verified_only: Annotated[bool, typer.Option(help="Only verified members.")] = False,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """List members and their phone links (phones masked)."""
    from bot.directory import Directory

    with operator_errors():
        settings = settings_for(log_level="WARNING")
        links = _links(
            settings, Directory.list_links, platform=platform, verified_only=verified_only
        )
        typer.echo(render(export_rows(links), fmt))


@users_app.command("show")
def users_show(
    platform: Annotated[str, typer.Argument(help="telegram, slack or console.")],
    user_id: Annotated[str, typer.Argument(help="The platform's user id.")],
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Show one member, in every community (scope) they are known in."""
    from bot.directory import Directory

    with operator_errors():
        settings = settings_for(log_level="WARNING")
        links = _links(settings, Directory.find_user, platform, user_id)
        if not links:
            raise fail(f"no member {user_id} on {platform}", code=1)
        typer.echo(render(export_rows(links), fmt))


@app.command()
def flow() -> None:
    """Print the conversation state machine as a Mermaid diagram."""
    from bot.diagram import mermaid

    typer.echo(mermaid(), nl=False)


# -- moderation from the command line ------------------------------------------------------------

Scope = Annotated[
    str | None,
    typer.Option(help="The bot id (Telegram) or team id (Slack), when the member is in several."),
]
PlatformArg = Annotated[Platform, typer.Argument(help="telegram or slack.")]
UserArg = Annotated[str, typer.Argument(help="The platform's user id.")]
RoleArg = Annotated[str, typer.Argument(help="A role name from ROLES_FILE.")]


def cli_actor() -> Actor:
    """The operator at this terminal: an admin, audited as ``cli:<host>:<login>``."""
    import getpass
    import socket

    from bot.identity import MemberKey
    from bot.moderation import Actor, Rank

    host, login = socket.gethostname(), getpass.getuser()
    return Actor(MemberKey("cli", host, login), Rank.ADMIN, f"{login}@{host} (command line)")


def with_desk(
    settings: Settings,
    work: Callable[[Moderation, Directory], Any],
    *,
    connect: bool,
    redis: bool = False,
) -> Any:
    """Run ``work`` with a moderators' desk; ``connect`` reaches the configured platforms,
    ``redis`` the bot's store."""
    from verifybot.bootstrap import open_desk

    async def session() -> Any:
        async with open_desk(settings, connect=connect, redis=redis) as desk:
            return await work(desk, desk.directory)

    return asyncio.run(session())


def show(settings: Settings, result: Result) -> None:
    """Print a desk's answer in the default language; a refusal exits 1."""
    from verifybot.bootstrap import load_catalogue

    catalogue = load_catalogue(settings)
    for reply in result.replies:
        typer.echo(catalogue.render(reply, None), err=not result.ok)
    if not result.ok:
        raise typer.Exit(1)


def member_key(directory: Directory, platform: Platform, user_id: str, scope: str | None) -> Any:
    """The one member this names, or a clear exit when it names none or several."""
    links = [
        link
        for link in directory.find_user(platform.value, user_id)
        if scope is None or link.scope == scope
    ]
    if not links:
        raise fail(f"no member {user_id} on {platform.value}", code=1)
    if len(links) > 1:
        scopes = ", ".join(link.scope for link in links)
        raise fail(f"{user_id} is a member in several scopes ({scopes}): pass --scope", code=1)
    return links[0].key


@users_app.command("export")
def users_export(
    platform: Annotated[Platform | None, typer.Option(help="Only this platform.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.csv,
    reveal_phones: Annotated[
        bool,
        typer.Option(help="Show full phone numbers instead of masked ones. Audited."),
    ] = False,
    output: Annotated[
        Path | None, typer.Option(help="Write to this file instead of standard output.")
    ] = None,
) -> None:
    """Export every member (phones masked unless --reveal-phones, which is audited)."""
    with operator_errors():
        settings = settings_for(log_level="WARNING")
        actor = cli_actor()

        async def export(desk: Moderation, directory: Directory) -> Result:
            # The desk audits the export (and any revealing) in the operator's name.
            return await desk.export(
                actor,
                platform=platform.value if platform else None,
                scope=None,
                reveal_phones=reveal_phones,
                fmt=fmt.value,
            )

        result: Result = with_desk(settings, export, connect=False)
        if result.document is None:  # pragma: no cover - the command line is an admin
            raise fail("the export was refused", code=1)
        text = result.document.content.decode().rstrip("\n")
        if output is None:
            typer.echo(text)
        else:
            output.write_text(text + "\n", encoding="utf-8")
            typer.echo(f"wrote {output}", err=True)


@users_app.command("unlink")
def users_unlink(
    platform: PlatformArg,
    user_id: UserArg,
    scope: Scope = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a member's verification and every role they hold (undone on the platform)."""
    with operator_errors():
        settings = settings_for(log_level="WARNING")
        actor = cli_actor()

        async def unlink(desk: Moderation, directory: Directory) -> Result:
            member = member_key(directory, platform, user_id, scope)
            if not yes and not typer.confirm(
                f"Remove the verification and roles of {member}?", default=False
            ):
                raise fail("nothing was changed", code=1)
            return await desk.unlink(actor, member, confirmed=True)

        # With the store: the running bot's workers must see the unlink at once.
        show(settings, with_desk(settings, unlink, connect=True, redis=True))


@roles_app.command("list")
def roles_list(
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """The roles defined in ROLES_FILE (or ROLES), what each opens, and how many hold it."""
    from verifybot.bootstrap import load_roles, open_directory

    with operator_errors():
        settings = settings_for(log_level="WARNING")
        book = load_roles(settings)
        directory = open_directory(settings)
        try:
            links = directory.list_links(verified_only=True)
        finally:
            directory.close()
        held = [role for link in links for role in link.roles]
        rows = [
            {
                "role": role.name,
                "auto": role.name in book.auto,
                "holders": held.count(role.name),
                "telegram_chats": " ".join(str(chat) for chat in role.telegram.chats),
                "telegram_title": role.telegram.title or "",
                "slack_channels": " ".join(role.slack.channels),
                "slack_usergroup": role.slack.usergroup or "",
                "description": role.description,
            }
            for role in (book.roles[name] for name in book.names)
        ]
        if not rows:
            typer.echo("no roles defined: set ROLES_FILE (see config/roles.example.toml)")
            return
        typer.echo(render(rows, fmt))


def _grant_or_revoke(
    verb: str, platform: Platform, user_id: str, role: str, scope: str | None
) -> None:
    with operator_errors():
        settings = settings_for(log_level="WARNING")
        actor = cli_actor()

        async def act(desk: Moderation, directory: Directory) -> Result:
            member = member_key(directory, platform, user_id, scope)
            if verb == "grant":
                return await desk.grant(actor, member, role)
            return await desk.revoke(actor, member, role)

        show(settings, with_desk(settings, act, connect=True))


@roles_app.command("grant")
def roles_grant(
    platform: PlatformArg, user_id: UserArg, role: RoleArg, scope: Scope = None
) -> None:
    """Give a verified member a role, and apply it on their platform."""
    _grant_or_revoke("grant", platform, user_id, role, scope)


@roles_app.command("revoke")
def roles_revoke(
    platform: PlatformArg, user_id: UserArg, role: RoleArg, scope: Scope = None
) -> None:
    """Take a role from a member, and undo it on their platform where possible."""
    _grant_or_revoke("revoke", platform, user_id, role, scope)


@roles_app.command("sync")
def roles_sync(
    platform: Annotated[Platform | None, typer.Option(help="Only this platform.")] = None,
) -> None:
    """Apply every role the database says members hold again, on each platform configured here.

    Use it after fixing the bot's rights or un-archiving a channel. Exits 1 if a step failed.
    """
    from bot.moderation import SyncReport, problems_of
    from verifybot.bootstrap import load_catalogue

    with operator_errors():
        settings = settings_for(log_level="WARNING")
        actor = cli_actor()

        async def sync(desk: Moderation, directory: Directory) -> SyncReport:
            return await desk.sync(actor, platform=platform.value if platform else None)

        report: SyncReport = with_desk(settings, sync, connect=True)
        catalogue = load_catalogue(settings)
        for skipped in report.skipped:
            typer.echo(f"skipped {skipped}: its bot token is not set here", err=True)
        for (member, role, _), problem in zip(report.failed, problems_of(report), strict=True):
            typer.echo(f"{member} {role}: {catalogue.render(problem, None)}", err=True)
        typer.echo(f"applied {report.grants} grant(s), {len(report.failed)} step(s) failed")
        if report.failed:
            raise typer.Exit(1)


# -- each community's policy ----------------------------------------------------------------------

ScopeArg = Annotated[
    str, typer.Argument(help="telegram:<chat id> (telegram:-1001234567890) or slack:<team id>.")
]
FieldArg = Annotated[str, typer.Argument(help="A policy field, as `verifybot policy show` lists.")]


def _policy_args(scope: str, field: str) -> str:
    """The scope, checked; exits 2 with one line for a bad scope or field."""
    from bot.policy import FIELDS, parse_community_scope

    try:
        checked = parse_community_scope(scope)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if field not in FIELDS:
        raise fail(f"unknown policy field {field!r} (one of {', '.join(FIELDS)})")
    return checked


def _change_policy(settings: Settings, scope: str, field: str, value: str | None) -> None:
    """Through ``Policies.change``, as ``/settings`` does: parsed, audited as the operator, and
    every worker's cached copy replaced at once."""
    from verifybot.bootstrap import open_policies

    actor = cli_actor()

    async def change() -> tuple[str, str]:
        async with open_policies(settings) as policies:
            return await policies.change(scope, field, value, actor=str(actor))

    try:
        old, new = asyncio.run(change())
    except ValueError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{scope}: {field} is now {new or '(none)'} (was {old or '(none)'})")


@policy_app.command("show")
def policy_show(
    scope: ScopeArg,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
) -> None:
    """Each field of the community's effective policy, its value, and whether the community
    set it or it is the default."""
    from bot.policy import FIELDS, parse_community_scope
    from verifybot.bootstrap import open_policies

    try:
        scope = parse_community_scope(scope)
    except ValueError as exc:
        raise fail(str(exc)) from None
    with operator_errors():
        settings = settings_for(log_level="WARNING")

        async def read() -> tuple[Any, dict[str, str]]:
            async with open_policies(settings) as policies:
                stored = await policies.stored(scope)
                return await policies.policy_for(scope), stored.overrides

        policy, overrides = asyncio.run(read())
        rows = [
            {
                "field": name,
                "value": policy.written(name),
                "from": "community" if name in overrides else "default",
            }
            for name in FIELDS
        ]
        typer.echo(render(rows, fmt))


# A value may start with "-" (a Telegram chat id): taken as the value, not as an option.
@policy_app.command("set", context_settings={"ignore_unknown_options": True})
def policy_set(
    scope: ScopeArg,
    field: FieldArg,
    value: Annotated[str, typer.Argument(help="As the settings file writes it.")],
) -> None:
    """Set one field for the community (audited). ``auto_roles`` is set only here: roles can
    open other communities' chats, so a group's admins cannot choose them."""
    from bot.policy import parse_field, platform_of
    from verifybot.bootstrap import load_roles

    scope = _policy_args(scope, field)
    with operator_errors():
        settings = settings_for(log_level="WARNING")
        if field == "auto_roles":
            try:
                names = parse_field(field, value, platform=platform_of(scope))
            except ValueError as exc:
                raise fail(str(exc)) from None
            book = load_roles(settings)
            missing = [name for name in names if name not in book.roles]
            if missing:
                have = ", ".join(sorted(book.roles)) or "none defined"
                raise fail(f"undefined role(s) {', '.join(missing)} ({have})")
        _change_policy(settings, scope, field, value)


@policy_app.command("reset")
def policy_reset(scope: ScopeArg, field: FieldArg) -> None:
    """Put one field back to the default (audited)."""
    scope = _policy_args(scope, field)
    with operator_errors():
        _change_policy(settings_for(log_level="WARNING"), scope, field, None)


# -- the SMS-fraud breaker -------------------------------------------------------------------------


@fraud_app.command("status")
def fraud_status() -> None:
    """List each paused country (ISO code) or prefix (+ and digits), one a line: the
    conversion seen when it tripped, and when sending resumes."""
    import time
    from datetime import UTC, datetime

    from verifybot.bootstrap import open_desk

    with operator_errors():
        settings = settings_for(log_level="WARNING")

        async def pauses() -> Any:
            async with open_desk(settings, connect=False, redis=True) as desk:
                return await desk.store.pauses(now=time.time()) if desk.store else []

        found = asyncio.run(pauses())
        if not found:
            typer.echo("nothing is paused")
        for pause in found:
            resumes = datetime.fromtimestamp(pause.until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            typer.echo(
                f"{pause.scope}\tconversion {pause.conversion:.0%} "
                f"({pause.verified} of {pause.sent} verified)\tresumes {resumes}"
            )


@fraud_app.command("lift")
def fraud_lift(
    scope: Annotated[str, typer.Argument(help="A country's ISO code (ES) or a prefix (+3461234).")],
) -> None:
    """Resume sending codes to a paused country or prefix now (audited, and posted to the
    moderators' log of each platform whose token is set here). Exits 1 if it was not paused."""
    from bot.fraud import parse_scope
    from verifybot.bootstrap import open_desk

    if parse_scope(scope) is None:
        raise fail(f"{scope!r} is neither a country's ISO code (ES) nor a prefix (+3461234)")
    with operator_errors():
        settings = settings_for(log_level="WARNING")
        actor = cli_actor()

        async def lift() -> Result:
            async with open_desk(settings, connect=True, redis=True) as desk:
                return await desk.fraud(actor, ["lift", scope])

        show(settings, asyncio.run(lift()))


def main() -> None:
    app()


# Last, so every command above is registered when this module is run as ``python -m``.
if __name__ == "__main__":  # pragma: no cover
    main()
