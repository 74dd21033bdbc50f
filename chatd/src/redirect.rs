//! The optional plain-HTTP listener (`--http-redirect`): `301` to https for everything except
//! `/.well-known/acme-challenge/TOKEN`, served from `--acme-webroot` so certbot's webroot mode can
//! renew while chatd holds port 80. With `--domain` and `--acme-challenge http-01`, chatd's own
//! HTTP-01 answers are served from memory first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, warn};

use crate::acme::Challenges;
use crate::http::Response;
use crate::Shared;

/// ACME tokens are base64url (RFC 8555 §8.3); anything else could walk out of the webroot.
fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The answer for one request on the redirect port.
pub(crate) async fn answer(
    target: &str,
    host: Option<&str>,
    https_port: u16,
    webroot: Option<&Path>,
    challenges: &Challenges,
) -> Response {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if let Some(token) = path.strip_prefix("/.well-known/acme-challenge/") {
        if let Some(key_authorization) = challenges.http_response(token) {
            return Response {
                status: 200,
                content_type: "text/plain",
                headers: Vec::new(),
                body: key_authorization.into(),
            };
        }
        let Some(root) = webroot.filter(|_| valid_token(token)) else { return Response::text(404, "not found\n") };
        let file = root.join(".well-known/acme-challenge").join(token);
        return match tokio::fs::read(&file).await {
            Ok(body) if body.len() <= 64 * 1024 => {
                Response { status: 200, content_type: "text/plain", headers: Vec::new(), body }
            }
            _ => Response::text(404, "not found\n"),
        };
    }
    let Some(host) = host.filter(|h| !h.is_empty() && !h.contains(['/', '@', ' '])) else {
        return Response::text(400, "missing Host\n");
    };
    // Drop any port from Host (it named this port), then add the https port unless default.
    let name = match host.strip_prefix('[') {
        // An IPv6 literal: keep the brackets, drop the port.
        Some(rest) => match rest.split_once(']') {
            Some((addr, _)) => format!("[{addr}]"),
            None => return Response::text(400, "invalid Host\n"),
        },
        None => host.split_once(':').map_or(host, |(name, _)| name).to_owned(),
    };
    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    Response::text(301, "moved to https\n").header("Location", format!("https://{name}{port}{target}"))
}

/// Serves the redirect listener until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    https_port: u16,
    webroot: Option<PathBuf>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => { warn!("redirect listener: accept failed: {e}"); continue }
            },
        };
        let shared = shared.clone();
        let webroot = webroot.clone();
        tokio::spawn(async move { one(tcp, peer, https_port, webroot, &shared).await });
    }
}

async fn one(mut tcp: TcpStream, peer: SocketAddr, https_port: u16, webroot: Option<PathBuf>, shared: &Shared) {
    let Ok(_admitted) = crate::server::admit(shared, peer.ip()) else { return };
    let deadline = Instant::now() + shared.config.handshake_timeout;
    let read = timeout_at(deadline, wsproto::stream::read_request(&mut tcp, &shared.ws_config)).await;
    let Ok(Ok((request, _))) = read else {
        debug!(%peer, "redirect: no valid request");
        return;
    };
    let response = answer(request.target(), request.host(), https_port, webroot.as_deref(), &shared.challenges).await;
    let _ = response.send(&mut tcp, request.method() == "HEAD").await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Challenges {
        Challenges::default()
    }

    fn location(r: &Response) -> Option<&str> {
        r.headers.iter().find(|(n, _)| *n == "Location").map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn redirects_keep_path_and_fix_the_port() {
        let r = answer("/a?b=c", Some("chat.example.com"), 443, None, &none()).await;
        assert_eq!((r.status, location(&r)), (301, Some("https://chat.example.com/a?b=c")));
        let r = answer("/", Some("chat.example.com:80"), 8443, None, &none()).await;
        assert_eq!(location(&r), Some("https://chat.example.com:8443/"));
        let r = answer("/", Some("[::1]:80"), 443, None, &none()).await;
        assert_eq!(location(&r), Some("https://[::1]/"));
        assert_eq!(answer("/", None, 443, None, &none()).await.status, 400);
        assert_eq!(answer("/", Some("evil.com/x@"), 443, None, &none()).await.status, 400);
    }

    #[tokio::test]
    async fn acme_challenges_come_from_the_webroot_only() {
        let root = std::env::temp_dir().join(format!("chatd-webroot-{}", std::process::id()));
        let dir = root.join(".well-known/acme-challenge");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tok_EN-1"), "tok_EN-1.thumb").unwrap();
        let r = answer("/.well-known/acme-challenge/tok_EN-1", Some("h"), 443, Some(&root), &none()).await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"tok_EN-1.thumb"[..]));
        assert_eq!(
            answer("/.well-known/acme-challenge/..%2Fx", Some("h"), 443, Some(&root), &none()).await.status,
            404
        );
        assert_eq!(
            answer("/.well-known/acme-challenge/missing", Some("h"), 443, Some(&root), &none()).await.status,
            404
        );
        assert_eq!(answer("/.well-known/acme-challenge/tok_EN-1", Some("h"), 443, None, &none()).await.status, 404);
        std::fs::remove_dir_all(root).unwrap();
    }
}
