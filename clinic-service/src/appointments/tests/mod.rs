//! Tests of the appointments feature against a real PostgreSQL: each test gets its own tenant
//! database (all tenant migrations applied) that is dropped afterwards.

mod booking;
mod domain_tables;
mod edge;
mod idempotency;
mod lifecycle;
mod listing;
mod requests;
mod scale;

use crate::tenancy::{Db, TenantClient};
use chrono::{DateTime, Duration, DurationRound, Utc};
use clinic_shared::pg::{TestDatabase, connect};
use uuid::Uuid;

use super::{
    domain::{Actor, Appointment, AppointmentStatus, Role},
    error::Error,
    requests::{CreateAppointment, MemberRef},
    service,
};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The audit trail of a call by `actor` (a random user): the writes under test record their
/// event in their transaction as the handlers' do.
pub fn trail(actor: &Actor) -> crate::audit::Trail {
    let action = crate::audit::Action::new("test/Write", "appointment", crate::audit::Kind::Write);
    let mut trail = crate::audit::Trail::start(&tonic::Request::new(()), action);
    let caller = crate::tenancy::Caller {
        member_id: actor.member_id,
        user_id: Uuid::new_v4(),
        role: actor.role,
    };
    trail.enter(Uuid::new_v4(), &caller);
    trail
}

/// A migrated tenant database and a connection to it.
pub struct Tenant {
    pub db: TestDatabase,
    pub client: TenantClient,
}

impl Tenant {
    pub async fn new() -> Self {
        let db = TestDatabase::create(&TestDatabase::server(), "appt_test").await;
        let mut client = connect(&db.config).await.expect("connect to test database");
        embedded::migrations::runner().run_async(&mut client).await.expect("tenant migrations");
        Self { db, client: TenantClient::new(client) }
    }

    /// Waits until exactly `n` sessions of this database wait for a lock.
    pub async fn wait_for_lock_waiters(&self, n: i64) {
        let sql = "SELECT count(*) FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
        for _ in 0..500 {
            let row = self.client.query_one(sql, &[]).await.expect("pg_stat_activity");
            if row.get::<_, i64>(0) == n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("never saw {n} sessions waiting for a lock");
    }

    /// Another connection to the same database.
    pub async fn connect(&self) -> TenantClient {
        TenantClient::new(connect(&self.db.config).await.expect("connect"))
    }

    /// A new member with `role` and an empty profile.
    pub async fn member(&self, role: Role) -> Actor {
        let (table, column) = match role {
            Role::Admin => ("admin_profile", "admin_profile_id"),
            Role::Doctor => ("doctor_profile", "doctor_profile_id"),
            Role::Patient => ("patient_profile", "patient_profile_id"),
        };
        let sql = format!(
            "WITH p AS (INSERT INTO {table} DEFAULT VALUES RETURNING id) \
             INSERT INTO organization_user (user_id, email, email_key, name, {column}) \
             SELECT gen_random_uuid(), 'm@example.test', 'm@example.test', 'member', id FROM p \
             RETURNING id"
        );
        let row = self.client.query_one(&sql, &[]).await.expect("insert member");
        Actor { member_id: row.get(0), role }
    }

    pub async fn admin(&self) -> Actor {
        self.member(Role::Admin).await
    }
    pub async fn doctor(&self) -> Actor {
        self.member(Role::Doctor).await
    }
    pub async fn patient(&self) -> Actor {
        self.member(Role::Patient).await
    }

    /// Books as `actor` through the service.
    pub async fn book(
        &mut self,
        actor: &Actor,
        patient: Uuid,
        doctor: Uuid,
        start: DateTime<Utc>,
        minutes: i32,
    ) -> Result<Appointment, Error> {
        service::create(
            &mut self.client,
            actor,
            &booking(patient, doctor, start, minutes),
            &mut trail(actor),
        )
        .await
    }

    /// Sets a status directly, bypassing the rules (to set up a test case).
    pub async fn force_status(&self, id: Uuid, status: AppointmentStatus) {
        self.client
            .execute(
                "UPDATE appointment SET status = $2::text::appointment_status WHERE id = $1",
                &[&id, &status.as_sql()],
            )
            .await
            .expect("force status");
    }

    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        self.client.query_one(&sql, &[]).await.expect("count").get(0)
    }
}

/// A validated booking request.
pub fn booking(
    patient: Uuid,
    doctor: Uuid,
    start: DateTime<Utc>,
    minutes: i32,
) -> CreateAppointment {
    CreateAppointment {
        organization_id: Uuid::nil(),
        patient: MemberRef::Id(patient),
        doctor_id: doctor,
        start_time: start,
        duration_minutes: minutes,
        notes: String::new(),
        request_id: None,
        received_at: Utc::now(),
        schedule_override: false,
    }
}

/// A whole hour `hours` from now (whole minutes keep comparisons exact).
pub fn hours_ahead(hours: i64) -> DateTime<Utc> {
    (Utc::now() + Duration::hours(hours)).duration_trunc(Duration::minutes(1)).expect("trunc")
}
