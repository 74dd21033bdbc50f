//! Automatic certificates with ACME (RFC 8555), e.g. from Let's Encrypt.
//!
//! ```text
//! start ─▶ load the stored certificate (if any) ─▶ serve it
//!   └─▶ task: wait until 2/3 of its lifetime ─▶ order ─▶ answer the challenge ─▶ finalize
//!             ▲                                   TLS-ALPN-01 on the TLS port (RFC 8737)
//!             │                                   or HTTP-01 on the --http-redirect port
//!             └── store (0600), install (new handshakes only), schedule the next renewal
//!                 on failure: log what to check, keep serving, retry with backoff
//! ```
//!
//! The ACME protocol itself (accounts, JWS, orders, polling) is `instant-acme`'s: it is small,
//! async on tokio, maintained, and leaves the policy to us — where files go and with which
//! permissions, when to renew, which challenge to answer and how — which is what this module is.
//! (`rustls-acme` bundles its own storage layout and renewal policy; we need ours.)
//!
//! Storage: `DATA_DIR/acme/<directory>/{account.json, certificate.pem, key.pem}`, directories
//! 0700 and files 0600, written to a temporary file and renamed, so a crash never leaves half a
//! key. One subdirectory per ACME directory URL, so a staging account never meets production.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::tls::{self, Tls};

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory: untrusted certificates, generous rate limits. Use it first.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The first wait after a failed order; it doubles up to [`MAX_RETRY`]. Let's Encrypt allows 5
/// failed validations per hour per hostname, so a minute, then two, four... stays under it.
pub const FIRST_RETRY: Duration = Duration::from_secs(60);
/// The longest wait between failed orders.
pub const MAX_RETRY: Duration = Duration::from_secs(6 * 3600);
/// How long one order may take from creation to certificate before it counts as failed.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// How chatd proves control of the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// TLS-ALPN-01 (RFC 8737) on the TLS port itself: needs nothing else, port 443 must be
    /// reachable. The default.
    TlsAlpn01,
    /// HTTP-01 (RFC 8555 §8.3) on the `--http-redirect` listener, which must be port 80.
    Http01,
}

impl Challenge {
    fn kind(self) -> ChallengeType {
        match self {
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            Challenge::Http01 => ChallengeType::Http01,
        }
    }

    fn port_hint(self) -> &'static str {
        match self {
            Challenge::TlsAlpn01 => "port 443 (tls-alpn-01) is reachable from the internet and forwarded to chatd",
            Challenge::Http01 => "port 80 (http-01) is reachable from the internet and reaches chatd's --http-redirect",
        }
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Challenge::TlsAlpn01 => "tls-alpn-01",
            Challenge::Http01 => "http-01",
        })
    }
}

/// ACME settings (`--domain` and friends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeConfig {
    /// Names on the certificate; the first is the main one. At least one.
    pub domains: Vec<String>,
    /// Contact address for the account (expiry warnings, policy changes). Optional.
    pub email: Option<String>,
    /// The ACME directory URL. Default [`LETS_ENCRYPT`].
    pub directory: String,
    /// Where the account and certificates are kept.
    pub data_dir: PathBuf,
    /// A PEM root certificate to trust for the ACME server's own HTTPS (a private or test CA,
    /// e.g. Pebble). Default: the system's roots.
    pub ca_root: Option<PathBuf>,
    /// The challenge to answer. Default TLS-ALPN-01.
    pub challenge: Challenge,
}

/// A name HTTP-01 and TLS-ALPN-01 can validate: letters, digits, hyphens and dots, at least two
/// labels (RFC 1035 §2.3.1 sizes). Wildcards need DNS-01, which chatd does not do.
pub fn valid_domain(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && name.parse::<std::net::IpAddr>().is_err()
}

/// Challenge answers currently on offer, shared with the TLS resolver and the HTTP listener.
#[derive(Debug, Default)]
pub struct Challenges {
    http: Mutex<HashMap<String, String>>,
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// The key authorization for an HTTP-01 token, if one is on offer.
    pub fn http_response(&self, token: &str) -> Option<String> {
        self.http.lock().unwrap_or_else(PoisonError::into_inner).get(token).cloned()
    }

    /// The TLS-ALPN-01 certificate for `name`, if one is on offer.
    pub fn alpn_certificate(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn.lock().unwrap_or_else(PoisonError::into_inner).get(&name.to_ascii_lowercase()).cloned()
    }
}

