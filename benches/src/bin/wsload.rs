//! wsload: one load tool for every server in the comparison. Loopback only; bounded in time
//! and count; stops by itself. Prints one human line and one JSON line (`{"mode":...}`).
//!
//! ```text
//! wsload echo       --addr A [--connections 64] [--size 20] [--in-flight 16] [--binary] [--secs 10]
//! wsload broadcast  --addr A[,B..] [--clients 200] [--senders 5] [--rate 200] [--size 64] [--secs 10] [--chatd]
//! wsload handshake  --addr A [--workers 16] [--secs 10]
//! wsload idle       --addr A --pid PID [--connections 10000]
//! ```
//!
//! Any mode: `--deflate` offers permessage-deflate (RFC 7692); `--words` fills messages with
//! English words instead of one repeated letter (compression needs realistic text to mean
//! anything). Echo and broadcast also report the bytes that crossed the socket per message.
//! Broadcast with several comma-separated `--addr`s (nodes of one chatd cluster) connects
//! client `i` to address `i mod n`, so senders and readers are spread over the nodes.
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use wsproto::handshake::client::ClientRequest;
use wsproto::stream::WebSocket;
use wsproto::{CloseCode, Config, Event};

type Args = HashMap<String, String>;

fn arg<T: std::str::FromStr>(args: &Args, key: &str, default: T) -> T {
    args.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

static DEFLATE: AtomicBool = AtomicBool::new(false);
static WORDS: AtomicBool = AtomicBool::new(false);
/// Bytes read from and written to every socket, WebSocket framing included.
static WIRE_IN: AtomicU64 = AtomicU64::new(0);
static WIRE_OUT: AtomicU64 = AtomicU64::new(0);

fn config() -> Config {
    let mut builder = Config::builder();
    if DEFLATE.load(Relaxed) {
        builder = builder.deflate(wsproto::deflate::DeflateConfig::new());
    }
    builder
        .ping_interval(None)
        .max_message_size(16 << 20)
        .handshake_timeout(Duration::from_secs(30))
        .build()
        .expect("valid")
}

/// `len` bytes of text: one repeated letter, or with `--words` English words picked by a
/// seeded generator (deterministic, different per seed).
fn filler(len: usize, seed: u64) -> String {
    const WORDS_LIST: [&str; 128] = [
        "the", "chat", "server", "message", "room", "hello", "again", "with", "people", "today", "about", "would",
        "think", "there", "could", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "meeting", "later",
        "sounds", "good", "see", "you", "soon", "thanks", "deploy", "works", "anyone", "know", "why", "build",
        "failed", "last", "night", "coffee", "lunch", "at", "noon", "maybe", "tomorrow", "morning", "release", "notes",
        "look", "fine", "to", "me", "ship", "it", "wait", "what", "about", "tests", "green", "red", "flaky", "again",
        "sorry", "late", "train", "delayed", "back", "in", "five", "minutes", "agenda", "please", "review", "my",
        "pull", "request", "when", "free", "the", "logs", "say", "timeout", "database", "restart", "fixed", "great",
        "news", "weekend", "plans", "hiking", "rain", "sunny", "office", "closed", "holiday", "ticket", "customer",
        "asked", "for", "refund", "invoice", "numbers", "wrong", "checking", "now", "done", "merged", "main", "branch",
        "broken", "revert", "yes", "no", "ok", "lol", "nice", "cool", "thank", "you", "all", "bye", "night",
        "everyone", "hi", "team", "new", "idea", "plan",
    ];
    if !WORDS.load(Relaxed) {
        return "x".repeat(len);
    }
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let mut out = String::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        out.push_str(WORDS_LIST[(state >> 57) as usize]);
        out.push(' ');
    }
    out.truncate(len);
    out
}

/// A TCP stream that counts the bytes it moves.
struct Counted(TcpStream);

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.0).poll_read(cx, buf);
        WIRE_IN.fetch_add((buf.filled().len() - before) as u64, Relaxed);
        result
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.0).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            WIRE_OUT.fetch_add(n as u64, Relaxed);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            WIRE_OUT.fetch_add(n as u64, Relaxed);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

