//! # 8. wiretap: watch a WebSocket conversation frame by frame
//!
//! Teaches: what really crosses the wire. A proxy sits between a client (a browser, or example
//! 7) and a server, forwards every byte unchanged, and prints the HTTP handshake and then every
//! frame in both directions, decoded: opcode, FIN, whether and how it is masked, which length
//! form was used, a payload preview, and the meaning of close codes.
//!
//! Run: `cargo run --release -p chatd` (port 8080), then
//! `cargo run -p examples --example 08_wiretap -- 127.0.0.1:9000 127.0.0.1:8080`, and open
//! http://127.0.0.1:9000 in a browser: the chat page loads through the tap and you watch it talk
//! (plain ws:// only; a TLS tap would need the server's key). Last of the examples: from here,
//! read `wsproto/src/connection.rs`.

use std::fmt::Write;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wsproto::frame::mask::apply_mask;
use wsproto::frame::{FrameHeader, OpCode};
use wsproto::CloseCode;

/// Most bytes buffered per direction while waiting for a frame to complete. Bigger frames are
/// forwarded without being decoded.
const MAX_BUFFER: usize = 1 << 20;

/// Decodes one direction of a connection: the HTTP head, then frames. Sans-IO: bytes in,
/// printable lines out.
#[derive(Debug)]
pub struct Tap {
    arrow: &'static str,
    buf: Vec<u8>,
    in_head: bool,
    lost: bool,
}

/// What a close code means, in a few words (RFC 6455 §7.4.1 and the IANA registry).
fn meaning(code: CloseCode) -> &'static str {
    match code {
        CloseCode::Normal => "normal closure",
        CloseCode::GoingAway => "going away (server shutdown or page left)",
        CloseCode::ProtocolError => "protocol error",
        CloseCode::UnsupportedData => "unsupported data",
        CloseCode::InvalidPayload => "invalid payload (e.g. bad UTF-8)",
        CloseCode::PolicyViolation => "policy violation",
        CloseCode::MessageTooBig => "message too big",
        CloseCode::MandatoryExtension => "extension required",
        CloseCode::InternalError => "internal error",
        CloseCode::TryAgainLater => "try again later (overloaded / too slow)",
        _ => "application-defined or unregistered",
    }
}

impl Tap {
    /// A tap for one direction, labelled e.g. `"client → server"`.
    pub fn new(arrow: &'static str) -> Self {
        Tap { arrow, buf: Vec::new(), in_head: true, lost: false }
    }

    /// Feeds bytes seen in this direction; returns the lines to print.
    pub fn feed(&mut self, data: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        if self.lost {
            return lines;
        }
        self.buf.extend_from_slice(data);
        if self.in_head {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else { return lines };
            for line in String::from_utf8_lossy(&self.buf[..end]).lines() {
                lines.push(format!("{} HTTP  {line}", self.arrow));
            }
            self.buf.drain(..end + 4);
            self.in_head = false;
        }
        loop {
            let (header, used) = match FrameHeader::decode(&self.buf) {
                Ok(Some(found)) => found,
                Ok(None) => break,
                Err(e) => {
                    lines.push(format!("{} !! not a valid frame: {e}; no longer decoding", self.arrow));
                    self.lost = true;
                    break;
                }
            };
            let total = used as u64 + header.payload_len;
            if total > MAX_BUFFER as u64 {
                lines.push(format!(
                    "{} !! frame of {} bytes: too big to show; no longer decoding",
                    self.arrow, header.payload_len
                ));
                self.lost = true;
                break;
            }
            if (self.buf.len() as u64) < total {
                break;
            }
            let mut payload = self.buf[used..total as usize].to_vec();
            self.buf.drain(..total as usize);
            lines.push(self.describe(&header, used, &mut payload));
        }
        lines
    }

    fn describe(&self, h: &FrameHeader, header_len: usize, payload: &mut [u8]) -> String {
        let mut line =
            format!("{} {:<6} fin={}", self.arrow, format!("{:?}", h.opcode).to_uppercase(), u8::from(h.fin));
        if h.rsv != 0 {
            let _ = write!(line, " rsv={:03b}", h.rsv);
        }
        let form = match header_len - if h.mask.is_some() { 4 } else { 0 } {
            2 => "7-bit",
            4 => "16-bit",
            _ => "64-bit",
        };
        let _ = write!(line, " len={} ({form} length)", h.payload_len);
        match h.mask {
            Some(key) => {
                let _ = write!(line, " masked key={:02x}{:02x}{:02x}{:02x}", key[0], key[1], key[2], key[3]);
                apply_mask(payload, key, 0);
            }
            None => line.push_str(" unmasked"),
        }
        match h.opcode {
            OpCode::Close if payload.len() >= 2 => {
                let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
                let reason = String::from_utf8_lossy(&payload[2..]);
                let _ = write!(line, " code={} ({}) reason={reason:?}", code.as_u16(), meaning(code));
            }
            OpCode::Binary => {
                let preview: Vec<String> = payload.iter().take(16).map(|b| format!("{b:02x}")).collect();
                let _ = write!(line, " [{}{}]", preview.join(" "), if payload.len() > 16 { " …" } else { "" });
            }
            _ if !payload.is_empty() => {
                let text = String::from_utf8_lossy(payload);
                let preview: String = text.chars().take(80).collect();
                let _ = write!(line, " {preview:?}{}", if text.chars().count() > 80 { "…" } else { "" });
            }
            _ => {}
        }
        line
    }
}

