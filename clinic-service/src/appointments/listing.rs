//! The list query: the caller's role scope, the filters and the keyset cursor, assembled from
//! fixed SQL fragments with numbered parameters (no caller text ever enters the SQL).

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::tenancy::Db;

use super::{
    domain::{Actor, Appointment, Role},
    error::Error,
    page_token::PageToken,
    repository::{COLUMNS, appointment_from_row},
    requests::ListAppointments,
};

/// A list query: fixed SQL fragments and the parameters they number.
pub struct ListQuery {
    /// The statement text.
    pub sql: String,
    /// Its parameters, `$1` first.
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl ListQuery {
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    /// The parameters as tokio-postgres takes them.
    pub fn param_refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// Builds the page query for `actor`: their role scope first (a patient or doctor only ever
/// matches their own rows, whatever the filters say), then the filters, then the keyset cursor.
/// One row more than a page is fetched to know whether another page follows.
pub fn list_query(actor: &Actor, req: &ListAppointments) -> ListQuery {
    let mut q =
        ListQuery { sql: format!("SELECT {COLUMNS} FROM appointment WHERE true"), params: vec![] };
    let and = |q: &mut ListQuery, column: &str, value: Uuid| {
        let p = q.bind(value);
        q.sql.push_str(&format!(" AND {column} = {p}"));
    };
    match actor.role {
        Role::Admin => {}
        Role::Doctor => and(&mut q, "doctor_id", actor.member_id),
        Role::Patient => and(&mut q, "patient_id", actor.member_id),
    }
    if let Some(doctor) = req.doctor {
        and(&mut q, "doctor_id", doctor.resolve(actor.member_id));
    }
    if let Some(patient) = req.patient {
        and(&mut q, "patient_id", patient.resolve(actor.member_id));
    }
    if !req.statuses.is_empty() {
        let labels: Vec<String> = req.statuses.iter().map(|s| s.as_sql().to_owned()).collect();
        let p = q.bind(labels);
        q.sql.push_str(&format!(" AND status = ANY({p}::text[]::appointment_status[])"));
    }
    if let Some(from) = req.start_from {
        let p = q.bind(from);
        q.sql.push_str(&format!(" AND appointment_date_time >= {p}"));
    }
    if let Some(to) = req.start_to {
        let p = q.bind(to);
        q.sql.push_str(&format!(" AND appointment_date_time < {p}"));
    }
    if let Some(after) = req.after {
        let (t, id) = (q.bind(after.start_time), q.bind(after.id));
        q.sql.push_str(&format!(" AND (appointment_date_time, id) > ({t}, {id})"));
    }
    let limit = q.bind(req.page_size + 1);
    q.sql.push_str(&format!(" ORDER BY appointment_date_time, id LIMIT {limit}"));
    q
}

/// One page for `actor`, and the cursor of the next page if there is one.
pub async fn list(
    client: &impl Db,
    actor: &Actor,
    req: &ListAppointments,
) -> Result<(Vec<Appointment>, Option<PageToken>), Error> {
    let q = list_query(actor, req);
    let rows = client.query(&q.sql, &q.param_refs()).await?;
    let mut page = rows.iter().map(appointment_from_row).collect::<Result<Vec<_>, _>>()?;
    let page_size = usize::try_from(req.page_size).unwrap_or(usize::MAX);
    let next = if page.len() > page_size {
        page.truncate(page_size);
        page.last().map(|a| PageToken { start_time: a.start_time, id: a.id })
    } else {
        None
    };
    Ok((page, next))
}
