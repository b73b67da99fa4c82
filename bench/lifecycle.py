"""The delivery lifecycle `python -m bench.schema_costs` runs in the server, and its statements.

A procedure (`LIFECYCLE`) claims up to 100 with SKIP LOCKED, writes their attempts and
finishes them, committing after each statement: the bare loop's three statements. Each is
run with EXECUTE, so it is planned for each call with its arguments, as the bare loop's
are (`plan_cache_mode=force_custom_plan`) and as `notifyd.claim()` plans its own.

Statement parameters: a claim gets ($1 batch, $2 owner) and returns the claimed ids as
one array; an attempt write gets ($1 ids); a finish gets ($1 ids, $2 owner). With an empty
attempt statement the finish writes the attempts, as notifyd does.
"""

from __future__ import annotations

from typing import Final

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
