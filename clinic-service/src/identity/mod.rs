//! The client of identity-service's internal RPCs (`TokenService`, `DirectoryService`): one lazy
//! channel (so clinic-service starts without identity-service and recovers when it returns), the
//! service credential on every call, and a deadline on every call.

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};
use clinic_api::identity::v1 as pb;
use clinic_shared::{auth::AttachServiceToken, tls::ClientTls};
use pb::{
    directory_service_client::DirectoryServiceClient, token_service_client::TokenServiceClient,
};
use secrecy::SecretString;
use tonic::{Code, Request, Status, service::interceptor::InterceptedService, transport::Channel};

use crate::error::Error;

type Authed = InterceptedService<Channel, AttachServiceToken>;

/// Calls identity-service. Cheap to clone.
#[derive(Clone)]
pub struct IdentityClient {
    tokens: TokenServiceClient<Authed>,
    directory: DirectoryServiceClient<Authed>,
    timeout: Duration,
}

impl IdentityClient {
    /// A client of `url` that connects on first use, over TLS when `tls` is given (the
    /// configuration checked that it is for an `https://` URL).
    pub fn new(
        url: &str,
        tls: Option<&ClientTls>,
        service_token: Option<&SecretString>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let endpoint = match tls {
            Some(tls) => tls.endpoint(url).map_err(|e| format!("IDENTITY_URL: {e}"))?,
            None => {
                Channel::from_shared(url.to_owned()).map_err(|e| format!("IDENTITY_URL: {e}"))?
            }
        };
        let channel = endpoint.connect_timeout(timeout).timeout(timeout).connect_lazy();
        let attach =
            AttachServiceToken::optional(service_token).map_err(|e| e.message().to_owned())?;
        Ok(Self {
            tokens: TokenServiceClient::with_interceptor(channel.clone(), attach.clone()),
            directory: DirectoryServiceClient::with_interceptor(channel, attach),
            timeout,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Runs one call under the deadline, mapping transport failures to UNAVAILABLE.
    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(self.timeout + Duration::from_millis(100), fut).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("identity-service did not answer in time")),
        }
    }

    /// `TokenService.ValidateToken`. Errors keep their code (UNAUTHENTICATED, UNAVAILABLE...).
    pub async fn validate_token(&self, token: &str) -> Result<pb::ValidateTokenResponse, Status> {
        let req = self.request(pb::ValidateTokenRequest { access_token: token.to_owned() });
        let mut client = self.tokens.clone();
        self.call(client.validate_token(req)).await
    }

    /// `TokenService.ListSigningKeys`.
    pub async fn list_signing_keys(&self) -> Result<pb::ListSigningKeysResponse, Status> {
        let req = self.request(pb::ListSigningKeysRequest {});
        let mut client = self.tokens.clone();
        self.call(client.list_signing_keys(req)).await
    }

    /// `TokenService.WatchRevocations` from `resume_token`: the deadline covers opening the
    /// stream, not its life.
    pub async fn watch_revocations(
        &self,
        resume_token: String,
    ) -> Result<tonic::Streaming<pb::WatchRevocationsResponse>, Status> {
        let req = Request::new(pb::WatchRevocationsRequest { resume_token });
        let mut client = self.tokens.clone();
        self.call(client.watch_revocations(req)).await
    }

    /// `DirectoryService.LookupUser`.
    pub async fn lookup_user(&self, email: &str) -> Result<pb::DirectoryUser, Error> {
        let req = self.request(pb::LookupUserRequest { email: email.to_owned() });
        let mut client = self.directory.clone();
        let resp = self.call(client.lookup_user(req)).await.map_err(map_status)?;
        resp.user.ok_or_else(|| Error::Internal("LookupUser answered without a user".into()))
    }

    /// `DirectoryService.ReserveOrganization`, claiming a ready spare database on the chosen
    /// server when `claim_spare` (one of `preferred_spares` first; see `tenancy::spares`).
    pub async fn reserve_organization(
        &self,
        name: &str,
        creator: uuid::Uuid,
        candidate_servers: Vec<String>,
        claim_spare: bool,
        preferred_spares: Vec<String>,
    ) -> Result<pb::ReserveOrganizationResponse, Error> {
        let req = self.request(pb::ReserveOrganizationRequest {
            name: name.to_owned(),
            creator_user_id: creator.to_string(),
            candidate_servers,
            claim_spare_database: claim_spare,
            preferred_spare_database_names: preferred_spares,
        });
        let mut client = self.directory.clone();
        self.call(client.reserve_organization(req)).await.map_err(map_status)
    }