/// Removes the answers of one order when it ends, however it ends.
struct Offered<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Drop for Offered<'_> {
    fn drop(&mut self) {
        let mut http = self.challenges.http.lock().unwrap_or_else(PoisonError::into_inner);
        self.tokens.iter().for_each(|t| drop(http.remove(t)));
        let mut alpn = self.challenges.alpn.lock().unwrap_or_else(PoisonError::into_inner);
        self.names.iter().for_each(|n| drop(alpn.remove(n)));
    }
}

/// Why an ACME step failed: one line, and what the operator should look at.
#[derive(Debug)]
pub struct AcmeError {
    text: String,
    cause: Cause,
}

/// Whose side a failure is on; decides the advice in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// This machine: the data directory, key generation.
    Local,
    /// Reaching the ACME server: network, DNS, the server's certificate.
    Unreachable,
    /// The CA answered with an error other than a rate limit.
    Refused,
    /// The CA's rate limit.
    RateLimited,
    /// The CA could not validate the challenge: DNS records, ports.
    Validation,
}

impl AcmeError {
    fn local(text: impl Into<String>) -> AcmeError {
        AcmeError { text: text.into(), cause: Cause::Local }
    }

    /// Whose side the failure is on.
    pub fn cause(&self) -> Cause {
        self.cause
    }

    /// What to check, in plain words.
    pub fn advice(&self, config: &AcmeConfig) -> String {
        match self.cause {
            Cause::Local => format!("check that {} is writable by chatd's user", config.data_dir.display()),
            Cause::Unreachable => format!(
                "check that this machine can reach {} (outbound HTTPS, DNS), and for a private CA pass its root \
                 with --acme-ca-root",
                config.directory
            ),
            Cause::Refused => "read the CA's message above; the order was refused, not the challenge".into(),
            Cause::RateLimited => format!(
                "wait for the limit to pass (the message says until when); test against \
                 --acme-directory {LETS_ENCRYPT_STAGING} first"
            ),
            Cause::Validation => hints(config),
        }
    }
}

impl fmt::Display for AcmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for AcmeError {}

impl From<instant_acme::Error> for AcmeError {
    fn from(e: instant_acme::Error) -> Self {
        // Problem types: RFC 8555 §6.7 (urn:ietf:params:acme:error:...).
        const VALIDATION: [&str; 6] = ["unauthorized", "connection", "dns", "tls", "incorrectResponse", "caa"];
        let cause = match &e {
            instant_acme::Error::Api(problem) => match problem.r#type.as_deref().and_then(|t| t.rsplit(':').next()) {
                Some("rateLimited") => Cause::RateLimited,
                Some(kind) if VALIDATION.contains(&kind) => Cause::Validation,
                _ => Cause::Refused,
            },
            instant_acme::Error::Crypto | instant_acme::Error::KeyRejected => Cause::Local,
            _ => Cause::Unreachable,
        };
        // The interesting part (connection refused, certificate unknown) is in the sources.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            let more = inner.to_string();
            if !text.contains(&more) {
                text = format!("{text}: {more}");
            }
            source = inner.source();
        }
        AcmeError { text, cause }
    }
}

// ---- storage --------------------------------------------------------------------------------

