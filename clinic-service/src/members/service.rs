//! The member operations, each in one transaction on the tenant: authorize against the
//! caller's role, change the rows (and record central changes in the outbox), commit, then let
//! the relay deliver. No remote call runs while the transaction (and its row locks) is open.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clinic_api::clinic::v1 as pb;
use uuid::Uuid;

use super::{
    admins,
    domain::NewMember,
    invitation, joining,
    read::{self, MemberRow, Status as MemberStatus, db},
    update::{Change, ProfileUpdate},
    view::member_for,
    write,
};
use crate::{
    audit::{self, Trail},
    auth::{Claims, Person},
    error::Error,
    grpc::MemberRef,
    relay::{
        Relay,
        outbox::{self, Change as Central},
    },
    roles::Role,
    tenancy::{Caller, Db, TenantAccess, TenantClient},
};

/// What the operations need beyond a connection: the relay and the invitation lifetime.
#[derive(Clone)]
pub struct Members {
    /// Delivers central changes after each commit.
    pub relay: Relay,
    /// How long an invitation may be accepted.
    pub invitation_ttl: Duration,
}

/// A parsed `ListMembers`.
#[derive(Debug, Clone, Copy)]
pub struct ListMembers {
    /// Only this role.
    pub role: Option<Role>,
    /// Keyset cursor.
    pub after: Option<Uuid>,
    /// Page size.
    pub limit: i64,
}

fn require_admin(caller: &Caller) -> Result<(), Error> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(Error::PermissionDenied("only admins may do this".into()))
    }
}

fn no_such_member() -> Error {
    Error::NotFound("no such member".into())
}

/// GetMember: the member as the caller may see it, read with the caller's membership in one
/// statement.
pub async fn get(
    access: &TenantAccess,
    claims: &Claims,
    organization_id: Uuid,
    member: MemberRef,
    trail: &mut Trail,
) -> Result<pb::Member, Error> {
    let id = match member {
        MemberRef::Me => None,
        MemberRef::Id(id) => Some(id),
    };
    let (caller, rows) =
        access.read_with(claims, organization_id, &read::GET_FOR_CALLER, &[&id]).await?;
    trail.enter(organization_id, &caller);
    trail.resource(member.resolve(caller.member_id));
    let found = rows.first().map(read::member_for_caller).transpose()?.flatten();
    if let Some((row, _)) = &found
        && row.role == Some(Role::Patient)
    {
        trail.patient(row.id);
    }
    seen_as(&caller, found)
}

/// Member `member` as `caller` may see it, on a connection already open (after a write).
pub async fn show(
    client: &impl Db,
    caller: &Caller,
    member: MemberRef,
) -> Result<pb::Member, Error> {
    seen_as(caller, read::get(client, caller, member.resolve(caller.member_id)).await?)
}

/// What `caller` is told of a member found (or not), given whether they may see it.
fn seen_as(caller: &Caller, found: Option<(MemberRow, bool)>) -> Result<pb::Member, Error> {
    match found {
        // Invited members do not appear to anyone but admins, not even as refusals.
        None => Err(no_such_member()),
        Some((row, false)) if row.status == MemberStatus::Invited => Err(no_such_member()),
        Some((_, false)) => Err(Error::PermissionDenied("you may not see this member".into())),
        Some((row, true)) => Ok(member_for(caller, row)),
    }
}