async fn connect_from(addr: SocketAddr, source: Option<IpAddr>, target: &str) -> Result<WebSocket<Counted>, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| e.to_string())?;
    }
    let tcp = socket.connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let request = ClientRequest::new(addr.to_string(), target).map_err(|e| e.to_string())?;
    let (ws, _) = wsproto::stream::connect(Counted(tcp), &request, config()).await.map_err(|e| e.to_string())?;
    Ok(ws)
}

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn echo(addr: SocketAddr, args: &Args) -> String {
    let (conns, size, in_flight, secs) = (
        arg(args, "connections", 64usize),
        arg(args, "size", 20usize),
        arg(args, "in-flight", 16usize),
        arg(args, "secs", 10u64),
    );
    let binary = args.contains_key("binary");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    // Different messages per connection, cycled through more than a 32 KiB window's worth, so
    // context takeover can't just point back at an identical earlier message.
    let pool_len = ((256 << 10) / size.max(1)).clamp(16, 4096);
    for conn in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut ws = connect_from(addr, None, "/").await.expect("connect");
            let pool: Vec<String> = (0..pool_len).map(|i| filler(size, (conn * pool_len + i) as u64)).collect();
            let bins: Vec<bytes::Bytes> = pool.iter().map(|p| bytes::Bytes::from(p.clone().into_bytes())).collect();
            let mut next = 0usize;
            let mut sent: VecDeque<Instant> = VecDeque::new();
            let mut rtts = Vec::new();
            // The next message of the pool, timed from now.
            // One clock read per message (it starts the next message's round trip and ends
            // this one's): the clock is a measurable share of the load tool's own CPU.
            macro_rules! send_next {
                ($now:expr) => {{
                    sent.push_back($now);
                    next = (next + 1) % pool.len();
                    // Fed, not sent: `recv` writes everything fed while it waits for the
                    // replies, so the replacements for one read's replies go out in one write.
                    if binary {
                        ws.feed_binary(bins[next].clone()).await.expect("send")
                    } else {
                        ws.feed_text(&pool[next]).await.expect("send")
                    }
                }};
            }
            for _ in 0..in_flight {
                send_next!(Instant::now());
            }
            while let Some(start) = sent.pop_front() {
                let now = match ws.recv().await {
                    Ok(Some(Event::Text(_) | Event::Binary(_))) => Instant::now(),
                    Ok(Some(_)) => {
                        sent.push_front(start);
                        continue;
                    }
                    _ => break,
                };
                rtts.push(now.duration_since(start).as_micros() as u64);
                if now < deadline {
                    send_next!(now);
                }
            }
            let _ = ws.close(CloseCode::Normal, "").await;
            rtts
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64().max(secs as f64);
    all.sort_unstable();
    let msgs = all.len() as f64 / elapsed;
    let wire = WIRE_IN.load(Relaxed) as f64 / all.len().max(1) as f64;
    format!(
        "{{\"mode\":\"echo\",\"msgs_per_s\":{msgs:.0},\"count\":{},\"mb_per_s\":{:.1},\"p50_us\":{},\"p99_us\":{},\"wire_bytes_per_msg\":{wire:.1}}}",
        all.len(),
        msgs * size as f64 * 2.0 / 1e6,
        percentile(&all, 0.5),
        percentile(&all, 0.99)
    )
}

async fn broadcast(addrs: &[SocketAddr], args: &Args) -> String {
    let (clients, senders, rate, size, secs) = (
        arg(args, "clients", 200usize),
        arg(args, "senders", 5usize),
        arg(args, "rate", 200u64),
        arg(args, "size", 64usize),
        arg(args, "secs", 10u64),
    );
    let chatd = args.contains_key("chatd");
    let sent = Arc::new(AtomicU64::new(0));
    // Readers start as soon as each client connects, so presence notices and the like are
    // drained while the others connect; the clock starts once everyone is in.
    let (start_tx, start_rx) = tokio::sync::watch::channel::<Option<Instant>>(None);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for id in 0..clients {
        let target = if chatd { format!("/ws?room=bench&nick=c{id}") } else { "/".into() };
        // Several addresses (nodes of one cluster): clients, senders among them, take turns.
        let ws = connect_from(addrs[id % addrs.len()], None, &target).await.expect("connect");
        let (mut reader, writer) = ws.split();
        writers.push(writer);
        let mut start = start_rx.clone();
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let deadline = *start.borrow();
                let event = match deadline {
                    Some(d) => {
                        match tokio::time::timeout_at((d + Duration::from_secs(secs + 2)).into(), reader.recv()).await {
                            Ok(Ok(Some(event))) => event,
                            _ => break,
                        }
                    }
                    None => tokio::select! {
                        event = reader.recv() => match event { Ok(Some(event)) => event, _ => break },
                        _ = start.changed() => continue,
                    },
                };
                let Event::Text(text) = event else { continue };
                let body = if chatd {
                    let Some(at) = text.find("\"text\":\"") else { continue };
                    text[at + 8..].to_owned()
                } else {
                    text
                };
                let mut parts = body.split(' ');
                let (Some(ts), Some(from)) = (
                    parts.next().and_then(|t| t.parse::<u64>().ok()),
                    parts.next().and_then(|f| f.parse::<usize>().ok()),
                ) else {
                    continue;
                };
                if from != id {
                    latencies.push(micros_now().saturating_sub(ts));
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wire_before = WIRE_IN.load(Relaxed);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let _ = start_tx.send(Some(started));
    let mut sending = Vec::new();
    for (id, writer) in writers.into_iter().enumerate().take(senders) {
        let sent = sent.clone();
        sending.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            let mut seq = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                let mut body = format!("{} {id} {seq} ", micros_now());
                if body.len() < size {
                    body.push_str(&filler(size - body.len(), seq * 64 + id as u64));
                }
                let text = if chatd {
                    format!("{{\"type\":\"message\",\"room\":\"bench\",\"text\":\"{body}\"}}")
                } else {
                    body
                };
                if writer.send_text(text).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Relaxed);
                seq += 1;
            }
            writer
        }));
    }
    let mut keep = Vec::new();
    for s in sending {
        keep.extend(s.await.ok());
    }
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await.unwrap_or_default());
    }
    drop(keep);
    all.sort_unstable();
    let sent = sent.load(Relaxed);
    let expected = sent * (clients as u64 - 1);
    let wire = (WIRE_IN.load(Relaxed) - wire_before) as f64 / all.len().max(1) as f64;
    format!(
        "{{\"mode\":\"broadcast\",\"sent\":{sent},\"deliveries_per_s\":{:.0},\"lost\":{},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"wire_bytes_per_delivery\":{wire:.1}}}",
        all.len() as f64 / secs as f64,
        expected.saturating_sub(all.len() as u64),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0)
    )
}

