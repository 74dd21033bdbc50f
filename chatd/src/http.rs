//! The few plain HTTP answers chatd gives: the page, health, metrics, errors, redirects.
//! Every response closes the connection; browsers open a new one as needed.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use wsproto::handshake::server::reason_phrase;

/// The chat page and its assets, embedded in the binary (no build step, no CDN).
pub const INDEX_HTML: &str = include_str!("../static/index.html");
/// The page's script.
pub const APP_JS: &str = include_str!("../static/app.js");
/// The page's styles.
pub const APP_CSS: &str = include_str!("../static/app.css");

/// Security headers for the page: scripts and styles only from this origin, WebSocket only to
/// this origin, no framing.
const PAGE_HEADERS: &[(&str, &str)] = &[
    ("Content-Security-Policy", "default-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
];

/// A response to write.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body (omitted for HEAD).
    pub body: Vec<u8>,
}

impl Response {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.into().into_bytes(),
        }
    }

    /// One of the embedded page files.
    pub fn page(content_type: &'static str, body: &'static str) -> Self {
        let headers = PAGE_HEADERS.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
        Response { status: 200, content_type, headers, body: body.as_bytes().to_vec() }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the response and shuts the stream down.
    pub async fn send<S: AsyncWrite + Unpin>(self, io: &mut S, head_only: bool) -> std::io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        io.write_all(&bytes).await?;
        io.flush().await?;
        io.shutdown().await
    }
}

/// Decodes `%XX` escapes and `+` in a query component. Invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes.get(i + 1..i + 3) {
                Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => {
                    let digit = |d: u8| (d as char).to_digit(16).unwrap_or(0) as u8;
                    out.push(digit(hex[0]) << 4 | digit(hex[1]));
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of `key` in a query string, decoded.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let q = Some("room=dev&nick=Zo%C3%AB&since=41&x");
        assert_eq!(query_param(q, "room").as_deref(), Some("dev"));
        assert_eq!(query_param(q, "nick").as_deref(), Some("Zoë"));
        assert_eq!(query_param(q, "since").as_deref(), Some("41"));
        assert_eq!(query_param(q, "x").as_deref(), Some(""));
        assert_eq!(query_param(q, "y"), None);
        assert_eq!(percent_decode("a+b%2"), "a b%2");
        assert_eq!(percent_decode("%zz%"), "%zz%");
    }
}
