-- The delivery lifecycle inside PostgreSQL alone: what the schema costs per notification.
--
-- No client, no round trips: :n notifications are inserted, then a procedure claims them
-- in batches of 100 (the bare loop's claim), writes an attempt for each and finishes them,
-- committing after each statement, and reports the time per notification. Use it to see
-- what a constraint, an index or a trigger costs the server: change the schema, run again,
-- and compare runs made one after the other (the machine's noise is large; repeat each).
--
-- Run it on a scratch database migrated by notifyd, never on one in use (it inserts and
-- finishes rows, and leaves them):
--   createdb lifecycle && NOTIFYD_DATABASE__URL=postgresql:///lifecycle notifyd migrate
--   psql postgresql:///lifecycle -v n=20000 -v message="'message ' || g" -f bench/server_lifecycle.sql
-- (`-v message="repeat('x', 12000) || g"` for long messages.)
-- `python -m bench.schema_costs` runs the same lifecycle on many variants of the schema,
-- each on a scratch database of its own server, and tabulates what each part costs.

\set ON_ERROR_STOP on
SET client_min_messages = warning;
INSERT INTO notifyd.users (phone)
    SELECT '+7900' || lpad(g::text, 7, '0') FROM generate_series(1, 1000) AS g;

INSERT INTO notifyd.notifications (user_id, message, channels)
    SELECT 1 + g % 1000, :message, ARRAY['sms'] FROM generate_series(1, :n) AS g;
ANALYZE notifyd.notifications;

CREATE OR REPLACE PROCEDURE pg_temp.lifecycle(batch integer)
    LANGUAGE plpgsql
    AS $$
    DECLARE
        ids bigint[];
        owner uuid := gen_random_uuid();
        started timestamptz;
        done integer := 0;
    BEGIN
        started := clock_timestamp();
        LOOP
            WITH picked AS (
                SELECT id FROM notifyd.notifications
                WHERE status = 'pending' AND run_after <= now()
                ORDER BY priority DESC, run_after, id
                LIMIT batch
                FOR UPDATE SKIP LOCKED
            )
            UPDATE notifyd.notifications AS nn
            SET status = 'processing', locked_by = owner,
                lease_expires_at = now() + interval '30 s', claims = nn.claims + 1,
                updated_at = now()
            FROM picked, notifyd.users AS u
            WHERE nn.id = picked.id AND u.id = nn.user_id;
            SELECT array_agg(id) INTO ids FROM notifyd.notifications
            WHERE locked_by = owner AND status = 'processing';
            COMMIT;
            EXIT WHEN ids IS NULL;
            INSERT INTO notifyd.notification_attempts
                (notification_id, channel, attempt, status, provider_response, started_at,
                 finished_at)
                SELECT id, 'sms', 1, 'success', '{"provider": "stub"}', now(), now()
                FROM unnest(ids) AS id;
            COMMIT;
            UPDATE notifyd.notifications
            SET status = 'sent', locked_by = NULL, lease_expires_at = NULL,
                finished_at = now(), updated_at = now()
            WHERE id = ANY (ids) AND locked_by = owner;
            COMMIT;
            done := done + cardinality(ids);
        END LOOP;
        RAISE WARNING '% notifications in % ms: % us each', done,
            round(extract(epoch FROM clock_timestamp() - started) * 1000),
            round(extract(epoch FROM clock_timestamp() - started) * 1e6 / done, 1);
    END
    $$;

-- As notifyd.claim() does: keep the ordered index walk whatever the statistics say.
SET enable_sort = off;
SET enable_bitmapscan = off;
CALL pg_temp.lifecycle(100);
