//! RFC 6455 §4 — the opening handshake.
//!
//! A WebSocket starts life as an HTTP/1.1 request that asks to switch protocols:
//!
//! ```text
//! GET /chat HTTP/1.1                              HTTP/1.1 101 Switching Protocols
//! Host: server.example.com                        Upgrade: websocket
//! Upgrade: websocket                    ──▶       Connection: Upgrade
//! Connection: Upgrade                   ◀──       Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
//! Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
//! Sec-WebSocket-Version: 13
//! ```
//!
//! - [`accept_key`]: the §1.3 proof that the server read the key (SHA-1 + base64).
//! - [`server`]: reading and validating the request (§4.2.1), answering 101 or an HTTP error
//!   (§4.2.2), with a hook for the embedder's own checks (Origin, path, subprotocols).
//! - [`client`]: building the request (§4.1) and checking the server's answer.
//!
//! Both sides read the head through the same incremental scanner: each call looks only at the
//! bytes that arrived since the last call for the blank line that ends the head, and the head
//! is parsed once, when complete. Total work is linear in the head size however it is trickled
//! in (tungstenite re-parsed the whole buffer on every read: CVE-2023-43669).

pub mod client;
pub mod server;

use base64::Engine;
use sha1::{Digest, Sha1};

use crate::error::HandshakeError;

/// §1.3: the GUID appended to the client's key: "258EAFA5-E914-47DA-95CA-C5AB0DC85B11".
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// §1.3: `base64(SHA-1(key + GUID))`, the value of `Sec-WebSocket-Accept`.
///
/// ```
/// assert_eq!(wsproto::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Accumulates a head until its terminating blank line, scanning each byte once.
#[derive(Debug)]
pub(crate) struct HeadBuffer {
    buf: Vec<u8>,
    scanned: usize,
    limit: usize,
}

impl HeadBuffer {
    pub(crate) fn new(limit: usize) -> Self {
        HeadBuffer { buf: Vec::new(), scanned: 0, limit }
    }

    /// Appends `data`; returns the head's length once the blank line has arrived.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<Option<usize>, HandshakeError> {
        self.buf.extend_from_slice(data);
        // Three bytes of look-behind so a terminator split across calls is still seen.
        let from = self.scanned.saturating_sub(3);
        let end = head_end(&self.buf[from..]).map(|end| from + end);
        self.scanned = self.buf.len();
        match end {
            Some(end) if end <= self.limit => Ok(Some(end)),
            _ if self.buf.len() > self.limit => Err(HandshakeError::HeadTooLarge),
            Some(_) => Err(HandshakeError::HeadTooLarge),
            None => Ok(None),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Finds the end of an HTTP head: the index just past `\n\r\n` or `\n\n`.
fn head_end(s: &[u8]) -> Option<usize> {
    (1..s.len()).find_map(|i| {
        let lf = s[i] == b'\n';
        (lf && (s[i - 1] == b'\n' || (i >= 2 && s[i - 1] == b'\r' && s[i - 2] == b'\n'))).then_some(i + 1)
    })
}

/// Splits a comma-separated header value into trimmed, non-empty tokens (RFC 7230 §7).
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(|t| t.trim_ascii()).filter(|t| !t.is_empty())
}

/// Whether a header name or value may be written into a head (no CR, LF or NUL; names
/// non-empty tokens).
pub(crate) fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && value.bytes().all(|b| b != b'\r' && b != b'\n' && b != 0)
}

/// Maps `httparse`'s verdict to a short reason.
pub(crate) fn parse_error(e: httparse::Error) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders,
        httparse::Error::HeaderName => HandshakeError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HandshakeError::Malformed("invalid header value"),
        httparse::Error::NewLine => HandshakeError::Malformed("invalid line ending"),
        httparse::Error::Status => HandshakeError::Malformed("invalid status"),
        httparse::Error::Token => HandshakeError::Malformed("invalid token"),
        httparse::Error::Version => HandshakeError::Malformed("invalid HTTP version"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_1_3_accept_key() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn head_end_found_at_every_split() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nTAIL";
        for cut in 0..=head.len() {
            let mut h = HeadBuffer::new(1024);
            let first = h.push(&head[..cut]).unwrap();
            let end = first.or_else(|| h.push(&head[cut..]).unwrap());
            assert_eq!(end, Some(head.len() - 4), "cut {cut}");
        }
        let mut h = HeadBuffer::new(1024);
        let mut end = None;
        for b in head.iter() {
            end = end.or(h.push(&[*b]).unwrap());
        }
        assert_eq!(end, Some(head.len() - 4));
    }

    #[test]
    fn head_limit_is_431_even_when_trickled() {
        let mut h = HeadBuffer::new(300);
        let mut result = Ok(None);
        for _ in 0..400 {
            result = h.push(b"a");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(HandshakeError::HeadTooLarge));
        assert_eq!(HandshakeError::HeadTooLarge.status(), Some(431));
    }

    #[test]
    fn tokens_are_trimmed() {
        let t: Vec<&[u8]> = tokens(b" keep-alive ,Upgrade,, x").collect();
        assert_eq!(t, [&b"keep-alive"[..], b"Upgrade", b"x"]);
    }
}
