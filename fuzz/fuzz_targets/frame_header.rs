//! Header decode, then encode → decode must give the same header back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wsproto::frame::{FrameHeader, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((header, used))) = FrameHeader::decode(data) {
        assert!(used <= MAX_HEADER_LEN && used <= data.len());
        let mut buf = [0u8; MAX_HEADER_LEN];
        let len = header.encode(&mut buf);
        assert_eq!(FrameHeader::decode(&buf[..len]), Ok(Some((header, len))));
    }
});
