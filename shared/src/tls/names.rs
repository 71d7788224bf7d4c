//! The names in a client certificate, for accepting internal callers by certificate.
//!
//! Only listeners that require client certificates ([`super::ServerTls::with_client_ca`])
//! request them, and rustls hands them over only after verifying them against the CA, so names
//! read from a request's peer certificates are names the CA vouched for.

use rustls::pki_types::CertificateDer;
use x509_cert::{
    Certificate,
    der::{
        Any, Decode,
        asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef},
        oid::db::rfc4519::CN,
    },
    ext::pkix::{SubjectAltName, name::GeneralName},
};

use super::TlsError;

/// The DNS names (subject alternative names) and then the common name(s) of a DER
/// certificate, without duplicates.
pub fn cert_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, TlsError> {
    let cert = Certificate::from_der(cert.as_ref()).map_err(|_| TlsError::Certificate)?;
    let tbs = &cert.tbs_certificate;
    let mut names = Vec::new();
    if let Some((_, SubjectAltName(general))) =
        tbs.get::<SubjectAltName>().map_err(|_| TlsError::Certificate)?
    {
        for name in general {
            if let GeneralName::DnsName(dns) = name {
                names.push(dns.to_string());
            }
        }
    }
    let common_names = tbs.subject.0.iter().flat_map(|rdn| rdn.0.iter()).filter(|a| a.oid == CN);
    for value in common_names.filter_map(|a| text(&a.value)) {
        if !names.contains(&value) {
            names.push(value);
        }
    }
    Ok(names)
}

/// The names of the verified client certificate of `request` (see [`cert_names`]); empty when
/// the connection is not TLS, the listener does not require client certificates, or the
/// certificate cannot be parsed.
pub fn peer_names<T>(request: &tonic::Request<T>) -> Vec<String> {
    request
        .peer_certs()
        .and_then(|chain| chain.first().and_then(|leaf| cert_names(leaf).ok()))
        .unwrap_or_default()
}

/// A directory-string attribute value as text (the string types CAs use in practice).
fn text(value: &Any) -> Option<String> {
    if let Ok(s) = value.decode_as::<Utf8StringRef<'_>>() {
        return Some(s.as_str().to_owned());
    }
    if let Ok(s) = value.decode_as::<PrintableStringRef<'_>>() {
        return Some(s.as_str().to_owned());
    }
    value.decode_as::<Ia5StringRef<'_>>().ok().map(|s| s.as_str().to_owned())
}
