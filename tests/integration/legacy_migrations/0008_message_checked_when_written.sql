-- The message is checked when it is written, not at every update of its row.
--
-- PostgreSQL evaluates every CHECK constraint again on each UPDATE, whichever columns it
-- sets, and a notification is updated at least twice on its way (claimed, finished). The
-- two checks on the message read all of it each time: a message of a few kilobytes is
-- stored compressed, so each status update decompressed it to look for a non-blank
-- character and count its characters. With 12 kB messages that tripled the server's time
-- per notification delivered (210 us against 70-89 us without the two checks).
--
-- A trigger applies the same two rules on INSERT and on an UPDATE that sets the message,
-- and fails with SQLSTATE 23514 (check_violation) naming the same constraint, schema and
-- table, so the API and other applications tell the errors apart as before. The cheap
-- checks stay constraints. Where a trigger differs from a constraint:
-- - It fires even under session_replication_role = replica (ENABLE ALWAYS), as a
--   constraint would be checked; DISABLE TRIGGER (or pg_restore --disable-triggers) turns
--   it off, which it does not to a constraint.
-- - BEFORE triggers run in name order, so another BEFORE trigger named after this one
--   could still change the message; one that changes it on an UPDATE not naming the
--   column is not checked either.
-- - A row breaking several rules reports the message's first, and the error has no
--   "Failing row contains" detail.
CREATE FUNCTION notifyd.check_message() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        -- A NULL message passes here and is refused by NOT NULL, as before.
        -- Qualified: the function runs with the caller's search_path.
        IF NEW.message OPERATOR(pg_catalog.!~) '[^[:space:]]' THEN
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

CREATE TRIGGER notifications_check_message
    BEFORE INSERT OR UPDATE OF message ON notifyd.notifications
    FOR EACH ROW EXECUTE FUNCTION notifyd.check_message();
ALTER TABLE notifyd.notifications ENABLE ALWAYS TRIGGER notifications_check_message;

ALTER TABLE notifyd.notifications
    DROP CONSTRAINT notifications_message_not_blank,
    DROP CONSTRAINT notifications_message_length;
