//! Masking throughput (RFC 6455 §5.3): the word-at-a-time `apply_mask` next to the byte-by-byte
//! oracle, a plain `memcpy` of the same size, and fastwebsockets' public `unmask`, at aligned
//! and unaligned starts. (tungstenite's masking is in a private module, not reachable.)

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use wsproto::frame::mask::{apply_mask, apply_mask_bytewise};

fn masking(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for size in [16usize, 1024, 64 * 1024, 1 << 20] {
        group.throughput(Throughput::Bytes(size as u64));
        for start in [0usize, 3] {
            let mut buf = vec![0x5au8; size + 8];
            let id = format!("{size}B+{start}");
            group.bench_with_input(BenchmarkId::new("apply_mask", &id), &size, |b, &size| {
                b.iter(|| apply_mask(black_box(&mut buf[start..start + size]), [1, 2, 3, 4], 0))
            });
            if size <= 64 * 1024 {
                group.bench_with_input(BenchmarkId::new("bytewise", &id), &size, |b, &size| {
                    b.iter(|| apply_mask_bytewise(black_box(&mut buf[start..start + size]), [1, 2, 3, 4], 0))
                });
            }
            group.bench_with_input(BenchmarkId::new("fastwebsockets_unmask", &id), &size, |b, &size| {
                b.iter(|| fastwebsockets::unmask(black_box(&mut buf[start..start + size]), [1, 2, 3, 4]))
            });
            let src = vec![0xa5u8; size];
            group.bench_with_input(BenchmarkId::new("memcpy", &id), &size, |b, &size| {
                b.iter(|| buf[start..start + size].copy_from_slice(black_box(&src)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, masking);
criterion_main!(benches);
