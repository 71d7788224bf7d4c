//! Tokens verified locally and revocations followed: in steady state a clinic call costs no
//! identity-service call, a logout is refused within moments although verified tokens are
//! cached for 60 s, a revocation stream that is down makes every call ask identity-service
//! (and the stream resumes from its last token), and signing keys rotate without refusing
//! anyone until their retire time.

pub mod proxy;

use std::time::{Duration, Instant};

use clinic_api::{
    clinic::v1 as pb,
    identity::v1::{self as ipb, auth_service_client::AuthServiceClient},
};
use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
use tonic::{Code, Status, transport::Channel};

use crate::helpers::{Clinic, Options, TestApp, TestUser, sign_up, spawn_with};
use proxy::IdentityProxy;

/// Both services, clinic-service reaching identity-service through the proxy, with verified
/// tokens cached for 60 s (so no cache expiry can be what refuses a revoked one).
async fn spawn(
    identity_tweak: Box<dyn FnOnce(&mut identity_service::Config) + Send>,
) -> (TestApp, IdentityProxy) {
    let proxy = IdentityProxy::start().await;
    let addr = proxy.addr;
    let app = spawn_with(Options {
        tweak: Box::new(move |c| {
            c.identity_url = format!("http://{addr}");
            c.token_cache_ttl = Duration::from_secs(60);
        }),
        identity_tweak,
        ..Options::default()
    })
    .await;
    proxy.point_at(app.identity_internal_addr);
    (app, proxy)
}

async fn get_me(
    app: &TestApp,
    c: &Clinic,
    user: &TestUser,
) -> Result<pb::GetMemberResponse, Status> {
    let request =
        pb::GetMemberRequest { organization_id: c.org.id.clone(), member_id: "me".into() };
    app.members(&user.token).get_member(request).await.map(|r| r.into_inner())
}

/// Waits until calls as `user` succeed without asking identity-service (the revocation stream
/// has caught up).
async fn steady(app: &TestApp, proxy: &IdentityProxy, c: &Clinic, user: &TestUser) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = proxy.calls("ValidateToken");
        get_me(app, c, user).await.expect("a live token works");
        if proxy.calls("ValidateToken") == before {
            return;
        }
        assert!(Instant::now() < deadline, "clinic-service never verified tokens locally");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls calls as `user` until one is refused; returns its status.
async fn refused(app: &TestApp, c: &Clinic, user: &TestUser) -> Status {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Err(status) = get_me(app, c, user).await {
            return status;
        }
        assert!(Instant::now() < deadline, "the revoked token was still accepted after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn logout(identity: Channel, user: &TestUser) {
    let request = ipb::LogoutRequest { refresh_token: user.refresh_token.clone() };
    AuthServiceClient::new(identity).logout(request).await.expect("logout");
}

#[tokio::test]
async fn a_logout_is_refused_although_verified_tokens_are_cached_for_a_minute() {
    let (app, proxy) = spawn(Box::new(|_| {})).await;
    let c = app.clinic("logout").await;
    steady(&app, &proxy, &c, &c.patient).await;
    let validations = proxy.calls("ValidateToken");
    logout(app.identity_channel(), &c.patient).await;
    let status = refused(&app, &c, &c.patient).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(proxy.calls("ValidateToken"), validations, "refused from the stream, no lookup");
    // Everyone else carries on.
    get_me(&app, &c, &c.doctor).await.expect("another session is untouched");
}

#[tokio::test]
async fn in_steady_state_clinic_calls_make_no_identity_calls() {
    let (app, proxy) = spawn(Box::new(|_| {})).await;
    let c = app.clinic("steady").await;
    for user in [&c.admin, &c.doctor, &c.patient] {
        steady(&app, &proxy, &c, user).await;
    }
    let before = proxy.calls("");
    for _ in 0..30 {
        for user in [&c.admin, &c.doctor, &c.patient] {
            get_me(&app, &c, user).await.expect("get me");
        }
        let list =
            pb::ListMembersRequest { organization_id: c.org.id.clone(), ..Default::default() };
        app.members(&c.admin.token).list_members(list).await.expect("list");
    }
    assert_eq!(proxy.calls("") - before, 0, "120 clinic calls, no identity-service call");
}

#[tokio::test]
async fn with_the_stream_down_every_call_asks_identity_and_the_stream_resumes() {
    let (app, proxy) = spawn(Box::new(|_| {})).await;
    let c = app.clinic("down").await;
    steady(&app, &proxy, &c, &c.patient).await;
    let opened = proxy.resume_tokens().len();

    proxy.cut_streams(true);
    // Not in sync any more: each call is validated by identity-service (fail closed).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = proxy.calls("ValidateToken");
        get_me(&app, &c, &c.doctor).await.expect("identity-service still validates");
        if proxy.calls("ValidateToken") > before {
            break;
        }
        assert!(Instant::now() < deadline, "calls never fell back to ValidateToken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A logout while the stream is down is refused all the same.
    logout(app.identity_channel(), &c.patient).await;
    let status = refused(&app, &c, &c.patient).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    proxy.cut_streams(false);
    steady(&app, &proxy, &c, &c.doctor).await;
    let tokens = proxy.resume_tokens();
    assert!(tokens.len() > opened, "the stream was opened again: {tokens:?}");
    let last = tokens.last().expect("a resume token");
    assert!(!last.is_empty(), "resumed from its last token, not from the start: {tokens:?}");
    // The logout made meanwhile reached it through the resumed stream: refused locally.
    let validations = proxy.calls("ValidateToken");
    let status = get_me(&app, &c, &c.patient).await.expect_err("still revoked");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(proxy.calls("ValidateToken"), validations);
}

/// A fresh Ed25519 key in a PEM file of its own.
fn key_file(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, ed25519_dalek::SigningKey) {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes())
        .expect("write");
    (path, key)
}

/// A token with the claims identity-service signs, signed by `key` under `kid`.
fn forged(key: &ed25519_dalek::SigningKey, kid: &str, user: &TestUser) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": user.id, "sid": uuid::Uuid::new_v4(), "exp": now + 600, "iat": now,
        "iss": "clinic-identity", "jti": uuid::Uuid::new_v4(),
    });
    let der = key.to_pkcs8_der().expect("der");
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()))
        .expect("sign")
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).expect("header").kid.expect("kid")
}

