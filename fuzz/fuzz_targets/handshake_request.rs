//! The server's request reader, fed in two pieces (the first byte picks the split), then
//! validation and the 101 or the error response.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wsproto::handshake::server::{Accept, RequestReader};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else { return };
    let (a, b) = data.split_at(usize::from(cut).min(data.len()));
    let mut reader = RequestReader::new(&wsproto::Config::default());
    let done = match reader.feed(a) {
        Ok(None) => reader.feed(b),
        other => other,
    };
    match done {
        Ok(Some((request, _rest))) => {
            let _ = request.accept(&Accept::new());
        }
        Ok(None) => {}
        Err(e) => assert!(e.response().is_some(), "every server-side error has a response"),
    }
});
