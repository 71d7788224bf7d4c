use clinic_api::identity::v1 as pb;
use clinic_shared::config::Mode;
use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
use tonic::Code;

use crate::helpers::{PASSWORD, TestApp, assert_code, assert_invalid, spawn_app, spawn_app_with};

/// The messages in the outbox, oldest first.
fn mails(app: &TestApp) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(&app.outbox)
        .map(|d| d.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default();
    files.retain(|f| f.extension().is_some_and(|e| e == "eml"));
    files.sort();
    files
}

/// The code in the newest message of the outbox.
async fn latest_code(app: &TestApp) -> String {
    let files = mails(app);
    let text = std::fs::read_to_string(files.last().expect("a message")).expect("read");
    let digits = text.split("code is ").nth(1).expect("code in body");
    digits.chars().take(6).collect()
}

#[tokio::test]
async fn register_creates_an_unverified_user_and_mails_the_code() {
    let app = spawn_app().await;
    let r = app.register("Ann@Example.com", "Ann", PASSWORD).await.unwrap();
    let user = r.user.unwrap();
    assert_eq!(
        (user.email.as_str(), user.name.as_str(), user.email_verified),
        ("Ann@Example.com", "Ann", false)
    );
    assert_eq!(r.verification_code.len(), 6);
    assert_eq!(latest_code(&app).await, r.verification_code);
    let hash: String =
        app.db.query_one("SELECT password_hash FROM app_user", &[]).await.unwrap().get(0);
    assert!(hash.starts_with("$argon2id$") && !hash.contains(PASSWORD));
}

#[tokio::test]
async fn register_rejects_bad_input_naming_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let long_email = format!("{}@example.com", "a".repeat(250));
    let cases: &[(&str, &str, String, &str)] = &[
        ("", "Ann", PASSWORD.into(), "email"),
        ("no-at-sign", "Ann", PASSWORD.into(), "email"),
        ("a@b@c", "Ann", PASSWORD.into(), "email"),
        ("a b@c.d", "Ann", PASSWORD.into(), "email"),
        (&long_email, "Ann", PASSWORD.into(), "email"),
        ("a@b.c", "", PASSWORD.into(), "name"),
        ("a@b.c", "bell\u{7}", PASSWORD.into(), "name"),
        ("a@b.c", &"n".repeat(101), PASSWORD.into(), "name"),
        ("a@b.c", "Ann", "short".into(), "password"),
        ("a@b.c", "Ann", "p".repeat(257), "password"),
    ];
    for (email, name, password, field) in cases {
        assert_invalid(app.register(email, name, password).await, field);
    }
    // Several bad fields are all named.
    let status = app.register("", "", "").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(app.count("app_user").await, 0);
    assert_eq!(app.count("email_verification").await, 0);
}

#[tokio::test]
async fn duplicate_email_or_name_is_already_exists() {
    let app = spawn_app().await;
    app.register("ann@example.com", "Ann", PASSWORD).await.unwrap();
    assert_code(app.register("ANN@example.COM", "Other", PASSWORD).await, Code::AlreadyExists);
    assert_code(app.register("other@example.com", "Ann", PASSWORD).await, Code::AlreadyExists);
    assert_eq!(app.count("app_user").await, 1);
}

#[tokio::test]
async fn verification_codes_work_once() {
    let app = spawn_app().await;
    let r = app.register("ann@example.com", "Ann", PASSWORD).await.unwrap();
    assert_code(app.verify("ann@example.com", "000000x").await, Code::FailedPrecondition);
    let user = app.verify("ANN@example.com", &r.verification_code).await.unwrap().user.unwrap();
    assert!(user.email_verified);
    assert_code(
        app.verify("ann@example.com", &r.verification_code).await,
        Code::FailedPrecondition,
    );
    assert_code(
        app.verify("nobody@example.com", &r.verification_code).await,
        Code::FailedPrecondition,
    );
    assert_invalid(app.verify("ann@example.com", "").await, "code");
    assert_invalid(app.verify("", "123456").await, "email");
}

#[tokio::test]
async fn expired_codes_are_refused() {
    let app = spawn_app_with(|c| c.verification_code_ttl = std::time::Duration::ZERO).await;
    let r = app.register("ann@example.com", "Ann", PASSWORD).await.unwrap();
    assert_code(
        app.verify("ann@example.com", &r.verification_code).await,
        Code::FailedPrecondition,
    );
}

#[tokio::test]
async fn a_code_is_burnt_after_too_many_wrong_guesses() {
    let app = spawn_app_with(|c| c.verification_max_attempts = 2).await;
    let r = app.register("ann@example.com", "Ann", PASSWORD).await.unwrap();
    let wrong = if r.verification_code == "111111" { "222222" } else { "111111" };
    for _ in 0..2 {
        assert_code(app.verify("ann@example.com", wrong).await, Code::FailedPrecondition);
    }
    assert_code(
        app.verify("ann@example.com", &r.verification_code).await,
        Code::FailedPrecondition,
    );
}

