//! Resume tokens: opaque to clients (base64url), carrying the clinic and a log position, so a
//! token of one clinic is refused by another's stream instead of being read as a position there.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

/// What every resume token starts with, before encoding.
const KIND: &[u8] = b"watch:";

/// The token of position `position` in `organization_id`'s log.
pub fn encode(organization_id: Uuid, position: i64) -> String {
    let mut bytes = Vec::with_capacity(KIND.len() + 24);
    bytes.extend_from_slice(KIND);
    bytes.extend_from_slice(organization_id.as_bytes());
    bytes.extend_from_slice(&position.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a resume token at all.
    Malformed,
    /// A resume token of another clinic.
    OtherClinic,
}

impl Refused {
    /// The field violation's description.
    pub fn description(self) -> &'static str {
        match self {
            Refused::Malformed => "is not a resume token of WatchAppointments",
            Refused::OtherClinic => "belongs to another clinic",
        }
    }
}

/// The position a token of `organization_id` carries.
pub fn decode(token: &str, organization_id: Uuid) -> Result<i64, Refused> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| Refused::Malformed)?;
    let rest = bytes.strip_prefix(KIND).ok_or(Refused::Malformed)?;
    let (org, position) = rest.split_at_checked(16).ok_or(Refused::Malformed)?;
    let position: [u8; 8] = position.try_into().map_err(|_| Refused::Malformed)?;
    let position = i64::from_be_bytes(position);
    if position < 0 {
        return Err(Refused::Malformed);
    }
    if Uuid::from_slice(org).map_err(|_| Refused::Malformed)? != organization_id {
        return Err(Refused::OtherClinic);
    }
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_in_their_clinic() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for position in [0, 1, 42, i64::MAX] {
            assert_eq!(decode(&encode(a, position), a), Ok(position));
            assert_eq!(decode(&encode(a, position), b), Err(Refused::OtherClinic));
        }
    }

    #[test]
    fn garbage_is_malformed() {
        let org = Uuid::new_v4();
        let negative = encode(org, -1);
        let short = URL_SAFE_NO_PAD.encode(b"watch:123");
        let other_kind = URL_SAFE_NO_PAD.encode([b"paged:".as_slice(), &[0; 24]].concat());
        for token in ["x", "!!!", "", short.as_str(), other_kind.as_str(), negative.as_str()] {
            assert_eq!(decode(token, org), Err(Refused::Malformed), "{token}");
        }
    }
}
