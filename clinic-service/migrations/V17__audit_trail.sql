-- The audit trail (see clinic-service/src/audit/mod.rs): who touched which patient's data.
--
-- `audit_event` is append-only: one row per audited call (every write, in the write's own
-- transaction; reads of patient data and refusals, in batches). It names patients by member id
-- only and never holds a field value. `audit_seal` links the events in a hash chain, written
-- after insertion by one sealer per tenant: `seq` is the chain position (seal order, which is
-- not id order: an event whose transaction commits late is simply sealed later), `hash` is
-- SHA-256 over the previous hash, `seq` and the canonical encoding of the event row.
--
-- Both tables belong to the migrating owner; the tenant runtime roles may only INSERT and
-- SELECT them (the generic grants, `login.rs`, revoke the rest again; so does the end of this
-- migration for grants made by default privileges). Nothing is ever deleted by the service.
--
-- No foreign keys: the trail is history, kept as written whatever happens to members later,
-- and a seal whose event is gone is exactly what `audit verify` must be able to see.
--
-- Re-runnable (IF NOT EXISTS), as the spare-migration test re-applies the newest migration.
CREATE TABLE IF NOT EXISTS audit_event (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at   timestamptz NOT NULL,
    -- The caller: central user, member in this clinic and role at the time (NULL when the
    -- caller was not resolved as a member).
    user_id       uuid        NOT NULL,
    member_id     uuid,
    role          text        CHECK (role IN ('admin', 'doctor', 'patient')),
    -- The RPC, e.g. `clinic.v1.MemberService/GetMember`.
    action        text        NOT NULL CHECK (char_length(action) BETWEEN 1 AND 120),
    resource_type text        NOT NULL CHECK (char_length(resource_type) BETWEEN 1 AND 40),
    resource_id   uuid,
    -- The patients concerned (member ids), bounded.
    patients      uuid[]      NOT NULL DEFAULT '{}' CHECK (cardinality(patients) <= 1000),
    -- The gRPC status code answered.
    outcome       smallint    NOT NULL CHECK (outcome BETWEEN 0 AND 16),
    request_id    text        CHECK (char_length(request_id) <= 128),
    peer          text        CHECK (char_length(peer) <= 64),
    -- The inserting transaction's id: the sealer's horizon (it never looks below the oldest
    -- transaction still running at its previous pass). Not part of the hash.
    txid          bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint)
);
-- The sealer reads `txid >= horizon` in (txid, id) order: one range of this index.
CREATE INDEX IF NOT EXISTS audit_event_txid_idx ON audit_event (txid, id);
-- ListAuditEvents pages newest first; patients are filtered through the GIN index.
CREATE INDEX IF NOT EXISTS audit_event_time_idx ON audit_event (occurred_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_event_patients_idx ON audit_event USING gin (patients);

CREATE TABLE IF NOT EXISTS audit_seal (
    seq       bigint      PRIMARY KEY CHECK (seq >= 1),
    event_id  bigint      NOT NULL UNIQUE,
    hash      bytea       NOT NULL CHECK (octet_length(hash) = 32),
    -- The oldest transaction id that was still running when this seal's batch was read: every
    -- event of an older transaction was visible then, so the next pass starts here.
    horizon   bigint      NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now()
);

-- Default privileges (granted to the tenant roles for later tables) gave the runtime roles
-- UPDATE and DELETE on the tables above: take back everything but SELECT and INSERT, from every
-- grantee other than the owner.
DO $$
DECLARE
    grant_row record;
BEGIN
    FOR grant_row IN
        SELECT DISTINCT c.relname, a.grantee::regrole::text AS grantee
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.relname IN ('audit_event', 'audit_seal')
          AND c.relnamespace = 'public'::regnamespace
          AND a.grantee <> c.relowner AND a.grantee <> 0
    LOOP
        EXECUTE format(
            'REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.%I FROM %s',
            grant_row.relname, grant_row.grantee);
    END LOOP;
END
$$;
