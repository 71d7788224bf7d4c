//! A member named in a request: by id, or `me` for the caller. The one parser of such fields
//! (`member_id`, `patient_id`, `doctor_id`).

use clinic_shared::error::FieldViolation;
use uuid::Uuid;

use crate::error::Error;

/// A member by id or as `me` (the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRef {
    /// The caller.
    Me,
    /// A member id.
    Id(Uuid),
}

impl MemberRef {
    /// Parses field `field`: `me` or a UUID (surrounding spaces ignored).
    pub fn parse(field: &str, value: &str) -> Result<Self, Error> {
        Self::parse_field(field, value).map_err(|v| Error::InvalidArgument(vec![v]))
    }

    /// [`Self::parse`], answering the one violation (for parsers collecting several).
    pub fn parse_field(field: &str, value: &str) -> Result<Self, FieldViolation> {
        match value.trim() {
            "me" => Ok(Self::Me),
            "" => Err(FieldViolation::new(field, "required")),
            id => Uuid::parse_str(id)
                .map(Self::Id)
                .map_err(|_| FieldViolation::new(field, "must be a UUID or `me`")),
        }
    }

    /// The member id, with `me` resolved to `caller` (the caller's member id).
    pub fn resolve(self, caller: Uuid) -> Uuid {
        match self {
            Self::Me => caller,
            Self::Id(id) => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn me_and_uuids_parse_anything_else_names_the_field() {
        assert_eq!(MemberRef::parse("member_id", " me ").unwrap(), MemberRef::Me);
        let id = Uuid::new_v4();
        assert_eq!(MemberRef::parse("member_id", &id.to_string()).unwrap(), MemberRef::Id(id));
        for bad in ["", "ME", "not-a-uuid"] {
            let v = MemberRef::parse_field("patient_id", bad).unwrap_err();
            assert_eq!(v.field, "patient_id", "{bad:?}");
        }
        assert_eq!(MemberRef::Me.resolve(id), id);
    }
}
