//! Times at the gRPC edge: `google.protobuf.Timestamp` ↔ `chrono::DateTime<Utc>`, one way for
//! both services.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

/// A protobuf timestamp.
pub fn to_timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        // Below 10^9 by construction; the fallback is unreachable.
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The time of a protobuf timestamp, truncated to microseconds (PostgreSQL's precision, so
/// stored values and page tokens echo exactly); `None` when it is out of range or malformed
/// (negative or too many nanoseconds).
pub fn from_timestamp(ts: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(ts.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    let exact = DateTime::from_timestamp(ts.seconds, nanos)?;
    DateTime::from_timestamp_micros(exact.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_microsecond_precision() {
        let at = DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap();
        assert_eq!(from_timestamp(&to_timestamp(at)), Some(at));
        let ts = Timestamp { seconds: 1_800_000_000, nanos: 123_456_789 };
        assert_eq!(from_timestamp(&ts), Some(at));
    }

    #[test]
    fn malformed_timestamps_are_none() {
        for ts in [
            Timestamp { seconds: 0, nanos: -1 },
            Timestamp { seconds: 0, nanos: 1_000_000_000 },
            Timestamp { seconds: i64::MAX, nanos: 0 },
            Timestamp { seconds: i64::MIN, nanos: 0 },
        ] {
            assert_eq!(from_timestamp(&ts), None, "{ts:?}");
        }
    }
}
