//! `WatchRevocations`: one task per stream. It first sends every revocation after the resume
//! point, then a heartbeat (the follower is caught up), then live revocations as they commit:
//! woken at once by this replica's own revocations, and polling the log every
//! `REVOCATION_POLL_MS` for other replicas'. A heartbeat every `REVOCATION_HEARTBEAT_SECS`
//! carries the current resume token. The task ends when the client goes, on shutdown (the
//! follower then reconnects to another replica) and on any failure (as an error the follower
//! retries after).

use std::sync::Arc;

use chrono::Utc;
use clinic_api::identity::v1 as pb;
use tokio::sync::mpsc;
use tonic::Status;

use super::convert::timestamp;
use crate::{
    error::Error,
    state::AppState,
    tokens::revocations::{self, ReadError, Revocation},
};

/// Revocations read per query.
const BATCH: i64 = 500;

/// The answer for a resume point older than the log keeps.
pub fn out_of_range() -> Status {
    Status::out_of_range(
        "resume_token is older than the revocations kept: validate tokens with ValidateToken \
         and watch again from an empty resume_token",
    )
}

fn event(r: &Revocation) -> pb::WatchRevocationsResponse {
    pb::WatchRevocationsResponse {
        session_id: r.session_id.to_string(),
        user_id: r.user_id.to_string(),
        revoke_time: Some(timestamp(r.revoked_at)),
        forget_after: Some(timestamp(r.forget_after)),
        resume_token: revocations::resume_token(r.position),
        heartbeat: false,
    }
}

fn heartbeat(position: i64) -> pb::WatchRevocationsResponse {
    pb::WatchRevocationsResponse {
        revoke_time: Some(timestamp(Utc::now())),
        resume_token: revocations::resume_token(position),
        heartbeat: true,
        ..Default::default()
    }
}

type Sender = mpsc::Sender<Result<pb::WatchRevocationsResponse, Status>>;

/// Sends everything after `*position`, advancing it. `Err` ends the stream (the error, if any,
/// was sent).
async fn drain(state: &AppState, tx: &Sender, position: &mut i64) -> Result<(), ()> {
    loop {
        let read = match state.conn().await {
            Ok(conn) => revocations::read_after(&**conn, *position, BATCH).await,
            Err(e) => Err(ReadError::Failed(e)),
        };
        let events = match read {
            Ok(events) => events,
            Err(ReadError::OutOfRange) => {
                let _ = tx.send(Err(out_of_range())).await;
                return Err(());
            }
            Err(ReadError::Failed(e)) => {
                let _ = tx.send(Err(Status::from(e))).await;
                return Err(());
            }
        };
        for r in &events {
            tx.send(Ok(event(r))).await.map_err(|_| ())?;
            *position = r.position;
        }
        if (events.len() as i64) < BATCH {
            return Ok(());
        }
    }
}

/// Streams revocations after `position` into `tx` until the client leaves, shutdown, or a
/// failure.
pub async fn run(state: Arc<AppState>, mut position: i64, tx: Sender) {
    let mut woken = state.revoked.subscribe();
    let stop = state.shutdown.fired();
    tokio::pin!(stop);
    let mut poll = tokio::time::interval(state.config.revocation_poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let period = state.config.revocation_heartbeat;
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    if drain(&state, &tx, &mut position).await.is_err() {
        return;
    }
    // Caught up: the follower may rely on what it has from here.
    if tx.send(Ok(heartbeat(position))).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = &mut stop => {
                let _ = tx.send(Err(Status::unavailable("identity-service is shutting down"))).await;
                return;
            }
            _ = tx.closed() => return,
            _ = woken.changed() => {}
            _ = poll.tick() => {}
            _ = beat.tick() => {
                if tx.send(Ok(heartbeat(position))).await.is_err() {
                    return;
                }
                continue;
            }
        }
        if drain(&state, &tx, &mut position).await.is_err() {
            return;
        }
    }
}

/// The position a stream starts after: the resume token's, or the oldest kept for an empty
/// one. INVALID_ARGUMENT for a malformed token; OUT_OF_RANGE for one older than the log keeps.
pub async fn start(state: &AppState, resume_token: &str) -> Result<i64, Status> {
    let conn = state.conn().await?;
    let position = match revocations::parse_resume_token(resume_token)? {
        Some(position) => position,
        None => revocations::oldest(&**conn).await?,
    };
    match revocations::read_after(&**conn, position, 1).await {
        Ok(_) => Ok(position),
        Err(ReadError::OutOfRange) => Err(out_of_range()),
        Err(ReadError::Failed(e)) => Err(Error::into(e)),
    }
}
