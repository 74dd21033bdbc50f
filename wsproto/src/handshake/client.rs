//! RFC 6455 §4.1 — the client's side of the opening handshake.
//!
//! The client sends a GET with a fresh random 16-byte key, base64-encoded ("The nonce MUST be
//! selected randomly for each connection"), then checks the answer:
//!
//! | §4.1 rule for the response | failure |
//! |---|---|
//! | "If the status code received from the server is not 101, [...] handles the response per HTTP procedures" | [`HandshakeError::UnexpectedStatus`] |
//! | "If the response lacks an \|Upgrade\| header field or it contains a value that is not an ASCII case-insensitive match for 'websocket'" | [`HandshakeError::BadResponse`] |
//! | "If the response lacks a \|Connection\| header field or it doesn't contain a token that is an ASCII case-insensitive match for 'Upgrade'" | [`HandshakeError::BadResponse`] |
//! | "If the \|Sec-WebSocket-Accept\| contains a value other than the base64-encoded SHA-1 of the concatenation of the \|Sec-WebSocket-Key\| [...] with the string '258EAFA5-...'" | [`HandshakeError::BadResponse`] |
//! | "If the response includes a \|Sec-WebSocket-Extensions\| header field and this header field indicates the use of an extension that was not present in the client's handshake" | [`HandshakeError::BadResponse`] |
//! | "If the response includes a \|Sec-WebSocket-Protocol\| header field and this header field indicates the use of a subprotocol that was not present in the client's handshake" | [`HandshakeError::BadResponse`] |

use base64::Engine;

use super::{accept_key, parse_error, tokens, valid_header, HeadBuffer};
use crate::config::Config;
use crate::deflate::{negotiate, DeflateConfig, PerMessageDeflate};
use crate::error::{HandshakeError, UsageError};
use crate::rand::Rng;

/// What the client asks for: where, and with which optional headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    host: String,
    target: String,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
}

impl ClientRequest {
    /// A request for `target` (e.g. `/ws?room=lobby`) on `host` (e.g. `example.com:8080`).
    pub fn new(host: impl Into<String>, target: impl Into<String>) -> Result<Self, UsageError> {
        let (host, target) = (host.into(), target.into());
        if !valid_header("Host", &host) || !target.starts_with('/') || target.bytes().any(|b| b <= b' ') {
            return Err(UsageError::InvalidHeader);
        }
        Ok(ClientRequest { host, target, protocols: Vec::new(), headers: Vec::new() })
    }

    /// Offers a subprotocol (§4.1 item 10); call again to offer more, most preferred first.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Result<Self, UsageError> {
        let protocol = protocol.into();
        if protocol.is_empty() || !protocol.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(UsageError::InvalidHeader);
        }
        self.protocols.push(protocol);
        Ok(self)
    }

    /// Adds a header, e.g. `Origin` or `Authorization`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Result<Self, UsageError> {
        let (name, value) = (name.into(), value.into());
        if !valid_header(&name, &value) {
            return Err(UsageError::InvalidHeader);
        }
        self.headers.push((name, value));
        Ok(self)
    }
}

/// The client handshake in progress: the request bytes to send, then the response reader.
#[derive(Debug)]
pub struct ClientHandshake {
    expected_accept: String,
    protocols: Vec<String>,
    head: HeadBuffer,
    max_headers: usize,
    deflate: Option<DeflateConfig>,
}

impl ClientHandshake {
    /// Starts a handshake with a fresh random key. Returns the state and the request bytes to
    /// send.
    pub fn new(request: &ClientRequest, config: &Config) -> (Self, Vec<u8>) {
        let key = base64::engine::general_purpose::STANDARD.encode(Rng::new().bytes16());
        Self::with_key(request, config, &key)
    }

