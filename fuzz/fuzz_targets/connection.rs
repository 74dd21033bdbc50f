//! Shared by the server and client `Connection` targets.
use wsproto::{Config, Connection, Role};

/// Feeds arbitrary bytes in two pieces (the first byte picks the split) to a `Connection` with
/// small limits, draining every event and every outgoing frame.
pub fn drive(role: Role, data: &[u8]) {
    let Some((&cut, data)) = data.split_first() else { return };
    let config = Config::builder().max_message_size(4096).max_fragments(16).build().expect("valid");
    let mut conn = Connection::new(role, config);
    let mut out = Vec::new();
    let (a, b) = data.split_at(usize::from(cut).min(data.len()));
    for piece in [a, b] {
        conn.receive(piece);
        while let Ok(Some(_event)) = conn.next_event() {}
        conn.drain_outgoing(&mut out);
    }
}
