//! Benchmarks of clinic-service, each printed with the baseline it is compared with, measured
//! in the same run on the same PostgreSQL:
//!
//! 1. `CreateOrganization` against a plain `CREATE DATABASE` of an empty database, interleaved,
//!    in two regimes: while spare databases last (reserve and claim a spare centrally, rename it
//!    into place, add the admin through the role it carries, activate) and when none is left
//!    (clone the migrated template, make its role and grants). The replenisher is paused throughout (the spares are made before, by an
//!    explicit round), so it is idle while either side is measured.
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

use clinic_api::{clinic::v1 as pb, identity::v1 as ipb};
use clinic_service::tenancy::spares;
use clinic_shared::pg::{connect, create_database, drop_database, parse_url};
use helpers::{Options, first_server_url, spawn_with};

/// Clinics per regime (and as many spares made before the first).
const CLINICS: usize = 20;
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

/// A pause before each measured step, so the background work the previous one left (the next
/// spare armed, audit events written) is over and neither side is measured under the other's.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn provisioning() {
    let app = spawn_with(Options {
        tweak: Box::new(|c| c.spare_databases = CLINICS),
        ..Options::default()
    })
    .await;
    // Idle from here on: spares are made by the explicit round below, never in the background.
    app.access.spares().pause().await;
    let owner = app.user("bench-owner").await;
    // The first clinic may migrate the template database; not part of the figures.
    app.create_org(&owner, "warm up").await;
    let started = Instant::now();
    for (server, result) in spares::replenish_all(&app.access).await {
        let made = result.expect("replenish");
        println!(
            "{server}: {} spares made in {:?} (before measuring)",
            made.created,
            started.elapsed()
        );
    }
    let ready = spare_count(&app).await;
    assert_eq!(ready, CLINICS, "spares ready before measuring");

    // Interleaved, and no DROP DATABASE inside the loops (each one forces a checkpoint), so disk
    // load from anything else hits both sides alike.
    let server = connect(&parse_url(&first_server_url()).expect("url")).await.expect("connect");
    let mut created = Vec::new();
    let logged = helpers::captured_logs().len();
    let (mut from_spare, mut plain_a, mut cloned) = (vec![], vec![], vec![]);
    for i in 0..CLINICS {
        settle().await;
        let started = Instant::now();
        app.create_org(&owner, &format!("spare {i}")).await;
        from_spare.push(started.elapsed());

        let name = format!("clinic_{}_plain_a_{i}", app.tag);
        created.push(name.clone());
        settle().await;
        let started = Instant::now();
        create_database(&server, &name, None).await.expect("create database");
        plain_a.push(started.elapsed());
    }
    assert_eq!(spare_count(&app).await, 0, "every clinic of the first regime took a spare");
    let spare_steps = steps(&helpers::captured_logs()[logged..]);
    let logged = helpers::captured_logs().len();
    let (mut no_spare, mut plain_b) = (vec![], vec![]);
    for i in 0..CLINICS {
        settle().await;
        let started = Instant::now();
        app.create_org(&owner, &format!("none left {i}")).await;
        no_spare.push(started.elapsed());

        let name = format!("clinic_{}_plain_b_{i}", app.tag);
        created.push(name.clone());
        settle().await;
        let started = Instant::now();
        create_database(&server, &name, None).await.expect("create database");
        plain_b.push(started.elapsed());

        let name = format!("clinic_{}_clone_{i}", app.tag);
        created.push(name.clone());
        let started = Instant::now();
        let template = Some(app.config.template_database.as_str());
        create_database(&server, &name, template).await.expect("clone template");
        cloned.push(started.elapsed());
    }
    let none_left_steps = steps(&helpers::captured_logs()[logged..]);
    for name in created {
        drop_database(&server, &name).await.expect("drop database");
    }

    let plain_a = Figures::new(plain_a);
    let plain_b = Figures::new(plain_b);
    let from_spare = Figures::new(from_spare);
    let no_spare = Figures::new(no_spare);
    let cloned = Figures::new(cloned);
    let ratio = |a: &Figures, b: &Figures| a.median().as_secs_f64() / b.median().as_secs_f64();
    println!("\n== provisioning: a new clinic vs plain CREATE DATABASE (replenisher idle)");
    println!("-- while spares last ({CLINICS} spares made before)");
    println!("{}", plain_a.line("baseline: CREATE DATABASE (empty)"));
    println!("{}", from_spare.line("CreateOrganization from a spare"));
    println!("   steps (medians, ms): {spare_steps}");
    println!("-- none left (clone of the template)");
    println!("{}", plain_b.line("baseline: CREATE DATABASE (empty)"));
    println!("{}", cloned.line("CREATE DATABASE ... TEMPLATE (the clinic template)"));
    println!("{}", no_spare.line("CreateOrganization, no spare left"));
    println!("   steps (medians, ms): {none_left_steps}");
    println!(
        "ratio (median): spares {:.2}x the baseline, none left {:.2}x the baseline",
        ratio(&from_spare, &plain_a),
        ratio(&no_spare, &plain_b)
    );
}

/// Medians of the step timings `create_organization` logs in `logs`: reserve, tenant database
/// (with the membership alongside), activation, total; inside the tenant step, times since its
/// start: maintenance connection acquired, database placed (of which the clone alone), and for
/// a clone its role and grants finished (its admin row going in meanwhile), its admin row in.
fn steps(logs: &str) -> String {
    let keys = [
        "reserved_ms",
        "staged_ms",
        "reserve_ms",
        "tenant_ms",
        "acquired_ms",
        "clone_ms",
        "place_ms",
        "connected_ms",
        "admin_ms",
        "granted_ms",
        "finish_ms",
        "ready_ms",
        "activate_ms",
        "total_ms",
    ];
    let mut out = Vec::new();
    for key in keys {
        let mut values: Vec<f64> = logs
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find(&format!(" {key}="))? + key.len() + 2..];
                rest.split_whitespace().next()?.parse().ok()
            })
            .collect();
        values.sort_by(f64::total_cmp);
        if let Some(median) = values.get(values.len() / 2) {
            out.push(format!("{} {median:.1}", key.trim_end_matches("_ms")));
        }
    }
    out.join(", ")
}

/// READY spares on the first server.
async fn spare_count(app: &helpers::TestApp) -> usize {
    let request = ipb::ListSpareDatabasesRequest { server: "main".into() };
    let spares = app.directory().list_spare_databases(request).await.expect("list spares");
    let spares = spares.into_inner().spare_databases;
    spares.iter().filter(|s| s.state() == ipb::SpareDatabaseState::Ready).count()
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
    // Only the step timings it reports (and warnings): the tests' trace-level capture would
    // format every event of both services on the measured side.
    helpers::capture_logs("warn,clinic_service::tenancy::provisioning=debug");
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
