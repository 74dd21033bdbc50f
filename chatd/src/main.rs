//! `chatd`: flags → [`chatd::Config`] → [`chatd::run`]. Everything else lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// A chat server: rooms, a built-in web page at /, WebSocket at /ws, native TLS.
///
/// With no flags it serves http://localhost:8080. Give --cert and --key to serve https and wss
/// on the same port (e.g. Let's Encrypt's fullchain.pem and privkey.pem); the certificate is
/// reloaded on SIGHUP and when the files change. Or give --domain and --data-dir instead, and
/// chatd obtains and renews its certificate from Let's Encrypt by itself (ACME). Logs go to stderr; set RUST_LOG (e.g.
/// RUST_LOG=chatd=debug) for more. SIGINT/SIGTERM close every client with 1001 and exit 0.
#[derive(Debug, Parser)]
#[command(name = "chatd", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address and port to listen on (HTTP, or HTTPS with --cert/--key).
    #[arg(long, global = true, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// TLS certificate chain, PEM, leaf first (e.g. /etc/letsencrypt/live/DOMAIN/fullchain.pem).
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// TLS private key, PEM: PKCS#8, RSA or EC (e.g. /etc/letsencrypt/live/DOMAIN/privkey.pem).
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Another origin allowed to open WebSockets (e.g. https://app.example.com); repeatable; *
    /// allows any. Same-origin pages and non-browser clients are always allowed.
    #[arg(long = "allow-origin", global = true, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Also listen on ADDR (e.g. 0.0.0.0:80) in plain HTTP: redirect to https, serve ACME
    /// challenges from --acme-webroot. Needs --cert/--key.
    #[arg(long, global = true, value_name = "ADDR")]
    http_redirect: Option<SocketAddr>,
    /// Directory whose .well-known/acme-challenge/ is served on the --http-redirect port
    /// (certbot certonly --webroot -w DIR).
    #[arg(long, global = true, value_name = "DIR")]
    acme_webroot: Option<PathBuf>,
    /// The domain to serve (repeatable). Without --cert/--key: obtain a certificate for it by ACME
    /// and renew it at two thirds of its lifetime, no restart needed. Needs --data-dir.
    #[arg(long = "domain", global = true, value_name = "DOMAIN")]
    domains: Vec<String>,
    /// Where chatd keeps state (created 0700): room history and sequence numbers, which then
    /// survive restarts, and with --domain the ACME account and certificates (files 0600).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Run as one node of several sharing rooms through Redis (redis://HOST:PORT, rediss://
    /// for TLS): Redis numbers messages, keeps each room's last --history messages and who is
    /// in which room. Replaces --data-dir's history (which then holds ACME state only).
    #[arg(long, global = true, value_name = "URL")]
    redis: Option<String>,
    /// With --redis: seconds after which a node that stopped renewing its lease (crashed, cut
    /// off) is dropped from presence, its members announced as gone.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 10)]
    node_expiry: u64,
    /// Contact e-mail for the ACME account (the CA's expiry and policy notices). Optional.
    #[arg(long, global = true, value_name = "EMAIL")]
    acme_email: Option<String>,
    /// ACME directory URL. Try Let's Encrypt's staging directory first:
    /// https://acme-staging-v02.api.letsencrypt.org/directory
    #[arg(long, global = true, value_name = "URL", default_value = chatd::acme::LETS_ENCRYPT)]
    acme_directory: String,
    /// Trust this PEM root for the ACME server's own HTTPS (a private CA or a test server such as
    /// Pebble). Default: the system's roots.
    #[arg(long, global = true, value_name = "FILE")]
    acme_ca_root: Option<PathBuf>,
    /// How to prove the domain is ours: tls-alpn-01 on the TLS port (443), or http-01 on the
    /// --http-redirect port (80).
    #[arg(long, global = true, value_name = "TYPE", default_value = "tls-alpn-01", value_parser = ["tls-alpn-01", "http-01"])]
    acme_challenge: String,
    /// Chat messages per second per connection (token bucket); 0 turns the limit off.
    #[arg(long, global = true, value_name = "N", default_value_t = 10)]
    rate_limit: u32,
    /// Messages a connection may send in a burst before the rate limit applies.
    #[arg(long, global = true, value_name = "N", default_value_t = 20)]
    rate_burst: u32,
    /// Open connections in total; more are refused (503).
    #[arg(long, global = true, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,
    /// Open connections per client IP address; more are refused (429); 0 turns it off.
    #[arg(long, global = true, value_name = "N", default_value_t = 32)]
    max_connections_per_ip: usize,
    /// Messages kept per room, replayed to clients that reconnect with `since`.
    #[arg(long, global = true, value_name = "N", default_value_t = 200)]
    history: usize,
    /// Rooms one connection may be in at once.
    #[arg(long, global = true, value_name = "N", default_value_t = 16)]
    max_rooms_per_connection: usize,
    /// Rooms kept in memory; beyond this the longest-idle empty room is forgotten.
    #[arg(long, global = true, value_name = "N", default_value_t = 10_000)]
    max_rooms: usize,
    /// Bytes of text in one chat message.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 4096)]
    max_text: usize,
    /// Bytes in one WebSocket message; a bigger one closes the connection with 1009.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 65536)]
    max_frame: usize,
    /// Messages queued for a client before it is considered stalled and closed with 1013.
    #[arg(long, global = true, value_name = "N", default_value_t = 256)]
    queue_messages: usize,
    /// Bytes queued for a client before it is considered stalled and closed with 1013.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = 1 << 20)]
    queue_bytes: usize,
    /// Seconds allowed for the TLS handshake and the HTTP request head together.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 10)]
    handshake_timeout: u64,
    /// Don't offer permessage-deflate compression (on by default for clients that ask for it;
    /// each broadcast is compressed once per room).
    #[arg(long, global = true)]
    no_deflate: bool,
    /// Seconds of silence after which a client is pinged.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 20)]
    ping_interval: u64,
    /// Seconds a pinged client has to answer before it is closed (1011).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 20)]
    pong_timeout: u64,
    /// Seconds clients get to finish closing at shutdown.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 5)]
    shutdown_grace: u64,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check a deployment before going live: ports, certificate (readable, matching, names,
    /// expiry), the ACME webroot, and whether the domain's A/AAAA records point at this machine.
    /// Takes the same flags as the server. Exits 1 if anything must be fixed.
    Doctor,
}

impl Cli {
    /// ACME settings: `--domain` without `--cert` (with `--cert`, the domain is only what
    /// `doctor` checks).
    fn acme(&self) -> Result<Option<chatd::acme::AcmeConfig>, String> {
        if self.domains.is_empty() || self.cert.is_some() {
            return Ok(None);
        }
        let Some(data_dir) = self.data_dir.clone() else {
            return Err("--domain needs --data-dir DIR, where the ACME account and certificates are kept \
                        (e.g. /var/lib/chatd)"
                .into());
        };
        let challenge = match self.acme_challenge.as_str() {
            "http-01" => chatd::acme::Challenge::Http01,
            _ => chatd::acme::Challenge::TlsAlpn01,
        };
        Ok(Some(chatd::acme::AcmeConfig {
            domains: self.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            email: self.acme_email.clone(),
            directory: self.acme_directory.clone(),
            data_dir,
            ca_root: self.acme_ca_root.clone(),
            challenge,
        }))
    }

    fn into_config(self, acme: Option<chatd::acme::AcmeConfig>) -> chatd::Config {
        use std::time::Duration;
        chatd::Config {
            tls: self.cert.zip(self.key).map(|(cert, key)| chatd::TlsFiles { cert, key }),
            data_dir: self.data_dir,
            cluster: self
                .redis
                .map(|url| chatd::cluster::ClusterConfig { url, node_expiry: Duration::from_secs(self.node_expiry) }),
            acme,
            allow_origins: self.allow_origin,
            http_redirect: self.http_redirect,
            acme_webroot: self.acme_webroot,
            rate_limit: self.rate_limit,
            rate_burst: self.rate_burst,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            history: self.history,
            max_rooms_per_connection: self.max_rooms_per_connection,
            max_rooms: self.max_rooms,
            max_text: self.max_text,
            max_frame: self.max_frame,
            queue_messages: self.queue_messages,
            queue_bytes: self.queue_bytes,
            handshake_timeout: Duration::from_secs(self.handshake_timeout),
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            deflate: !self.no_deflate,
            ping_interval: Duration::from_secs(self.ping_interval),
            pong_timeout: Duration::from_secs(self.pong_timeout),
            ..chatd::Config::default()
        }
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("chatd: {message}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's message, up to its usage block, folded onto one line.
            let text = e.to_string();
            let lines: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            let message = lines.join(" ");
            eprintln!("chatd: {} (see --help)", message.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("chatd=info,warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let listen = cli.listen;
    let doctor = cli.command.is_some();
    let domain = cli.domains.first().cloned();
    let (acme, acme_note) = match cli.acme() {
        Ok(acme) => (acme, None),
        // doctor reports it with the rest.
        Err(e) if doctor => (None, Some(e)),
        Err(e) => return fail(e),
    };
    let config = cli.into_config(acme);
    if doctor {
        return run_doctor(&config, listen, domain.as_deref(), acme_note);
    }
    if let Err(e) = chatd::preflight(&config) {
        return fail(e);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(e) => return fail(chatd::Error::Bind(listen, e)),
        };
        match chatd::run(listener, config, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        }
    })
}

fn run_doctor(config: &chatd::Config, listen: SocketAddr, domain: Option<&str>, note: Option<String>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let mut findings = runtime.block_on(chatd::doctor::run(config, listen, domain));
    findings.extend(note.map(|n| chatd::doctor::Finding::Note(format!("with ACME: {n}"))));
    for finding in &findings {
        println!("{finding}");
    }
    let problems = findings.iter().filter(|f| matches!(f, chatd::doctor::Finding::Problem(_))).count();
    if problems == 0 {
        println!("no problems found");
        ExitCode::SUCCESS
    } else {
        println!("{problems} problem(s) to fix");
        ExitCode::FAILURE
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
