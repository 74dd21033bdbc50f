//! Several chatd nodes sharing rooms through Redis (`--redis redis://HOST:PORT`).
//!
//! ```text
//! client ─ws─ node A ── say ──▶ Redis, one script: INCR the room's number, XADD the message to
//!                               the room's stream (capped at --history), PUBLISH it
//!                                   │
//!          node A, node B ◀─────────┘ each node subscribed to the room fans it out to its own
//!                                     members, in number order (hub::deliver)
//! ```
//!
//! Redis gives each room one order: the script runs atomically, so numbers, stream order and
//! publish order agree. A node delivers message `n + 1` after `n` and nothing twice; a gap (a
//! message published while the subscription was down, or before it was confirmed) is filled by
//! reading the stream, so a member sees every message once, in order.
//!
//! # Keys (standalone Redis, tested with 7.0; not Redis Cluster: the presence scripts touch many rooms' keys)
//!
//! | key | type | holds |
//! |---|---|---|
//! | `chatd:seq:ROOM` | string | the room's last sequence number |
//! | `chatd:log:ROOM` | stream | the last `--history` messages, entry id `SEQ-1`, field `m` = the JSON |
//! | `chatd:presence:ROOM` | hash | nick → id of the node its member is on |
//! | `chatd:node:NODE` | set | rooms where NODE has (or had) members |
//! | `chatd:nodes` | sorted set | node id → the time (ms, Redis's clock) its lease runs out |
//! | channel `chatd:room:ROOM` | pub/sub | `M<seq> <json>` messages, `J<nick> <json>` joins, `P <json>` other presence |
//!
//! # Presence
//!
//! Every node renews its lease every `--node-expiry / 4`; each renewal also *reaps* nodes whose
//! lease ran out: their members are removed from presence and a `leave` is published for each,
//! so a node that dies (SIGKILL, power) disappears from every room within `--node-expiry`. Joins,
//! leaves and nick changes of one node are made one at a time (a lock), so Redis sees them in
//! the order the node decided them.
//!
//! # What survives what
//!
//! - A node dies: its members reconnect to another node with `since` and recover exactly (the
//!   stream holds the messages). Nothing the node acknowledged is lost: a message exists once
//!   Redis ran the script, before anyone sees it.
//! - Redis restarts: sends fail (`unavailable`) until it is back; nodes resubscribe, and fill
//!   what they missed from the stream. What Redis keeps across its restart is Redis's
//!   persistence setting: with `appendonly yes` (`appendfsync everysec`) at most the last second.
//!   If Redis comes back with less than a node already delivered, the node raises the room's
//!   number by [`crate::store::CRASH_GAP`] so no number is reused, and `since` from before is
//!   answered `recovered: false`.
//! - More than `--history` messages while a node was cut off: the oldest are no longer in the
//!   stream; that node's members skip them (logged), and `since` before them is `recovered: false`.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::{Client, Script};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::timeout;
use tracing::{debug, error, info, warn};

use crate::hub::{now_ms, ChatError, Hub, Me, Outbox};
use crate::protocol;
use crate::Shared;

/// Longest wait for one Redis request before the client is told `unavailable`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait between attempts to restore the subscription.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);
/// Rooms per `MGET` when checking that this node is not behind.
const CHECK_BATCH: usize = 500;
/// Messages waiting to be sent to Redis, from all sessions of this node; a message that finds
/// the queue full is refused (`unavailable`). 4,096 × 4 KiB of text at most: 16 MiB.
const SAY_QUEUE: usize = 4096;
/// Most messages sent to Redis in one pipeline.
const SAY_BATCH: usize = 256;

/// Numbers, stores and publishes one message. KEYS: seq, log. ARGV: history, JSON before the
/// number, JSON after it, channel.
const SAY: &str = r"
local seq = redis.call('INCR', KEYS[1])
local json = ARGV[2] .. seq .. ARGV[3]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], seq .. '-1', 'm', json)
redis.call('PUBLISH', ARGV[4], 'M' .. seq .. ' ' .. json)
return seq
";

