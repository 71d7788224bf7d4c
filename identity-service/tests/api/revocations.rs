//! Access tokens and the revocation log: what a token carries and how long it lives, the keys
//! that verify it (`ListSigningKeys`), and `WatchRevocations` (order, resume tokens, retention).

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use clinic_api::identity::v1 as pb;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use tokio_stream::StreamExt;
use tonic::{Code, Streaming};

use crate::helpers::{TestApp, assert_code, assert_invalid, bearer, spawn_app, spawn_app_with};

async fn watch(
    app: &TestApp,
    resume_token: &str,
) -> Result<Streaming<pb::WatchRevocationsResponse>, tonic::Status> {
    let request = pb::WatchRevocationsRequest { resume_token: resume_token.into() };
    app.tokens.clone().watch_revocations(request).await.map(|r| r.into_inner())
}

/// The next message, within a generous deadline.
async fn next(
    stream: &mut Streaming<pb::WatchRevocationsResponse>,
) -> pb::WatchRevocationsResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a message within 10 s")
        .expect("stream open")
        .expect("a message, not an error")
}

/// The next revocation, skipping heartbeats.
async fn next_event(
    stream: &mut Streaming<pb::WatchRevocationsResponse>,
) -> pb::WatchRevocationsResponse {
    loop {
        let m = next(stream).await;
        if !m.heartbeat {
            return m;
        }
    }
}

async fn logout(app: &TestApp, refresh_token: &str) {
    let request = pb::LogoutRequest { refresh_token: refresh_token.into() };
    app.auth.clone().logout(request).await.expect("logout");
}

fn payload(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

fn header(token: &str) -> serde_json::Value {
    let part = token.split('.').next().expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

#[tokio::test]
async fn access_tokens_carry_ids_only_and_never_outlive_their_session() {
    let app = spawn_app_with(|c| c.session_max_lifetime = Duration::from_secs(120)).await;
    let before = Utc::now().timestamp();
    let s = app.logged_in("tina").await;
    let claims = payload(&s.tokens.access_token);
    let mut names: Vec<_> = claims.as_object().expect("object").keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["exp", "iat", "iss", "jti", "sid", "sub"]);
    let text = claims.to_string();
    assert!(!text.contains("tina"), "no email or name in the token: {text}");
    // ACCESS_TOKEN_TTL_SECS is 900, the session lives 120 s from login: the token ends with it.
    let exp = claims["exp"].as_i64().expect("exp");
    assert!(exp <= before + 121 && exp >= before + 100, "exp {exp} vs login {before}");
    // ValidateToken still answers who it is, from the database.
    let v = app.validate(&s.tokens.access_token).await.expect("valid");
    assert_eq!(
        (v.email.as_str(), v.name.as_str(), v.email_verified),
        ("tina@example.com", "tina", true)
    );
}

#[tokio::test]
async fn signing_keys_are_listed_and_verify_the_tokens() {
    let app = spawn_app().await;
    let s = app.logged_in("kim").await;
    let keys = app
        .tokens
        .clone()
        .list_signing_keys(pb::ListSigningKeysRequest {})
        .await
        .expect("keys")
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key.algorithm, "EdDSA");
    assert!(key.verify_until.is_none(), "the signing key has no retire time");
    let token = &s.tokens.access_token;
    assert_eq!(header(token)["kid"], key.kid.as_str());
    let public = VerifyingKey::from_bytes(&key.public_key.clone().try_into().expect("32 bytes"))
        .expect("an Ed25519 key");
    let (signed, signature) = token.rsplit_once('.').expect("a JWT");
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).expect("b64"))
        .expect("a signature");
    public.verify(signed.as_bytes(), &signature).expect("the listed key verifies the token");
}

#[tokio::test]
async fn logout_reuse_and_password_change_are_streamed_in_order() {
    let app = spawn_app().await;
    let mut stream = watch(&app, "").await.expect("watch");
    let caught_up = next(&mut stream).await;
    assert!(caught_up.heartbeat, "a heartbeat once caught up: {caught_up:?}");
    let a = app.logged_in("ann").await;
    logout(&app, &a.tokens.refresh_token).await;
    let e = next_event(&mut stream).await;
    assert_eq!(
        (e.session_id.as_str(), e.user_id.as_str()),
        (a.tokens.session_id.as_str(), a.user.user.id.as_str())
    );
    let forget = e.forget_after.expect("forget_after").seconds;
    assert!(forget <= Utc::now().timestamp() + 901, "kept no longer than a token lives");

    // A rotated refresh token presented again (past the grace window) revokes its session.
    let app2 = spawn_app_with(|c| c.refresh_reuse_grace = Duration::ZERO).await;
    let mut stream2 = watch(&app2, "").await.expect("watch");
    let b = app2.logged_in("bob").await;
    app2.refresh(&b.tokens.refresh_token).await.expect("rotate");
    assert_code(app2.refresh(&b.tokens.refresh_token).await, Code::Unauthenticated);
    assert_eq!(next_event(&mut stream2).await.session_id, b.tokens.session_id);

    // A password change revokes every other session, one event each.
    let c1 = app.logged_in("cat").await;
    let c2 = app.login(&c1.user.email, &c1.user.password).await.expect("login").tokens.expect("t");
    let c3 = app.login(&c1.user.email, &c1.user.password).await.expect("login").tokens.expect("t");
    let change = pb::ChangePasswordRequest {
        current_password: c1.user.password.clone(),
        new_password: "another good password".into(),
    };
    app.auth
        .clone()
        .change_password(bearer(change, &c1.tokens.access_token))
        .await
        .expect("change");
    let mut got =
        vec![next_event(&mut stream).await.session_id, next_event(&mut stream).await.session_id];
    got.sort();
    let mut want = vec![c2.session_id, c3.session_id];
    want.sort();
    assert_eq!(got, want);

    // Resuming from the first event's token gives the rest, in the same order.
    let mut resumed = watch(&app, &e.resume_token).await.expect("resume");
    let mut again =
        vec![next_event(&mut resumed).await.session_id, next_event(&mut resumed).await.session_id];
    again.sort();
    assert_eq!(again, got);
}

