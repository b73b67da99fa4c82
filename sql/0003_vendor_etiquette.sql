-- Vendor etiquette: pacing to the vendors' limits, throttled attempts, suppressed contacts.

-- An attempt the vendor answered with "slow down" (HTTP 429, SMTP 421 / 4.7.x) is kept in
-- the log as 'throttled': it says why the notification waited, and it does not count
-- against the channel's attempts.
ALTER TABLE notifyd.notification_attempts
    DROP CONSTRAINT attempts_status_known,
    ADD CONSTRAINT attempts_status_known CHECK (status IN ('success', 'failed', 'throttled'));


-- Pacing ---------------------------------------------------------------------------------

-- The next free sending slot of a channel (key 'telegram') or of one recipient on a
-- channel (key 'telegram:<chat id>'): the "theoretical arrival time" of the generic cell
-- rate algorithm. Every instance takes its slots here, so a limit holds for all of them
-- together; a vendor's "retry after" pushes the slot, which pauses every instance.
CREATE TABLE notifyd.pacing (
    key text PRIMARY KEY,
    tat timestamptz NOT NULL,
    CONSTRAINT pacing_tat_in_range CHECK (notifyd.timestamp_in_range(tat))
);

-- Take the next slot of a channel and of a recipient together, if it comes within
-- `horizon` seconds: `reserved`, and `wait` (seconds from now until it). A slot further
-- away is not taken (`reserved` false, `wait` until it), so a delivery that would wait
-- long goes back to the queue instead of holding its place in memory. A NULL key, or an
-- interval of 0, leaves that limit out. Rows are locked channel first, so concurrent
-- callers never deadlock.
CREATE FUNCTION notifyd.reserve_slot(
    channel_key        text,
    channel_interval   double precision,
    recipient_key      text,
    recipient_interval double precision,
    horizon            double precision,
    OUT reserved       boolean,
    OUT wait           double precision
)
    LANGUAGE plpgsql
    AS $$
    DECLARE
        now_ts        timestamptz := clock_timestamp();
        channel_at    timestamptz := now_ts;
        recipient_at  timestamptz := now_ts;
        slot          timestamptz;
    BEGIN
        IF channel_key IS NOT NULL AND channel_interval > 0 THEN
            INSERT INTO notifyd.pacing (key, tat) VALUES (channel_key, now_ts)
                ON CONFLICT (key) DO NOTHING;
            SELECT greatest(p.tat, now_ts) INTO channel_at
                FROM notifyd.pacing AS p WHERE p.key = channel_key FOR UPDATE;
        END IF;
        IF recipient_key IS NOT NULL AND recipient_interval > 0 THEN
            INSERT INTO notifyd.pacing (key, tat) VALUES (recipient_key, now_ts)
                ON CONFLICT (key) DO NOTHING;
            SELECT greatest(p.tat, now_ts) INTO recipient_at
                FROM notifyd.pacing AS p WHERE p.key = recipient_key FOR UPDATE;
        END IF;
        slot := greatest(channel_at, recipient_at);
        wait := extract(epoch FROM slot - now_ts);
        reserved := wait <= horizon;
        IF NOT reserved THEN
            RETURN;
        END IF;
        IF channel_key IS NOT NULL AND channel_interval > 0 THEN
            UPDATE notifyd.pacing SET tat = slot + make_interval(secs => channel_interval)
                WHERE key = channel_key;
        END IF;
        IF recipient_key IS NOT NULL AND recipient_interval > 0 THEN
            UPDATE notifyd.pacing SET tat = slot + make_interval(secs => recipient_interval)
                WHERE key = recipient_key;
        END IF;
    END
    $$;

-- Push a key's next slot `seconds` from now (a vendor said "retry after"): every instance
-- waits, not only the one that was told.
CREATE FUNCTION notifyd.pause_slot(pause_key text, seconds double precision)
    RETURNS timestamptz
    LANGUAGE sql
    AS $$
        INSERT INTO notifyd.pacing (key, tat)
        VALUES (pause_key, clock_timestamp() + make_interval(secs => seconds))
        ON CONFLICT (key) DO UPDATE SET tat = greatest(pacing.tat, EXCLUDED.tat)
        RETURNING tat
    $$;


-- Suppressed contacts --------------------------------------------------------------------

-- A vendor said a contact can never be reached this way (the user blocked the bot, replied
-- STOP, the mailbox does not exist). Deliveries to that user skip the channel without
-- calling the vendor until the contact changes or the suppression is lifted.
CREATE TABLE notifyd.suppressions (
    user_id bigint NOT NULL REFERENCES notifyd.users (id) ON DELETE CASCADE,
    channel text NOT NULL,
    -- The address, number or chat id the vendor refused.
    contact text NOT NULL,
    reason  text NOT NULL,
    since   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, channel),
    CONSTRAINT suppressions_since_in_range CHECK (notifyd.timestamp_in_range(since)),
    CONSTRAINT suppressions_channel_known CHECK (channel = ANY (notifyd.known_channels()))
);

-- A changed contact is a new chance: its suppression goes, whoever changed it (the API,
-- the dashboard, or another application's UPDATE).
CREATE FUNCTION notifyd.lift_changed_suppressions() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        DELETE FROM notifyd.suppressions AS s
        WHERE s.user_id = NEW.id
          AND ((s.channel = 'email' AND NEW.email IS DISTINCT FROM OLD.email)
            OR (s.channel = 'sms' AND NEW.phone IS DISTINCT FROM OLD.phone)
            OR (s.channel = 'telegram'
                AND NEW.telegram_chat_id IS DISTINCT FROM OLD.telegram_chat_id));
        RETURN NULL;
    END
    $$;

CREATE TRIGGER users_lift_changed_suppressions
    AFTER UPDATE OF email, phone, telegram_chat_id ON notifyd.users
    FOR EACH ROW
    WHEN (OLD.email IS DISTINCT FROM NEW.email
          OR OLD.phone IS DISTINCT FROM NEW.phone
          OR OLD.telegram_chat_id IS DISTINCT FROM NEW.telegram_chat_id)
    EXECUTE FUNCTION notifyd.lift_changed_suppressions();


-- The claim also answers which of the user's channels are suppressed -----------------------

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
        suppressed       text[]
    )
    LANGUAGE plpgsql
    SET enable_sort = off
    SET enable_bitmapscan = off
    AS $$
    BEGIN
        -- As before (sql/0001_schema.sql, 0002_sane_timestamps.sql): planned for each call
        -- with its arguments, and a claim count that cannot overflow.
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
                            WHERE s.user_id = n.user_id)
        $claim$ USING batch, owner, lease_seconds;
    END;
    $$;
