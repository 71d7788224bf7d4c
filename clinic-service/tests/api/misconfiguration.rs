//! A misconfigured service credential is this service's fault, never its callers'.

use clinic_api::clinic::v1 as pb;
use tonic::Code;

use crate::helpers::{Options, captured_logs, spawn_with};

#[tokio::test]
async fn a_rejected_service_credential_is_unavailable_not_a_bad_user_token() {
    let app = spawn_with(Options {
        tweak: Box::new(|c| c.service_token = Some("not-identity's-token".to_owned().into())),
        ..Options::default()
    })
    .await;
    // A perfectly good user token (issued by identity-service's public listener).
    let user = app.user("misconfig").await;
    let err = app
        .orgs(&user.token)
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .expect_err("the token cannot be validated");
    // UNAUTHENTICATED would make the client throw away a valid session.
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        captured_logs().contains("identity-service rejected this service's credential"),
        "the misconfiguration is logged as such"
    );
}