/// Claims a nick in a room for this node, or returns nil if a live node holds it. Returns the
/// room's live members. KEYS: presence, this node's rooms, nodes. ARGV: node, nick, room,
/// channel, join notice. Time is Redis's own (`TIME`), so nodes' clocks don't matter.
const JOIN: &str = r"
local owner = redis.call('HGET', KEYS[1], ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local known = {}
local function alive(node)
  if node == ARGV[1] then return true end
  if known[node] == nil then
    local lease = redis.call('ZSCORE', KEYS[3], node)
    known[node] = (lease and tonumber(lease) > now) or false
  end
  return known[node]
end
if owner and alive(owner) and owner ~= ARGV[1] then return nil end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
if owner ~= ARGV[1] then
  redis.call('PUBLISH', ARGV[4], 'J' .. ARGV[2] .. ' ' .. ARGV[5])
end
local members = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if alive(all[i + 1]) then
    table.insert(members, all[i])
  end
end
return members
";

/// Gives up a nick in a room if this node holds it. KEYS: presence. ARGV: node, nick,
/// channel, leave notice.
const LEAVE: &str = r"
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[1], ARGV[2])
  redis.call('PUBLISH', ARGV[3], 'P ' .. ARGV[4])
  return 1
end
return 0
";

/// Renames this node's member in several rooms, all or nothing. KEYS: nodes, then the presence
/// hash of each room. ARGV: node, old, new, then channel and notice for each room.
/// Returns 0 if a live node holds the new nick in one of them.
const RENAME: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #KEYS do
  local owner = redis.call('HGET', KEYS[i], ARGV[3])
  if owner and owner ~= ARGV[1] then
    local lease = redis.call('ZSCORE', KEYS[1], owner)
    if lease and tonumber(lease) > now then return 0 end
  end
end
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], ARGV[2]) == ARGV[1] then
    redis.call('HDEL', KEYS[i], ARGV[2])
  end
  redis.call('HSET', KEYS[i], ARGV[3], ARGV[1])
  redis.call('PUBLISH', ARGV[2 + 2 * (i - 1)], 'P ' .. ARGV[3 + 2 * (i - 1)])
end
return 1
";

/// Renews this node's lease for ARGV[2] ms of Redis's clock (0: ends it) and reaps every node
/// whose lease ran out: their members leave presence, with a `leave` notice each. KEYS: nodes.
/// ARGV: node, lease (ms). Nicks are letters, digits and `-_.`, room names ASCII of the same, so
/// the notices need no escaping.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], lease > 0 and now + lease or 0, ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, node in ipairs(dead) do
  redis.call('ZREM', KEYS[1], node)
  local rooms_key = 'chatd:node:' .. node
  for _, room in ipairs(redis.call('SMEMBERS', rooms_key)) do
    local key = 'chatd:presence:' .. room
    local all = redis.call('HGETALL', key)
    for i = 1, #all, 2 do
      if all[i + 1] == node then
        redis.call('HDEL', key, all[i])
        redis.call('PUBLISH', 'chatd:room:' .. room,
          'P {"type":"leave","room":"' .. room .. '","nick":"' .. all[i] .. '"}')
      end
    end
  end
  redis.call('DEL', rooms_key)
end
return #dead
"#;

/// Raises a room's number to at least ARGV[1] (after Redis lost data). KEYS: seq.
const RAISE: &str = r"
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
if seq < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
";

/// Cluster settings (`--redis`, `--node-expiry`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://[user:password@]HOST:PORT[/DB]`, `rediss://` for TLS, or `redis+unix:///PATH`.
    pub url: String,
    /// How long a node that stopped renewing its lease stays in presence. Default 10 s: a
    /// member on a dead node is listed at most this long.
    pub node_expiry: Duration,
}

