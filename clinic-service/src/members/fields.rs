//! The profile fields: one table per role of (field-mask path → column → value), the single
//! place that ties a path a client names to the column written. Column names come from these
//! tables only, never from input. Validation is by field name in `validate.rs`.

use tokio_postgres::types::ToSql;

use super::domain::{DoctorFields, PatientFields};

/// One profile field.
pub struct Field<T: 'static> {
    /// Its path in an update mask (after `doctor.` / `patient.`).
    pub path: &'static str,
    /// Its column in the profile table.
    pub column: &'static str,
    /// Its value in a parsed profile.
    pub value: fn(&T) -> &(dyn ToSql + Sync),
}

macro_rules! field {
    ($ty:ty, $name:ident) => {
        Field {
            path: stringify!($name),
            column: stringify!($name),
            value: {
                fn value(p: &$ty) -> &(dyn ToSql + Sync) {
                    &p.$name
                }
                value
            },
        }
    };
}

/// A doctor's fields (`doctor_profile`).
pub const DOCTOR: &[Field<DoctorFields>] = &[
    field!(DoctorFields, specialization),
    field!(DoctorFields, license_number),
    field!(DoctorFields, phone_number),
];

/// A patient's fields (`patient_profile`).
pub const PATIENT: &[Field<PatientFields>] = &[
    field!(PatientFields, date_of_birth),
    field!(PatientFields, phone_number),
    field!(PatientFields, address),
    field!(PatientFields, emergency_contact_name),
    field!(PatientFields, emergency_contact_phone),
    field!(PatientFields, blood_type),
    field!(PatientFields, allergies),
    field!(PatientFields, chronic_conditions),
];

/// The fields of `table` named by `paths` (`*`: all); `None` naming an unknown one.
pub fn select<T>(table: &'static [Field<T>], paths: &[&str]) -> Option<Vec<&'static Field<T>>> {
    if paths.contains(&"*") {
        return Some(table.iter().collect());
    }
    paths.iter().map(|p| table.iter().find(|f| f.path == *p)).collect()
}

/// `(column, value)` of each field, for a write.
pub fn columns<'a, T>(
    fields: &[&'static Field<T>],
    values: &'a T,
) -> Vec<(&'static str, &'a (dyn ToSql + Sync))> {
    fields.iter().map(|f| (f.column, (f.value)(values))).collect()
}
