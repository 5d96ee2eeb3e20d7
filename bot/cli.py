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
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.logs import configure_logging
from bot.report import export_rows, render
from bot.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:  # the directory pulls in SQLAlchemy and Alembic: only commands that use it
    from bot.directory import PhoneLink

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
app.add_typer(users_app, name="users")
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
    with suppress(KeyboardInterrupt):
        asyncio.run(factory())


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
    from bot.bootstrap import open_app

    with operator_errors():
        settings = settings_for()

        async def chat() -> None:
            async with open_app(settings) as bot:
                await ConsoleChat(
                    bot.engine,
                    bot.catalogue,
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
    from bot.bootstrap import open_app

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
        else:
            import adapters.slack as slack

            slack.check_settings(settings, socket=socket)
            serve = partial(slack.serve, socket=socket)

        async def serve_until_stopped() -> None:
            async with open_app(settings) as bot:
                await serve(bot)

        run_async(serve_until_stopped)


@app.command()
def doctor() -> None:
    """Check the settings, Redis, the database, the Vonage credentials and the platform tokens."""
    from bot.doctor import run_checks

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
    from bot.bootstrap import open_directory, redact_url

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
    from bot.bootstrap import open_directory

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


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
