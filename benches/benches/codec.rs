//! Frame header decode/encode, whole-message decode through the sans-IO `Connection`, and the
//! server handshake (parse + validate + 101).

use benches::client_frame;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use wsproto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use wsproto::handshake::server::{Accept, RequestReader};
use wsproto::{Config, Connection, Role};

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

criterion_group!(benches, header, messages, handshake);
criterion_main!(benches);
