-- Pending invitations to organizations, by email: the central index ListOrganizations reads
-- to show a user the clinics that invited them. The tenant database (an `invited` member row)
-- stays the truth; clinic-service keeps this in step through SendInvitation/RemoveInvitation.
CREATE TABLE organization_invitation (
    organization_id uuid        NOT NULL REFERENCES organization (id) ON DELETE CASCADE,
    -- Lower-cased, as app_user emails are compared (lower(email)).
    email           text        NOT NULL CHECK (email = lower(email)),
    role            text        NOT NULL CHECK (role IN ('admin', 'doctor', 'patient')),
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (organization_id, email)
);
-- A user's invitations, by their email, in organization order (ListUserMemberships).
CREATE INDEX organization_invitation_email_idx ON organization_invitation (email, organization_id);
-- The janitor deletes expired invitations.
CREATE INDEX organization_invitation_expires_idx ON organization_invitation (expires_at);
