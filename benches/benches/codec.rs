//! Frame header decode/encode, whole-message decode through the sans-IO `Connection`, and the
//! server handshake (parse + validate + 101).

use benches::client_frame;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use wsproto::deflate::{DeflateConfig, PerMessageDeflate};
use wsproto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use wsproto::handshake::server::{Accept, RequestReader};
use wsproto::{Config, Connection, EncodedFrame, Role};

fn header(c: &mut Criterion) {
    let bytes = client_frame(OpCode::Binary, true, &[0; 70_000]);
    c.bench_function("header/decode_64bit_masked", |b| b.iter(|| FrameHeader::decode(black_box(&bytes))));
    let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Text, mask: None, payload_len: 300 };
    c.bench_function("header/encode_16bit", |b| {
        b.iter(|| {
            let mut out = [0u8; MAX_HEADER_LEN];
            black_box(h).encode(&mut out)
        })
    });
}

fn decode_all(c: &mut Criterion, name: &str, wire: &[u8], payload: usize) {
    let mut group = c.benchmark_group("message");
    group.throughput(Throughput::Bytes(payload as u64));
    let config = Config::builder().max_message_size(1 << 20).build().expect("valid");
    group.bench_function(name, |b| {
        let mut conn = Connection::new(Role::Server, config.clone());
        b.iter(|| {
            conn.receive(black_box(wire));
            while let Some(event) = conn.next_event().expect("valid input") {
                black_box(event);
            }
        })
    });
    group.finish();
}

fn messages(c: &mut Criterion) {
    decode_all(c, "masked_text_20B", &client_frame(OpCode::Text, true, b"hello, websocket!!!!"), 20);
    decode_all(c, "masked_binary_64KiB", &client_frame(OpCode::Binary, true, &vec![7u8; 64 * 1024]), 64 * 1024);
    let mut fragmented = client_frame(OpCode::Text, false, &[b'a'; 1000]);
    for _ in 0..6 {
        fragmented.extend(client_frame(OpCode::Continuation, false, "é".repeat(500).as_bytes()));
    }
    fragmented.extend(client_frame(OpCode::Continuation, true, &[b'z'; 1000]));
    decode_all(c, "fragmented_text_8KiB", &fragmented, 8000);
}

fn handshake(c: &mut Criterion) {
    let request = b"GET /ws?room=lobby HTTP/1.1\r\nHost: chat.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://chat.example.com\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nAccept-Language: en\r\n\r\n";
    let config = Config::default();
    c.bench_function("handshake/parse_and_101", |b| {
        b.iter(|| {
            let mut reader = RequestReader::new(&config);
            let (req, _) = reader.feed(black_box(request)).expect("valid").expect("complete");
            req.accept(&Accept::new()).expect("valid")
        })
    });
}

/// permessage-deflate: one chat message (a 290-byte JSON line like chatd's) compressed as a
/// shared broadcast frame, and the same message inflated by a server with context takeover.
fn deflate(c: &mut Criterion) {
    let json = r#"{"type":"message","room":"lobby","seq":4711,"nick":"alice","ts":1796421234567,"text":"anyone know why the build failed last night? the logs say timeout on the database restart, maybe we revert the merge from main and ship the release notes tomorrow morning after coffee, sounds good to me thanks"}"#;
    let mut group = c.benchmark_group("deflate");
    group.throughput(Throughput::Bytes(json.len() as u64));
    for level in [1, 6] {
        let name = format!("shared_frame_290B_level{level}");
        group.bench_function(name, |b| b.iter(|| EncodedFrame::deflated_text(black_box(json), level)));
    }
    let packed = EncodedFrame::deflated_text(json, 6);
    let (_, head) = FrameHeader::decode(packed.as_bytes()).expect("valid").expect("complete");
    let payload = &packed.as_bytes()[head..];
    let wire = benches::client_frame_rsv(OpCode::Text, true, 0b100, payload);
    let config = Config::builder().deflate(DeflateConfig::new()).build().expect("valid");
    group.bench_function("inflate_290B", |b| {
        // The peer compresses each message alone, so the same bytes can be fed again.
        let agreed = PerMessageDeflate { client_no_context_takeover: true, ..PerMessageDeflate::default() };
        let mut conn = Connection::with_deflate(Role::Server, config.clone(), Some(agreed));
        b.iter(|| {
            conn.receive(black_box(&wire));
            while let Some(event) = conn.next_event().expect("valid input") {
                black_box(event);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, header, messages, handshake, deflate);
criterion_main!(benches);
