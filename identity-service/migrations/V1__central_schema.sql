-- Central database of the clinic platform: accounts, sessions, refresh tokens, email
-- verification codes, and the directory of organizations and memberships.

CREATE TABLE app_user (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL,
    name          text        NOT NULL,
    -- argon2id PHC string; never the password.
    password_hash text        NOT NULL,
    is_verified   boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
-- Emails are unique case-insensitively; names exactly.
CREATE UNIQUE INDEX app_user_email_key ON app_user (lower(email));
CREATE UNIQUE INDEX app_user_name_key ON app_user (name);

-- One login = one session; its refresh tokens form a rotation chain.
CREATE TABLE session (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoke_reason text
);
CREATE INDEX session_user_idx ON session (user_id);

CREATE TABLE refresh_token (
    -- SHA-256 of the random token; the token itself is never stored.
    token_hash  bytea       PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES session (id) ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    replaced_by bytea       REFERENCES refresh_token (token_hash) ON DELETE SET NULL
);
CREATE INDEX refresh_token_session_idx ON refresh_token (session_id);

CREATE TABLE email_verification (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    -- HMAC-SHA-256 of (user, code), keyed with a secret outside the database.
    code_hash  bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    attempts   integer     NOT NULL DEFAULT 0
);
CREATE INDEX email_verification_user_idx ON email_verification (user_id);

CREATE TABLE organization (
    id              uuid        PRIMARY KEY,
    name            text        NOT NULL,
    database_name   text        NOT NULL,
    -- Key of the PostgreSQL server (clinic-service configuration) holding the database.
    server          text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('provisioning', 'active')),
    creator_user_id uuid        NOT NULL REFERENCES app_user (id),
    created_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX organization_name_key ON organization (name);
CREATE UNIQUE INDEX organization_database_name_key ON organization (database_name);
CREATE INDEX organization_server_idx ON organization (server);

CREATE TABLE organization_member (
    organization_id uuid        NOT NULL REFERENCES organization (id) ON DELETE CASCADE,
    user_id         uuid        NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    role            text        NOT NULL CHECK (role IN ('admin', 'doctor', 'patient')),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX organization_member_user_idx ON organization_member (user_id, organization_id);
