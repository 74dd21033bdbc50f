//! Accepting connections: admission limits, TLS, the HTTP head, and routing.
//!
//! ```text
//! TCP accept ─▶ admit (max connections, per IP) ─▶ [TLS handshake] ─▶ read head ─▶ route
//!                 503 / 429                          one deadline for both: 408
//! route:  GET /            the chat page (and /app.js, /app.css)
//!         GET /healthz     "ok"
//!         GET /metrics     Prometheus text
//!         GET /ws          Origin check (403), query check (400), WebSocket upgrade ─▶ session
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tracing::debug;
use wsproto::handshake::server::{Accept, Request};
use wsproto::{Error as WsError, HandshakeError};

use crate::http::{self, Response};
use crate::metrics::Rejection;
use crate::{protocol, session, Shared};

/// Counts a connection in the gauges while it lives.
pub(crate) struct Admitted<'a> {
    shared: &'a Shared,
    ip: IpAddr,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.shared.metrics.connections.fetch_sub(1, Relaxed);
        let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

pub(crate) fn admit(shared: &Shared, ip: IpAddr) -> Result<Admitted<'_>, Rejection> {
    let config = &shared.config;
    let mut per_ip = shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
    let total = shared.metrics.connections.load(Relaxed) as usize;
    if total >= config.max_connections {
        return Err(Rejection::Capacity);
    }
    let count = per_ip.entry(ip).or_insert(0);
    if config.max_connections_per_ip > 0 && *count >= config.max_connections_per_ip {
        return Err(Rejection::PerIp);
    }
    *count += 1;
    shared.metrics.connections.fetch_add(1, Relaxed);
    Ok(Admitted { shared, ip })
}

/// Serves one accepted TCP connection to the end.
pub(crate) async fn handle(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let admitted = match admit(&shared, peer.ip()) {
        Ok(admitted) => admitted,
        Err(why) => {
            shared.metrics.reject(why);
            debug!(%peer, ?why, "connection refused");
            if shared.tls.is_none() {
                let (status, text) = match why {
                    Rejection::PerIp => (429, "too many connections from your address\n"),
                    _ => (503, "server at capacity\n"),
                };
                let mut tcp = tcp;
                let _ = Response::text(status, text).header("Retry-After", "10").send(&mut tcp, false).await;
            }
            return; // over TLS, refusing before the handshake costs the least
        }
    };
    // One deadline covers the TLS handshake and the request head; shutdown cuts both short.
    let mut shutdown = shared.shutdown.clone();
    let deadline = Instant::now() + shared.config.handshake_timeout;
    match shared.tls.clone() {
        None => serve(tcp, peer, &shared, false, deadline).await,
        // Boxed: a TLS connection's state (rustls, the handshake) is 11 KB; inline, every plain
        // connection's future would be that big too (an async fn is as large as its largest
        // branch).
        Some(tls) => {
            Box::pin(async {
                match tokio::select! {
                    accepted = timeout_at(deadline, tls.acceptor().accept(tcp)) => accepted,
                    _ = shutdown.changed() => return,
                } {
                    // A TLS-ALPN-01 validator: the handshake was the answer (RFC 8737 §3).
                    Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) => {
                        debug!(%peer, "answered a tls-alpn-01 validation");
                    }
                    Ok(Ok(stream)) => serve(stream, peer, &shared, true, deadline).await,
                    Ok(Err(e)) => {
                        shared.metrics.reject(Rejection::Tls);
                        debug!(%peer, "TLS handshake failed: {e}");
                    }
                    Err(_) => {
                        shared.metrics.reject(Rejection::Timeout);
                        debug!(%peer, "TLS handshake timed out");
                    }
                }
            })
            .await
        }
    }
    drop(admitted);
}

async fn serve<S>(mut io: S, peer: SocketAddr, shared: &Arc<Shared>, secure: bool, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // At shutdown, a connection still sending its head is simply dropped.
    let mut shutdown = shared.shutdown.clone();
    let read = tokio::select! {
        read = timeout_at(deadline, wsproto::stream::read_request(&mut io, &shared.ws_config)) => read,
        _ = shutdown.changed() => return,
    };
    let (request, rest) = match read {
        Ok(Ok(head)) => head,
        Ok(Err(WsError::Handshake(e))) => {
            // wsproto already answered with the status.
            let why = if e == HandshakeError::Timeout { Rejection::Timeout } else { Rejection::BadHandshake };
            shared.metrics.reject(why);
            debug!(%peer, "bad request: {e}");
            return;
        }
        Ok(Err(e)) => {
            debug!(%peer, "connection lost before the request: {e}");
            return;
        }
        Err(_) => {
            shared.metrics.reject(Rejection::Timeout);
            let _ = Response::text(408, "request timeout\n").send(&mut io, false).await;
            return;
        }
    };
    let method = request.method();
    let head_only = method == "HEAD";
    if request.path() == "/ws" {
        return websocket(io, request, rest, peer, shared, secure).await;
    }
    if method != "GET" && !head_only {
        let _ = Response::text(405, "method not allowed\n").header("Allow", "GET, HEAD").send(&mut io, false).await;
        return;
    }
    let response = match request.path() {
        "/" | "/index.html" => Response::page("text/html; charset=utf-8", http::INDEX_HTML),
        "/app.js" => Response::page("text/javascript; charset=utf-8", http::APP_JS),
        "/app.css" => Response::page("text/css; charset=utf-8", http::APP_CSS),
        "/healthz" => Response::text(200, "ok\n"),
        "/metrics" => {
            let mut r = Response::text(200, shared.metrics.render());
            r.content_type = "text/plain; version=0.0.4; charset=utf-8";
            r
        }
        _ => Response::text(404, "not found\n"),
    };
    let _ = response.send(&mut io, head_only).await;
}