#[tokio::test]
async fn resend_answers_the_same_and_replaces_the_code() {
    let app = spawn_app().await;
    let r = app.register("ann@example.com", "Ann", PASSWORD).await.unwrap();
    let mut auth = app.auth.clone();
    let unknown = auth
        .resend_verification_code(pb::ResendVerificationCodeRequest {
            email: "nobody@example.com".into(),
        })
        .await
        .unwrap();
    let known = auth
        .resend_verification_code(pb::ResendVerificationCodeRequest {
            email: "ann@example.com".into(),
        })
        .await
        .unwrap();
    assert_eq!(unknown.into_inner(), known.into_inner());
    // The mail is sent in the background: wait for the second message without sleeping blindly.
    let mut new_code = latest_code(&app).await;
    for _ in 0..200 {
        if mails(&app).len() >= 2 {
            new_code = latest_code(&app).await;
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(mails(&app).len(), 2);
    if new_code != r.verification_code {
        assert_code(
            app.verify("ann@example.com", &r.verification_code).await,
            Code::FailedPrecondition,
        );
    }
    assert!(app.verify("ann@example.com", &new_code).await.unwrap().user.unwrap().email_verified);
    let bad = auth
        .resend_verification_code(pb::ResendVerificationCodeRequest { email: "x".into() })
        .await;
    assert_invalid(bad, "email");
}

#[tokio::test]
async fn production_mode_never_returns_the_code() {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let path = std::env::temp_dir().join(format!("identity-key-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    let key_path = path.clone();
    let app = spawn_app_with(move |c| {
        c.mode = Mode::Production;
        c.jwt_private_key_file = Some(key_path);
    })
    .await;
    let r = app.register("ann@example.com", "Ann", PASSWORD).await.unwrap();
    assert!(r.verification_code.is_empty());
    let code = latest_code(&app).await;
    assert!(app.verify("ann@example.com", &code).await.unwrap().user.unwrap().email_verified);
    let login = app.login("ann@example.com", PASSWORD).await.unwrap();
    assert!(app.validate(&login.tokens.unwrap().access_token).await.is_ok());
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_create_one_user() {
    let app = spawn_app().await;
    let (a, b) = tokio::join!(
        app.register("ann@example.com", "Ann", PASSWORD),
        app.register("ANN@example.com", "Ann2", PASSWORD),
    );
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1);
    let failed = a.err().or(b.err()).unwrap();
    assert_eq!(failed.code(), Code::AlreadyExists);
    assert_eq!(app.count("app_user").await, 1);
}

#[tokio::test]
async fn accounts_never_verified_expire_and_free_their_email_and_name() {
    use identity_service::{config::ThrottleConfig, janitor, throttle::Throttle};
    let app = spawn_app().await;
    app.register("late@example.com", "late", PASSWORD).await.unwrap();
    app.verified_user("kept").await;
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    let throttle = Throttle::new(ThrottleConfig::default());

    // Not yet expired a day before the end of the week.
    let soon = chrono::Utc::now() + chrono::Duration::days(6);
    let swept = janitor::sweep(&app.db, &throttle, week, soon).await.unwrap();
    assert_eq!(swept.accounts, 0);

    // A wrong login leaves a counter; a week later both are gone, the verified user stays.
    let _ = app.login("late@example.com", "wrong password").await;
    let later = chrono::Utc::now() + chrono::Duration::days(8);
    let swept = janitor::sweep(&app.db, &throttle, week, later).await.unwrap();
    assert_eq!(swept.accounts, 1);
    assert!(swept.counters >= 1);
    assert_eq!(app.count("app_user").await, 1);
    assert_eq!(app.count("throttle_counter").await, 0);

    // The email and the name are free again.
    app.register("late@example.com", "late", PASSWORD).await.expect("registers again");
}

#[tokio::test]
async fn the_janitor_prunes_dead_sessions_and_spent_codes_never_a_live_sessions_tokens() {
    use identity_service::{config::ThrottleConfig, janitor, throttle::Throttle};
    let app = spawn_app().await;
    // A live session with two spent refresh tokens and its current one.
    let ann = app.logged_in("ann").await;
    let second = app.refresh(&ann.tokens.refresh_token).await.unwrap();
    let third = app.refresh(&second.refresh_token).await.unwrap();
    // A revoked session and an expired one.
    let bob = app.logged_in("bob").await;
    let logout = pb::LogoutRequest { refresh_token: bob.tokens.refresh_token.clone() };
    app.auth.clone().logout(logout).await.unwrap();
    let cy = app.logged_in("cy").await;
    app.db
        .execute(
            "UPDATE session SET expires_at = now() - interval '1 second' WHERE id = $1::text::uuid",
            &[&cy.tokens.session_id],
        )
        .await
        .unwrap();
    // Three used verification codes (ann, bob, cy), a live one and an expired one.
    app.register("dan@example.com", "dan", PASSWORD).await.unwrap();
    app.register("eve@example.com", "eve", PASSWORD).await.unwrap();
    app.db
        .execute(
            "UPDATE email_verification SET expires_at = now() - interval '1 second' \
             WHERE user_id = (SELECT id FROM app_user WHERE name = 'eve')",
            &[],
        )
        .await
        .unwrap();

    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    let throttle = Throttle::new(ThrottleConfig::default());
    let swept = janitor::sweep(&app.db, &throttle, week, chrono::Utc::now()).await.unwrap();
    assert_eq!((swept.sessions, swept.verification_codes), (2, 4));
    assert_eq!(app.count("session").await, 1);
    assert_eq!(app.count("refresh_token").await, 3, "every token of the live session is kept");
    assert_eq!(app.count("email_verification").await, 1);

    // The live session still refreshes, and reuse of its spent tokens is still detected.
    let fourth = app.refresh(&third.refresh_token).await.unwrap();
    assert_code(app.refresh(&ann.tokens.refresh_token).await, Code::Unauthenticated);
    assert_code(app.validate(&fourth.access_token).await, Code::Unauthenticated);
}
