"""A pooled connection left in an unknown state is dropped, never handed out again."""

from __future__ import annotations

import pytest

from notifyd.db import Database


async def test_a_connection_whose_query_timed_out_is_replaced(database_url: str) -> None:
    database = await Database.connect(database_url, min_size=1, max_size=1)
    try:
        before = await database.pool.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(TimeoutError):  # asyncpg cancels the query on its side
            await database.pool.fetchval("SELECT pg_sleep(5)", query_timeout=0.05)
        await database.ping(query_timeout=5)
        after = await database.pool.fetchval("SELECT pg_backend_pid()")
        assert after != before
    finally:
        await database.close()


async def test_a_connection_is_kept_after_a_refused_statement(database_url: str) -> None:
    database = await Database.connect(database_url, min_size=1, max_size=1)
    try:
        before = await database.pool.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(Exception, match="division by zero"):
            await database.pool.fetchval("SELECT 1 / 0")
        assert await database.pool.fetchval("SELECT pg_backend_pid()") == before
    finally:
        await database.close()
