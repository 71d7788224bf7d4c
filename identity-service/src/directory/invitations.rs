//! Invitations: the central index of pending invitations by normalised email, and the mail
//! that tells the invited person. Whether the email has an account decides which mail goes
//! out, never the answer: that lookup and the delivery run in the background.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

use super::{
    Role, organizations,
    versions::{self, Freshness, Subject},
};
use crate::{
    accounts::{Email, User, store as users},
    error::Error,
    state::AppState,
};

/// A validated SendInvitation.
#[derive(Debug, Clone)]
pub struct Invitation {
    /// The organization.
    pub organization: Uuid,
    /// The invited address.
    pub email: Email,
    /// The role offered.
    pub role: Role,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// The tenant's version of the member (0: unversioned).
    pub version: i64,
}

/// Records (or renews) `invitation` and has the person mailed in the background. The same
/// answer whether or not the email has an account. NOT_FOUND for an unknown organization. An
/// older version than the one applied is ignored; a repeated one mails nobody again.
pub async fn send(
    state: &AppState,
    invitation: Invitation,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if invitation.expires_at <= now {
        return Err(Error::invalid("expire_time", "must be in the future"));
    }
    let org = organizations::get(state, invitation.organization).await?;
    let email = invitation.email.normalized();
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    let subject = Subject::Invitation(&email);
    let freshness = versions::claim(&tx, org.id, subject, invitation.version).await?;
    if freshness == Freshness::Stale {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO organization_invitation \
             (organization_id, email, role, expires_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (organization_id, email) DO UPDATE \
             SET role = EXCLUDED.role, expires_at = EXCLUDED.expires_at, updated_at = $5",
        &[
            &invitation.organization,
            &email,
            &invitation.role.as_str(),
            &invitation.expires_at,
            &now,
        ],
    )
    .await
    .map_err(|e| match e.as_db_error().and_then(|d| d.constraint()) {
        Some("organization_invitation_organization_id_fkey") => {
            Error::NotFound("organization not found")
        }
        _ => Error::Database(e),
    })?;
    tx.commit().await?;
    tracing::info!(organization_id = %org.id, role = invitation.role.as_str(), "invitation recorded");
    if freshness == Freshness::Same {
        return Ok(());
    }
    let (db, mailer) = (state.db.clone(), state.mailer.clone());
    state.spawn_background(async move {
        let organization_id = org.id;
        let result = async {
            let account = account(&db, &invitation.email).await?;
            let body = body(&org.name, &invitation, account.as_ref());
            mailer.send(invitation.email.as_str(), SUBJECT, &body).await
        };
        if let Err(e) = result.await {
            tracing::error!(%organization_id, error = %e, "invitation mail not sent");
        }
    });
    Ok(())
}

/// Forgets the invitation of `email` to `organization` (idempotent), unless a newer `version`
/// of it was applied; the version stays recorded, so older changes stay ignored.
pub async fn remove(
    state: &AppState,
    organization: Uuid,
    email: &Email,
    version: i64,
) -> Result<(), Error> {
    let email = email.normalized();
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    let subject = Subject::Invitation(&email);
    if versions::claim(&tx, organization, subject, version).await? == Freshness::Stale {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM organization_invitation WHERE organization_id = $1 AND email = $2",
        &[&organization, &email],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(organization_id = %organization, "invitation removed");
    Ok(())
}

async fn account(db: &Pool, email: &Email) -> Result<Option<User>, Error> {
    users::by_email(&**db.get().await?, email).await
}

const SUBJECT: &str = "You are invited to a clinic";

/// The invitation mail: how to accept depends on whether `account` exists and is verified. It
/// names the clinic, the role and the expiry; nothing secret.
fn body(clinic: &str, invitation: &Invitation, account: Option<&User>) -> String {
    let role = match invitation.role {
        Role::Admin => "an administrator",
        Role::Doctor => "a doctor",
        Role::Patient => "a patient",
    };
    let until = invitation.expires_at.format("%Y-%m-%d %H:%M UTC");
    let how: &str = match account {
        Some(user) if user.is_verified => {
            "Sign in with this email address and accept the \
             invitation (AcceptInvitation)."
        }
        Some(_) => {
            "Verify this email address first (ResendVerificationCode sends a new code), \
             then sign in and accept the invitation (AcceptInvitation)."
        }
        None => {
            "There is no account with this email address yet: register with this address \
             first (Register), verify it with the code you will receive, then sign in and \
             accept the invitation (AcceptInvitation)."
        }
    };
    format!(
        "You are invited to join the clinic \"{clinic}\" as {role}.\n\n{how}\n\nThe invitation \
         expires on {until}. If you do not want to join, decline it or ignore this message."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(verified: bool) -> User {
        User {
            id: Uuid::new_v4(),
            email: "ann@example.com".into(),
            name: "Ann".into(),
            is_verified: verified,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_mail_depends_on_the_account_and_names_clinic_role_and_expiry() {
        let invitation = Invitation {
            organization: Uuid::new_v4(),
            email: Email::parse("email", "ann@example.com").unwrap(),
            role: Role::Doctor,
            expires_at: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
            version: 0,
        };
        let verified = body("Riverside", &invitation, Some(&user(true)));
        let unverified = body("Riverside", &invitation, Some(&user(false)));
        let unknown = body("Riverside", &invitation, None);
        for text in [&verified, &unverified, &unknown] {
            assert!(text.contains("\"Riverside\" as a doctor"), "{text}");
            assert!(text.contains("2030-03-17 17:46 UTC"), "{text}");
        }
        assert!(verified.contains("Sign in") && !verified.contains("register"));
        assert!(unverified.contains("Verify this email address first"));
        assert!(unknown.contains("register with this address first"));
    }
}
