//! One `WatchAppointments` stream: the log read from the resume point, a heartbeat once caught
//! up, then the clinic's hub followed (reading the log itself after a gap or when it fell
//! behind), a heartbeat every `WATCH_HEARTBEAT_SECS` with the caller's access checked again at
//! the same time. It ends when the client goes, when the caller's access does (token expiry,
//! session revoked, membership removed, role changed), on shutdown, and on a database error
//! other than a connection shortage or an outage, which are waited out (the client resumes
//! from its last token).

use chrono::{DateTime, Utc};
use clinic_api::clinic::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use super::{
    Feed, grpc,
    hub::{BATCH, Batch, Watching},
    log::{self, Change, ReadError},
    roster::Standing,
};
use crate::{appointments::domain::Actor, auth::Claims, error::Error, tenancy::Location};

/// Where the stream's messages go.
pub type Sender = mpsc::Sender<Result<pb::WatchAppointmentsResponse, Status>>;

/// Why a stream stops.
enum End {
    /// The client went away: nothing more to send.
    Gone,
    /// Send this status, then stop.
    With(Status),
}

/// One stream's state.
pub struct Watcher {
    pub(super) feed: Feed,
    pub(super) location: Location,
    pub(super) rx: broadcast::Receiver<Batch>,
    /// The caller's membership as the hub last read it.
    pub(super) membership: Watching,
    pub(super) actor: Actor,
    pub(super) claims: Claims,
    /// The call's metadata as headers (its bearer token), to check the session again. Never
    /// logged.
    pub(super) headers: http::HeaderMap,
    /// The last position sent or skipped: the stream's resume point.
    pub(super) position: i64,
}

impl Watcher {
    /// Streams into `tx` until the stream ends (see the module), starting with `first`: the
    /// changes after the resume point that the stream's opening read (at most [`BATCH`]).
    pub async fn run(mut self, tx: Sender, first: Vec<Change>) {
        if let Err(End::With(status)) = self.serve(&tx, first).await {
            let _ = tx.send(Err(status)).await;
        }
    }

    async fn serve(&mut self, tx: &Sender, first: Vec<Change>) -> Result<(), End> {
        let mut stopping = self.feed.stopping();
        let period = self.feed.config().heartbeat;
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let expiry = tokio::time::sleep(until(self.claims.expires_at, Utc::now()));
        tokio::pin!(expiry);
        let more = first.len() as i64 == BATCH;
        for change in &first {
            self.deliver(change, tx).await?;
        }
        if more {
            self.catch_up(tx).await?;
        }
        // Caught up: the client may rely on what it has from here.
        self.heartbeat(tx).await?;
        loop {
            tokio::select! {
                _ = super::stopped(&mut stopping) => return Err(shutting_down()),
                _ = tx.closed() => return Err(End::Gone),
                _ = &mut expiry => {
                    return Err(End::With(Status::unauthenticated("access token expired: watch again with a fresh one from the last resume_token")));
                }
                _ = beat.tick() => {
                    self.check_access().await?;
                    self.heartbeat(tx).await?;
                }
                received = self.rx.recv() => match received {
                    Ok(batch) => self.apply(&batch, tx).await?,
                    // Fell behind the hub: read the log instead.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up(tx).await?,
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(End::With(Status::unavailable("feed stopped: watch again from the last resume_token")));
                    }
                },
            }
        }
    }

    /// Sends what `batch` holds after the stream's position; reads the log when the batch
    /// starts beyond it (a gap: this watcher joined or fell behind).
    async fn apply(&mut self, batch: &[Change], tx: &Sender) -> Result<(), End> {
        for change in batch {
            if change.position <= self.position {
                continue;
            }
            if change.position != self.position + 1 {
                return self.catch_up(tx).await;
            }
            self.deliver(change, tx).await?;
        }
        Ok(())
    }

    /// Sends every change after the stream's position, from the log. A connection shortage or
    /// a database that does not answer is waited out (the stream stays open), so a busy budget
    /// does not turn into every stream reconnecting at once.
    async fn catch_up(&mut self, tx: &Sender) -> Result<(), End> {
        loop {
            let read = async {
                let conn = self.feed.access().connect(&self.location).await?;
                log::read_after(&*conn, self.position, BATCH).await
            };
            let changes = match read.await {
                Ok(changes) => changes,
                Err(ReadError::OutOfRange { .. }) => return Err(End::With(grpc::out_of_range())),
                Err(ReadError::Failed(e)) if transient(&e) => {
                    let mut stopping = self.feed.stopping();
                    tokio::select! {
                        _ = tx.closed() => return Err(End::Gone),
                        _ = super::stopped(&mut stopping) => return Err(shutting_down()),
                        _ = tokio::time::sleep(RETRY) => continue,
                    }
                }
                Err(ReadError::Failed(e)) => return Err(fail(e)),
            };
            for change in &changes {
                self.deliver(change, tx).await?;
            }
            if (changes.len() as i64) < BATCH {
                return Ok(());
            }
        }
    }

    /// Sends `change` if the caller may see it; either way the stream moves past it.
    async fn deliver(&mut self, change: &Change, tx: &Sender) -> Result<(), End> {
        self.position = change.position;
        if !change.parties.visible_to(&self.actor) {
            return Ok(());
        }
        let message = grpc::change_message(self.location.organization_id, change);
        tx.send(Ok(message)).await.map_err(|_| End::Gone)
    }

    async fn heartbeat(&self, tx: &Sender) -> Result<(), End> {
        let message = grpc::heartbeat(self.location.organization_id, self.position, Utc::now());
        tx.send(Ok(message)).await.map_err(|_| End::Gone)
    }

    /// Ends the stream when the caller's access is gone: the token no longer accepted (expired,
    /// session revoked), not an active member any more (NOT_FOUND, as for a clinic they never
    /// belonged to), or another role than the stream was scoped for. The membership is looked
    /// up in the hub's latest reading (one statement per clinic and heartbeat, see `roster`).
    async fn check_access(&self) -> Result<(), End> {
        match self.feed.validator().authenticate(&self.headers).await {
            Ok(claims) if claims.session_id == self.claims.session_id => {}
            Ok(_) => return Err(End::With(Status::unauthenticated("the access token changed"))),
            Err(status) => return Err(End::With(status)),
        }
        match self.membership.standing(self.claims.user_id, self.feed.config().poll) {
            Standing::Active(role) if role == Some(self.actor.role) => {}
            Standing::Active(_) => {
                return Err(End::With(Status::permission_denied(
                    "your role in this clinic changed: watch again to see what the new role may",
                )));
            }
            Standing::Gone => return Err(End::With(Error::organization_not_found().into())),
            // No recent reading (the database was busy or down): checked again next time.
            Standing::Unknown => {}
        }
        Ok(())
    }
}

/// Wait before reading the log again after a connection shortage.
const RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// A shortage of connections or a database not answering for now.
fn transient(e: &Error) -> bool {
    matches!(e, Error::Exhausted(_) | Error::Unavailable { .. })
}

fn shutting_down() -> End {
    End::With(Status::unavailable("server shutting down: watch again from the last resume_token"))
}

fn fail(e: Error) -> End {
    End::With(e.into())
}

/// How long from `now` until `at` (zero when past).
fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> std::time::Duration {
    (at - now).to_std().unwrap_or_default()
}
