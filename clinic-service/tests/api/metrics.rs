//! `/metrics` of both services after real calls: the gRPC series by method and code (a
//! refused token and a stream included), the budget and pool gauges, token verifications,
//! provisioning, and no ids in any label.

use std::{net::SocketAddr, time::Duration};

use clinic_api::clinic::v1::{
    self as pb, appointment_service_client::AppointmentServiceClient,
    organization_service_client::OrganizationServiceClient,
};
use clinic_shared::metrics::testing::{Scrape, scrape};
use tonic::Code;

use crate::helpers::{Options, TestApp, bearer, spawn_with};

fn method(service: &'static str, method: &'static str) -> [(&'static str, &'static str); 2] {
    [("grpc_service", service), ("grpc_method", method)]
}

fn handled(scrape: &Scrape, labels: [(&str, &str); 2], code: &str) -> f64 {
    let [service, method] = labels;
    scrape.sum("grpc_server_handled_total", &[service, method, ("grpc_code", code)])
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

async fn spawn() -> TestApp {
    let local = || Some("127.0.0.1:0".parse().unwrap());
    spawn_with(Options {
        tweak: Box::new(move |c| c.metrics_addr = local()),
        identity_tweak: Box::new(move |c| c.metrics_addr = local()),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn calls_pools_and_tokens_are_counted_without_ids() {
    let app = spawn().await;
    let addr = app.clinic_metrics.expect("clinic-service's metrics listener");
    let c = app.clinic("metrics").await;
    let get =
        |org: &str| pb::GetMemberRequest { organization_id: org.into(), member_id: "me".into() };
    app.members(&c.doctor.token).get_member(get(&c.org.id)).await.expect("GetMember");
    let bad = app.members(&c.doctor.token).get_member(get("not-an-id")).await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument);
    let orgs = OrganizationServiceClient::with_interceptor(app.clinic_channel(), bearer("forged"));
    let request = pb::GetOrganizationRequest { organization_id: c.org.id.clone() };
    assert_eq!(
        orgs.clone().get_organization(request).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // A watch stream the client drops: counted as handled once it ends on the server.
    let mut appointments =
        AppointmentServiceClient::with_interceptor(app.clinic_channel(), bearer(&c.admin.token));
    let list =
        pb::ListAppointmentsRequest { organization_id: c.org.id.clone(), ..Default::default() };
    let resume = appointments.list_appointments(list).await.unwrap().into_inner().watch_token;
    let watch =
        pb::WatchAppointmentsRequest { organization_id: c.org.id.clone(), resume_token: resume };
    let mut stream = appointments.watch_appointments(watch).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some(), "the stream answers");
    drop(stream);

    let watch = method("clinic.v1.AppointmentService", "WatchAppointments");
    let m = scrape_until(addr, |m| handled(m, watch, "Canceled") == 1.0).await;
    let members = |name| method("clinic.v1.MemberService", name);
    let organizations = |name| method("clinic.v1.OrganizationService", name);
    assert_eq!(handled(&m, organizations("CreateOrganization"), "OK"), 1.0);
    // The helper's own GetMember of the admin, and the doctor's.
    assert_eq!(handled(&m, members("GetMember"), "OK"), 2.0);
    assert_eq!(handled(&m, members("GetMember"), "InvalidArgument"), 1.0);
    assert_eq!(handled(&m, organizations("GetOrganization"), "Unauthenticated"), 1.0);
    assert_eq!(m.sum("grpc_server_started_total", &watch), 1.0);
    assert_eq!(handled(&m, watch, "Canceled"), 1.0, "the dropped stream ended");
    assert_eq!(
        m.sum("grpc_server_started_total", &[("grpc_type", "server_stream"), watch[1]]),
        1.0
    );

    let verified = |outcome| m.sum("clinic_token_verifications_total", &[("outcome", outcome)]);
    assert_eq!(verified("invalid"), 1.0, "the forged token");
    assert!(verified("verified") >= 1.0, "tokens were verified locally");
    assert_eq!(m.sum("clinic_provisioning_seconds_count", &[]), 1.0);
    assert_eq!(m.sum("clinic_db_connection_budget", &[]), app.config.connection_budget as f64);
    assert!(m.sum("clinic_tenant_pools_open", &[]) >= 1.0);
    assert!(m.sum("clinic_db_connections_in_use", &[]) >= 1.0, "the clinic's pooled connection");
    for series in [
        "clinic_db_connections_waiting",
        "clinic_tenant_connections_evicted_total",
        "clinic_token_remote_validations_total",
        "clinic_revocation_stream_lag_seconds",
        "clinic_revocation_stream_in_sync",
        "clinic_migration_seconds_count",
    ] {
        assert!(m.has(series), "{series} is listed");
    }
    // The audit trail: the set-up's writes were recorded in their transactions.
    assert!(m.sum("clinic_audit_events_written_total", &[]) >= 1.0, "audit events written");
    assert!(m.has("clinic_audit_events_buffered"), "clinic_audit_events_buffered is listed");

    // identity-service counted clinic-service's internal calls on its own listener.
    let identity = scrape(app.identity_metrics.expect("identity-service's metrics")).await;
    let reserve = method("identity.v1.DirectoryService", "ReserveOrganization");
    assert_eq!(handled(&identity, reserve, "OK"), 1.0);

    let ids = [&c.org.id, &c.admin.id, &c.doctor.id, &c.doctor_member.id, &c.patient_member.id];
    for scrape in [&m, &identity] {
        for id in ids {
            assert!(!scrape.text.contains(id.as_str()), "{id} appears in a scrape");
        }
        for sample in &scrape.samples {
            for (_, value) in &sample.labels {
                assert!(uuid::Uuid::parse_str(value).is_err(), "an id as a label: {sample:?}");
            }
        }
    }
}

#[tokio::test]
async fn a_small_budget_shows_permits_in_use_evictions_and_refusals() {
    let app = spawn_with(Options {
        tweak: Box::new(|c| {
            c.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
            c.connection_budget = 2;
            c.tenant_pool_size = 1;
            c.acquire_timeout = Duration::from_millis(300);
        }),
        ..Default::default()
    })
    .await;
    let addr = app.clinic_metrics.expect("clinic-service's metrics listener");
    let owner = app.user("owner").await;
    let mut orgs = Vec::new();
    for name in ["Budget A", "Budget B", "Budget C"] {
        orgs.push(app.create_org(&owner, name).await.id);
    }
    let me =
        |org: &str| pb::GetMemberRequest { organization_id: org.into(), member_id: "me".into() };
    for org in &orgs {
        app.members(&owner.token).get_member(me(org)).await.expect("GetMember");
    }
    // Three tenants had connections, two fit in the budget: idle ones were closed for the others.
    let m = scrape(addr).await;
    assert_eq!(m.sum("clinic_db_connection_budget", &[]), 2.0);
    assert!(m.sum("clinic_tenant_connections_evicted_total", &[]) >= 1.0);
    // Listed; its value is not fixed here: the audit trail's background writer and sealer
    // share the budget of two and may be waiting for a permit at this moment.
    assert!(m.has("clinic_db_connections_waiting"));

    // Both permits held: a call for the third tenant is refused, and the gauge says why.
    let location = |id: &str| {
        let (access, id) = (app.access.clone(), id.parse().unwrap());
        async move { access.organization(id).await.unwrap().location }
    };
    let held_a = app.access.connect(&location(&orgs[0]).await).await.unwrap();
    let held_b = app.access.connect(&location(&orgs[1]).await).await.unwrap();
    let refused = app.members(&owner.token).get_member(me(&orgs[2])).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let m = scrape(addr).await;
    assert_eq!(m.sum("clinic_db_connections_in_use", &[]), 2.0);
    let get_member = method("clinic.v1.MemberService", "GetMember");
    assert_eq!(handled(&m, get_member, "ResourceExhausted"), 1.0);
    assert!(m.sum("clinic_tenant_pools_open", &[]) >= 2.0);
    drop((held_a, held_b));
}