impl ClusterConfig {
    /// A cluster on the Redis at `url`, with the default expiry.
    pub fn new(url: impl Into<String>) -> Self {
        ClusterConfig { url: url.into(), node_expiry: Duration::from_secs(10) }
    }
}

/// Why the cluster could not start. One line for the operator.
#[derive(Debug)]
pub struct ClusterError(String);

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    }
}

/// Checks that `url` is a Redis URL (start-up, before anything is bound).
pub fn check_url(url: &str) -> Result<Client, ClusterError> {
    use redis::IntoConnectionInfo;
    let bad = |e: redis::RedisError| {
        ClusterError(format!("--redis {:?} is not a Redis URL ({e}); expected redis://HOST:PORT", redacted(url)))
    };
    // TCP_NODELAY: a request of a few hundred bytes must not wait for the previous one's ACK.
    let nodelay = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    let info = url.into_connection_info().map_err(bad)?.set_tcp_settings(nodelay);
    Client::open(info).map_err(bad)
}

/// A message on its way to Redis: its JSON around the number Redis will give it.
struct Outgoing {
    room: String,
    before: String,
    after: String,
    outbox: Outbox,
}

struct Scripts {
    say: Script,
    join: Script,
    leave: Script,
    rename: Script,
    heartbeat: Script,
    raise: Script,
}

