//! RFC 6455 §4.2 — the server's side of the opening handshake.
//!
//! 1. [`RequestReader`] collects the request head (at most
//!    [`Config::max_head_size`](crate::Config::max_head_size) bytes) and parses it once with
//!    `httparse`. Bytes that arrive after the head are returned untouched: they are the first
//!    WebSocket frames and belong to the [`Connection`](crate::Connection).
//! 2. [`Request`] gives the embedder path, query, headers, Origin and offered subprotocols. A
//!    server that also serves plain HTTP (a page, `/healthz`) looks at the path first.
//! 3. [`Request::accept`] validates §4.2.1 and builds the `101` answer; any failure is a
//!    [`HandshakeError`] whose [`response`](HandshakeError::response) is the HTTP error to send.
//!
//! §4.2.1 requires, and [`Request::validate`] checks, in this order:
//!
//! | rule | on failure |
//! |---|---|
//! | "An HTTP/1.1 or higher GET request" | 405 (`Allow: GET`) / 400 |
//! | "A \|Host\| header field" (exactly one) | 400 |
//! | "An \|Upgrade\| header field containing the value 'websocket'" | 426 if absent, 400 if wrong |
//! | "A \|Connection\| header field that includes the token 'Upgrade'" | 400 |
//! | "A \|Sec-WebSocket-Key\| header field [...] that, when decoded, is 16 bytes" (exactly one) | 400 |
//! | "A \|Sec-WebSocket-Version\| header field, with a value of 13" | 426 with `Sec-WebSocket-Version: 13` |
//!
//! A GET with a body is refused (400): after the head the bytes are frames.

use base64::Engine;

use super::{accept_key, parse_error, tokens, valid_header, HeadBuffer};
use crate::config::Config;
use crate::deflate::negotiate::{self, Extension};
use crate::deflate::{DeflateConfig, PerMessageDeflate};
use crate::error::{Error, HandshakeError, UsageError};

/// Reads a request head from bytes as they arrive. See the [module docs](self).
#[derive(Debug)]
pub struct RequestReader {
    head: HeadBuffer,
    max_headers: usize,
}

impl RequestReader {
    /// A reader with the head limits of `config`.
    pub fn new(config: &Config) -> Self {
        RequestReader { head: HeadBuffer::new(config.max_head_size()), max_headers: config.max_headers() }
    }

    /// Feeds bytes. Returns `Ok(None)` until the head is complete, then the parsed request and
    /// the bytes that followed the head.
    ///
    /// Errors: [`HandshakeError::HeadTooLarge`] / [`HandshakeError::TooManyHeaders`] (431),
    /// [`HandshakeError::Malformed`] (400).
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<(Request, Vec<u8>)>, HandshakeError> {
        let Some(end) = self.head.push(data)? else { return Ok(None) };
        let bytes = self.head.bytes();
        let request = Request::parse(&bytes[..end], self.max_headers)?;
        Ok(Some((request, bytes[end..].to_vec())))
    }
}

/// Where a part of the head lies in it: `head[start..end]`.
type Span = (usize, usize);

/// A parsed HTTP/1.1 request head, owned: one copy of the head's bytes, and where in it each
/// part lies (two allocations per request, not two per header).
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    head: Box<[u8]>,
    method: Span,
    target: Span,
    minor_version: u8,
    headers: Vec<(Span, Span)>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, String)> =
            self.headers().map(|(n, v)| (n, String::from_utf8_lossy(v).into_owned())).collect();
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("target", &self.target())
            .field("minor_version", &self.minor_version)
            .field("headers", &headers)
            .finish()
    }
}

/// Most header slots parsed on the stack; a larger `max_headers` takes them from the heap.
const STACK_HEADERS: usize = 64;

impl Request {
    /// Parses a complete head (ending in a blank line) with at most `max_headers` headers.
    pub fn parse(head: &[u8], max_headers: usize) -> Result<Request, HandshakeError> {
        let head: Box<[u8]> = head.into();
        let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
        let mut heap = Vec::new();
        let slots = if max_headers <= STACK_HEADERS {
            &mut stack[..max_headers]
        } else {
            heap.resize(max_headers, httparse::EMPTY_HEADER);
            &mut heap[..]
        };
        let mut req = httparse::Request::new(slots);
        match req.parse(&head).map_err(parse_error)? {
            httparse::Status::Complete(_) => {}
            httparse::Status::Partial => return Err(HandshakeError::Malformed("incomplete head")),
        }
        // httparse's slices point into `head`: their offsets are the spans.
        let span = |part: &[u8]| {
            let start = (part.as_ptr() as usize).saturating_sub(head.as_ptr() as usize);
            (start, start + part.len())
        };
        let method = span(req.method.unwrap_or_default().as_bytes());
        let target = span(req.path.unwrap_or_default().as_bytes());
        let minor_version = req.version.unwrap_or(0);
        let headers = req.headers.iter().map(|h| (span(h.name.as_bytes()), span(h.value))).collect();
        Ok(Request { method, target, minor_version, headers, head })
    }

