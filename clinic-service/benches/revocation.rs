//! How soon clinic-service refuses a logged-out session: N logouts (default 200; `LOGOUTS=n`),
//! each timed from Logout's OK to the first refusal of a cheap clinic call (`GetMember me`,
//! polled back to back), with verified tokens cached for 60 s, so no cache expiry can be what
//! refuses it. Prints p50/p99/max, how many were refused within 1 s, and how many identity-service
//! calls the polling cost (counted by a proxy in front of identity-service's internal listener;
//! 0 ValidateToken calls: the refusals came from the revocation stream).
//!
//! Run with `cargo bench -p clinic-service --bench revocation` (PostgreSQL as for the tests).

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

#[path = "../tests/api/tokens/proxy.rs"]
#[allow(dead_code)]
mod proxy;

use std::time::{Duration, Instant};

use clinic_api::{
    clinic::v1 as pb,
    identity::v1::{self as ipb, auth_service_client::AuthServiceClient},
};
use helpers::{Options, spawn_with};
use tonic::Code;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let logouts: usize = std::env::var("LOGOUTS").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    let proxy = proxy::IdentityProxy::start().await;
    let addr = proxy.addr;
    let app = spawn_with(Options {
        tweak: Box::new(move |c| {
            c.identity_url = format!("http://{addr}");
            c.token_cache_ttl = Duration::from_secs(60);
        }),
        ..Options::default()
    })
    .await;
    proxy.point_at(app.identity_internal_addr);
    let c = app.clinic("revocation").await;
    let mut auth = AuthServiceClient::new(app.identity_channel());
    let get_me = |token: &str| {
        let mut members = app.members(token);
        let request =
            pb::GetMemberRequest { organization_id: c.org.id.clone(), member_id: "me".into() };
        async move { members.get_member(request).await }
    };
    // Steady state: the revocation stream has caught up (calls stop asking identity-service).
    loop {
        let before = proxy.calls("ValidateToken");
        get_me(&c.patient.token).await.expect("warm up");
        if proxy.calls("ValidateToken") == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (mut samples, mut polls, mut identity_calls) = (Vec::new(), 0usize, 0usize);
    let password = "correct horse battery staple 42".to_owned();
    for _ in 0..logouts {
        let login = auth
            .login(ipb::LoginRequest { email: c.patient.email.clone(), password: password.clone() })
            .await
            .expect("login")
            .into_inner();
        let tokens = login.tokens.expect("tokens");
        get_me(&tokens.access_token).await.expect("the new session works (and is cached)");
        let before = proxy.calls("");
        auth.logout(ipb::LogoutRequest { refresh_token: tokens.refresh_token })
            .await
            .expect("logout");
        let ok = Instant::now();
        loop {
            polls += 1;
            match get_me(&tokens.access_token).await {
                Ok(_) => {}
                Err(s) if s.code() == Code::Unauthenticated => break,
                Err(s) => panic!("unexpected answer {s:?}"),
            }
            assert!(ok.elapsed() < Duration::from_secs(30), "never refused");
        }
        samples.push(ok.elapsed());
        identity_calls += proxy.calls("") - before;
    }
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let within = samples.iter().filter(|d| **d <= Duration::from_secs(1)).count();
    println!("\n== logout → first refusal by clinic-service (token cache TTL 60 s)");
    println!(
        "logouts {}  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  refused within 1 s: {}/{}",
        samples.len(),
        ms(at(0.50)),
        ms(at(0.99)),
        ms(*samples.last().expect("samples")),
        within,
        samples.len()
    );
    println!(
        "polling calls {polls}; identity-service calls while polling: {identity_calls} \
         (ValidateToken in all: {})",
        proxy.calls("ValidateToken")
    );
    println!(
        "baseline (before: ValidateToken answers cached for TOKEN_CACHE_TTL_SECS): a logout was \
         refused only when the cache entry expired, up to the TTL (default 5 s; 60 s here)"
    );
}
