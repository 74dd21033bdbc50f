//! Shared by the server and client `Connection` targets.
use wsproto::deflate::{DeflateConfig, PerMessageDeflate};
use wsproto::{Config, Connection, Role};

/// Feeds arbitrary bytes in two pieces (the first byte picks the split) to a `Connection` with
/// small limits, draining every event and every outgoing frame. The low bit of the second byte
/// turns permessage-deflate on (RFC 7692: compressed frames inflate within the 4 KiB budget),
/// the next bit picks no context takeover for the peer.
pub fn drive(role: Role, data: &[u8]) {
    let Some((&cut, data)) = data.split_first() else { return };
    let Some((&mode, data)) = data.split_first() else { return };
    let config = Config::builder()
        .max_message_size(4096)
        .max_fragments(16)
        .deflate(DeflateConfig::new())
        .build()
        .expect("valid");
    let agreed = PerMessageDeflate {
        server_no_context_takeover: mode & 2 != 0,
        client_no_context_takeover: mode & 2 != 0,
        ..PerMessageDeflate::default()
    };
    let mut conn = Connection::with_deflate(role, config, (mode & 1 != 0).then_some(agreed));
    let mut out = Vec::new();
    let (a, b) = data.split_at(usize::from(cut).min(data.len()));
    for piece in [a, b] {
        conn.receive(piece);
        while let Ok(Some(_event)) = conn.next_event() {}
        conn.drain_outgoing(&mut out);
    }
}
