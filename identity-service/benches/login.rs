//! Benchmark: does login time tell who has an account? API.md wants a wrong email and a wrong
//! password answered identically "in message and in time". Measured in one run against the
//! same server: a successful login (the baseline: one argon2id verification plus a session
//! insert), a wrong password for an existing account, and an email nobody registered (verified
//! against the dummy hash). Also ValidateToken, the call clinic-service makes per request
//! (uncached), against the health check as the baseline of a bare gRPC round trip.
//!
//! Run with `cargo bench -p identity-service --bench login` (PostgreSQL at `TEST_DATABASE_URL`).

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::{Duration, Instant};

use helpers::spawn_app_with;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const LOGINS: usize = 30;
const VALIDATIONS: usize = 300;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn line(label: &str, d: Duration, baseline: Duration) {
    println!(
        "{label:<40} median {:>8.3} ms   {:.2}x the baseline",
        d.as_secs_f64() * 1e3,
        d.as_secs_f64() / baseline.as_secs_f64()
    );
}

async fn time<F, Fut>(n: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    median(samples)
}

#[tokio::main]
async fn main() {
    // Throttling would refuse the failed logins before hashing: lift it for the benchmark.
    let app = spawn_app_with(|c| {
        c.throttle.account_failures = u32::MAX;
        c.throttle.peer_failures = u32::MAX;
    })
    .await;
    let session = app.logged_in("bench").await;
    let email = session.user.email.clone();
    let password = session.user.password.clone();

    // Interleaved, so load from anything else on the machine hits all three alike.
    let (mut ok, mut wrong_password, mut unknown_email) = (vec![], vec![], vec![]);
    for _ in 0..LOGINS {
        let started = Instant::now();
        app.login(&email, &password).await.expect("login");
        ok.push(started.elapsed());
        let started = Instant::now();
        app.login(&email, "not the password at all").await.expect_err("wrong password");
        wrong_password.push(started.elapsed());
        let started = Instant::now();
        app.login("nobody-here@example.com", &password).await.expect_err("unknown email");
        unknown_email.push(started.elapsed());
    }
    let (ok, wrong_password, unknown_email) =
        (median(ok), median(wrong_password), median(unknown_email));
    println!("\n== login: time must not tell whether an account exists");
    line("baseline: successful login", ok, ok);
    line("wrong password, existing account", wrong_password, ok);
    line("unknown email (dummy hash)", unknown_email, ok);
    println!(
        "unknown email / wrong password: {:.2}x",
        unknown_email.as_secs_f64() / wrong_password.as_secs_f64()
    );

    let access = session.tokens.access_token.clone();
    let mut health = HealthClient::new(app.channel.clone());
    let bare = time(VALIDATIONS, || {
        let mut health = health.clone();
        async move {
            health.check(HealthCheckRequest { service: String::new() }).await.expect("health");
        }
    })
    .await;
    health.check(HealthCheckRequest { service: String::new() }).await.expect("health");
    let validate = time(VALIDATIONS, || async {
        app.validate(&access).await.map(drop).expect("validate");
    })
    .await;
    println!("\n== ValidateToken (signature + one indexed session lookup)");
    line("baseline: grpc.health.v1 Check", bare, bare);
    line("ValidateToken", validate, bare);
}
