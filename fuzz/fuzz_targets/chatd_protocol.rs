//! chatd's request parser and name checks on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = chatd::protocol::parse(text);
    let _ = chatd::protocol::valid_room(text);
    let _ = chatd::protocol::valid_nick(text);
    let _ = chatd::http::query_param(Some(text), "room");
});
