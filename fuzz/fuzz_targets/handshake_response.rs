//! The client's check of a server response.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wsproto::handshake::client::{ClientHandshake, ClientRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(request) = ClientRequest::new("example.com", "/chat").and_then(|r| r.protocol("chat")) else { return };
    let (mut handshake, _) =
        ClientHandshake::with_key(&request, &wsproto::Config::default(), "dGhlIHNhbXBsZSBub25jZQ==");
    let _ = handshake.feed(data);
});