    /// `DirectoryService.RegisterSpareDatabase`: `database` on `server`, CREATING, made with
    /// `login_role` (if any).
    pub async fn register_spare_database(
        &self,
        server: &str,
        database: &str,
        login_role: Option<&str>,
    ) -> Result<(), Error> {
        let req = self.request(pb::RegisterSpareDatabaseRequest {
            server: server.to_owned(),
            database_name: database.to_owned(),
            login_role: login_role.unwrap_or_default().to_owned(),
        });
        let mut client = self.directory.clone();
        self.call(client.register_spare_database(req)).await.map_err(map_status)?;
        Ok(())
    }

    /// `DirectoryService.UpdateSpareDatabase`: moves an unclaimed spare from `from` to `to`.
    pub async fn update_spare_database(
        &self,
        database: &str,
        from: pb::SpareDatabaseState,
        to: pb::SpareDatabaseState,
    ) -> Result<(), Error> {
        let req = self.request(pb::UpdateSpareDatabaseRequest {
            database_name: database.to_owned(),
            expected_state: from as i32,
            state: to as i32,
        });
        let mut client = self.directory.clone();
        self.call(client.update_spare_database(req)).await.map_err(map_status)?;
        Ok(())
    }

    /// `DirectoryService.ListSpareDatabases` of one server.
    pub async fn list_spare_databases(
        &self,
        server: &str,
    ) -> Result<Vec<pb::SpareDatabase>, Error> {
        let req = self.request(pb::ListSpareDatabasesRequest { server: server.to_owned() });
        let mut client = self.directory.clone();
        let resp = self.call(client.list_spare_databases(req)).await.map_err(map_status)?;
        Ok(resp.spare_databases)
    }

    /// `DirectoryService.RemoveSpareDatabase` (idempotent).
    pub async fn remove_spare_database(&self, database: &str) -> Result<(), Error> {
        let req =
            self.request(pb::RemoveSpareDatabaseRequest { database_name: database.to_owned() });
        let mut client = self.directory.clone();
        self.call(client.remove_spare_database(req)).await.map_err(map_status)?;
        Ok(())
    }

    /// `DirectoryService.RecordAuditCheckpoint`: the latest sealed `(seq, hash)` of an
    /// organization's audit chain.
    pub async fn record_audit_checkpoint(
        &self,
        organization_id: uuid::Uuid,
        seq: i64,
        hash: &[u8],
    ) -> Result<(), Error> {
        let req = self.request(pb::RecordAuditCheckpointRequest {
            organization_id: organization_id.to_string(),
            seq,
            hash: hash.to_vec(),
        });
        let mut client = self.directory.clone();
        self.call(client.record_audit_checkpoint(req)).await.map_err(map_status)?;
        Ok(())
    }

    /// `DirectoryService.GetAuditCheckpoint`: `(seq, hash)`, `None` when none was recorded.
    pub async fn audit_checkpoint(
        &self,
        organization_id: uuid::Uuid,
    ) -> Result<Option<(i64, Vec<u8>)>, Error> {
        let req = self.request(pb::GetAuditCheckpointRequest {
            organization_id: organization_id.to_string(),
        });
        let mut client = self.directory.clone();
        let resp = self.call(client.get_audit_checkpoint(req)).await.map_err(map_status)?;
        Ok(resp.checkpoint.map(|c| (c.seq, c.hash)))
    }

    /// `DirectoryService.ActivateOrganization`.
    pub async fn activate_organization(&self, id: uuid::Uuid) -> Result<pb::Organization, Error> {
        let req = self.request(pb::ActivateOrganizationRequest { organization_id: id.to_string() });
        let mut client = self.directory.clone();
        let resp = self.call(client.activate_organization(req)).await.map_err(map_status)?;
        resp.organization.ok_or_else(|| Error::Internal("Activate answered without a row".into()))
    }

