-- The tenant is the truth about its members; identity-service keeps a central index of them
-- (who belongs where, pending invitations). Each change to that index is recorded here, in the
-- transaction of the change itself, and relayed to identity-service afterwards (see
-- clinic-service's `relay` module), so a change never commits here without its central
-- counterpart eventually following.

-- Versions of members' central state: monotonic (taken under the member's row lock, so per
-- member they follow commit order), never reused, also across removal and re-adding.
CREATE SEQUENCE member_version_seq;

ALTER TABLE organization_user
    ADD COLUMN version bigint NOT NULL DEFAULT nextval('member_version_seq');

CREATE TABLE member_outbox (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The member the change is about (no foreign key: a removal outlives its row).
    member_id         uuid        NOT NULL,
    version           bigint      NOT NULL,
    change            text        NOT NULL CONSTRAINT member_outbox_change_known CHECK (
        change IN ('membership', 'membership_removed', 'invitation', 'invitation_removed')),
    user_id           uuid,
    email             text,
    role              text,
    invite_expires_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT member_outbox_shape CHECK (
        (change = 'membership' AND user_id IS NOT NULL AND role IS NOT NULL)
        OR (change = 'membership_removed' AND user_id IS NOT NULL)
        OR (change = 'invitation' AND email IS NOT NULL AND role IS NOT NULL
            AND invite_expires_at IS NOT NULL)
        OR (change = 'invitation_removed' AND email IS NOT NULL)
    )
);

-- Members are matched by the normalised address (NFC, then lowercase), computed by the service
-- exactly as identity-service computes it: PostgreSQL's lower() depends on the database's
-- locale (under C it lowercases ASCII only) and does not compose characters. `email` stays as
-- the person typed it. Rows from before this migration get PostgreSQL's nearest equivalent.
ALTER TABLE organization_user ADD COLUMN email_key text;
UPDATE organization_user SET email_key = lower(normalize(email, NFC));
ALTER TABLE organization_user ALTER COLUMN email_key SET NOT NULL;
DROP INDEX organization_user_invited_email_key;
DROP INDEX organization_user_active_email_idx;
CREATE UNIQUE INDEX organization_user_invited_email_key
    ON organization_user (email_key) WHERE status = 'invited';
CREATE INDEX organization_user_active_email_idx
    ON organization_user (email_key) WHERE status = 'active';
