-- Dashboard: the admin pages' header shows each channel's success rate over the last hour.

-- Without this index every page view reads the whole attempt log (all the history that
-- retention keeps); with it, only the last hour's attempts. Attempts are written with
-- finished_at close to now(), so an insert touches the index's rightmost page: a small cost
-- on the delivery path. Migrations run in a transaction, so this is not CONCURRENTLY and
-- blocks attempt writes while it is built; on a large attempt log, create it beforehand
-- with CREATE INDEX CONCURRENTLY under this name and the migration leaves it as it is.
CREATE INDEX IF NOT EXISTS notification_attempts_finished_idx
    ON notifyd.notification_attempts (finished_at);
