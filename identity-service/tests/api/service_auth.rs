use clinic_api::identity::v1::{
    self as pb, directory_service_client::DirectoryServiceClient,
    token_service_client::TokenServiceClient,
};
use clinic_shared::auth::{AttachServiceToken, is_service_credential_rejected};
use secrecy::SecretString;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{assert_code, spawn_app, spawn_app_with};

#[tokio::test]
async fn internal_services_refuse_missing_or_wrong_credentials() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let validate = pb::ValidateTokenRequest { access_token: s.tokens.access_token.clone() };
    let lookup = pb::LookupUserRequest { email: s.user.email.clone() };

    let mut tokens = TokenServiceClient::new(app.internal.clone());
    assert_code(tokens.validate_token(validate.clone()).await, Code::Unauthenticated);
    let mut directory = DirectoryServiceClient::new(app.internal.clone());
    assert_code(directory.lookup_user(lookup.clone()).await, Code::Unauthenticated);

    let wrong = AttachServiceToken::new(&SecretString::from("wrong-token")).unwrap();
    let mut tokens = TokenServiceClient::with_interceptor(app.internal.clone(), wrong.clone());
    let refused = tokens.validate_token(validate.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    // The documented code stays; the reason tells the calling service it is misconfigured.
    assert!(is_service_credential_rejected(&refused), "{refused:?}");
    // A bad user token with the right credential is told apart.
    let bad_user = pb::ValidateTokenRequest { access_token: "not-a-token".into() };
    let refused = app.tokens.clone().validate_token(bad_user).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(!is_service_credential_rejected(&refused), "{refused:?}");
    let mut directory = DirectoryServiceClient::with_interceptor(app.internal.clone(), wrong);
    assert_code(directory.lookup_user(lookup.clone()).await, Code::Unauthenticated);

    assert!(app.tokens.clone().validate_token(validate).await.is_ok());
    assert!(app.directory.clone().lookup_user(lookup).await.is_ok());
}

#[tokio::test]
async fn invitation_rpcs_need_the_service_credential_and_the_internal_listener() {
    let app = spawn_app().await;
    let send = pb::SendInvitationRequest {
        organization_id: uuid::Uuid::new_v4().to_string(),
        email: "bob@example.com".into(),
        role: pb::MembershipRole::Patient.into(),
        expire_time: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 3600,
            nanos: 0,
        }),
        version: 0,
    };
    let remove = pb::RemoveInvitationRequest {
        organization_id: send.organization_id.clone(),
        email: send.email.clone(),
        version: 0,
    };
    let wrong = AttachServiceToken::new(&SecretString::from("wrong-token")).unwrap();
    let mut anonymous = DirectoryServiceClient::new(app.internal.clone());
    let mut impostor = DirectoryServiceClient::with_interceptor(app.internal.clone(), wrong);
    assert_code(anonymous.send_invitation(send.clone()).await, Code::Unauthenticated);
    assert_code(anonymous.remove_invitation(remove.clone()).await, Code::Unauthenticated);
    assert_code(impostor.send_invitation(send.clone()).await, Code::Unauthenticated);
    assert_code(impostor.remove_invitation(remove.clone()).await, Code::Unauthenticated);
    let right = AttachServiceToken::new(&SecretString::from("test-service-token")).unwrap();
    let mut public = DirectoryServiceClient::with_interceptor(app.channel.clone(), right);
    assert_code(public.send_invitation(send.clone()).await, Code::Unimplemented);
    // With the credential, on the internal listener: answered (the organization is unknown).
    assert_code(app.directory.clone().send_invitation(send).await, Code::NotFound);
    app.directory.clone().remove_invitation(remove).await.expect("idempotent");
    assert_eq!(app.count("organization_invitation").await, 0);
}

#[tokio::test]
async fn internal_services_are_not_served_on_the_public_listener() {
    let app = spawn_app().await;
    let s = app.logged_in("ann").await;
    let right = AttachServiceToken::new(&SecretString::from("test-service-token")).unwrap();
    let validate = pb::ValidateTokenRequest { access_token: s.tokens.access_token.clone() };
    let mut tokens = TokenServiceClient::with_interceptor(app.channel.clone(), right.clone());
    assert_code(tokens.validate_token(validate).await, Code::Unimplemented);
    let mut directory = DirectoryServiceClient::with_interceptor(app.channel.clone(), right);
    let list = pb::ListOrganizationsRequest::default();
    assert_code(directory.list_organizations(list).await, Code::Unimplemented);
}

#[tokio::test]
async fn without_a_configured_credential_internal_services_are_closed() {
    let app = spawn_app_with(|c| c.service_token = None).await;
    let request = pb::ValidateTokenRequest { access_token: "x".into() };
    assert_code(app.tokens.clone().validate_token(request).await, Code::Unauthenticated);
}

#[tokio::test]
async fn health_and_reflection_are_open() {
    let app = spawn_app().await;
    let listeners = [
        (app.channel.clone(), &["", "identity.v1.AuthService"][..]),
        (app.internal.clone(), &["", "identity.v1.TokenService", "identity.v1.DirectoryService"]),
    ];
    for (channel, services) in listeners {
        let mut health = HealthClient::new(channel);
        for service in services {
            let r = health.check(HealthCheckRequest { service: (*service).into() }).await.unwrap();
            assert_eq!(r.into_inner().status(), ServingStatus::Serving, "{service}");
        }
    }

    use tonic_reflection::pb::{v1, v1alpha};
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream =
        client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"identity.v1.AuthService"), "{names:?}");

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream =
        client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some());
}
