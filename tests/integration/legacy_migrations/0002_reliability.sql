-- Reliability: instance presence, idempotency keys, and an index for retention pruning.

-- Every running instance holds a session-level advisory lock, (1852798057, key), where key
-- is derived from its instance id (the `locked_by` of the notifications it leases).
-- PostgreSQL drops the lock the moment that instance's session ends, so a notification
-- leased by an instance whose lock nobody holds is orphaned and can be taken over at once,
-- without waiting for its lease to run out.
CREATE FUNCTION notifyd.instance_lock_key(instance uuid) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT ('x' || left(replace(instance::text, '-', ''), 8))::bit(32)::integer $$;

-- The lock keys of the instances alive in this database right now.
CREATE FUNCTION notifyd.live_instance_keys() RETURNS SETOF integer
    LANGUAGE sql STABLE
    AS $$
        SELECT objid::bigint::bit(32)::integer
        FROM pg_locks
        WHERE locktype = 'advisory'
          AND granted
          AND objsubid = 2
          AND classid = 1852798057
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    $$;

-- POST /api/notify/ with an Idempotency-Key header: the first request's answer is stored,
-- and a replay of the same request gets it back instead of enqueueing again.
CREATE TABLE notifyd.idempotency_keys (
    -- Whose key it is: a digest prefix of the caller's API token ('' when the API is open),
    -- so two clients' keys never collide.
    scope           text NOT NULL DEFAULT '',
    key             text NOT NULL,
    -- SHA-256 of the canonical request body: the same key with another body is refused.
    fingerprint     bytea NOT NULL,
    notification_id bigint REFERENCES notifyd.notifications (id) ON DELETE CASCADE,
    status_code     integer,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key),
    CONSTRAINT idempotency_keys_key_format
        CHECK (length(key) BETWEEN 1 AND 255)
);

CREATE INDEX idempotency_keys_created_idx ON notifyd.idempotency_keys (created_at);
CREATE INDEX idempotency_keys_notification_idx
    ON notifyd.idempotency_keys (notification_id);

-- Retention pruning walks finished notifications by age.
CREATE INDEX notifications_finished_idx
    ON notifyd.notifications (finished_at) WHERE finished_at IS NOT NULL;
