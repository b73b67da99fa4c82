"""Rows into typed values: the only place that reads an asyncpg record."""

from __future__ import annotations

from typing import Final

import asyncpg

from notifyd.domain import (
    Attempt,
    Channel,
    ClaimedNotification,
    Notification,
    Recipient,
    Status,
    Suppression,
    User,
)

_CHANNEL_VALUES: Final = frozenset(channel.value for channel in Channel)


def returned(row: asyncpg.Record | None) -> asyncpg.Record:
    """The row an INSERT ... RETURNING always gives back."""
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return row


def user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        email=row["email"],
        phone=row["phone"],
        telegram_chat_id=row["telegram_chat_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        suppressions=suppressions(row),
    )


def suppressions(row: asyncpg.Record) -> tuple[Suppression, ...]:
    """The user's suppressions, from the three arrays the user queries add (by channel)."""
    return tuple(
        Suppression(channel=Channel(channel), reason=reason, since=since)
        for channel, reason, since in zip(
            row.get("suppressed_channels") or (),
            row.get("suppressed_reasons") or (),
            row.get("suppressed_since") or (),
            strict=False,
        )
        # A channel another application wrote that this notifyd does not know is not shown
        # (the table's check keeps them out; this is for a schema changed by hand).
        if channel in _CHANNEL_VALUES
    )


def notification(
    row: asyncpg.Record, *, subject: str | None = None, message: str | None = None
) -> Notification:
    """The notification in `row`; `subject` and `message` when the row leaves them out."""
    return Notification(
        id=row["id"],
        user_id=row["user_id"],
        subject=row["subject"] if subject is None else subject,
        message=row["message"] if message is None else message,
        channels=channel_list(row["channels"]),
        status=Status(row["status"]),
        send_at=row["send_at"],
        priority=row["priority"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        round=row["round"],
        cancel_requested_at=row["cancel_requested_at"],
    )


# By name: a dict lookup, where Channel(name) costs a call through the Enum machinery,
# several per claimed row.
_CHANNELS: Final = {channel.value: channel for channel in Channel}


def channel_list(names: list[str]) -> tuple[Channel, ...]:
    """A stored channel list (the database's check allows known names only)."""
    return tuple(map(_CHANNELS.__getitem__, names))


def attempt(row: asyncpg.Record) -> Attempt:
    return Attempt(
        id=row["id"],
        notification_id=row["notification_id"],
        channel=row["channel"],
        attempt=row["attempt"],
        status=row["status"],
        error=row["error"],
        transient=row["transient"],
        provider_response=row["provider_response"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        round=row["round"],
    )


_NONE_SUPPRESSED: Final[frozenset[Channel]] = frozenset()


def _suppressed(names: list[str] | None) -> frozenset[Channel]:
    # Nearly every user has none: one shared empty set, not a new one per claimed row.
    return frozenset(map(_CHANNELS.__getitem__, names)) if names else _NONE_SUPPRESSED


def claimed(row: asyncpg.Record) -> ClaimedNotification:
    return ClaimedNotification(
        id=row["id"],
        recipient=Recipient(
            user_id=row["user_id"],
            email=row["email"],
            phone=row["phone"],
            telegram_chat_id=row["telegram_chat_id"],
        ),
        subject=row["subject"],
        message=row["message"],
        channels=channel_list(row["channels"]),
        created=row["created"],
        claims=row["claims"],
        priority=row["priority"],
        suppressed=_suppressed(row["suppressed"]),
        round=row["round"],
    )
