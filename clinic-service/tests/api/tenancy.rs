//! Tenancy: the connection budget across 200 tenants, the migration runner, identity-service
//! outages.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use clinic_api::{clinic::v1 as pb, identity::v1 as ipb};
use clinic_service::tenancy::migrations;
use clinic_shared::pg::{connect, parse_url};
use tokio::{net::TcpListener, task::JoinSet};
use tonic::Code;

use crate::helpers::{Options, first_server_url, forward, spawn_with};

/// Counts this app's connections in pg_stat_activity until stopped; returns the maximum seen.
fn sample_connections(
    application_name: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(i64, u64)> {
    tokio::spawn(async move {
        let client = connect(&parse_url(&first_server_url()).unwrap()).await.unwrap();
        let (mut max, mut samples) = (0i64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&application_name],
                )
                .await
                .unwrap()
                .get(0);
            max = max.max(n);
            samples += 1;
        }
        (max, samples)
    })
}

#[tokio::test]
async fn two_hundred_tenants_stay_within_a_budget_of_twenty_connections() {
    let app = spawn_with(Options {
        tweak: Box::new(|c| {
            c.connection_budget = 20;
            c.tenant_pool_size = 4;
            c.acquire_timeout = Duration::from_secs(20);
        }),
        ..Default::default()
    })
    .await;
    let owner = app.user("owner").await;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_connections(app.config.application_name.clone(), stop.clone());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let names: Vec<String> = (0..200).map(|i| app.org_name(&format!("budget {i}"))).collect();
    let mut orgs = Vec::new();
    for chunk in names.chunks(25) {
        for name in chunk {
            let mut client = app.orgs(&owner.token);
            let name = name.clone();
            tasks.spawn(async move {
                client.create_organization(pb::CreateOrganizationRequest { name }).await
            });
        }
        while let Some(r) = tasks.join_next().await {
            orgs.push(r.unwrap().expect("create").into_inner().organization.unwrap().id);
        }
    }
    println!("created 200 clinics in {:?}", started.elapsed());
    // Use every tenant in turn, several at once, twice over.
    let ok = Arc::new(AtomicI64::new(0));
    let mut tasks = JoinSet::new();
    for round in 0..2 {
        for chunk in orgs.chunks(10) {
            for id in chunk {
                let mut members = app.members(&owner.token);
                let (id, ok) = (id.clone(), ok.clone());
                tasks.spawn(async move {
                    members
                        .get_member(pb::GetMemberRequest {
                            organization_id: id,
                            member_id: "me".into(),
                        })
                        .await
                        .expect("get member");
                    ok.fetch_add(1, Ordering::Relaxed);
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
        }
        println!("round {round} done, open pools {}", app.access.pools().open_pools());
    }
    stop.store(true, Ordering::Relaxed);
    let (max, samples) = sampler.await.unwrap();
    println!("pg_stat_activity: max {max} connections over {samples} samples");
    assert_eq!(ok.load(Ordering::Relaxed), 400);
    assert!(samples > 10);
    assert!(max <= 20, "saw {max} connections with a budget of 20");
    assert!(max > 0);
}

#[tokio::test]
async fn migrate_all_reports_each_tenant_and_survives_a_broken_one() {
    let app = spawn_with(Options::default()).await;
    let owner = app.user("owner").await;
    let good = app.create_org(&owner, "Good").await;
    let broken = app.create_org(&owner, "Broken").await;
    // A tenant whose database was created without any migration (registered, then activated).
    let bare = app.register_org(&owner, "Bare", None).await;
    // Break one: its recorded history no longer matches the embedded migrations.
    let tenant = app.tenant_client("main", &broken.database_name).await;
    tenant
        .execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1", &[])
        .await
        .unwrap();

    // Two runners at once: each reports every tenant, neither corrupts anything.
    let (first, second) = tokio::join!(
        migrations::migrate_all(&app.access, 2),
        migrations::migrate_all(&app.access, 2)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.len(), 3);
    assert_eq!(second.len(), 3);
    for results in [&first, &second] {
        let by_id =
            |id: &str| results.iter().find(|r| r.organization_id.to_string() == id).unwrap();
        assert!(by_id(&broken.id).result.is_err(), "broken tenant reported");
        assert_eq!(by_id(&good.id).result.as_ref().ok(), Some(&0));
        assert!(by_id(&bare.id).result.is_ok());
    }
    let applied: usize = [&first, &second]
        .iter()
        .map(|rs| {
            rs.iter()
                .find(|r| r.organization_id.to_string() == bare.id)
                .unwrap()
                .result
                .clone()
                .unwrap()
        })
        .sum();
    assert!(applied >= 1, "the bare tenant was migrated once");
    // Nothing pending: fast.
    let started = Instant::now();
    let again = migrations::migrate_all(&app.access, 4).await.unwrap();
    println!("no-op migration of {} tenants took {:?}", again.len(), started.elapsed());
    let bare_tenant = app.tenant_client("main", &bare.database_name).await;
    bare_tenant.query("SELECT count(*) FROM organization_user", &[]).await.expect("schema exists");
}

#[tokio::test]
async fn identity_down_is_unavailable_promptly_and_recovers() {
    let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let app = spawn_with(Options {
        tweak: Box::new(move |c| {
            c.identity_url = format!("http://{proxy_addr}");
            c.token_cache_ttl = Duration::ZERO;
        }),
        ..Default::default()
    })
    .await;
    let forwarder = tokio::spawn(forward(proxy, app.identity_internal_addr));
    let owner = app.user("owner").await;
    let org = app.create_org(&owner, "Outage").await;
    let get = pb::GetMemberRequest { organization_id: org.id.clone(), member_id: "me".into() };
    app.members(&owner.token).get_member(get.clone()).await.expect("up");

    forwarder.abort();
    let _ = forwarder.await;
    let started = Instant::now();
    // Tokens are verified locally while the revocation stream is in sync: the first call may
    // beat the stream's noticing the outage. Once it has, every call asks identity-service and
    // fails closed.
    let err = loop {
        match app.members(&owner.token).get_member(get.clone()).await {
            Err(e) => break e,
            Ok(_) => {
                assert!(started.elapsed() < Duration::from_secs(3), "never failed closed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let took = started.elapsed();
    println!("identity down: {:?} after {took:?}", err.code());
    assert_eq!(err.code(), Code::Unavailable);
    assert!(took < Duration::from_secs(3), "answered in {took:?}");

    let proxy = TcpListener::bind(proxy_addr).await.expect("rebind proxy port");
    let _forwarder = tokio::spawn(forward(proxy, app.identity_internal_addr));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match app.members(&owner.token).get_member(get.clone()).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), Code::Unavailable);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("did not recover: {e:?}"),
        }
    }
}

#[tokio::test]
async fn a_spent_budget_answers_resource_exhausted_not_a_hang() {
    let app = spawn_with(Options {
        tweak: Box::new(|c| {
            c.connection_budget = 2;
            c.tenant_pool_size = 1;
            c.acquire_timeout = Duration::from_millis(300);
        }),
        ..Default::default()
    })
    .await;
    let owner = app.user("owner").await;
    let a = app.create_org(&owner, "Busy A").await;
    let b = app.create_org(&owner, "Busy B").await;
    // Hold both budgeted connections, one per tenant.
    let held_a = app
        .access
        .connect(&app.access.organization(a.id.parse().unwrap()).await.unwrap().location)
        .await
        .unwrap();
    let held_b = app
        .access
        .connect(&app.access.organization(b.id.parse().unwrap()).await.unwrap().location)
        .await
        .unwrap();
    let started = Instant::now();
    let err = app
        .members(&owner.token)
        .get_member(pb::GetMemberRequest { organization_id: a.id.clone(), member_id: "me".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    drop((held_a, held_b));
    // Idle again: the next call succeeds (evicting the other tenant's idle connection).
    app.members(&owner.token)
        .get_member(pb::GetMemberRequest { organization_id: a.id.clone(), member_id: "me".into() })
        .await
        .expect("budget free again");
}

#[tokio::test]
async fn logout_is_seen_promptly() {
    let app = spawn_with(Options {
        tweak: Box::new(|c| c.token_cache_ttl = Duration::ZERO),
        ..Default::default()
    })
    .await;
    let owner = app.user("owner").await;
    let list = || pb::ListOrganizationsRequest::default();
    app.orgs(&owner.token).list_organizations(list()).await.expect("valid");
    ipb::auth_service_client::AuthServiceClient::new(app.identity_channel())
        .logout(ipb::LogoutRequest { refresh_token: owner.refresh_token.clone() })
        .await
        .expect("logout");
    // The revocation reaches clinic-service through the stream within moments (the `tokens`
    // tests and `bench revocation` measure it); poll rather than race it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        match app.orgs(&owner.token).list_organizations(list()).await {
            Err(err) => break err,
            Ok(_) => assert!(Instant::now() < deadline, "the logout was never seen"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(err.code(), Code::Unauthenticated);
}