/// Copies `from` to `to`, passing every chunk through `tap`, until either side closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut tap: Tap,
    out: mpsc::UnboundedSender<String>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        for line in tap.feed(&buf[..n]) {
            let _ = out.send(line);
        }
    }
    let _ = to.shutdown().await;
}

/// Proxies every connection on `listener` to `upstream`, sending decoded lines to `out`.
pub async fn wiretap(
    listener: TcpListener,
    upstream: String,
    out: mpsc::UnboundedSender<String>,
) -> std::io::Result<()> {
    loop {
        let (client, peer) = listener.accept().await?;
        let server = match TcpStream::connect(&upstream).await {
            Ok(server) => server,
            Err(e) => {
                let _ = out.send(format!("!! cannot reach {upstream}: {e}"));
                continue;
            }
        };
        let _ = out.send(format!("== connection from {peer}"));
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        tokio::spawn(pump(client_read, server_write, Tap::new("client → server"), out.clone()));
        tokio::spawn(pump(server_read, client_write, Tap::new("server → client"), out.clone()));
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9000".into());
    let upstream = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = TcpListener::bind(&listen).await?;
    println!("wiretap: http://{listen} -> {upstream}");
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            println!("{line}");
        }
    });
    wiretap(listener, upstream, tx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsproto::handshake::client::ClientRequest;
    use wsproto::{Config, Event};

    #[test]
    fn annotates_the_rfc_examples_fed_byte_by_byte() {
        let mut tap = Tap::new(">");
        let mut lines = tap.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
        let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, 0x88, 0x02, 0x03, 0xe9];
        for b in wire {
            lines.extend(tap.feed(&[b]));
        }
        assert_eq!(lines[0], "> HTTP  HTTP/1.1 101 Switching Protocols");
        assert_eq!(lines[2], "> TEXT   fin=1 len=5 (7-bit length) masked key=37fa213d \"Hello\"");
        assert_eq!(lines[3], "> CLOSE  fin=1 len=2 (7-bit length) unmasked code=1001 (going away (server shutdown or page left)) reason=\"\"");
    }

    #[tokio::test]
    async fn taps_a_real_conversation() {
        // An echo server upstream.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = upstream.accept().await.unwrap();
            let mut ws = wsproto::stream::accept(tcp, Config::default()).await.unwrap();
            while let Ok(Some(event)) = ws.recv().await {
                if let Event::Text(text) = event {
                    ws.send_text(text).await.unwrap();
                }
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tap_addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(wiretap(listener, upstream_addr.to_string(), tx));

        let tcp = TcpStream::connect(tap_addr).await.unwrap();
        let request = ClientRequest::new(tap_addr.to_string(), "/").unwrap();
        let config = Config::builder().ping_interval(None).build().unwrap();
        let (mut ws, _) = wsproto::stream::connect(tcp, &request, config).await.unwrap();
        ws.send_text("through the tap").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Event::Text("through the tap".into())));
        ws.close(wsproto::CloseCode::Normal, "done").await.unwrap();
        while let Ok(Some(_)) = ws.recv().await {}

        let mut seen = Vec::new();
        while !seen.iter().any(|l: &String| l.starts_with("server → client CLOSE")) {
            seen.push(tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv()).await.unwrap().unwrap());
        }
        let has = |prefix: &str, part: &str| seen.iter().any(|l| l.starts_with(prefix) && l.contains(part));
        assert!(has("client → server HTTP", "GET / HTTP/1.1"));
        assert!(has("server → client HTTP", "101 Switching Protocols"));
        assert!(has("client → server TEXT", "masked key="), "{seen:#?}");
        assert!(has("server → client TEXT", "unmasked \"through the tap\""));
        assert!(has("client → server CLOSE", "code=1000 (normal closure) reason=\"done\""));
    }
}
