-- The claim as a function: one round trip, with the planner settings it needs.
--
-- The only good plan for a claim walks the pending index in its own order and stops after
-- `batch` rows. Statistics from before a bulk insert (a fresh database, or autovacuum not
-- yet round) make the planner expect a handful of pending rows; it then reads all of them
-- through a bitmap and sorts them, on disk past work_mem: 50-70 ms a claim at a 100,000
-- backlog instead of 5-12 ms, until the next ANALYZE. With sorts and bitmap scans disabled
-- for the function's statement only, the ordered index walk is the plan left.
--
-- The most urgent due rows first, then the longest due; rows another instance is claiming
-- right now are skipped. The rows come back in no particular order.
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
        telegram_chat_id text
    )
    LANGUAGE plpgsql
    SET enable_sort = off
    SET enable_bitmapscan = off
    AS $$
    BEGIN
        -- EXECUTE: planned for each call with the arguments' values. A plan kept across
        -- calls would not know `batch`, take a tenth of the table as its guess, and join
        -- the claimed rows to every notification by hash.
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
                claims = n.claims + 1,
                updated_at = now()
            FROM picked, notifyd.users AS u
            WHERE n.id = picked.id AND u.id = n.user_id
            RETURNING n.id, n.user_id, n.subject, n.message, n.channels, n.claims,
                      n.created_at, n.priority, n.run_after, u.email, u.phone,
                      u.telegram_chat_id
        $claim$ USING batch, owner, lease_seconds;
    END;
    $$;
