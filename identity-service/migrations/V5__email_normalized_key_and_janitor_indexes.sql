-- Enforces the normalised email column V4 added and identity-service filled: every row has
-- one, and no two accounts share one. Two existing accounts whose addresses differ only by
-- Unicode composition (or by a case lower() missed) stop the migration here, naming both, for
-- an operator to resolve (merge or change all but one address), then restart.
DO $$
DECLARE
    collisions text;
BEGIN
    IF EXISTS (SELECT 1 FROM app_user WHERE email_normalized IS NULL) THEN
        RAISE EXCEPTION 'app_user.email_normalized is not filled for every account'
            USING HINT = 'identity-service fills it after migration V4; start it to migrate';
    END IF;
    SELECT string_agg(ids, '; ' ORDER BY ids) INTO collisions
    FROM (
        SELECT string_agg(id::text, ', ' ORDER BY created_at, id) AS ids
        FROM app_user GROUP BY email_normalized HAVING count(*) > 1
    ) c;
    IF collisions IS NOT NULL THEN
        RAISE EXCEPTION 'accounts share one normalised email address (NFC, then lowercase): %; '
            'merge or change the address of all but one account of each group, then restart',
            collisions
            USING HINT = 'SELECT id, email, name FROM app_user WHERE id IN (...) shows them';
    END IF;
END
$$;

ALTER TABLE app_user ALTER COLUMN email_normalized SET NOT NULL;
DROP INDEX app_user_email_key;
CREATE UNIQUE INDEX app_user_email_normalized_key ON app_user (email_normalized);

-- The janitor deletes sessions that ended (with their refresh tokens, by cascade); these find
-- them without reading every live session.
CREATE INDEX session_expires_idx ON session (expires_at);
CREATE INDEX session_revoked_idx ON session (revoked_at) WHERE revoked_at IS NOT NULL;
