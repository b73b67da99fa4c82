-- Lifecycle control and status webhooks: cancel, retry, rounds of attempts, and an outbox
-- of status events written in the same transaction as the final status.
--
-- Cancel: notifyd.cancel(id) makes a pending notification `cancelled` at once. One being
-- delivered (`processing`) gets `cancel_requested_at`: the instance holding it starts no
-- further attempt and ends it `cancelled`, or `sent` if the attempt under way succeeds.
-- Whatever hands such a row back (a release, an expired lease, a takeover, a failure) ends
-- it `cancelled` instead: the trigger notifications_apply_cancel below.
--
-- Retry: notifyd.retry(id) puts a failed or cancelled notification back in the queue for a
-- new round, delivered from its first channel again; the attempts of earlier rounds stay in
-- the log, each with its round.
--
-- Both are plain functions, usable inside another application's transaction: nothing
-- happens unless it commits (NOTIFY too is sent only at commit).

ALTER TABLE notifyd.notifications
    DROP CONSTRAINT notifications_status_known,
    ADD CONSTRAINT notifications_status_known
        CHECK (status IN ('pending', 'processing', 'sent', 'failed', 'cancelled')),
    -- Which delivery round this is: 1, then one more for each retry.
    ADD COLUMN round integer NOT NULL DEFAULT 1,
    ADD CONSTRAINT notifications_round_positive CHECK (round >= 1),
    -- Set by a cancel while the notification was being delivered.
    ADD COLUMN cancel_requested_at timestamptz,
    ADD CONSTRAINT notifications_cancel_requested_at_in_range
        CHECK (notifyd.timestamp_in_range(cancel_requested_at));

ALTER TABLE notifyd.notification_attempts
    ADD COLUMN round integer NOT NULL DEFAULT 1,
    ADD CONSTRAINT attempts_round_positive CHECK (round >= 1);


-- A notification whose cancel was asked for never goes back to the queue and never ends
-- `failed`: whoever writes it so (notifyd's release, requeue or final write, or another
-- application's UPDATE or INSERT) gets `cancelled`, with its finish time. Only such rows run
-- the function; the WHEN clause costs every other update next to nothing.
CREATE FUNCTION notifyd.apply_cancel() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        NEW.status := 'cancelled';
        NEW.locked_by := NULL;
        NEW.lease_expires_at := NULL;
        NEW.finished_at := coalesce(NEW.finished_at, now());
        RETURN NEW;
    END
    $$;

CREATE TRIGGER notifications_apply_cancel
    BEFORE INSERT OR UPDATE ON notifyd.notifications
    FOR EACH ROW
    WHEN (NEW.cancel_requested_at IS NOT NULL AND NEW.status IN ('pending', 'failed'))
    EXECUTE FUNCTION notifyd.apply_cancel();


-- Cancel ---------------------------------------------------------------------------------

-- True when the notification was pending (now cancelled) or processing (its cancel is
-- asked for, and the instance holding it is told at commit); false when there is no such
-- notification or it is final already. Asking twice is harmless.
CREATE FUNCTION notifyd.cancel(notification_id bigint) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
    DECLARE
        now_status text;
    BEGIN
        UPDATE notifyd.notifications AS n
        SET status = CASE WHEN n.status = 'pending' THEN 'cancelled' ELSE n.status END,
            finished_at = CASE WHEN n.status = 'pending' THEN now() ELSE n.finished_at END,
            cancel_requested_at = coalesce(n.cancel_requested_at, now()),
            -- Not on a processing row: there updated_at is its holder's heartbeat.
            updated_at = CASE WHEN n.status = 'pending' THEN now() ELSE n.updated_at END
        WHERE n.id = cancel.notification_id AND n.status IN ('pending', 'processing')
        RETURNING n.status INTO now_status;
        IF now_status IS NULL THEN
            RETURN false;
        END IF;
        IF now_status = 'processing' THEN
            PERFORM pg_notify('notifyd_cancel', cancel.notification_id::text);
        END IF;
        RETURN true;
    END
    $$;


-- Retry ----------------------------------------------------------------------------------

-- True when a failed or cancelled notification went back to the queue for a new round;
-- false when there is no such notification or it is not failed or cancelled. Scheduled
-- ones wait for their send_at again if it is still ahead.
CREATE FUNCTION notifyd.retry(notification_id bigint) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
    BEGIN
        UPDATE notifyd.notifications AS n
        SET status = 'pending',
            round = least(n.round, 2147483646) + 1,
            cancel_requested_at = NULL,
            finished_at = NULL,
            -- The claim count is per round: the next claim starts from the first channel.
            claims = 0,
            run_after = greatest(now(), coalesce(n.send_at, now())),
            updated_at = now()
        WHERE n.id = retry.notification_id AND n.status IN ('failed', 'cancelled');
        IF NOT FOUND THEN
            RETURN false;
        END IF;
        PERFORM pg_notify('notifyd_wakeup', '');
        RETURN true;
    END
    $$;


-- The claim also answers the round ---------------------------------------------------------

DROP FUNCTION notifyd.claim(integer, uuid, double precision);
CREATE FUNCTION notifyd.claim(batch integer, owner uuid, lease_seconds double precision)
    RETURNS TABLE (
        id               bigint,
        user_id          bigint,
        subject          text,
        message          text,
        channels         text[],
        claims           integer,
        created_at       timestamptz,
        priority         smallint,
        run_after        timestamptz,
        email            text,
        phone            text,
        telegram_chat_id text,
        suppressed       text[],
        round            integer
    )
    LANGUAGE plpgsql
    SET enable_sort = off
    SET enable_bitmapscan = off
    AS $$
    BEGIN
        -- As before (sql/0001_schema.sql, 0002, 0003): planned for each call with its
        -- arguments, and a claim count that cannot overflow.
        RETURN QUERY EXECUTE $claim$
            WITH picked AS (
                SELECT id FROM notifyd.notifications
                WHERE status = 'pending' AND run_after <= now()
                ORDER BY priority DESC, run_after, id
                LIMIT $1
                FOR UPDATE SKIP LOCKED
            )
            UPDATE notifyd.notifications AS n
            SET status = 'processing',
                locked_by = $2,
                lease_expires_at = now() + make_interval(secs => $3),
                claims = least(n.claims, 2147483646) + 1,
                updated_at = now()
            FROM picked, notifyd.users AS u
            WHERE n.id = picked.id AND u.id = n.user_id
            RETURNING n.id, n.user_id, n.subject, n.message, n.channels, n.claims,
                      n.created_at, n.priority, n.run_after, u.email, u.phone,
                      u.telegram_chat_id,
                      ARRAY(SELECT s.channel FROM notifyd.suppressions AS s
                            WHERE s.user_id = n.user_id),
                      n.round
        $claim$ USING batch, owner, lease_seconds;
    END;
    $$;


-- Status events: the webhook outbox ---------------------------------------------------------

-- One row per notification that reached a final status, written by the trigger below in
-- the transaction that wrote the status: a crash, a restart or an endpoint that is down
-- loses none. notifyd's sender takes due rows with a lease (several instances never send
-- one at once) and sends each to every configured endpoint that wants its type;
-- `delivered_to` lists the endpoints (a digest of their URL) that answered 2xx. Kept, as
-- `delivered` or `failed`, until retention prunes them.
CREATE TABLE notifyd.webhook_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type             text NOT NULL,
    notification_id  bigint NOT NULL,
    -- pending (to send), delivered (every endpoint answered 2xx), failed (gave up).
    status           text NOT NULL DEFAULT 'pending',
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Not sent again before this time (the backoff after a failed send).
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- Sends started so far (counted when taken, so a crash mid-send counts too).
    attempts         integer NOT NULL DEFAULT 0,
    delivered_to     text[] NOT NULL DEFAULT '{}',
    locked_by        uuid,
    lease_expires_at timestamptz,
    last_error       text,
    finished_at      timestamptz,
    CONSTRAINT webhook_events_type_known
        CHECK (type IN ('notification.sent', 'notification.failed', 'notification.cancelled')),
    CONSTRAINT webhook_events_status_known
        CHECK (status IN ('pending', 'delivered', 'failed')),
    CONSTRAINT webhook_events_attempts_not_negative CHECK (attempts >= 0),
    CONSTRAINT webhook_events_lease_consistent
        CHECK ((locked_by IS NULL) = (lease_expires_at IS NULL)),
    CONSTRAINT webhook_events_created_at_in_range
        CHECK (notifyd.timestamp_in_range(created_at)),
    CONSTRAINT webhook_events_next_attempt_at_in_range
        CHECK (notifyd.timestamp_in_range(next_attempt_at)),
    CONSTRAINT webhook_events_lease_expires_at_in_range
        CHECK (notifyd.timestamp_in_range(lease_expires_at)),
    CONSTRAINT webhook_events_finished_at_in_range
        CHECK (notifyd.timestamp_in_range(finished_at))
);

