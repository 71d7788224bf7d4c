//! Sending mail: a [`Mailer`] trait with an SMTP implementation (used when `SMTP_URL` is set)
//! and a development outbox that writes one file per message.

mod outbox;
mod smtp;

use std::{future::Future, pin::Pin, sync::Arc};

pub use outbox::OutboxMailer;
pub use smtp::SmtpMailer;

use crate::{config::MailConfig, error::Error};

/// A boxed future, so the trait stays object-safe without `async_trait`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that delivers a plain-text message.
pub trait Mailer: Send + Sync {
    /// Sends `body` to `to`. Implementations never log the body (it holds codes).
    fn send<'a>(
        &'a self,
        to: &'a str,
        subject: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>>;
}

/// The mailer the configuration asks for.
pub fn from_config(config: &MailConfig) -> Result<Arc<dyn Mailer>, Error> {
    match &config.smtp_url {
        Some(url) => Ok(Arc::new(SmtpMailer::new(url, &config.from)?)),
        None => Ok(Arc::new(OutboxMailer::new(config.outbox_dir.clone(), config.from.clone()))),
    }
}
