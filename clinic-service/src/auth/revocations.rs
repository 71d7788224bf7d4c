//! Follows identity-service's `WatchRevocations`: the sessions revoked (kept until no token of
//! theirs could be valid any more), the resume token of the last message, and whether this
//! service is *in sync* — caught up (a heartbeat arrived after the catch-up) and hearing from the
//! stream within `REVOCATION_STALE_SECS`. Only in sync may a locally verified token be trusted
//! without asking identity-service; otherwise every call is validated with `ValidateToken`
//! (fail closed). The stream is reopened with backoff from the last resume token (from an empty
//! one after OUT_OF_RANGE). Time is a parameter where it matters.

use std::{
    collections::HashMap,
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use clinic_api::identity::v1::WatchRevocationsResponse;
use tonic::Code;
use uuid::Uuid;

use crate::identity::IdentityClient;

/// First and longest wait before reopening the stream.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

#[derive(Default)]
struct Inner {
    revoked: HashMap<Uuid, DateTime<Utc>>,
    /// When the stream last said it was caught up (a heartbeat); none while not caught up.
    heard: Option<Instant>,
    /// The last heartbeat ever, kept when the stream is lost (for the lag).
    last_heartbeat: Option<Instant>,
}

/// What is known about revoked sessions.
pub struct Revocations {
    stale_after: Duration,
    /// When following began: the lag of a stream that never caught up counts from here.
    created: Instant,
    inner: Mutex<Inner>,
}

impl Revocations {
    /// Nothing known yet (not in sync); in sync later only while heartbeats come within
    /// `stale_after` of each other.
    pub fn new(stale_after: Duration) -> Self {
        Self { stale_after, created: Instant::now(), inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `session` is known to be revoked.
    pub fn is_revoked(&self, session: &Uuid) -> bool {
        self.lock().revoked.contains_key(session)
    }

    /// Whether every revocation committed up to a moment ago is known (see the module).
    pub fn in_sync(&self, now: Instant) -> bool {
        self.lock().heard.is_some_and(|at| now.duration_since(at) < self.stale_after)
    }

    /// How long ago, at `now`, the stream last proved it was caught up (a heartbeat); since
    /// creation when it never has. Grows without bound while the stream is down.
    pub fn lag(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.lock().last_heartbeat.unwrap_or(self.created))
    }

    /// Applies one message of the stream at `now` / `wall` (revocations whose `forget_after`
    /// passed are dropped on heartbeats).
    fn apply(&self, m: &WatchRevocationsResponse, now: Instant, wall: DateTime<Utc>) {
        let mut inner = self.lock();
        if m.heartbeat {
            inner.heard = Some(now);
            inner.last_heartbeat = Some(now);
            inner.revoked.retain(|_, forget_after| *forget_after > wall);
            return;
        }
        let Ok(session) = m.session_id.parse::<Uuid>() else {
            tracing::error!("WatchRevocations sent an event without a session id");
            return;
        };
        // Without a time, kept for good measure until an hour from now.
        let forget_after = m
            .forget_after
            .as_ref()
            .and_then(clinic_shared::time::from_timestamp)
            .unwrap_or(wall + chrono::Duration::hours(1));
        inner.revoked.insert(session, forget_after);
    }

    /// Not in sync any more (the stream ended or failed).
    fn lost(&self) {
        self.lock().heard = None;
    }

    /// Follows the stream until `stop` resolves.
    pub async fn follow(&self, identity: IdentityClient, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut resume = String::new();
        let mut backoff = BACKOFF.0;
        loop {
            let outcome = tokio::select! {
                _ = &mut stop => return,
                outcome = self.follow_once(&identity, &mut resume) => outcome,
            };
            self.lost();
            match outcome {
                Followed::Caught => backoff = BACKOFF.0,
                Followed::OutOfRange => {
                    tracing::warn!("revocation stream out of range: resyncing from the start");
                    resume.clear();
                }
                Followed::Failed => {}
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    async fn follow_once(&self, identity: &IdentityClient, resume: &mut String) -> Followed {
        let mut stream = match identity.watch_revocations(resume.clone()).await {
            Ok(stream) => stream,
            Err(status) if status.code() == Code::OutOfRange => return Followed::OutOfRange,
            Err(status) => {
                if !crate::identity::is_misconfigured(&status) {
                    tracing::warn!(code = ?status.code(), "WatchRevocations failed; validating every token with identity-service");
                }
                return Followed::Failed;
            }
        };
        let mut caught = false;
        loop {
            // A silent stream is as good as a broken one.
            let next = tokio::time::timeout(self.stale_after, stream.message()).await;
            match next {
                Ok(Ok(Some(m))) => {
                    self.apply(&m, Instant::now(), Utc::now());
                    if m.heartbeat && !caught {
                        caught = true;
                        tracing::info!("revocation stream caught up: verifying tokens locally");
                    }
                    resume.clone_from(&m.resume_token);
                }
                Ok(Err(status)) if status.code() == Code::OutOfRange => {
                    return Followed::OutOfRange;
                }
                Ok(Err(status)) => {
                    tracing::warn!(code = ?status.code(), "revocation stream failed; validating every token with identity-service");
                    break;
                }
                Ok(Ok(None)) => {
                    tracing::info!("revocation stream ended; reconnecting");
                    break;
                }
                Err(_) => {
                    tracing::warn!("revocation stream silent; reconnecting");
                    break;
                }
            }
        }
        if caught { Followed::Caught } else { Followed::Failed }
    }
}

enum Followed {
    /// It had caught up before it ended.
    Caught,
    /// The resume token is older than what identity-service keeps.
    OutOfRange,
    /// It never caught up.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(session: Uuid, forget_after: DateTime<Utc>) -> WatchRevocationsResponse {
        WatchRevocationsResponse {
            session_id: session.to_string(),
            forget_after: Some(crate::grpc::timestamp(forget_after)),
            resume_token: "r1.1".into(),
            ..Default::default()
        }
    }

    fn heartbeat() -> WatchRevocationsResponse {
        WatchRevocationsResponse { heartbeat: true, ..Default::default() }
    }

    #[test]
    fn in_sync_only_after_a_heartbeat_and_until_stale() {
        let r = Revocations::new(Duration::from_secs(10));
        let (t0, wall) = (Instant::now(), Utc::now());
        assert!(!r.in_sync(t0));
        r.apply(&event(Uuid::new_v4(), wall), t0, wall);
        assert!(!r.in_sync(t0), "events alone do not say the stream caught up");
        r.apply(&heartbeat(), t0, wall);
        assert!(r.in_sync(t0 + Duration::from_secs(9)));
        assert!(!r.in_sync(t0 + Duration::from_secs(10)));
        r.apply(&heartbeat(), t0, wall);
        r.lost();
        assert!(!r.in_sync(t0));
    }

    #[test]
    fn lag_counts_from_the_last_heartbeat_even_after_the_stream_is_lost() {
        let r = Revocations::new(Duration::from_secs(10));
        let t0 = Instant::now();
        r.apply(&heartbeat(), t0, Utc::now());
        assert_eq!(r.lag(t0 + Duration::from_secs(3)), Duration::from_secs(3));
        r.lost();
        assert_eq!(r.lag(t0 + Duration::from_secs(30)), Duration::from_secs(30));
        assert_eq!(r.lag(t0 - Duration::from_secs(1)), Duration::ZERO, "never negative");
    }

    #[test]
    fn revocations_are_kept_until_forget_after() {
        let r = Revocations::new(Duration::from_secs(10));
        let (t0, wall) = (Instant::now(), Utc::now());
        let (soon, later) = (Uuid::new_v4(), Uuid::new_v4());
        r.apply(&event(soon, wall + chrono::Duration::seconds(5)), t0, wall);
        r.apply(&event(later, wall + chrono::Duration::seconds(60)), t0, wall);
        assert!(r.is_revoked(&soon) && r.is_revoked(&later));
        r.apply(&heartbeat(), t0, wall + chrono::Duration::seconds(6));
        assert!(!r.is_revoked(&soon), "its tokens have all expired");
        assert!(r.is_revoked(&later));
    }
}
