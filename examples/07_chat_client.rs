//! # 7. A terminal chat client for chatd
//!
//! Teaches: a real client on the `wsproto::stream` layer: `ws://` over TCP and `wss://` over
//! rustls, chatd's JSON protocol (`docs/PROTOCOL.md`), and reconnecting after a drop with the
//! last sequence number seen (`since`) so nothing is missed.
//!
//! Run: start chatd (`cargo run --release -p chatd`), then
//! `cargo run -p examples --example 07_chat_client -- ws://localhost:8080 alice lobby` and type.
//! For `wss://` with your own CA add `--ca ca.pem` (otherwise the public web roots are used).
//! Next: `08_wiretap.rs`, to watch the frames this client and the chat page exchange.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use wsproto::handshake::client::ClientRequest;
use wsproto::stream::WebSocket;
use wsproto::{Config, Event};

/// Where to connect, parsed from `ws://host:port` or `wss://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    tls: bool,
    host: String,
    port: u16,
}

impl Server {
    /// Parses `ws://`, `wss://`, `http://` or `https://` URLs (path ignored).
    pub fn parse(url: &str) -> Result<Server, String> {
        let (tls, rest) = match url.split_once("://") {
            Some(("ws" | "http", rest)) => (false, rest),
            Some(("wss" | "https", rest)) => (true, rest),
            _ => return Err(format!("{url}: expected ws:// or wss://")),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| format!("{url}: bad port"))?),
            None => (authority, if tls { 443 } else { 80 }),
        };
        Ok(Server { tls, host: host.to_owned(), port })
    }
}