/// This node's connection to the cluster.
pub struct Cluster {
    node: String,
    client: Client,
    conn: ConnectionManager,
    sink: Mutex<Option<PubSubSink>>,
    /// The first subscription, made at start-up so joins work at once; the subscriber task
    /// takes it.
    first: Mutex<Option<PubSubStream>>,
    /// Joins, leaves and renames of this node, one at a time.
    presence: tokio::sync::Mutex<()>,
    /// Leaves that failed (Redis unreachable), retried with each heartbeat.
    unsent_leaves: Mutex<Vec<(String, String)>>,
    fills: mpsc::UnboundedSender<(String, u64)>,
    fill_queue: Mutex<Option<mpsc::UnboundedReceiver<(String, u64)>>>,
    says: mpsc::Sender<Outgoing>,
    say_queue: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    /// Messages accepted by [`Cluster::say`] and not yet answered by Redis.
    unsent: AtomicUsize,
    /// Signalled whenever the sender finished a batch.
    sent: Notify,
    scripts: Scripts,
    expiry: Duration,
    history: usize,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn channel(room: &str) -> String {
    format!("chatd:room:{room}")
}

fn seq_key(room: &str) -> String {
    format!("chatd:seq:{room}")
}

fn log_key(room: &str) -> String {
    format!("chatd:log:{room}")
}

fn presence_key(room: &str) -> String {
    format!("chatd:presence:{room}")
}

const NODES: &str = "chatd:nodes";

/// A node id: random, so a restarted node never inherits a dead one's presence.
fn node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// Stream entries (`XRANGE`/`XREVRANGE` replies) as (seq, JSON).
fn entries(reply: Vec<(String, Vec<String>)>) -> Vec<(u64, Arc<str>)> {
    reply
        .into_iter()
        .filter_map(|(id, fields)| {
            let seq = id.split('-').next()?.parse().ok()?;
            let json = fields.into_iter().nth(1)?;
            Some((seq, Arc::from(json)))
        })
        .collect()
}

async fn request<T>(what: &str, f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, ChatError> {
    match timeout(REQUEST_TIMEOUT, f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            warn!("Redis {what} failed: {e}");
            Err(ChatError::Unavailable)
        }
        Err(_) => {
            warn!("Redis {what}: no answer within {REQUEST_TIMEOUT:?}");
            Err(ChatError::Unavailable)
        }
    }
}

impl Cluster {
    /// Connects to Redis (commands and the subscription), registers this node and returns.
    /// Fails if Redis can't be reached within a few seconds: a node that starts without it
    /// would only refuse every client.
    pub async fn connect(config: &ClusterConfig, history: usize) -> Result<Cluster, ClusterError> {
        let client = check_url(&config.url)?;
        let unreachable = |e: &dyn fmt::Display| {
            ClusterError(format!("cannot reach Redis at {}: {e} (is redis-server running?)", redacted(&config.url)))
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REQUEST_TIMEOUT))
            .set_response_timeout(Some(REQUEST_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = timeout(REQUEST_TIMEOUT * 3, ConnectionManager::new_with_config(client.clone(), manager_config))
            .await
            .map_err(|e| unreachable(&e))?
            .map_err(|e| unreachable(&e))?;
        let pubsub = timeout(REQUEST_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(|e| unreachable(&e))?
            .map_err(|e| unreachable(&e))?;
        let (sink, stream) = pubsub.split();
        let (fills, fill_queue) = mpsc::unbounded_channel();
        let (says, say_queue) = mpsc::channel(SAY_QUEUE);
        let cluster = Cluster {
            node: node_id(),
            client,
            conn,
            sink: Mutex::new(Some(sink)),
            first: Mutex::new(Some(stream)),
            presence: tokio::sync::Mutex::new(()),
            unsent_leaves: Mutex::default(),
            fills,
            fill_queue: Mutex::new(Some(fill_queue)),
            says,
            say_queue: Mutex::new(Some(say_queue)),
            unsent: AtomicUsize::new(0),
            sent: Notify::new(),
            scripts: Scripts {
                say: Script::new(SAY),
                join: Script::new(JOIN),
                leave: Script::new(LEAVE),
                rename: Script::new(RENAME),
                heartbeat: Script::new(HEARTBEAT),
                raise: Script::new(RAISE),
            },
            expiry: config.node_expiry,
            history,
        };
        cluster.heartbeat(false).await.map_err(|_| unreachable(&"the first heartbeat failed"))?;
        info!(node = %cluster.node, "cluster node on Redis {}", redacted(&config.url));
        Ok(cluster)
    }

    /// This node's id in presence (random per process).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Renews this node's lease (`end`: ends it) and reaps dead nodes.
    async fn heartbeat(&self, end: bool) -> Result<(), ChatError> {
        let lease = if end { 0 } else { self.expiry.as_millis() as u64 };
        let mut conn = self.conn.clone();
        let mut call = self.scripts.heartbeat.key(NODES);
        call.arg(&self.node).arg(lease);
        let reaped: u64 = request("heartbeat", call.invoke_async(&mut conn)).await?;
        if reaped > 0 {
            info!("{reaped} node(s) stopped renewing their lease: their members left presence");
        }
        Ok(())
    }

    /// Makes sure this node follows `room`: subscribed, and its state loaded.
    async fn follow(&self, hub: &Hub, room: &str) -> Result<(), ChatError> {
        if hub.follow(room)? {
            return Ok(());
        }
        let sink = lock(&self.sink).clone().ok_or(ChatError::Unavailable)?;
        for evicted in hub.take_evicted() {
            let _ = timeout(REQUEST_TIMEOUT, sink.clone().unsubscribe(channel(&evicted))).await;
        }
        // Subscribed first, loaded second: whatever is published after the load arrives.
        request("SUBSCRIBE", sink.clone().subscribe(channel(room))).await?;
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.get(seq_key(room)).cmd("XREVRANGE").arg(log_key(room)).arg("+").arg("-").arg("COUNT").arg(self.history);
        let (seq, mut history): (Option<u64>, Vec<(String, Vec<String>)>) =
            request("load", pipe.query_async(&mut conn)).await?;
        history.reverse();
        if let Some(from) = hub.synced(room, seq.unwrap_or(0), entries(history)) {
            let _ = self.fills.send((room.to_owned(), from));
        }
        Ok(())
    }

    /// Joins `room` across the cluster: this node follows it, Redis takes the nick (unless a
    /// member on another live node has it) and announces the join, and `me` gets the `hello`.
    pub async fn join(&self, hub: &Hub, me: &Me<'_>, room: &str, since: Option<u64>) -> Result<(), ChatError> {
        let _one_at_a_time = self.presence.lock().await;
        hub.may_join(me, room)?;
        self.follow(hub, room).await?;
        let mut conn = self.conn.clone();
        let mut call = self.scripts.join.key(presence_key(room));
        call.key(format!("chatd:node:{}", self.node)).key(NODES);
        call.arg(&self.node).arg(me.nick).arg(room).arg(channel(room));
        call.arg(protocol::presence("join", room, me.nick));
        let members: Option<Vec<String>> = request("join", call.invoke_async(&mut conn)).await?;
        let members = members.ok_or(ChatError::NickTaken)?;
        let joined = hub.join_with(me, room, since, Some(&members));
        if joined.is_err() {
            self.leave_locked(hub, room, me.nick).await;
        }
        joined
    }

    /// Gives up `nick` in `room` after its member left this node's hub, unless another member
    /// here has it now.
    pub async fn leave(&self, hub: &Hub, room: &str, nick: &str) {
        let _one_at_a_time = self.presence.lock().await;
        self.leave_locked(hub, room, nick).await;
    }

    async fn leave_locked(&self, hub: &Hub, room: &str, nick: &str) {
        if hub.has_nick(room, nick) {
            return;
        }
        let mut conn = self.conn.clone();
        let mut call = self.scripts.leave.key(presence_key(room));
        call.arg(&self.node).arg(nick).arg(channel(room)).arg(protocol::presence("leave", room, nick));
        let left: Result<u64, _> = request("leave", call.invoke_async(&mut conn)).await;
        if left.is_err() {
            lock(&self.unsent_leaves).push((room.to_owned(), nick.to_owned()));
        }
    }

    /// Renames member `id` in `rooms`, all or nothing across the cluster.
    pub async fn rename(&self, hub: &Hub, id: u64, old: &str, rooms: &[String], new: &str) -> Result<(), ChatError> {
        let _one_at_a_time = self.presence.lock().await;
        if rooms.iter().any(|room| hub.has_nick(room, new)) {
            return Err(ChatError::NickTaken);
        }
        if !rooms.is_empty() {
            let mut conn = self.conn.clone();
            let mut call = self.scripts.rename.key(NODES);
            for room in rooms {
                call.key(presence_key(room));
            }
            call.arg(&self.node).arg(old).arg(new);
            for room in rooms {
                call.arg(channel(room)).arg(protocol::nick_change(room, old, new));
            }
            let renamed: u64 = request("rename", call.invoke_async(&mut conn)).await?;
            if renamed == 0 {
                return Err(ChatError::NickTaken);
            }
        }
        hub.rename(id, rooms, new)
    }

    /// Queues a message from `nick` to `room` for Redis, which numbers, stores and publishes it;
    /// this node delivers it like any other when the subscription brings it back. Doesn't wait:
    /// the messages of all sessions go to Redis in pipelines, in the order they were queued, so
    /// one session's messages keep their order. If Redis refuses one, `outbox` gets the error.
    pub fn say(&self, room: &str, nick: &str, text: &str, outbox: &Outbox) -> Result<(), ChatError> {
        let (before, after) = protocol::message_parts(room, nick, text, now_ms());
        let message = Outgoing { room: room.to_owned(), before, after, outbox: outbox.clone() };
        self.unsent.fetch_add(1, Relaxed);
        self.says.try_send(message).map_err(|_| {
            self.unsent.fetch_sub(1, Relaxed);
            ChatError::Unavailable
        })
    }

    /// Sends one batch of messages in a pipeline; each gets its number or why not.
    async fn send(&self, batch: &[Outgoing]) -> Vec<Result<u64, ChatError>> {
        let pipeline = |messages: &[&Outgoing]| {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for m in messages {
                let mut call = self.scripts.say.key(seq_key(&m.room));
                call.key(log_key(&m.room)).arg(self.history).arg(&m.before).arg(&m.after).arg(channel(&m.room));
                pipe.invoke_script(&call);
            }
            pipe
        };
        let mut conn = self.conn.clone();
        let all: Vec<&Outgoing> = batch.iter().collect();
        let mut results: Vec<redis::RedisResult<u64>> =
            match request("message", pipeline(&all).query_async(&mut conn)).await {
                Ok(results) => results,
                Err(e) => return vec![Err(e); batch.len()],
            };
        let no_script = |r: &redis::RedisResult<u64>| {
            r.as_ref().is_err_and(|e| e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
        };
        if results.iter().any(no_script) {
            // Redis restarted and forgot the script: load it, send those again (they did nothing).
            let again: Vec<usize> = (0..results.len()).filter(|&i| no_script(&results[i])).collect();
            let _ = request("SCRIPT LOAD", self.scripts.say.prepare_invoke().load_async(&mut conn)).await;
            let retry: Vec<&Outgoing> = again.iter().map(|&i| &batch[i]).collect();
            let retried: Vec<redis::RedisResult<u64>> =
                request("message", pipeline(&retry).query_async(&mut conn)).await.unwrap_or_default();
            for (i, result) in again.into_iter().zip(retried) {
                results[i] = result;
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.map_err(|e| {
                    warn!("Redis refused a message: {e}");
                    ChatError::Unavailable
                })
            })
            .chain(std::iter::repeat(Err(ChatError::Unavailable)))
            .take(batch.len())
            .collect()
    }

    /// Ends this node's lease at shutdown (after the messages still queued for Redis are sent):
    /// its remaining members leave presence at once.
    pub async fn shutdown(&self) {
        loop {
            let sent = self.sent.notified();
            if self.unsent.load(Relaxed) == 0 || timeout(REQUEST_TIMEOUT, sent).await.is_err() {
                break;
            }
        }
        let _one_at_a_time = self.presence.lock().await;
        if self.heartbeat(true).await.is_ok() {
            info!("left the cluster");
        }
    }

    /// Reads the stream of `room` from `from` on (at most `--history` entries).
    async fn fill(&self, room: &str, from: u64) -> Result<Vec<(u64, Arc<str>)>, ChatError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(log_key(room)).arg(format!("{from}-0")).arg("+").arg("COUNT").arg(self.history);
        let reply: Vec<(String, Vec<String>)> = request("XRANGE", cmd.query_async(&mut conn)).await?;
        Ok(entries(reply))
    }

    /// Compares each followed room with its number in Redis: fills where this node is behind
    /// (a lost publish), raises Redis's number where it is behind this node (Redis lost data).
    async fn check(&self, hub: &Hub) -> Result<(), ChatError> {
        let followed: Vec<(String, u64)> =
            hub.followed().into_iter().filter_map(|(room, seq)| Some((room, seq?))).collect();
        for batch in followed.chunks(CHECK_BATCH) {
            let mut conn = self.conn.clone();
            let keys: Vec<String> = batch.iter().map(|(room, _)| seq_key(room)).collect();
            let latest: Vec<Option<u64>> = request("MGET", redis::cmd("MGET").arg(keys).query_async(&mut conn)).await?;
            for ((room, seen), latest) in batch.iter().zip(latest) {
                let latest = latest.unwrap_or(0);
                if latest < *seen {
                    let resume = seen + crate::store::CRASH_GAP;
                    error!(
                        room = %room,
                        "Redis is at message {latest} but this node delivered {seen}: Redis lost data (restarted \
                         without persistence?). Numbering resumes at {resume} so no number is reused"
                    );
                    let mut call = self.scripts.raise.key(seq_key(room));
                    call.arg(resume);
                    let _: u64 = request("raise", call.invoke_async(&mut conn)).await?;
                } else if let Some(from) = hub.behind(room, latest) {
                    let _ = self.fills.send((room.clone(), from));
                }
            }
        }
        Ok(())
    }
}

/// Starts the node's background work: the subscription (with reconnects), fills, the lease and
/// the check that no room is behind, and presence for members who were dropped.
pub fn spawn(shared: Arc<Shared>, stopped: watch::Receiver<bool>, tasks: &mut tokio::task::JoinSet<()>) {
    let Some(cluster) = shared.cluster.as_ref() else { return };
    let fills = lock(&cluster.fill_queue).take();
    if let Some(says) = lock(&cluster.say_queue).take() {
        tasks.spawn(sender(shared.clone(), says));
    }
    tasks.spawn(subscriber(shared.clone(), stopped.clone()));
    tasks.spawn(upkeep(shared.clone(), stopped.clone()));
    if let Some(fills) = fills {
        tasks.spawn(filler(shared.clone(), fills, stopped.clone()));
    }
    tasks.spawn(departures(shared, stopped));
}

fn cluster(shared: &Shared) -> &Cluster {
    // spawn() only starts these tasks when there is a cluster.
    #[allow(clippy::expect_used)]
    shared.cluster.as_ref().expect("cluster tasks run in cluster mode")
}

/// Receives what Redis publishes for the followed rooms; reconnects and resubscribes when the
/// subscription breaks, then fills every room from the stream.
async fn subscriber(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    use futures_util::StreamExt;
    let cluster = cluster(&shared);
    let mut stream = lock(&cluster.first).take();
    let mut delay = Duration::from_millis(100);
    loop {
        if let Some(mut messages) = stream.take() {
            delay = Duration::from_millis(100);
            let mut ping = tokio::time::interval(cluster.expiry / 4);
            ping.tick().await;
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    message = messages.next() => match message {
                        Some(message) => on_message(&shared, &message),
                        None => break,
                    },
                    _ = ping.tick() => {
                        let sink = lock(&cluster.sink).clone();
                        let Some(mut sink) = sink else { break };
                        // In subscribed mode the answer is ["pong", ""]: any answer will do.
                        if request::<redis::Value>("PING", sink.ping()).await.is_err() {
                            break;
                        }
                    }
                }
            }
            *lock(&cluster.sink) = None;
            warn!("the Redis subscription broke; reconnecting (clients are told `unavailable` meanwhile)");
        }
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        match resubscribe(&shared).await {
            Ok(messages) => stream = Some(messages),
            Err(e) => warn!("Redis subscription: {e}; retrying in {delay:?}"),
        }
    }
}

/// A new subscription to every followed room; rooms already loaded are then filled.
async fn resubscribe(shared: &Shared) -> Result<PubSubStream, String> {
    let cluster = cluster(shared);
    let pubsub = timeout(REQUEST_TIMEOUT, cluster.client.get_async_pubsub())
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())?;
    let (sink, stream) = pubsub.split();
    let rooms = shared.hub.followed();
    let channels: Vec<String> = rooms.iter().map(|(room, _)| channel(room)).collect();
    if !channels.is_empty() {
        timeout(REQUEST_TIMEOUT, sink.clone().subscribe(channels))
            .await
            .map_err(|_| "no answer to SUBSCRIBE".to_owned())?
            .map_err(|e| e.to_string())?;
    }
    *lock(&cluster.sink) = Some(sink);
    shared.metrics.cluster_resubscribes.fetch_add(1, Relaxed);
    info!("Redis subscription restored ({} rooms); filling what was missed", rooms.len());
    for (room, seq) in rooms {
        if seq.is_some() {
            if let Some(from) = shared.hub.behind(&room, u64::MAX) {
                let _ = cluster.fills.send((room, from));
            }
        }
    }
    Ok(stream)
}

