-- Abuse limits shared by every identity-service replica and kept across restarts: one counter
-- per key in fixed windows. The key is the SHA-256 of what is counted (an email, a client
-- address, a user id), so the table holds no address or email in clear.
CREATE TABLE throttle_counter (
    key          bytea       PRIMARY KEY,
    window_start timestamptz NOT NULL,
    count        integer     NOT NULL CHECK (count >= 0)
);
-- The janitor deletes counters whose window has ended.
CREATE INDEX throttle_counter_window_idx ON throttle_counter (window_start);

-- Accounts never verified expire; the janitor finds them by age.
CREATE INDEX app_user_unverified_idx ON app_user (created_at) WHERE NOT is_verified;

-- MAX_CLINICS_PER_USER counts the organizations a user created.
CREATE INDEX organization_creator_idx ON organization (creator_user_id);
