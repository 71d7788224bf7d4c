//! SQL over `organization_user` and the profile tables. Visibility is applied in SQL, so a
//! caller never receives a row they may not see; the public-fields redaction is in `view.rs`.

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, GenericClient, Row, error::SqlState};
use uuid::Uuid;

use super::{
    domain::{DoctorFields, PatientFields, Profile},
    update::Change,
};
use crate::{error::Error, roles::Role, tenancy::Caller};

/// One member as stored.
#[derive(Debug, Clone)]
pub struct MemberRow {
    /// `organization_user.id`.
    pub id: Uuid,
    /// Central user id.
    pub user_id: Uuid,
    /// Email copy.
    pub email: String,
    /// Name copy.
    pub name: String,
    /// Role (`None`: incomplete registration).
    pub role: Option<Role>,
    /// The profile of the role.
    pub profile: Option<Profile>,
    /// Added.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "ou.id, ou.user_id, ou.email, ou.name, ou.role, ou.created_at, \
    ou.updated_at, d.specialization, d.license_number, d.phone_number AS d_phone, \
    p.date_of_birth, p.phone_number AS p_phone, p.address, p.emergency_contact_name, \
    p.emergency_contact_phone, p.blood_type, p.allergies, p.chronic_conditions";

const FROM: &str = "FROM organization_user ou \
    LEFT JOIN doctor_profile d ON d.id = ou.doctor_profile_id \
    LEFT JOIN patient_profile p ON p.id = ou.patient_profile_id";

/// Who the caller ($1 member id, $2 role) may see: admins everyone; everyone themselves and
/// the doctors; doctors also the patients they have appointments with.
const VISIBLE: &str = "($2 = 'admin' OR ou.id = $1 \
    OR (ou.role = 'doctor' AND $2 IN ('doctor', 'patient')) \
    OR ($2 = 'doctor' AND ou.role = 'patient' AND EXISTS \
        (SELECT 1 FROM appointment a WHERE a.doctor_id = $1 AND a.patient_id = ou.id)))";

fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| Error::tenant_db(context, &e)
}

fn from_row(row: &Row) -> MemberRow {
    let role = Role::from_db(row.get::<_, Option<&str>>("role"));
    let profile = role.map(|role| match role {
        Role::Admin => Profile::Admin,
        Role::Doctor => Profile::Doctor(DoctorFields {
            specialization: row.get::<_, Option<String>>("specialization").unwrap_or_default(),
            license_number: row.get::<_, Option<String>>("license_number").unwrap_or_default(),
            phone_number: row.get::<_, Option<String>>("d_phone").unwrap_or_default(),
        }),
        Role::Patient => Profile::Patient(PatientFields {
            date_of_birth: row.get("date_of_birth"),
            phone_number: row.get::<_, Option<String>>("p_phone").unwrap_or_default(),
            address: row.get::<_, Option<String>>("address").unwrap_or_default(),
            emergency_contact_name: row
                .get::<_, Option<String>>("emergency_contact_name")
                .unwrap_or_default(),
            emergency_contact_phone: row
                .get::<_, Option<String>>("emergency_contact_phone")
                .unwrap_or_default(),
            blood_type: row.get::<_, Option<String>>("blood_type").unwrap_or_default(),
            allergies: row.get::<_, Option<String>>("allergies").unwrap_or_default(),
            chronic_conditions: row
                .get::<_, Option<String>>("chronic_conditions")
                .unwrap_or_default(),
        }),
    });
    MemberRow {
        id: row.get("id"),
        user_id: row.get("user_id"),
        email: row.get("email"),
        name: row.get("name"),
        role,
        profile,
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

/// One member and whether `caller` may see it; `None` when there is no such member.
pub async fn get(
    client: &impl GenericClient,
    caller: &Caller,
    id: Uuid,
) -> Result<Option<(MemberRow, bool)>, Error> {
    let sql = format!("SELECT {COLUMNS}, {VISIBLE} AS visible {FROM} WHERE ou.id = $3");
    let row = client
        .query_opt(&sql, &[&caller.member_id, &caller.role.as_db(), &id])
        .await
        .map_err(db("get member"))?;
    Ok(row.map(|r| (from_row(&r), r.get("visible"))))
}

/// One page of the members `caller` may see, of `role` if given, after `after`, by id.
pub async fn list(
    client: &Client,
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
    Ok(rows.iter().map(from_row).collect())
}

/// Inserts a profile row and returns its id.
async fn insert_profile(client: &impl GenericClient, profile: &Profile) -> Result<Uuid, Error> {
    let row = match profile {
        Profile::Admin => {
            client.query_one("INSERT INTO admin_profile DEFAULT VALUES RETURNING id", &[]).await
        }
        Profile::Doctor(d) => {
            client
                .query_one(
                    "INSERT INTO doctor_profile (specialization, license_number, phone_number) \
                     VALUES ($1, $2, $3) RETURNING id",
                    &[&d.specialization, &d.license_number, &d.phone_number],
                )
                .await
        }
        Profile::Patient(p) => {
            client
                .query_one(
                    "INSERT INTO patient_profile (date_of_birth, phone_number, address, \
                     emergency_contact_name, emergency_contact_phone, blood_type, allergies, \
                     chronic_conditions) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    &[
                        &p.date_of_birth,
                        &p.phone_number,
                        &p.address,
                        &p.emergency_contact_name,
                        &p.emergency_contact_phone,
                        &p.blood_type,
                        &p.allergies,
                        &p.chronic_conditions,
                    ],
                )
                .await
        }
    };
    Ok(row.map_err(db("insert profile"))?.get(0))
}

/// The profile-id column of a role.
fn column(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin_profile_id",
        Role::Doctor => "doctor_profile_id",
        Role::Patient => "patient_profile_id",
    }
}

