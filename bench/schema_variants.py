"""The schemas `python -m bench.schema_costs` compares, and the lifecycle each one runs.

A variant is notifyd's schema as migrated with one feature removed (or its claim swapped),
or the minimal schema of `bench/minimal.sql`, or notifyd's schema stripped of everything
removable (to see whether the parts add up to the whole). Its lifecycle is the bare loop's
three statements, run by a procedure in the server (`LIFECYCLE`): claim up to 100 with
SKIP LOCKED, write their attempts, finish them, committing after each. Each statement is
run with EXECUTE, so it is planned for each call with its arguments, as the bare loop's
are (`plan_cache_mode=force_custom_plan`) and as `notifyd.claim()` plans its own.

Statement parameters: a claim gets ($1 batch, $2 owner) and returns the claimed ids as
one array; an attempt write gets ($1 ids); a finish gets ($1 ids, $2 owner). A variant
with no attempt statement writes its attempts in the finish, as notifyd does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench.tables import MINIMAL, NOTIFYD, Queue

# Runs the lifecycle until nothing is left to claim; returns the count and the server's
# time. `batch` and `owner` are passed to every claim and finish, used or not.
LIFECYCLE: Final = """
    CREATE PROCEDURE pg_temp.lifecycle(
        batch integer, claim text, attempts text, finish text,
        INOUT delivered integer DEFAULT NULL, INOUT seconds double precision DEFAULT NULL)
    LANGUAGE plpgsql
    AS $$
    DECLARE
        ids bigint[];
        owner uuid := gen_random_uuid();
        started timestamptz := clock_timestamp();
    BEGIN
        delivered := 0;
        LOOP
            EXECUTE claim INTO ids USING batch, owner;
            COMMIT;
            EXIT WHEN ids IS NULL;
            IF attempts <> '' THEN
                EXECUTE attempts USING ids;
                COMMIT;
            END IF;
            EXECUTE finish USING ids, owner;
            COMMIT;
            delivered := delivered + cardinality(ids);
        END LOOP;
        seconds := extract(epoch FROM clock_timestamp() - started);
    END
    $$
"""

# Claims ------------------------------------------------------------------------------------

# The bare loop's claim on notifyd's schema (and `bench/server_lifecycle.sql`'s).
CLAIM: Final = """
    WITH picked AS (
        SELECT id FROM notifyd.notifications
        WHERE status = 'pending' AND run_after <= now()
        ORDER BY priority DESC, run_after, id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE notifyd.notifications AS n
        SET status = 'processing', locked_by = $2, lease_expires_at = now() + interval '30 s',
            claims = n.claims + 1, updated_at = now()
        FROM picked, notifyd.users AS u
        WHERE n.id = picked.id AND u.id = n.user_id
        RETURNING n.id, u.phone
    )
    SELECT array_agg(id) FROM claimed
"""
# The same, walking a pending index on id alone (no priority, no schedule order).
CLAIM_BY_ID: Final = """
    WITH picked AS (
        SELECT id FROM notifyd.notifications
        WHERE status = 'pending' AND run_after <= now()
        ORDER BY id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE notifyd.notifications AS n
        SET status = 'processing', locked_by = $2, lease_expires_at = now() + interval '30 s',
            claims = n.claims + 1, updated_at = now()
        FROM picked, notifyd.users AS u
        WHERE n.id = picked.id AND u.id = n.user_id
        RETURNING n.id, u.phone
    )
    SELECT array_agg(id) FROM claimed
"""
# Without lease columns: the status alone says a row is taken.
CLAIM_NO_LEASE: Final = """
    WITH picked AS (
        SELECT id FROM notifyd.notifications
        WHERE status = 'pending' AND run_after <= now()
        ORDER BY priority DESC, run_after, id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE notifyd.notifications AS n
        SET status = 'processing', claims = n.claims + 1, updated_at = now()
        FROM picked, notifyd.users AS u
        WHERE n.id = picked.id AND u.id = n.user_id
        RETURNING n.id, u.phone
    )
    SELECT array_agg(id) FROM claimed
