"""Migrations: applied once, in order, even by instances starting at the same moment."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from notifyd.db import Database
from notifyd.db.migrations import load_migrations, migrate
from tests.conftest import EmptyDatabase


@pytest.fixture
async def empty_database_url(empty_database: EmptyDatabase) -> str:
    return await empty_database()


async def test_instances_migrating_at_once_apply_each_migration_once(
    empty_database_url: str,
) -> None:
    stores = [await Database.connect(empty_database_url, min_size=1, max_size=1) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(database.pool) for database in stores))
    finally:
        for database in stores:
            await database.close()
    expected = [m.name for m in load_migrations()]
    # Exactly one instance applied everything; the others waited on the lock and found
    # nothing left to do.
    assert sorted(results, key=len) == [[], [], [], expected]
    connection = await asyncpg.connect(empty_database_url)
    try:
        versions = [
            r["version"]
            for r in await connection.fetch(
                "SELECT version FROM notifyd.schema_migrations ORDER BY version"
            )
        ]
    finally:
        await connection.close()
    assert versions == [m.version for m in load_migrations()]


def test_migration_files_are_numbered_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))
