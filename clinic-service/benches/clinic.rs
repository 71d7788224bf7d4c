//! Benchmarks of clinic-service, each printed with the baseline it is compared with, measured
//! in the same run on the same PostgreSQL:
//!
//! 1. `CreateOrganization` (reserve centrally, clone the migrated template, add the admin,
//!    record the membership, activate) against a plain `CREATE DATABASE` of an empty database:
//!    the issue asks for a clinic ready in little more than PostgreSQL's own time.
//! 2. An authenticated read (`GetOrganization`) with the token-validation cache on (default
//!    TTL) against the same read with the cache off, where every call asks identity-service.
//!
//! Run with `cargo bench -p clinic-service --bench clinic` (PostgreSQL at `TEST_DATABASE_URL`,
//! default 127.0.0.1:5432; scripts/test.sh starts one when missing).

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::{Duration, Instant};

use clinic_api::clinic::v1 as pb;
use clinic_shared::pg::{connect, create_database, drop_database, parse_url};
use helpers::{Options, first_server_url, spawn_app, spawn_with};

const CLINICS: usize = 10;
const READS: usize = 300;

struct Figures {
    samples: Vec<Duration>,
}

impl Figures {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self { samples }
    }
    fn median(&self) -> Duration {
        self.samples[self.samples.len() / 2]
    }
    fn mean(&self) -> Duration {
        self.samples.iter().sum::<Duration>() / self.samples.len() as u32
    }
    fn line(&self, label: &str) -> String {
        format!(
            "{label:<44} n={:<4} median {:>9.3} ms  mean {:>9.3} ms  max {:>9.3} ms",
            self.samples.len(),
            ms(self.median()),
            ms(self.mean()),
            ms(*self.samples.last().unwrap_or(&Duration::ZERO)),
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn provisioning() {
    let app = spawn_app().await;
    let owner = app.user("bench-owner").await;
    // The first clinic may migrate the template database; not part of the figures.
    app.create_org(&owner, "warm up").await;

    // Interleaved, and no DROP DATABASE inside the loop (each one forces a checkpoint), so disk
    // load from anything else hits both sides alike.
    let server = connect(&parse_url(&first_server_url()).expect("url")).await.expect("connect");
    let (mut clinic, mut plain, mut cloned) = (vec![], vec![], vec![]);
    let mut created = Vec::new();
    for i in 0..CLINICS {
        let started = Instant::now();
        app.create_org(&owner, &format!("bench {i}")).await;
        clinic.push(started.elapsed());

        let name = format!("clinic_{}_plain_{i}", app.tag);
        let started = Instant::now();
        create_database(&server, &name, None).await.expect("create database");
        plain.push(started.elapsed());
        created.push(name);

        let name = format!("clinic_{}_clone_{i}", app.tag);
        let started = Instant::now();
        let template = Some(app.config.template_database.as_str());
        create_database(&server, &name, template).await.expect("clone template");
        cloned.push(started.elapsed());
        created.push(name);
    }
    for name in created {
        drop_database(&server, &name).await.expect("drop database");
    }

    let clinic = Figures::new(clinic);
    let plain = Figures::new(plain);
    let cloned = Figures::new(cloned);
    println!("\n== provisioning: a new clinic vs plain CREATE DATABASE");
    println!("{}", plain.line("baseline: CREATE DATABASE (empty)"));
    println!("{}", cloned.line("CREATE DATABASE ... TEMPLATE (the clinic template)"));
    println!("{}", clinic.line("CreateOrganization (gRPC, end to end)"));
    println!(
        "ratio (median): {:.2}x the baseline",
        clinic.median().as_secs_f64() / plain.median().as_secs_f64()
    );
}

async fn reads(cache_ttl: Duration) -> Figures {
    let app = spawn_with(Options {
        tweak: Box::new(move |c| c.token_cache_ttl = cache_ttl),
        ..Options::default()
    })
    .await;
    let owner = app.user("bench-reader").await;
    let org = app.create_org(&owner, "reads").await;
    let mut client = app.orgs(&owner.token);
    let request = || pb::GetOrganizationRequest { organization_id: org.id.clone() };
    client.get_organization(request()).await.expect("warm up");
    let mut samples = Vec::with_capacity(READS);
    for _ in 0..READS {
        let started = Instant::now();
        client.get_organization(request()).await.expect("get organization");
        samples.push(started.elapsed());
    }
    Figures::new(samples)
}

#[tokio::main]
async fn main() {
    provisioning().await;

    let uncached = reads(Duration::ZERO).await;
    let cached = reads(Duration::from_secs(5)).await;
    println!("\n== authenticated read: token-validation cache on vs off");
    println!("{}", uncached.line("baseline: GetOrganization, cache off"));
    println!("{}", cached.line("GetOrganization, cache TTL 5 s"));
    println!(
        "ratio (median): {:.2}x the baseline",
        cached.median().as_secs_f64() / uncached.median().as_secs_f64()
    );
}
