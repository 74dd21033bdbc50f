//! Native TLS with rustls: PEM loading, the server config, and certificate reloading.
//!
//! - One crypto provider (`ring`) is passed explicitly to every builder, so nothing depends on a
//!   process-wide default and provider selection can never panic.
//! - TLS 1.2 and 1.3 only; ALPN offers `http/1.1` (WebSockets over HTTP/2 are not supported).
//! - The certificate is served through a resolver holding the current pair. [`Tls::reload`]
//!   reads both files, checks that the key matches the certificate, and swaps the pair; new
//!   handshakes get it, open connections are untouched. A broken pair is refused and the old
//!   one stays. `run` reloads on SIGHUP and when either file's modification time changes.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// Why a certificate/key pair could not be used. One line, naming the file.
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn pem_error(path: &Path, what: &str, e: rustls_pki_types::pem::Error) -> TlsError {
    let why = match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => format!("no {what} found"),
        other => format!("invalid PEM ({other:?})"),
    };
    TlsError(format!("cannot read {what} from {}: {why}", path.display()))
}

/// Reads and checks a certificate chain and its key.
pub fn load_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| pem_error(&files.cert, "certificate", e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(&files.cert, "certificate", e))?;
    if chain.is_empty() {
        return Err(TlsError(format!("cannot read certificate from {}: no certificate found", files.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem_error(&files.key, "private key", e))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError(format!("unusable private key in {}: {e}", files.key.display())))?;
    let pair = CertifiedKey::new(chain, signing_key);
    pair.keys_match().map_err(|_| {
        TlsError(format!("private key {} does not match certificate {}", files.key.display(), files.cert.display()))
    })?;
    Ok(pair)
}

/// Serves whichever pair is current.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

/// The TLS side of the server: an acceptor and the files it reloads from.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the pair and builds a TLS 1.2/1.3 server config with ALPN `http/1.1`.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = load_pair(files, &provider)?;
        let resolver = Arc::new(Resolver { current: RwLock::new(Arc::new(pair)) });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError(format!("TLS configuration: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), resolver, files: files.clone(), provider })
    }

    /// The acceptor for new connections.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Re-reads the files. On success new handshakes use the new pair; on failure the old pair
    /// stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.files, &self.provider)?;
        *self.resolver.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
        Ok(())
    }

    /// Modification times of the two files, to notice renewals.
    pub fn stamp(&self) -> Option<(SystemTime, SystemTime)> {
        let cert = std::fs::metadata(&self.files.cert).and_then(|m| m.modified()).ok()?;
        let key = std::fs::metadata(&self.files.key).and_then(|m| m.modified()).ok()?;
        Some((cert, key))
    }
}
