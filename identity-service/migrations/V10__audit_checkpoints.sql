-- The latest sealed position of each organization's audit trail (the hash chain lives in the
-- tenant database, see clinic-service migration V17): kept here, outside the reach of whoever
-- controls a tenant database, so that `clinic-service audit verify` can tell a chain rewritten
-- or truncated up to that position. Only moves forward (see directory/audit.rs).
CREATE TABLE audit_checkpoint (
    organization_id uuid        PRIMARY KEY REFERENCES organization (id) ON DELETE CASCADE,
    seq             bigint      NOT NULL CHECK (seq >= 1),
    hash            bytea       NOT NULL CHECK (octet_length(hash) = 32),
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
