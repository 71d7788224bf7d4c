-- Email addresses are keyed by one normalised form (Unicode NFC, then lowercase) computed in
-- Rust (accounts::normalize_email) and stored, instead of PostgreSQL's lower(), whose answer
-- depends on the database's locale and which does not compose characters.
--
-- This step only adds the column. identity-service fills it for existing rows in Rust right
-- after this migration (db::fill_normalized_emails), before V5 makes it NOT NULL and unique:
-- the fill must be the very function every later write uses, and PostgreSQL has no function
-- equal to it (lower() follows the collation's locale and its own Unicode tables).
ALTER TABLE app_user ADD COLUMN email_normalized text;

-- Invitations are keyed by the same normalised form; lower() must no longer judge it.
ALTER TABLE organization_invitation DROP CONSTRAINT organization_invitation_email_check;
COMMENT ON COLUMN organization_invitation.email IS
    'The invited address, normalised as app_user.email_normalized (NFC, then lowercase).';
