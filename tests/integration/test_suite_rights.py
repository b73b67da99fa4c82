"""What the suite says of the rights it needs holds: a test needing CREATEROLE runs with it.

docs/development.md: the suite needs CREATEDB, and the tests that make another
application's role need CREATEROLE. Such a role, not a superuser, is given no membership
in the roles it creates (PostgreSQL 15) or only the right to grant it (16): without
`tests.roles.another_role` granting it, those tests failed on `SET ROLE` instead of
running.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.roles import another_role


@pytest.mark.usefixtures("needs_superuser")
async def test_a_role_with_createrole_and_nothing_more_may_become_another_role(
    db: asyncpg.Connection, database_url: str
) -> None:
    creator = f"notifyd_creator_{uuid.uuid4().hex[:12]}"
    await db.execute(f"CREATE ROLE {creator} LOGIN CREATEROLE")
    try:
        connection = await asyncpg.connect(database_url, user=creator)
        try:
            async with another_role(connection) as role:
                await connection.execute(f"SET ROLE {role}")
                assert await connection.fetchval("SELECT current_user") == role
                await connection.execute("RESET ROLE")
            gone = await connection.fetchval("SELECT to_regrole($1) IS NULL", role)
            assert gone, "the role is dropped after the test"
        finally:
            await connection.close()
    finally:
        await db.execute(f"DROP ROLE {creator}")