    fn bytes(&self, (start, end): Span) -> &[u8] {
        self.head.get(start..end).unwrap_or_default()
    }

    /// A part httparse read as text (method, target, header names): UTF-8 by construction.
    fn text(&self, span: Span) -> &str {
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        self.text(self.method)
    }

    /// The request target as sent, e.g. `/ws?room=lobby`.
    pub fn target(&self) -> &str {
        self.text(self.target)
    }

    /// The path part of the target, e.g. `/ws`.
    pub fn path(&self) -> &str {
        let target = self.target();
        target.split_once('?').map_or(target, |(path, _)| path)
    }

    /// The query part of the target without `?`, e.g. `room=lobby`.
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, query)| query)
    }

    /// Every header in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|&(n, v)| (self.text(n), self.bytes(v)))
    }

    /// The values of every header called `name` (any case).
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |&&(n, _)| self.bytes(n).eq_ignore_ascii_case(name.as_bytes()))
            .map(|&(_, v)| self.bytes(v))
    }

    /// The first header called `name` (any case), if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        let &(_, value) = self.headers.iter().find(|&&(n, _)| self.bytes(n).eq_ignore_ascii_case(name.as_bytes()))?;
        std::str::from_utf8(self.bytes(value)).ok()
    }

    /// The single value of a header that must appear exactly once.
    fn exactly_one(&self, name: &'static str) -> Result<&[u8], HandshakeError> {
        let mut values = self.header_all(name);
        match (values.next(), values.next()) {
            (Some(v), None) => Ok(v),
            _ => Err(HandshakeError::BadHeader(name)),
        }
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.header("host")
    }

    /// The `Origin` header a browser sends (§4.2.1 item 7, §10.2). Non-browser clients usually
    /// send none.
    pub fn origin(&self) -> Option<&str> {
        self.header("origin")
    }

    /// The subprotocols the client offered, in its order of preference (§4.2.1 item 8).
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        self.header_all("sec-websocket-protocol").flat_map(tokens).filter_map(|t| std::str::from_utf8(t).ok())
    }

    /// The extensions the client offered (`Sec-WebSocket-Extensions`, every header, in order).
    /// A header that does not parse offers nothing.
    pub fn extensions(&self) -> Vec<Extension> {
        negotiate::parse(self.header_all("sec-websocket-extensions")).unwrap_or_default()
    }

    /// Whether the request asks to upgrade at all (has an `Upgrade` header). A server that also
    /// serves plain HTTP uses this to route.
    pub fn wants_upgrade(&self) -> bool {
        self.header_all("upgrade").next().is_some()
    }

    /// Checks the request against §4.2.1 (see the [module docs](self) for the rules and
    /// statuses). Returns the `Sec-WebSocket-Key`.
    pub fn validate(&self) -> Result<&[u8], HandshakeError> {
        if self.method() != "GET" {
            return Err(HandshakeError::MethodNotAllowed);
        }
        if self.minor_version < 1 {
            return Err(HandshakeError::HttpVersion);
        }
        if self.exactly_one("Host")?.is_empty() {
            return Err(HandshakeError::BadHeader("Host"));
        }
        let mut upgrade = self.header_all("upgrade").peekable();
        if upgrade.peek().is_none() {
            return Err(HandshakeError::UpgradeRequired);
        }
        if !upgrade.flat_map(tokens).any(|t| t.eq_ignore_ascii_case(b"websocket")) {
            return Err(HandshakeError::BadHeader("Upgrade"));
        }
        if !self.header_all("connection").flat_map(tokens).any(|t| t.eq_ignore_ascii_case(b"upgrade")) {
            return Err(HandshakeError::BadHeader("Connection"));
        }
        let key = self.exactly_one("Sec-WebSocket-Key")?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(key);
        if decoded.map_or(true, |k| k.len() != 16) {
            return Err(HandshakeError::BadHeader("Sec-WebSocket-Key"));
        }
        let mut versions = self.header_all("sec-websocket-version");
        match (versions.next(), versions.next()) {
            (Some(b"13"), None) => {}
            (Some(_), Some(_)) => return Err(HandshakeError::BadHeader("Sec-WebSocket-Version")),
            _ => return Err(HandshakeError::UnsupportedVersion),
        }
        let has_length = self.header_all("content-length").any(|v| v.trim_ascii() != b"0");
        if has_length || self.header_all("transfer-encoding").next().is_some() {
            return Err(HandshakeError::BodyNotAllowed);
        }
        Ok(key)
    }

    /// Validates the request and builds the `101 Switching Protocols` answer (§4.2.2 item 5).
    ///
    /// Errors: [`Error::Handshake`] when the request is invalid (send
    /// [`HandshakeError::response`]), [`Error::Usage`] when `accept` names a subprotocol the
    /// client did not offer or carries a header that can't be written.
    pub fn accept(&self, accept: &Accept) -> Result<Vec<u8>, Error> {
        let key = self.validate()?;
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
        out.extend_from_slice(b"Sec-WebSocket-Accept: ");
        out.extend_from_slice(accept_key(key).as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some((_, answer)) = &accept.deflate {
            push_header(&mut out, "Sec-WebSocket-Extensions", answer);
        }
        if let Some(protocol) = &accept.protocol {
            // §4.2.2: the server selects "one or none of the acceptable protocols" offered.
            if !self.protocols().any(|p| p == protocol) {
                return Err(UsageError::ProtocolNotOffered.into());
            }
            push_header(&mut out, "Sec-WebSocket-Protocol", protocol);
        }
        for (name, value) in &accept.headers {
            push_header(&mut out, name, value);
        }
        out.extend_from_slice(b"\r\n");
        Ok(out)
    }
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// How the embedder accepts a request: an optional subprotocol and extra response headers
/// (e.g. `Set-Cookie`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accept {
    protocol: Option<String>,
    headers: Vec<(String, String)>,
    deflate: Option<(PerMessageDeflate, String)>,
}