/// A revoking transaction that took its place in the log first but commits after a later one:
/// the watcher must get both, in log order, and never resume past the first while it is open.
#[tokio::test]
async fn a_revocation_committing_late_is_not_skipped() {
    let mut app = spawn_app().await;
    let first = app.logged_in("first").await;
    let second = app.logged_in("second").await;
    let mut stream = watch(&app, "").await.expect("watch");
    assert!(next(&mut stream).await.heartbeat);

    // Transaction 1 revokes `first` the way identity-service does, and stays open.
    let session: uuid::Uuid = first.tokens.session_id.parse().expect("uuid");
    let user: uuid::Uuid = first.user.user.id.parse().expect("uuid");
    let tx = app.db.transaction().await.expect("begin");
    tx.execute(
        "UPDATE session SET revoked_at = now(), revoke_reason = 'test' WHERE id = $1",
        &[&session],
    )
    .await
    .expect("revoke");
    let position: i64 = tx
        .query_one("UPDATE revocation_log_head SET position = position + 1 RETURNING position", &[])
        .await
        .expect("position")
        .get(0);
    tx.execute(
        "INSERT INTO session_revocation (position, session_id, user_id, revoked_at, forget_after, reason) \
         VALUES ($1, $2, $3, now(), now() + interval '15 minutes', 'test')",
        &[&position, &session, &user],
    )
    .await
    .expect("record");

    // Transaction 2 (a real Logout) comes later; it cannot commit its revocation before 1 does.
    let auth = app.auth.clone();
    let refresh = second.tokens.refresh_token.clone();
    let logout = tokio::spawn(async move {
        auth.clone().logout(pb::LogoutRequest { refresh_token: refresh }).await
    });
    // Meanwhile the watcher has nothing to resume past: only heartbeats at the old position.
    let quiet = tokio::time::timeout(Duration::from_millis(700), async {
        loop {
            let m = next(&mut stream).await;
            assert!(m.heartbeat, "no event may overtake the open transaction: {m:?}");
        }
    })
    .await;
    assert!(quiet.is_err());
    assert!(!logout.is_finished(), "the later revocation waited for the earlier one's position");

    tx.commit().await.expect("commit");
    logout.await.expect("join").expect("logout");
    let one = next_event(&mut stream).await;
    let two = next_event(&mut stream).await;
    assert_eq!(
        (one.session_id.as_str(), two.session_id.as_str()),
        (first.tokens.session_id.as_str(), second.tokens.session_id.as_str())
    );
    assert_eq!(one.resume_token, format!("r1.{position}"));
}

#[tokio::test]
async fn resume_tokens_older_than_kept_are_out_of_range_and_garbage_is_invalid() {
    let app = spawn_app().await;
    let a = app.logged_in("olga").await;
    logout(&app, &a.tokens.refresh_token).await;
    let mut stream = watch(&app, "r1.0").await.expect("watch from the start");
    assert_eq!(next_event(&mut stream).await.session_id, a.tokens.session_id);

    // The janitor's prune, past the retention: the event goes, and so does resuming before it.
    let pruned = identity_service::tokens::revocations::prune(
        &app.db,
        Duration::from_secs(3600),
        Utc::now() + chrono::Duration::hours(2),
    )
    .await
    .expect("prune");
    assert_eq!(pruned, 1);
    assert_eq!(app.count("session_revocation").await, 0);
    assert_code(watch(&app, "r1.0").await, Code::OutOfRange);
    // A token never handed out (another database's, say) is out of range as well.
    assert_code(watch(&app, "r1.999").await, Code::OutOfRange);
    // An empty token starts after what was pruned; so does the last event's token.
    let mut fresh = watch(&app, "").await.expect("watch");
    let hb = next(&mut fresh).await;
    assert!(hb.heartbeat);
    assert_eq!(hb.resume_token, "r1.1");
    watch(&app, "r1.1").await.expect("the newest position is in range");
    assert_invalid(watch(&app, "garbage").await, "resume_token");

    // A younger revocation stays.
    let b = app.logged_in("pia").await;
    logout(&app, &b.tokens.refresh_token).await;
    let pruned = identity_service::tokens::revocations::prune(
        &app.db,
        Duration::from_secs(3600),
        Utc::now(),
    )
    .await
    .expect("prune");
    assert_eq!(pruned, 0);
    assert_eq!(app.count("session_revocation").await, 1);
}

#[tokio::test]
async fn a_retention_shorter_than_a_token_lifetime_is_refused_at_start() {
    let database = clinic_shared::pg::TestDatabase::create(
        &clinic_shared::pg::TestDatabase::server(),
        "identity_test",
    )
    .await;
    let mut config = identity_service::Config::for_tests(database.config.clone());
    config.revocation_retention = Duration::from_secs(899);
    assert!(identity_service::Application::build(config).await.is_err());
}
