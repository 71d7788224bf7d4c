//! The `MemberService` handlers.

use clinic_api::clinic::v1::{self as pb, member_service_server::MemberService};
use tonic::{Request, Response, Status};

use crate::tenancy::TenantAccess;

/// Serves `clinic.v1.MemberService`.
pub struct MemberHandler {
    #[allow(dead_code)]
    access: TenantAccess,
}

impl MemberHandler {
    /// Handlers over `access`.
    pub fn new(access: TenantAccess) -> Self {
        Self { access }
    }
}

#[tonic::async_trait]
impl MemberService for MemberHandler {
    async fn add_member(
        &self,
        _request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AddMemberResponse>, Status> {
        Err(Status::unimplemented("soon"))
    }
    async fn get_member(
        &self,
        _request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        Err(Status::unimplemented("soon"))
    }
    async fn list_members(
        &self,
        _request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        Err(Status::unimplemented("soon"))
    }
    async fn update_member_profile(
        &self,
        _request: Request<pb::UpdateMemberProfileRequest>,
    ) -> Result<Response<pb::UpdateMemberProfileResponse>, Status> {
        Err(Status::unimplemented("soon"))
    }
    async fn remove_member(
        &self,
        _request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        Err(Status::unimplemented("soon"))
    }
}
