//! chatd's wire protocol v1: one JSON object per WebSocket text frame, both ways.
//!
//! The full description for client authors is `docs/PROTOCOL.md`. In short:
//!
//! ```text
//! client → server                                   server → client
//! {"type":"message","room":"lobby","text":"hi"}     {"type":"hello","you":..,"room":..,"members":[..],"history":[..],"seq":42,"recovered":true}
//! {"type":"join","room":"dev","since":41}           {"type":"message","room":..,"seq":43,"nick":..,"text":..,"ts":1765000000123}
//! {"type":"leave","room":"dev"}                     {"type":"join"|"leave","room":..,"nick":..}
//! {"type":"nick","nick":"bob"}                      {"type":"nick","room":..,"old":..,"new":..}
//! any text that is not a JSON object: a message     {"type":"error","code":..,"text":..}
//!   to the connection's first room
//! ```
//!
//! The server stamps every message with the sender's nick and the room's next sequence
//! number; a client cannot choose either.

use serde::{Deserialize, Serialize};

/// What a client can ask for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientMsg {
    /// Say something in a room (the first joined room when `room` is absent).
    Message {
        /// Target room.
        #[serde(default)]
        room: Option<String>,
        /// The text.
        text: String,
    },
    /// Join a room, replaying what was missed after `since`.
    Join {
        /// Room name.
        room: String,
        /// Last sequence number the client saw in this room.
        #[serde(default)]
        since: Option<u64>,
    },
    /// Leave a room.
    Leave {
        /// Room name.
        room: String,
    },
    /// Change nick in every joined room.
    Nick {
        /// The new nick.
        nick: String,
    },
}

/// Why a client frame was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// Parses one text frame. A frame that is not a JSON object at all is a plain message to the
/// first room, so `websocat ws://host/ws?room=x` works as a chat client; a JSON object that is
/// not a valid request is an error.
pub fn parse(text: &str) -> Result<ClientMsg, BadRequest> {
    if !text.trim_start().starts_with('{') {
        return Ok(ClientMsg::Message { room: None, text: text.to_owned() });
    }
    match serde_json::from_str::<ClientMsg>(text) {
        Ok(msg) => Ok(msg),
        Err(e) if e.is_syntax() || e.is_eof() => Ok(ClientMsg::Message { room: None, text: text.to_owned() }),
        Err(e) => Err(BadRequest(e.to_string())),
    }
}

/// A chat message as broadcast and as kept in history.
#[derive(Debug, Serialize)]
pub struct MessageOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    seq: u64,
    nick: &'a str,
    text: &'a str,
    ts: u64,
}

/// Serialises a chat message.
pub fn message(room: &str, seq: u64, nick: &str, text: &str, ts: u64) -> String {
    to_json(&MessageOut { kind: "message", room, seq, nick, text, ts })
}

/// A chat message split around its sequence number, for a numberer that inserts the digits
/// (cluster mode: a Redis script). `prefix + seq + suffix` is [`message`]'s output.
pub fn message_parts(room: &str, nick: &str, text: &str, ts: u64) -> (String, String) {
    let mut json = message(room, 0, nick, text, ts);
    // The room name is plain ASCII (see `valid_room`), so the first `"seq":0` is the field.
    let at = json.find("\"seq\":0,").map_or(0, |i| i + "\"seq\":".len());
    let suffix = json.split_off(at + 1);
    json.pop(); // the 0
    (json, suffix)
}

#[derive(Serialize)]
struct Presence<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    nick: &'a str,
}

/// `{"type":"join"|"leave","room":..,"nick":..}`.
pub fn presence(kind: &'static str, room: &str, nick: &str) -> String {
    to_json(&Presence { kind, room, nick })
}

#[derive(Serialize)]
struct NickChange<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    old: &'a str,
    new: &'a str,
}

/// `{"type":"nick","room":..,"old":..,"new":..}`.
pub fn nick_change(room: &str, old: &str, new: &str) -> String {
    to_json(&NickChange { kind: "nick", room, old, new })
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'a str,
    text: &'a str,
}

/// `{"type":"error","code":..,"text":..}`. Codes are stable identifiers listed in
/// `docs/PROTOCOL.md`; the text is for humans.
pub fn error(code: &str, text: &str) -> String {
    to_json(&ErrorOut { kind: "error", code, text })
}

