//! Hostile input against a running chatd, plain and TLS. Every case asserts the exact HTTP
//! status or close code, that a well-behaved client in the same server still chats, and (for
//! the floods) that memory stays bounded. Tests in this file run one at a time (they measure
//! this process's RSS, and chatd runs in-process).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::tls::{temp_dir, write_pair, TestCa};
use common::{config, next, next_of, say, Server};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use wsproto::frame::mask::apply_mask;
use wsproto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use wsproto::{Connection, Event, Role};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A server under test: chatd plain or TLS, or a bare wsproto echo server.
struct Target {
    addr: std::net::SocketAddr,
    /// `None` for the echo server.
    server: Option<Server>,
    ca: Option<TestCa>,
    _dir: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Chat,
    ChatTls,
    Echo,
}

const KINDS: [Kind; 3] = [Kind::Chat, Kind::ChatTls, Kind::Echo];

/// A bare echo server on wsproto, like `examples/04_echo_server.rs` with the library defaults.
async fn echo_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let Ok(mut ws) = wsproto::stream::accept(tcp, wsproto::Config::default()).await else { return };
                while let Ok(Some(event)) = ws.recv().await {
                    let sent = match event {
                        Event::Text(text) => ws.send_text(text).await,
                        Event::Binary(data) => ws.send_binary(data).await,
                        _ => Ok(()),
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

impl Target {
    async fn start(kind: Kind, cfg: chatd::Config) -> Target {
        match kind {
            Kind::Echo => Target { addr: echo_server().await, server: None, ca: None, _dir: None },
            Kind::Chat => {
                let server = Server::start(cfg).await;
                Target { addr: server.addr, server: Some(server), ca: None, _dir: None }
            }
            Kind::ChatTls => {
                let ca = TestCa::new();
                let dir = temp_dir(&format!("adv-{}", rand_suffix()));
                let (cert, key) = write_pair(&dir, &ca.issue());
                let server = Server::start(chatd::Config { tls: Some(chatd::TlsFiles { cert, key }), ..cfg }).await;
                Target { addr: server.addr, server: Some(server), ca: Some(ca), _dir: Some(dir) }
            }
        }
    }

    fn is_chat(&self) -> bool {
        self.server.is_some()
    }

    async fn raw(&self) -> Box<dyn Io> {
        match &self.ca {
            None => Box::new(TcpStream::connect(self.addr).await.unwrap()),
            Some(ca) => Box::new(ca.connect(self.addr).await.unwrap()),
        }
    }

    /// A client that should never notice the attacks.
    async fn bystander(&self, nick: &str) -> Bystander {
        let target = if self.is_chat() { format!("/ws?room=calm&nick={nick}") } else { "/".to_owned() };
        let mut ws = common::open(self.raw().await, "localhost", &target, None).await.unwrap();
        if self.is_chat() {
            next(&mut ws).await;
        }
        Bystander { ws, chat: self.is_chat() }
    }

    async fn metric(&self, name: &str) -> u64 {
        let mut io = self.raw().await;
        common::parse_metric(&common::http_get(&mut io, "/metrics").await, name)
    }
}

struct Bystander {
    ws: wsproto::stream::WebSocket<Box<dyn Io>>,
    chat: bool,
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish() as u32
}

/// The bystander still chats: its message comes back.
async fn still_chatting(by: &mut Bystander, text: &str) {
    if by.chat {
        by.ws.send_text(say("calm", text)).await.unwrap();
        assert_eq!(next_of(&mut by.ws, "message").await["text"], text);
    } else {
        by.ws.send_text(text).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(10), by.ws.recv()).await.unwrap().unwrap();
        assert_eq!(echoed, Some(Event::Text(text.into())));
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

const REQUEST: &str = "GET /ws?room=r HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Sends `bytes` and returns the HTTP status of the answer (0 if the server just closed).
async fn status_for(io: &mut Box<dyn Io>, bytes: &[u8], pieces: usize) -> u16 {
    for chunk in bytes.chunks(bytes.len().div_ceil(pieces.max(1)).max(1)) {
        if io.write_all(chunk).await.is_err() || io.flush().await.is_err() {
            break;
        }
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf)).await.expect("an answer") {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    text.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn with_header(line: &str) -> String {
    REQUEST.replacen("\r\n\r\n", &format!("\r\n{line}\r\n\r\n"), 1)
}

fn without(header: &str) -> String {
    REQUEST.split("\r\n").filter(|l| !l.starts_with(header)).collect::<Vec<_>>().join("\r\n")
}

#[tokio::test]
async fn hostile_handshakes_get_exact_statuses_plain_and_tls() {
    let _serial = SERIAL.lock().await;
    let many_headers = {
        let mut r = String::from("GET /ws HTTP/1.1\r\nHost: localhost\r\n");
        for i in 0..10_000 {
            r.push_str(&format!("a{i}:b\r\n"));
        }
        r + "\r\n"
    };
    let oversize = with_header(&format!("X-Big: {}", "a".repeat(9000)));
    let cases: Vec<(&str, String, usize, u16)> = vec![
        ("missing key", without("Sec-WebSocket-Key"), 1, 400),
        ("invalid key", REQUEST.replace("dGhlIHNhbXBsZSBub25jZQ==", "short"), 1, 400),
        ("duplicated key", with_header("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="), 1, 400),
        ("missing version", without("Sec-WebSocket-Version"), 1, 426),
        ("wrong version", REQUEST.replace("Version: 13", "Version: 12"), 1, 426),
        ("duplicated version", with_header("Sec-WebSocket-Version: 13"), 1, 400),
        ("missing Host", without("Host"), 1, 400),
        ("duplicated Host", with_header("Host: other"), 1, 400),
        ("wrong method", REQUEST.replacen("GET", "PUT", 1), 1, 405),
        ("HTTP/1.0", REQUEST.replacen("HTTP/1.1", "HTTP/1.0", 1), 1, 400),
        ("header folding", with_header("X-Folded: a\r\n b"), 1, 400),
        ("body on the GET", with_header("Content-Length: 3") + "abc", 1, 400),
        ("oversize head", oversize.clone(), 1, 431),
        ("oversize head in small pieces", oversize, 400, 431),
        ("10,000 tiny headers", many_headers, 1, 431),
    ];
    for kind in KINDS {
        let target = Target::start(kind, config()).await;
        let mut calm = target.bystander("calm").await;
        let before = rss_kib();
        for (name, request, pieces, expected) in &cases {
            let mut io = target.raw().await;
            let request = if target.is_chat() { request.clone() } else { request.replace("/ws?room=r", "/") };
            assert_eq!(status_for(&mut io, request.as_bytes(), *pieces).await, *expected, "{name} ({kind:?})");
        }
        still_chatting(&mut calm, "unbothered").await;
        if target.is_chat() {
            assert!(target.metric("chatd_rejected_total{reason=\"bad_handshake\"}").await >= cases.len() as u64);
        }
        assert!(rss_kib() < before + 32 * 1024, "handshake garbage must not grow memory");
    }
}

#[tokio::test]
async fn bytes_pipelined_after_the_head_are_frames() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(Kind::Chat, config()).await;
    // Head and first frame in one write: the frame must reach the frame parser.
    let mut raw = Raw::open_with(&target, "p", &client_frame(OpCode::Text, true, b"straight after the head")).await;
    let events =
        raw.events(|events| events.iter().any(|e| matches!(e, Event::Text(t) if t.contains("straight after")))).await;
    assert!(events.iter().any(|e| matches!(e, Event::Text(t) if t.contains("\"hello\""))), "{events:?}");
}

/// A masked frame from a client.
fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    raw_frame((0x80 * u8::from(fin)) | opcode.as_u8(), payload.len() as u64, payload)
}

/// A masked frame with a hand-made first byte and announced length.
fn raw_frame(b0: u8, announced: u64, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let header = FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 7,
        opcode: OpCode::from_u8(b0 & 0xf).unwrap_or(OpCode::Binary),
        mask: Some(key),
        payload_len: announced,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let used = header.encode(&mut head);
    head[0] = b0; // keep reserved opcodes as given
    let mut out = head[..used].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
    out
}

/// A hand-driven client: raw bytes out, server frames decoded with a client `Connection`.
struct Raw {
    io: Box<dyn Io>,
    conn: Connection,
    head: Vec<u8>,
    upgraded: bool,
}

impl Raw {
    /// Sends the upgrade request (for `room`) without waiting for the answer.
    async fn open(target: &Target, room: &str) -> Raw {
        Raw::open_with(target, room, b"").await
    }

    /// Sends the upgrade request and `after` in the same write (pipelined).
    async fn open_with(target: &Target, room: &str, after: &[u8]) -> Raw {
        let mut io = target.raw().await;
        let mut bytes = REQUEST.replace("room=r", &format!("room={room}")).into_bytes();
        bytes.extend_from_slice(after);
        io.write_all(&bytes).await.unwrap();
        io.flush().await.unwrap();
        Raw { io, conn: Connection::new(Role::Client, wsproto::Config::default()), head: Vec::new(), upgraded: false }
    }

    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.io.write_all(bytes).await;
        let _ = self.io.flush().await;
    }

    /// Reads until `done` holds for the events so far, a close arrives, or the server hangs up.
    async fn events(&mut self, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut events = Vec::new();
        loop {
            let n = match tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut buf))
                .await
                .expect("server answers")
            {
                Ok(0) | Err(_) => return events,
                Ok(n) => n,
            };
            if self.upgraded {
                self.conn.receive(&buf[..n]);
            } else {
                self.head.extend_from_slice(&buf[..n]);
                let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                assert!(self.head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&self.head));
                self.conn.receive(&self.head[end + 4..]);
                self.upgraded = true;
            }
            while let Ok(Some(event)) = self.conn.next_event() {
                events.push(event);
            }
            if done(&events) || events.iter().any(|e| matches!(e, Event::Close(_))) {
                return events;
            }
        }
    }
}

