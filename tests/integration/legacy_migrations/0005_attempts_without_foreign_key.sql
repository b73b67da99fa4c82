-- Attempts without a foreign key to their notification.
--
-- The foreign key checked every attempt row on insert: a query per row that also locks the
-- notification row (FOR KEY SHARE), which writes the row and a WAL record each time. That
-- was most of the database's work for an attempt: with three failed e-mails before an SMS,
-- more than half of the CPU time of the attempt writes. notifyd writes an attempt only in the
-- statement that checks that this instance holds the notification's lease, so the row is
-- there when its attempt is written.
--
-- What the key's ON DELETE CASCADE did, these triggers do once per statement: deleting
-- notifications (retention, or by hand) deletes their attempts, and so does TRUNCATE. Like
-- the cascade, they act with the rights of the schema's owner (SECURITY DEFINER): a role
-- that may delete notifications needs no rights on the attempt log.
-- One case is left: a notification deleted by hand while an instance delivers it may leave
-- that delivery's last attempts behind. They are never read (every read starts from a
-- notification) and cost only their space.
ALTER TABLE notifyd.notification_attempts
    DROP CONSTRAINT IF EXISTS notification_attempts_notification_id_fkey;

CREATE FUNCTION notifyd.delete_attempts_of_deleted() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    BEGIN
        DELETE FROM notifyd.notification_attempts AS a
        USING deleted
        WHERE a.notification_id = deleted.id;
        RETURN NULL;
    END;
    $$;

CREATE TRIGGER notifications_delete_attempts
    AFTER DELETE ON notifyd.notifications
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION notifyd.delete_attempts_of_deleted();

CREATE FUNCTION notifyd.truncate_attempts() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    BEGIN
        TRUNCATE notifyd.notification_attempts;
        RETURN NULL;
    END;
    $$;

CREATE TRIGGER notifications_truncate_attempts
    AFTER TRUNCATE ON notifyd.notifications
    FOR EACH STATEMENT EXECUTE FUNCTION notifyd.truncate_attempts();
