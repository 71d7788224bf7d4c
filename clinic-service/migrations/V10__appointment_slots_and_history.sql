-- Appointments beyond the original system: a duration, a time slot PostgreSQL keeps free of
-- overlaps (per doctor and per patient, among PENDING/APPROVED), a status history, and indexes
-- for the role-scoped, (start, id)-ordered lists.

-- btree_gist lets one GiST index combine `uuid =` with `tstzrange &&`. It is a trusted
-- extension (PostgreSQL 13+), so the database owner may create it without superuser.
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Generated columns and exclusion constraints need immutable expressions; `timestamptz +
-- interval` is only STABLE because day and month steps depend on the time zone. An interval of
-- whole minutes is a fixed number of microseconds, so this wrapper really is immutable.
CREATE FUNCTION appointment_end(start_time timestamptz, duration_minutes integer)
    RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN start_time + make_interval(mins => duration_minutes);

ALTER TABLE appointment
    ADD COLUMN duration_minutes integer NOT NULL DEFAULT 30
        CONSTRAINT appointment_duration_minutes_range CHECK (duration_minutes BETWEEN 5 AND 480),
    -- [start, end): back-to-back visits do not overlap.
    ADD COLUMN slot tstzrange NOT NULL GENERATED ALWAYS AS (
        tstzrange(appointment_date_time, appointment_end(appointment_date_time, duration_minutes), '[)')
    ) STORED;

-- NOT VALID: rows written before this limit existed are left alone; new writes are checked.
ALTER TABLE appointment
    ADD CONSTRAINT appointment_notes_length CHECK (char_length(notes) <= 2000) NOT VALID;

-- The no-overlap rule, held by PostgreSQL under any concurrency. A NULL doctor or patient (a
-- removed member) never conflicts. The constraint names tell the service which party clashed.
ALTER TABLE appointment
    ADD CONSTRAINT appointment_doctor_no_overlap
        EXCLUDE USING gist (doctor_id WITH =, slot WITH &&)
        WHERE (status IN ('PENDING', 'APPROVED')),
    ADD CONSTRAINT appointment_patient_no_overlap
        EXCLUDE USING gist (patient_id WITH =, slot WITH &&)
        WHERE (status IN ('PENDING', 'APPROVED'));

-- Keyset pages ordered by (start, id): a doctor's schedule, a patient's visits, everything (admin).
-- The composite indexes lead with the member column, so they also serve the ON DELETE SET NULL
-- lookups the single-column indexes of V1 were for; those go, to keep writes cheap.
CREATE INDEX appointment_doctor_start_idx ON appointment (doctor_id, appointment_date_time, id);
CREATE INDEX appointment_patient_start_idx ON appointment (patient_id, appointment_date_time, id);
CREATE INDEX appointment_start_idx ON appointment (appointment_date_time, id);
DROP INDEX IF EXISTS appointment_doctor_id_idx;
DROP INDEX IF EXISTS appointment_patient_id_idx;

-- Every status change: the booking (from_status NULL), then each transition with who and why.
-- Removing a member keeps the history readable: changed_by becomes NULL.
CREATE TABLE appointment_status_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    appointment_id  uuid NOT NULL REFERENCES appointment (id) ON DELETE CASCADE,
    from_status     appointment_status,
    to_status       appointment_status NOT NULL,
    changed_by      uuid REFERENCES organization_user (id) ON DELETE SET NULL,
    changed_at      timestamptz NOT NULL DEFAULT now(),
    reason          text NOT NULL DEFAULT ''
        CONSTRAINT appointment_status_history_reason_length CHECK (char_length(reason) <= 500)
);

CREATE INDEX appointment_status_history_appointment_idx
    ON appointment_status_history (appointment_id, id);
CREATE INDEX appointment_status_history_changed_by_idx
    ON appointment_status_history (changed_by);

-- Appointments booked before the history existed get their booking entry, so no appointment
-- has an empty history.
INSERT INTO appointment_status_history (appointment_id, from_status, to_status, changed_at)
SELECT id, NULL, status, created_at FROM appointment;
