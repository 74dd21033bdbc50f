//! The server's entry points: [`run`] and [`preflight`], the state every connection shares.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::{acme, cluster, hub, redirect, server, store, tls};

/// Why the server could not start. Each is one line for the operator.
#[derive(Debug)]
pub enum Error {
    /// A setting that cannot work.
    Config(String),
    /// A WebSocket limit that cannot work.
    Limits(wsproto::ConfigError),
    /// The certificate or key could not be used.
    Tls(tls::TlsError),
    /// The ACME data directory could not be used.
    Acme(acme::AcmeError),
    /// The history store could not be opened.
    Store(store::StoreError),
    /// Redis could not be used.
    Cluster(cluster::ClusterError),
    /// A listener could not be bound.
    Bind(SocketAddr, std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(why) => write!(f, "invalid configuration: {why}"),
            Error::Limits(e) => write!(f, "{e}"),
            Error::Tls(e) => write!(f, "{e}"),
            Error::Acme(e) => write!(f, "{e}"),
            Error::Store(e) => write!(f, "{e}"),
            Error::Cluster(e) => write!(f, "{e}"),
            Error::Bind(addr, e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                write!(f, "cannot listen on {addr}: address already in use (is another chatd running?)")
            }
            Error::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    pub(crate) config: Config,
    pub(crate) ws_config: wsproto::Config,
    pub(crate) hub: hub::Hub,
    pub(crate) cluster: Option<cluster::Cluster>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tls: Option<tls::Tls>,
    pub(crate) challenges: Arc<acme::Challenges>,
    pub(crate) per_ip: server::PerIp,
    pub(crate) next_id: AtomicU64,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// What [`preflight`] loaded: the TLS side and, with ACME, the store it renews into.
#[derive(Debug)]
pub struct Prepared {
    pub(crate) tls: Option<tls::Tls>,
    pub(crate) acme: Option<acme::Store>,
    pub(crate) challenges: Arc<acme::Challenges>,
}

/// Checks the config and loads the certificate (or opens the ACME store), as `run` will: lets
/// `main` report a bad flag or file before binding anything.
pub fn preflight(config: &Config) -> Result<Prepared, Error> {
    config.websocket().map_err(Error::Limits)?;
    if let Some(cluster) = &config.cluster {
        cluster::check_url(&cluster.url).map_err(Error::Cluster)?;
        if cluster.node_expiry < std::time::Duration::from_secs(1) {
            return Err(Error::Config("--node-expiry must be at least 1 second".into()));
        }
    }
    if config.acme_webroot.is_some() && config.http_redirect.is_none() {
        return Err(Error::Config("--acme-webroot needs --http-redirect".into()));
    }
    if config.http_redirect.is_some() && config.tls.is_none() && config.acme.is_none() {
        return Err(Error::Config("--http-redirect needs --cert and --key, or --domain".into()));
    }
    let challenges = Arc::new(acme::Challenges::default());
    let Some(acme) = &config.acme else {
        let tls = config.tls.as_ref().map(tls::Tls::load).transpose().map_err(Error::Tls)?;
        return Ok(Prepared { tls, acme: None, challenges });
    };
    if config.tls.is_some() {
        return Err(Error::Config("--cert/--key and --domain both give a certificate: choose one".into()));
    }
    if acme.domains.is_empty() {
        return Err(Error::Config("ACME needs at least one --domain".into()));
    }
    if let Some(bad) = acme.domains.iter().find(|d| !acme::valid_domain(d)) {
        return Err(Error::Config(format!(
            "--domain {bad:?} is not a DNS name ACME can validate here (no wildcards, IPs or ports)"
        )));
    }
    if acme.challenge == acme::Challenge::Http01 && config.http_redirect.is_none() {
        return Err(Error::Config("--acme-challenge http-01 needs --http-redirect 0.0.0.0:80".into()));
    }
    let (store, tls) = acme::prepare(acme, challenges.clone()).map_err(Error::Acme)?;
    Ok(Prepared { tls: Some(tls), acme: Some(store), challenges })
}

/// Serves chat on `listener` until `shutdown` resolves, then closes every session with 1001
/// ("going away"), waits up to [`Config::shutdown_grace`] for them to finish, and returns.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let Prepared { tls, acme: store, challenges } = preflight(&config)?;
    let redirect = match config.http_redirect {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| Error::Bind(addr, e))?),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = watch::channel(false);
    // Half the joiner's queue for the history in a hello, so live messages still fit.
    let mut hub = hub::Hub::new(config.history, config.max_rooms, config.queue_bytes / 2, metrics.clone());
    let cluster = match &config.cluster {
        Some(cluster) => {
            hub = hub.clustered();
            if config.data_dir.is_some() {
                info!("history is kept in Redis (--redis); --data-dir holds ACME state only");
            }
            Some(cluster::Cluster::connect(cluster, config.history).await.map_err(Error::Cluster)?)
        }
        None => None,
    };
    if let (Some(dir), None) = (&config.data_dir, &cluster) {
        hub = hub.with_store(store::Store::open(dir, config.history).map_err(Error::Store)?);
    }
    let shared = Arc::new(Shared {
        ws_config: config.websocket().map_err(Error::Limits)?,
        hub,
        cluster,
        metrics,
        tls,
        challenges,
        per_ip: Default::default(),
        next_id: AtomicU64::new(1),
        shutdown: stopped.clone(),
        config,
    });
    let local = listener.local_addr().map_err(|e| Error::Config(e.to_string()))?;
    let scheme = if shared.tls.is_some() { "https" } else { "http" };
    info!("chatd listening on {scheme}://{local}");
    let mut background = JoinSet::new();
    match (shared.tls.clone(), store, shared.config.acme.clone()) {
        (Some(tls), Some(store), Some(acme)) => {
            let (challenges, metrics) = (shared.challenges.clone(), shared.metrics.clone());
            background.spawn(acme::maintain(acme, store, tls, challenges, metrics, stopped.clone()));
        }
        (Some(tls), _, _) => {
            background.spawn(watch_certificates(tls, shared.clone(), stopped.clone()));
        }
        _ => {}
    }
    cluster::spawn(shared.clone(), stopped.clone(), &mut background);
    if let Some(listener) = redirect {
        let webroot = shared.config.acme_webroot.clone();
        info!("redirecting http://{} to https", listener.local_addr().map_err(|e| Error::Config(e.to_string()))?);
        background.spawn(redirect::serve(listener, local.port(), webroot, shared.clone(), stopped.clone()));
    }

    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => { connections.spawn(server::handle(tcp, peer, shared.clone())); }
                // Out of file descriptors and the like: keep serving the open connections.
                Err(e) => { warn!("accept failed: {e}"); tokio::time::sleep(std::time::Duration::from_millis(50)).await; }
            },
            Some(_) = connections.join_next() => {}
        }
    }
    info!("shutting down: closing {} connections with 1001", connections.len());
    drop(listener);
    let _ = stop.send(true);
    let grace = shared.config.shutdown_grace + shared.config.shutdown_grace / 2;
    let _ = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    connections.shutdown().await;
    if let Some(cluster) = &shared.cluster {
        // Before the background tasks stop: the sender still has messages to hand to Redis.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), cluster.shutdown()).await;
    }
    background.shutdown().await;
    if let Some(store) = shared.hub.store().cloned() {
        // Every session has left: commit what is queued and mark the store clean.
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
    }
    info!("stopped");
    Ok(())
}

/// Reloads the certificate on SIGHUP and when either file changes on disk.
async fn watch_certificates(tls: tls::Tls, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    use std::sync::atomic::Ordering::Relaxed;
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut stamp = tls.stamp();
    let mut tick = tokio::time::interval(shared.config.cert_check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            _ = stopped.changed() => return,
            _ = hup => "SIGHUP",
            _ = tick.tick() => {
                let now = tls.stamp();
                if now == stamp { continue }
                stamp = now;
                "the files changed"
            }
        };
        match tls.reload() {
            Ok(()) => {
                shared.metrics.tls_reloads.fetch_add(1, Relaxed);
                info!("certificate reloaded ({why})");
            }
            Err(e) => {
                shared.metrics.tls_reload_failures.fetch_add(1, Relaxed);
                warn!("certificate reload ({why}) failed, keeping the old one: {e}");
            }
        }
    }
}
