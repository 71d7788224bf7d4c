//! Development mailer: each message becomes a file in the outbox directory.

use std::path::PathBuf;

use super::{BoxFuture, Mailer};
use crate::error::Error;

/// Writes messages to `<dir>/<time>-<uuid>.eml`. Each file appears whole: it is written under a
/// `.partial` name and renamed, so a reader never sees a message half written.
pub struct OutboxMailer {
    dir: PathBuf,
    from: String,
}

impl OutboxMailer {
    /// An outbox in `dir` (created on first use).
    pub fn new(dir: PathBuf, from: String) -> Self {
        Self { dir, from }
    }
}

impl Mailer for OutboxMailer {
    fn send<'a>(
        &'a self,
        to: &'a str,
        subject: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            tokio::fs::create_dir_all(&self.dir).await?;
            let name = format!(
                "{}-{}.eml",
                chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"),
                uuid::Uuid::new_v4().simple()
            );
            let text = format!("From: {}\nTo: {to}\nSubject: {subject}\n\n{body}\n", self.from);
            let partial = self.dir.join(format!("{name}.partial"));
            tokio::fs::write(&partial, text).await?;
            tokio::fs::rename(&partial, self.dir.join(&name)).await?;
            tracing::info!(file = %name, "mail written to the outbox");
            Ok(())
        })
    }
}
