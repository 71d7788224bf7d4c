//! The `MemberService` handlers: parse, authorize against the caller's role in the tenant, run
//! the queries, record membership changes centrally.

use chrono::Utc;
use clinic_api::clinic::v1::{self as pb, member_service_server::MemberService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    domain::{MemberRef, NewMember},
    read,
    update::{Change, ProfileUpdate},
    view::member_for,
    write,
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
}

impl MemberHandler {
    /// Handlers over `access`.
    pub fn new(access: TenantAccess) -> Self {
        Self { access }
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
        None => Err(Error::NotFound("no such member".into())),
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
        let new = NewMember::parse(request.get_ref(), Utc::now().date_naive())?;
        let (mut conn, caller) = self.access.acquire(&claims, new.organization_id).await?;
        require_admin(&caller)?;
        let user = self.access.identity().lookup_user(&new.email).await.map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound("no user with that email".into()),
            other => other,
        })?;
        let user_id = parse_uuid("user", &user.id)
            .map_err(|_| Error::Internal("directory returned a malformed user id".into()))?;
        let role = new.profile.role();
        let id = match write::insert(&mut conn, user_id, &user.email, &user.name, &new.profile)
            .await
        {
            Ok(id) => id,
            Err(Error::AlreadyExists(m)) => {
                // A previous AddMember may have stopped before recording centrally: repair.
                if let Some(existing) = role_of(&conn, user_id).await? {
                    let _ = self
                        .access
                        .identity()
                        .record_membership(new.organization_id, user_id, existing.to_membership())
                        .await;
                }
                return Err(Error::AlreadyExists(m).into());
            }
            Err(e) => return Err(e.into()),
        };
        self.access
            .identity()
            .record_membership(new.organization_id, user_id, role.to_membership())
            .await?;
        tracing::info!(member_id = %id, role = role.as_db(), "member added");
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
            self.access
                .identity()
                .record_membership(
                    update.organization_id,
                    row.user_id,
                    profile.role().to_membership(),
                )
                .await?;
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
        write::remove(&mut conn, target, |user_id| {
            identity.remove_membership(organization_id, user_id)
        })
        .await?
        .ok_or_else(|| Error::NotFound("no such member".into()))?;
        tracing::info!(member_id = %target, "member removed");
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }
}

/// The role of `user_id`'s member row, if any.
async fn role_of(client: &tokio_postgres::Client, user_id: Uuid) -> Result<Option<Role>, Error> {
    let row = client
        .query_opt("SELECT role FROM organization_user WHERE user_id = $1", &[&user_id])
        .await
        .map_err(|e| Error::tenant_db("member of user", &e))?;
    Ok(row.and_then(|r| Role::from_db(r.get::<_, Option<&str>>(0))))
}
