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
    audit::{Action, Audit, Kind, Trail},
    auth::{Claims, Person},
    error::Error,
    grpc::{MemberRef, decode_page_token, encode_page_token, page_size, parse_uuid},
    roles::Role,
    tenancy::TenantAccess,
};

/// Page-token kind of ListMembers.
const PAGE_KIND: &str = "members";

/// The audited actions of `clinic.v1.MemberService`.
const fn action(rpc: &'static str, kind: Kind) -> Action {
    Action::new(rpc, "member", kind)
}
const ADD: Action = action("clinic.v1.MemberService/AddMember", Kind::Write);
const GET: Action = action("clinic.v1.MemberService/GetMember", Kind::Read);
const LIST: Action = action("clinic.v1.MemberService/ListMembers", Kind::Read);
const UPDATE: Action = action("clinic.v1.MemberService/UpdateMemberProfile", Kind::Write);
const REMOVE: Action = action("clinic.v1.MemberService/RemoveMember", Kind::Write);
const ACCEPT: Action = action("clinic.v1.MemberService/AcceptInvitation", Kind::Write);
const DECLINE: Action = action("clinic.v1.MemberService/DeclineInvitation", Kind::Write);

/// Serves `clinic.v1.MemberService`.
pub struct MemberHandler {
    access: TenantAccess,
    members: Members,
    audit: Audit,
}

impl MemberHandler {
    /// Handlers over `access`, delivering central changes through `members.relay`, auditing
    /// through `audit`.
    pub fn new(access: TenantAccess, members: Members, audit: Audit) -> Self {
        Self { access, members, audit }
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
        let mut trail = Trail::start(&request, ADD);
        let result = async {
            let now = Utc::now();
            let new = NewMember::parse(request.get_ref(), now.date_naive())?;
            let (mut conn, caller) = self.access.acquire(&claims, new.organization_id).await?;
            trail.enter(new.organization_id, &caller);
            self.members.add(&mut conn, &caller, &new, now, &mut trail).await
        }
        .await;
        let member = self.audit.close(trail, result)?;
        Ok(Response::new(pb::AddMemberResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, GET);
        let result = async {
            let (organization_id, member) =
                member_of(&request.get_ref().organization_id, &request.get_ref().member_id)?;
            service::get(&self.access, &claims, organization_id, member, &mut trail).await
        }
        .await;
        let member = self.audit.close(trail, result)?;
        Ok(Response::new(pb::GetMemberResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, LIST);
        let result = async {
            let (organization_id, req) = list_request(request.get_ref())?;
            let (conn, caller) = self.access.acquire(&claims, organization_id).await?;
            trail.enter(organization_id, &caller);
            service::list(&conn, &caller, req, &mut trail).await
        }
        .await;
        let (members, next) = self.audit.close(trail, result)?;
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
        let mut trail = Trail::start(&request, UPDATE);
        let result = async {
            let now = Utc::now();
            let update = ProfileUpdate::parse(request.get_ref(), now.date_naive())?;
            let (mut conn, caller) = self.access.acquire(&claims, update.organization_id).await?;
            trail.enter(update.organization_id, &caller);
            self.members.update_profile(&mut conn, &caller, &update, now, &mut trail).await
        }
        .await;
        let member = self.audit.close(trail, result)?;
        Ok(Response::new(pb::UpdateMemberProfileResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, REMOVE);
        let result = async {
            let (organization_id, member) =
                member_of(&request.get_ref().organization_id, &request.get_ref().member_id)?;
            let (mut conn, caller) = self.access.acquire(&claims, organization_id).await?;
            trail.enter(organization_id, &caller);
            self.members.remove(&mut conn, &caller, organization_id, member, &mut trail).await
        }
        .await;
        self.audit.close(trail, result)?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<pb::AcceptInvitationResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, ACCEPT);
        let result = async {
            let organization_id =
                parse_uuid("organization_id", &request.get_ref().organization_id)?;
            trail.tenant(organization_id);
            let person = Person::fetch(self.access.identity(), &request, &claims).await?;
            let mut conn = joining::open(&self.access, &claims, &person, organization_id).await?;
            let now = Utc::now();
            self.members.accept(&mut conn, organization_id, &person, now, &mut trail).await
        }
        .await;
        let member = self.audit.close(trail, result)?;
        Ok(Response::new(pb::AcceptInvitationResponse { member: Some(member) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn decline_invitation(
        &self,
        request: Request<pb::DeclineInvitationRequest>,
    ) -> Result<Response<pb::DeclineInvitationResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, DECLINE);
        let result = async {
            let organization_id =
                parse_uuid("organization_id", &request.get_ref().organization_id)?;
            trail.tenant(organization_id);
            let person = Person::fetch(self.access.identity(), &request, &claims).await?;
            let mut conn = joining::open(&self.access, &claims, &person, organization_id).await?;
            let now = Utc::now();
            self.members.decline(&mut conn, organization_id, &person, now, &mut trail).await
        }
        .await;
        self.audit.close(trail, result)?;
        Ok(Response::new(pb::DeclineInvitationResponse {}))
    }
}
