//! # 3. Two connections talking in memory
//!
//! Teaches: the sans-IO idea (a `Connection` turns bytes into events and your calls into bytes,
//! and never touches a socket), and a whole conversation: messages both ways, a message split
//! into fragments with a ping in the middle (§5.4), the automatic pong (§5.5.2), and the closing
//! handshake (§7) with its states.
//!
//! Run: `cargo run -p examples --example 03_conversation`. Next: `04_echo_server.rs`.

use std::fmt::Write;

use bytes::Bytes;
use wsproto::frame::OpCode;
use wsproto::{CloseCode, Config, Connection, Event, Role};

/// Moves whatever `from` queued into `to`, printing the bytes and the events they became.
fn deliver(
    out: &mut String,
    from_name: &str,
    from: &mut Connection,
    to: &mut Connection,
) -> Result<Vec<Event>, wsproto::Error> {
    let mut wire = Vec::new();
    from.drain_outgoing(&mut wire);
    if wire.is_empty() {
        return Ok(Vec::new());
    }
    let _ = writeln!(out, "{from_name} sends {} bytes", wire.len());
    to.receive(&wire);
    let mut events = Vec::new();
    while let Some(event) = to.next_event()? {
        let _ = writeln!(out, "    -> {event:?}");
        events.push(event);
    }
    Ok(events)
}

/// The whole conversation; returns the transcript.
pub fn conversation() -> Result<String, wsproto::Error> {
    let mut out = String::new();
    let mut client = Connection::new(Role::Client, Config::default());
    let mut server = Connection::new(Role::Server, Config::default());

    let _ = writeln!(out, "# a message each way (the client's is masked, the server's is not)");
    client.send_text("hello, server")?;
    deliver(&mut out, "client", &mut client, &mut server)?;
    server.send_text("hello, client")?;
    deliver(&mut out, "server", &mut server, &mut client)?;

    let _ = writeln!(out, "\n# a message in three fragments, a ping between them");
    client.send_frame(OpCode::Text, false, Bytes::from_static(b"frag"))?;
    client.send_ping(Bytes::from_static(b"still there?"))?;
    client.send_frame(OpCode::Continuation, false, Bytes::from_static(b"men"))?;
    client.send_frame(OpCode::Continuation, true, Bytes::from_static(b"ted"))?;
    deliver(&mut out, "client", &mut client, &mut server)?;
    let _ = writeln!(out, "# the server answered the ping by itself:");
    deliver(&mut out, "server", &mut server, &mut client)?;

    let _ = writeln!(out, "\n# closing: the client starts, the server echoes");
    client.close(CloseCode::Normal, "bye")?;
    let _ = writeln!(out, "client state: {:?}", client.state());
    deliver(&mut out, "client", &mut client, &mut server)?;
    let _ = writeln!(out, "server state: {:?} (it queued the echo)", server.state());
    deliver(&mut out, "server", &mut server, &mut client)?;
    let _ = writeln!(out, "client state: {:?}; now the server closes TCP, then the client", client.state());
    Ok(out)
}

fn main() -> Result<(), wsproto::Error> {
    print!("{}", conversation()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_conversation_ends_closed_on_both_sides() {
        let out = super::conversation().unwrap();
        assert!(out.contains("-> Text(\"fragmented\")"));
        assert!(out.contains("-> Pong(b\"still there?\")"));
        assert!(out.contains("client state: Closed"));
        assert!(out.contains("-> Close(CloseFrame { code: Normal, reason: \"bye\" })"));
    }
}
