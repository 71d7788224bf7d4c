//! Status transitions through the service on a real tenant database.

use uuid::Uuid;

use super::{
    Tenant,
    domain_tables::{MAY, TRANSITIONS, Who},
    hours_ahead, trail,
};
use crate::appointments::{
    domain::{Action, Actor, AppointmentStatus},
    error::Error,
    requests::{AppointmentRef, Transition},
    service,
};
use crate::tenancy::Db;

fn request(id: Uuid, action: Action) -> Transition {
    let reason = if action.requires_reason() { "a reason".to_owned() } else { String::new() };
    Transition {
        target: AppointmentRef { organization_id: Uuid::nil(), appointment_id: id },
        action,
        reason,
    }
}

/// Every from -> to pair: allowed ones change the state and append history; every action that
/// would reach `to` from a state the table forbids is FAILED_PRECONDITION and changes nothing.
#[tokio::test]
async fn all_25_status_pairs() {
    let mut t = Tenant::new().await;
    let admin = t.admin().await;
    let doctor = t.doctor().await;
    let patient = t.patient().await;
    for (i, (from, to, allowed)) in TRANSITIONS.into_iter().enumerate() {
        let start = hours_ahead(1 + i as i64);
        let booked = t.book(&admin, patient.member_id, doctor.member_id, start, 30).await.unwrap();
        t.force_status(booked.id, from).await;
        let history_before = service::get(&t.client, &admin, booked.id).await.unwrap().1;
        let actions: Vec<Action> = Action::ALL.into_iter().filter(|a| a.target() == to).collect();
        if actions.is_empty() {
            assert_eq!(allowed, None, "{from:?} -> {to:?}: no action leads there");
        }
        for action in actions {
            let result = service::transition(
                &mut t.client,
                &admin,
                &request(booked.id, action),
                &mut trail(&admin),
            )
            .await;
            let (now, history) = service::get(&t.client, &admin, booked.id).await.unwrap();
            if allowed == Some(action) {
                let updated = result.unwrap_or_else(|e| panic!("{from:?} -> {to:?}: {e}"));
                assert_eq!((updated.status, now.status), (to, to), "{from:?} -> {to:?}");
                assert_eq!(history.len(), history_before.len() + 1);
                let last = history.last().unwrap();
                assert_eq!((last.from_status, last.to_status), (Some(from), to));
                assert_eq!(last.changed_by, Some(admin.member_id));
                let reason = if action.requires_reason() { "a reason" } else { "" };
                assert_eq!(last.reason, reason);
            } else {
                assert!(
                    matches!(result, Err(Error::InvalidTransition { .. })),
                    "{from:?} -> {to:?} via {action:?}: {result:?}"
                );
                assert_eq!(now.status, from, "{from:?} -> {to:?} changed the state");
                assert_eq!(history, history_before, "{from:?} -> {to:?} wrote history");
            }
        }
    }
}

/// Who may trigger each transition: the doctor matrix of `domain_tables`, on real rows.
/// Those who may not see the appointment get NOT_FOUND; those who see it but may not act get
/// PERMISSION_DENIED.
#[tokio::test]
async fn who_may_trigger_each_transition() {
    let mut t = Tenant::new().await;
    let admin = t.admin().await;
    let doctor = t.doctor().await;
    let patient = t.patient().await;
    let other_doctor = t.doctor().await;
    let other_patient = t.patient().await;
    let actor = |who: Who| -> Actor {
        match who {
            Who::Admin => admin,
            Who::TheDoctor => doctor,
            Who::AnotherDoctor => other_doctor,
            Who::ThePatient => patient,
            Who::AnotherPatient => other_patient,
        }
    };
    let mut hour = 0;
    for (who, may) in MAY {
        for (action, expected) in Action::ALL.into_iter().zip(may) {
            hour += 1;
            let a = t
                .book(&admin, patient.member_id, doctor.member_id, hours_ahead(hour), 30)
                .await
                .unwrap();
            if action == Action::Complete {
                t.force_status(a.id, AppointmentStatus::Approved).await;
            }
            let result = service::transition(
                &mut t.client,
                &actor(who),
                &request(a.id, action),
                &mut trail(&actor(who)),
            )
            .await;
            match (expected, who) {
                (true, _) => {
                    assert_eq!(result.unwrap().status, action.target(), "{who:?} {action:?}")
                }
                (false, Who::AnotherDoctor | Who::AnotherPatient) => {
                    assert!(
                        matches!(result, Err(Error::NotFound)),
                        "{who:?} {action:?}: {result:?}"
                    )
                }
                (false, _) => assert!(
                    matches!(result, Err(Error::PermissionDenied(_))),
                    "{who:?} {action:?}: {result:?}"
                ),
            }
        }
    }
}