-- The sender walks only what is waiting, soonest first.
CREATE INDEX webhook_events_pending_idx
    ON notifyd.webhook_events (next_attempt_at, id) WHERE status = 'pending';
-- Retention walks the rest by age.
CREATE INDEX webhook_events_created_idx ON notifyd.webhook_events (created_at);

-- Written set-based, once per statement, from the rows the statement changed (transition
-- tables): a row-level trigger cost about four times the rest of the final write (a
-- PL/pgSQL call and a single-row INSERT per notification; 20,000 notifications finished
-- in batches of 500), this about a sixth. Transition tables cannot be limited to UPDATE OF
-- status, so every update of notifications collects its rows; claims measured no dearer
-- within the noise. Names are qualified: the function runs with the caller's search_path.
-- Not SECURITY DEFINER: a function with a setting of its own is called through a slower
-- path; a role that may finish notifications needs INSERT on webhook_events.
CREATE FUNCTION notifyd.emit_status_events() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        INSERT INTO notifyd.webhook_events (type, notification_id)
        SELECT pg_catalog.concat('notification.', n.status), n.id
        FROM changed_new AS n
        JOIN changed_old AS o ON o.id OPERATOR(pg_catalog.=) n.id
        WHERE n.status IN ('sent', 'failed', 'cancelled')
          AND o.status IS DISTINCT FROM n.status;
        RETURN NULL;
    END
    $$;

-- Whoever wrote the status: notifyd, cancel(), or another application's UPDATE.
CREATE TRIGGER notifications_status_events
    AFTER UPDATE ON notifyd.notifications
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION notifyd.emit_status_events();

-- A row inserted final already (another application's doing) is rare: a row-level trigger
-- that only such rows run, so that enqueues collect nothing.
CREATE FUNCTION notifyd.emit_status_event() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        INSERT INTO notifyd.webhook_events (type, notification_id)
        VALUES (pg_catalog.concat('notification.', NEW.status), NEW.id);
        RETURN NULL;
    END
    $$;

CREATE TRIGGER notifications_status_event_on_insert
    AFTER INSERT ON notifyd.notifications
    FOR EACH ROW
    WHEN (NEW.status IN ('sent', 'failed', 'cancelled'))
    EXECUTE FUNCTION notifyd.emit_status_event();
