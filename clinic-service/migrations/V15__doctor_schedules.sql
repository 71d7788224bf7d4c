-- Doctors' schedules: the clinic's settings (time zone, minimum notice, booking horizon), each
-- doctor's weekly working hours with a slot step and a buffer after each appointment, and time
-- off. Wall-clock times are stored as minutes of the day and read in the clinic's zone by the
-- service (Rust, IANA data bundled); PostgreSQL's own zone data is never used for them.
-- Re-runnable: every step is skipped or redone when its object exists already.

-- One row (`id` is always true): the clinic's settings.
CREATE TABLE IF NOT EXISTS clinic_settings (
    id                  boolean PRIMARY KEY DEFAULT true CONSTRAINT clinic_settings_one_row CHECK (id),
    -- IANA name, validated by the service.
    time_zone           text NOT NULL DEFAULT 'UTC'
        CONSTRAINT clinic_settings_time_zone_length CHECK (char_length(time_zone) BETWEEN 1 AND 64),
    min_notice_minutes  integer NOT NULL DEFAULT 60
        CONSTRAINT clinic_settings_min_notice_range CHECK (min_notice_minutes BETWEEN 0 AND 43200),
    horizon_days        integer NOT NULL DEFAULT 180
        CONSTRAINT clinic_settings_horizon_range CHECK (horizon_days BETWEEN 1 AND 730),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO clinic_settings DEFAULT VALUES ON CONFLICT DO NOTHING;

-- A doctor with a row here has a schedule; one without stays bookable at any future time.
CREATE TABLE IF NOT EXISTS doctor_schedule (
    doctor_id          uuid PRIMARY KEY REFERENCES organization_user (id) ON DELETE CASCADE,
    slot_step_minutes  integer NOT NULL
        CONSTRAINT doctor_schedule_step_range CHECK (slot_step_minutes BETWEEN 5 AND 480),
    buffer_minutes     integer NOT NULL DEFAULT 0
        CONSTRAINT doctor_schedule_buffer_range CHECK (buffer_minutes BETWEEN 0 AND 240),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Weekly working intervals, [start_minute, end_minute) of an ISO weekday (1 = Monday) in the
-- clinic's zone. The service refuses overlapping intervals of one weekday.
CREATE TABLE IF NOT EXISTS doctor_working_hours (
    doctor_id     uuid NOT NULL REFERENCES doctor_schedule (doctor_id) ON DELETE CASCADE,
    weekday       smallint NOT NULL CONSTRAINT doctor_working_hours_weekday CHECK (weekday BETWEEN 1 AND 7),
    start_minute  integer NOT NULL,
    end_minute    integer NOT NULL,
    CONSTRAINT doctor_working_hours_minutes
        CHECK (0 <= start_minute AND start_minute < end_minute AND end_minute <= 1440),
    PRIMARY KEY (doctor_id, weekday, start_minute)
);

-- Time off: [start_time, end_time) instants.
CREATE TABLE IF NOT EXISTS doctor_time_off (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    doctor_id   uuid NOT NULL REFERENCES organization_user (id) ON DELETE CASCADE,
    start_time  timestamptz NOT NULL,
    end_time    timestamptz NOT NULL,
    reason      text NOT NULL DEFAULT ''
        CONSTRAINT doctor_time_off_reason_length CHECK (char_length(reason) <= 500),
    created_by  uuid REFERENCES organization_user (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT doctor_time_off_order CHECK (start_time < end_time)
);
-- Listing (start, id) and range reads by doctor.
CREATE INDEX IF NOT EXISTS doctor_time_off_doctor_start_idx ON doctor_time_off (doctor_id, start_time, id);
CREATE INDEX IF NOT EXISTS doctor_time_off_created_by_idx ON doctor_time_off (created_by);

-- The buffer after an appointment, copied from the doctor's schedule at booking (later schedule
-- changes never move it), and the range the doctor's no-overlap rule checks: the visit and its
-- buffer. Rows booked before have no buffer, so the new range equals their slot.
ALTER TABLE appointment
    ADD COLUMN IF NOT EXISTS buffer_minutes integer NOT NULL DEFAULT 0
        CONSTRAINT appointment_buffer_minutes_range CHECK (buffer_minutes BETWEEN 0 AND 240),
    ADD COLUMN IF NOT EXISTS blocked tstzrange NOT NULL GENERATED ALWAYS AS (
        tstzrange(appointment_date_time,
                  appointment_end(appointment_date_time, duration_minutes + buffer_minutes), '[)')
    ) STORED;

-- Same name, so the service's mapping of constraint names to errors is unchanged.
ALTER TABLE appointment DROP CONSTRAINT IF EXISTS appointment_doctor_no_overlap;
ALTER TABLE appointment
    ADD CONSTRAINT appointment_doctor_no_overlap
        EXCLUDE USING gist (doctor_id WITH =, blocked WITH &&)
        WHERE (status IN ('PENDING', 'APPROVED'));

-- Whether an admin booked outside the doctor's schedule on purpose (the booking's entry).
ALTER TABLE appointment_status_history
    ADD COLUMN IF NOT EXISTS schedule_override boolean NOT NULL DEFAULT false;
