use clinic_api::identity::v1 as pb;
use tonic::Code;

use crate::helpers::{assert_code, assert_invalid, bearer, spawn_app, spawn_app_with};

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_session() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let second = app.refresh(&s.tokens.refresh_token).await.unwrap();
    assert_eq!(second.session_id, s.tokens.session_id);
    assert_ne!(second.refresh_token, s.tokens.refresh_token);
    assert!(app.validate(&second.access_token).await.is_ok());
    let third = app.refresh(&second.refresh_token).await.unwrap();

    // The first token was spent: presenting it again revokes the session.
    assert_code(app.refresh(&s.tokens.refresh_token).await, Code::Unauthenticated);
    assert_code(app.refresh(&third.refresh_token).await, Code::Unauthenticated);
    assert_code(app.validate(&third.access_token).await, Code::Unauthenticated);
    assert_code(app.validate(&s.tokens.access_token).await, Code::Unauthenticated);
    let reason: String =
        app.db.query_one("SELECT revoke_reason FROM session", &[]).await.unwrap().get(0);
    assert_eq!(reason, "refresh token reused");
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_get_one_successor() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let token = &s.tokens.refresh_token;
    let (a, b, c) = tokio::join!(app.refresh(token), app.refresh(token), app.refresh(token));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a.refresh_token, b.refresh_token);
    assert_eq!(a.refresh_token, c.refresh_token);
    assert_eq!(app.count("refresh_token").await, 2, "one successor stored");
    for pair in [&a, &b, &c] {
        assert!(app.validate(&pair.access_token).await.is_ok());
    }
    app.refresh(&a.refresh_token).await.unwrap();
}

/// Sets back when `token`'s successor was issued, as if `seconds` had passed since.
async fn age_refresh(app: &crate::helpers::TestApp, seconds: i32) {
    app.db
        .execute(
            "UPDATE refresh_token SET used_at = used_at - make_interval(secs => $1) \
             WHERE used_at IS NOT NULL",
            &[&f64::from(seconds)],
        )
        .await
        .unwrap();
}

async fn revoke_reason(app: &crate::helpers::TestApp) -> Option<String> {
    app.db.query_one("SELECT revoke_reason FROM session", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_retry_within_the_grace_window_gets_the_same_successor_once() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let first = app.refresh(&s.tokens.refresh_token).await.unwrap();
    // A lost answer, retried: the same successor, a fresh access token, the session lives.
    let retry = app.refresh(&s.tokens.refresh_token).await.unwrap();
    assert_eq!(retry.refresh_token, first.refresh_token);
    assert_eq!(retry.refresh_token_expire_time, first.refresh_token_expire_time);
    assert_ne!(retry.access_token, first.access_token);
    assert!(app.validate(&retry.access_token).await.is_ok());
    assert_eq!(revoke_reason(&app).await, None);

    // Once the successor is spent, the old token resurrects nothing: reuse revokes.
    let next = app.refresh(&first.refresh_token).await.unwrap();
    assert_code(app.refresh(&s.tokens.refresh_token).await, Code::Unauthenticated);
    assert_code(app.refresh(&next.refresh_token).await, Code::Unauthenticated);
    assert_eq!(revoke_reason(&app).await.as_deref(), Some("refresh token reused"));
}

#[tokio::test]
async fn reuse_after_the_grace_window_revokes_the_session() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let first = app.refresh(&s.tokens.refresh_token).await.unwrap();
    age_refresh(&app, 11).await;
    assert_code(app.refresh(&s.tokens.refresh_token).await, Code::Unauthenticated);
    assert_code(app.refresh(&first.refresh_token).await, Code::Unauthenticated);
    assert_code(app.validate(&first.access_token).await, Code::Unauthenticated);
    assert_eq!(revoke_reason(&app).await.as_deref(), Some("refresh token reused"));
}

#[tokio::test]
async fn no_grace_after_logout_or_when_switched_off() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let first = app.refresh(&s.tokens.refresh_token).await.unwrap();
    let logout = pb::LogoutRequest { refresh_token: first.refresh_token.clone() };
    app.auth.clone().logout(logout).await.unwrap();
    assert_code(app.refresh(&s.tokens.refresh_token).await, Code::Unauthenticated);

    let app = spawn_app_with(|c| c.refresh_reuse_grace = std::time::Duration::ZERO).await;
    let s = app.logged_in("ann").await;
    let first = app.refresh(&s.tokens.refresh_token).await.unwrap();
    assert_code(app.refresh(&s.tokens.refresh_token).await, Code::Unauthenticated);
    assert_code(app.refresh(&first.refresh_token).await, Code::Unauthenticated);
}

#[tokio::test]
async fn refresh_rejects_unknown_and_malformed_tokens() {
    let app = spawn_app().await;
    assert_code(app.refresh("not-a-token").await, Code::Unauthenticated);
    assert_invalid(app.refresh("").await, "refresh_token");
}

