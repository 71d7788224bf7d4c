//! The `AuditService` handler: admins list their clinic's trail; the call is audited itself.

use clinic_api::clinic::v1::{self as pb, audit_service_server::AuditService};
use tonic::{Request, Response, Status};

use super::{
    Action, Audit, Kind, Trail,
    list::{self, ListAuditEvents, PAGE_KIND},
};
use crate::{auth::Claims, error::Error, roles::Role, tenancy::TenantAccess};

const LIST: Action =
    Action::new("clinic.v1.AuditService/ListAuditEvents", "audit_event", Kind::Read);

/// Serves `clinic.v1.AuditService`.
pub struct AuditHandler {
    access: TenantAccess,
    audit: Audit,
}

impl AuditHandler {
    /// Handlers over `access`, auditing through `audit`.
    pub fn new(access: TenantAccess, audit: Audit) -> Self {
        Self { access, audit }
    }
}

#[tonic::async_trait]
impl AuditService for AuditHandler {
    #[tracing::instrument(skip_all, fields(organization_id = tracing::field::Empty))]
    async fn list_audit_events(
        &self,
        mut request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, LIST);
        let req = ListAuditEvents::try_from(std::mem::take(request.get_mut()))?;
        let result = async {
            let limit = req.page_size + 1;
            let (cursor_time, cursor_id) =
                (req.after.map(|a| a.occurred_at), req.after.map(|a| a.id));
            let (caller, rows) = self
                .access
                .read_with(
                    &claims,
                    req.organization_id,
                    &list::LIST_FOR_CALLER,
                    &[
                        &req.actor,
                        &req.patient,
                        &req.action,
                        &req.outcome,
                        &req.from,
                        &req.to,
                        &cursor_time,
                        &cursor_id,
                        &limit,
                    ],
                )
                .await?;
            trail.enter(req.organization_id, &caller);
            // Reading the trail is reading about patients: always recorded.
            match req.patient {
                Some(patient) => trail.patient(patient),
                None => trail.reads_unnamed_patients(),
            }
            if caller.role != Role::Admin {
                return Err(Error::PermissionDenied("only admins read the audit trail".into()));
            }
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                if let Some(event) = list::event_at(row)? {
                    events.push(event);
                }
            }
            let next = if events.len() as i64 > req.page_size {
                events.truncate(req.page_size as usize);
                events.last().map(|(after, _)| *after)
            } else {
                None
            };
            Ok((events.into_iter().map(|(_, e)| e).collect(), next))
        }
        .await;
        let (events, next) = self.audit.close(trail, result)?;
        let next_page_token = clinic_shared::paging::next_page_token(PAGE_KIND, next.as_ref());
        Ok(Response::new(pb::ListAuditEventsResponse { events, next_page_token }))
    }
}
