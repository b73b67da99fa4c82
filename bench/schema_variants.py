"""The schemas `python -m bench.schema_costs` compares, and the statements each one runs.

A variant is notifyd's schema as migrated with one feature removed (or its claim swapped),
or the minimal schema of `bench/minimal.sql`, or notifyd's schema stripped of everything
removable (to see whether the parts add up to the whole), with the lifecycle statements
of `bench/lifecycle.py` that fit its columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench.lifecycle import (
    ATTEMPTS,
    ATTEMPTS_MINIMAL,
    ATTEMPTS_TEXT,
    CLAIM,
    CLAIM_BY_ID,
    CLAIM_FUNCTION,
    CLAIM_MINIMAL,
    CLAIM_NO_LEASE,
    CLAIM_STRIPPED,
    FINISH,
    FINISH_MINIMAL,
    FINISH_NO_LEASE,
    FINISH_WITH_ATTEMPTS,
)
from bench.tables import MINIMAL, NOTIFYD, Queue


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
            "DROP TRIGGER notifications_status_events ON notifyd.notifications",
            "DROP TRIGGER notifications_status_event_on_insert ON notifyd.notifications",
            "DROP TRIGGER notifications_apply_cancel ON notifyd.notifications",
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
    # Status events (sql/0005_lifecycle.sql): an outbox row per notification finished,
    # written by a statement-level trigger from the statement's transition tables, only
    # while they are recorded (sql/0006). As migrated, recording is off (no instance with
    # webhook endpoints has started): the full schema pays the switch's lookup and the
    # transition tables, this variant what recording adds (an instance with endpoints).
    _notifyd(
        "+ status events recorded (switch on)",
        "INSERT INTO notifyd.status_event_recording (switched_on_by) VALUES ('bench')",
    ),
    # And what is left of the triggers while it is off.
    _notifyd(
        "- status events (outbox triggers)",
        "DROP TRIGGER notifications_status_events ON notifyd.notifications",
        "DROP TRIGGER notifications_status_event_on_insert ON notifyd.notifications",
    ),
    _notifyd(
        "- cancel trigger (apply_cancel)",
        "DROP TRIGGER notifications_apply_cancel ON notifyd.notifications",
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
