"""The database's checks speak notifyd.domain's vocabulary: exactly its names, no others.

Other applications write these tables directly, so a name the Python side knows and the
database refuses (or the reverse) would split the two: a name added to `Channel`,
`Status` or `AttemptStatus` and not to sql/, or to sql/ and not to the enum, fails here.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from enum import StrEnum

import asyncpg
import pytest

from notifyd.domain import AttemptStatus, Channel, Status

# Near misses of every kind: another enum's names, case, blanks, plural, unknown words.
NOT_CHANNELS = ["Email", "EMAIL", "email ", "", "fax", "push", "emails", "pending"]
NOT_STATUSES = ["Pending", "SENT", "", "queued", "cancelled", "delivered", *AttemptStatus]
NOT_ATTEMPT_STATUSES = ["Success", "FAILED", "", "ok", "error", *Status]


def outside(names: list[str], vocabulary: type[StrEnum]) -> list[str]:
    """`names` that are not members of `vocabulary` (other enums share some names)."""
    return [name for name in names if name not in {member.value for member in vocabulary}]


@pytest.fixture
async def user_id(db: asyncpg.Connection) -> int:
    new_id: int = await db.fetchval(
        "INSERT INTO notifyd.users (email) VALUES ('a@example.com') RETURNING id"
    )
    return new_id


async def insert_notification(
    db: asyncpg.Connection, user_id: int, *, channels: list[str], status: str = "pending"
) -> None:
    # A processing row holds a lease (notifications_lease_consistent); no other row does.
    leased = status == Status.PROCESSING
    await db.execute(
        """
        INSERT INTO notifyd.notifications (user_id, message, channels, status, locked_by,
                                           lease_expires_at)
        VALUES ($1, 'hello', $2, $3,
                CASE WHEN $4 THEN gen_random_uuid() END,
                CASE WHEN $4 THEN now() + interval '1 minute' END)
        """,
        user_id,
        channels,
        status,
        leased,
    )


async def insert_attempt(db: asyncpg.Connection, *, channel: str, status: str) -> None:
    await db.execute(
        """
        INSERT INTO notifyd.notification_attempts
            (notification_id, channel, attempt, status, started_at, finished_at)
        VALUES (1, $1, 1, $2, now(), now())
        """,
        channel,
        status,
    )


async def refused_by(write: Awaitable[None]) -> str:
    """The constraint that refused the write."""
    with pytest.raises(asyncpg.CheckViolationError) as refused:
        await write
    return str(refused.value.constraint_name)


async def names_in_check(db: asyncpg.Connection, constraint: str) -> list[str]:
    """The string literals of a CHECK constraint's definition: the names it accepts."""
    definition: str = await db.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conname = $1 AND connamespace = 'notifyd'::regnamespace",
        constraint,
    )
    return re.findall(r"'([^']*)'::text", definition)


@pytest.mark.parametrize(
    ("constraint", "vocabulary"),
    [("notifications_status_known", Status), ("attempts_status_known", AttemptStatus)],
)
async def test_status_checks_name_exactly_the_enum(
    db: asyncpg.Connection, constraint: str, vocabulary: type[StrEnum]
) -> None:
    # Nothing else: a name the check accepts beyond the enum's would show here, even one
    # that no near miss below happens to try.
    assert await names_in_check(db, constraint) == [member.value for member in vocabulary]


async def test_known_channels_are_the_channel_enum_in_order(db: asyncpg.Connection) -> None:
    assert await db.fetchval("SELECT notifyd.known_channels()") == list(Channel)
    # The column's default is that list: the default fallback order.
    default = await db.fetchval(
        "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef"
        " WHERE adrelid = 'notifyd.notifications'::regclass"
        "   AND adnum = (SELECT attnum FROM pg_attribute"
        "                WHERE attrelid = adrelid AND attname = 'channels')"
    )
    assert default == "notifyd.known_channels()"


async def test_notifications_accept_exactly_the_channels(
    db: asyncpg.Connection, user_id: int
) -> None:
    for channel in Channel:
        await insert_notification(db, user_id, channels=[channel])
    await insert_notification(db, user_id, channels=list(Channel))
    for name in outside(NOT_CHANNELS, Channel):
        refused = await refused_by(insert_notification(db, user_id, channels=[name]))
        assert refused == "notifications_channels_valid", name
        refused = await refused_by(insert_notification(db, user_id, channels=[*Channel, name]))
        assert refused == "notifications_channels_valid", name
    assert await db.fetchval("SELECT count(*) FROM notifyd.notifications") == len(Channel) + 1


async def test_attempts_accept_exactly_the_channels(db: asyncpg.Connection) -> None:
    for channel in Channel:
        await insert_attempt(db, channel=channel, status=AttemptStatus.SUCCESS)
    for name in outside(NOT_CHANNELS, Channel):
        refused = await refused_by(insert_attempt(db, channel=name, status="success"))
        assert refused == "attempts_channel_known", name
    assert await db.fetchval("SELECT count(*) FROM notifyd.notification_attempts") == len(Channel)


async def test_notifications_accept_exactly_the_statuses(
    db: asyncpg.Connection, user_id: int
) -> None:
    for status in Status:
        await insert_notification(db, user_id, channels=["sms"], status=status)
    for name in outside(NOT_STATUSES, Status):
        refused = await refused_by(insert_notification(db, user_id, channels=["sms"], status=name))
        assert refused == "notifications_status_known", name
    stored = await db.fetch("SELECT status FROM notifyd.notifications ORDER BY id")
    assert [row["status"] for row in stored] == list(Status)


async def test_attempts_accept_exactly_the_attempt_statuses(db: asyncpg.Connection) -> None:
    for status in AttemptStatus:
        await insert_attempt(db, channel=Channel.SMS, status=status)
    for name in outside(NOT_ATTEMPT_STATUSES, AttemptStatus):
        refused = await refused_by(insert_attempt(db, channel="sms", status=name))
        assert refused == "attempts_status_known", name
    stored = await db.fetch("SELECT status FROM notifyd.notification_attempts ORDER BY id")
    assert [row["status"] for row in stored] == list(AttemptStatus)