fn close_code(events: &[Event]) -> Option<u16> {
    events.iter().find_map(|e| if let Event::Close(frame) = e { Some(frame.code.as_u16()) } else { None })
}

/// Opens a WebSocket by hand, sends `attack` after the hello, returns the close code.
async fn close_code_for(target: &Target, attack: &[u8]) -> Option<u16> {
    let mut raw = Raw::open(target, "attack").await;
    if target.is_chat() {
        raw.events(|e| !e.is_empty()).await; // the hello
    }
    raw.send(attack).await;
    close_code(&raw.events(|_| false).await)
}

#[tokio::test]
async fn hostile_frames_get_exact_close_codes_plain_and_tls() {
    let _serial = SERIAL.lock().await;
    let mut length_msb = vec![0x82, 0xff];
    length_msb.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
    length_msb.extend_from_slice(&[1, 2, 3, 4]);
    let mut unmasked = vec![0x81, 0x02];
    unmasked.extend_from_slice(b"hi");
    let mut fragments = client_frame(OpCode::Text, false, b"a");
    for _ in 0..10_000 {
        fragments.extend(client_frame(OpCode::Continuation, false, b""));
    }
    let mut split_utf8 = client_frame(OpCode::Text, false, &[b'a', 0xf0, 0x9f]);
    split_utf8.extend(client_frame(OpCode::Continuation, true, &[0x28]));
    let mut truncated = client_frame(OpCode::Text, false, b"ok");
    truncated.extend(client_frame(OpCode::Continuation, true, &[0xe2, 0x82]));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked client frame", unmasked, 1002),
        ("RSV1 set", raw_frame(0x80 | 0x40 | 0x1, 2, b"hi"), 1002),
        ("reserved opcode 0x3", raw_frame(0x83, 0, b""), 1002),
        ("reserved control opcode 0xB", raw_frame(0x8b, 0, b""), 1002),
        ("fragmented ping", client_frame(OpCode::Ping, false, b"x"), 1002),
        ("ping over 125 bytes", client_frame(OpCode::Ping, true, &[0; 126]), 1002),
        ("continuation without start", client_frame(OpCode::Continuation, true, b"x"), 1002),
        ("64-bit length with the MSB set", length_msb, 1002),
        ("announced 2^62 bytes, none sent", raw_frame(0x82, 1 << 62, b""), 1009),
        ("10,000 fragments", fragments, 1009),
        ("invalid UTF-8", client_frame(OpCode::Text, true, &[b'o', b'k', 0xff]), 1007),
        ("invalid UTF-8 split across fragments", split_utf8, 1007),
        ("truncated UTF-8", truncated, 1007),
        ("invalid close code 1005", client_frame(OpCode::Close, true, &1005u16.to_be_bytes()), 1002),
        ("invalid close code 5000", client_frame(OpCode::Close, true, &5000u16.to_be_bytes()), 1002),
        ("one-byte close", client_frame(OpCode::Close, true, &[3]), 1002),
        ("close reason not UTF-8", client_frame(OpCode::Close, true, &[0x03, 0xe8, 0xc0]), 1007),
        ("binary frame", client_frame(OpCode::Binary, true, b"\x00"), 1003),
    ];
    for kind in KINDS {
        let target = Target::start(kind, config()).await;
        let mut calm = target.bystander("calm").await;
        let before = rss_kib();
        for (name, attack, expected) in &cases {
            if !target.is_chat() && *name == "binary frame" {
                continue; // an echo server accepts binary
            }
            assert_eq!(close_code_for(&target, attack).await, Some(*expected), "{name} ({kind:?})");
        }
        still_chatting(&mut calm, "unbothered").await;
        assert!(rss_kib() < before + 32 * 1024, "memory bounded after the frame attacks");
    }
}

