//! The list query: the caller's role scope, the filters and the keyset cursor, assembled from
//! fixed SQL fragments with numbered parameters (no caller text ever enters the SQL).

use clinic_shared::pg::RowExt;
use tokio_postgres::{Row, types::ToSql};
use uuid::Uuid;

use crate::{
    grpc::MemberRef,
    tenancy::{CALLER, Db},
};

use super::{
    domain::{Actor, Appointment, Role},
    error::Error,
    page_token::PageToken,
    repository::{AFTER_CALLER, COLUMNS, appointment_at, appointment_from_row},
    requests::ListAppointments,
};

/// A list query: fixed SQL fragments and the parameters they number.
pub struct ListQuery {
    /// The statement text.
    pub sql: String,
    /// Its parameters, in order (from `$1`, or from `$2` in [`list_for_caller_query`], whose
    /// `$1` the caller lookup binds).
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
    /// The number of the first parameter in `params`.
    first: usize,
}

impl ListQuery {
    fn new(first: usize) -> Self {
        Self { sql: String::new(), params: vec![], first }
    }

    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len() + self.first - 1)
    }

    /// The parameters as tokio-postgres takes them.
    pub fn param_refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }

    /// The filters and the keyset cursor of `req` as ` AND ...` conditions; `me` is the SQL of
    /// the caller's member id (a parameter, or a column of the caller lookup).
    fn filters(&mut self, req: &ListAppointments, me: &str) -> String {
        let mut sql = String::new();
        let mut member = |q: &mut Self, column: &str, who: MemberRef| {
            let value = match who {
                MemberRef::Me => me.to_owned(),
                MemberRef::Id(id) => q.bind(id),
            };
            sql.push_str(&format!(" AND {column} = {value}"));
        };
        if let Some(doctor) = req.doctor {
            member(self, "doctor_id", doctor);
        }
        if let Some(patient) = req.patient {
            member(self, "patient_id", patient);
        }
        if !req.statuses.is_empty() {
            let labels: Vec<String> = req.statuses.iter().map(|s| s.as_sql().to_owned()).collect();
            let p = self.bind(labels);
            sql.push_str(&format!(" AND status = ANY({p}::text[]::appointment_status[])"));
        }
        if let Some(from) = req.start_from {
            let p = self.bind(from);
            sql.push_str(&format!(" AND appointment_date_time >= {p}"));
        }
        if let Some(to) = req.start_to {
            let p = self.bind(to);
            sql.push_str(&format!(" AND appointment_date_time < {p}"));
        }
        if let Some(after) = req.after {
            let (t, id) = (self.bind(after.start_time), self.bind(after.id));
            sql.push_str(&format!(" AND (appointment_date_time, id) > ({t}, {id})"));
        }
        sql
    }
}

/// The role scopes: what a caller of each role may list, whatever the filters say (`me`: the
/// caller's member id).
fn scope(role: Role, me: &str) -> String {
    match role {
        Role::Admin => String::new(),
        Role::Doctor => format!(" AND doctor_id = {me}"),
        Role::Patient => format!(" AND patient_id = {me}"),
    }
}

/// One page of appointments in keyset order; one row more than a page is fetched to know
/// whether another page follows.
fn page(conditions: &str, limit: &str) -> String {
    format!(
        "SELECT {COLUMNS} FROM appointment WHERE true{conditions} \
         ORDER BY appointment_date_time, id LIMIT {limit}"
    )
}

/// Builds the page query for `actor`: their role scope first (a patient or doctor only ever
/// matches their own rows, whatever the filters say), then the filters, then the keyset cursor.
pub fn list_query(actor: &Actor, req: &ListAppointments) -> ListQuery {
    let mut q = ListQuery::new(1);
    // Bound only when used: PostgreSQL refuses a parameter no condition mentions.
    let uses_me = actor.role != Role::Admin
        || req.doctor == Some(MemberRef::Me)
        || req.patient == Some(MemberRef::Me);
    let me = if uses_me { q.bind(actor.member_id) } else { String::new() };
    let scope = scope(actor.role, &me);
    let filters = q.filters(req, &me);
    let limit = q.bind(req.page_size + 1);
    q.sql = page(&format!("{scope}{filters}"), &limit);
    q
}

/// The column of [`list_for_caller_query`]'s rows holding the change log's head position.
const WATCH_POSITION: &str = "watch_position";

/// ListAppointments in one statement with the caller's membership (see
/// `TenantAccess::read_with`; `$1` is the caller's user id): one branch per role, each the
/// page query of [`list_query`] for that role's scope and gated on the caller's role, so only
/// one runs and each keeps its index. Each row: `caller_id`, `caller_role`, then an appointment
/// (all NULL when the page is empty). No row: the caller is not an active member.
pub fn list_for_caller_query(req: &ListAppointments) -> ListQuery {
    let mut q = ListQuery::new(2);
    let me = "caller.caller_id";
    let filters = q.filters(req, me);
    let limit = q.bind(req.page_size + 1);
    let branches: Vec<String> = [Role::Admin, Role::Doctor, Role::Patient]
        .into_iter()
        .map(|role| {
            let gate = format!(" AND caller.caller_role = '{}'", role.as_db());
            format!("({})", page(&format!("{gate}{}{filters}", scope(role, me)), &limit))
        })
        .collect();
    // The change log's head, last, read in the list's own snapshot: watching from it continues
    // exactly after what the page shows (an init plan, read once per statement).
    q.sql = format!(
        "WITH caller AS ({CALLER}) SELECT caller.caller_id, caller.caller_role, x.*, \
         (SELECT position FROM appointment_change_head) AS {WATCH_POSITION} \
         FROM caller LEFT JOIN LATERAL ({}) x ON true \
         ORDER BY x.appointment_date_time, x.id",
        branches.join(" UNION ALL ")
    );
    q
}

/// The change log's head position as [`list_for_caller_query`] read it with the page.
pub fn watch_position_of(rows: &[Row]) -> Result<Option<i64>, Error> {
    Ok(rows.first().map(|row| row.col::<Option<i64>>(WATCH_POSITION)).transpose()?.flatten())
}

/// The page of [`list_for_caller_query`]'s rows (an empty page is one row of NULLs) and the
/// cursor of the next page if there is one.
pub fn page_for_caller(
    rows: &[Row],
    req: &ListAppointments,
) -> Result<(Vec<Appointment>, Option<PageToken>), Error> {
    let mut page = Vec::with_capacity(rows.len());
    for row in rows {
        if row.col::<Option<Uuid>>(AFTER_CALLER)?.is_some() {
            page.push(appointment_at(row, AFTER_CALLER)?);
        }
    }
    Ok(cut(page, req))
}

/// Cuts the extra row off `page` and turns it into the next page's cursor.
fn cut(
    mut page: Vec<Appointment>,
    req: &ListAppointments,
) -> (Vec<Appointment>, Option<PageToken>) {
    let page_size = usize::try_from(req.page_size).unwrap_or(usize::MAX);
    let next = if page.len() > page_size {
        page.truncate(page_size);
        page.last().map(|a| PageToken { start_time: a.start_time, id: a.id })
    } else {
        None
    };
    (page, next)
}

/// One page for `actor`, and the cursor of the next page if there is one.
pub async fn list(
    client: &impl Db,
    actor: &Actor,
    req: &ListAppointments,
) -> Result<(Vec<Appointment>, Option<PageToken>), Error> {
    let q = list_query(actor, req);
    let rows = client.query(&q.sql, &q.param_refs()).await?;
    let page = rows.iter().map(appointment_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(cut(page, req))
}