"""
# Neither lease columns nor the priority order.
CLAIM_STRIPPED: Final = """
    WITH picked AS (
        SELECT id FROM notifyd.notifications
        WHERE status = 'pending' AND run_after <= now()
        ORDER BY id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE notifyd.notifications AS n
        SET status = 'processing', claims = n.claims + 1, updated_at = now()
        FROM picked, notifyd.users AS u
        WHERE n.id = picked.id AND u.id = n.user_id
        RETURNING n.id, u.phone
    )
    SELECT array_agg(id) FROM claimed
"""
# notifyd's own claim, the function in its schema (with its planner settings, or without).
CLAIM_FUNCTION: Final = "SELECT array_agg(id) FROM notifyd.claim($1, $2, 30)"
# The bare minimal loop's claim (`bench/baseline.py`).
CLAIM_MINIMAL: Final = """
    WITH picked AS (
        SELECT id FROM minimal.notifications
        WHERE status = 'pending'
        ORDER BY id
        LIMIT $1
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE minimal.notifications AS n
        SET status = 'processing', updated_at = now()
        FROM picked, minimal.users AS u
        WHERE n.id = picked.id AND u.id = n.user_id
        RETURNING n.id, u.phone
    )
    SELECT array_agg(id) FROM claimed
"""

# Attempts ----------------------------------------------------------------------------------

# One SMS success each, with a provider answer built per row as the loop's arrives: a
# constant would be cast to jsonb once per statement and hide what the cast costs.
ATTEMPTS: Final = """
    INSERT INTO notifyd.notification_attempts
        (notification_id, channel, attempt, status, provider_response, started_at, finished_at)
    SELECT id, 'sms', 1, 'success',
           ('{"provider": "stub", "status": "accepted", "to": "+7900'
            || lpad(id::text, 7, '0') || '"}')::jsonb,
           clock_timestamp(), clock_timestamp()
    FROM unnest($1::bigint[]) AS id
"""
ATTEMPTS_TEXT: Final = """
    INSERT INTO notifyd.notification_attempts
        (notification_id, channel, attempt, status, provider_response, started_at, finished_at)
    SELECT id, 'sms', 1, 'success',
           '{"provider": "stub", "status": "accepted", "to": "+7900'
            || lpad(id::text, 7, '0') || '"}',
           clock_timestamp(), clock_timestamp()
    FROM unnest($1::bigint[]) AS id
"""
ATTEMPTS_MINIMAL: Final = """
    INSERT INTO minimal.attempts
        (notification_id, channel, attempt, status, provider_response, started_at, finished_at)
    SELECT id, 'sms', 1, 'success',
           '{"provider": "stub", "status": "accepted", "to": "+7900'
            || lpad(id::text, 7, '0') || '"}',
           clock_timestamp(), clock_timestamp()
    FROM unnest($1::bigint[]) AS id
"""

# Finishes ----------------------------------------------------------------------------------

FINISH: Final = """
    UPDATE notifyd.notifications
    SET status = 'sent', locked_by = NULL, lease_expires_at = NULL,
        finished_at = now(), updated_at = now()
    WHERE id = ANY($1) AND locked_by = $2
"""
FINISH_NO_LEASE: Final = """
    UPDATE notifyd.notifications
    SET status = 'sent', finished_at = now(), updated_at = now()
    WHERE id = ANY($1) AND status = 'processing'
"""
# As notifyd records a batch: statuses and attempts in one statement and one commit, the
# attempts written only where the lease is still held.
FINISH_WITH_ATTEMPTS: Final = """
    WITH finished AS (
        UPDATE notifyd.notifications AS n
        SET status = 'sent', locked_by = NULL, lease_expires_at = NULL,
            finished_at = now(), updated_at = now()
        WHERE n.id = ANY($1) AND n.locked_by = $2 AND n.lease_expires_at IS NOT NULL
        RETURNING n.id
    )
    INSERT INTO notifyd.notification_attempts
        (notification_id, channel, attempt, status, provider_response, started_at, finished_at)
    SELECT id, 'sms', 1, 'success',
           ('{"provider": "stub", "status": "accepted", "to": "+7900'
            || lpad(id::text, 7, '0') || '"}')::jsonb,
           clock_timestamp(), clock_timestamp()
    FROM finished
"""
FINISH_MINIMAL: Final = """
    UPDATE minimal.notifications
    SET status = 'sent', updated_at = now()
    WHERE id = ANY($1) AND status = 'processing'