/// The account and certificate files for one ACME directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Creates (0700) or opens `DATA_DIR/acme/<directory>/` and checks it is writable.
    pub fn open(data_dir: &Path, directory: &str) -> Result<Store, AcmeError> {
        let dir = Store::path(data_dir, directory);
        private_dir(data_dir)?;
        private_dir(&data_dir.join("acme"))?;
        private_dir(&dir)?;
        let store = Store { dir };
        let probe = store.dir.join(".write-test");
        write_private(&probe, b"").map_err(|e| store.error("is not writable", &e))?;
        let _ = std::fs::remove_file(probe);
        Ok(store)
    }

    /// Where the files for `directory` live under `data_dir` (nothing is created).
    pub fn path(data_dir: &Path, directory: &str) -> PathBuf {
        let slug: String = directory
            .split_once("://")
            .map_or(directory, |(_, rest)| rest)
            .trim_end_matches('/')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
            .collect();
        data_dir.join("acme").join(slug)
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn error(&self, what: &str, e: &dyn fmt::Display) -> AcmeError {
        AcmeError::local(format!("ACME data directory {} {what}: {e}", self.dir.display()))
    }

    fn account(&self) -> Result<Option<AccountCredentials>, AcmeError> {
        let path = self.dir.join("account.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                AcmeError::local(format!("{} is damaged ({e}); move it away to register a new account", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AcmeError::local(format!("cannot read {}: {e}", path.display()))),
        }
    }

    fn save_account(&self, credentials: &AccountCredentials) -> Result<(), AcmeError> {
        let json = serde_json::to_vec_pretty(credentials).map_err(|e| AcmeError::local(e.to_string()))?;
        write_private(&self.dir.join("account.json"), &json).map_err(|e| self.error("account.json", &e))
    }

    /// The stored certificate chain and key, PEM, if both exist.
    pub fn certificate(&self) -> Result<Option<(String, String)>, AcmeError> {
        let read = |name: &str| match std::fs::read_to_string(self.dir.join(name)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AcmeError::local(format!("cannot read {}: {e}", self.dir.join(name).display()))),
        };
        Ok(read("certificate.pem")?.zip(read("key.pem")?))
    }

    fn save_certificate(&self, chain: &str, key: &str) -> Result<(), AcmeError> {
        // Key first: a certificate without its key is useless, a key without a certificate is
        // simply replaced by the next order.
        write_private(&self.dir.join("key.pem"), key.as_bytes()).map_err(|e| self.error("key.pem", &e))?;
        write_private(&self.dir.join("certificate.pem"), chain.as_bytes())
            .map_err(|e| self.error("certificate.pem", &e))
    }
}

/// Creates `dir` with mode 0700, or tightens an existing one to 0700.
pub(crate) fn private_dir(dir: &Path) -> Result<(), AcmeError> {
    let fail = |e: std::io::Error| AcmeError::local(format!("cannot create the data directory {}: {e}", dir.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(e)),
        }
        let mode = std::fs::metadata(dir).map_err(fail)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
            info!("tightened {} from {:o} to 0700 (it holds private keys)", dir.display(), mode & 0o777);
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(fail)
    }
}

/// Writes `bytes` to `path` with mode 0600 through a temporary file and a rename.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

// ---- start-up and the renewal task ------------------------------------------------------------

/// Opens the store and builds the TLS side with the stored certificate, if it is usable.
pub fn prepare(config: &AcmeConfig, challenges: Arc<Challenges>) -> Result<(Store, Tls), AcmeError> {
    let store = Store::open(&config.data_dir, &config.directory)?;
    let tls = Tls::for_acme(None, challenges).map_err(|e| AcmeError::local(e.to_string()))?;
    if let Some((chain, key)) = store.certificate()? {
        match tls::pair_from_pem(&chain, &key, tls.crypto()) {
            Ok(pair) => tls.install(pair),
            Err(e) => warn!("ignoring the stored certificate in {} ({e}); ordering a new one", store.dir().display()),
        }
    }
    Ok((store, tls))
}

/// When a certificate valid from `not_before` to `not_after` is renewed: at two thirds of its
/// lifetime (day 60 of 90, day 4 of 6), so shrinking lifetimes shrink the schedule with them.
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or(Duration::ZERO);
    not_before + lifetime * 2 / 3
}

/// When the certificate being served should be replaced: now if there is none or it does not
/// cover every domain.
fn due(tls: &Tls, domains: &[String]) -> SystemTime {
    let Some(leaf) = tls.leaf() else { return SystemTime::UNIX_EPOCH };
    let names = crate::x509::dns_names(&leaf);
    if !domains.iter().all(|d| names.iter().any(|n| n.eq_ignore_ascii_case(d))) {
        return SystemTime::UNIX_EPOCH;
    }
    crate::x509::validity(&leaf).map_or(SystemTime::UNIX_EPOCH, |(from, until)| renewal_time(from, until))
}

/// What an operator should check after a failed order.
pub fn hints(config: &AcmeConfig) -> String {
    let domains = config.domains.join(", ");
    format!(
        "check that the A/AAAA records of {domains} point at this machine (a stale AAAA record is the \
         usual cause; `chatd doctor --domain {}` compares them), that {}, and that no rate limit was \
         hit (test with --acme-directory {LETS_ENCRYPT_STAGING})",
        config.domains.first().map_or("DOMAIN", String::as_str),
        config.challenge.port_hint(),
    )
}

