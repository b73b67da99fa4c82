"""What the wake-up NOTIFY costs other applications' commits: one-row enqueues per second.

`python -m bench.notify_commits URL` on a database notifyd migrated (with nothing
delivering from it): from 1, 8 and 32 connections at once, each commits one
`notifyd.enqueue()` per transaction, with the wake-up trigger on, then off. PostgreSQL holds
a database-wide lock from a notifying transaction's commit until it is flushed, so those
commits queue behind each other: this is where other applications' one-row enqueues meet
their ceiling. The API is not held back as much: it writes the requests that arrive
together in one statement, one commit and one NOTIFY.

The trigger is disabled for the second run and enabled again after it (ALTER TABLE: the
role must own the table). The rows written are deleted at the end.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Final

import asyncpg

TRIGGER: Final = "notifications_wake_dispatcher"
CONNECTIONS: Final = (1, 8, 32)
PER_CONNECTION: Final = 200


async def _run(url: str, connections: int, trigger: bool, user_id: int) -> float:
    admin = await asyncpg.connect(url)
    try:
        state = "ENABLE" if trigger else "DISABLE"
        await admin.execute(f"ALTER TABLE notifyd.notifications {state} TRIGGER {TRIGGER}")
    finally:
        await admin.close()
    pool = [await asyncpg.connect(url) for _ in range(connections)]
    try:

        async def enqueue(connection: asyncpg.Connection) -> None:
            for _ in range(PER_CONNECTION):
                await connection.execute(
                    "SELECT notifyd.enqueue($1, 'bench', '', ARRAY['sms'])", user_id
                )

        started = time.monotonic()
        await asyncio.gather(*(enqueue(connection) for connection in pool))
        return connections * PER_CONNECTION / (time.monotonic() - started)
    finally:
        for connection in pool:
            await connection.close()


async def main(url: str) -> None:
    admin = await asyncpg.connect(url)
    try:
        user_id = await admin.fetchval(
            "INSERT INTO notifyd.users (email) VALUES ('bench@example.com') RETURNING id"
        )
        first = await admin.fetchval("SELECT coalesce(max(id), 0) FROM notifyd.notifications")
    finally:
        await admin.close()
    try:
        for connections in CONNECTIONS:
            on = await _run(url, connections, True, user_id)
            off = await _run(url, connections, False, user_id)
            print(
                f"{connections:>2} connections: {on:,.0f} commits/s with the NOTIFY trigger,"
                f" {off:,.0f} without ({on / off:.2f})",
                flush=True,
            )
    finally:
        admin = await asyncpg.connect(url)
        try:
            await admin.execute(f"ALTER TABLE notifyd.notifications ENABLE TRIGGER {TRIGGER}")
            await admin.execute("DELETE FROM notifyd.notifications WHERE id > $1", first)
            await admin.execute("DELETE FROM notifyd.users WHERE id = $1", user_id)
        finally:
            await admin.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.notify_commits URL")
    asyncio.run(main(sys.argv[1]))
