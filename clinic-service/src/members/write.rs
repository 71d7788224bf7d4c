//! Writing members: profiles, field and role changes, removal. Column names come from fixed
//! lists, never from input. Inviting and joining are in `invitation.rs` and `joining.rs`.

use tokio_postgres::{Client, GenericClient, Transaction};
use uuid::Uuid;

use super::{domain::Profile, read::db, update::Change};
use crate::{error::Error, roles::Role};

/// Inserts a profile row and returns its id.
pub(super) async fn insert_profile(
    client: &impl GenericClient,
    profile: &Profile,
) -> Result<Uuid, Error> {
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
pub(super) fn column(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin_profile_id",
        Role::Doctor => "doctor_profile_id",
        Role::Patient => "patient_profile_id",
    }
}

/// Applies a field change or a role change to member `id`, in one transaction.
pub async fn update(client: &mut Client, id: Uuid, change: &Change) -> Result<(), Error> {
    let tx = client.transaction().await.map_err(db("begin"))?;
    apply(&tx, id, change).await?;
    tx.commit().await.map_err(db("commit"))
}

/// [`update`]'s work, inside the caller's transaction.
pub(super) async fn apply(tx: &Transaction<'_>, id: Uuid, change: &Change) -> Result<(), Error> {
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
            let new_id = insert_profile(tx, profile).await?;
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
    Ok(())
}

/// Who a deleted member row was, so its central counterpart can go too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Departed {
    /// An active member: the user's central membership goes.
    Member(Uuid),
    /// An invited email: the central invitation goes.
    Invitation(String),
}

/// Removes member `id` and its profile; their appointments keep their rows (FK set null).
/// `forget` runs after the delete and before the commit (it removes the central membership or
/// invitation): if it fails, nothing is removed; if the commit fails after it, the member is
/// still here and a retry completes both. Returns false when there is no such member.
pub async fn remove<F, Fut>(client: &mut Client, id: Uuid, forget: F) -> Result<bool, Error>
where
    F: FnOnce(Departed) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let tx = client.transaction().await.map_err(db("begin"))?;
    let Some(departed) = delete(&tx, id).await? else { return Ok(false) };
    forget(departed).await?;
    tx.commit().await.map_err(db("commit"))?;
    Ok(true)
}

/// Deletes member `id` and its profile inside `tx`: who it was, or `None` when there is none.
pub(super) async fn delete(tx: &Transaction<'_>, id: Uuid) -> Result<Option<Departed>, Error> {
    let row = tx
        .query_opt(
            "DELETE FROM organization_user WHERE id = $1 \
             RETURNING user_id, email, admin_profile_id, doctor_profile_id, patient_profile_id",
            &[&id],
        )
        .await
        .map_err(db("remove member"))?;
    let Some(row) = row else { return Ok(None) };
    for (i, table) in [(2, "admin_profile"), (3, "doctor_profile"), (4, "patient_profile")] {
        if let Some(profile) = row.get::<_, Option<Uuid>>(i) {
            tx.execute(&format!("DELETE FROM {table} WHERE id = $1"), &[&profile])
                .await
                .map_err(db("remove profile"))?;
        }
    }
    Ok(Some(match row.get::<_, Option<Uuid>>(0) {
        Some(user_id) => Departed::Member(user_id),
        None => Departed::Invitation(row.get(1)),
    }))
}
