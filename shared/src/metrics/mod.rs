//! Prometheus metrics both services share: one [`Registry`] per running service (so two services
//! in one test process never mix their counts), the standard gRPC server series as a tower layer
//! ([`grpc`]), and the HTTP endpoint serving `/metrics` on `METRICS_ADDR` ([`endpoint`]).
//!
//! Label values come from fixed sets only: method names from the contract, gRPC code names,
//! outcome words chosen in code. Never a tenant, user, session or request id.

pub mod endpoint;
pub mod grpc;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::net::SocketAddr;

use prometheus::{Encoder, Registry, TextEncoder, core::Collector};

use crate::config::{self as env, ConfigError};

/// The environment variable of the metrics listener.
pub const METRICS_ADDR: &str = "METRICS_ADDR";

/// A metric that could not be registered or rendered (a programming error, found at start-up).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// `METRICS_ADDR`, default unset (no metrics listener). A bare port (`9100`) means
/// `127.0.0.1:9100`, loopback only; give an address (`0.0.0.0:9100`) to be scraped from
/// elsewhere.
pub fn addr_from_env() -> Result<Option<SocketAddr>, ConfigError> {
    env::var(METRICS_ADDR)
        .map(|raw| parse_addr(&raw).map_err(|m| ConfigError::new(METRICS_ADDR, m)))
        .transpose()
}

/// An address, or a bare port on loopback (see [`addr_from_env`]).
pub fn parse_addr(raw: &str) -> Result<SocketAddr, String> {
    let raw = raw.trim();
    if let Ok(port) = raw.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    raw.parse().map_err(|_| format!("expected a port or an address such as 0.0.0.0:9100: {raw:?}"))
}

/// Registers `metric` (a clone; the caller keeps updating its own handle) in `registry`.
pub fn register<M>(registry: &Registry, metric: &M) -> Result<(), MetricsError>
where
    M: Collector + Clone + 'static,
{
    Ok(registry.register(Box::new(metric.clone()))?)
}

/// Every series of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> Result<String, MetricsError> {
    let mut text = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut text)?;
    // The text encoder writes UTF-8 (names and label values are Rust strings).
    Ok(String::from_utf8_lossy(&text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_is_loopback_and_an_address_is_kept() {
        let cases = [
            ("9100", Ok("127.0.0.1:9100")),
            (" 0 ", Ok("127.0.0.1:0")),
            ("0.0.0.0:9100", Ok("0.0.0.0:9100")),
            ("[::1]:9100", Ok("[::1]:9100")),
            ("localhost:9100", Err(())),
            ("99999", Err(())),
        ];
        for (raw, expected) in cases {
            let parsed = parse_addr(raw).map(|a| a.to_string()).map_err(drop);
            assert_eq!(parsed, expected.map(str::to_owned), "{raw}");
        }
    }
}
