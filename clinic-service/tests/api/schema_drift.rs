//! A tenant database whose schema disagrees with the code (a botched manual change, a half-rolled
//! migration): reading a row of an unexpected type is a bug answered as INTERNAL, never a panic
//! that drops the caller's connection.

use clinic_api::clinic::v1 as pb;
use tonic::Code;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_column_of_an_unexpected_type_answers_internal() {
    let app = spawn_app().await;
    let c = app.clinic("drift").await;
    let owner = app.tenant_client("main", &c.org.database_name).await;
    owner
        .batch_execute(
            "ALTER TABLE organization_user DROP COLUMN role CASCADE;
             ALTER TABLE organization_user ADD COLUMN role integer",
        )
        .await
        .expect("alter the schema");

    let request =
        pb::GetMemberRequest { organization_id: c.org.id.clone(), member_id: "me".into() };
    let status = app.members(&c.admin.token).get_member(request).await.expect_err("drifted");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(status.message(), "internal error");
}
