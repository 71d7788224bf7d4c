use clinic_api::identity::v1 as pb;
use tonic::{Code, Request, Status};
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

/// A login request with an `x-forwarded-for` header.
fn login_from(email: &str, password: &str, forwarded_for: &str) -> Request<pb::LoginRequest> {
    let mut request =
        Request::new(pb::LoginRequest { email: email.into(), password: password.into() });
    request.metadata_mut().insert("x-forwarded-for", forwarded_for.parse().unwrap());
    request
}

#[tokio::test]
async fn a_flood_of_other_keys_does_not_make_the_limiter_forget_an_account() {
    let app = spawn_app_with(|c| {
        c.throttle.resend_per_peer = 10_000;
        c.throttle.peer_failures = 10_000;
        c.hash_queue = 64;
    })
    .await;
    app.verified_user("ann").await;
    // The probe that broke the in-memory map: many made-up emails, each at its limit.
    for i in 0..100 {
        for _ in 0..6 {
            let email = format!("made-up-{i}@example.com");
            let request = pb::ResendVerificationCodeRequest { email };
            app.auth.clone().resend_verification_code(request).await.unwrap();
        }
    }
    let mut evaluated = 0;
    for _ in 0..40 {
        match app.login("ann@example.com", "wrong password").await {
            Err(s) if s.code() == Code::Unauthenticated => evaluated += 1,
            other => {
                assert_throttled(other);
            }
        }
    }
    assert_eq!(evaluated, 5, "the account limit (5) held after the flood");
}

#[tokio::test]
async fn parallel_wrong_passwords_evaluate_at_most_the_limit() {
    let app = spawn_app_with(|c| {
        c.throttle.account_failures = 5;
        c.throttle.peer_failures = 10_000;
        // Room for every caller in the hashing queue: only the counter may refuse them.
        c.hash_queue = 64;
    })
    .await;
    app.verified_user("ann").await;
    let attempts = (0..40).map(|_| {
        let mut auth = app.auth.clone();
        async move {
            let request = pb::LoginRequest {
                email: "ann@example.com".into(),
                password: "wrong password".into(),
            };
            auth.login(request).await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let evaluated =
        results.iter().filter(|r| matches!(r, Err(s) if s.code() == Code::Unauthenticated)).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(s) if s.code() == Code::ResourceExhausted))
        .count();
    assert_eq!((evaluated, refused), (5, 35));
}

#[tokio::test]
async fn forwarded_for_counts_the_client_only_behind_a_trusted_proxy() {
    let behind_proxy = spawn_app_with(|c| {
        c.throttle.account_failures = 100;
        c.throttle.peer_failures = 2;
        c.trusted_proxies = "127.0.0.0/8".parse().unwrap();
    })
    .await;
    let mut auth = behind_proxy.auth.clone();
    for i in 0..2 {
        let email = format!("u{i}@example.com");
        assert_code(
            auth.login(login_from(&email, "wrong", "198.51.100.7")).await,
            Code::Unauthenticated,
        );
    }
    assert_throttled(auth.login(login_from("x@example.com", "wrong", "198.51.100.7")).await);
    // Another client behind the same proxy, and a client lying to the proxy on the left.
    let other = login_from("x@example.com", "wrong", "198.51.100.8");
    assert_code(auth.login(other).await, Code::Unauthenticated);
    let spoofed = login_from("x@example.com", "wrong", "203.0.113.1, 198.51.100.7");
    assert_throttled(auth.login(spoofed).await);

    // Not behind a trusted proxy: the header is ignored, every call is the loopback peer.
    let direct = spawn_app_with(|c| {
        c.throttle.account_failures = 100;
        c.throttle.peer_failures = 2;
    })
    .await;
    let mut auth = direct.auth.clone();
    for i in 0..2 {
        let request = login_from(&format!("u{i}@example.com"), "wrong", &format!("198.51.100.{i}"));
        assert_code(auth.login(request).await, Code::Unauthenticated);
    }
    assert_throttled(auth.login(login_from("x@example.com", "wrong", "198.51.100.99")).await);
}

#[tokio::test]
async fn registrations_and_resends_are_limited_per_client() {
    let app = spawn_app_with(|c| {
        c.throttle.register_per_peer = 2;
        c.throttle.resend_per_peer = 2;
    })
    .await;
    app.register("a@example.com", "a", PASSWORD).await.unwrap();
    app.register("b@example.com", "b", PASSWORD).await.unwrap();
    assert_throttled(app.register("c@example.com", "c", PASSWORD).await);
    assert_eq!(app.count("app_user").await, 2);
    let mut auth = app.auth.clone();
    for _ in 0..2 {
        let request = pb::ResendVerificationCodeRequest { email: "a@example.com".into() };
        auth.resend_verification_code(request).await.unwrap();
    }
    let request = pb::ResendVerificationCodeRequest { email: "nobody@example.com".into() };
    assert_throttled(auth.resend_verification_code(request).await);
}

#[tokio::test]
async fn a_full_hashing_pool_refuses_at_once_with_retry_info() {
    let app = spawn_app_with(|c| {
        c.hash_workers = 1;
        c.hash_queue = 0;
    })
    .await;
    app.verified_user("ann").await;
    let started = std::time::Instant::now();
    let attempts = (0..10).map(|_| app.login("ann@example.com", PASSWORD));
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(ok >= 1, "at least the caller with the worker succeeds");
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_throttled(r);
    }
    assert!(ok < 10, "with one worker and no queue, parallel logins are shed");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn counters_are_kept_in_the_central_database() {
    let app = spawn_app_with(|c| c.throttle.account_failures = 2).await;
    for _ in 0..2 {
        assert_code(app.login("ann@example.com", "wrong").await, Code::Unauthenticated);
    }
    // Stored hashed: neither the email nor the address appears in the table.
    let rows = app
        .db
        .query("SELECT encode(key, 'escape'), count FROM throttle_counter", &[])
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let key: String = row.get(0);
        assert!(!key.contains("ann@example.com") && !key.contains("127.0.0.1"));
    }
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_shed_and_health_still_answers() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let app = spawn_app_with(|c| {
        c.limits.max_concurrent_requests = 1;
        c.hash_queue = 64;
    })
    .await;
    app.verified_user("ann").await;
    let logins = (0..10).map(|_| app.login("ann@example.com", PASSWORD));
    let health = async {
        let mut health = HealthClient::new(app.channel.clone());
        health.check(HealthCheckRequest::default()).await.map(|r| r.into_inner().status)
    };
    let (results, health) = tokio::join!(futures::future::join_all(logins), health);
    assert_eq!(health.expect("health is never shed"), 1, "SERVING");
    let shed: Vec<Status> = results.into_iter().filter_map(Result::err).collect();
    assert!(!shed.is_empty(), "ten parallel logins with room for one in flight");
    for status in shed {
        assert!(status.message().contains("in flight"), "{status:?}");
        assert_throttled(Err::<(), _>(status));
    }
}

