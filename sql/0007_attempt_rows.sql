-- A batch of attempts travels as one array of rows.
--
-- notifyd wrote each batch of attempts as ten parallel arrays, one per column. The driver
-- looks at every element of an array to see whether it is an array itself (a check that
-- costs about as much as encoding the value): fourteen per attempt, about a tenth of the
-- daemon's CPU at half its drain rate. One array of rows of this type takes four per
-- attempt, and the server reads it at least as fast.
--
-- Only notifyd's attempt write uses it. Instants are seconds since the epoch, which the
-- statement turns into timestamps (to_timestamp); the vendor's answer is JSON text, made
-- jsonb by the statement. A notifyd from before this migration writes its arrays as before.
-- Using a type in a query needs no privilege on it (USAGE is only for creating objects):
-- the grants a daemon role already has cover it.
CREATE TYPE notifyd.new_attempt AS (
    notification_id   bigint,
    channel           text,
    attempt           integer,
    status            text,
    error             text,
    transient         boolean,
    provider_response text,
    started_at        double precision,
    finished_at       double precision,
    round             integer
);