/// Either kind of stream, so the chat loop is written once.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn open(
    server: &Server,
    tls: &Option<Arc<rustls::ClientConfig>>,
    target: &str,
) -> Result<WebSocket<Box<dyn Stream>>, String> {
    let tcp = TcpStream::connect((server.host.as_str(), server.port)).await.map_err(|e| e.to_string())?;
    let io: Box<dyn Stream> = match (server.tls, tls) {
        (false, _) => Box::new(tcp),
        (true, Some(config)) => {
            let name = rustls::pki_types::ServerName::try_from(server.host.clone()).map_err(|e| e.to_string())?;
            Box::new(
                tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(|e| e.to_string())?,
            )
        }
        (true, None) => return Err("wss:// needs a TLS configuration".into()),
    };
    let host =
        if [80, 443].contains(&server.port) { server.host.clone() } else { format!("{}:{}", server.host, server.port) };
    let request = ClientRequest::new(host, target).map_err(|e| e.to_string())?;
    let (ws, _) = wsproto::stream::connect(io, &request, Config::default()).await.map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Renders one server event as a line for the terminal.
pub fn render(event: &Value) -> Option<String> {
    let s = |k: &str| event[k].as_str().unwrap_or_default().to_owned();
    Some(match event["type"].as_str()? {
        "hello" => format!(
            "* joined {} as {} with {} ({} messages of history)",
            s("room"),
            s("you"),
            event["members"]
                .as_array()
                .map(|m| m.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            event["history"].as_array().map_or(0, Vec::len)
        ),
        "message" => format!("[{} #{}] {}: {}", s("room"), event["seq"], s("nick"), s("text")),
        "join" => format!("* {} joined {}", s("nick"), s("room")),
        "leave" => format!("* {} left {}", s("nick"), s("room")),
        "nick" => format!("* {} is now {}", s("old"), s("new")),
        "error" => format!("! {}: {}", s("code"), s("text")),
        _ => return None,
    })
}

/// Chats until `lines` ends: sends each line as a message, passes each event to `show`.
/// Reconnects with `since` after a drop, backing off from 0.5 s to 15 s.
pub async fn chat(
    server: &Server,
    tls: Option<Arc<rustls::ClientConfig>>,
    nick: &str,
    room: &str,
    mut lines: mpsc::Receiver<String>,
    show: mpsc::Sender<String>,
) -> Result<(), String> {
    let mut last_seq: Option<u64> = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut target = format!("/ws?room={room}&nick={nick}");
        if let Some(seq) = last_seq {
            target.push_str(&format!("&since={seq}"));
        }
        let mut ws = match open(server, &tls, &target).await {
            Ok(ws) => ws,
            Err(e) => {
                let _ = show.send(format!("! cannot connect: {e}; retrying in {backoff:?}")).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(15));
                continue;
            }
        };
        loop {
            tokio::select! {
                line = lines.recv() => match line {
                    Some(text) => {
                        let _ = ws.send_text(&json!({"type": "message", "room": room, "text": text}).to_string()).await;
                    }
                    None => {
                        let _ = ws.close(wsproto::CloseCode::Normal, "bye").await;
                        while let Ok(Some(_)) = ws.recv().await {}
                        return Ok(());
                    }
                },
                event = ws.recv() => match event {
                    Ok(Some(Event::Text(text))) => {
                        let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                        if let Some(line) = render(&value) {
                            let _ = show.send(line).await;
                        }
                        match value["type"].as_str() {
                            Some("hello") => {
                                backoff = Duration::from_millis(500);
                                let room_seq = value["seq"].as_u64().unwrap_or(0);
                                if last_seq.is_some() && value["recovered"] == false {
                                    let _ = show.send("! some messages may have been missed".into()).await;
                                }
                                if last_seq.is_some_and(|seen| seen > room_seq) {
                                    last_seq = None; // the server forgot the room: start over
                                }
                                // Show history we have not seen yet, de-duplicated by seq.
                                for m in value["history"].as_array().into_iter().flatten() {
                                    let seq = m["seq"].as_u64().unwrap_or(0);
                                    if last_seq.is_none_or(|seen| seq > seen) {
                                        last_seq = Some(seq);
                                        let _ = show.send(render(m).unwrap_or_default()).await;
                                    }
                                }
                            }
                            Some("message") => last_seq = value["seq"].as_u64(),
                            _ => {}
                        }
                    }
                    Ok(Some(Event::Close(frame))) => {
                        let _ = show.send(format!("! server closed: {} {}", frame.code.as_u16(), frame.reason)).await;
                        if frame.code == wsproto::CloseCode::PolicyViolation {
                            return Err(frame.reason); // refused (nick taken): retrying won't help
                        }
                        break;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        let _ = show.send("! connection lost".into()).await;
                        break;
                    }
                },
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Trust anchors: a PEM CA file if given, else the public web's roots.
fn tls_config(ca: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| format!("{path}: {e:?}"))? {
                roots.add(cert.map_err(|e| format!("{path}: {e:?}"))?).map_err(|e| e.to_string())?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ca = args.iter().position(|a| a == "--ca").and_then(|i| args.get(i + 1)).cloned();
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--") && Some(*a) != ca.as_ref()).collect();
    let url = positional.first().map_or("ws://localhost:8080", |s| s.as_str());
    let nick = positional.get(1).map_or("guest", |s| s.as_str());
    let room = positional.get(2).map_or("lobby", |s| s.as_str());
    let server = Server::parse(url)?;
    let tls = if server.tls { Some(tls_config(ca.as_deref())?) } else { None };
    let (line_tx, line_rx) = mpsc::channel(16);
    let (show_tx, mut show_rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = stdin.next_line().await {
            if line_tx.send(line).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(line) = show_rx.recv().await {
            println!("{line}");
        }
    });
    chat(&server, tls, nick, room, line_rx, show_tx).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start_chatd(listener: tokio::net::TcpListener) -> tokio::sync::oneshot::Sender<()> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = chatd::Config { shutdown_grace: Duration::from_secs(1), ..chatd::Config::default() };
        tokio::spawn(chatd::run(listener, config, async move {
            let _ = stopped.await;
        }));
        stop
    }

    async fn expect(show: &mut mpsc::Receiver<String>, needle: &str) {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), show.recv()).await.expect("output").expect("open");
            if line.contains(needle) {
                return;
            }
        }
    }

    #[test]
    fn parses_urls() {
        assert_eq!(
            Server::parse("wss://chat.example.com"),
            Ok(Server { tls: true, host: "chat.example.com".into(), port: 443 })
        );
        assert_eq!(
            Server::parse("ws://127.0.0.1:8080/x"),
            Ok(Server { tls: false, host: "127.0.0.1".into(), port: 8080 })
        );
        assert!(Server::parse("ftp://x").is_err());
    }

    #[tokio::test]
    async fn chats_and_reconnects_after_a_server_restart() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = start_chatd(listener).await;
        let server = Server::parse(&format!("ws://{addr}")).unwrap();
        let (lines, line_rx) = mpsc::channel(4);
        let (show_tx, mut show) = mpsc::channel(64);
        let client = tokio::spawn(async move { chat(&server, None, "ada", "lobby", line_rx, show_tx).await });
        expect(&mut show, "* joined lobby as ada").await;
        lines.send("hello".into()).await.unwrap();
        expect(&mut show, "[lobby #1] ada: hello").await;
        // The server restarts on the same port: the client says so and comes back by itself.
        let _ = stop.send(());
        expect(&mut show, "! server closed: 1001").await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let _stop = start_chatd(listener).await;
        expect(&mut show, "! some messages may have been missed").await;
        lines.send("back".into()).await.unwrap();
        expect(&mut show, "ada: back").await;
        drop(lines);
        client.await.unwrap().unwrap();
    }
}