#[tokio::test]
async fn a_flood_of_empty_messages_is_rate_limited_with_1008() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(Kind::Chat, chatd::Config { rate_limit: 10, rate_burst: 20, ..config() }).await;
    let mut calm = target.bystander("calm").await;
    let mut flood = Vec::new();
    for _ in 0..10_000 {
        flood.extend(client_frame(OpCode::Text, true, b""));
    }
    assert_eq!(close_code_for(&target, &flood).await, Some(1008));
    still_chatting(&mut calm, "unbothered").await;
}

#[tokio::test]
async fn two_hundred_thousand_unread_pings_keep_memory_flat() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(Kind::Chat, config()).await;
    let mut calm = target.bystander("calm").await;
    let mut raw = Raw::open(&target, "pings").await;
    let ping = client_frame(OpCode::Ping, true, &[7; 100]);
    let before = rss_kib();
    let batch: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 1000).collect();
    // 200,000 pings (~21 MB), never reading a pong. Writes stop when the server stops reading
    // (its pongs can't be written either): then memory must still be bounded and others fine.
    for _ in 0..200 {
        match tokio::time::timeout(Duration::from_secs(2), raw.io.write_all(&batch)).await {
            Ok(Ok(())) => {}
            _ => break, // backpressure: the server is not buffering our flood
        }
    }
    still_chatting(&mut calm, "unbothered").await;
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 48 * 1024, "RSS grew {grown} KiB under a ping flood");
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_closed_with_1011() {
    let _serial = SERIAL.lock().await;
    let cfg = chatd::Config {
        ping_interval: Duration::from_millis(300),
        pong_timeout: Duration::from_millis(300),
        ..config()
    };
    let target = Target::start(Kind::Chat, cfg).await;
    let mut raw = Raw::open(&target, "silent").await;
    // Read (so the pings and the close reach us) but never answer.
    let events = raw.events(|_| false).await;
    assert!(events.iter().any(|e| matches!(e, Event::Ping(_))), "pinged first: {events:?}");
    assert_eq!(close_code(&events), Some(1011));
}

