//! Reading members. Visibility is applied in SQL, so a caller never receives a row they may not
//! see; the public-fields redaction is in `view.rs`.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::domain::{DoctorFields, PatientFields, Profile};
use clinic_shared::pg::RowExt;

use crate::{
    error::Error,
    roles::Role,
    tenancy::{Caller, Db, TenantTransaction},
};

/// Whether a member has joined or is only invited (`organization_user.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A user with access to the clinic.
    Active,
    /// An email invited by an admin; no user and no access until accepted.
    Invited,
}

impl Status {
    fn from_db(value: &str) -> Self {
        // The CHECK constraint allows these two only; anything else is denied like an invitation.
        if value == "active" { Status::Active } else { Status::Invited }
    }
}

/// One member as stored.
#[derive(Debug, Clone)]
pub struct MemberRow {
    /// `organization_user.id`.
    pub id: Uuid,
    /// Central user id; `None` while invited.
    pub user_id: Option<Uuid>,
    /// Email copy; while invited, the invited address.
    pub email: String,
    /// Name copy (empty while invited).
    pub name: String,
    /// Active or invited.
    pub status: Status,
    /// When the invitation expires (invited members only).
    pub invite_expires_at: Option<DateTime<Utc>>,
    /// Role (`None`: incomplete registration).
    pub role: Option<Role>,
    /// The profile of the role.
    pub profile: Option<Profile>,
    /// Added.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "ou.id, ou.user_id, ou.email, ou.name, ou.role, ou.status, \
    ou.invite_expires_at, ou.created_at, ou.updated_at, d.specialization, d.license_number, \
    d.phone_number AS d_phone, p.date_of_birth, p.phone_number AS p_phone, p.address, \
    p.emergency_contact_name, p.emergency_contact_phone, p.blood_type, p.allergies, \
    p.chronic_conditions";

const FROM: &str = "FROM organization_user ou \
    LEFT JOIN doctor_profile d ON d.id = ou.doctor_profile_id \
    LEFT JOIN patient_profile p ON p.id = ou.patient_profile_id";

/// Who the caller ($1 member id, $2 role) may see: admins everyone (invited members included);
/// everyone themselves and the active doctors; doctors also the patients they have appointments
/// with. Invited members are seen by admins only.
const VISIBLE: &str = "($2 = 'admin' OR (ou.status = 'active' AND (ou.id = $1 \
    OR (ou.role = 'doctor' AND $2 IN ('doctor', 'patient')) \
    OR ($2 = 'doctor' AND ou.role = 'patient' AND EXISTS \
        (SELECT 1 FROM appointment a WHERE a.doctor_id = $1 AND a.patient_id = ou.id)))))";
/// Maps a tenant database error with context.
pub(super) fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| Error::tenant_db(context, &e)
}

fn from_row(row: &Row) -> Result<MemberRow, Error> {
    let text = |name: &str| -> Result<String, Error> {
        Ok(row.col::<Option<String>>(name)?.unwrap_or_default())
    };
    let role = Role::from_db(row.col("role")?);
    let profile = match role {
        None => None,
        Some(Role::Admin) => Some(Profile::Admin),
        Some(Role::Doctor) => Some(Profile::Doctor(DoctorFields {
            specialization: text("specialization")?,
            license_number: text("license_number")?,
            phone_number: text("d_phone")?,
        })),
        Some(Role::Patient) => Some(Profile::Patient(PatientFields {
            date_of_birth: row.col("date_of_birth")?,
            phone_number: text("p_phone")?,
            address: text("address")?,
            emergency_contact_name: text("emergency_contact_name")?,
            emergency_contact_phone: text("emergency_contact_phone")?,
            blood_type: text("blood_type")?,
            allergies: text("allergies")?,
            chronic_conditions: text("chronic_conditions")?,
        })),
    };
    Ok(MemberRow {
        id: row.col("id")?,
        user_id: row.col("user_id")?,
        email: row.col("email")?,
        name: row.col("name")?,
        status: Status::from_db(row.col("status")?),
        invite_expires_at: row.col("invite_expires_at")?,
        role,
        profile,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
    })
}

/// One member and whether `caller` may see it; `None` when there is no such member.
pub async fn get(
    client: &impl Db,
    caller: &Caller,
    id: Uuid,
) -> Result<Option<(MemberRow, bool)>, Error> {
    let sql = format!("SELECT {COLUMNS}, {VISIBLE} AS visible {FROM} WHERE ou.id = $3");
    let row = client
        .query_opt(&sql, &[&caller.member_id, &caller.role.as_db(), &id])
        .await
        .map_err(db("get member"))?;
    row.map(|r| Ok((from_row(&r)?, r.col("visible")?))).transpose()
}

/// One page of the members `caller` may see, of `role` if given, after `after`, by id.
pub async fn list(
    client: &impl Db,
    caller: &Caller,
    role: Option<Role>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<MemberRow>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} {FROM} WHERE {VISIBLE} AND ($3::text IS NULL OR ou.role = $3) \
         AND ($4::uuid IS NULL OR ou.id > $4) ORDER BY ou.id LIMIT $5"
    );
    let role = role.map(Role::as_db);
    let rows = client
        .query(&sql, &[&caller.member_id, &caller.role.as_db(), &role, &after, &limit])
        .await
        .map_err(db("list members"))?;
    rows.iter().map(from_row).collect()
}

/// Member `id`'s row, locked until `tx` ends; `None` when there is none.
pub async fn lock(tx: &TenantTransaction<'_>, id: Uuid) -> Result<Option<MemberRow>, Error> {
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE ou.id = $1 FOR UPDATE OF ou");
    let row = tx.query_opt(&sql, &[&id]).await.map_err(db("lock member"))?;
    row.as_ref().map(from_row).transpose()
}