/// Whether a browser page at `origin` may open a WebSocket here: same origin (its host equals
/// the `Host` we were reached at), or listed in `--allow-origin` (`*` for any).
pub(crate) fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    if allowed.iter().any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some(origin_host) = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) else {
        return false; // "null" and other opaque origins
    };
    let Some(host) = host else { return false };
    let strip_default = |h: &str| h.strip_suffix(":443").or_else(|| h.strip_suffix(":80")).unwrap_or(h).to_owned();
    strip_default(origin_host).eq_ignore_ascii_case(&strip_default(host))
}

async fn refuse<S: AsyncWrite + Unpin>(io: &mut S, shared: &Shared, why: Rejection, status: u16, text: &str) {
    shared.metrics.reject(why);
    let _ = Response::text(status, format!("{text}\n")).send(io, false).await;
}

async fn websocket<S>(mut io: S, request: Request, rest: Vec<u8>, peer: SocketAddr, shared: &Arc<Shared>, secure: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    if let Err(e) = request.validate() {
        shared.metrics.reject(Rejection::BadHandshake);
        if let Some(response) = e.response() {
            let _ = io.write_all(&response).await;
            let _ = io.shutdown().await;
        }
        return;
    }
    if let Some(origin) = request.origin() {
        if !origin_allowed(origin, request.host(), &shared.config.allow_origins) {
            debug!(%peer, origin, secure, "origin refused");
            return refuse(&mut io, shared, Rejection::Origin, 403, "origin not allowed").await;
        }
    }
    let query = request.query();
    let room = http::query_param(query, "room").unwrap_or_else(|| "lobby".into());
    if !protocol::valid_room(&room) {
        return refuse(&mut io, shared, Rejection::BadQuery, 400, "invalid room name").await;
    }
    let since = match http::query_param(query, "since").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => return refuse(&mut io, shared, Rejection::BadQuery, 400, "invalid since").await,
        },
    };
    let id = shared.next_id.fetch_add(1, Relaxed);
    let nick = match http::query_param(query, "nick").filter(|n| !n.is_empty()) {
        Some(nick) if protocol::valid_nick(&nick) => nick,
        Some(_) => return refuse(&mut io, shared, Rejection::BadQuery, 400, "invalid nick").await,
        None => guest_nick(shared, &room, id),
    };
    let ws = match wsproto::stream::upgrade(io, &request, &rest, &Accept::new(), shared.ws_config.clone()).await {
        Ok(ws) => ws,
        Err(e) => {
            debug!(%peer, "upgrade failed: {e}");
            return;
        }
    };
    // The request is not needed any more: dropped here, it isn't kept for the whole session.
    drop((request, rest));
    let start = session::Start { id, nick, room, since, peer };
    session::run(ws, shared.clone(), start, shared.shutdown.clone()).await;
}

/// `guest-NNNN`, free in `room` at the time of asking.
fn guest_nick(shared: &Shared, room: &str, id: u64) -> String {
    let seed = std::collections::hash_map::RandomState::new();
    for attempt in 0..50u64 {
        let mut h = seed.build_hasher();
        h.write_u64(id);
        h.write_u64(attempt);
        let nick = format!("guest-{:04}", h.finish() % 10_000);
        if shared.hub.nick_free(room, &nick) {
            return nick;
        }
    }
    format!("guest-{id}")
}

/// Per-IP connection counts.
pub(crate) type PerIp = Mutex<HashMap<IpAddr, usize>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_and_allow_list() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed("http://localhost:8080", Some("localhost:8080"), &none));
        assert!(origin_allowed("https://chat.example.com", Some("chat.example.com"), &none));
        assert!(origin_allowed("https://chat.example.com", Some("chat.example.com:443"), &none));
        assert!(!origin_allowed("https://evil.example", Some("chat.example.com"), &none));
        assert!(!origin_allowed("null", Some("chat.example.com"), &none));
        assert!(!origin_allowed("http://localhost:8081", Some("localhost:8080"), &none));
        let list = vec!["https://app.example.com".to_owned()];
        assert!(origin_allowed("https://app.example.com", Some("api.example.com"), &list));
        assert!(origin_allowed("anything", None, &["*".to_owned()]));
    }
}
