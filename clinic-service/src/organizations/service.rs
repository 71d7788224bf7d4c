//! The `OrganizationService` handlers.

use clinic_api::{
    clinic::v1::{self as pb, organization_service_server::OrganizationService},
    identity::v1 as ipb,
};
use tonic::{Request, Response, Status};

use crate::{
    audit::{self, Action, Audit, Kind, Trail},
    auth::{Claims, Person},
    error::Error,
    grpc::{page_size, parse_uuid, timestamp},
    roles::Role,
    schedules::{repository as settings, requests::SettingsChange, slots::Settings},
    tenancy::{OrgRecord, OrgStatus, TenantAccess, provisioning},
};

const CREATE: Action =
    Action::new("clinic.v1.OrganizationService/CreateOrganization", "organization", Kind::Write);
const GET: Action =
    Action::new("clinic.v1.OrganizationService/GetOrganization", "organization", Kind::Other);
const UPDATE: Action =
    Action::new("clinic.v1.OrganizationService/UpdateOrganization", "organization", Kind::Write);

/// Serves `clinic.v1.OrganizationService`.
pub struct OrganizationHandler {
    access: TenantAccess,
    audit: Audit,
}

impl OrganizationHandler {
    /// Handlers over `access`, auditing through `audit`.
    pub fn new(access: TenantAccess, audit: Audit) -> Self {
        Self { access, audit }
    }
}

/// A validated organization name (trimmed, mapping to a safe database name).
fn parse_name(name: &str) -> Result<&str, Error> {
    clinic_shared::slug::database_name(name).map_err(|e| Error::field("name", e.to_string()))?;
    clinic_shared::slug::validate_name(name).map_err(|e| Error::field("name", e.to_string()))
}

fn to_proto(org: &OrgRecord) -> pb::Organization {
    pb::Organization {
        id: org.id.to_string(),
        name: org.name.clone(),
        database_name: org.location.database.clone(),
        status: match org.status {
            OrgStatus::Active => pb::OrganizationStatus::Active,
            OrgStatus::Provisioning => pb::OrganizationStatus::Provisioning,
        } as i32,
        create_time: org.created_at.map(timestamp),
        ..Default::default()
    }
}

/// [`to_proto`] with the clinic's settings (read in its tenant database).
fn with_settings(org: &OrgRecord, s: &Settings) -> pb::Organization {
    pb::Organization {
        time_zone: s.zone.name().to_owned(),
        min_notice_minutes: s.min_notice_minutes,
        booking_horizon_days: s.horizon_days,
        ..to_proto(org)
    }
}

#[tonic::async_trait]
impl OrganizationService for OrganizationHandler {
    #[tracing::instrument(skip_all, fields(user_id))]
    async fn create_organization(
        &self,
        request: Request<pb::CreateOrganizationRequest>,
    ) -> Result<Response<pb::CreateOrganizationResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.user_id));
        let name = parse_name(&request.get_ref().name)?;
        let person = Person::fetch(self.access.identity(), &request, &claims);
        let (org, admin) =
            provisioning::create_organization(&self.access, claims.user_id, person, name).await?;
        // Recorded once the clinic is ready, as its creator's first event there (see
        // `Audit::committed`); a retry of a creation answered OK is recorded again. The
        // creator's membership comes with the admin row this call wrote, else it is read.
        let mut trail = Trail::start(&request, CREATE);
        let caller = match admin {
            Some(admin) => Ok(admin),
            None => self.access.acquire(&claims, org.id).await.map(|(_conn, caller)| caller),
        };
        match caller {
            Ok(caller) => {
                trail.enter(org.id, &caller);
                trail.resource(org.id);
                self.audit.committed(&trail)?;
            }
            Err(e) => tracing::warn!(error = %e, "the new clinic's creation was not audited"),
        }
        Ok(Response::new(pb::CreateOrganizationResponse { organization: Some(to_proto(&org)) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> Result<Response<pb::GetOrganizationResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let id = parse_uuid("organization_id", &request.get_ref().organization_id)?;
        let mut trail = Trail::start(&request, GET);
        let result = async {
            let org = self.access.organization(id).await?;
            let (caller, rows) =
                self.access.read_with(&claims, id, &settings::SETTINGS_FOR_CALLER, &[]).await?;
            trail.enter(id, &caller);
            trail.resource(id);
            let row = rows.first().ok_or_else(Error::organization_not_found)?;
            Ok((org, caller, settings::settings_at(row, 2)?))
        }
        .await;
        let (org, caller, settings) = self.audit.close(trail, result)?;
        Ok(Response::new(pb::GetOrganizationResponse {
            organization: Some(with_settings(&org, &settings)),
            role: caller.role.to_proto() as i32,
        }))
    }

    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn update_organization(
        &self,
        request: Request<pb::UpdateOrganizationRequest>,
    ) -> Result<Response<pb::UpdateOrganizationResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, UPDATE);
        let change = SettingsChange::try_from(request.into_inner())?;
        let result = async {
            let org = self.access.organization(change.organization_id).await?;
            let (mut conn, caller) = self.access.acquire(&claims, change.organization_id).await?;
            trail.enter(change.organization_id, &caller);
            trail.resource(change.organization_id);
            if caller.role != Role::Admin {
                return Err(Error::PermissionDenied(
                    "only admins change a clinic's settings".into(),
                ));
            }
            let tx = conn.transaction().await.map_err(|e| Error::tenant_db("begin", &e))?;
            let settings = settings::update_settings(&tx, &change).await?;
            audit::store::record(&tx, &mut trail).await?;
            tx.commit().await.map_err(|e| Error::tenant_db("commit settings", &e))?;
            Ok((org, settings))
        }
        .await;
        let (org, settings) = self.audit.close(trail, result)?;
        Ok(Response::new(pb::UpdateOrganizationResponse {
            organization: Some(with_settings(&org, &settings)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_organizations(
        &self,
        request: Request<pb::ListOrganizationsRequest>,
    ) -> Result<Response<pb::ListOrganizationsResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let req = request.into_inner();
        let size = page_size(req.page_size)?;
        let page = self
            .access
            .identity()
            .list_user_memberships(claims.user_id, size as i32, req.page_token)
            .await
            .map_err(|e| match e {
                Error::InvalidArgument(_) => Error::field("page_token", "malformed page token"),
                other => other,
            })?;
        let mut organizations = Vec::with_capacity(page.memberships.len());
        for m in page.memberships {
            // An identity-service that predates invitations sends UNSPECIFIED: a membership.
            let status = match m.status() {
                ipb::MembershipStatus::Invited => pb::MembershipStatus::Invited,
                _ => pb::MembershipStatus::Active,
            };
            let Some(org) = m.organization else { continue };
            let org = OrgRecord::try_from(org)?;
            let role = Role::from_membership(m.role).map_or(pb::Role::Unspecified, Role::to_proto);
            organizations.push(pb::OrganizationMembership {
                organization: Some(to_proto(&org)),
                role: role as i32,
                status: status as i32,
                invite_expire_time: m.invite_expire_time,
            });
        }
        Ok(Response::new(pb::ListOrganizationsResponse {
            organizations,
            next_page_token: page.next_page_token,
        }))
    }
}
