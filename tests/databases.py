"""Creating and dropping the tests' own databases on a server that may be busy.

A server process may be in a database for a moment without any test having put it there:
autovacuum. `CREATE DATABASE ... TEMPLATE` then answers that the template is in use; it is
tried again until the worker has left, which it does within moments. `DROP DATABASE ...
WITH (FORCE)` cannot end an autovacuum worker for a role that is not a superuser
(PostgreSQL before 18 counts it as another role's process); a plain `DROP DATABASE` stops
the worker itself, so that is what such a role uses, once it has ended its own sessions.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg

GIVE_UP_AFTER = 30.0


def database_url_for(server_url: str, name: str) -> str:
    """`server_url` pointed at database `name` (keeps host, socket dir and options)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(admin: asyncpg.Connection, name: str, template: str) -> None:
    """CREATE DATABASE `name` cloned from `template`, once no server process is in it."""
    give_up = time.monotonic() + GIVE_UP_AFTER
    while True:
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            return
        except asyncpg.ObjectInUseError:  # "source database is being accessed by other users"
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.2)


async def drop_database(admin: asyncpg.Connection, name: str) -> None:
    """DROP DATABASE `name`, ending the sessions still in it."""
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except asyncpg.InsufficientPrivilegeError:
        # "must be a member of the role whose process is being terminated": an autovacuum
        # worker. The tests' own sessions are this role's to end (waiting up to 5 s for
        # each to go); then a plain DROP DATABASE stops the worker.
        await admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = $1 AND usename = current_user AND pid <> pg_backend_pid()",
            name,
        )
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