/// Keeps a valid certificate installed in `tls` until `stopped` changes.
pub async fn maintain(
    config: AcmeConfig,
    store: Store,
    tls: Tls,
    challenges: Arc<Challenges>,
    metrics: Arc<crate::metrics::Metrics>,
    stopped: watch::Receiver<bool>,
) {
    let mut order = AcmeOrder { config: &config, store: &store, challenges: &challenges, tls: &tls, account: None };
    keep_renewed(&config, &tls, &metrics, stopped, &mut order).await;
}

/// One attempt at a certificate, as the renewal loop sees it.
trait Order {
    /// Obtains a certificate for the configured domains and stores it.
    async fn run(&mut self) -> Result<CertifiedKey, AcmeError>;
}

/// The real attempt: ACME, with the account opened (or registered) once and then reused.
struct AcmeOrder<'a> {
    config: &'a AcmeConfig,
    store: &'a Store,
    challenges: &'a Challenges,
    tls: &'a Tls,
    account: Option<Account>,
}

impl Order for AcmeOrder<'_> {
    async fn run(&mut self) -> Result<CertifiedKey, AcmeError> {
        if self.account.is_none() {
            self.account = Some(open_account(self.config, self.store).await?);
        }
        let Some(account) = &self.account else { return Err(AcmeError::local("no ACME account")) };
        let (pair, chain, key) = obtain(self.config, account, self.challenges, self.tls.crypto()).await?;
        self.store.save_certificate(&chain, &key)?;
        Ok(pair)
    }
}

/// The renewal policy: order when the installed certificate is due ([`renewal_time`], or at
/// once without one), install what comes back; after a failure keep serving and wait
/// [`FIRST_RETRY`], doubling up to [`MAX_RETRY`], back to the first wait after a success.
async fn keep_renewed(
    config: &AcmeConfig,
    tls: &Tls,
    metrics: &crate::metrics::Metrics,
    mut stopped: watch::Receiver<bool>,
    order: &mut impl Order,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut retry = FIRST_RETRY;
    loop {
        // Sleep in steps of at most an hour: suspend and clock changes then cost at most that.
        let wait = due(tls, &config.domains).duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            tokio::select! {
                _ = stopped.changed() => return,
                () = tokio::time::sleep(wait.min(Duration::from_secs(3600))) => continue,
            }
        }
        let result = tokio::select! {
            _ = stopped.changed() => return,
            result = order.run() => result,
        };
        match result {
            Ok(pair) => {
                let until = pair.cert.first().and_then(|leaf| crate::x509::validity(leaf));
                tls.install(pair);
                metrics.tls_reloads.fetch_add(1, Relaxed);
                retry = FIRST_RETRY;
                match until {
                    Some((from, until)) => info!(
                        "certificate for {} installed, valid for {} s, renewal in {} s",
                        config.domains.join(", "),
                        until.duration_since(SystemTime::now()).unwrap_or_default().as_secs(),
                        renewal_time(from, until).duration_since(SystemTime::now()).unwrap_or_default().as_secs(),
                    ),
                    None => info!("certificate for {} installed", config.domains.join(", ")),
                }
            }
            Err(e) => {
                metrics.tls_reload_failures.fetch_add(1, Relaxed);
                let serving = if tls.leaf().is_some() { "the current certificate" } else { "no certificate yet" };
                warn!(
                    "ACME order for {} at {} failed: {e}. To fix: {}. Retrying in {} s; serving {serving} meanwhile",
                    config.domains.join(", "),
                    config.directory,
                    e.advice(config),
                    retry.as_secs()
                );
                tokio::select! {
                    _ = stopped.changed() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

/// Restores the stored account, or registers one and stores it.
async fn open_account(config: &AcmeConfig, store: &Store) -> Result<Account, AcmeError> {
    // instant-acme's HTTP client takes the process-wide provider; make it ours (ring). An
    // error means one is installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = || match &config.ca_root {
        Some(root) => Account::builder_with_root(root)
            .map_err(|e| AcmeError::local(format!("cannot use --acme-ca-root {}: {e}", root.display()))),
        None => Account::builder().map_err(AcmeError::from),
    };
    if let Some(credentials) = store.account()? {
        return Ok(builder()?.from_credentials(credentials).await?);
    }
    let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = builder()?.create(&new, config.directory.clone(), None).await?;
    store.save_account(&credentials)?;
    info!("registered ACME account {} at {}", account.id(), config.directory);
    Ok(account)
}

/// One order, from creation to an installed-ready pair and its PEM.
async fn obtain(
    config: &AcmeConfig,
    account: &Account,
    challenges: &Challenges,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, String, String), AcmeError> {
    let identifiers: Vec<Identifier> = config.domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut offered = Offered { challenges, tokens: Vec::new(), names: Vec::new() };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        let name = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                let text = format!("the authorization for {name} is {other:?}");
                return Err(AcmeError { text, cause: Cause::Validation });
            }
        }
        let mut challenge = authz.challenge(config.challenge.kind()).ok_or_else(|| AcmeError {
            text: format!("the ACME server offers no {} challenge for {name}", config.challenge),
            cause: Cause::Refused,
        })?;
        let key_authorization = challenge.key_authorization();
        match config.challenge {
            Challenge::Http01 => {
                let token = challenge.token.clone();
                let mut http = challenges.http.lock().unwrap_or_else(PoisonError::into_inner);
                http.insert(token.clone(), key_authorization.as_str().to_owned());
                offered.tokens.push(token);
            }
            Challenge::TlsAlpn01 => {
                let name = name.to_ascii_lowercase();
                let certificate = alpn_certificate(&name, key_authorization.digest().as_ref(), provider)?;
                challenges.alpn.lock().unwrap_or_else(PoisonError::into_inner).insert(name.clone(), certificate);
                offered.names.push(name);
            }
        }
        challenge.set_ready().await?;
    }
    let polling = RetryPolicy::new().initial_delay(Duration::from_millis(250)).timeout(ORDER_TIMEOUT);
    let status = order.poll_ready(&polling).await?;
    if status != OrderStatus::Ready {
        return Err(AcmeError { text: failure_details(&mut order, status).await, cause: Cause::Validation });
    }
    drop(offered);
    let key = order.finalize().await?;
    let chain = order.poll_certificate(&polling).await?;
    let pair = tls::pair_from_pem(&chain, &key, provider).map_err(|e| AcmeError::local(e.to_string()))?;
    Ok((pair, chain, key))
}

