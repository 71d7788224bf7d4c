//! Audit checkpoints (DirectoryService.RecordAuditCheckpoint / GetAuditCheckpoint): the latest
//! sealed position of a clinic's audit chain, kept centrally, only ever moving forward.

use clinic_api::identity::v1 as pb;
use tonic::Code;

use crate::{
    helpers::{assert_code, assert_invalid, spawn_app},
    organizations::reserve,
};

#[tokio::test]
async fn checkpoints_only_move_forward_and_never_contradict_themselves() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let org = reserve(&app, "Checkpointed", &ann, &["s1"]).await.unwrap().organization.unwrap();
    let mut directory = app.directory.clone();
    let record = |seq: i64, byte: u8| pb::RecordAuditCheckpointRequest {
        organization_id: org.id.clone(),
        seq,
        hash: vec![byte; 32],
    };
    let get = pb::GetAuditCheckpointRequest { organization_id: org.id.clone() };
    let none = directory.get_audit_checkpoint(get.clone()).await.unwrap().into_inner();
    assert_eq!(none.checkpoint, None);

    directory.record_audit_checkpoint(record(5, 1)).await.unwrap();
    directory.record_audit_checkpoint(record(5, 1)).await.expect("a repeat is OK");
    directory.record_audit_checkpoint(record(9, 2)).await.unwrap();
    for (seq, byte) in [(8, 2), (9, 3)] {
        let refused = directory.record_audit_checkpoint(record(seq, byte)).await;
        assert_code(refused, Code::FailedPrecondition);
    }
    let kept = directory.get_audit_checkpoint(get).await.unwrap().into_inner().checkpoint.unwrap();
    assert_eq!((kept.seq, kept.hash), (9, vec![2; 32]));

    assert_invalid(directory.record_audit_checkpoint(record(0, 1)).await, "seq");
    let short = pb::RecordAuditCheckpointRequest { hash: vec![1; 31], ..record(10, 1) };
    assert_invalid(directory.record_audit_checkpoint(short).await, "hash");
    let unknown = pb::RecordAuditCheckpointRequest {
        organization_id: uuid::Uuid::new_v4().to_string(),
        ..record(1, 1)
    };
    assert_code(directory.record_audit_checkpoint(unknown).await, Code::NotFound);
}
