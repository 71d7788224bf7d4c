//! The server certificate, re-read from its PEM files when they change.
//!
//! Checked on the handshake path, at most once per interval: a check reads two small files and
//! compares their digest with the last one, so nothing runs in the background and nothing needs
//! stopping. A new pair is parsed and matched (key against certificate) before it replaces the
//! current one; a bad pair (half-written, mismatched) is logged and the current certificate
//! stays. Established connections never look at the resolver again, so a reload cannot drop them.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use rustls::{
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use sha2::{Digest, Sha256};

use super::{TlsError, parse_certs, parse_key, provider, read};

/// A [`ResolvesServerCert`] presenting the certificate chain and key of two PEM files.
pub(crate) struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    check_every: Duration,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

struct State {
    current: Arc<CertifiedKey>,
    /// Digest of the files as last read, whether they were loaded or refused.
    digest: [u8; 32],
    checked: Instant,
}

impl ReloadingCert {
    /// Loads the pair now (an error here is a start-up error) and checks the files again at
    /// most every `check_every` (zero: on every handshake).
    pub(crate) fn load(
        cert_path: &Path,
        key_path: &Path,
        check_every: Duration,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let (cert, key) = (read(cert_path)?, read(key_path)?);
        let current = certified_key(&provider, cert_path, &cert, key_path, &key)?;
        let state = State {
            current: Arc::new(current),
            digest: digest(&cert, &key),
            checked: Instant::now(),
        };
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            check_every,
            provider,
            state: Mutex::new(state),
        })
    }

    /// The certificate to present at `now`, after re-reading the files if it is time to.
    pub(crate) fn current(&self, now: Instant) -> Arc<CertifiedKey> {
        // A panic elsewhere cannot leave the state half-updated: each field is replaced whole.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(state.checked) >= self.check_every {
            state.checked = now;
            self.refresh(&mut state);
        }
        Arc::clone(&state.current)
    }

    fn refresh(&self, state: &mut State) {
        let files = read(&self.cert_path).and_then(|cert| Ok((cert, read(&self.key_path)?)));
        let (cert, key) = match files {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate reload failed, keeping the current one");
                return;
            }
        };
        let digest = digest(&cert, &key);
        if digest == state.digest {
            return;
        }
        state.digest = digest;
        match certified_key(&self.provider, &self.cert_path, &cert, &self.key_path, &key) {
            Ok(new) => {
                state.current = Arc::new(new);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate reload failed, keeping the current one");
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current(Instant::now()))
    }
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("check_every", &self.check_every)
            .finish_non_exhaustive()
    }
}

/// The chain and key of the PEM contents, refused unless the key matches the certificate.
fn certified_key(
    provider: &CryptoProvider,
    cert_path: &Path,
    cert: &[u8],
    key_path: &Path,
    key: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = parse_certs(cert_path, cert)?;
    let key = parse_key(key_path, key)?;
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|source| TlsError::KeyPair { path: key_path.to_owned(), source })
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    // Length-prefixed, so moving bytes from one file to the other changes the digest.
    hasher.update((cert.len() as u64).to_be_bytes());
    hasher.update(cert);
    hasher.update(key);
    hasher.finalize().into()
}