"""


@dataclass(frozen=True)
class Variant:
    """A schema (notifyd's changed by `ddl`, or the minimal one) and its lifecycle."""

    name: str
    queue: Queue
    claim: str
    attempts: str
    finish: str
    ddl: tuple[str, ...] = ()


def _notifyd(name: str, *ddl: str, claim: str = CLAIM, attempts: str = ATTEMPTS) -> Variant:
    return Variant(name, NOTIFYD, claim, attempts, FINISH, ddl)


FULL: Final = "notifyd (full)"
MINIMAL_NAME: Final = "minimal (bench/minimal.sql)"

VARIANTS: Final[tuple[Variant, ...]] = (
    _notifyd(FULL),
    Variant(MINIMAL_NAME, MINIMAL, CLAIM_MINIMAL, ATTEMPTS_MINIMAL, FINISH_MINIMAL),
    Variant(
        "stripped: notifyd's columns only",
        NOTIFYD,
        CLAIM_STRIPPED,
        ATTEMPTS_TEXT,
        FINISH_NO_LEASE,
        (
            """
            ALTER TABLE notifyd.notifications
                DROP CONSTRAINT notifications_status_known,
                DROP CONSTRAINT notifications_subject_single_line,
                DROP CONSTRAINT notifications_subject_length,
                DROP CONSTRAINT notifications_channels_valid,
                DROP CONSTRAINT notifications_lease_consistent,
                DROP CONSTRAINT notifications_priority_range,
                DROP CONSTRAINT notifications_user_id_fkey,
                DROP COLUMN locked_by,
                DROP COLUMN lease_expires_at
            """,
            """
            ALTER TABLE notifyd.idempotency_keys
                DROP CONSTRAINT idempotency_keys_notification_id_fkey
            """,
            "DROP INDEX notifyd.notifications_finished_idx, notifyd.notifications_user_idx",
            "DROP INDEX notifyd.notifications_pending_idx",
            """
            CREATE INDEX notifications_pending_idx
                ON notifyd.notifications (id) WHERE status = 'pending'
            """,
            "DROP TRIGGER notifications_check_message ON notifyd.notifications",
            "DROP TRIGGER notifications_schedule ON notifyd.notifications",
            "DROP TRIGGER notifications_delete_attempts ON notifyd.notifications",
            "DROP TRIGGER notifications_truncate_attempts ON notifyd.notifications",
            """
            ALTER TABLE notifyd.notification_attempts
                DROP CONSTRAINT attempts_status_known,
                DROP CONSTRAINT attempts_attempt_positive,
                DROP CONSTRAINT attempts_channel_known,
                DROP CONSTRAINT attempts_times_ordered,
                ALTER COLUMN provider_response TYPE text
            """,
            """
            DROP INDEX notifyd.notification_attempts_notification_idx,
                notifyd.notification_attempts_finished_idx
            """,
        ),
    ),
    # The queue's CHECK constraints: PostgreSQL evaluates every one again on each UPDATE.
    _notifyd(
        "- all 6 notification CHECKs",
        """
        ALTER TABLE notifyd.notifications
            DROP CONSTRAINT notifications_status_known,
            DROP CONSTRAINT notifications_subject_single_line,
            DROP CONSTRAINT notifications_subject_length,
            DROP CONSTRAINT notifications_channels_valid,
            DROP CONSTRAINT notifications_lease_consistent,
            DROP CONSTRAINT notifications_priority_range
        """,
    ),
    _notifyd(
        "- channels CHECK (valid_channels)",
        "ALTER TABLE notifyd.notifications DROP CONSTRAINT notifications_channels_valid",
    ),
    _notifyd(
        "- subject CHECKs (single line, length)",
        """
        ALTER TABLE notifyd.notifications
            DROP CONSTRAINT notifications_subject_single_line,
            DROP CONSTRAINT notifications_subject_length
        """,
    ),
    _notifyd(
        "- status and priority CHECKs",
        """
        ALTER TABLE notifyd.notifications
            DROP CONSTRAINT notifications_status_known,
            DROP CONSTRAINT notifications_priority_range
        """,
    ),
    _notifyd(
        "- lease consistency CHECK",
        "ALTER TABLE notifyd.notifications DROP CONSTRAINT notifications_lease_consistent",
    ),
    Variant(
        "- lease columns (with their CHECK and index)",
        NOTIFYD,
        CLAIM_NO_LEASE,
        ATTEMPTS,
        FINISH_NO_LEASE,
        (
            """
            ALTER TABLE notifyd.notifications
                DROP CONSTRAINT notifications_lease_consistent,
                DROP COLUMN locked_by,
                DROP COLUMN lease_expires_at
            """,
        ),
    ),
    _notifyd(
        "- user foreign key",
        "ALTER TABLE notifyd.notifications DROP CONSTRAINT notifications_user_id_fkey",
    ),
    # Referenced, not referencing: every UPDATE of a notification asks whether its key
    # changed before it can skip the check.
    _notifyd(
        "- idempotency keys' foreign key",
        """
        ALTER TABLE notifyd.idempotency_keys
            DROP CONSTRAINT idempotency_keys_notification_id_fkey
        """,
    ),
    _notifyd(
        "- message trigger",
        "DROP TRIGGER notifications_check_message ON notifyd.notifications",
    ),
    # A BEFORE UPDATE row trigger makes PostgreSQL lock each row it updates before it
    # looks at the trigger's column list, so the message check costs every status update a
    # tuple lock (a WAL record). An AFTER UPDATE OF message trigger is queued only when the
    # message is set: the same rule without the lock.
    _notifyd(
        "message trigger on insert + AFTER UPDATE OF message",
        "DROP TRIGGER notifications_check_message ON notifyd.notifications",
        """
        CREATE TRIGGER notifications_check_message
            BEFORE INSERT ON notifyd.notifications
            FOR EACH ROW EXECUTE FUNCTION notifyd.check_message()
        """,
        """
        CREATE TRIGGER notifications_check_message_update
            AFTER UPDATE OF message ON notifyd.notifications
            FOR EACH ROW EXECUTE FUNCTION notifyd.check_message()
        """,
    ),
    _notifyd(
        "- schedule trigger",
        "DROP TRIGGER notifications_schedule ON notifyd.notifications",
    ),
    _notifyd(
        "- wake-up (NOTIFY) trigger",
        "DROP TRIGGER notifications_wake_dispatcher ON notifyd.notifications",
    ),
    _notifyd(
        "- attempt-log delete triggers",
        "DROP TRIGGER notifications_delete_attempts ON notifyd.notifications",
        "DROP TRIGGER notifications_truncate_attempts ON notifyd.notifications",
    ),
    _notifyd(
        "- processing index",
        "DROP INDEX notifyd.notifications_processing_idx",
    ),
    _notifyd(
        "- finished index",
        "DROP INDEX notifyd.notifications_finished_idx",
    ),
    _notifyd(
        "- user index",
        "DROP INDEX notifyd.notifications_user_idx",
    ),
    _notifyd(
        "pending index on id (no priority order)",
        "DROP INDEX notifyd.notifications_pending_idx",
        "CREATE INDEX notifications_pending_idx ON notifyd.notifications (id) "
        "WHERE status = 'pending'",
        claim=CLAIM_BY_ID,
    ),
    _notifyd(
        "- attempts (notification_id, id) index",
        "DROP INDEX notifyd.notification_attempts_notification_idx",
    ),
    _notifyd(
        "- attempts finished_at index",
        "DROP INDEX notifyd.notification_attempts_finished_idx",
    ),
    _notifyd(
        "- attempts CHECKs",
        """
        ALTER TABLE notifyd.notification_attempts
            DROP CONSTRAINT attempts_status_known,
            DROP CONSTRAINT attempts_attempt_positive,
            DROP CONSTRAINT attempts_channel_known,
            DROP CONSTRAINT attempts_times_ordered
        """,
    ),
    _notifyd(
        "provider_response text, not jsonb",
        """
        ALTER TABLE notifyd.notification_attempts
            ALTER COLUMN provider_response TYPE text
        """,
        attempts=ATTEMPTS_TEXT,
    ),
    _notifyd("claim by notifyd.claim()", claim=CLAIM_FUNCTION),
    _notifyd(
        "claim by notifyd.claim() without its SET",
        "ALTER FUNCTION notifyd.claim(integer, uuid, double precision) RESET ALL",
        claim=CLAIM_FUNCTION,
    ),
    Variant(
        "notifyd's 2 statements: claim(), attempts with statuses",
        NOTIFYD,
        CLAIM_FUNCTION,
        "",
        FINISH_WITH_ATTEMPTS,
    ),
)