/// Adds a member with their profile in one transaction. ALREADY_EXISTS when the user is one.
pub async fn insert(
    client: &mut Client,
    user_id: Uuid,
    email: &str,
    name: &str,
    profile: &Profile,
) -> Result<Uuid, Error> {
    let tx = client.transaction().await.map_err(db("begin"))?;
    let profile_id = insert_profile(&tx, profile).await?;
    // The column name comes from a fixed list, never from input.
    let sql = format!(
        "INSERT INTO organization_user (user_id, email, name, {}) VALUES ($1, $2, $3, $4) \
         RETURNING id",
        column(profile.role())
    );
    let row = tx.query_one(&sql, &[&user_id, &email, &name, &profile_id]).await.map_err(|e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            Error::AlreadyExists("the user is already a member".into())
        } else {
            Error::tenant_db("insert member", &e)
        }
    })?;
    tx.commit().await.map_err(db("commit"))?;
    Ok(row.get(0))
}

/// Applies a field change or a role change to member `id`, in one transaction.
pub async fn update(client: &mut Client, id: Uuid, change: &Change) -> Result<(), Error> {
    let tx = client.transaction().await.map_err(db("begin"))?;
    match change {
        Change::Admin => {}
        Change::Doctor { mask, values } => {
            tx.execute(
                "UPDATE doctor_profile d SET \
                 specialization = CASE WHEN $2 THEN $3 ELSE d.specialization END, \
                 license_number = CASE WHEN $4 THEN $5 ELSE d.license_number END, \
                 phone_number = CASE WHEN $6 THEN $7 ELSE d.phone_number END \
                 FROM organization_user ou WHERE ou.id = $1 AND d.id = ou.doctor_profile_id",
                &[
                    &id,
                    &mask[0],
                    &values.specialization,
                    &mask[1],
                    &values.license_number,
                    &mask[2],
                    &values.phone_number,
                ],
            )
            .await
            .map_err(db("update doctor"))?;
        }
        Change::Patient { mask, values: p } => {
            tx.execute(
                "UPDATE patient_profile p SET \
                 date_of_birth = CASE WHEN $2 THEN $3 ELSE p.date_of_birth END, \
                 phone_number = CASE WHEN $4 THEN $5 ELSE p.phone_number END, \
                 address = CASE WHEN $6 THEN $7 ELSE p.address END, \
                 emergency_contact_name = CASE WHEN $8 THEN $9 ELSE p.emergency_contact_name END, \
                 emergency_contact_phone = CASE WHEN $10 THEN $11 ELSE p.emergency_contact_phone END, \
                 blood_type = CASE WHEN $12 THEN $13 ELSE p.blood_type END, \
                 allergies = CASE WHEN $14 THEN $15 ELSE p.allergies END, \
                 chronic_conditions = CASE WHEN $16 THEN $17 ELSE p.chronic_conditions END \
                 FROM organization_user ou WHERE ou.id = $1 AND p.id = ou.patient_profile_id",
                &[
                    &id,
                    &mask[0],
                    &p.date_of_birth,
                    &mask[1],
                    &p.phone_number,
                    &mask[2],
                    &p.address,
                    &mask[3],
                    &p.emergency_contact_name,
                    &mask[4],
                    &p.emergency_contact_phone,
                    &mask[5],
                    &p.blood_type,
                    &mask[6],
                    &p.allergies,
                    &mask[7],
                    &p.chronic_conditions,
                ],
            )
            .await
            .map_err(db("update patient"))?;
        }
        Change::Role(profile) => {
            let new_id = insert_profile(&tx, profile).await?;
            let old: Option<(Option<Uuid>, Option<Uuid>, Option<Uuid>)> = tx
                .query_opt(
                    "SELECT admin_profile_id, doctor_profile_id, patient_profile_id \
                     FROM organization_user WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(db("lock member"))?
                .map(|r| (r.get(0), r.get(1), r.get(2)));
            let Some((old_admin, old_doctor, old_patient)) = old else {
                return Err(Error::NotFound("no such member".into()));
            };
            let set = |role: Role| (profile.role() == role).then_some(new_id);
            tx.execute(
                "UPDATE organization_user SET admin_profile_id = $2, doctor_profile_id = $3, \
                 patient_profile_id = $4 WHERE id = $1",
                &[&id, &set(Role::Admin), &set(Role::Doctor), &set(Role::Patient)],
            )
            .await
            .map_err(db("change role"))?;
            for (table, old) in [
                ("admin_profile", old_admin),
                ("doctor_profile", old_doctor),
                ("patient_profile", old_patient),
            ] {
                if let Some(old) = old {
                    tx.execute(&format!("DELETE FROM {table} WHERE id = $1"), &[&old])
                        .await
                        .map_err(db("delete old profile"))?;
                }
            }
        }
    }
    tx.execute("UPDATE organization_user SET updated_at = now() WHERE id = $1", &[&id])
        .await
        .map_err(db("touch member"))?;
    tx.commit().await.map_err(db("commit"))
}

/// Removes member `id` and their profile; their appointments keep their rows (FK set null).
/// Returns the removed member's user id, or `None` when there was none.
pub async fn remove(client: &mut Client, id: Uuid) -> Result<Option<Uuid>, Error> {
    let tx = client.transaction().await.map_err(db("begin"))?;
    let row = tx
        .query_opt(
            "DELETE FROM organization_user WHERE id = $1 \
             RETURNING user_id, admin_profile_id, doctor_profile_id, patient_profile_id",
            &[&id],
        )
        .await
        .map_err(db("remove member"))?;
    let Some(row) = row else { return Ok(None) };
    for (i, table) in [(1, "admin_profile"), (2, "doctor_profile"), (3, "patient_profile")] {
        if let Some(profile) = row.get::<_, Option<Uuid>>(i) {
            tx.execute(&format!("DELETE FROM {table} WHERE id = $1"), &[&profile])
                .await
                .map_err(db("remove profile"))?;
        }
    }
    tx.commit().await.map_err(db("commit"))?;
    Ok(Some(row.get(0)))
}
