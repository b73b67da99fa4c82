"""Another application's role, made for a test and dropped after it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


@asynccontextmanager
async def another_role(connection: asyncpg.Connection) -> AsyncIterator[str]:
    """A new role (no login, no rights) that `connection` may `SET ROLE` to; dropped after.

    The role is granted to the current user: a role with CREATEROLE and no superuser
    otherwise may neither become it nor drop what it owns (PostgreSQL 15 gives the creator
    no membership, 16 only the right to grant it).
    """
    role = f"notifyd_app_{uuid.uuid4().hex[:12]}"
    await connection.execute(f"CREATE ROLE {role}")
    try:
        await connection.execute(f"GRANT {role} TO CURRENT_USER")
        yield role
    finally:
        await connection.execute(f"DROP OWNED BY {role}")
        await connection.execute(f"DROP ROLE {role}")
