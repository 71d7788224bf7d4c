//! `migrate_all` over many up-to-date tenants. A private PostgreSQL cluster (see
//! `support/cluster.rs`) serves identity-service and clinic-service, both in-process.
//! `TENANTS` (default 1,000; each takes about 7.5 MB of disk) tenant databases are cloned from the migrated template and
//! registered centrally as ACTIVE organizations, without a schema marker. Printed:
//!
//! - baseline: the first `migrate_all`, which finds no marker and so opens every database and
//!   runs refinery on it (what every run did before schema markers; it also writes the markers);
//! - markers: the following `migrate_all` runs (best of `RUNS`), which read each server's
//!   markers with one catalog query and open no database.
//!
//! Run with `cargo bench -p clinic-service --bench migrate` (release build; not part of the
//! tests). Needs no PostgreSQL running: it brings its own, and removes it at the end.

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "support/cluster.rs"]
mod cluster;
#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::{Duration, Instant};

use clinic_service::tenancy::{migrations, provisioning};
use cluster::{Cluster, Removed};
use helpers::{Options, spawn_with};

const RUNS: usize = 3;

fn main() {
    let tenants: usize = std::env::var("TENANTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let cluster = Removed(Cluster::start());
    // The test helpers put every database on TEST_DATABASE_URL's server; set before any thread.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("TEST_DATABASE_URL", cluster.0.url()) };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(tenants));
}

async fn run(tenants: usize) {
    // Tenants are served as the server's user (no bootstrap on the private cluster).
    let options = Options {
        second_server: false,
        tweak: Box::new(|config| config.tenant_role_secret = None),
        ..Options::default()
    };
    let app = spawn_with(options).await;
    let access = &app.access;
    provisioning::ensure_template(access, "main").await.unwrap();
    let owner = app.user("owner").await;
    let started = Instant::now();
    for i in 0..tenants {
        app.register_org(&owner, &format!("tenant {i}"), Some(access.template())).await;
    }
    println!("created and registered {tenants} tenant databases in {:?}", started.elapsed());

    let concurrency = app.config.migration_concurrency;
    let timed = || async {
        let started = Instant::now();
        let results = migrations::migrate_all(access, concurrency).await.unwrap();
        let took = started.elapsed();
        assert_eq!(results.len(), tenants);
        assert!(results.iter().all(|r| r.result == Ok(0)), "every tenant up to date");
        took
    };
    let baseline = timed().await;
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        best = best.min(timed().await);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("migrate_all over {tenants} up-to-date tenants, concurrency {concurrency}:");
    println!("  baseline, every database opened (no markers yet)  {:>8.0} ms", ms(baseline));
    println!("  schema markers, none opened (best of {RUNS})         {:>8.0} ms", ms(best));
    drop(app);
}
