-- Values that can never be right are refused when they are written, each by a named check:
-- timestamps outside a sane, finite range; a negative claim count; a message with nothing
-- visible in it; an e-mail address that is not one plain addr-spec. The claim no longer
-- fails on a notification claimed more times than an integer holds.
--
-- Any application may write these tables. A timestamp like 'infinity', '10000-01-01' or
-- '4713-01-01 BC' was accepted, and notifyd could not read the row back: the claim failed
-- on it at every start, so nothing was delivered for anyone, and the API, the dashboard
-- and the CLI failed on it too. notifyd now reads such a value anyway (as the nearest
-- instant Python holds), but no new one can be written.
--
-- On a database that already holds such values, this migration moves each one to the
-- nearest instant of the range, so a row keeps its place and its meaning: a send_at in the
-- far past is still due at once, one in the far future still never comes; the notification
-- is then delivered like any other. Each table is locked first (the new checks already
-- apply), repaired, then validated: two reads of each table, under a lock that holds writes
-- back while they run. A WARNING says how many rows were changed.

-- Timestamps: from the Unix epoch (what other applications write for "no time" or "at
-- once") to before the year 3000 (a later one is a typo or a "never"). notifyd.domain has
-- the same bounds.
CREATE FUNCTION notifyd.timestamp_in_range(ts timestamptz) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ts >= '1970-01-01 00:00:00+00' AND ts < '3000-01-01 00:00:00+00' $$;

-- The nearest instant of that range (NULL stays NULL).
CREATE FUNCTION notifyd.clamp_timestamp(ts timestamptz) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT least(greatest(ts, '1970-01-01 00:00:00+00'), '2999-12-31 23:59:59.999999+00') $$;

ALTER TABLE notifyd.users
    ADD CONSTRAINT users_created_at_in_range
        CHECK (notifyd.timestamp_in_range(created_at)) NOT VALID,
    ADD CONSTRAINT users_updated_at_in_range
        CHECK (notifyd.timestamp_in_range(updated_at)) NOT VALID;

ALTER TABLE notifyd.notifications
    ADD CONSTRAINT notifications_created_at_in_range
        CHECK (notifyd.timestamp_in_range(created_at)) NOT VALID,
    ADD CONSTRAINT notifications_updated_at_in_range
        CHECK (notifyd.timestamp_in_range(updated_at)) NOT VALID,
    ADD CONSTRAINT notifications_finished_at_in_range
        CHECK (notifyd.timestamp_in_range(finished_at)) NOT VALID,
    ADD CONSTRAINT notifications_send_at_in_range
        CHECK (notifyd.timestamp_in_range(send_at)) NOT VALID,
    ADD CONSTRAINT notifications_run_after_in_range
        CHECK (notifyd.timestamp_in_range(run_after)) NOT VALID,
    ADD CONSTRAINT notifications_lease_expires_at_in_range
        CHECK (notifyd.timestamp_in_range(lease_expires_at)) NOT VALID,
    -- The claim adds one each time; a negative count means nothing.
    ADD CONSTRAINT notifications_claims_not_negative
        CHECK (claims >= 0) NOT VALID;

ALTER TABLE notifyd.notification_attempts
    ADD CONSTRAINT attempts_started_at_in_range
        CHECK (notifyd.timestamp_in_range(started_at)) NOT VALID,
    ADD CONSTRAINT attempts_finished_at_in_range
        CHECK (notifyd.timestamp_in_range(finished_at)) NOT VALID;

ALTER TABLE notifyd.idempotency_keys
    ADD CONSTRAINT idempotency_keys_created_at_in_range
        CHECK (notifyd.timestamp_in_range(created_at)) NOT VALID;

DO $$
DECLARE
    changed bigint;
BEGIN
    UPDATE notifyd.users
    SET created_at = notifyd.clamp_timestamp(created_at),
        updated_at = notifyd.clamp_timestamp(updated_at)
    WHERE NOT (notifyd.timestamp_in_range(created_at)
               AND notifyd.timestamp_in_range(updated_at));
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed > 0 THEN
        RAISE WARNING 'notifyd: % user(s) had timestamps out of range; moved into it', changed;
    END IF;

    -- The message is not set, so its trigger does not run.
    UPDATE notifyd.notifications
    SET created_at = notifyd.clamp_timestamp(created_at),
        updated_at = notifyd.clamp_timestamp(updated_at),
        finished_at = notifyd.clamp_timestamp(finished_at),
        send_at = notifyd.clamp_timestamp(send_at),
        run_after = notifyd.clamp_timestamp(run_after),
        lease_expires_at = notifyd.clamp_timestamp(lease_expires_at),
        claims = greatest(claims, 0)
    WHERE NOT (notifyd.timestamp_in_range(created_at)
               AND notifyd.timestamp_in_range(updated_at)
               AND coalesce(notifyd.timestamp_in_range(finished_at), true)
               AND coalesce(notifyd.timestamp_in_range(send_at), true)
               AND notifyd.timestamp_in_range(run_after)
               AND coalesce(notifyd.timestamp_in_range(lease_expires_at), true)
               AND claims >= 0);
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed > 0 THEN
        RAISE WARNING 'notifyd: % notification(s) had timestamps out of range or a negative claim count; moved into range', changed;
    END IF;

    -- Clamping both ends keeps finished_at >= started_at.
    UPDATE notifyd.notification_attempts
    SET started_at = notifyd.clamp_timestamp(started_at),
        finished_at = notifyd.clamp_timestamp(finished_at)
    WHERE NOT (notifyd.timestamp_in_range(started_at)
               AND notifyd.timestamp_in_range(finished_at));
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed > 0 THEN
        RAISE WARNING 'notifyd: % attempt(s) had timestamps out of range; moved into it', changed;
    END IF;

    UPDATE notifyd.idempotency_keys
    SET created_at = notifyd.clamp_timestamp(created_at)
    WHERE NOT notifyd.timestamp_in_range(created_at);
END
$$;

ALTER TABLE notifyd.users
    VALIDATE CONSTRAINT users_created_at_in_range,
    VALIDATE CONSTRAINT users_updated_at_in_range;
ALTER TABLE notifyd.notifications
    VALIDATE CONSTRAINT notifications_created_at_in_range,
    VALIDATE CONSTRAINT notifications_updated_at_in_range,
    VALIDATE CONSTRAINT notifications_finished_at_in_range,
    VALIDATE CONSTRAINT notifications_send_at_in_range,
    VALIDATE CONSTRAINT notifications_run_after_in_range,
    VALIDATE CONSTRAINT notifications_lease_expires_at_in_range,
    VALIDATE CONSTRAINT notifications_claims_not_negative;
ALTER TABLE notifyd.notification_attempts
    VALIDATE CONSTRAINT attempts_started_at_in_range,
    VALIDATE CONSTRAINT attempts_finished_at_in_range;
ALTER TABLE notifyd.idempotency_keys
    VALIDATE CONSTRAINT idempotency_keys_created_at_in_range;

-- The scheduling trigger (0001) copies send_at into run_after before any check runs, and
-- checks run in name order: a send_at out of range was reported as run_after's. It names
-- send_at now, as the check would.
CREATE OR REPLACE FUNCTION notifyd.schedule_notification() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        IF NOT notifyd.timestamp_in_range(NEW.send_at) THEN
            RAISE EXCEPTION 'new row for relation "notifications" violates check constraint "notifications_send_at_in_range"'
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'notifications_send_at_in_range',
                      SCHEMA = 'notifyd', TABLE = 'notifications';
        END IF;
        NEW.run_after := greatest(NEW.run_after, NEW.send_at);
        RETURN NEW;
    END;
    $$;

-- The claim as in 0001, except that the count stops one short of the integer's end: a row
-- written with claims = 2147483647 made `claims + 1` fail the whole claim, every time.
CREATE OR REPLACE FUNCTION notifyd.claim(batch integer, owner uuid, lease_seconds double precision)
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
        telegram_chat_id text
    )
    LANGUAGE plpgsql
    SET enable_sort = off
    SET enable_bitmapscan = off
    AS $$
    BEGIN
        -- EXECUTE: planned for each call with the arguments' values (see 0001).
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
                      u.telegram_chat_id
        $claim$ USING batch, owner, lease_seconds;
    END;
    $$;

