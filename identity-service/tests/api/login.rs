use tonic::Code;

use crate::helpers::{PASSWORD, assert_code, assert_invalid, spawn_app};

#[tokio::test]
async fn login_returns_a_working_token_pair_and_the_user() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await;
    let r = app.login("ANN@example.com", PASSWORD).await.unwrap();
    let (tokens, user) = (r.tokens.unwrap(), r.user.unwrap());
    assert_eq!(user.id, ann.user.id);
    assert!(!tokens.refresh_token.is_empty() && !tokens.session_id.is_empty());
    let exp = tokens.access_token_expire_time.unwrap().seconds - chrono::Utc::now().timestamp();
    assert!((890..=900).contains(&exp), "{exp}");
    let v = app.validate(&tokens.access_token).await.unwrap();
    assert_eq!((v.user_id, v.session_id, v.email_verified), (ann.user.id, tokens.session_id, true));
    // Refresh tokens are stored hashed only.
    let stored: Vec<u8> =
        app.db.query_one("SELECT token_hash FROM refresh_token", &[]).await.unwrap().get(0);
    assert_ne!(stored, tokens.refresh_token.as_bytes());
}

#[tokio::test]
async fn wrong_email_and_wrong_password_answer_identically() {
    let app = spawn_app().await;
    app.verified_user("ann").await;
    let wrong_password =
        assert_code(app.login("ann@example.com", "not the password").await, Code::Unauthenticated);
    let wrong_email =
        assert_code(app.login("bob@example.com", PASSWORD).await, Code::Unauthenticated);
    assert_eq!(wrong_password.message(), wrong_email.message());
    assert_eq!(app.count("session").await, 0);
}

#[tokio::test]
async fn unverified_users_cannot_log_in() {
    let app = spawn_app().await;
    app.register("ann@example.com", "ann", PASSWORD).await.unwrap();
    assert_code(app.login("ann@example.com", PASSWORD).await, Code::FailedPrecondition);
    assert_code(app.login("ann@example.com", "wrong password").await, Code::Unauthenticated);
    assert_eq!(app.count("session").await, 0);
}

#[tokio::test]
async fn login_rejects_malformed_input() {
    let app = spawn_app().await;
    assert_invalid(app.login("", PASSWORD).await, "email");
    assert_invalid(app.login("ann@example.com", "").await, "password");
    assert_invalid(app.login("ann@example.com", &"x".repeat(257)).await, "password");
}
