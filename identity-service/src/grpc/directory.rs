//! `identity.v1.DirectoryService`: internal directory for clinic-service.

use std::sync::Arc;

use chrono::Utc;
use clinic_api::identity::v1::{self as pb, directory_service_server::DirectoryService};
use tonic::{Request, Response, Status};

use super::convert::{all3, both, role, uuid};
use crate::{
    accounts::{Email, store as users},
    directory::{
        audit,
        invitations::{self, Invitation},
        memberships,
        organizations::{self, Reservation},
        paging,
        spares::{self, SpareState},
        versions,
    },
    error::Error,
    state::AppState,
};

/// The DirectoryService implementation (behind the service-token interceptor).
pub struct DirectoryApi {
    state: Arc<AppState>,
}

impl DirectoryApi {
    /// Serves from `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

const MAX_SERVERS: usize = 100;

impl TryFrom<pb::ReserveOrganizationRequest> for Reservation {
    type Error = Error;

    fn try_from(m: pb::ReserveOrganizationRequest) -> Result<Self, Error> {
        let names = clinic_shared::slug::database_name(&m.name)
            .map(|db| (m.name.trim().to_owned(), db))
            .map_err(|e| Error::invalid("name", e.to_string()));
        let creator = uuid("creator_user_id", &m.creator_user_id);
        let mut servers: Vec<String> = Vec::new();
        for s in m.candidate_servers.iter().map(|s| s.trim()) {
            if !servers.iter().any(|x| x == s) {
                servers.push(s.to_owned());
            }
        }
        let servers_ok = if servers.is_empty() {
            Err(Error::invalid("candidate_servers", "at least one server is required"))
        } else if servers.len() > MAX_SERVERS
            || servers
                .iter()
                .any(|s| s.is_empty() || s.len() > 200 || s.chars().any(char::is_control))
        {
            Err(Error::invalid("candidate_servers", "must be 1 to 100 non-empty server keys"))
        } else {
            Ok(())
        };
        let field = "preferred_spare_database_names";
        let preferred = if m.preferred_spare_database_names.len() > MAX_SERVERS {
            Err(Error::invalid(field, "at most 100 names"))
        } else {
            m.preferred_spare_database_names.iter().map(|n| spares::parse_name(field, n)).collect()
        };
        let ((name, database_name), creator, ()) = all3(names, creator, servers_ok)?;
        let preferred_spares = preferred?;
        let claim_spare = m.claim_spare_database;
        Ok(Reservation { name, database_name, creator, servers, claim_spare, preferred_spares })
    }
}

#[tonic::async_trait]
impl DirectoryService for DirectoryApi {
    #[tracing::instrument(skip_all)]
    async fn lookup_user(
        &self,
        request: Request<pb::LookupUserRequest>,
    ) -> Result<Response<pb::LookupUserResponse>, Status> {
        let email = Email::parse("email", &request.into_inner().email)?;
        let conn = self.state.conn().await?;
        let user = users::by_email(&**conn, &email)
            .await?
            .ok_or(Error::NotFound("no user with this email"))?;
        Ok(Response::new(pb::LookupUserResponse { user: Some(user.into()) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn reserve_organization(
        &self,
        request: Request<pb::ReserveOrganizationRequest>,
    ) -> Result<Response<pb::ReserveOrganizationResponse>, Status> {
        let reservation = Reservation::try_from(request.into_inner())?;
        let reserved = organizations::reserve(&self.state, reservation, Utc::now()).await?;
        let org = reserved.organization;
        tracing::Span::current().record("organization_id", tracing::field::display(org.id));
        Ok(Response::new(pb::ReserveOrganizationResponse {
            organization: Some(org.into()),
            created: reserved.created,
            spare_database_name: reserved.spare.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn activate_organization(
        &self,
        request: Request<pb::ActivateOrganizationRequest>,
    ) -> Result<Response<pb::ActivateOrganizationResponse>, Status> {
        let id = uuid("organization_id", &request.into_inner().organization_id)?;
        let org = organizations::activate(&self.state, id).await?;
        Ok(Response::new(pb::ActivateOrganizationResponse { organization: Some(org.into()) }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::GetOrganizationResponse>, Status> {
        let id = uuid("organization_id", &request.into_inner().organization_id)?;
        let org = organizations::get(&self.state, id).await?;
        Ok(Response::new(pb::GetOrganizationResponse { organization: Some(org.into()) }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let m = request.into_inner();
        let page = paging::parse(paging::ORGANIZATIONS, m.page_size, &m.page_token, 1000)?;
        let (orgs, next_page_token) = organizations::list(&self.state, page).await?;
        Ok(Response::new(pb::ListOrganizationsResponse {
            organizations: orgs.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn record_membership(
        &self,
        request: Request<pb::RecordMembershipRequest>,
    ) -> Result<Response<pb::RecordMembershipResponse>, Status> {
        let m = request.into_inner();
        let ((org, user, role), version) = both(
            all3(
                uuid("organization_id", &m.organization_id),
                uuid("user_id", &m.user_id),
                role("role", m.role),
            ),
            versions::parse(m.version),
        )?;
        memberships::record(&self.state, org, user, role, version, Utc::now()).await?;
        Ok(Response::new(pb::RecordMembershipResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn remove_membership(
        &self,
        request: Request<pb::RemoveMembershipRequest>,
    ) -> Result<Response<pb::RemoveMembershipResponse>, Status> {
        let m = request.into_inner();
        let (org, user, version) = all3(
            uuid("organization_id", &m.organization_id),
            uuid("user_id", &m.user_id),
            versions::parse(m.version),
        )?;
        memberships::remove(&self.state, org, user, version).await?;
        Ok(Response::new(pb::RemoveMembershipResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_user_memberships(
        &self,
        request: Request<pb::ListUserMembershipsRequest>,
    ) -> Result<Response<pb::ListUserMembershipsResponse>, Status> {
        let m = request.into_inner();
        let (user, page) = both(
            uuid("user_id", &m.user_id),
            paging::parse(paging::MEMBERSHIPS, m.page_size, &m.page_token, 100),
        )?;
        let (items, next_page_token) =
            memberships::list_for_user(&self.state, user, page, m.include_invitations, Utc::now())
                .await?;
        Ok(Response::new(pb::ListUserMembershipsResponse {
            memberships: items.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn send_invitation(
        &self,
        request: Request<pb::SendInvitationRequest>,
    ) -> Result<Response<pb::SendInvitationResponse>, Status> {
        let invitation = Invitation::try_from(request.into_inner())?;
        tracing::Span::current()
            .record("organization_id", tracing::field::display(invitation.organization));
        invitations::send(&self.state, invitation, Utc::now()).await?;
        Ok(Response::new(pb::SendInvitationResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn remove_invitation(
        &self,
        request: Request<pb::RemoveInvitationRequest>,
    ) -> Result<Response<pb::RemoveInvitationResponse>, Status> {
        let m = request.into_inner();
        let (organization, email, version) = all3(
            uuid("organization_id", &m.organization_id),
            Email::parse("email", &m.email),
            versions::parse(m.version),
        )?;
        invitations::remove(&self.state, organization, &email, version).await?;
        Ok(Response::new(pb::RemoveInvitationResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_organization_members(
        &self,
        request: Request<pb::ListOrganizationMembersRequest>,
    ) -> Result<Response<pb::ListOrganizationMembersResponse>, Status> {
        let m = request.into_inner();
        let (org, page) = both(
            uuid("organization_id", &m.organization_id),
            memberships::members_page(m.page_size, &m.page_token),
        )?;
        let (entries, next_page_token) =
            memberships::list_for_organization(&self.state, org, page).await?;
        Ok(Response::new(pb::ListOrganizationMembersResponse {
            members: entries.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }
    #[tracing::instrument(skip_all)]
    async fn register_spare_database(
        &self,
        request: Request<pb::RegisterSpareDatabaseRequest>,
    ) -> Result<Response<pb::RegisterSpareDatabaseResponse>, Status> {
        let m = request.into_inner();
        let (server, name, role) = all3(
            server_key("server", &m.server),
            spares::parse_name("database_name", &m.database_name),
            spares::parse_login_role("login_role", &m.login_role),
        )?;
        let spare =
            spares::register(&self.state, &server, &name, role.as_deref(), Utc::now()).await?;
        Ok(Response::new(pb::RegisterSpareDatabaseResponse { spare_database: Some(spare.into()) }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_spare_database(
        &self,
        request: Request<pb::UpdateSpareDatabaseRequest>,
    ) -> Result<Response<pb::UpdateSpareDatabaseResponse>, Status> {
        let m = request.into_inner();
        let (name, from, to) = all3(
            spares::parse_name("database_name", &m.database_name),
            settable_state("expected_state", m.expected_state),
            settable_state("state", m.state),
        )?;
        let spare = spares::update(&self.state, &name, from, to).await?;
        Ok(Response::new(pb::UpdateSpareDatabaseResponse { spare_database: Some(spare.into()) }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_spare_databases(
        &self,
        request: Request<pb::ListSpareDatabasesRequest>,
    ) -> Result<Response<pb::ListSpareDatabasesResponse>, Status> {
        let m = request.into_inner();
        let server = match m.server.as_str() {
            "" => None,
            s => Some(server_key("server", s)?),
        };
        let found = spares::list(&self.state, server.as_deref()).await?;
        Ok(Response::new(pb::ListSpareDatabasesResponse {
            spare_databases: found.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn remove_spare_database(
        &self,
        request: Request<pb::RemoveSpareDatabaseRequest>,
    ) -> Result<Response<pb::RemoveSpareDatabaseResponse>, Status> {
        let name = spares::parse_name("database_name", &request.into_inner().database_name)?;
        spares::remove(&self.state, &name).await?;
        Ok(Response::new(pb::RemoveSpareDatabaseResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn record_audit_checkpoint(
        &self,
        request: Request<pb::RecordAuditCheckpointRequest>,
    ) -> Result<Response<pb::RecordAuditCheckpointResponse>, Status> {
        let m = request.into_inner();
        let (organization_id, seq, hash) = all3(
            uuid("organization_id", &m.organization_id),
            audit::parse_seq("seq", m.seq),
            audit::parse_hash("hash", &m.hash),
        )?;
        audit::record(&self.state, organization_id, seq, &hash).await?;
        Ok(Response::new(pb::RecordAuditCheckpointResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn get_audit_checkpoint(
        &self,
        request: Request<pb::GetAuditCheckpointRequest>,
    ) -> Result<Response<pb::GetAuditCheckpointResponse>, Status> {
        let organization_id = uuid("organization_id", &request.into_inner().organization_id)?;
        let checkpoint =
            audit::get(&self.state, organization_id).await?.map(|c| pb::AuditCheckpoint {
                seq: c.seq,
                hash: c.hash,
                record_time: Some(super::convert::timestamp(c.recorded_at)),
            });
        Ok(Response::new(pb::GetAuditCheckpointResponse { checkpoint }))
    }
}

/// A server key from request field `field` (as in ReserveOrganization's candidates).
fn server_key(field: &str, raw: &str) -> Result<String, Error> {
    let key = raw.trim();
    if key.is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must be a non-empty server key"));
    }
    Ok(key.to_owned())
}

/// A state a spare may be moved between: CREATING or READY.
fn settable_state(field: &str, raw: i32) -> Result<SpareState, Error> {
    match pb::SpareDatabaseState::try_from(raw) {
        Ok(pb::SpareDatabaseState::Creating) => Ok(SpareState::Creating),
        Ok(pb::SpareDatabaseState::Ready) => Ok(SpareState::Ready),
        Ok(pb::SpareDatabaseState::Unspecified) => Err(Error::invalid(field, "is required")),
        _ => Err(Error::invalid(field, "must be CREATING or READY")),
    }
}
