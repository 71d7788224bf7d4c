-- The appointment change log that WatchAppointments reads: one entry per appointment change
-- (the booking and every status change), written in the transaction of the change.
--
-- Positions come from the one row of `appointment_change_head`, incremented by each changing
-- transaction (as identity-service's revocation log does, V7 there). That row stays locked until
-- the transaction ends, so the next changing transaction gets its numbers only after this one
-- committed (or rolled back, which undoes its increment: no gap). Positions therefore become
-- visible in commit order, and a reader that has seen position 8 can never be handed a 7 that
-- commits later, as a plain sequence could. The entry is written by a deferred trigger on
-- `appointment_status_history` (every appointment change inserts one history row), so the head
-- lock is taken at COMMIT, the latest possible moment, whatever the transaction did before.
--
-- Re-runnable (IF NOT EXISTS, OR REPLACE), as the spare-migration test re-applies the newest
-- migration.
--
-- Entries carry what role scoping needs (appointment, patient and doctor member ids) and
-- states and times; never notes, reasons or any patient field.
CREATE TABLE IF NOT EXISTS appointment_change_head (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- The last position handed out (visible once its transaction committed).
    position       bigint  NOT NULL,
    -- Every entry at or below this position may have been pruned: a watcher resuming from
    -- below it has missed changes (OUT_OF_RANGE).
    pruned_through bigint  NOT NULL
);
INSERT INTO appointment_change_head (position, pruned_through) VALUES (0, 0)
    ON CONFLICT (singleton) DO NOTHING;

-- No foreign keys: the log is history, kept as written whatever happens to members later.
CREATE TABLE IF NOT EXISTS appointment_change (
    position       bigint      PRIMARY KEY,
    appointment_id uuid        NOT NULL,
    patient_id     uuid,
    doctor_id      uuid,
    from_status    appointment_status,
    to_status      appointment_status NOT NULL,
    changed_by     uuid,
    changed_at     timestamptz NOT NULL,
    start_time     timestamptz NOT NULL,
    end_time       timestamptz NOT NULL,
    -- When the entry was written, at commit (so latency can be measured from it); the janitor
    -- prunes by it.
    logged_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS appointment_change_logged_at_idx ON appointment_change (logged_at);

CREATE OR REPLACE FUNCTION log_appointment_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    next bigint;
BEGIN
    UPDATE public.appointment_change_head SET position = position + 1 RETURNING position INTO next;
    INSERT INTO public.appointment_change
        (position, appointment_id, patient_id, doctor_id, from_status, to_status, changed_by,
         changed_at, start_time, end_time)
    SELECT next, a.id, a.patient_id, a.doctor_id, NEW.from_status, NEW.to_status, NEW.changed_by,
           NEW.changed_at, a.appointment_date_time, upper(a.slot)
    FROM public.appointment a
    WHERE a.id = NEW.appointment_id;
    IF NOT FOUND THEN
        -- The appointment went in the same transaction: nothing happened that anyone can see,
        -- and the position must not stay a gap.
        UPDATE public.appointment_change_head SET position = position - 1;
    END IF;
    RETURN NULL;
END
$$;

-- Deferred to COMMIT: see above.
DROP TRIGGER IF EXISTS appointment_status_history_logs_change ON appointment_status_history;
CREATE CONSTRAINT TRIGGER appointment_status_history_logs_change
AFTER INSERT ON appointment_status_history
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION log_appointment_change();
