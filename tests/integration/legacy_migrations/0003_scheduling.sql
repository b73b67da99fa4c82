-- Scheduling and priority: a notification may name when it is due and how urgent it is.

ALTER TABLE notifyd.notifications
    -- Not delivered before this time (NULL: at once).
    ADD COLUMN send_at  timestamptz,
    -- Claimed before everything of lower priority that is due; higher first.
    ADD COLUMN priority smallint NOT NULL DEFAULT 0,
    ADD CONSTRAINT notifications_priority_range CHECK (priority BETWEEN -100 AND 100);

-- run_after is what the claim looks at; a row inserted with send_at (by the API or by any
-- other application's INSERT) is not claimable before it. Only such rows run the trigger.
CREATE FUNCTION notifyd.schedule_notification() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        NEW.run_after := greatest(NEW.run_after, NEW.send_at);
        RETURN NEW;
    END;
    $$;

CREATE TRIGGER notifications_schedule
    BEFORE INSERT ON notifyd.notifications
    FOR EACH ROW WHEN (NEW.send_at IS NOT NULL)
    EXECUTE FUNCTION notifyd.schedule_notification();

-- The claim's order: priority, then due time, then id. Still only over pending rows.
DROP INDEX notifyd.notifications_pending_idx;
CREATE INDEX notifications_pending_idx
    ON notifyd.notifications (priority DESC, run_after, id) WHERE status = 'pending';

-- enqueue() gains the two; the old signature goes, or calls would be ambiguous.
DROP FUNCTION notifyd.enqueue(bigint, text, text, text[]);
CREATE FUNCTION notifyd.enqueue(
    user_id  bigint,
    message  text,
    subject  text DEFAULT '',
    channels text[] DEFAULT notifyd.known_channels(),
    send_at  timestamptz DEFAULT NULL,
    priority smallint DEFAULT 0
) RETURNS bigint
    LANGUAGE sql
    AS $$
        INSERT INTO notifyd.notifications (user_id, message, subject, channels, send_at, priority)
        VALUES (enqueue.user_id, enqueue.message, enqueue.subject, enqueue.channels,
                enqueue.send_at, enqueue.priority)
        RETURNING id
    $$;
