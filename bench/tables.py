"""Which tables each process under test delivers from, and the harness's queries on them.

notifyd and the bare loop share notifyd's schema; the minimal loop has its own tables
(`bench/minimal.sql`), where `updated_at` is the finish time. The harness fills and reads
either through the same `Queue` fields, so a scenario names only who it measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

# notifyd; the bare loop on notifyd's schema; the same loop on the minimal schema.
Who = Literal["notifyd", "bare", "minimal"]


@dataclass(frozen=True)
class Queue:
    """The harness's queries on one schema's queue."""

    # The bare loop's `--schema`, and the schema's name in the database.
    schema: str
    # $1 notifications for users 1..$2 on channels $3, in one statement.
    insert_series: str
    count_done: str
    count_all: str
    max_id: str
    # sent, failed, last_finished, attempts, first_started.
    stats: str
    # Milliseconds from insert to sent, ascending, of the notifications after id $1.
    latencies: str


NOTIFYD: Final = Queue(
    schema="notifyd",
    insert_series="""
        INSERT INTO notifyd.notifications (user_id, subject, message, channels)
        SELECT 1 + (g % $2), 'bench', 'benchmark message ' || g, $3::text[]
        FROM generate_series(1, $1) AS g
    """,
    count_done="""
        SELECT count(*) FROM notifyd.notifications WHERE status IN ('sent', 'failed')
    """,
    count_all="SELECT count(*) FROM notifyd.notifications",
    max_id="SELECT coalesce(max(id), 0) FROM notifyd.notifications",
    stats="""
        SELECT count(*) FILTER (WHERE status = 'sent') AS sent,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               max(finished_at) AS last_finished,
               (SELECT count(*) FROM notifyd.notification_attempts) AS attempts,
               (SELECT min(started_at) FROM notifyd.notification_attempts) AS first_started
        FROM notifyd.notifications
    """,
    latencies="""
        SELECT extract(epoch FROM finished_at - created_at) * 1000 AS ms
        FROM notifyd.notifications
        WHERE status = 'sent' AND id > $1
        ORDER BY 1
    """,
)

MINIMAL: Final = Queue(
    schema="minimal",
    insert_series="""
        INSERT INTO minimal.notifications (user_id, subject, message, channels)
        SELECT 1 + (g % $2), 'bench', 'benchmark message ' || g, $3::text[]
        FROM generate_series(1, $1) AS g
    """,
    count_done="""
        SELECT count(*) FROM minimal.notifications WHERE status IN ('sent', 'failed')
    """,
    count_all="SELECT count(*) FROM minimal.notifications",
    max_id="SELECT coalesce(max(id), 0) FROM minimal.notifications",
    stats="""
        SELECT count(*) FILTER (WHERE status = 'sent') AS sent,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               max(updated_at) FILTER (WHERE status IN ('sent', 'failed')) AS last_finished,
               (SELECT count(*) FROM minimal.attempts) AS attempts,
               (SELECT min(started_at) FROM minimal.attempts) AS first_started
        FROM minimal.notifications
    """,
    latencies="""
        SELECT extract(epoch FROM updated_at - created_at) * 1000 AS ms
        FROM minimal.notifications
        WHERE status = 'sent' AND id > $1
        ORDER BY 1
    """,
)


def queue_of(who: Who) -> Queue:
    return MINIMAL if who == "minimal" else NOTIFYD