/// Two concurrent approvals (or approve vs. decline) of one request: exactly one wins, the
/// other sees the new state and is FAILED_PRECONDITION; the history has one decision.
#[tokio::test]
async fn concurrent_decisions_cannot_both_succeed() {
    let mut t = Tenant::new().await;
    let admin = t.admin().await;
    let doctor = t.doctor().await;
    let patient = t.patient().await;
    for (first, second) in [(Action::Approve, Action::Approve), (Action::Approve, Action::Decline)]
    {
        let a =
            t.book(&admin, patient.member_id, doctor.member_id, hours_ahead(3), 30).await.unwrap();
        let (mut c1, mut c2) = (t.connect().await, t.connect().await);
        let (q1, q2) = (request(a.id, first), request(a.id, second));
        let (mut t1, mut t2) = (trail(&doctor), trail(&admin));
        let (r1, r2) = tokio::join!(
            service::transition(&mut c1, &doctor, &q1, &mut t1),
            service::transition(&mut c2, &admin, &q2, &mut t2),
        );
        let wins = [r1.is_ok(), r2.is_ok()].into_iter().filter(|ok| *ok).count();
        assert_eq!(wins, 1, "{first:?} vs {second:?}: {r1:?} {r2:?}");
        for r in [r1, r2].into_iter().filter_map(Result::err) {
            assert!(matches!(r, Error::InvalidTransition { .. }), "{r:?}");
        }
        let history = service::get(&t.client, &admin, a.id).await.unwrap().1;
        assert_eq!(history.len(), 2, "booking + one decision");
        // Free the slot for the next round.
        let cancel = request(a.id, Action::Cancel);
        let _ = service::transition(&mut t.client, &admin, &cancel, &mut trail(&admin)).await;
    }
}

/// Removing a member (as MemberService.RemoveMember does: delete the row) keeps the
/// appointment and its history readable, with the member's ids set to NULL.
#[tokio::test]
async fn removing_a_member_keeps_history_readable() {
    let mut t = Tenant::new().await;
    let admin = t.admin().await;
    let doctor = t.doctor().await;
    let patient = t.patient().await;
    let a =
        t.book(&patient, patient.member_id, doctor.member_id, hours_ahead(2), 30).await.unwrap();
    service::transition(
        &mut t.client,
        &doctor,
        &request(a.id, Action::Approve),
        &mut trail(&doctor),
    )
    .await
    .unwrap();
    t.client
        .execute("DELETE FROM organization_user WHERE id = $1", &[&doctor.member_id])
        .await
        .unwrap();
    let (after, history) = service::get(&t.client, &admin, a.id).await.unwrap();
    assert_eq!(after.parties.doctor_id, None);
    assert_eq!(after.parties.patient_id, Some(patient.member_id));
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].changed_by, Some(patient.member_id));
    assert_eq!(history[1].changed_by, None, "the removed doctor's id is gone");
    assert_eq!(history[1].to_status, AppointmentStatus::Approved);
    // The patient still sees it and may still cancel it.
    service::get(&t.client, &patient, a.id).await.unwrap();
    let cancelled = service::transition(
        &mut t.client,
        &patient,
        &request(a.id, Action::Cancel),
        &mut trail(&patient),
    )
    .await;
    assert_eq!(cancelled.unwrap().status, AppointmentStatus::Cancelled);
}
