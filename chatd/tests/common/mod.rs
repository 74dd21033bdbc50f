//! Helpers shared by chatd's integration tests: a server on 127.0.0.1:0 and chat clients.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wsproto::handshake::client::ClientRequest;
use wsproto::stream::WebSocket;
use wsproto::{CloseFrame, Event};

/// A running chatd.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), chatd::Error>>,
}

impl Server {
    pub async fn start(config: chatd::Config) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(chatd::run(listener, config, async move {
            let _ = stopped.await;
        }));
        Server { addr, stop: Some(stop), task }
    }

    /// Asks the server to shut down (like SIGTERM).
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn client(&self, target: &str) -> WebSocket<TcpStream> {
        connect(self.addr, target, None).await.unwrap()
    }

    /// A client that offers permessage-deflate, as browsers do.
    pub async fn deflate_client(&self, target: &str) -> WebSocket<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let request = ClientRequest::new(self.addr.to_string(), target).unwrap();
        let config = wsproto::Config::builder()
            .ping_interval(None)
            .deflate(wsproto::deflate::DeflateConfig::new())
            .build()
            .unwrap();
        wsproto::stream::connect(tcp, &request, config).await.unwrap().0
    }

    /// A plain HTTP GET; returns the whole response as text.
    pub async fn get(&self, path: &str) -> String {
        let mut tcp = TcpStream::connect(self.addr).await.unwrap();
        http_get(&mut tcp, path).await
    }

    /// The value of one metric line from /metrics.
    pub async fn metric(&self, name: &str) -> u64 {
        parse_metric(&self.get("/metrics").await, name)
    }
}

/// One metric's value from a /metrics response.
pub fn parse_metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing in {body:?}"))
}

pub async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, path: &str) -> String {
    io.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = io.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens a WebSocket at `target`, optionally with an Origin.
pub async fn connect(
    addr: SocketAddr,
    target: &str,
    origin: Option<&str>,
) -> Result<WebSocket<TcpStream>, wsproto::Error> {
    let tcp = TcpStream::connect(addr).await?;
    open(tcp, &addr.to_string(), target, origin).await
}

pub async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    host: &str,
    target: &str,
    origin: Option<&str>,
) -> Result<WebSocket<S>, wsproto::Error> {
    let mut request = ClientRequest::new(host, target)?;
    if let Some(origin) = origin {
        request = request.header("Origin", origin)?;
    }
    let config = wsproto::Config::builder().ping_interval(None).build().unwrap();
    let (ws, _) = wsproto::stream::connect(io, &request, config).await?;
    Ok(ws)
}

/// The next JSON event, skipping pings and pongs. Panics after 10 s of silence.
pub async fn next<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> Value {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await.expect("an event within 10 s");
        match event.unwrap() {
            Some(Event::Text(text)) => return serde_json::from_str(&text).unwrap(),
            Some(Event::Ping(_) | Event::Pong(_)) => continue,
            other => panic!("expected a text event, got {other:?}"),
        }
    }
}

/// The next event of `kind`, skipping others (presence notices and the like).
pub async fn next_of<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>, kind: &str) -> Value {
    loop {
        let v = next(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Reads until the server's close frame; returns it.
pub async fn close_of<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) -> CloseFrame {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await.expect("a close within 10 s");
        match event {
            Ok(Some(Event::Close(frame))) => return frame,
            Ok(Some(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

pub fn say(room: &str, text: &str) -> String {
    serde_json::json!({"type": "message", "room": room, "text": text}).to_string()
}

/// A config for tests: no rate limit unless the test sets one, quick shutdown.
pub fn config() -> chatd::Config {
    chatd::Config {
        rate_limit: 0,
        max_connections_per_ip: 0,
        shutdown_grace: Duration::from_secs(2),
        ..chatd::Config::default()
    }
}

pub mod redis;
pub mod tls;

/// The chatd binary running with `args`, its stderr lines on a channel. Killed when dropped.
pub struct Running {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Lines already read while waiting for another.
    seen: Vec<String>,
}

impl Running {
    pub fn start(args: &[&str]) -> Running {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"));
        command.args(args).env("RUST_LOG", "chatd=info").env("NO_COLOR", "1");
        Running::spawn(command)
    }

    /// Spawns `command` with its stderr lines sent to a channel.
    pub fn spawn(mut command: std::process::Command) -> Running {
        use std::io::BufRead;
        let mut child =
            command.stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running { child, lines, seen: Vec::new() }
    }

    /// The first log line containing `needle`, already seen or still to come (15 s at most).
    pub fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            match self.lines.recv_timeout(Duration::from_secs(15)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no log line containing {needle:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Sends a signal (`TERM`, `HUP`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill").args(["-s", name, &pid]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
