//! The edge's error mapping: each domain error answers one canonical code, with the field or
//! the clashing party named (no database).

use tonic::{Code, Status};

use crate::appointments::error::{Error, Party};

#[test]
fn each_error_has_its_code() {
    let cases = [
        (Error::invalid("notes", "too long"), Code::InvalidArgument, "notes"),
        (Error::MemberNotFound(Party::Doctor), Code::NotFound, "doctor_id"),
        (Error::MemberNotFound(Party::Patient), Code::NotFound, "patient_id"),
        (Error::NotFound, Code::NotFound, "appointment"),
        (Error::PermissionDenied("no"), Code::PermissionDenied, "no"),
        (
            Error::InvalidTransition { action: "approve", from: "DECLINED" },
            Code::FailedPrecondition,
            "cannot approve an appointment that is DECLINED",
        ),
        (Error::Overlap(Party::Doctor), Code::AlreadyExists, "existing appointment of the doctor"),
        (
            Error::Overlap(Party::Patient),
            Code::AlreadyExists,
            "existing appointment of the patient",
        ),
        (Error::Internal("bug"), Code::Internal, "internal error"),
    ];
    for (error, code, text) in cases {
        let name = format!("{error:?}");
        let status = Status::from(crate::error::Error::from(error));
        assert_eq!(status.code(), code, "{name}");
        assert!(status.message().contains(text), "{name}: {}", status.message());
    }
}
