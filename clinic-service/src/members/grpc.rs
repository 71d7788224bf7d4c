//! The `MemberService` handlers: parse, acquire the tenant connection and the caller's
//! membership, run the operation (`service.rs`), convert back.

use chrono::Utc;
use clinic_api::clinic::v1::{self as pb, member_service_server::MemberService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    domain::NewMember,
    joining,
    service::{self, ListMembers, Members},
    update::ProfileUpdate,
};
use crate::{
    auth::{Claims, Person},
    error::Error,
    grpc::{MemberRef, decode_page_token, encode_page_token, page_size, parse_uuid},
    roles::Role,
    tenancy::TenantAccess,
};

/// Page-token kind of ListMembers.
const PAGE_KIND: &str = "members";

/// Serves `clinic.v1.MemberService`.
pub struct MemberHandler {
    access: TenantAccess,
    members: Members,
}

impl MemberHandler {
    /// Handlers over `access`, delivering central changes through `members.relay`.
    pub fn new(access: TenantAccess, members: Members) -> Self {
        Self { access, members }
    }
}

/// `(organization_id, member_id)` of GetMember and RemoveMember.
fn member_of(organization_id: &str, member_id: &str) -> Result<(Uuid, MemberRef), Error> {
    Ok((parse_uuid("organization_id", organization_id)?, MemberRef::parse("member_id", member_id)?))
}

fn list_request(req: &pb::ListMembersRequest) -> Result<(Uuid, ListMembers), Error> {
    let organization_id = parse_uuid("organization_id", &req.organization_id)?;
    let role = match (req.role, Role::from_proto(req.role)) {
        (0, _) => None,
        (_, Some(role)) => Some(role),
        (_, None) => return Err(Error::field("role", "unknown role")),
    };
    let limit = page_size(req.page_size)?;
    let after = decode_page_token(PAGE_KIND, &req.page_token)?;
    Ok((organization_id, ListMembers { role, after, limit }))
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
        let member = self.members.add(&mut conn, &caller, &new, now).await?;
        Ok(Response::new(pb::AddMemberResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let (organization_id, member) =
            member_of(&request.get_ref().organization_id, &request.get_ref().member_id)?;
        let member = service::get(&self.access, &claims, organization_id, member).await?;
        Ok(Response::new(pb::GetMemberResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let (organization_id, req) = list_request(request.get_ref())?;
        let (conn, caller) = self.access.acquire(&claims, organization_id).await?;
        let (members, next) = service::list(&conn, &caller, req).await?;
        let next_page_token =
            next.map(|last| encode_page_token(PAGE_KIND, last)).unwrap_or_default();
        Ok(Response::new(pb::ListMembersResponse { members, next_page_token }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn update_member_profile(
        &self,
        request: Request<pb::UpdateMemberProfileRequest>,
    ) -> Result<Response<pb::UpdateMemberProfileResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let now = Utc::now();
        let update = ProfileUpdate::parse(request.get_ref(), now.date_naive())?;
        let (mut conn, caller) = self.access.acquire(&claims, update.organization_id).await?;
        let member = self.members.update_profile(&mut conn, &caller, &update, now).await?;
        Ok(Response::new(pb::UpdateMemberProfileResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let (organization_id, member) =
            member_of(&request.get_ref().organization_id, &request.get_ref().member_id)?;
        let (mut conn, caller) = self.access.acquire(&claims, organization_id).await?;
        self.members.remove(&mut conn, &caller, organization_id, member).await?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<pb::AcceptInvitationResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let organization_id = parse_uuid("organization_id", &request.get_ref().organization_id)?;
        let person = Person::fetch(self.access.identity(), &request, &claims).await?;
        let mut conn = joining::open(&self.access, &claims, &person, organization_id).await?;
        let member = self.members.accept(&mut conn, organization_id, &person, Utc::now()).await?;
        Ok(Response::new(pb::AcceptInvitationResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn decline_invitation(
        &self,
        request: Request<pb::DeclineInvitationRequest>,
    ) -> Result<Response<pb::DeclineInvitationResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let organization_id = parse_uuid("organization_id", &request.get_ref().organization_id)?;
        let person = Person::fetch(self.access.identity(), &request, &claims).await?;
        let mut conn = joining::open(&self.access, &claims, &person, organization_id).await?;
        self.members.decline(&mut conn, organization_id, &person, Utc::now()).await?;
        Ok(Response::new(pb::DeclineInvitationResponse {}))
    }
}