/// One published message: `M<seq> <json>`, `J<nick> <json>` or `P <json>`.
fn on_message(shared: &Shared, message: &redis::Msg) {
    let Some(room) = message.get_channel_name().strip_prefix("chatd:room:") else { return };
    let Ok(payload) = std::str::from_utf8(message.get_payload_bytes()) else { return };
    let Some((head, json)) = payload.split_once(' ') else { return };
    match head.split_at_checked(1) {
        Some(("M", seq)) => {
            let Ok(seq) = seq.parse() else { return };
            if let Some(from) = shared.hub.deliver(room, seq, Arc::from(json)) {
                let _ = cluster(shared).fills.send((room.to_owned(), from));
            }
        }
        Some(("J", nick)) => shared.hub.notice(room, json, Some(nick)),
        Some(("P", "")) => shared.hub.notice(room, json, None),
        _ => debug!("unknown publication on {}", message.get_channel_name()),
    }
}

/// Sends queued messages to Redis, a pipeline at a time: whatever queued while the last one was
/// in flight goes in the next. Runs until the server stops (after [`Cluster::shutdown`]).
async fn sender(shared: Arc<Shared>, mut queue: mpsc::Receiver<Outgoing>) {
    let cluster = cluster(&shared);
    let mut batch = Vec::with_capacity(SAY_BATCH);
    while queue.recv_many(&mut batch, SAY_BATCH).await > 0 {
        let results = cluster.send(&batch).await;
        let sent = batch.len();
        let mut accepted = 0;
        for (message, result) in batch.drain(..).zip(results) {
            match result {
                Ok(_) => accepted += 1,
                Err(e) => {
                    message.outbox.push(&wsproto::EncodedFrame::text(&protocol::error(e.code(), "message refused")));
                }
            }
        }
        shared.metrics.messages_in.fetch_add(accepted, Relaxed);
        cluster.unsent.fetch_sub(sent, Relaxed);
        cluster.sent.notify_waiters();
    }
}

