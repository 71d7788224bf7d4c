//! The transition table and the permission matrix, as tables (no database).

use uuid::Uuid;

use crate::appointments::domain::{
    Action, Actor,
    AppointmentStatus::{self, *},
    Parties, Role, may_book, transition,
};

/// Every from -> to pair: `Some(action)` when the table allows it.
pub const TRANSITIONS: [(AppointmentStatus, AppointmentStatus, Option<Action>); 25] = [
    (Pending, Pending, None),
    (Pending, Approved, Some(Action::Approve)),
    (Pending, Declined, Some(Action::Decline)),
    (Pending, Completed, None),
    (Pending, Cancelled, Some(Action::Cancel)),
    (Approved, Pending, None),
    (Approved, Approved, None),
    (Approved, Declined, None),
    (Approved, Completed, Some(Action::Complete)),
    (Approved, Cancelled, Some(Action::Cancel)),
    (Declined, Pending, None),
    (Declined, Approved, None),
    (Declined, Declined, None),
    (Declined, Completed, None),
    (Declined, Cancelled, None),
    (Completed, Pending, None),
    (Completed, Approved, None),
    (Completed, Declined, None),
    (Completed, Completed, None),
    (Completed, Cancelled, None),
    (Cancelled, Pending, None),
    (Cancelled, Approved, None),
    (Cancelled, Declined, None),
    (Cancelled, Completed, None),
    (Cancelled, Cancelled, None),
];

#[test]
fn transition_table_matches_the_contract() {
    for (from, to, expected) in TRANSITIONS {
        assert_eq!(transition(from, to), expected, "{from:?} -> {to:?}");
    }
}

/// Who acts, relative to one appointment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Admin,
    TheDoctor,
    AnotherDoctor,
    ThePatient,
    AnotherPatient,
}

/// (who, approve, decline, complete, cancel): may they?
pub const MAY: [(Who, [bool; 4]); 5] = [
    (Who::Admin, [true, true, true, true]),
    (Who::TheDoctor, [true, true, true, true]),
    (Who::AnotherDoctor, [false, false, false, false]),
    (Who::ThePatient, [false, false, false, true]),
    (Who::AnotherPatient, [false, false, false, false]),
];

#[test]
fn permission_matrix() {
    let parties = Parties { patient_id: Some(Uuid::new_v4()), doctor_id: Some(Uuid::new_v4()) };
    for (who, may) in MAY {
        let actor = match who {
            Who::Admin => Actor { member_id: Uuid::new_v4(), role: Role::Admin },
            Who::TheDoctor => Actor { member_id: parties.doctor_id.unwrap(), role: Role::Doctor },
            Who::AnotherDoctor => Actor { member_id: Uuid::new_v4(), role: Role::Doctor },
            Who::ThePatient => {
                Actor { member_id: parties.patient_id.unwrap(), role: Role::Patient }
            }
            Who::AnotherPatient => Actor { member_id: Uuid::new_v4(), role: Role::Patient },
        };
        for (action, expected) in Action::ALL.into_iter().zip(may) {
            assert_eq!(action.permitted(&actor, &parties), expected, "{who:?} {action:?}");
        }
        let sees = !matches!(who, Who::AnotherDoctor | Who::AnotherPatient);
        assert_eq!(parties.visible_to(&actor), sees, "{who:?} sees");
    }
}

#[test]
fn who_may_book() {
    let me = Uuid::new_v4();
    let other = Uuid::new_v4();
    let cases = [
        (Role::Admin, other, true),
        (Role::Patient, me, true),
        (Role::Patient, other, false),
        (Role::Doctor, other, false),
        (Role::Doctor, me, false),
    ];
    for (role, patient, expected) in cases {
        let actor = Actor { member_id: me, role };
        assert_eq!(may_book(&actor, patient), expected, "{role:?} for {patient}");
    }
}