    /// Like [`new`](Self::new) with a chosen key: for tests and the RFC's example only. A real
    /// client must use a fresh random key.
    pub fn with_key(request: &ClientRequest, config: &Config, key: &str) -> (Self, Vec<u8>) {
        let mut out = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            request.target, request.host
        );
        if !request.protocols.is_empty() {
            out.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", request.protocols.join(", ")));
        }
        if let Some(deflate) = config.deflate() {
            out.push_str(&format!("Sec-WebSocket-Extensions: {}\r\n", negotiate::offer(deflate)));
        }
        for (name, value) in &request.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let state = ClientHandshake {
            expected_accept: accept_key(key.as_bytes()),
            protocols: request.protocols.clone(),
            head: HeadBuffer::new(config.max_head_size()),
            max_headers: config.max_headers(),
            deflate: config.deflate().copied(),
        };
        (state, out.into_bytes())
    }

    /// Feeds response bytes. `Ok(None)` until the head is complete; then the checked response
    /// and the bytes that followed the head (the server's first frames).
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(Response, Vec<u8>)>, HandshakeError> {
        let Some(end) = self.head.push(data)? else { return Ok(None) };
        let bytes = self.head.bytes();
        let response = self.check(&bytes[..end])?;
        Ok(Some((response, bytes[end..].to_vec())))
    }

    fn check(&self, head: &[u8]) -> Result<Response, HandshakeError> {
        let mut slots = vec![httparse::EMPTY_HEADER; self.max_headers];
        let mut res = httparse::Response::new(&mut slots);
        if res.parse(head).map_err(parse_error)?.is_partial() {
            return Err(HandshakeError::Malformed("incomplete head"));
        }
        let status = res.code.unwrap_or(0);
        if status != 101 {
            return Err(HandshakeError::UnexpectedStatus(status));
        }
        let all =
            |name: &'static str| res.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
        if !all("upgrade").flat_map(tokens).any(|t| t.eq_ignore_ascii_case(b"websocket")) {
            return Err(HandshakeError::BadResponse("Upgrade is not websocket"));
        }
        if !all("connection").flat_map(tokens).any(|t| t.eq_ignore_ascii_case(b"upgrade")) {
            return Err(HandshakeError::BadResponse("Connection lacks Upgrade"));
        }
        let mut accepts = all("sec-websocket-accept");
        match (accepts.next(), accepts.next()) {
            (Some(v), None) if v.trim_ascii() == self.expected_accept.as_bytes() => {}
            _ => return Err(HandshakeError::BadResponse("Sec-WebSocket-Accept does not match the key")),
        }
        let answer = negotiate::parse(all("sec-websocket-extensions")).map_err(|e| HandshakeError::BadResponse(e.0))?;
        let deflate = match &self.deflate {
            None if !answer.is_empty() => return Err(HandshakeError::BadResponse("extension that was not offered")),
            None => None,
            Some(config) => negotiate::check_answer(&answer, config).map_err(|e| HandshakeError::BadResponse(e.0))?,
        };
        let mut chosen = all("sec-websocket-protocol").flat_map(tokens);
        let protocol = match (chosen.next(), chosen.next()) {
            (None, _) => None,
            (Some(p), None) => match self.protocols.iter().find(|o| o.as_bytes() == p) {
                Some(offered) => Some(offered.clone()),
                None => return Err(HandshakeError::BadResponse("subprotocol that was not offered")),
            },
            _ => return Err(HandshakeError::BadResponse("more than one subprotocol")),
        };
        let headers = res.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
        Ok(Response { protocol, headers, deflate })
    }
}

/// The server's checked `101` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    protocol: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    deflate: Option<PerMessageDeflate>,
}

impl Response {
    /// The subprotocol the server selected, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The `permessage-deflate` agreement, if the server accepted the offer, for
    /// [`Connection::with_deflate`](crate::Connection::with_deflate).
    pub fn deflate(&self) -> Option<PerMessageDeflate> {
        self.deflate
    }

    /// The first header called `name` (any case), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}
