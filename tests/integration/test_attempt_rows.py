"""Attempts written as one array of `notifyd.new_attempt` rows (sql/0007)."""

from __future__ import annotations

import json
import time
import uuid

import asyncpg
import pytest

from notifyd.db import Database
from notifyd.db.queue import RECORD_ATTEMPTS
from notifyd.domain import AttemptRecord, AttemptStatus, Channel, Status
from tests.conftest import EmptyDatabase
from tests.roles import another_role
from tests.schema import migrate_database

# What docs/operations.md tells an operator to grant a daemon role that does not own the
# schema.
DOCUMENTED_GRANTS = [
    "GRANT USAGE ON SCHEMA notifyd TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA notifyd TO {role}",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA notifyd TO {role}",
    "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA notifyd TO {role}",
]


async def test_every_field_of_an_attempt_reaches_the_attempt_log(
    db: asyncpg.Connection, database: Database
) -> None:
    user_id = await db.fetchval(
        "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
    )
    notification_id = await db.fetchval(
        "SELECT notifyd.enqueue($1, 'hello', '', ARRAY['sms'])", user_id
    )
    owner = uuid.uuid4()
    (claimed,) = await database.queue.claim(1, owner, 30)
    started = 1_800_000_000.123456
    record = AttemptRecord(
        notification_id=claimed.id,
        channel=Channel.SMS,
        attempt=3,
        status=AttemptStatus.FAILED,
        error="vendor said no",
        transient=False,
        provider_response={"code": 21211, "nested": {"list": [1, "two", None]}},
        started_at=started,
        finished_at=started + 0.25,
        round=1,
    )

    recorded = await database.queue.record_attempts(owner, [(record, Status.FAILED)])

    assert recorded.not_written == set()
    row = await db.fetchrow(
        "SELECT channel, attempt, status, error, transient, provider_response, round,"
        " date_part('epoch', started_at) AS started, date_part('epoch', finished_at) AS finished"
        " FROM notifyd.notification_attempts WHERE notification_id = $1",
        notification_id,
    )
    assert row is not None
    assert {**row, "provider_response": json.loads(row["provider_response"])} == {
        "channel": "sms",
        "attempt": 3,
        "status": "failed",
        "error": "vendor said no",
        "transient": False,
        "provider_response": {"code": 21211, "nested": {"list": [1, "two", None]}},
        "round": 1,
        "started": pytest.approx(started, abs=1e-6),
        "finished": pytest.approx(started + 0.25, abs=1e-6),
    }
    status = await db.fetchval(
        "SELECT status FROM notifyd.notifications WHERE id = $1", notification_id
    )
    assert status == "failed"


@pytest.mark.usefixtures("needs_createrole")
async def test_the_upgrade_lets_a_daemon_role_write_attempts_where_types_are_not_public(
    empty_database: EmptyDatabase,
) -> None:
    # A hardened database: types created from now on are not everyone's to use. A daemon
    # role with the documented grants writes its attempts through the new type all the same
    # (a query may use a type without USAGE on it, which only creating objects needs).
    url = await empty_database()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("ALTER DEFAULT PRIVILEGES REVOKE USAGE ON TYPES FROM PUBLIC")
        assert "0007_attempt_rows" in await migrate_database(url)
        user_id = await connection.fetchval(
            "INSERT INTO notifyd.users (phone) VALUES ('+79001234567') RETURNING id"
        )
        notification_id = await connection.fetchval(
            "SELECT notifyd.enqueue($1, 'hello', '', ARRAY['sms'])", user_id
        )
        async with another_role(connection) as role:
            for grant in DOCUMENTED_GRANTS:
                await connection.execute(grant.format(role=role))
            owner = uuid.uuid4()
            await connection.execute(f"SET ROLE {role}")
            try:
                await connection.fetch("SELECT * FROM notifyd.claim(1, $1, 30)", owner)
                now = time.time()
                attempt = (notification_id, "sms", 1, "success", None, None, None, now, now, 1)
                answer = await connection.fetchrow(
                    RECORD_ATTEMPTS, owner, [notification_id], [attempt], [notification_id], [], []
                )
            finally:
                await connection.execute("RESET ROLE")
        assert answer is not None
        assert answer["not_written"] == []
        status = await connection.fetchval(
            "SELECT status FROM notifyd.notifications WHERE id = $1", notification_id
        )
        assert status == "sent"
    finally:
        await connection.close()
