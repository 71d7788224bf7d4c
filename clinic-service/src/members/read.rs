//! Reading members. Visibility is applied in SQL, so a caller never receives a row they may not
//! see; the public-fields redaction is in `view.rs`.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::domain::{DoctorFields, PatientFields, Profile};
use clinic_shared::pg::RowExt;

use crate::{
    error::Error,
    roles::Role,
    tenancy::{CALLER, Caller, Db, TenantTransaction},
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

/// Who the caller (member id `me`, role `role`: SQL expressions) may see: admins everyone
/// (invited members included); everyone themselves and the active doctors; doctors also the
/// patients they have appointments with. Invited members are seen by admins only.
fn visible(me: &str, role: &str) -> String {
    format!(
        "({role} = 'admin' OR (ou.status = 'active' AND (ou.id = {me} \
         OR (ou.role = 'doctor' AND {role} IN ('doctor', 'patient')) \
         OR ({role} = 'doctor' AND ou.role = 'patient' AND EXISTS \
             (SELECT 1 FROM appointment a WHERE a.doctor_id = {me} AND a.patient_id = ou.id)))))"
    )
}

/// One member and whether the caller may see it: `$1` the caller's member id, `$2` their role,
/// `$3` the member's id.
static GET: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {COLUMNS}, {} AS visible {FROM} WHERE ou.id = $3", visible("$1", "$2"))
});

/// GetMember in one statement with the caller's membership (see
/// `TenantAccess::read_with`): `$1` the caller's user id, `$2` the member's id (NULL: the
/// caller themself). Each row: `caller_id`, `caller_role`, then the member's columns (NULL
/// when there is no such member) and `visible`. No row: the caller is not an active member.
pub static GET_FOR_CALLER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH caller AS ({CALLER}) SELECT caller.*, m.* FROM caller LEFT JOIN LATERAL \
         (SELECT {COLUMNS}, {} AS visible {FROM} \
          WHERE ou.id = COALESCE($2::uuid, caller.caller_id)) m ON true",
        visible("caller.caller_id", "caller.caller_role")
    )
});

/// A page of the members the caller may see: `$1` the caller's member id, `$2` their role, `$3`
/// a role to keep (NULL: all), `$4` the last id of the previous page (NULL: first page), `$5`
/// the page size.
static LIST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} {FROM} WHERE {} AND ($3::text IS NULL OR ou.role = $3) \
         AND ($4::uuid IS NULL OR ou.id > $4) ORDER BY ou.id LIMIT $5",
        visible("$1", "$2")
    )
});

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
    let row = client
        .query_opt(&GET, &[&caller.member_id, &caller.role.as_db(), &id])
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
    let role = role.map(Role::as_db);
    let rows = client
        .query(&LIST, &[&caller.member_id, &caller.role.as_db(), &role, &after, &limit])
        .await
        .map_err(db("list members"))?;
    rows.iter().map(from_row).collect()
}

/// The member of a [`GET_FOR_CALLER`] row and whether the caller may see it; `None` when there
/// is no such member.
pub fn member_for_caller(row: &Row) -> Result<Option<(MemberRow, bool)>, Error> {
    if row.col::<Option<Uuid>>("id")?.is_none() {
        return Ok(None);
    }
    Ok(Some((from_row(row)?, row.col("visible")?)))
}

/// Member `id`'s row, locked until `tx` ends; `None` when there is none.
pub async fn lock(tx: &TenantTransaction<'_>, id: Uuid) -> Result<Option<MemberRow>, Error> {
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE ou.id = $1 FOR UPDATE OF ou");
    let row = tx.query_opt(&sql, &[&id]).await.map_err(db("lock member"))?;
    row.as_ref().map(from_row).transpose()
}
