-- Idempotency keys of CreateAppointment (`request_id`): one row per caller and key, claimed in
-- the booking's own transaction, so concurrent retries of one booking wait for the first and
-- then read what it booked. Kept 24 hours; the service prunes older rows as it books.
CREATE TABLE appointment_request (
    member_id      uuid        NOT NULL REFERENCES organization_user (id) ON DELETE CASCADE,
    request_id     uuid        NOT NULL,
    -- SHA-256 of the booking's parameters: the same key with other parameters is refused.
    fingerprint    bytea       NOT NULL,
    -- Set in the transaction that claimed the key, so a committed row always has it.
    appointment_id uuid        REFERENCES appointment (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (member_id, request_id)
);

-- Pruning takes the oldest rows first.
CREATE INDEX appointment_request_created_at_idx ON appointment_request (created_at);
