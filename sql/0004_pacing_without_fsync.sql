-- Pacing without waiting for the disk.
--
-- Every paced attempt takes its slot with notifyd.reserve_slot(), an UPDATE of the
-- channel's row in notifyd.pacing committed on its own. With synchronous_commit on, each
-- waited for a WAL flush while it held that row's lock, so a channel's slots could not be
-- handed out faster than the disk flushes (about 100 a second on a busy host): a bench
-- against an SMTP server limited to 100 a second delivered 47. A slot lost in a crash
-- costs nothing (the next instance takes the next one, a few milliseconds later at
-- worst), so these two functions commit without waiting for the flush: set_config(...,
-- true) holds until the end of the caller's transaction, which is the statement's own.

CREATE OR REPLACE FUNCTION notifyd.reserve_slot(
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
        PERFORM set_config('synchronous_commit', 'off', true);
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