/// One page of the members `caller` may see, and the next page's last id (`None`: last page).
pub async fn list(
    client: &impl Db,
    caller: &Caller,
    req: ListMembers,
    trail: &mut Trail,
) -> Result<(Vec<pb::Member>, Option<Uuid>), Error> {
    let mut rows = read::list(client, caller, req.role, req.after, req.limit + 1).await?;
    let next = if rows.len() as i64 > req.limit {
        rows.truncate(req.limit as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    for row in rows.iter().filter(|r| r.role == Some(Role::Patient)) {
        trail.patient(row.id);
    }
    Ok((rows.into_iter().map(|row| member_for(caller, row)).collect(), next))
}

impl Members {
    /// AddMember: invites (or re-invites) an email.
    pub async fn add(
        &self,
        client: &mut TenantClient,
        caller: &Caller,
        new: &NewMember,
        now: DateTime<Utc>,
        trail: &mut Trail,
    ) -> Result<pb::Member, Error> {
        require_admin(caller)?;
        let expires_at = invitation::expiry(now, self.invitation_ttl)?;
        let id = invitation::invite(client, new, expires_at, trail).await?;
        tracing::info!(member_id = %id, role = new.profile.role().as_db(), "member invited");
        self.relay.committed(client, new.organization_id).await;
        show(client, caller, MemberRef::Id(id)).await
    }

    /// UpdateMemberProfile: a field change (the member themself or an admin) or a role change
    /// (admins, not on themselves, keeping an active admin).
    pub async fn update_profile(
        &self,
        client: &mut TenantClient,
        caller: &Caller,
        update: &ProfileUpdate,
        now: DateTime<Utc>,
        trail: &mut Trail,
    ) -> Result<pb::Member, Error> {
        let target = update.member.resolve(caller.member_id);
        trail.resource(target);
        if target != caller.member_id || matches!(update.change, Change::Role(_)) {
            require_admin(caller)?;
        }
        if matches!(update.change, Change::Role(_)) && target == caller.member_id {
            return Err(Error::FailedPrecondition("admins cannot change their own role".into()));
        }
        // Read first (unlocked) for the caller's mistakes; the write re-checks under the lock.
        let Some((seen, _)) = read::get(&*client, caller, target).await? else {
            return Err(no_such_member());
        };
        if seen.role == Some(Role::Patient) {
            trail.patient(target);
        }
        if let Some(needed) = update.change.role()
            && seen.role != Some(needed)
        {
            return Err(Error::field(
                "update_mask",
                "paths must name the member's own role's profile",
            ));
        }
        let tx = client.transaction().await.map_err(db("begin"))?;
        if let Change::Role(_) = update.change {
            // The admins' locks first, in the same order as every other guard: no deadlock.
            admins::guard(&tx, caller.member_id, target).await?;
        }
        let row = read::lock(&tx, target).await?.ok_or_else(no_such_member)?;
        match &update.change {
            Change::Role(profile) => {
                write::change_role(&tx, target, profile).await?;
                if let Some(central) = central_role(&row, profile.role(), now) {
                    let version =
                        outbox::next_version(&tx, target).await?.ok_or_else(no_such_member)?;
                    outbox::record(&tx, target, version, &[central]).await?;
                }
            }
            change => {
                if row.role != seen.role {
                    return Err(Error::Aborted(
                        "the member's role changed meanwhile; read it again and retry".into(),
                    ));
                }
                write::set_fields(&tx, target, change).await?;
            }
        }
        audit::store::record(&tx, trail).await?;
        tx.commit().await.map_err(db("commit"))?;
        if let Change::Role(profile) = &update.change {
            tracing::info!(member_id = %target, role = profile.role().as_db(), "role changed");
            self.relay.committed(client, update.organization_id).await;
        }
        show(client, caller, MemberRef::Id(target)).await
    }

    /// RemoveMember (admins; not themselves; keeping an active admin): removes a member or
    /// cancels an invitation.
    pub async fn remove(
        &self,
        client: &mut TenantClient,
        caller: &Caller,
        organization_id: Uuid,
        member: MemberRef,
        trail: &mut Trail,
    ) -> Result<(), Error> {
        let target = member.resolve(caller.member_id);
        trail.resource(target);
        require_admin(caller)?;
        if target == caller.member_id {
            return Err(Error::FailedPrecondition("admins cannot remove themselves".into()));
        }
        let tx = client.transaction().await.map_err(db("begin"))?;
        admins::guard(&tx, caller.member_id, target).await?;
        let gone = write::delete(&tx, target).await?.ok_or_else(no_such_member)?;
        let central = match gone.user_id {
            Some(user_id) => Central::MembershipRemoved { user_id },
            None => Central::InvitationRemoved { email: gone.email },
        };
        outbox::record(&tx, target, gone.version, &[central]).await?;
        if gone.patient {
            trail.patient(target);
        }
        audit::store::record(&tx, trail).await?;
        tx.commit().await.map_err(db("commit"))?;
        tracing::info!(member_id = %target, "member removed");
        self.relay.committed(client, organization_id).await;
        Ok(())
    }

    /// AcceptInvitation: the caller's invitation becomes their membership.
    pub async fn accept(
        &self,
        client: &mut TenantClient,
        organization_id: Uuid,
        claims: &Person,
        now: DateTime<Utc>,
        trail: &mut Trail,
    ) -> Result<pb::Member, Error> {
        let (member_id, role) = joining::accept(client, claims, now, trail).await?;
        tracing::info!(%member_id, role = role.as_db(), "invitation accepted");
        self.relay.committed(client, organization_id).await;
        let caller = Caller { member_id, user_id: claims.user_id, role };
        show(client, &caller, MemberRef::Me).await
    }

    /// DeclineInvitation: the caller's invitation goes.
    pub async fn decline(
        &self,
        client: &mut TenantClient,
        organization_id: Uuid,
        claims: &Person,
        now: DateTime<Utc>,
        trail: &mut Trail,
    ) -> Result<(), Error> {
        let member_id = joining::decline(client, claims, now, trail).await?;
        tracing::info!(%member_id, "invitation declined");
        self.relay.committed(client, organization_id).await;
        Ok(())
    }
}

/// The central counterpart of member `row` taking `role`: the membership of an active member;
/// for a pending invitation, the invitation with the new role (mailed again); nothing for an
/// expired invitation (AddMember renews it).
fn central_role(row: &MemberRow, role: Role, now: DateTime<Utc>) -> Option<Central> {
    match (row.user_id, row.invite_expires_at) {
        (Some(user_id), _) => Some(Central::Membership { user_id, role }),
        (None, Some(expires_at)) if expires_at > now => {
            Some(Central::Invitation { email: row.email.clone(), role, expires_at })
        }
        (None, _) => None,
    }
}