/// Why an order did not become ready, from the challenges' error documents.
async fn failure_details(order: &mut instant_acme::Order, status: OrderStatus) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for challenge in &authz.challenges {
            if let Some(problem) = &challenge.error {
                reasons.push(format!("{}: {}", authz.identifier(), problem.detail.as_deref().unwrap_or("no detail")));
            }
        }
    }
    if reasons.is_empty() {
        format!("the order ended {status:?}")
    } else {
        format!("the order ended {status:?}: {}", reasons.join("; "))
    }
}

/// The self-signed TLS-ALPN-01 certificate for `name`: its only SAN is `name`, and the critical
/// acmeIdentifier extension holds the SHA-256 digest of the key authorization (RFC 8737 §3).
fn alpn_certificate(name: &str, digest: &[u8], provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, AcmeError> {
    let fail = |e: rcgen::Error| AcmeError::local(format!("cannot make the tls-alpn-01 certificate for {name}: {e}"));
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(fail)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| AcmeError::local(format!("cannot load the tls-alpn-01 key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(vec![CertificateDer::from(cert.der().to_vec())], signing_key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_at_two_thirds_of_the_lifetime() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        assert_eq!(renewal_time(start, start + 90 * day), start + 60 * day);
        assert_eq!(renewal_time(start, start + 6 * day), start + 4 * day);
        assert_eq!(renewal_time(start, start), start);
    }

    #[test]
    fn store_is_private_and_per_directory() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("chatd-acme-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let store = Store::open(&root, "https://acme.example/dir").unwrap();
        assert!(store.dir().ends_with("acme/acme.example_dir"), "{}", store.dir().display());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(store.certificate().unwrap(), None);
        store.save_certificate("CHAIN", "KEY").unwrap();
        assert_eq!(store.certificate().unwrap(), Some(("CHAIN".to_owned(), "KEY".to_owned())));
        assert_eq!(mode(&store.dir().join("key.pem")), 0o600);
        assert_eq!(mode(&store.dir().join("certificate.pem")), 0o600);
        // An existing, too open directory is tightened.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        Store::open(&root, "https://other.example/dir").unwrap();
        assert_eq!(mode(&root), 0o700);
        std::fs::write(store.dir().join("account.json"), "{not json").unwrap();
        let damaged = store.account().err().unwrap().to_string();
        assert!(damaged.contains("is damaged"), "{damaged}");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn alpn_certificate_carries_the_digest() {
        let provider = rustls::crypto::ring::default_provider();
        let digest = [7u8; 32];
        let pair = alpn_certificate("chat.example.com", &digest, &provider).unwrap();
        let der = pair.cert[0].as_ref();
        assert_eq!(crate::x509::dns_names(der), ["chat.example.com"]);
        // id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31), critical, OCTET STRING { OCTET STRING(32) }.
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f, 0x01, 0x01, 0xff];
        assert!(der.windows(oid.len()).any(|w| w == oid));
        assert!(der.windows(34).any(|w| w[..2] == [0x04, 0x20] && w[2..] == digest));
    }

    #[test]
    fn domains_acme_can_validate() {
        for good in ["chat.example.com", "a-b.example", "xn--bcher-kva.example"] {
            assert!(valid_domain(good), "{good}");
        }
        for bad in ["*.example.com", "localhost", "1.2.3.4", "chat.example.com:443", "-a.example", "a..b", ""] {
            assert!(!valid_domain(bad), "{bad}");
        }
    }

    /// An order that fails or succeeds as scripted, and reports the (paused) time of each call.
    struct Scripted {
        outcomes: std::collections::VecDeque<bool>,
        calls: tokio::sync::mpsc::UnboundedSender<tokio::time::Instant>,
        provider: Arc<CryptoProvider>,
    }

    impl Order for Scripted {
        async fn run(&mut self) -> Result<CertifiedKey, AcmeError> {
            let _ = self.calls.send(tokio::time::Instant::now());
            if !self.outcomes.pop_front().unwrap_or(false) {
                return Err(AcmeError::local("scripted failure"));
            }
            // A certificate that expired in 2020: installed, and due for renewal at once.
            let mut params = rcgen::CertificateParams::new(vec!["chat.example.com".to_owned()]).unwrap();
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 2, 1);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            let signing_key = self.provider.key_provider.load_private_key(key_der).unwrap();
            Ok(CertifiedKey::new(vec![CertificateDer::from(cert.der().to_vec())], signing_key))
        }
    }

    fn example_config() -> AcmeConfig {
        AcmeConfig {
            domains: vec!["chat.example.com".into()],
            email: None,
            directory: LETS_ENCRYPT.into(),
            data_dir: PathBuf::from("/var/lib/chatd"),
            ca_root: None,
            challenge: Challenge::Http01,
        }
    }

    /// The waits between the scripted order's calls, in seconds of paused time.
    async fn waits(outcomes: &[bool], calls: usize) -> (Vec<u64>, u64, u64) {
        let config = example_config();
        let tls = Tls::for_acme(None, Arc::default()).unwrap();
        let metrics = crate::metrics::Metrics::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut order = Scripted { outcomes: outcomes.iter().copied().collect(), calls: tx, provider: Arc::new(tls.crypto().clone()) };
        let (stop, stopped) = watch::channel(false);
        let mut times = Vec::new();
        {
            let renewing = keep_renewed(&config, &tls, &metrics, stopped, &mut order);
            let collecting = async {
                while times.len() < calls {
                    times.push(rx.recv().await.unwrap());
                }
                stop.send(true).unwrap();
            };
            tokio::join!(renewing, collecting);
        }
        use std::sync::atomic::Ordering::Relaxed;
        let gaps = times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        (gaps, metrics.tls_reloads.load(Relaxed), metrics.tls_reload_failures.load(Relaxed))
    }

    #[tokio::test(start_paused = true)]
    async fn failed_orders_back_off_doubling_up_to_six_hours() {
        let (gaps, installed, failed) = waits(&[], 13).await;
        // 1, 2, 4 ... 256 minutes, then the 6-hour cap.
        assert_eq!(gaps, [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600, 21600]);
        // Every call is counted, the last one too: it fails at once, before the stop is sent.
        assert_eq!((installed, failed), (0, 13));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_backoff() {
        // fail, fail, succeed (with a certificate already due: order again at once), fail, fail
        let (gaps, installed, failed) = waits(&[false, false, true, false, false], 6).await;
        assert_eq!(gaps, [60, 120, 0, 60, 120]);
        assert_eq!((installed, failed), (1, 5));
    }

    #[test]
    fn hints_name_the_usual_causes() {
        let text = hints(&example_config());
        for needle in
            ["A/AAAA records of chat.example.com", "doctor --domain chat.example.com", "port 80", "rate limit"]
        {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }
}
