//! # 1. The opening handshake, by hand, no network
//!
//! Teaches: how a WebSocket starts as an HTTP/1.1 request (RFC 6455 §4), what each header is
//! for, how the server proves it read the key (§1.3: `base64(SHA-1(key + GUID))`), and how the
//! client checks that proof. Both sides are wsproto's sans-IO handshake types; bytes go from
//! one to the other in a `Vec`.
//!
//! Run: `cargo run -p examples --example 01_handshake`. Next: `02_frames.rs`.

use std::fmt::Write;

use wsproto::handshake::client::{ClientHandshake, ClientRequest};
use wsproto::handshake::server::{Accept, RequestReader};
use wsproto::handshake::{accept_key, GUID};
use wsproto::Config;

/// Why each header is there, for the printout.
fn explain(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "host" => "which site the client wants (virtual hosting), required exactly once",
        "upgrade" => "asks to switch this TCP connection from HTTP to the websocket protocol",
        "connection" => "says the Upgrade header is meant for this hop",
        "sec-websocket-key" => "16 random bytes, base64: a nonce the server must transform",
        "sec-websocket-version" => "the protocol version; 13 is RFC 6455",
        "sec-websocket-protocol" => "subprotocols the client speaks, most preferred first",
        "sec-websocket-accept" => "the server's proof: base64(SHA-1(key + GUID))",
        "origin" => "the page that opened the socket (browsers send it; servers check it)",
        _ => "",
    }
}

fn annotate(out: &mut String, title: &str, head: &[u8]) {
    let _ = writeln!(out, "--- {title} ---");
    for line in String::from_utf8_lossy(head).split("\r\n").filter(|l| !l.is_empty()) {
        let why = line.split_once(':').map(|(name, _)| explain(name)).unwrap_or("");
        if why.is_empty() {
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "{line:<48} <- {why}");
        }
    }
}

/// Runs the whole handshake in memory and returns the annotated transcript.
pub fn handshake() -> Result<String, wsproto::Error> {
    let mut out = String::new();
    let config = Config::default();

    // 1. The client builds its request. The RFC's example key is used so the output matches
    //    §1.3; real clients use ClientHandshake::new, which picks a random key.
    let request =
        ClientRequest::new("server.example.com", "/chat")?.protocol("chat")?.header("Origin", "http://example.com")?;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let (mut client, request_bytes) = ClientHandshake::with_key(&request, &config, key);
    annotate(&mut out, "client -> server", &request_bytes);

    // 2. The server reads the head (it could arrive in any number of pieces) and validates it.
    let mut reader = RequestReader::new(&config);
    let Some((parsed, _rest)) = reader.feed(&request_bytes)? else { unreachable!("the whole head was fed") };
    let _ = writeln!(
        out,
        "\nserver sees: path {} , origin {:?}, offered {:?}",
        parsed.path(),
        parsed.origin(),
        parsed.protocols().collect::<Vec<_>>()
    );

    // 3. The accept key, step by step.
    let _ = writeln!(out, "accept key = base64(SHA-1(\"{key}\" + \"{GUID}\")) = {}", accept_key(key.as_bytes()));

    // 4. The server answers 101 Switching Protocols, choosing the "chat" subprotocol.
    let response = parsed.accept(&Accept::new().protocol("chat")?)?;
    annotate(&mut out, "server -> client", &response);

    // 5. The client checks status, headers and the accept key. From here on, both sides speak
    //    frames (example 2).
    let Some((checked, _rest)) = client.feed(&response)? else { unreachable!("the whole head was fed") };
    let _ = writeln!(out, "\nclient verified the accept key; subprotocol: {:?}", checked.protocol());
    Ok(out)
}

fn main() -> Result<(), wsproto::Error> {
    print!("{}", handshake()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn transcript_shows_the_rfc_accept_key() {
        let out = super::handshake().unwrap();
        assert!(out.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(out.contains("subprotocol: Some(\"chat\")"));
        assert!(out.contains("<- the protocol version; 13 is RFC 6455"));
    }
}