#[derive(Serialize)]
struct HelloHead<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    you: &'a str,
    room: &'a str,
    members: &'a [&'a str],
    seq: u64,
    recovered: bool,
}

/// `{"type":"hello",...}` with the history entries (already-serialised messages) spliced in, so
/// history is never re-encoded.
pub fn hello<'a>(
    you: &str,
    room: &str,
    members: &[&str],
    seq: u64,
    recovered: bool,
    history: impl Iterator<Item = &'a str>,
) -> String {
    let mut out = to_json(&HelloHead { kind: "hello", you, room, members, seq, recovered });
    out.pop(); // the closing brace
    out.push_str(",\"history\":[");
    for (i, entry) in history.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(entry);
    }
    out.push_str("]}");
    out
}

fn to_json(value: &impl Serialize) -> String {
    // Serialising these plain structs of strings and integers cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// Room names: 1-32 characters from `A-Z a-z 0-9 - _ .`, so they are safe in URLs, logs and
/// metrics.
pub fn valid_room(room: &str) -> bool {
    (1..=32).contains(&room.len()) && room.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Nicks: 1-24 characters, letters and digits of any script plus `- _ .`; no spaces or
/// control characters, so one nick can't imitate another with padding.
pub fn valid_nick(nick: &str) -> bool {
    (1..=24).contains(&nick.chars().count()) && nick.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_parts_join_around_the_number() {
        let (prefix, suffix) = message_parts("lobby", "ann", "\"seq\":0, quoted", 7);
        assert_eq!(format!("{prefix}42{suffix}"), message("lobby", 42, "ann", "\"seq\":0, quoted", 7));
    }

    #[test]
    fn parses_every_request_type() {
        assert_eq!(
            parse(r#"{"type":"message","room":"lobby","text":"hi"}"#),
            Ok(ClientMsg::Message { room: Some("lobby".into()), text: "hi".into() })
        );
        assert_eq!(
            parse(r#"{"type":"join","room":"dev","since":41}"#),
            Ok(ClientMsg::Join { room: "dev".into(), since: Some(41) })
        );
        assert_eq!(parse(r#"{"type":"leave","room":"dev"}"#), Ok(ClientMsg::Leave { room: "dev".into() }));
        assert_eq!(parse(r#"{"type":"nick","nick":"bob"}"#), Ok(ClientMsg::Nick { nick: "bob".into() }));
    }

    #[test]
    fn plain_text_is_a_message_to_the_first_room() {
        assert_eq!(parse("hello there"), Ok(ClientMsg::Message { room: None, text: "hello there".into() }));
        assert_eq!(parse("{not json"), Ok(ClientMsg::Message { room: None, text: "{not json".into() }));
        assert_eq!(parse("[1,2]"), Ok(ClientMsg::Message { room: None, text: "[1,2]".into() }));
    }

    #[test]
    fn invalid_objects_are_errors() {
        assert!(parse(r#"{"type":"explode"}"#).is_err());
        assert!(parse(r#"{"type":"message"}"#).is_err());
        assert!(parse(r#"{"type":"message","text":"x","nick":"mallory"}"#).is_err(), "no spoofing field");
    }

    #[test]
    fn hello_splices_history() {
        let m = message("lobby", 7, "alice", "hi \"you\"", 5);
        let hello = hello("bob", "lobby", &["alice", "bob"], 7, true, [m.as_str()].into_iter());
        let v: serde_json::Value = serde_json::from_str(&hello).unwrap();
        assert_eq!(v["history"][0]["text"], "hi \"you\"");
        assert_eq!(v["members"][1], "bob");
        assert_eq!(v["seq"], 7);
    }

    #[test]
    fn names_are_validated() {
        assert!(valid_room("lobby") && valid_room("dev-2.x_y") && !valid_room("") && !valid_room("a b"));
        assert!(!valid_room(&"r".repeat(33)));
        assert!(valid_nick("Zoë") && !valid_nick("a\u{200b}b") && !valid_nick(" alice") && !valid_nick(""));
        assert!(!valid_nick(&"n".repeat(25)));
    }
}