#[tokio::test]
async fn oversized_requests_are_refused_and_change_nothing() {
    let app = spawn_app_with(|c| c.limits.max_request_bytes = 256).await;
    let name = "n".repeat(300);
    let status = app.register("big@example.com", &name, PASSWORD).await.unwrap_err();
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");
    assert_eq!(app.count("app_user").await, 0);
    app.register("small@example.com", "small", PASSWORD).await.expect("a small request passes");
}

/// The attempt counters' total in the central database.
async fn counted(app: &crate::helpers::TestApp) -> i64 {
    app.db
        .query_one("SELECT coalesce(sum(count), 0)::bigint FROM throttle_counter", &[])
        .await
        .expect("throttle_counter")
        .get(0)
}

/// A login abandoned by its caller after it was counted (while its password is hashed) is taken
/// back: abandoned calls cannot lock the account's owner out. Before, each stayed counted as a
/// failure, so a client whose requests time out under load got "too many failed attempts" for
/// its correct password.
#[tokio::test]
async fn logins_abandoned_before_their_verdict_are_not_counted_as_failures() {
    let app = spawn_app_with(|c| c.throttle.account_failures = 2).await;
    app.verified_user("ann").await;
    let before = counted(&app).await;
    for _ in 0..4 {
        let mut auth = app.auth.clone();
        let call = tokio::spawn(async move {
            let request =
                pb::LoginRequest { email: "ann@example.com".into(), password: PASSWORD.into() };
            auth.login(request).await
        });
        // Counted (account and client, one statement): the password is being hashed now.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while counted(&app).await < before + 2 {
            assert!(std::time::Instant::now() < deadline, "the attempt was never counted");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        call.abort();
        let _ = call.await;
        // Taken back in the background.
        while counted(&app).await > before {
            assert!(std::time::Instant::now() < deadline, "the abandoned attempt stayed counted");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    app.login("ann@example.com", PASSWORD).await.expect("the owner is not locked out");
}
