"""How a command that works on the database runs, and how it answers.

A command's parser carries a `prepare` default that turns the validated arguments into an
`Action`; `run` connects, makes sure the schema is current, and runs it. Exit codes: 0
done, 1 failed, 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import orjson

from notifyd.config import Settings
from notifyd.db import Database
from notifyd.db.migrations import SchemaStatus, schema_status

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
# Bad arguments or configuration (argparse uses 2 as well).
EXIT_USAGE: Final = 2

Action = Callable[[Database], Awaitable[int]]


def prepare(args: argparse.Namespace) -> Action | None:
    """The action the arguments ask for, validated; None for commands not defined here.

    Invalid arguments exit with 2 (argparse's usage error) naming the option.
    """
    preparer: Callable[[argparse.Namespace], Action] | None = getattr(args, "prepare", None)
    return None if preparer is None else preparer(args)


async def run(
    settings: Settings, url: str, action: Action, *, embedded_dir: Path | None = None
) -> int:
    """Connect to the database, make sure its schema is current, and run `action`.

    `embedded_dir`: the embedded database's data directory, when that is the one used.
    """
    database = await connect_one(settings, url)
    try:
        schema = await schema_status(database.pool)
        if schema.pending:
            fail(not_migrated(schema, embedded_dir))
            return EXIT_FAILURE
        return await action(database)
    finally:
        await database.close()


def not_migrated(schema: SchemaStatus, embedded_dir: Path | None) -> str:
    """Why a database whose migrations are pending cannot be used, and what to do."""
    if not schema.applied and embedded_dir is not None:
        # An embedded cluster without notifyd's schema is one `serve` never ran on (a
        # cluster left by an older notifyd's read command, say): migrating it would only
        # hide that the data is elsewhere.
        return (
            f"the embedded database in {embedded_dir} has no notifyd schema: `notifyd serve` "
            "never ran in this folder. Either cd to the folder where it ran, or set "
            "DATABASE_URL; to start afresh here, run `notifyd serve` (or `notifyd migrate`)."
        )
    if not schema.applied:
        return (
            "the database has no notifyd schema: run `notifyd migrate` (or start "
            "`notifyd serve`, which migrates)"
        )
    names = ", ".join(migration.name for migration in schema.pending)
    return (
        f"the database is not migrated ({names} pending): run `notifyd migrate` "
        "(or start `notifyd serve`, which migrates)"
    )


async def connect_one(settings: Settings, url: str) -> Database:
    """The database over a single connection, for a command that runs and exits."""
    db = settings.database
    return await Database.connect(
        url,
        min_size=1,
        max_size=1,
        connect_timeout=db.connect_timeout,
        command_timeout=db.command_timeout,
        pooler=db.pooler,
    )


def json_text(data: Any) -> str:
    # orjson, as the API answers: the same bytes as the HTTP response body.
    return orjson.dumps(data).decode()


def fail(message: str, args: argparse.Namespace | None = None) -> None:
    """Say what went wrong on stderr, prefixed with the command (`notifyd users add: ...`)."""
    words = ["notifyd"]
    if args is not None:
        words += [args.command, getattr(args, "users_command", None) or ""]
    print(f"{' '.join(word for word in words if word)}: {message}", file=sys.stderr)
