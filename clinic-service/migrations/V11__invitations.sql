-- Membership by invitation: AddMember creates an INVITED member, keyed by email and without a
-- user until the invited person accepts (then it becomes ACTIVE with their user id). Rows that
-- exist already are members: they stay active.

ALTER TABLE organization_user
    ALTER COLUMN user_id DROP NOT NULL,
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CONSTRAINT organization_user_status_known CHECK (status IN ('invited', 'active')),
    -- When the invitation stops being acceptable; only invited rows have one.
    ADD COLUMN invite_expires_at timestamptz;

-- An active member is a user; an invited one is an email with an expiry, and no user yet.
ALTER TABLE organization_user
    ADD CONSTRAINT organization_user_status_shape CHECK (
        (status = 'active' AND user_id IS NOT NULL AND invite_expires_at IS NULL)
        OR (status = 'invited' AND user_id IS NULL AND invite_expires_at IS NOT NULL)
    );

-- One pending invitation per email (case-insensitive): adding it again renews that row. It
-- also serves AcceptInvitation's and DeclineInvitation's lookup by the caller's email.
CREATE UNIQUE INDEX organization_user_invited_email_key
    ON organization_user (lower(email)) WHERE status = 'invited';

-- AddMember refuses the email of an active member.
CREATE INDEX organization_user_active_email_idx
    ON organization_user (lower(email)) WHERE status = 'active';
