use clinic_api::identity::v1 as pb;
use tonic::Code;

use crate::helpers::{assert_code, assert_invalid, bearer, spawn_app};

fn change(current: &str, new: &str, token: &str) -> tonic::Request<pb::ChangePasswordRequest> {
    bearer(
        pb::ChangePasswordRequest { current_password: current.into(), new_password: new.into() },
        token,
    )
}

#[tokio::test]
async fn change_password_revokes_the_other_sessions_only() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let b = app.login(&s.user.email, &s.user.password).await.unwrap().tokens.unwrap();
    let c = app.login(&s.user.email, &s.user.password).await.unwrap().tokens.unwrap();
    let mut auth = app.auth.clone();
    let r = auth
        .change_password(change(&s.user.password, "a brand new password", &s.tokens.access_token))
        .await
        .unwrap();
    assert_eq!(r.into_inner().revoked_sessions, 2);
    assert!(app.validate(&s.tokens.access_token).await.is_ok());
    assert!(app.refresh(&s.tokens.refresh_token).await.is_ok());
    assert_code(app.validate(&b.access_token).await, Code::Unauthenticated);
    assert_code(app.refresh(&c.refresh_token).await, Code::Unauthenticated);
    assert_code(app.login(&s.user.email, &s.user.password).await, Code::Unauthenticated);
    assert!(app.login(&s.user.email, "a brand new password").await.is_ok());
}

#[tokio::test]
async fn change_password_rejects_bad_input_and_changes_nothing() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let other = app.login(&s.user.email, &s.user.password).await.unwrap().tokens.unwrap();
    let mut auth = app.auth.clone();
    let token = &s.tokens.access_token;
    assert_invalid(
        auth.change_password(change("wrong password", "a brand new password", token)).await,
        "current_password",
    );
    assert_invalid(
        auth.change_password(change(&s.user.password, "short", token)).await,
        "new_password",
    );
    assert_invalid(auth.change_password(change("", "short", token)).await, "current_password");
    assert_code(
        auth.change_password(pb::ChangePasswordRequest::default()).await,
        Code::Unauthenticated,
    );
    assert!(app.validate(&other.access_token).await.is_ok());
    assert!(app.login(&s.user.email, &s.user.password).await.is_ok());
}
