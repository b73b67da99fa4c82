-- A subject holds no line break of any kind, whoever writes it.
--
-- The check refused CR and LF only. The e-mail channel refuses every character Python's
-- str.splitlines() breaks a line at (also VT, FF, U+001C to U+001E, NEL, U+2028 and
-- U+2029): a row written with one was claimed, and its e-mail failed for good at every
-- attempt. The API refuses all of them; now the table does too (notifyd.domain.LINE_BREAKS
-- lists the same set, and a test holds the two together). E'' with doubled backslashes:
-- the regular expression reads the escapes, whatever standard_conforming_strings says.
--
-- A row that already holds one gets a space in its place (a WARNING says how many), before
-- the new check is validated: a check is evaluated again at every UPDATE of a row, and an
-- unrepaired pending row would fail the claim's UPDATE, and with it the whole batch.
-- Only the subject changes; status, times and attempts stay as they were.
ALTER TABLE notifyd.notifications
    DROP CONSTRAINT notifications_subject_single_line,
    ADD CONSTRAINT notifications_subject_single_line
        CHECK (subject !~ E'[\\u000a\\u000b\\u000c\\u000d\\u001c-\\u001e\\u0085\\u2028\\u2029]')
        NOT VALID;

DO $$
DECLARE
    changed bigint;
BEGIN
    UPDATE notifyd.notifications
    SET subject = regexp_replace(
        subject, E'[\\u000a\\u000b\\u000c\\u000d\\u001c-\\u001e\\u0085\\u2028\\u2029]', ' ', 'g')
    WHERE subject ~ E'[\\u000a\\u000b\\u000c\\u000d\\u001c-\\u001e\\u0085\\u2028\\u2029]';
    GET DIAGNOSTICS changed = ROW_COUNT;
    IF changed > 0 THEN
        RAISE WARNING 'notifyd: % notification(s) had a line break in the subject; replaced by a space', changed;
    END IF;
END
$$;

ALTER TABLE notifyd.notifications VALIDATE CONSTRAINT notifications_subject_single_line;
