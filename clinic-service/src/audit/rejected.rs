//! Calls that cannot be written into a tenant (no valid token: the tenant is whatever the
//! caller claims; a non-member's NOT_FOUND) go to the service log instead, at most
//! [`PER_SECOND`] lines a second, with a count of those left out.

use std::sync::atomic::{AtomicU64, Ordering};

use tonic::Code;

/// Log lines a second, at most.
pub const PER_SECOND: u64 = 10;

/// The current second (high 32 bits) and lines logged in it (low 32 bits).
static WINDOW: AtomicU64 = AtomicU64::new(0);
/// Lines left out since the last one logged.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Whether a line may be logged now (and how many were left out before it).
fn allow(now_secs: u64) -> Option<u64> {
    let second = now_secs & 0xffff_ffff;
    let mut current = WINDOW.load(Ordering::Relaxed);
    loop {
        let (at, n) = (current >> 32, current & 0xffff_ffff);
        let next = if at == second { (at << 32) | (n + 1) } else { second << 32 | 1 };
        if at == second && n >= PER_SECOND {
            SUPPRESSED.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        match WINDOW.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(SUPPRESSED.swap(0, Ordering::Relaxed)),
            Err(seen) => current = seen,
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A call refused before any handler for want of a valid token.
pub fn unauthenticated(path: &str, peer: Option<std::net::SocketAddr>, code: Code) {
    if let Some(suppressed) = allow(now_secs()) {
        let peer = peer.map(|p| p.to_string()).unwrap_or_default();
        tracing::warn!(path, peer, code = ?code, suppressed, "audit: call refused without a valid token");
    }
}

/// A refusal of a caller who is no member of the clinic named (or of an unknown clinic).
pub fn not_member(action: &str, code: Code) {
    if let Some(suppressed) = allow(now_secs()) {
        tracing::warn!(action, code = ?code, suppressed, "audit: refused a non-member");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_per_second_lines_then_a_count_of_the_rest() {
        let second = 1_000_000;
        let allowed = (0..25).filter(|_| allow(second).is_some()).count() as u64;
        assert_eq!(allowed, PER_SECOND);
        assert_eq!(allow(second + 1), Some(15), "the next second reports what was left out");
    }
}
