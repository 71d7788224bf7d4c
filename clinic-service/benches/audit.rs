//! GetMember with the audit trail against the same calls without recording reads (the
//! baseline; only a benchmark can turn that off, never production), measured in the same run on
//! the same PostgreSQL, in alternating rounds so drift hits both alike.
//!
//! Each round: `CLIENTS` concurrent clients (one HTTP/2 channel each) call GetMember `me` as
//! the clinic's patient, a read of patient data that is recorded (buffered, then written in
//! batches) on every call, for `--secs` seconds (default 5), `--rounds` times (default 2). Printed: calls/s and p50/p99 of both, and the
//! ratio audited/baseline (target: at least 0.8x).
//!
//! Run with `cargo bench -p clinic-service --bench audit [-- --secs 5 --rounds 2]` (PostgreSQL at `TEST_DATABASE_URL`,
//! default 127.0.0.1:5432; scripts/test.sh starts one when missing).

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::{Duration, Instant};

use clinic_api::clinic::v1::{self as pb, member_service_client::MemberServiceClient};
use helpers::{Options, bearer, spawn_with};

const CLIENTS: usize = 8;

/// `--name N` from the command line, or `default`.
fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
}

/// Calls per second and sorted latencies of one round.
struct Round {
    rate: f64,
    latencies: Vec<Duration>,
}

impl Round {
    fn quantile(&self, q: f64) -> f64 {
        let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

async fn round(app: &helpers::TestApp, clinic: &helpers::Clinic, secs: u64) -> Round {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", app.clinic_addr))
                .unwrap()
                .connect()
                .await
                .unwrap();
        let mut client =
            MemberServiceClient::with_interceptor(channel, bearer(&clinic.patient.token));
        let organization_id = clinic.org.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let request = pb::GetMemberRequest {
                    organization_id: organization_id.clone(),
                    member_id: "me".into(),
                };
                let started = Instant::now();
                client.get_member(request).await.expect("get member");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort();
    Round { rate: latencies.len() as f64 / secs as f64, latencies }
}

async fn stack(record_reads: bool) -> (helpers::TestApp, helpers::Clinic) {
    let app = spawn_with(Options {
        tweak: Box::new(move |c| {
            c.audit.record_reads = record_reads;
            c.tenant_pool_size = CLIENTS;
        }),
        ..Options::default()
    })
    .await;
    let clinic = app.clinic(if record_reads { "audited" } else { "baseline" }).await;
    (app, clinic)
}

#[tokio::main]
async fn main() {
    let (baseline_app, baseline_clinic) = stack(false).await;
    let (audited_app, audited_clinic) = stack(true).await;
    // Warm both (connections, prepared statements).
    let (secs, rounds) = (arg("--secs", 5), arg("--rounds", 2));
    round(&baseline_app, &baseline_clinic, secs).await;
    round(&audited_app, &audited_clinic, secs).await;
    let (mut base, mut audited) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        base.push(round(&baseline_app, &baseline_clinic, secs).await);
        audited.push(round(&audited_app, &audited_clinic, secs).await);
    }
    println!("\n== GetMember (me, as a patient): audited vs reads not recorded");
    for (label, rounds) in [("baseline: reads not recorded", &base), ("audited", &audited)] {
        for r in rounds.iter() {
            println!(
                "{label:<30} {:>8.0} calls/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
                r.rate,
                r.quantile(0.5),
                r.quantile(0.99)
            );
        }
    }
    let mean = |rounds: &[Round]| rounds.iter().map(|r| r.rate).sum::<f64>() / rounds.len() as f64;
    println!("ratio (calls/s): {:.2}x the baseline (target >= 0.8x)", mean(&audited) / mean(&base));
}