/// Fills rooms from their streams, one request at a time.
async fn filler(
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<(String, u64)>,
    mut stopped: watch::Receiver<bool>,
) {
    let cluster = cluster(&shared);
    loop {
        let (room, from) = tokio::select! {
            _ = stopped.changed() => return,
            next = queue.recv() => match next { Some(next) => next, None => return },
        };
        let entries = cluster.fill(&room, from).await.unwrap_or_default();
        shared.metrics.cluster_fills.fetch_add(1, Relaxed);
        if let Some(from) = shared.hub.filled(&room, entries) {
            let _ = cluster.fills.send((room, from));
        }
    }
}

/// The lease, retried leaves, and the check that no followed room is behind Redis.
async fn upkeep(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let cluster = cluster(&shared);
    let mut tick = tokio::time::interval(cluster.expiry / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        if cluster.heartbeat(false).await.is_err() {
            continue;
        }
        let unsent = std::mem::take(&mut *lock(&cluster.unsent_leaves));
        for (room, nick) in unsent {
            cluster.leave(&shared.hub, &room, &nick).await;
        }
        let _ = cluster.check(&shared.hub).await;
    }
}

/// Removes from presence the members this node dropped for falling behind.
async fn departures(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let cluster = cluster(&shared);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            () = shared.hub.departures.notified() => {}
        }
        for (room, nick) in shared.hub.take_departed() {
            cluster.leave(&shared.hub, &room, &nick).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redacted("redis://:s3cret@db.internal:6379/0"), "redis://***@db.internal:6379/0");
        assert_eq!(redacted("rediss://chatd:s3cret@db:6380"), "rediss://***@db:6380");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn stream_entries_are_numbered_by_their_id() {
        let reply = vec![
            ("7-1".to_owned(), vec!["m".to_owned(), "{\"seq\":7}".to_owned()]),
            ("bad".to_owned(), vec!["m".to_owned(), "x".to_owned()]),
            ("8-1".to_owned(), vec!["m".to_owned()]),
        ];
        let got = entries(reply);
        assert_eq!(got.len(), 1, "malformed entries are skipped");
        assert_eq!((got[0].0, &*got[0].1), (7, "{\"seq\":7}"));
    }
}