impl Accept {
    /// Accept with no subprotocol and no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Selects one of the subprotocols the client offered.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Result<Self, UsageError> {
        let protocol = protocol.into();
        if !valid_header("Sec-WebSocket-Protocol", &protocol) || protocol.is_empty() {
            return Err(UsageError::InvalidHeader);
        }
        self.protocol = Some(protocol);
        Ok(self)
    }

    /// Negotiates `permessage-deflate` (RFC 7692) with the client's offers in `request`, under
    /// `config`: accepts the first offer that can be honoured, or none. [`stream::upgrade`]
    /// does this by itself when [`Config::deflate`] is set.
    ///
    /// [`stream::upgrade`]: crate::stream::upgrade
    pub fn with_deflate(mut self, request: &Request, config: &DeflateConfig) -> Self {
        self.deflate = negotiate::accept(&request.extensions(), config);
        self
    }

    /// The `permessage-deflate` agreement this answer carries, for
    /// [`Connection::with_deflate`](crate::Connection::with_deflate).
    pub fn deflate(&self) -> Option<PerMessageDeflate> {
        self.deflate.as_ref().map(|(agreed, _)| *agreed)
    }

    /// Adds a response header. Names and values with CR, LF or NUL are refused, so a value
    /// taken from the request can't inject headers.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Result<Self, UsageError> {
        let (name, value) = (name.into(), value.into());
        if !valid_header(&name, &value) {
            return Err(UsageError::InvalidHeader);
        }
        self.headers.push((name, value));
        Ok(self)
    }
}

impl HandshakeError {
    /// The complete HTTP error response a server sends for this error (`None` for client-side
    /// errors). 426 carries `Sec-WebSocket-Version: 13` (§4.2.2) and `Upgrade: websocket`; 405
    /// carries `Allow: GET`. Every response closes the connection.
    pub fn response(&self) -> Option<Vec<u8>> {
        let status = self.status()?;
        let extra: &[(&str, &str)] = match self {
            HandshakeError::UnsupportedVersion | HandshakeError::UpgradeRequired => {
                &[("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")]
            }
            HandshakeError::MethodNotAllowed => &[("Allow", "GET")],
            _ => &[],
        };
        Some(error_response(status, extra, &format!("{self}\n")))
    }
}

/// A plain-text HTTP/1.1 response that closes the connection.
pub fn error_response(status: u16, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason_phrase(status),
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        push_header(&mut out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// The standard reason phrase for the statuses a WebSocket server answers with.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}
