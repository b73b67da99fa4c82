"""Which asyncpg errors count as a database outage (a 503 and a retry) and which do not."""

from __future__ import annotations

import asyncpg
import pytest

from notifyd.db.connection import translate_errors
from notifyd.errors import ConstraintViolationError, DatabaseUnavailableError


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        TimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.InvalidPasswordError('password authentication failed for user "notifyd"'),
        asyncpg.ObjectNotInPrerequisiteStateError(
            'database "notifyd" is not currently accepting connections'
        ),
        asyncpg.InvalidCatalogNameError('database "notifyd" does not exist'),
        asyncpg.InterfaceError("pool is closing"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_outages_become_database_unavailable(error: Exception) -> None:
    with pytest.raises(DatabaseUnavailableError, match="database unavailable") as caught:
        async with translate_errors():
            raise error
    assert caught.value.__cause__ is error


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
        asyncpg.ObjectInUseError("database is being accessed by other users"),
        asyncpg.UndefinedTableError('relation "notifyd.nope" does not exist'),
        asyncpg.DataError("invalid input"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_query_errors_stay_what_they_are(error: Exception) -> None:
    with pytest.raises(type(error)):
        async with translate_errors():
            raise error


async def test_a_broken_rule_names_its_constraint() -> None:
    error = asyncpg.CheckViolationError("new row violates check constraint")
    error.constraint_name = "notifications_priority_range"  # type: ignore[attr-defined]
    with pytest.raises(ConstraintViolationError) as caught:
        async with translate_errors():
            raise error
    assert caught.value.constraint == "notifications_priority_range"