async fn handshake(addr: SocketAddr, args: &Args) -> String {
    let (workers, secs) = (arg(args, "workers", 16usize), arg(args, "secs", 10u64));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let done = done.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    if let Ok(mut ws) = connect_from(addr, None, "/").await {
                        done.fetch_add(1, Relaxed);
                        let _ = ws.close(CloseCode::Normal, "").await;
                        while let Ok(Some(_)) = ws.recv().await {}
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let count = done.load(Relaxed);
    format!("{{\"mode\":\"handshake\",\"per_s\":{:.0},\"count\":{count}}}", count as f64 / secs as f64)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn idle(addr: SocketAddr, args: &Args) -> String {
    let (n, pid, target) = (
        arg(args, "connections", 10_000usize),
        arg(args, "pid", 0u32),
        args.get("target").cloned().unwrap_or_else(|| "/".into()),
    );
    let before = rss_kib(pid);
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        // 127.0.0.2-255 as sources: ~250 × 28k ephemeral ports, far from exhausting any.
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 254) as u8));
        let target = target.replace("{i100}", &(i % 100).to_string()).replace("{i}", &i.to_string());
        match connect_from(addr, Some(source), &target).await {
            Ok(ws) => held.push(ws),
            Err(e) => return format!("{{\"mode\":\"idle\",\"error\":\"{e}\",\"opened\":{i}}}"),
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    drop(held);
    format!("{{\"mode\":\"idle\",\"connections\":{n},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"bytes_per_conn\":{per:.0}}}")
}

#[tokio::main]
async fn main() {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().unwrap_or_default();
    let mut args = Args::new();
    let rest: Vec<String> = argv.collect();
    let mut i = 0;
    while i < rest.len() {
        let key = rest[i].trim_start_matches("--").to_owned();
        match rest.get(i + 1).filter(|v| !v.starts_with("--")) {
            Some(value) => {
                args.insert(key, value.clone());
                i += 2;
            }
            None => {
                args.insert(key, String::new());
                i += 1;
            }
        }
    }
    let addrs: Vec<SocketAddr> =
        args.get("addr").map(|a| a.split(',').filter_map(|a| a.parse().ok()).collect()).unwrap_or_default();
    let Some(&addr) = addrs.first() else {
        eprintln!("wsload: --addr HOST:PORT[,HOST:PORT...] is required (loopback only)");
        std::process::exit(2);
    };
    if addrs.iter().any(|a| !a.ip().is_loopback()) {
        eprintln!("wsload: refusing a non-loopback address");
        std::process::exit(2);
    }
    DEFLATE.store(args.contains_key("deflate"), Relaxed);
    WORDS.store(args.contains_key("words"), Relaxed);
    let line = match mode.as_str() {
        "echo" => echo(addr, &args).await,
        "broadcast" => broadcast(&addrs, &args).await,
        "handshake" => handshake(addr, &args).await,
        "idle" => idle(addr, &args).await,
        other => {
            eprintln!("wsload: unknown mode {other:?} (echo, broadcast, handshake, idle)");
            std::process::exit(2);
        }
    };
    println!("{line}");
}
