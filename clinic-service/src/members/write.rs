//! Writing members inside the caller's transaction: profiles, field and role changes, removal.
//! Table and column names come from fixed lists (`fields.rs`, [`column`]), never from input.

use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{
    domain::Profile,
    fields::{self, columns},
    read::db,
    update::Change,
};
use clinic_shared::pg::RowExt;

use crate::{
    error::Error,
    roles::Role,
    tenancy::{Db, TenantTransaction},
};

/// The profile-id column of a role.
pub(super) fn column(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin_profile_id",
        Role::Doctor => "doctor_profile_id",
        Role::Patient => "patient_profile_id",
    }
}

/// The profile table of a role.
fn table(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin_profile",
        Role::Doctor => "doctor_profile",
        Role::Patient => "patient_profile",
    }
}

/// `$first, $first+1, ...` for `n` parameters.
fn placeholders(first: usize, n: usize) -> Vec<String> {
    (first..first + n).map(|i| format!("${i}")).collect()
}

/// Inserts a profile row and returns its id.
pub(super) async fn insert_profile(client: &impl Db, profile: &Profile) -> Result<Uuid, Error> {
    let values = match profile {
        Profile::Admin => Vec::new(),
        Profile::Doctor(d) => columns(&fields::DOCTOR.iter().collect::<Vec<_>>(), d),
        Profile::Patient(p) => columns(&fields::PATIENT.iter().collect::<Vec<_>>(), p),
    };
    let table = table(profile.role());
    let sql = if values.is_empty() {
        format!("INSERT INTO {table} DEFAULT VALUES RETURNING id")
    } else {
        let names: Vec<&str> = values.iter().map(|(c, _)| *c).collect();
        let params = placeholders(1, values.len());
        format!(
            "INSERT INTO {table} ({}) VALUES ({}) RETURNING id",
            names.join(", "),
            params.join(", ")
        )
    };
    let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|(_, v)| *v).collect();
    let row = client.query_one(&sql, &params).await.map_err(db("insert profile"))?;
    Ok(row.col(0)?)
}

/// Writes the named profile fields of member `id`, whose role the caller has checked under
/// the member's row lock. ABORTED when no profile row matched (it changed meanwhile).
pub(super) async fn set_fields(
    tx: &TenantTransaction<'_>,
    id: Uuid,
    change: &Change,
) -> Result<(), Error> {
    let (role, values) = match change {
        Change::Doctor(f) => (Role::Doctor, columns(&f.fields, &f.values)),
        Change::Patient(f) => (Role::Patient, columns(&f.fields, &f.values)),
        Change::Admin | Change::Role(_) => return Ok(()),
    };
    if values.is_empty() {
        return Ok(());
    }
    let sets: Vec<String> = values
        .iter()
        .zip(placeholders(2, values.len()))
        .map(|((column, _), param)| format!("{column} = {param}"))
        .collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE id = (SELECT {} FROM organization_user WHERE id = $1)",
        table(role),
        sets.join(", "),
        column(role)
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id];
    params.extend(values.iter().map(|(_, v)| *v));
    let updated = tx.execute(&sql, &params).await.map_err(db("update profile"))?;
    if updated != 1 {
        return Err(Error::Aborted("the member's profile changed meanwhile; retry".into()));
    }
    touch(tx, id).await
}

/// Gives member `id` a new role and profile (the old profile goes).
pub(super) async fn change_role(
    tx: &TenantTransaction<'_>,
    id: Uuid,
    profile: &Profile,
) -> Result<(), Error> {
    let new_id = insert_profile(tx, profile).await?;
    let set = |role: Role| (profile.role() == role).then_some(new_id);
    let old = tx
        .query_one(
            "UPDATE organization_user u SET admin_profile_id = $2, doctor_profile_id = $3, \
             patient_profile_id = $4 FROM organization_user o WHERE u.id = $1 AND o.id = u.id \
             RETURNING o.admin_profile_id, o.doctor_profile_id, o.patient_profile_id",
            &[&id, &set(Role::Admin), &set(Role::Doctor), &set(Role::Patient)],
        )
        .await
        .map_err(db("change role"))?;
    delete_profiles(tx, &old).await?;
    touch(tx, id).await
}

async fn touch(tx: &TenantTransaction<'_>, id: Uuid) -> Result<(), Error> {
    tx.execute("UPDATE organization_user SET updated_at = now() WHERE id = $1", &[&id])
        .await
        .map_err(db("touch member"))?;
    Ok(())
}

/// Deletes the profiles a row's columns 0..3 (admin, doctor, patient profile ids) name.
async fn delete_profiles(
    tx: &TenantTransaction<'_>,
    row: &tokio_postgres::Row,
) -> Result<(), Error> {
    for (i, role) in [Role::Admin, Role::Doctor, Role::Patient].into_iter().enumerate() {
        if let Some(profile) = row.col::<Option<Uuid>>(i)? {
            tx.execute(&format!("DELETE FROM {} WHERE id = $1", table(role)), &[&profile])
                .await
                .map_err(db("delete old profile"))?;
        }
    }
    Ok(())
}

/// Who a deleted member row was, with the version its removal carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departed {
    /// The active member's user (`None`: an invitation).
    pub user_id: Option<Uuid>,
    /// The email (the invited address, for an invitation).
    pub email: String,
    /// The version of the removal.
    pub version: i64,
    /// Whether it was a patient.
    pub patient: bool,
}

/// Deletes member `id` and its profile inside `tx` (their appointments keep their rows: FK set
/// null). Who it was, or `None` when there is none.
pub(super) async fn delete(
    tx: &TenantTransaction<'_>,
    id: Uuid,
) -> Result<Option<Departed>, Error> {
    let row = tx
        .query_opt(
            "DELETE FROM organization_user WHERE id = $1 RETURNING admin_profile_id, \
             doctor_profile_id, patient_profile_id, user_id, email, \
             nextval('member_version_seq') AS version",
            &[&id],
        )
        .await
        .map_err(db("remove member"))?;
    let Some(row) = row else { return Ok(None) };
    delete_profiles(tx, &row).await?;
    Ok(Some(Departed {
        user_id: row.col("user_id")?,
        email: row.col("email")?,
        version: row.col("version")?,
        patient: row.col::<Option<Uuid>>("patient_profile_id")?.is_some(),
    }))
}
