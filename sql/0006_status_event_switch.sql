-- Status events are recorded only where someone sends them.
--
-- 0005 wrote a row of notifyd.webhook_events for every notification that ended, whether or
-- not any instance had a webhook endpoint: about 16 µs of server CPU and 355 bytes of WAL
-- per finished notification, and rows that stayed `pending` until retention pruned them.
-- Now a switch says whether they are recorded, for the whole database: an instance with an
-- endpoint turns it on when it starts (before it delivers anything), and only an operator
-- turns it off (`notifyd webhooks off`, or the DELETE below). It is never turned off by an
-- instance on its own: another instance, configured differently, may be the one sending.


-- The switch: a row here means status events are recorded; no row, they are not. A table
-- rather than a setting: a database or role setting (ALTER DATABASE ... SET) needs its
-- owner, reaches only sessions opened after it, and says nothing of who set it. A row is
-- read by every transaction at once, is changed by a plain INSERT or DELETE inside a
-- transaction, and carries when and by whom it was switched on (for the dashboard and
-- `notifyd check-config`). At most one row: its key can only be true.
--
-- Turning it off, by hand:  DELETE FROM notifyd.status_event_recording;
-- Turning it on, by hand:   INSERT INTO notifyd.status_event_recording (switched_on_by)
--                           VALUES ('...') ON CONFLICT DO NOTHING;
CREATE TABLE notifyd.status_event_recording (
    singleton      boolean PRIMARY KEY DEFAULT true,
    -- When it was switched on.
    since          timestamptz NOT NULL DEFAULT now(),
    -- Who switched it on: a host and an instance id, or this migration.
    switched_on_by text NOT NULL,
    CONSTRAINT status_event_recording_one_row CHECK (singleton),
    CONSTRAINT status_event_recording_since_in_range
        CHECK (notifyd.timestamp_in_range(since)),
    CONSTRAINT status_event_recording_switched_on_by_length
        CHECK (length(switched_on_by) BETWEEN 1 AND 200)
);

-- A deployment that recorded events before keeps recording them, without a gap: its
-- instances with endpoints may not have restarted yet. One that never did starts off.
INSERT INTO notifyd.status_event_recording (switched_on_by)
SELECT 'migration 0006 (status events were recorded before)'
WHERE EXISTS (SELECT 1 FROM notifyd.webhook_events);


-- Whether status events are recorded, for the triggers below. SECURITY DEFINER, so that
-- a role that may finish notifications (notifyd's, or another application's) needs no
-- grant on the new table: a GRANT ... ON ALL TABLES made before this migration does not
-- cover it, and without this every final status written by such a role would fail after
-- the upgrade. It reads one qualified table and calls nothing, with a fixed search_path.
-- PL/pgSQL rather than SQL: it keeps its plan for the session, where a SQL function that
-- cannot be inlined (SECURITY DEFINER never is) plans its query again.
CREATE FUNCTION notifyd.status_events_recorded() RETURNS boolean
    LANGUAGE plpgsql
    STABLE
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    BEGIN
        RETURN EXISTS (SELECT 1 FROM notifyd.status_event_recording);
    END
    $$;

-- Every UPDATE of notifications calls it, as whoever updates: where functions are not
-- everyone's to call by default (ALTER DEFAULT PRIVILEGES ... REVOKE EXECUTE ... FROM
-- PUBLIC), no claim, attempt write or other application's update could go through
-- without this. It tells only whether events are recorded.
GRANT EXECUTE ON FUNCTION notifyd.status_events_recorded() TO PUBLIC;


-- Both triggers of 0005 now return at once while the switch is off: no INSERT, and no
-- join of the transition tables. What is left is the switch's lookup (once per statement)
-- and the transition tables PostgreSQL still collects for the statement-level trigger,
-- which a function cannot refuse. Names are qualified, as before: the functions run with
-- the caller's search_path.
CREATE OR REPLACE FUNCTION notifyd.emit_status_events() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        IF NOT notifyd.status_events_recorded() THEN
            RETURN NULL;
        END IF;
        INSERT INTO notifyd.webhook_events (type, notification_id)
        SELECT pg_catalog.concat('notification.', n.status), n.id
        FROM changed_new AS n
        JOIN changed_old AS o ON o.id OPERATOR(pg_catalog.=) n.id
        WHERE n.status IN ('sent', 'failed', 'cancelled')
          AND o.status IS DISTINCT FROM n.status;
        RETURN NULL;
    END
    $$;

CREATE OR REPLACE FUNCTION notifyd.emit_status_event() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        IF NOT notifyd.status_events_recorded() THEN
            RETURN NULL;
        END IF;
        INSERT INTO notifyd.webhook_events (type, notification_id)
        VALUES (pg_catalog.concat('notification.', NEW.status), NEW.id);
        RETURN NULL;
    END
    $$;
