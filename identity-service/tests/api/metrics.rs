//! `/metrics` after real calls: the gRPC series by service, method and code on both listeners,
//! throttle refusals, a stream counted when it ends, and no ids in any label.

use std::{net::SocketAddr, time::Duration};

use clinic_api::identity::v1::{self as pb, token_service_client::TokenServiceClient};
use clinic_shared::metrics::testing::{Scrape, scrape};
use tonic::Code;

use crate::helpers::{PASSWORD, assert_code, spawn_app_with};

const AUTH: &str = "identity.v1.AuthService";

fn unary(method: &'static str) -> [(&'static str, &'static str); 3] {
    [("grpc_type", "unary"), ("grpc_service", AUTH), ("grpc_method", method)]
}

fn handled(scrape: &Scrape, labels: &[(&str, &str)], code: &str) -> f64 {
    let labels: Vec<(&str, &str)> = labels.iter().copied().chain([("grpc_code", code)]).collect();
    scrape.sum("grpc_server_handled_total", &labels)
}

/// Scrapes until `ready` holds: a stream the client dropped ends on the server a moment later.
async fn scrape_until(addr: SocketAddr, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = scrape(addr).await;
        if ready(&scrape) || tokio::time::Instant::now() > deadline {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn calls_are_counted_by_method_and_code_without_ids() {
    let app = spawn_app_with(|c| {
        c.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
        c.throttle.account_failures = 1;
    })
    .await;
    let addr = app.metrics.expect("the metrics listener is bound");
    let user = app.verified_user("ann").await;
    assert_code(app.register("not an email", "bob", PASSWORD).await, Code::InvalidArgument);
    assert_code(app.login(&user.email, "wrong password").await, Code::Unauthenticated);
    assert_code(app.login(&user.email, "wrong password").await, Code::ResourceExhausted);
    // TokenService is not served on the public listener: one "unknown" method, not its name.
    let request = pb::ValidateTokenRequest { access_token: "x".into() };
    let elsewhere = TokenServiceClient::new(app.channel.clone()).validate_token(request).await;
    assert_code(elsewhere, Code::Unimplemented);
    // A stream (internal listener) the client drops: counted when it ends on the server.
    let request = pb::WatchRevocationsRequest::default();
    let mut stream = app.tokens.clone().watch_revocations(request).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some(), "the stream answers");
    drop(stream);

    let watch = [
        ("grpc_type", "server_stream"),
        ("grpc_service", "identity.v1.TokenService"),
        ("grpc_method", "WatchRevocations"),
    ];
    let m = scrape_until(addr, |m| handled(m, &watch, "Canceled") == 1.0).await;
    assert_eq!(m.sum("grpc_server_started_total", &unary("Login")), 2.0);
    assert_eq!(handled(&m, &unary("Login"), "Unauthenticated"), 1.0);
    assert_eq!(handled(&m, &unary("Login"), "ResourceExhausted"), 1.0);
    assert_eq!(handled(&m, &unary("Register"), "OK"), 1.0);
    assert_eq!(handled(&m, &unary("Register"), "InvalidArgument"), 1.0);
    assert_eq!(handled(&m, &unary("VerifyEmail"), "OK"), 1.0);
    assert_eq!(m.sum("grpc_server_handling_seconds_count", &unary("Login")), 2.0);
    let unknown = [("grpc_service", "unknown"), ("grpc_method", "unknown")];
    assert_eq!(handled(&m, &unknown, "Unimplemented"), 1.0);
    assert_eq!(m.sum("grpc_server_started_total", &watch), 1.0);
    assert_eq!(handled(&m, &watch, "Canceled"), 1.0, "the dropped stream ended");
    // Every method of the listener's services is listed, called or not.
    assert!(m.matching("grpc_server_started_total", &unary("ChangePassword")).next().is_some());
    assert_eq!(m.sum("identity_throttle_refusals_total", &[("limit", "login_account")]), 1.0);

    let user_id = user.user.id.clone();
    assert!(!user_id.is_empty() && !m.text.contains(&user_id), "no user id anywhere");
    for sample in &m.samples {
        for (_, value) in &sample.labels {
            assert!(uuid::Uuid::parse_str(value).is_err(), "an id as a label: {sample:?}");
            assert!(!value.contains('@'), "an email as a label: {sample:?}");
        }
    }
}

#[tokio::test]
async fn no_metrics_listener_without_metrics_addr() {
    let app = spawn_app_with(|_| {}).await;
    assert_eq!(app.metrics, None);
}
