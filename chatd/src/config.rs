//! chatd's settings, in one struct with documented defaults. `--help` shows the same text.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `run` needs to know. Build it with [`Config::default`] and change fields, or from
/// the command line (`main.rs`).
#[derive(Clone, Debug)]
pub struct Config {
    /// TLS certificate chain and private key (PEM). `None` serves plain HTTP/WebSocket unless
    /// `acme` is set.
    pub tls: Option<TlsFiles>,
    /// Where state is kept: with it, room history and sequence numbers survive restarts
    /// (`DIR/history.redb`, see [`crate::store`]). Default none: history lives in memory only.
    pub data_dir: Option<PathBuf>,
    /// Several nodes sharing rooms through Redis (`--redis`, see [`crate::cluster`]): Redis
    /// numbers messages, keeps history and presence. Default none: one node, history in memory
    /// or in `data_dir`.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// Automatic certificates from an ACME CA (`--domain`). Default none.
    pub acme: Option<crate::acme::AcmeConfig>,
    /// Origins allowed to open a WebSocket besides the page's own. `*` allows all. Default
    /// empty: same-origin and Origin-less (non-browser) clients only.
    pub allow_origins: Vec<String>,
    /// Plain-HTTP listener that redirects to https and serves ACME challenges. Default none.
    pub http_redirect: Option<SocketAddr>,
    /// Directory served under `/.well-known/acme-challenge/` on the redirect listener (certbot
    /// `--webroot`). Default none.
    pub acme_webroot: Option<PathBuf>,
    /// Messages per second per connection (token bucket); 0 disables. Default 10.
    pub rate_limit: u32,
    /// Burst the rate limit allows. Default 20.
    pub rate_burst: u32,
    /// Open connections in total, WebSocket or not; more are refused with 503. Default 10,000.
    pub max_connections: usize,
    /// Open connections per client IP; more are refused with 429; 0 disables. Default 32.
    pub max_connections_per_ip: usize,
    /// Messages kept per room for `since` recovery. Default 200.
    pub history: usize,
    /// Rooms one connection may be in at once. Default 16.
    pub max_rooms_per_connection: usize,
    /// Rooms kept in memory; empty rooms are evicted oldest first beyond this. Default 10,000.
    pub max_rooms: usize,
    /// Bytes of text in one chat message. Default 4 KiB.
    pub max_text: usize,
    /// Bytes in one WebSocket message; bigger closes with 1009. Default 64 KiB.
    pub max_frame: usize,
    /// Messages queued for one connection before it is closed with 1013. Default 256.
    pub queue_messages: usize,
    /// Bytes queued for one connection before it is closed with 1013. Default 1 MiB.
    pub queue_bytes: usize,
    /// One deadline for the TLS handshake and the HTTP request head. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time given to clients to finish the close handshake at shutdown. Default 5 s.
    pub shutdown_grace: Duration,
    /// How often the certificate files are checked for changes. Default 10 s.
    pub cert_check_interval: Duration,
    /// permessage-deflate (RFC 7692) for clients that offer it (every browser does). The server
    /// imposes no context takeover both ways, so each broadcast is compressed once per room and
    /// no (de)compressor memory stays with a connection between messages. Default on.
    pub deflate: bool,
    /// Silence after which the server pings a client. Default 20 s (outlives 60 s proxy/NAT
    /// idle timeouts).
    pub ping_interval: Duration,
    /// Time a pinged client has to send anything before it is closed with 1011. Default 20 s.
    pub pong_timeout: Duration,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Full chain, leaf first (e.g. Let's Encrypt's `fullchain.pem`).
    pub cert: PathBuf,
    /// Private key: PKCS#8, RSA (PKCS#1) or EC (SEC1) (e.g. `privkey.pem`).
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tls: None,
            data_dir: None,
            cluster: None,
            acme: None,
            allow_origins: Vec::new(),
            http_redirect: None,
            acme_webroot: None,
            rate_limit: 10,
            rate_burst: 20,
            max_connections: 10_000,
            max_connections_per_ip: 32,
            history: 200,
            max_rooms_per_connection: 16,
            max_rooms: 10_000,
            max_text: 4 * 1024,
            max_frame: 64 * 1024,
            queue_messages: 256,
            queue_bytes: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            cert_check_interval: Duration::from_secs(10),
            deflate: true,
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(20),
        }
    }
}

impl Config {
    /// The wsproto limits for chat connections.
    pub(crate) fn websocket(&self) -> Result<wsproto::Config, wsproto::ConfigError> {
        let mut builder = wsproto::Config::builder();
        if self.deflate {
            // No context takeover either way: one compressed frame per broadcast serves every
            // member, and no compressor or decompressor memory stays with an idle connection.
            let deflate = wsproto::deflate::DeflateConfig::new()
                .server_no_context_takeover(true)
                .client_no_context_takeover(true)
                .level(crate::hub::DEFLATE_LEVEL)
                .min_size(crate::hub::DEFLATE_MIN);
            builder = builder.deflate(deflate);
        }
        builder
            .max_message_size(self.max_frame)
            // Chat messages are small; browsers never fragment them. 64 fragments is generous and
            // keeps a fragment flood short (1009 beyond it).
            .max_fragments(64)
            .handshake_timeout(self.handshake_timeout)
            .write_buffer_limit(self.queue_bytes)
            .close_timeout(self.shutdown_grace)
            .ping_interval(Some(self.ping_interval))
            .pong_timeout(self.pong_timeout)
            .build()
    }
}
