//! The `MemberService` handlers: parse, authorize against the caller's role in the tenant, run
//! the queries, record membership changes (and invitations) centrally.

use std::time::Duration;

use chrono::Utc;
use clinic_api::clinic::v1::{self as pb, member_service_server::MemberService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    domain::{MemberRef, NewMember},
    invitation, joining,
    read::{self, Status as MemberStatus},
    update::{Change, ProfileUpdate},
    view::member_for,
    write::{self, Departed},
};
use crate::{
    auth::Claims,
    error::Error,
    grpc::{decode_page_token, encode_page_token, page_size, parse_uuid},
    roles::Role,
    tenancy::{Caller, TenantAccess},
};

/// Page-token kind of ListMembers.
const PAGE_KIND: &str = "members";

/// Serves `clinic.v1.MemberService`.
pub struct MemberHandler {
    access: TenantAccess,
    invitation_ttl: Duration,
}

impl MemberHandler {
    /// Handlers over `access`; invitations expire after `invitation_ttl`.
    pub fn new(access: TenantAccess, invitation_ttl: Duration) -> Self {
        Self { access, invitation_ttl }
    }
}

fn require_admin(caller: &Caller) -> Result<(), Error> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(Error::PermissionDenied("only admins may do this".into()))
    }
}

async fn load_visible(
    client: &tokio_postgres::Client,
    caller: &Caller,
    id: Uuid,
) -> Result<pb::Member, Error> {
    match read::get(client, caller, id).await? {
        // Invited members do not appear to anyone but admins, not even as refusals.
        None => Err(Error::NotFound("no such member".into())),
        Some((row, false)) if row.status == MemberStatus::Invited => {
            Err(Error::NotFound("no such member".into()))
        }
        Some((_, false)) => Err(Error::PermissionDenied("you may not see this member".into())),
        Some((row, true)) => Ok(member_for(caller, row)),
    }
}

#[tonic::async_trait]
impl MemberService for MemberHandler {
    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let now = Utc::now();
        let new = NewMember::parse(request.get_ref(), now.date_naive())?;
        let (mut conn, caller) = self.access.acquire(&claims, new.organization_id).await?;
        require_admin(&caller)?;
        let expires_at = invitation::expiry(now, self.invitation_ttl)?;
        let id = invitation::invite(&mut conn, self.access.identity(), &new, expires_at).await?;
        tracing::info!(member_id = %id, role = new.profile.role().as_db(), "member invited");
        let member = load_visible(&conn, &caller, id).await?;
        Ok(Response::new(pb::AddMemberResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let req = request.get_ref();
        let organization_id = parse_uuid("organization_id", &req.organization_id)?;
        let member = MemberRef::parse(&req.member_id)?;
        let (conn, caller) = self.access.acquire(&claims, organization_id).await?;
        let member = load_visible(&conn, &caller, member.resolve(caller.member_id)).await?;
        Ok(Response::new(pb::GetMemberResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let req = request.get_ref();
        let organization_id = parse_uuid("organization_id", &req.organization_id)?;
        let role = match (req.role, Role::from_proto(req.role)) {
            (0, _) => None,
            (_, Some(role)) => Some(role),
            (_, None) => return Err(Error::field("role", "unknown role").into()),
        };
        let limit = page_size(req.page_size)?;
        let after = decode_page_token(PAGE_KIND, &req.page_token)?;
        let (conn, caller) = self.access.acquire(&claims, organization_id).await?;
        let mut rows = read::list(&conn, &caller, role, after, limit + 1).await?;
        let next_page_token = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| encode_page_token(PAGE_KIND, r.id)).unwrap_or_default()
        } else {
            String::new()
        };
        let members = rows.into_iter().map(|row| member_for(&caller, row)).collect();
        Ok(Response::new(pb::ListMembersResponse { members, next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn update_member_profile(
        &self,
        request: Request<pb::UpdateMemberProfileRequest>,
    ) -> Result<Response<pb::UpdateMemberProfileResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let update = ProfileUpdate::parse(request.get_ref(), Utc::now().date_naive())?;
        let (mut conn, caller) = self.access.acquire(&claims, update.organization_id).await?;
        let target = update.member.resolve(caller.member_id);
        if target != caller.member_id {
            require_admin(&caller)?;
        }
        if let Change::Role(_) = update.change {
            require_admin(&caller)?;
            if target == caller.member_id {
                return Err(Error::FailedPrecondition(
                    "admins cannot change their own role".into(),
                )
                .into());
            }
        }
        let Some((row, _)) = read::get(&*conn, &caller, target).await? else {
            return Err(Error::NotFound("no such member".into()).into());
        };
        if let Some(needed) = update.change.role()
            && row.role != Some(needed)
        {
            return Err(Error::field(
                "update_mask",
                "paths must name the member's own role's profile",
            )
            .into());
        }
        write::update(&mut conn, target, &update.change).await?;
        if let Change::Role(profile) = &update.change {
            let identity = self.access.identity();
            let (organization_id, role) = (update.organization_id, profile.role());
            invitation::publish_role(identity, organization_id, &row, role, Utc::now()).await?;
            tracing::info!(member_id = %target, role = profile.role().as_db(), "role changed");
        }
        let member = load_visible(&conn, &caller, target).await?;
        Ok(Response::new(pb::UpdateMemberProfileResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let req = request.get_ref();
        let organization_id = parse_uuid("organization_id", &req.organization_id)?;
        let member = MemberRef::parse(&req.member_id)?;
        let (mut conn, caller) = self.access.acquire(&claims, organization_id).await?;
        require_admin(&caller)?;
        let target = member.resolve(caller.member_id);
        if target == caller.member_id {
            return Err(Error::FailedPrecondition("admins cannot remove themselves".into()).into());
        }
        let identity = self.access.identity();
        let removed = write::remove(&mut conn, target, |departed| async move {
            match departed {
                Departed::Member(user_id) => {
                    identity.remove_membership(organization_id, user_id).await
                }
                Departed::Invitation(email) => {
                    identity.remove_invitation(organization_id, &email).await
                }
            }
        })
        .await?;
        if !removed {
            return Err(Error::NotFound("no such member".into()).into());
        }
        tracing::info!(member_id = %target, "member removed");
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<pb::AcceptInvitationResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let organization_id = parse_uuid("organization_id", &request.get_ref().organization_id)?;
        let mut conn = joining::open(&self.access, &claims, organization_id).await?;
        let identity = self.access.identity();
        let (member_id, role) =
            joining::accept(&mut conn, identity, organization_id, &claims, Utc::now()).await?;
        tracing::info!(%member_id, role = role.as_db(), "invitation accepted");
        let caller = Caller { member_id, user_id: claims.user_id, role };
        let member = load_visible(&conn, &caller, member_id).await?;
        Ok(Response::new(pb::AcceptInvitationResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn decline_invitation(
        &self,
        request: Request<pb::DeclineInvitationRequest>,
    ) -> Result<Response<pb::DeclineInvitationResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let organization_id = parse_uuid("organization_id", &request.get_ref().organization_id)?;
        let mut conn = joining::open(&self.access, &claims, organization_id).await?;
        let identity = self.access.identity();
        let member_id =
            joining::decline(&mut conn, identity, organization_id, &claims, Utc::now()).await?;
        tracing::info!(%member_id, "invitation declined");
        Ok(Response::new(pb::DeclineInvitationResponse {}))
    }
}