#[tokio::test]
async fn logout_revokes_only_that_session() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let other = app.login(&s.user.email, &s.user.password).await.unwrap().tokens.unwrap();
    let mut auth = app.auth.clone();
    auth.logout(pb::LogoutRequest { refresh_token: s.tokens.refresh_token.clone() }).await.unwrap();
    assert_code(app.validate(&s.tokens.access_token).await, Code::Unauthenticated);
    assert_code(app.refresh(&s.tokens.refresh_token).await, Code::Unauthenticated);
    assert!(app.validate(&other.access_token).await.is_ok());
    // Logging out again is fine; an unknown token is not.
    auth.logout(pb::LogoutRequest { refresh_token: s.tokens.refresh_token.clone() }).await.unwrap();
    let unknown = auth.logout(pb::LogoutRequest { refresh_token: "nope".into() }).await;
    assert_code(unknown, Code::Unauthenticated);
    assert_invalid(
        auth.logout(pb::LogoutRequest { refresh_token: String::new() }).await,
        "refresh_token",
    );
}

#[tokio::test]
async fn get_current_user_needs_a_live_bearer_token() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let mut auth = app.auth.clone();
    let me = auth
        .get_current_user(bearer(pb::GetCurrentUserRequest {}, &s.tokens.access_token))
        .await
        .unwrap();
    assert_eq!(me.into_inner().user.unwrap().id, s.user.user.id);
    assert_code(auth.get_current_user(pb::GetCurrentUserRequest {}).await, Code::Unauthenticated);
    assert_code(
        auth.get_current_user(bearer(pb::GetCurrentUserRequest {}, "garbage")).await,
        Code::Unauthenticated,
    );
    auth.logout(pb::LogoutRequest { refresh_token: s.tokens.refresh_token }).await.unwrap();
    let after =
        auth.get_current_user(bearer(pb::GetCurrentUserRequest {}, &s.tokens.access_token)).await;
    assert_code(after, Code::Unauthenticated);
}

#[tokio::test]
async fn validate_token_describes_the_holder_and_refuses_bad_tokens() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let v = app.validate(&s.tokens.access_token).await.unwrap();
    assert_eq!(v.email, "ann@example.com");
    assert_eq!(v.name, "ann");
    assert_eq!(v.expire_time, s.tokens.access_token_expire_time);
    assert_code(app.validate("garbage").await, Code::Unauthenticated);
    // A token signed by another instance (another key) is refused.
    let other = spawn_app().await;
    let foreign = other.logged_in("bob").await;
    assert_code(app.validate(&foreign.tokens.access_token).await, Code::Unauthenticated);
    assert_invalid(app.validate("").await, "access_token");
}

#[tokio::test]
async fn expired_access_tokens_are_refused() {
    let app = spawn_app_with(|c| c.access_token_ttl = std::time::Duration::ZERO).await;
    let s = app.logged_in("ann").await;
    assert_code(app.validate(&s.tokens.access_token).await, Code::Unauthenticated);
}

#[tokio::test]
async fn expired_refresh_tokens_are_refused() {
    let app = spawn_app_with(|c| c.refresh_token_ttl = std::time::Duration::ZERO).await;
    let s = app.logged_in("ann").await;
    assert_code(app.refresh(&s.tokens.refresh_token).await, Code::Unauthenticated);
}

/// Moves the start of every session `days` into the past.
async fn age_sessions(app: &crate::helpers::TestApp, days: i32) {
    app.db
        .execute("UPDATE session SET created_at = created_at - make_interval(days => $1)", &[&days])
        .await
        .unwrap();
}

#[tokio::test]
async fn refreshing_does_not_outlive_the_absolute_session_lifetime() {
    // Default lifetime: 90 days, however often the session is refreshed.
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let second = app.refresh(&s.tokens.refresh_token).await.unwrap();
    age_sessions(&app, 89).await;
    let third = app.refresh(&second.refresh_token).await.unwrap();
    age_sessions(&app, 2).await;

    // Past the lifetime the refresh fails and the session is revoked.
    assert_code(app.refresh(&third.refresh_token).await, Code::Unauthenticated);
    assert_code(app.validate(&third.access_token).await, Code::Unauthenticated);
    let reason: String =
        app.db.query_one("SELECT revoke_reason FROM session", &[]).await.unwrap().get(0);
    assert_eq!(reason, "session lifetime ended");
}

#[tokio::test]
async fn sessions_and_their_tokens_expire_at_the_absolute_lifetime_when_it_comes_first() {
    let hour = std::time::Duration::from_secs(3600);
    let app = spawn_app_with(|c| c.session_max_lifetime = hour).await;
    let start = chrono::Utc::now().timestamp();
    let s = app.logged_in("ann").await;
    let second = app.refresh(&s.tokens.refresh_token).await.unwrap();
    for tokens in [&s.tokens, &second] {
        let expiry = tokens.refresh_token_expire_time.unwrap().seconds;
        assert!((start + 3590..=start + 3600).contains(&expiry), "{expiry} vs {start}");
    }
    let expiry: chrono::DateTime<chrono::Utc> =
        app.db.query_one("SELECT expires_at FROM session", &[]).await.unwrap().get(0);
    assert_eq!(expiry.timestamp(), second.refresh_token_expire_time.unwrap().seconds);
}
