//! A server `Connection` fed arbitrary bytes in two pieces; every event and every outgoing
//! frame drained.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wsproto::{Config, Connection, Role};

fuzz_target!(|data: &[u8]| drive(Role::Server, data));

fn drive(role: Role, data: &[u8]) {
    let Some((&cut, data)) = data.split_first() else { return };
    let config = Config::builder().max_message_size(4096).max_fragments(16).build().expect("valid");
    let mut conn = Connection::new(role, config);
    let mut out = Vec::new();
    for piece in [&data[..usize::from(cut).min(data.len())], &data[usize::from(cut).min(data.len())..]] {
        conn.receive(piece);
        while let Ok(Some(_event)) = conn.next_event() {}
        conn.drain_outgoing(&mut out);
    }
}
