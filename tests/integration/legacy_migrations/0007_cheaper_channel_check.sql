-- The channel-list check, without a query per row.
--
-- PostgreSQL evaluates every CHECK constraint again on every UPDATE of a row, and a
-- notification is updated at least twice (claimed, finished). The first version of
-- valid_channels counted distinct channels with a subquery, which keeps PostgreSQL from
-- inlining the function: each check ran it through the SQL-function executor. That was a
-- third of the server's time per notification delivered (claim, attempt, final status;
-- measured in the server, 20,000 notifications in batches of 100).
--
-- Same rules, same constraint (it calls the function by name, so nothing is re-validated
-- and no table is rewritten): non-empty, no NULLs, only known channels, no repeats.
CREATE OR REPLACE FUNCTION notifyd.valid_channels(channels text[]) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
    BEGIN
        IF channels IS NULL
           OR cardinality(channels) < 1
           OR array_position(channels, NULL) IS NOT NULL
           OR NOT channels <@ notifyd.known_channels() THEN
            RETURN false;
        END IF;
        -- Bounds as they are: an array literal may start at any index.
        FOR i IN array_lower(channels, 1) + 1 .. array_upper(channels, 1) LOOP
            IF channels[i] = ANY (channels[array_lower(channels, 1):i - 1]) THEN
                RETURN false;
            END IF;
        END LOOP;
        RETURN true;
    END
    $$;
