//! SMTP mailer (lettre), for real deployments.

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor, message::Mailbox};
use secrecy::{ExposeSecret, SecretString};

use super::{BoxFuture, Mailer};
use crate::error::Error;

/// Sends through the SMTP server of `SMTP_URL`.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// A mailer for `url` (e.g. `smtps://user:pass@host`) sending as `from`.
    pub fn new(url: &SecretString, from: &str) -> Result<Self, Error> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .map_err(|_| Error::internal("SMTP_URL is not a valid SMTP URL"))?
            .build();
        let from = from.parse().map_err(|_| Error::internal("MAIL_FROM is not a mailbox"))?;
        Ok(Self { transport, from })
    }
}

impl Mailer for SmtpMailer {
    fn send<'a>(
        &'a self,
        to: &'a str,
        subject: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let to: Mailbox = to.parse().map_err(Error::internal)?;
            let message = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(subject)
                .body(body.to_owned())
                .map_err(Error::internal)?;
            self.transport.send(message).await.map_err(Error::internal)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_a_url_and_refuses_garbage() {
        let url = SecretString::from("smtp://user:pass@127.0.0.1:2525");
        assert!(SmtpMailer::new(&url, "Clinic <no-reply@clinic.local>").is_ok());
        assert!(SmtpMailer::new(&SecretString::from("not a url"), "a@b.c").is_err());
        assert!(SmtpMailer::new(&url, "not a mailbox").is_err());
    }
}
