//! Counters for `/metrics`, in the Prometheus text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a connection was refused before it became a chat session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Invalid WebSocket handshake (400, 405, 426, 431).
    BadHandshake,
    /// Origin not allowed (403).
    Origin,
    /// Too many connections in total (503).
    Capacity,
    /// Too many connections from one IP (429).
    PerIp,
    /// Handshake deadline passed (408), TLS included.
    Timeout,
    /// TLS handshake failed.
    Tls,
    /// Invalid room or nick in the query (400).
    BadQuery,
}

const REJECTIONS: [(Rejection, &str); 7] = [
    (Rejection::BadHandshake, "bad_handshake"),
    (Rejection::Origin, "origin"),
    (Rejection::Capacity, "capacity"),
    (Rejection::PerIp, "per_ip"),
    (Rejection::Timeout, "timeout"),
    (Rejection::Tls, "tls"),
    (Rejection::BadQuery, "bad_query"),
];

/// Process-wide counters. All relaxed atomics: each is independent.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open TCP connections (any kind).
    pub connections: AtomicU64,
    /// Open chat sessions (WebSocket).
    pub sessions: AtomicU64,
    /// Rooms in memory.
    pub rooms: AtomicU64,
    /// Chat messages accepted from clients.
    pub messages_in: AtomicU64,
    /// Frames handed to clients' queues (one per recipient).
    pub messages_out: AtomicU64,
    /// WebSocket payload bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes handed to clients' queues.
    pub bytes_out: AtomicU64,
    /// Clients closed with 1013 for falling behind.
    pub slow_consumers: AtomicU64,
    /// Messages refused by the rate limit.
    pub rate_limited: AtomicU64,
    /// Certificate reloads that succeeded.
    pub tls_reloads: AtomicU64,
    /// Certificate reloads that failed (the old certificate stays).
    pub tls_reload_failures: AtomicU64,
    /// Cluster mode: reads of a room's Redis stream to fill a gap in what this node received.
    pub cluster_fills: AtomicU64,
    /// Cluster mode: times the Redis subscription was lost and restored.
    pub cluster_resubscribes: AtomicU64,
    rejected: [AtomicU64; 7],
}

impl Metrics {
    fn slot(&self, why: Rejection) -> &AtomicU64 {
        // REJECTIONS lists every variant, so the position always exists.
        let i = REJECTIONS.iter().position(|(r, _)| *r == why).unwrap_or(0);
        &self.rejected[i]
    }

    /// Counts a refused connection.
    pub fn reject(&self, why: Rejection) {
        self.slot(why).fetch_add(1, Relaxed);
    }

    /// The number of refusals for one reason.
    pub fn rejected(&self, why: Rejection) -> u64 {
        self.slot(why).load(Relaxed)
    }

    /// Renders every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(out, "# HELP chatd_{name} {help}\n# TYPE chatd_{name} {kind}\nchatd_{name} {value}\n");
        };
        one("connections", "gauge", "Open TCP connections.", self.connections.load(Relaxed));
        one("sessions", "gauge", "Open chat WebSocket sessions.", self.sessions.load(Relaxed));
        one("rooms", "gauge", "Rooms in memory.", self.rooms.load(Relaxed));
        one("messages_in_total", "counter", "Chat messages accepted from clients.", self.messages_in.load(Relaxed));
        one("messages_out_total", "counter", "Frames queued to clients.", self.messages_out.load(Relaxed));
        one("bytes_in_total", "counter", "WebSocket payload bytes received.", self.bytes_in.load(Relaxed));
        one("bytes_out_total", "counter", "Bytes queued to clients.", self.bytes_out.load(Relaxed));
        one(
            "slow_consumer_disconnects_total",
            "counter",
            "Clients closed with 1013.",
            self.slow_consumers.load(Relaxed),
        );
        one("rate_limited_total", "counter", "Messages refused by the rate limit.", self.rate_limited.load(Relaxed));
        one("tls_reloads_total", "counter", "Successful certificate reloads.", self.tls_reloads.load(Relaxed));
        one(
            "tls_reload_failures_total",
            "counter",
            "Failed certificate reloads.",
            self.tls_reload_failures.load(Relaxed),
        );
        one(
            "cluster_fills_total",
            "counter",
            "Reads of a Redis stream to fill a gap in the subscription.",
            self.cluster_fills.load(Relaxed),
        );
        one(
            "cluster_resubscribes_total",
            "counter",
            "Times the Redis subscription was lost and restored.",
            self.cluster_resubscribes.load(Relaxed),
        );
        out.push_str("# HELP chatd_rejected_total Connections refused before a chat session, by reason.\n");
        out.push_str("# TYPE chatd_rejected_total counter\n");
        for (i, (_, reason)) in REJECTIONS.iter().enumerate() {
            let _ = writeln!(out, "chatd_rejected_total{{reason=\"{reason}\"}} {}", self.rejected[i].load(Relaxed));
        }
        out
    }
}
