use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::helpers::{PASSWORD, assert_code, spawn_app_with};

#[track_caller]
fn assert_throttled<T: std::fmt::Debug>(result: Result<T, Status>) {
    let status = assert_code(result, Code::ResourceExhausted);
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert!(retry.retry_delay.is_some_and(|d| d.as_secs() >= 1), "{retry:?}");
}

#[tokio::test]
async fn failed_logins_for_one_account_are_throttled_known_or_not() {
    let app = spawn_app_with(|c| c.throttle.account_failures = 2).await;
    app.verified_user("ann").await;
    for _ in 0..2 {
        assert_code(app.login("ann@example.com", "wrong password").await, Code::Unauthenticated);
        assert_code(app.login("ghost@example.com", "wrong password").await, Code::Unauthenticated);
    }
    // Even the right password waits now; an unknown account looks the same.
    assert_throttled(app.login("ANN@example.com", PASSWORD).await);
    assert_throttled(app.login("ghost@example.com", PASSWORD).await);
    assert_eq!(app.count("session").await, 0);
}

#[tokio::test]
async fn success_resets_the_account_counter() {
    let app = spawn_app_with(|c| c.throttle.account_failures = 2).await;
    app.verified_user("ann").await;
    for _ in 0..2 {
        assert_code(app.login("ann@example.com", "wrong password").await, Code::Unauthenticated);
        app.login("ann@example.com", PASSWORD).await.unwrap();
    }
}

#[tokio::test]
async fn failed_logins_from_one_peer_are_throttled() {
    let app = spawn_app_with(|c| {
        c.throttle.account_failures = 100;
        c.throttle.peer_failures = 3;
    })
    .await;
    for i in 0..3 {
        assert_code(
            app.login(&format!("user{i}@example.com"), "wrong password").await,
            Code::Unauthenticated,
        );
    }
    assert_throttled(app.login("someone-else@example.com", "wrong password").await);
}

#[tokio::test]
async fn wrong_verification_codes_are_throttled() {
    let app = spawn_app_with(|c| {
        c.throttle.verify_failures = 2;
        c.verification_max_attempts = 100;
    })
    .await;
    let r = app.register("ann@example.com", "ann", PASSWORD).await.unwrap();
    let wrong = if r.verification_code == "111111" { "222222" } else { "111111" };
    for _ in 0..2 {
        assert_code(app.verify("ann@example.com", wrong).await, Code::FailedPrecondition);
    }
    assert_throttled(app.verify("ann@example.com", &r.verification_code).await);
}
