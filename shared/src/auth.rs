//! Auth metadata: bearer tokens from callers, and the service credential that internal RPCs
//! (identity-service's `TokenService` and `DirectoryService`) require: a client certificate or
//! the shared token.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tonic::{Code, Request, Status, metadata::MetadataMap, service::Interceptor};
use tonic_types::{ErrorDetails, StatusExt};

/// Metadata key carrying the service credential between services.
pub const SERVICE_TOKEN_KEY: &str = "x-service-token";

/// `ErrorInfo.domain` of the errors this system's services raise.
pub const ERROR_DOMAIN: &str = "clinic.backend";

/// `ErrorInfo.reason` of an internal call refused for its *service* credential (missing or wrong
/// token, or a client certificate not allowed). The code stays `UNAUTHENTICATED`; the reason
/// tells a calling service that the fault is its own configuration, not its caller's token.
pub const SERVICE_CREDENTIAL_REJECTED: &str = "SERVICE_CREDENTIAL_REJECTED";

/// `UNAUTHENTICATED` for a rejected service credential, with the [`SERVICE_CREDENTIAL_REJECTED`]
/// reason.
fn credential_rejected(message: &str) -> Status {
    let details = ErrorDetails::with_error_info(
        SERVICE_CREDENTIAL_REJECTED,
        ERROR_DOMAIN,
        std::collections::HashMap::<String, String>::new(),
    );
    Status::with_error_details(Code::Unauthenticated, message, details)
}

/// Whether `status` refuses the calling service's own credential (see
/// [`SERVICE_CREDENTIAL_REJECTED`]) rather than anything its caller sent.
pub fn is_service_credential_rejected(status: &Status) -> bool {
    status.code() == Code::Unauthenticated
        && status.get_details_error_info().is_some_and(|info| {
            info.reason == SERVICE_CREDENTIAL_REJECTED && info.domain == ERROR_DOMAIN
        })
}

/// The bearer token of `authorization: Bearer <token>`, or `UNAUTHENTICATED`.
pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, Status> {
    parse_bearer(metadata.get("authorization").map(|v| v.to_str().map_err(drop)))
}

/// [`bearer_token`] from a request's HTTP headers (for tower layers, before tonic has made
/// metadata of them).
pub fn bearer_token_in_headers(headers: &tonic::codegen::http::HeaderMap) -> Result<&str, Status> {
    parse_bearer(headers.get("authorization").map(|v| v.to_str().map_err(drop)))
}

/// The token of an `authorization` value (`None`: absent; `Err`: not visible ASCII).
fn parse_bearer(value: Option<Result<&str, ()>>) -> Result<&str, Status> {
    let value = value.ok_or_else(|| Status::unauthenticated("missing authorization metadata"))?;
    let value = value.map_err(|()| Status::unauthenticated("malformed authorization metadata"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Status::unauthenticated("authorization must be `Bearer <token>`"));
    }
    Ok(token)
}

/// Server side: refuses requests without a service credential. Two are accepted: a verified
/// client certificate (mutual TLS) naming one of `allowed_names` (a DNS SAN, or the CN when the
/// certificate has no DNS SAN), or the shared token in `x-service-token`. Fails closed: with
/// neither configured, every request is refused.
#[derive(Clone)]
pub struct RequireServiceCredential {
    token: Option<SecretString>,
    allowed_names: Arc<[String]>,
}

impl RequireServiceCredential {
    /// Accepts `token` (if any) and client certificates naming one of `allowed_names`.
    pub fn new(token: Option<SecretString>, allowed_names: Vec<String>) -> Self {
        Self { token, allowed_names: allowed_names.into() }
    }
}

impl Interceptor for RequireServiceCredential {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if !self.allowed_names.is_empty()
            && crate::tls::peer_names(&request).iter().any(|n| self.allowed_names.contains(n))
        {
            return Ok(request);
        }
        let Some(expected) = &self.token else {
            return Err(credential_rejected(
                "internal API: no service credential presented (client certificate or token)",
            ));
        };
        let presented = request
            .metadata()
            .get(SERVICE_TOKEN_KEY)
            .map(|v| v.as_bytes())
            .ok_or_else(|| credential_rejected("missing service credential"))?;
        if bool::from(presented.ct_eq(expected.expose_secret().as_bytes())) {
            Ok(request)
        } else {
            Err(credential_rejected("invalid service credential"))
        }
    }
}

/// Client side: attaches the service credential to every request (nothing when the caller
/// authenticates with a client certificate instead).
#[derive(Clone)]
pub struct AttachServiceToken {
    value: Option<tonic::metadata::AsciiMetadataValue>,
}

impl AttachServiceToken {
    /// Attaches `token`; fails when it is not valid ASCII metadata.
    pub fn new(token: &SecretString) -> Result<Self, Status> {
        Self::optional(Some(token))
    }

    /// Attaches `token` when there is one.
    pub fn optional(token: Option<&SecretString>) -> Result<Self, Status> {
        let value = token
            .map(|t| t.expose_secret().parse())
            .transpose()
            .map_err(|_| Status::invalid_argument("service credential is not ASCII"))?;
        Ok(Self { value })
    }
}

impl Interceptor for AttachServiceToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.value {
            request.metadata_mut().insert(SERVICE_TOKEN_KEY, value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn bearer_token_accepts_only_the_bearer_scheme() {
        assert_eq!(bearer_token(&with_auth("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&with_auth("bearer abc")).unwrap(), "abc");
        assert!(bearer_token(&with_auth("Basic abc")).is_err());
        assert!(bearer_token(&with_auth("Bearer ")).is_err());
        assert!(bearer_token(&with_auth("abc")).is_err());
        assert!(bearer_token(&MetadataMap::new()).is_err());
    }

    #[test]
    fn service_token_is_required_and_compared() {
        let secret = SecretString::from("s3cret");
        let mut check = RequireServiceCredential::new(Some(secret.clone()), vec![]);
        assert!(check.call(Request::new(())).is_err());
        let mut attach = AttachServiceToken::new(&secret).unwrap();
        let req = attach.call(Request::new(())).unwrap();
        assert!(check.call(req).is_ok());
        let mut wrong = AttachServiceToken::new(&SecretString::from("nope")).unwrap();
        let refused = check.call(wrong.call(Request::new(())).unwrap()).unwrap_err();
        assert!(is_service_credential_rejected(&refused));
        let mut closed = RequireServiceCredential::new(None, vec!["clinic-service".into()]);
        let refused = closed.call(attach.call(Request::new(())).unwrap()).unwrap_err();
        assert!(is_service_credential_rejected(&refused));
        // A user's bad token is told apart.
        assert!(!is_service_credential_rejected(&Status::unauthenticated("expired token")));
    }
}
