//! Native TLS with rustls: PEM loading, the server config, and certificate reloading.
//!
//! - One crypto provider (`ring`) is passed explicitly to every builder, so nothing depends on a
//!   process-wide default and provider selection can never panic.
//! - TLS 1.2 and 1.3 only; ALPN offers `http/1.1` (WebSockets over HTTP/2 are not supported).
//! - The certificate is served through a resolver holding the current pair. [`Tls::reload`]
//!   reads both files, checks that the key matches the certificate, and swaps the pair; new
//!   handshakes get it, open connections are untouched. A broken pair is refused and the old
//!   one stays. `run` reloads on SIGHUP and when either file's modification time changes.
//! - With ACME ([`crate::acme`]) there are no files: the ACME task [`Tls::install`]s each new
//!   pair, and until the first one arrives handshakes fail (there is nothing honest to serve).
//!   A ClientHello offering only ALPN `acme-tls/1` gets the TLS-ALPN-01 challenge certificate
//!   for its SNI name (RFC 8737 §3); the server then closes that connection without reading.

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

use crate::acme::Challenges;
use crate::config::TlsFiles;

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

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
    pair(chain, key, provider, &files.key.display().to_string(), &files.cert.display().to_string())
}

/// A chain and key held in memory as PEM (from the ACME server, or the ACME store).
pub fn pair_from_pem(chain: &str, key: &str, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let bad = |what: &str, e| TlsError(format!("the {what} from the ACME server is not valid PEM ({e:?})"));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", e))?;
    if chain.is_empty() {
        return Err(TlsError("the ACME server sent no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| bad("private key", e))?;
    pair(chain, key, provider, "the ACME key", "the ACME certificate")
}

fn pair(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
    key_name: &str,
    cert_name: &str,
) -> Result<CertifiedKey, TlsError> {
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError(format!("unusable private key in {key_name}: {e}")))?;
    let pair = CertifiedKey::new(chain, signing_key);
    pair.keys_match()
        .map_err(|_| TlsError(format!("private key {key_name} does not match certificate {cert_name}")))?;
    Ok(pair)
}

/// Serves whichever pair is current, or an ACME challenge certificate to a validator.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    challenges: Arc<Challenges>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validation = hello.alpn().is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if validation {
            return hello.server_name().and_then(|name| self.challenges.alpn_certificate(name));
        }
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The TLS side of the server: an acceptor, and the files it reloads from (none with ACME).
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    files: Option<TlsFiles>,
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
        let provider = provider();
        let pair = load_pair(files, &provider)?;
        Tls::build(Some(pair), Some(files.clone()), Arc::default(), provider)
    }

    /// A TLS side fed by ACME: `pair` is the stored certificate if there is one; `challenges`
    /// are answered to `acme-tls/1` validators.
    pub fn for_acme(pair: Option<CertifiedKey>, challenges: Arc<Challenges>) -> Result<Tls, TlsError> {
        Tls::build(pair, None, challenges, provider())
    }

    fn build(
        pair: Option<CertifiedKey>,
        files: Option<TlsFiles>,
        challenges: Arc<Challenges>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Tls, TlsError> {
        let resolver = Arc::new(Resolver { current: RwLock::new(pair.map(Arc::new)), challenges });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError(format!("TLS configuration: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if files.is_none() {
            // Server preference order: browsers get http/1.1; a validator offers only acme-tls/1.
            config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        }
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), resolver, files, provider })
    }

    /// The crypto provider, for building pairs to [`Tls::install`].
    pub fn crypto(&self) -> &CryptoProvider {
        &self.provider
    }

    /// Serves `pair` to new handshakes from now on; open connections keep theirs.
    pub fn install(&self, pair: CertifiedKey) {
        *self.resolver.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(pair));
    }

    /// The leaf certificate being served, DER, if any.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        let current = self.resolver.current.read().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().and_then(|pair| pair.cert.first().cloned())
    }

    /// The acceptor for new connections.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Re-reads the files. On success new handshakes use the new pair; on failure the old pair
    /// stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(files) = &self.files else {
            return Err(TlsError("the certificate comes from ACME, not from files: nothing to reload".into()));
        };
        self.install(load_pair(files, &self.provider)?);
        Ok(())
    }

    /// Modification times of the two files, to notice renewals.
    pub fn stamp(&self) -> Option<(SystemTime, SystemTime)> {
        let files = self.files.as_ref()?;
        let cert = std::fs::metadata(&files.cert).and_then(|m| m.modified()).ok()?;
        let key = std::fs::metadata(&files.key).and_then(|m| m.modified()).ok()?;
        Some((cert, key))
    }
}

/// The one crypto provider chatd uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