-- A message needs a visible character: not only whitespace, controls, or characters that
-- render as nothing (zero-width spaces and joiners, the byte order mark, fillers, tags).
-- The ranges are written out rather than taken from [:space:], which depends on the
-- database's locale (ASCII only under C); notifyd.domain.INVISIBLE_RANGES lists the same.
-- E'' strings with doubled backslashes: the pattern is read the same whatever the session's
-- standard_conforming_strings says when the function is called. Other applications may
-- call it too, to check a message before they write it.
CREATE FUNCTION notifyd.has_visible_text(message text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT message OPERATOR(pg_catalog.~) E'[^\\u0001-\\u0020\\u007f-\\u00a0\\u00ad\\u034f\\u061c\\u115f-\\u1160\\u1680\\u17b4-\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u2800\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufff8\\U0001bca0-\\U0001bca3\\U0001d173-\\U0001d17a\\U000e0000-\\U000e0fff]'
    $$;

-- The message trigger of 0001 with that rule. Rows already stored are not checked again: the
-- trigger runs when a message is written.
CREATE OR REPLACE FUNCTION notifyd.check_message() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        -- A NULL message passes here and is refused by NOT NULL, as before.
        -- Qualified: the function runs with the caller's search_path.
        IF NOT notifyd.has_visible_text(NEW.message) THEN
            RAISE EXCEPTION 'new row for relation "notifications" violates check constraint "notifications_message_not_blank"'
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'notifications_message_not_blank',
                      SCHEMA = 'notifyd', TABLE = 'notifications';
        END IF;
        IF pg_catalog.length(NEW.message) > 65536 THEN
            RAISE EXCEPTION 'new row for relation "notifications" violates check constraint "notifications_message_length"'
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'notifications_message_length',
                      SCHEMA = 'notifyd', TABLE = 'notifications';
        END IF;
        RETURN NEW;
    END
    $$;

-- An e-mail address is one addr-spec in its plain form, dot-atom "@" dot-atom: no space,
-- control or other invisible character (the ranges of has_visible_text), none of
-- ()<>[]:;@\," outside the one "@", no empty or dotted-at-the-end parts. So
-- `alice(bob@evil.example)` or `<script>alert(1)</script>@x.example` are refused, and no
-- address can carry anything into a mail header or an SMTP command. notifyd checks
-- more when an address comes through its API or is delivered to (email-validator's rules);
-- notifyd.addresses has this same pattern (written in an E'' string, as above).
CREATE FUNCTION notifyd.is_plain_address(address text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT pg_catalog.length(address) <= 254
           AND address OPERATOR(pg_catalog.~) E'^[^\\u0001-\\u0020\\u007f-\\u00a0\\u00ad\\u034f\\u061c\\u115f-\\u1160\\u1680\\u17b4-\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u2800\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufff8\\U0001bca0-\\U0001bca3\\U0001d173-\\U0001d17a\\U000e0000-\\U000e0fff()<>\\[\\]:;@\\\\,".]+(\\.[^\\u0001-\\u0020\\u007f-\\u00a0\\u00ad\\u034f\\u061c\\u115f-\\u1160\\u1680\\u17b4-\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u2800\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufff8\\U0001bca0-\\U0001bca3\\U0001d173-\\U0001d17a\\U000e0000-\\U000e0fff()<>\\[\\]:;@\\\\,".]+)*@[^\\u0001-\\u0020\\u007f-\\u00a0\\u00ad\\u034f\\u061c\\u115f-\\u1160\\u1680\\u17b4-\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u2800\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufff8\\U0001bca0-\\U0001bca3\\U0001d173-\\U0001d17a\\U000e0000-\\U000e0fff()<>\\[\\]:;@\\\\,".]+(\\.[^\\u0001-\\u0020\\u007f-\\u00a0\\u00ad\\u034f\\u061c\\u115f-\\u1160\\u1680\\u17b4-\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u2800\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufff8\\U0001bca0-\\U0001bca3\\U0001d173-\\U0001d17a\\U000e0000-\\U000e0fff()<>\\[\\]:;@\\\\,".]+)*$'
    $$;

-- Same name, so whoever maps the error to the field (the API, the dashboard) still does.
-- Users already stored with another kind of address are kept as they are (NOT VALID):
-- notifyd refuses to deliver to them, and an update of such a user must fix the address.
ALTER TABLE notifyd.users
    DROP CONSTRAINT users_email_format,
    ADD CONSTRAINT users_email_format
        CHECK (email IS NULL OR notifyd.is_plain_address(email)) NOT VALID;

DO $$
DECLARE
    unfit bigint;
BEGIN
    SELECT count(*) INTO unfit FROM notifyd.users
    WHERE email IS NOT NULL AND NOT notifyd.is_plain_address(email);
    IF unfit = 0 THEN
        ALTER TABLE notifyd.users VALIDATE CONSTRAINT users_email_format;
    ELSE
        RAISE WARNING 'notifyd: % user(s) have an e-mail address that is not one plain addr-spec; e-mail to them fails until it is changed', unfit;
    END IF;
END
$$;
