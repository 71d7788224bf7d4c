//! `clinic-service audit export --org ID --since RFC3339`: a tenant's events from a time on,
//! oldest first, as FHIR R4 `AuditEvent` resources, one JSON object per line (archiving is an
//! export: the service deletes nothing). The export is recorded in the trail first, as an event
//! of the operator's tool (no user: nil id, no member).

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use clinic_shared::pg::RowExt;
use serde_json::{Value, json};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{
    error::Error,
    tenancy::{Db, OrgRecord, TenantAccess},
};

/// Events read per query.
const CHUNK: i64 = 1000;

const EXPORT_ACTION: &str = "clinic-service/audit export";

/// FHIR's action code of an RPC: C(reate), R(ead), U(pdate), D(elete) or E(xecute: searches,
/// streams and the rest).
fn fhir_action(rpc: &str) -> &'static str {
    let method = rpc.rsplit('/').next().unwrap_or(rpc);
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| method.starts_with(p));
    if starts(&["Create", "Add"]) {
        "C"
    } else if starts(&["Get"]) {
        "R"
    } else if starts(&["Update", "Approve", "Complete", "Cancel", "Accept"]) {
        "U"
    } else if starts(&["Remove", "Delete", "DeclineInvitation"]) {
        "D"
    } else if method == "DeclineAppointment" {
        "U"
    } else {
        "E"
    }
}

/// FHIR's outcome of a gRPC code: 0 success, 4 minor failure (the caller's: refusals, bad
/// input), 8 serious failure (the server's).
fn fhir_outcome(code: i16) -> &'static str {
    match code {
        0 => "0",
        3 | 5 | 6 | 7 | 9 | 11 | 16 => "4",
        _ => "8",
    }
}

/// The canonical name of a gRPC code (`PERMISSION_DENIED`).
fn code_name(code: i16) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

/// One stored event as a FHIR `AuditEvent`.
fn resource(organization_id: Uuid, row: &Row) -> Result<Value, Error> {
    let id: i64 = row.col("id")?;
    let at: DateTime<Utc> = row.col("occurred_at")?;
    let action: String = row.col("action")?;
    let outcome: i16 = row.col("outcome")?;
    let mut agent = json!({
        "who": { "identifier": { "system": "urn:clinic:user",
                                 "value": row.col::<Uuid>("user_id")?.to_string() } },
        "requestor": true,
    });
    if let Some(member) = row.col::<Option<Uuid>>("member_id")? {
        agent["altId"] = json!(member.to_string());
    }
    if let Some(role) = row.col::<Option<String>>("role")? {
        agent["type"] = json!({ "text": role });
    }
    if let Some(peer) = row.col::<Option<String>>("peer")? {
        agent["network"] = json!({ "address": peer, "type": "2" });
    }
    let resource_type: String = row.col("resource_type")?;
    let mut subject = json!({
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                  "code": "2", "display": "System Object" },
    });
    if let Some(resource_id) = row.col::<Option<Uuid>>("resource_id")? {
        subject["what"] = json!({ "identifier": {
            "system": format!("urn:clinic:{resource_type}"), "value": resource_id.to_string() } });
    }
    let mut details = vec![json!({ "type": "resource-type", "valueString": resource_type })];
    if let Some(request_id) = row.col::<Option<String>>("request_id")? {
        details.push(json!({ "type": "request-id", "valueString": request_id }));
    }
    if let Some(seq) = row.col::<Option<i64>>("seq")? {
        details.push(json!({ "type": "chain-seq", "valueString": seq.to_string() }));
    }
    subject["detail"] = Value::Array(details);
    let mut entities = vec![subject];
    for patient in row.col::<Vec<Uuid>>("patients")? {
        entities.push(json!({
            "what": { "identifier": { "system": "urn:clinic:member", "value": patient.to_string() } },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                      "code": "1", "display": "Person" },
            "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role",
                      "code": "1", "display": "Patient" },
        }));
    }
    Ok(json!({
        "resourceType": "AuditEvent",
        "id": format!("{id}"),
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                  "code": "rest", "display": "RESTful Operation" },
        "subtype": [{ "system": "urn:clinic:rpc", "code": action }],
        "action": fhir_action(&action),
        "recorded": at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "outcome": fhir_outcome(outcome),
        "outcomeDesc": code_name(outcome),
        "agent": [agent],
        "source": {
            "site": organization_id.to_string(),
            "observer": { "display": "clinic-service" },
            "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                       "code": "4", "display": "Application Server" }],
        },
        "entity": entities,
    }))
}

/// Writes `org`'s events at or after `since` to `out`, one `AuditEvent` per line; returns how
/// many. The export itself is recorded (and sealed like any event) before anything is read.
pub async fn export(
    access: &TenantAccess,
    org: &OrgRecord,
    since: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<usize, Error> {
    let conn = access.connect(&org.location).await?;
    let db = |context: &'static str| move |e: tokio_postgres::Error| Error::tenant_db(context, &e);
    conn.execute(
        "INSERT INTO audit_event (occurred_at, user_id, action, resource_type, outcome) \
         VALUES (now(), $1, $2, 'audit_event', 0)",
        &[&Uuid::nil(), &EXPORT_ACTION],
    )
    .await
    .map_err(db("record the export"))?;
    let sql = "SELECT e.id, e.occurred_at, e.user_id, e.member_id, e.role, e.action, \
               e.resource_type, e.resource_id, e.patients, e.outcome, e.request_id, e.peer, s.seq \
               FROM audit_event e LEFT JOIN audit_seal s ON s.event_id = e.id \
               WHERE e.occurred_at >= $1 AND (e.occurred_at, e.id) > ($2, $3) \
               ORDER BY e.occurred_at, e.id LIMIT $4";
    let (mut after_time, mut after_id) = (since, 0_i64);
    let mut written = 0;
    loop {
        let rows = conn
            .query(sql, &[&since, &after_time, &after_id, &CHUNK])
            .await
            .map_err(db("read events"))?;
        for row in &rows {
            let line = resource(org.id, row)?;
            writeln!(out, "{line}").map_err(|e| Error::internal("write the export", e))?;
            (after_time, after_id) = (row.col("occurred_at")?, row.col("id")?);
            written += 1;
        }
        if (rows.len() as i64) < CHUNK {
            out.flush().map_err(|e| Error::internal("write the export", e))?;
            return Ok(written);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpcs_map_to_fhir_actions_and_codes_to_outcomes() {
        for (rpc, action) in [
            ("clinic.v1.AppointmentService/CreateAppointment", "C"),
            ("clinic.v1.MemberService/AddMember", "C"),
            ("clinic.v1.MemberService/GetMember", "R"),
            ("clinic.v1.MemberService/ListMembers", "E"),
            ("clinic.v1.AppointmentService/WatchAppointments", "E"),
            ("clinic.v1.MemberService/UpdateMemberProfile", "U"),
            ("clinic.v1.AppointmentService/DeclineAppointment", "U"),
            ("clinic.v1.MemberService/DeclineInvitation", "D"),
            ("clinic.v1.MemberService/RemoveMember", "D"),
            ("clinic-service/audit export", "E"),
        ] {
            assert_eq!(fhir_action(rpc), action, "{rpc}");
        }
        assert_eq!((fhir_outcome(0), fhir_outcome(7), fhir_outcome(13)), ("0", "4", "8"));
        assert_eq!(
            (code_name(7), code_name(16), code_name(99)),
            ("PERMISSION_DENIED", "UNAUTHENTICATED", "UNKNOWN")
        );
    }
}