#[tokio::test]
async fn slow_and_broken_peers_do_not_hurt_others() {
    let _serial = SERIAL.lock().await;
    let target =
        Target::start(Kind::Chat, chatd::Config { handshake_timeout: Duration::from_secs(1), ..config() }).await;
    let mut calm = target.bystander("calm").await;
    // A head trickled slower than the deadline allows: 408 at the deadline.
    let mut io = target.raw().await;
    let started = std::time::Instant::now();
    let trickle = async {
        for b in REQUEST.as_bytes() {
            if io.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await; // 4 bytes/s, the attacker's pace
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut answer)).await;
    assert!(answer.starts_with(b"HTTP/1.1 408 "), "{}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() < Duration::from_secs(4));
    // A reset in the middle of a frame.
    let mut raw = Raw::open(&target, "reset").await;
    raw.events(|e| !e.is_empty()).await;
    let frame = client_frame(OpCode::Text, true, &[b'x'; 1000]);
    raw.send(&frame[..500]).await;
    drop(raw); // closes mid-frame
    still_chatting(&mut calm, "unbothered").await;
}

#[tokio::test]
async fn two_thousand_concurrent_connections() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(Kind::Chat, chatd::Config { max_connections: 2_500, ..config() }).await;
    let mut calm = target.bystander("calm").await;
    let addr = target.addr;
    let before = rss_kib();
    let mut clients = Vec::new();
    for chunk in 0..20 {
        let opened = (0..100).map(|i| async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut ws = common::open(tcp, "localhost", &format!("/ws?room=big{}&nick=n{chunk}x{i}", i % 10), None)
                .await
                .unwrap();
            next(&mut ws).await;
            ws
        });
        for ws in futures_join(opened).await {
            clients.push(ws);
        }
    }
    assert_eq!(target.metric("chatd_sessions").await, 2_001);
    let per_connection = rss_kib().saturating_sub(before) * 1024 / 2_000;
    still_chatting(&mut calm, "unbothered").await;
    drop(clients);
    // Memory per idle connection (client and server side both live in this process).
    assert!(per_connection < 64 * 1024, "{per_connection} bytes per connection pair");
}