    /// `DirectoryService.GetOrganization`.
    pub async fn get_organization(&self, id: uuid::Uuid) -> Result<pb::Organization, Error> {
        let req = self.request(pb::GetOrganizationRequest { organization_id: id.to_string() });
        let mut client = self.directory.clone();
        let resp = self.call(client.get_organization(req)).await.map_err(map_status)?;
        resp.organization.ok_or_else(|| Error::Internal("GetOrganization without a row".into()))
    }

    /// `DirectoryService.ListOrganizations`: one page.
    pub async fn list_organizations(
        &self,
        page_size: i32,
        page_token: String,
    ) -> Result<pb::ListOrganizationsResponse, Error> {
        let req = self.request(pb::ListOrganizationsRequest { page_size, page_token });
        let mut client = self.directory.clone();
        self.call(client.list_organizations(req)).await.map_err(map_status)
    }

    /// `DirectoryService.RecordMembership` at the member's `version` (0: unversioned).
    pub async fn record_membership(
        &self,
        organization_id: uuid::Uuid,
        user_id: uuid::Uuid,
        role: pb::MembershipRole,
        version: i64,
    ) -> Result<(), Error> {
        let req = self.request(pb::RecordMembershipRequest {
            organization_id: organization_id.to_string(),
            user_id: user_id.to_string(),
            role: role as i32,
            version,
        });
        let mut client = self.directory.clone();
        self.call(client.record_membership(req)).await.map_err(map_status)?;
        Ok(())
    }

    /// `DirectoryService.RemoveMembership` at the member's `version`.
    pub async fn remove_membership(
        &self,
        organization_id: uuid::Uuid,
        user_id: uuid::Uuid,
        version: i64,
    ) -> Result<(), Error> {
        let req = self.request(pb::RemoveMembershipRequest {
            organization_id: organization_id.to_string(),
            user_id: user_id.to_string(),
            version,
        });
        let mut client = self.directory.clone();
        self.call(client.remove_membership(req)).await.map_err(map_status)?;
        Ok(())
    }

    /// `DirectoryService.ListUserMemberships`: one page of the user's memberships and pending
    /// invitations.
    pub async fn list_user_memberships(
        &self,
        user_id: uuid::Uuid,
        page_size: i32,
        page_token: String,
    ) -> Result<pb::ListUserMembershipsResponse, Error> {
        let req = self.request(pb::ListUserMembershipsRequest {
            user_id: user_id.to_string(),
            page_size,
            page_token,
            include_invitations: true,
        });
        let mut client = self.directory.clone();
        self.call(client.list_user_memberships(req)).await.map_err(map_status)
    }

    /// `DirectoryService.SendInvitation`: records the invitation centrally and has the person
    /// mailed (once per member `version`). The answer does not tell whether the email has an
    /// account.
    pub async fn send_invitation(
        &self,
        organization_id: uuid::Uuid,
        email: &str,
        role: pb::MembershipRole,
        expires_at: DateTime<Utc>,
        version: i64,
    ) -> Result<(), Error> {
        let req = self.request(pb::SendInvitationRequest {
            organization_id: organization_id.to_string(),
            email: email.to_owned(),
            role: role as i32,
            expire_time: Some(crate::grpc::timestamp(expires_at)),
            version,
        });
        let mut client = self.directory.clone();
        self.call(client.send_invitation(req)).await.map_err(map_status)?;
        Ok(())
    }

    /// `DirectoryService.RemoveInvitation` at the member's `version` (idempotent).
    pub async fn remove_invitation(
        &self,
        organization_id: uuid::Uuid,
        email: &str,
        version: i64,
    ) -> Result<(), Error> {
        let req = self.request(pb::RemoveInvitationRequest {
            organization_id: organization_id.to_string(),
            email: email.to_owned(),
            version,
        });
        let mut client = self.directory.clone();
        self.call(client.remove_invitation(req)).await.map_err(map_status)?;
        Ok(())
    }

    /// `DirectoryService.ListOrganizationMembers`: one page of what the central index records
    /// for an organization.
    pub async fn list_organization_members(
        &self,
        organization_id: uuid::Uuid,
        page_token: String,
    ) -> Result<pb::ListOrganizationMembersResponse, Error> {
        let req = self.request(pb::ListOrganizationMembersRequest {
            organization_id: organization_id.to_string(),
            page_size: 1000,
            page_token,
        });
        let mut client = self.directory.clone();
        self.call(client.list_organization_members(req)).await.map_err(map_status)
    }
}

