"""The `notifyd` command: serve, migrate, psql, send, status, users, webhooks, check-config.

`send`, `status` and `users` live in `notifyd.cli.commands`, `cancel` and `retry` in
`notifyd.cli.lifecycle`, `webhooks` in `notifyd.cli.webhooks` (`notifyd.cli.runner` runs
them all), `check-config` in `notifyd.cli.check`; this module parses the command line,
loads the configuration, picks the database (the embedded one when none is configured) and
runs the command. Only `serve` and `migrate` create the embedded database
(`notifyd.cli.datadir`).
Exit codes: 0 done, 1 failed, 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from notifyd import __version__
from notifyd.cli import check as config_check
from notifyd.cli import commands, datadir, eventloop, lifecycle, runner, webhooks
from notifyd.cli.runner import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from notifyd.config import Settings, load_settings
from notifyd.db import Database
from notifyd.db.embedded import EmbeddedPostgres, psql_executable, start_embedded_postgres
from notifyd.db.migrations import migrate
from notifyd.errors import ConfigError, DatabaseUnavailableError, MigrationError, NotifydError
from notifyd.logs import configure_logging, get_logger
from notifyd.redaction import split_password
from notifyd.web.app import create_app
from notifyd.web.keys import FATAL, METRICS
from notifyd.web.server import HttpServer, descriptor_budget

log = get_logger(__name__)

DESCRIPTION = (
    "notifyd delivers notifications by e-mail, SMS and Telegram. Exit codes: 0 done, "
    "1 failed, 2 bad arguments or configuration."
)
# Another notifyd, or another server, has the port: say how to take another one.
PORT_IN_USE_HINT = " (another port: set http.port, e.g. NOTIFYD_HTTP__PORT=8001)"
# Commands whose stdout is their answer (an id, a table, JSON): their log lines go to stderr.
ANSWERING_COMMANDS = frozenset(
    {"send", "status", "cancel", "retry", "users", "webhooks", "check-config"}
)


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit, where a closed pipe could not be caught
    except BrokenPipeError:
        # The reader went away (`notifyd users list | head -3`): stop quietly, as other
        # commands do. stdout now points at /dev/null so the last flush cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_FAILURE
    return code


def _main(argv: list[str] | None) -> int:
    parser = _parser()
    # Whatever follows `notifyd psql` goes to psql itself (e.g. -c "SELECT ...").
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "psql":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    # Before the configuration and the database: a bad argument exits 2 right away.
    action = runner.prepare(args)
    answering = args.command in ANSWERING_COMMANDS
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        if not answering:  # the daemon's log says why it did not start
            configure_logging("info")
            log.error("config_invalid", error=str(exc))
        print(f"notifyd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(settings.log.level, to_stderr=answering)
    if args.command in datadir.READING_COMMANDS:
        missing = datadir.missing_database(settings.database)
        if missing is not None:
            print(f"notifyd {args.command}: {missing}", file=sys.stderr)
            return EXIT_FAILURE
    try:
        if args.command == "check-config":
            return _check_config(settings, args.config)
        # Only the daemon's log tells where the embedded server is; the others stay quiet.
        announce = args.command in {"serve", "migrate"}
        with _database(settings, announce=announce) as (url, embedded):
            if args.command == "psql":
                return _psql(url, extra)
            if args.command == "migrate":
                return eventloop.run(_migrate(settings, url))
            if action is not None:
                data_dir = None if embedded is None else embedded.data_dir
                return eventloop.run(runner.run(settings, url, action, embedded_dir=data_dir))
            return eventloop.run(_serve(settings, url, embedded))
    except DatabaseUnavailableError as exc:
        log.error("database_unavailable", error=str(exc))
        print(f"notifyd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except MigrationError as exc:
        log.error("migrations_refused", error=str(exc))
        print(f"notifyd: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notifyd", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"notifyd {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML configuration file (default: ./notifyd.toml if present)",
    )
    subcommands = parser.add_subparsers(dest="command")
    for name, help_text in (
        ("serve", "run the API and deliver notifications"),
        ("migrate", "apply database migrations and exit"),
        ("psql", "open psql on notifyd's database (the embedded one if none is configured)"),
    ):
        subcommands.add_parser(name, parents=[common], help=help_text)
    commands.add_parsers(subcommands, common)
    lifecycle.add_parsers(subcommands, common)
    webhooks.add_parsers(subcommands, common)
    subcommands.add_parser(
        "check-config",
        parents=[common],
        help="validate the configuration, then try the database and each channel",
    )
    return parser


def _configure_logging(level: str, *, to_stderr: bool) -> None:
    if not to_stderr:
        configure_logging(level)
        return
    # configure_logging writes to whatever sys.stdout is while it runs.
    with contextlib.redirect_stdout(sys.stderr):
        configure_logging(level)


@contextlib.contextmanager
def _database(
    settings: Settings, *, announce: bool
) -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    """The configured database's URL, or an embedded server's, released on the way out."""
    if settings.database.url is not None:
        yield settings.database.url.get_secret_value(), None
        return
    embedded = start_embedded_postgres(settings.database.embedded_dir)
    try:
        if announce:
            log.info("embedded_postgres_started", data_dir=str(embedded.data_dir), url=embedded.url)
        yield embedded.url, embedded
    finally:
        embedded.stop()


def _check_config(settings: Settings, path: Path | None) -> int:
    source = config_check.config_source(path)
    with contextlib.ExitStack() as stack:
        database: str | NotifydError | None = None  # None: no database to try (skipped)
        try:
            if datadir.missing_database(settings.database) is None:
                database, _ = stack.enter_context(_database(settings, announce=False))
        except DatabaseUnavailableError as exc:
            database = exc  # reported as the database's line; the channels are still tried
        results = eventloop.run(config_check.check_all(settings, source, database))
    print(config_check.report(results, settings))
    return EXIT_OK if config_check.all_ok(results) else EXIT_FAILURE


def _psql(url: str, psql_args: list[str]) -> int:
    executable = psql_executable()
    if executable is None:
        print("notifyd: psql is not installed", file=sys.stderr)
        return EXIT_FAILURE
    # A command line is visible to every user of the machine (`ps`); the environment of a
    # process only to its owner. libpq reads the password from PGPASSWORD.
    without_password, password = split_password(url)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    command = [executable, without_password, *psql_args]
    return subprocess.run(command, check=False, env=env).returncode  # noqa: S603


async def _migrate(settings: Settings, url: str) -> int:
    db = settings.database
    database = await Database.connect(
        url, min_size=1, max_size=1, connect_timeout=db.connect_timeout, pooler=db.pooler
    )
    try:
        applied = await migrate(database.pool)
    finally:
        await database.close()
    log.info("migrations_done", applied=applied)
    return EXIT_OK


def _bind(host: str, port: int) -> socket.socket:
    """Bind the HTTP port before anything else starts, so a taken port fails fast.

    Not listening yet: connections are refused until the API is ready to answer.
    """
    address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, sockaddr = address[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError:
        sock.close()
        raise
    return sock


async def _serve(settings: Settings, url: str, embedded: EmbeddedPostgres | None) -> int:
    http = settings.http
    try:
        sock = _bind(http.host, http.port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        log.error("http_bind_failed", host=http.host, port=http.port, error=reason)
        hint = PORT_IN_USE_HINT if exc.errno == errno.EADDRINUSE else ""
        print(f"notifyd: cannot listen on {http.host}:{http.port}: {reason}{hint}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        # Counted now, before the daemon opens any connection of its own.
        budget = descriptor_budget(settings)
    except ConfigError as exc:
        sock.close()
        log.error("config_invalid", error=str(exc))
        print(f"notifyd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    log.info(
        "http_connection_limit",
        max_connections=budget.connections,
        descriptor_limit=budget.limit,
        descriptors_in_use=budget.in_use,
        descriptors_reserved=budget.reserve,
    )
    app = create_app(settings, url)
    server = HttpServer(app, settings, budget)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            # A second signal: the operator does not want to wait for the grace period.
            # Unfinished work is left to lease expiry; the embedded server is still
            # stopped, since os._exit skips the handlers that would stop it.
            log.warning("shutdown_forced", signal=signum.name)
            if embedded is not None:
                embedded.stop()
            os._exit(EXIT_FAILURE)
        log.info("shutdown_requested", signal=signum.name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    # Before anything is delivered: the collection pauses nobody, and no notification in
    # flight is frozen with what start-up built.
    eventloop.settle_heap()
    await server.setup()
    try:
        await server.listen(sock, app[METRICS].registry)
        log.info(
            "notifyd_started",
            version=__version__,
            host=settings.http.host,
            port=settings.http.port,
            database=settings.database.redacted_url() or "embedded",
            event_loop=eventloop.loop_name(),
        )
        stop_wait = asyncio.create_task(stop.wait())
        fatal_wait = asyncio.create_task(app[FATAL].wait())
        await asyncio.wait({stop_wait, fatal_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        fatal_wait.cancel()
    finally:
        await server.close()
    failed = app[FATAL].is_set()
    log.info("notifyd_stopped", exit_code=EXIT_FAILURE if failed else EXIT_OK)
    return EXIT_FAILURE if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