/// Joins futures without an extra crate.
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Old TLS versions: a hand-made ClientHello offering only SSLv3, TLS 1.0 or TLS 1.1 gets an
/// alert (or a close), never a session.
#[tokio::test]
async fn old_tls_versions_are_refused() {
    let _serial = SERIAL.lock().await;
    let target = Target::start(Kind::ChatTls, config()).await;
    let mut calm = target.bystander("calm").await;
    for (name, version) in [("SSLv3", [3u8, 0]), ("TLS 1.0", [3, 1]), ("TLS 1.1", [3, 2])] {
        let mut hello = Vec::new();
        hello.extend_from_slice(&version); // client_version
        hello.extend_from_slice(&[0x42; 32]); // random
        hello.push(0); // session id
        hello.extend_from_slice(&[0, 4, 0x00, 0x2f, 0x00, 0x35]); // two RSA/AES-CBC suites
        hello.extend_from_slice(&[1, 0]); // null compression
        let mut handshake = vec![1u8, 0, (hello.len() >> 8) as u8, hello.len() as u8];
        handshake.extend_from_slice(&hello);
        let mut record = vec![0x16, version[0], version[1], (handshake.len() >> 8) as u8, handshake.len() as u8];
        record.extend_from_slice(&handshake);
        let mut tcp = TcpStream::connect(target.addr).await.unwrap();
        tcp.write_all(&record).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        // An alert record (0x15) or a bare close; never a ServerHello (a 0x16 record).
        assert!(answer.is_empty() || answer[0] == 0x15, "{name}: expected an alert, got {answer:02x?}");
    }
    still_chatting(&mut calm, "unbothered").await;
    assert!(target.metric("chatd_rejected_total{reason=\"tls\"}").await >= 3);
}

/// A client that never reads, in a room that is busy: it is dropped with 1013, the server's
/// memory stays bounded (its queue is capped), and the others' messages keep arriving promptly.
#[tokio::test]
async fn a_reader_that_never_reads_in_a_busy_room() {
    let _serial = SERIAL.lock().await;
    let cfg = chatd::Config {
        queue_messages: 64,
        queue_bytes: 256 * 1024,
        shutdown_grace: Duration::from_secs(10),
        ..config()
    };
    let target = Target::start(Kind::Chat, cfg).await;
    let mut calm = target.bystander("calm").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(target.addr).await.unwrap();
    let _staller = common::open(tcp, "localhost", "/ws?room=busy&nick=staller", None).await.unwrap();
    let mut listener = common::connect(target.addr, "/ws?room=busy&nick=listener", None).await.unwrap();
    next(&mut listener).await;
    let (mut echoes, sender) = common::connect(target.addr, "/ws?room=busy&nick=sender", None).await.unwrap().split();
    tokio::spawn(async move { while let Ok(Some(_)) = echoes.recv().await {} });
    let before = rss_kib();
    let text = "x".repeat(4000);
    let sending = tokio::spawn(async move {
        for i in 0..3000 {
            sender.send_text(say("busy", &format!("{i:04} {text}"))).await.unwrap();
        }
    });
    let mut worst = Duration::ZERO;
    let mut seen = 0;
    while seen < 3000 {
        let m = next(&mut listener).await;
        if m["type"] == "message" {
            seen += 1;
            let sent_ms = m["ts"].as_u64().unwrap();
            let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
            worst = worst.max(Duration::from_millis(now_ms.saturating_sub(sent_ms)));
        }
    }
    sending.await.unwrap();
    // Not a performance claim: a stalled peer must not hold the room up for seconds.
    assert!(worst < Duration::from_secs(2), "a message took {worst:?} from the server to the listener");
    assert_eq!(target.metric("chatd_slow_consumer_disconnects_total").await, 1);
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "RSS grew {grown} KiB");
    still_chatting(&mut calm, "unbothered").await;
}