/// Whether identity-service itself failed to answer (as opposed to answering "no").
pub fn is_outage(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    )
}

/// Whether identity-service refused this service's own credential: a misconfiguration
/// (`SERVICE_TOKEN` or the TLS client certificate), never the caller's fault. Logged as an error
/// naming the settings to check.
pub fn is_misconfigured(status: &Status) -> bool {
    let rejected = clinic_shared::auth::is_service_credential_rejected(status);
    if rejected {
        tracing::error!(
            "identity-service rejected this service's credential: SERVICE_TOKEN (or \
             TLS_CLIENT_CERT_FILE) does not match identity-service's SERVICE_TOKEN \
             (or INTERNAL_CLIENT_NAMES)"
        );
    }
    rejected
}

/// Request fields that clinic-service passes on from its own callers unchanged (same name in
/// both contracts). identity-service's verdict on one of them is the caller's mistake; on any
/// other field it is this service's bug.
const CALLER_FIELDS: &[&str] = &["email", "name"];

/// INVALID_ARGUMENT from identity-service, naming the fields its `BadRequest` details name.
fn invalid_argument(status: &Status) -> Error {
    use tonic_types::StatusExt;
    let violations: Vec<_> = status
        .get_details_bad_request()
        .map(|b| b.field_violations)
        .unwrap_or_default()
        .into_iter()
        .map(|v| clinic_shared::error::FieldViolation::new(v.field, v.description))
        .collect();
    if violations.is_empty() || violations.iter().any(|v| !CALLER_FIELDS.contains(&&*v.field)) {
        return Error::Internal(format!(
            "identity-service refused a request: {}",
            status.message()
        ));
    }
    Error::InvalidArgument(violations)
}

/// Maps an identity-service answer to this service's error.
pub fn map_status(status: Status) -> Error {
    if is_misconfigured(&status) {
        return Error::Unavailable {
            what: "identity-service",
            cause: "this service's credential was rejected (misconfiguration)".into(),
        };
    }
    match status.code() {
        Code::NotFound => Error::NotFound(status.message().to_owned()),
        Code::AlreadyExists => Error::AlreadyExists(status.message().to_owned()),
        Code::InvalidArgument => invalid_argument(&status),
        Code::PermissionDenied => Error::PermissionDenied(status.message().to_owned()),
        Code::FailedPrecondition => Error::FailedPrecondition(status.message().to_owned()),
        Code::ResourceExhausted => Error::Refused(Box::new(status)),
        _ if is_outage(&status) => Error::Unavailable {
            what: "identity-service",
            cause: format!("{:?}: {}", status.code(), status.message()),
        },
        code => {
            Error::Internal(format!("identity-service answered {code:?}: {}", status.message()))
        }
    }
}

#[cfg(test)]
mod tests {
    use clinic_shared::error::{FieldViolation, invalid_field};

    use super::*;

    #[test]
    fn identity_field_errors_name_the_callers_field() {
        let err = map_status(invalid_field("email", "not an email address"));
        assert!(
            matches!(&err, Error::InvalidArgument(v) if v == &[FieldViolation::new("email", "not an email address")]),
            "{err:?}"
        );
        // A field clinic-service filled in itself is its own bug, not the caller's mistake.
        let err = map_status(invalid_field("creator_user_id", "not a UUID"));
        assert!(matches!(err, Error::Internal(_)), "{err:?}");
        let err = map_status(Status::invalid_argument("no details"));
        assert!(matches!(err, Error::Internal(_)), "{err:?}");
    }

    #[test]
    fn a_rejected_service_credential_is_an_outage() {
        let mut check = clinic_shared::auth::RequireServiceCredential::new(
            Some("right".to_owned().into()),
            vec![],
        );
        let refused = tonic::service::Interceptor::call(&mut check, Request::new(())).unwrap_err();
        assert!(matches!(map_status(refused), Error::Unavailable { .. }));
        assert!(matches!(
            map_status(Status::unauthenticated("a user's token")),
            Error::Internal(_)
        ));
    }
}
