//! Soak: the real chatd binary under churn for `SOAK_SECS` seconds (default 120). Run by
//! `scripts/soak`; ignored by plain `cargo test` because it takes minutes.
//!
//! Watchers stay connected to every room and check that sequence numbers arrive without a gap.
//! Churners join a random room, chat, sometimes drop the TCP connection abruptly and come back
//! with `since` (checking that the recovered history fills the gap exactly), and leave. At the
//! end, with every client gone: chatd's RSS must be back near its level after warm-up (no leak)
//! and its open file descriptors back to the idle count.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{next, say};
use serde_json::Value;
use wsproto::Event;

const ROOMS: usize = 8;
const WATCHERS_PER_ROOM: usize = 2;
const CHURNERS: usize = 40;

fn proc_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn proc_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    delivered: AtomicU64,
    drops: AtomicU64,
    recoveries: AtomicU64,
}

/// Connects, returning the socket and the hello.
async fn join(
    addr: std::net::SocketAddr,
    room: &str,
    nick: &str,
    since: Option<u64>,
) -> (wsproto::stream::WebSocket<tokio::net::TcpStream>, Value) {
    let mut target = format!("/ws?room={room}&nick={nick}");
    if let Some(s) = since {
        target += &format!("&since={s}");
    }
    let mut ws = common::connect(addr, &target, None).await.unwrap();
    let hello = next(&mut ws).await;
    assert_eq!(hello["type"], "hello", "{hello}");
    (ws, hello)
}

/// Stays in a room; every message must arrive, in order, exactly once. Returns the last seq.
async fn watch(
    addr: std::net::SocketAddr,
    room: String,
    nick: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
    counts: Arc<Counts>,
) -> u64 {
    let (mut ws, hello) = join(addr, &room, &nick, None).await;
    let mut last = hello["seq"].as_u64().unwrap();
    loop {
        tokio::select! {
            // A watch, not a Notify: a stop sent while this watcher is busy with a message is
            // still seen (Notify::notify_waiters reaches only those waiting at that moment,
            // and a watcher that missed it hung the soak).
            _ = stop.changed() => return last,
            event = ws.recv() => match event.unwrap() {
                Some(Event::Text(text)) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if v["type"] == "message" {
                        let seq = v["seq"].as_u64().unwrap();
                        assert_eq!(seq, last + 1, "watcher {nick} in {room} saw a gap");
                        last = seq;
                        counts.delivered.fetch_add(1, Relaxed);
                    }
                }
                Some(_) => {}
                None => panic!("watcher {nick} was disconnected"),
            },
        }
    }
}

/// Joins, chats, sometimes drops and recovers with `since`, leaves; until `deadline`.
async fn churn(addr: std::net::SocketAddr, id: usize, deadline: Instant, counts: Arc<Counts>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut round = 0;
    while Instant::now() < deadline {
        round += 1;
        let room = format!("room{}", rng.next(ROOMS as u64));
        let nick = format!("churn{id}r{round}");
        let (mut ws, hello) = join(addr, &room, &nick, None).await;
        let mut last = hello["seq"].as_u64().unwrap();
        for _ in 0..rng.next(10) + 1 {
            ws.send_text(say(&room, &format!("from {nick}"))).await.unwrap();
            counts.sent.fetch_add(1, Relaxed);
            // Wait for our own message: seqs must be contiguous from our point of view too.
            loop {
                let v = next(&mut ws).await;
                if v["type"] == "message" {
                    let seq = v["seq"].as_u64().unwrap();
                    assert!(seq > last);
                    last = seq;
                    if v["nick"] == nick.as_str() {
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.next(200) + 50)).await;
        }
        if rng.next(3) == 0 {
            // An abrupt drop (no close frame), then back with since: nothing may be missing.
            drop(ws);
            counts.drops.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(rng.next(300))).await;
            let (mut again, hello) = join(addr, &room, &format!("{nick}b"), Some(last)).await;
            assert_eq!(hello["recovered"], true, "{hello}");
            for m in hello["history"].as_array().unwrap() {
                let seq = m["seq"].as_u64().unwrap();
                assert_eq!(seq, last + 1, "recovered history has a gap");
                last = seq;
            }
            counts.recoveries.fetch_add(1, Relaxed);
            again.close(wsproto::CloseCode::Normal, "").await.unwrap();
            while let Ok(Some(_)) = again.recv().await {}
        } else {
            ws.close(wsproto::CloseCode::Normal, "").await.unwrap();
            while let Ok(Some(_)) = ws.recv().await {}
        }
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run by scripts/soak"]
async fn soak() {
    let secs: u64 = std::env::var("SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(["--listen", &addr.to_string(), "--max-connections-per-ip", "0", "--history", "500"])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Killed if the test panics, so no chatd outlives it (and holds the runner's pipes).
    let mut child = KillOnDrop(child);
    let pid = child.0.id();
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_fds = proc_fds(pid);
    let counts = Arc::new(Counts::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut watchers = Vec::new();
    for room in 0..ROOMS {
        for w in 0..WATCHERS_PER_ROOM {
            watchers.push(tokio::spawn(watch(
                addr,
                format!("room{room}"),
                format!("watch{room}x{w}"),
                stopped.clone(),
                counts.clone(),
            )));
        }
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let churners: Vec<_> = (0..CHURNERS).map(|id| tokio::spawn(churn(addr, id, deadline, counts.clone()))).collect();
    let mut samples: Vec<(u64, u64)> = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(5).min(deadline.saturating_duration_since(Instant::now()))).await;
        samples.push((started.elapsed().as_secs(), proc_rss_kib(pid)));
    }
    for c in churners {
        c.await.unwrap();
    }
    let _ = stop.send(true);
    let mut last_seqs = HashMap::new();
    for w in watchers {
        let last = w.await.unwrap();
        *last_seqs.entry(last).or_insert(0) += 1;
    }
    // Let chatd notice the closes, then measure it idle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end_rss = proc_rss_kib(pid);
    let end_fds = proc_fds(pid);
    let _ = Command::new("kill").args(["-s", "TERM", &pid.to_string()]).status();
    let status = child.0.wait().unwrap();
    let warm = samples.get(samples.len() / 4).map_or(end_rss, |s| s.1);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(end_rss);
    println!(
        "soak: {secs}s, {} messages sent, {} deliveries to watchers checked gap-free, {} abrupt drops recovered with since ({}), RSS warm {warm} KiB, peak {peak} KiB, end {end_rss} KiB, fds idle {idle_fds} end {end_fds}, exit {status}",
        counts.sent.load(Relaxed),
        counts.delivered.load(Relaxed),
        counts.drops.load(Relaxed),
        counts.recoveries.load(Relaxed),
    );
    println!("soak: RSS samples (s, KiB): {samples:?}");
    assert_eq!(counts.drops.load(Relaxed), counts.recoveries.load(Relaxed));
    assert!(end_fds <= idle_fds + 2, "file descriptors leaked: idle {idle_fds}, end {end_fds}");
    assert!(
        end_rss <= warm + warm / 2 + 8 * 1024,
        "RSS did not return to a steady level: warm {warm} KiB, end {end_rss} KiB"
    );
    assert!(status.success());
}