#[tokio::test]
async fn keys_rotate_without_refusing_anyone_until_the_old_key_retires() {
    let dir = std::env::temp_dir().join(format!("keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (old_file, old_key) = key_file(&dir, "old");
    let (new_file, _) = key_file(&dir, "new");
    let first = old_file.clone();
    let (app, proxy) = spawn(Box::new(move |c| c.jwt_private_key_file = Some(first))).await;
    let c = app.clinic("rotate").await;
    steady(&app, &proxy, &c, &c.admin).await;
    let old_kid = kid_of(&c.admin.token);

    // The new key signs, the old one verifies for a few more seconds (in production: one token
    // lifetime). identity-service restarts with them; clinic-service keeps running.
    let retire = chrono::Utc::now() + chrono::Duration::seconds(8);
    let mut config = identity_service::Config::for_tests(app.central_config());
    config.jwt_private_key_file = Some(new_file);
    config.jwt_verify_keys = vec![identity_service::tokens::keyring::VerifyKeyFile {
        path: old_file,
        until: Some(retire),
    }];
    let second = identity_service::Application::build(config).await.expect("identity-service");
    let (public, internal, stop) =
        (second.address(), second.internal_address(), second.shutdown_handle());
    tokio::spawn(second.run_until_stopped());
    app.stop_identity();
    proxy.point_at(internal);

    // A token of the new key: its kid is unknown to clinic-service, which fetches the keys again.
    let identity = Channel::from_shared(format!("http://{public}")).expect("url").connect_lazy();
    let newcomer = sign_up(identity, "newcomer", true).await;
    assert_ne!(kid_of(&newcomer.token), old_kid);
    let fetched = proxy.calls("ListSigningKeys");
    app.orgs(&newcomer.token)
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .expect("a token of the new key is accepted");
    assert!(proxy.calls("ListSigningKeys") > fetched, "the unknown kid made it fetch the keys");
    // Tokens of the old key keep working until it retires ...
    get_me(&app, &c, &c.admin).await.expect("a token of the old key still works");
    // ... and not after.
    let status = refused(&app, &c, &c.admin).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(chrono::Utc::now() >= retire, "refused only once the old key retired");

    // Keys nobody listed verify nothing, whatever kid they claim.
    let (_, stranger) = key_file(&dir, "stranger");
    for kid in [old_kid.as_str(), kid_of(&newcomer.token).as_str(), "made-up"] {
        let token = forged(&stranger, kid, &newcomer);
        let status = app
            .orgs(&token)
            .list_organizations(pb::ListOrganizationsRequest::default())
            .await
            .expect_err("a forged token");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let _ = old_key;
    stop.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
