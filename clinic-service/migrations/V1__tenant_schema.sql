-- Tenant schema: one copy per clinic database (clinic_<slug>).
-- The original system's tables, kept: organization_user with at most one role profile,
-- the three profile tables, and appointment.

CREATE TABLE admin_profile (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE doctor_profile (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    specialization  text NOT NULL DEFAULT '',
    license_number  text NOT NULL DEFAULT '',
    phone_number    text NOT NULL DEFAULT ''
);

CREATE TABLE patient_profile (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    date_of_birth            date,
    phone_number             text NOT NULL DEFAULT '',
    address                  text NOT NULL DEFAULT '',
    emergency_contact_name   text NOT NULL DEFAULT '',
    emergency_contact_phone  text NOT NULL DEFAULT '',
    blood_type               text NOT NULL DEFAULT ''
        CHECK (blood_type IN ('', 'A+', 'A-', 'B+', 'B-', 'AB+', 'AB-', 'O+', 'O-')),
    allergies                text NOT NULL DEFAULT '',
    chronic_conditions       text NOT NULL DEFAULT ''
);

CREATE TABLE organization_user (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The central user (identity-service) this member is.
    user_id             uuid NOT NULL UNIQUE,
    -- Copies of the central user's email and name, for listing without a round trip.
    email               text NOT NULL,
    name                text NOT NULL,
    admin_profile_id    uuid UNIQUE REFERENCES admin_profile (id) ON DELETE RESTRICT,
    doctor_profile_id   uuid UNIQUE REFERENCES doctor_profile (id) ON DELETE RESTRICT,
    patient_profile_id  uuid UNIQUE REFERENCES patient_profile (id) ON DELETE RESTRICT,
    -- Derived, so it can be filtered and indexed; the profile columns stay the truth.
    role                text GENERATED ALWAYS AS (
        CASE
            WHEN admin_profile_id IS NOT NULL THEN 'admin'
            WHEN doctor_profile_id IS NOT NULL THEN 'doctor'
            WHEN patient_profile_id IS NOT NULL THEN 'patient'
        END
    ) STORED,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- The last line of defence: at most one role (none = an incomplete registration).
    CONSTRAINT organization_user_one_role
        CHECK (num_nonnulls(admin_profile_id, doctor_profile_id, patient_profile_id) <= 1)
);

-- Role-filtered keyset pagination: WHERE role = $1 AND id > $2 ORDER BY id.
CREATE INDEX organization_user_role_id_idx ON organization_user (role, id);

CREATE TYPE appointment_status AS ENUM ('PENDING', 'APPROVED', 'DECLINED', 'COMPLETED', 'CANCELLED');

CREATE TABLE appointment (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id             uuid REFERENCES organization_user (id) ON DELETE SET NULL,
    doctor_id              uuid REFERENCES organization_user (id) ON DELETE SET NULL,
    appointment_date_time  timestamptz NOT NULL,
    status                 appointment_status NOT NULL DEFAULT 'PENDING',
    notes                  text NOT NULL DEFAULT '',
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX appointment_patient_id_idx ON appointment (patient_id);
CREATE INDEX appointment_doctor_id_idx ON appointment (doctor_id);
