//! Rooms: members, per-room sequence numbers, the history ring, and fan-out.
//!
//! # Fan-out, encoded once
//!
//! A message is serialised to JSON and encoded as a WebSocket frame once, under the room's
//! lock, then every member's [`Outbox`] gets a clone of the same bytes (a reference-count
//! increment). Each outbox is bounded in messages and bytes; a push that doesn't fit *kicks*
//! that member instead of waiting, so one client that stopped reading never slows the room.
//! The kicked session closes with 1013.
//!
//! # Locking
//!
//! The room map has one lock, held only to find or create a room. Each room has its own lock,
//! held while a message is numbered, stored and pushed to the outboxes (no I/O happens under
//! it). Code that needs several rooms at once (a nick change) locks them in name order.
//!
//! # Following Redis (`--redis`)
//!
//! In cluster mode ([`Hub::clustered`]) this node does not number messages: Redis does (see
//! [`crate::cluster`]), and every node *follows* each room it has members in. A message arrives
//! with its sequence number and is delivered to local members only if it is the next one; one
//! that arrives early waits in the room's `pending` map while the gap is filled from the Redis
//! stream, and one already delivered is dropped. So each member sees every message once and in
//! the room's order, whatever the subscription did (reconnects, duplicates, reordering).
//! Presence notices come from Redis too, so local joins and leaves are not broadcast here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, Notify};
use wsproto::EncodedFrame;

use crate::metrics::Metrics;
use crate::protocol;
use crate::store::Store;

/// Why a request about rooms was refused; the code is sent in an `error` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatError {
    /// The nick is used by someone else in that room.
    NickTaken,
    /// Already a member of the room.
    AlreadyJoined,
    /// Not a member of the room.
    NotInRoom,
    /// The server keeps no more rooms.
    TooManyRooms,
    /// The room's stored history could not be read (the server logs why).
    Unavailable,
}

impl ChatError {
    /// The stable `code` of the `error` event.
    pub fn code(self) -> &'static str {
        match self {
            ChatError::NickTaken => "nick_taken",
            ChatError::AlreadyJoined => "already_joined",
            ChatError::NotInRoom => "not_in_room",
            ChatError::TooManyRooms => "too_many_rooms",
            ChatError::Unavailable => "unavailable",
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a room lock must not take every later request down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Signals a session that it fell behind and must close.
#[derive(Debug, Default)]
pub struct Kick {
    kicked: AtomicBool,
    notify: Notify,
}

impl Kick {
    fn kick(&self) {
        if !self.kicked.swap(true, Relaxed) {
            self.notify.notify_one();
        }
    }

    /// Whether the session was kicked.
    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Relaxed)
    }

    /// Resolves once the session is kicked (immediately if it already was).
    pub async fn kicked(&self) {
        if !self.is_kicked() {
            self.notify.notified().await;
        }
    }
}

/// A member's bounded outgoing queue, as seen by the room.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<EncodedFrame>,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
    kick: Arc<Kick>,
}

/// The session's end of an [`Outbox`].
#[derive(Debug)]
pub struct Inbox {
    /// Frames to write, in order.
    pub rx: mpsc::Receiver<EncodedFrame>,
    queued: Arc<AtomicUsize>,
    /// Set when the outbox overflowed.
    pub kick: Arc<Kick>,
}

impl Inbox {
    /// Marks a frame taken from `rx` as no longer queued.
    pub fn taken(&self, frame: &EncodedFrame) {
        self.queued.fetch_sub(frame.len(), Relaxed);
    }
}

/// A bounded queue: at most `max_messages` frames and `max_bytes` bytes.
pub fn outbox(max_messages: usize, max_bytes: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(max_messages.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    let kick = Arc::new(Kick::default());
    (Outbox { tx, queued: queued.clone(), max_bytes, kick: kick.clone() }, Inbox { rx, queued, kick })
}

impl Outbox {
    /// Queues a frame without waiting. A full queue kicks the member and returns false.
    pub fn push(&self, frame: &EncodedFrame) -> bool {
        if self.kick.is_kicked() {
            return false;
        }
        if self.queued.load(Relaxed) + frame.len() > self.max_bytes {
            self.kick.kick();
            return false;
        }
        match self.tx.try_send(frame.clone()) {
            Ok(()) => {
                self.queued.fetch_add(frame.len(), Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kick.kick();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// One member of a room.
#[derive(Debug)]
struct Member {
    nick: String,
    outbox: Outbox,
    /// Takes the shared permessage-deflate frame (see [`Me::deflate`]).
    deflate: bool,
}

/// The DEFLATE level of broadcast frames: zlib's default. A chat message is compressed once
/// per room, not once per member, so the level costs little.
pub const DEFLATE_LEVEL: u8 = 6;
/// Shorter messages go uncompressed: DEFLATE can't shrink them.
pub const DEFLATE_MIN: usize = 64;

/// A frame for one member: the compressed frame (made at most once per message, and only if a
/// member wants it) or the plain one.
#[derive(Debug)]
struct Frames<'a> {
    json: &'a str,
    plain: Option<EncodedFrame>,
    deflated: Option<EncodedFrame>,
}

impl<'a> Frames<'a> {
    fn new(json: &'a str) -> Self {
        Frames { json, plain: None, deflated: None }
    }

    fn for_member(&mut self, deflate: bool) -> &EncodedFrame {
        let json = self.json;
        if deflate && json.len() >= DEFLATE_MIN {
            self.deflated.get_or_insert_with(|| EncodedFrame::deflated_text(json, DEFLATE_LEVEL))
        } else {
            self.plain.get_or_insert_with(|| EncodedFrame::text(json))
        }
    }
}

/// A room: members, the next sequence number, and the last messages.
#[derive(Debug)]
struct Room {
    name: String,
    seq: u64,
    history: VecDeque<(u64, Arc<str>)>,
    /// The lowest `since` recoverable exactly (after a crash, what came before may be lost).
    recoverable_from: u64,
    members: HashMap<u64, Member>,
    last_active: Instant,
    /// Cluster mode: how far this node has followed the room's Redis stream.
    follow: Follow,
}

/// Most messages a room holds back while a gap before them is filled (64-byte messages: about
/// 300 KiB per room at most). The lowest numbers are kept, since they are delivered first;
/// the highest are dropped past it and fetched from the stream by a later fill.
const PENDING_MAX: usize = 4096;

/// Cluster mode: a room's place in its Redis stream (see the module docs).
#[derive(Debug, Default)]
struct Follow {
    /// The room's state was loaded from Redis; until then messages wait in `pending`.
    synced: bool,
    /// Messages that arrived before the one due next, by sequence number.
    pending: BTreeMap<u64, Arc<str>>,
    /// A fill (a read of the stream from `seq + 1`) is in flight.
    filling: bool,
}

impl Follow {
    /// Holds message `seq` until the ones before it are delivered. At the limit a lower number
    /// replaces the highest held (a fill's messages, which close the gap, must never be the
    /// ones dropped); a higher one is dropped.
    fn hold(&mut self, seq: u64, json: Arc<str>) {
        if self.pending.contains_key(&seq) {
            return; // a duplicate (a fill racing the subscription)
        }
        if self.pending.len() >= PENDING_MAX {
            match self.pending.last_key_value() {
                Some((&last, _)) if last > seq => {
                    self.pending.pop_last();
                }
                _ => return,
            }
        }
        self.pending.insert(seq, json);
    }
}

impl Room {
    /// Pushes the text frame `json` to every member except `skip`, encoded (and compressed)
    /// once; returns those kicked (already removed).
    fn broadcast(&mut self, json: &str, skip: Option<u64>, metrics: &Metrics) -> Vec<String> {
        let mut kicked = Vec::new();
        let (mut delivered, mut bytes) = (0u64, 0u64);
        let mut frames = Frames::new(json);
        self.members.retain(|id, member| {
            if Some(*id) == skip {
                return true;
            }
            let frame = frames.for_member(member.deflate);
            if member.outbox.push(frame) {
                delivered += 1;
                bytes += frame.len() as u64;
                true
            } else {
                kicked.push(member.nick.clone());
                false
            }
        });
        metrics.messages_out.fetch_add(delivered, Relaxed);
        metrics.bytes_out.fetch_add(bytes, Relaxed);
        kicked
    }

    /// Delivers message `seq` (broadcast, then kept in the history ring).
    fn append(&mut self, seq: u64, json: Arc<str>, keep: usize, metrics: &Metrics) -> Vec<String> {
        let kicked = self.broadcast(&json, None, metrics);
        self.seq = seq;
        self.history.push_back((seq, json));
        while self.history.len() > keep {
            self.history.pop_front();
        }
        self.last_active = Instant::now();
        kicked
    }

    /// Cluster mode: delivers the pending messages that are next in order. Returns where a fill
    /// must start if a gap remains and none is in flight.
    fn advance(&mut self, keep: usize, metrics: &Metrics, kicked: &mut Vec<String>) -> Option<u64> {
        if !self.follow.synced {
            return None;
        }
        while let Some(entry) = self.follow.pending.first_entry() {
            let seq = *entry.key();
            if seq <= self.seq {
                entry.remove(); // already delivered
            } else if seq == self.seq + 1 {
                let json = entry.remove();
                kicked.extend(self.append(seq, json, keep, metrics));
            } else {
                break;
            }
        }
        if self.follow.pending.is_empty() || self.follow.filling {
            return None;
        }
        self.follow.filling = true;
        Some(self.seq + 1)
    }

    fn nick_in_use(&self, nick: &str, except: u64) -> bool {
        self.members.iter().any(|(id, m)| *id != except && m.nick == nick)
    }
}

/// Who is asking: a session's identity and its outbox.
#[derive(Debug)]
pub struct Me<'a> {
    /// The connection's id, unique for the process lifetime.
    pub id: u64,
    /// The connection's nick.
    pub nick: &'a str,
    /// Where the room sends this connection's frames.
    pub outbox: &'a Outbox,
    /// The connection agreed to permessage-deflate with server_no_context_takeover and a
    /// 32 KiB window, so it can take the room's one compressed copy of each message.
    pub deflate: bool,
}

/// All rooms.
#[derive(Debug)]
pub struct Hub {
    rooms: Mutex<HashMap<String, Arc<Mutex<Room>>>>,
    history: usize,
    max_rooms: usize,
    hello_budget: usize,
    metrics: Arc<Metrics>,
    store: Option<Store>,
    /// Cluster mode: Redis numbers messages and carries presence (see the module docs).
    clustered: bool,
    /// Cluster mode: rooms evicted from memory, to unsubscribe from.
    evicted: Mutex<Vec<String>>,
    /// Cluster mode: members removed here whose presence in Redis must go (room, nick).
    departed: Mutex<Vec<(String, String)>>,
    /// Wakes whoever processes `departed`.
    pub departures: Notify,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    /// An empty hub keeping `history` messages per room and at most `max_rooms` rooms; a
    /// `hello` carries at most `hello_budget` bytes of history.
    pub fn new(history: usize, max_rooms: usize, hello_budget: usize, metrics: Arc<Metrics>) -> Self {
        Hub {
            rooms: Mutex::new(HashMap::new()),
            history,
            max_rooms,
            hello_budget,
            metrics,
            store: None,
            clustered: false,
            evicted: Mutex::default(),
            departed: Mutex::default(),
            departures: Notify::new(),
        }
    }

    /// Cluster mode (`--redis`): messages are numbered by Redis and delivered through
    /// [`Hub::deliver`]; presence notices come through [`Hub::notice`].
    pub fn clustered(mut self) -> Self {
        self.clustered = true;
        self
    }

    /// Keeps history and sequence numbers in `store` (`--data-dir`): rooms not in memory are
    /// loaded from it, every message is queued to it.
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The store, if history is persisted.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    fn room(&self, name: &str, create: bool) -> Result<Arc<Mutex<Room>>, ChatError> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(name) {
            return Ok(room.clone());
        }
        if !create {
            return Err(ChatError::NotInRoom);
        }
        if rooms.len() >= self.max_rooms {
            // Evict the empty room idle the longest; rooms with members are never evicted.
            let victim = rooms
                .iter()
                .filter_map(|(name, room)| {
                    let room = room.try_lock().ok()?;
                    room.members.is_empty().then(|| (room.last_active, name.clone()))
                })
                .min()
                .map(|(_, name)| name)
                .ok_or(ChatError::TooManyRooms)?;
            rooms.remove(&victim);
            if self.clustered {
                lock(&self.evicted).push(victim);
            }
        }
        let (seq, history, recoverable_from) = match &self.store {
            Some(store) => store.load(name, self.history).map_err(|e| {
                tracing::error!("room {name:?}: {e}");
                ChatError::Unavailable
            })?,
            None => (0, VecDeque::new(), 0),
        };
        let room = Arc::new(Mutex::new(Room {
            name: name.to_owned(),
            seq,
            history,
            recoverable_from,
            members: HashMap::new(),
            last_active: Instant::now(),
            follow: Follow::default(),
        }));
        rooms.insert(name.to_owned(), room.clone());
        self.metrics.rooms.store(rooms.len() as u64, Relaxed);
        Ok(room)
    }

    /// Joins `room`: sends `me` the `hello` (members, history after `since`), then tells the
    /// others.
    pub fn join(&self, me: &Me<'_>, room_name: &str, since: Option<u64>) -> Result<(), ChatError> {
        self.join_with(me, room_name, since, None)
    }

    /// Whether `me` may join `room` as far as this node knows (cluster mode asks this before it
    /// asks Redis, then joins with [`Hub::join_with`]).
    pub fn may_join(&self, me: &Me<'_>, room_name: &str) -> Result<(), ChatError> {
        let Ok(room) = self.room(room_name, false) else { return Ok(()) };
        let room = lock(&room);
        if room.members.contains_key(&me.id) {
            return Err(ChatError::AlreadyJoined);
        }
        if room.nick_in_use(me.nick, me.id) {
            return Err(ChatError::NickTaken);
        }
        Ok(())
    }

    /// [`Hub::join`], with the member list of the whole cluster (`Some`, cluster mode: the room
    /// must be followed already, and Redis announces the join) or of this node (`None`).
    pub fn join_with(
        &self,
        me: &Me<'_>,
        room_name: &str,
        since: Option<u64>,
        everyone: Option<&[String]>,
    ) -> Result<(), ChatError> {
        let room = self.room(room_name, true)?;
        let kicked = {
            let mut room = lock(&room);
            if room.members.contains_key(&me.id) {
                return Err(ChatError::AlreadyJoined);
            }
            if room.nick_in_use(me.nick, me.id) {
                return Err(ChatError::NickTaken);
            }
            if self.clustered && !room.follow.synced {
                return Err(ChatError::Unavailable);
            }
            let oldest = room.history.front().map_or(room.seq + 1, |(seq, _)| *seq);
            // Recovered: every message after `since` is still kept (and `since` is not from a
            // previous life of this room: a client ahead of the server can't be recovered).
            let mut recovered = since.is_some_and(|s| s >= room.recoverable_from && s <= room.seq && s + 1 >= oldest);
            let after = if recovered { since.unwrap_or(0) } else { 0 };
            // The newest entries after `after` that fit the budget, so a hello can't overflow
            // the joiner's queue (JSON escaping can make 4 KiB of text 24 KiB on the wire).
            let wanted = room.history.iter().rev().take_while(|(seq, _)| *seq > after);
            let mut bytes = 0;
            let fit = wanted.clone().take_while(|(_, json)| {
                bytes += json.len();
                bytes <= self.hello_budget
            });
            let (fit, wanted) = (fit.count(), wanted.count());
            recovered &= fit == wanted;
            let mut members: Vec<&str> = match everyone {
                Some(everyone) => everyone.iter().map(String::as_str).collect(),
                None => room.members.values().map(|m| m.nick.as_str()).chain([me.nick]).collect(),
            };
            members.sort_unstable();
            members.dedup();
            let history = room.history.iter().skip(room.history.len() - fit).map(|(_, json)| &**json);
            let hello = protocol::hello(me.nick, &room.name, &members, room.seq, recovered, history);
            me.outbox.push(Frames::new(&hello).for_member(me.deflate));
            let member = Member { nick: me.nick.to_owned(), outbox: me.outbox.clone(), deflate: me.deflate };
            room.members.insert(me.id, member);
            room.last_active = Instant::now();
            if self.clustered {
                return Ok(()); // Redis announces the join
            }
            let notice = protocol::presence("join", &room.name, me.nick);
            room.broadcast(&notice, Some(me.id), &self.metrics)
        };
        self.announce_kicked(&room, kicked);
        Ok(())
    }

    /// Leaves `room` and tells the remaining members (in cluster mode Redis tells them). The room
    /// and its history stay. Returns the nick the member had.
    pub fn leave(&self, id: u64, room_name: &str) -> Result<String, ChatError> {
        let room = self.room(room_name, false)?;
        let (nick, kicked) = {
            let mut room = lock(&room);
            let member = room.members.remove(&id).ok_or(ChatError::NotInRoom)?;
            room.last_active = Instant::now();
            if self.clustered {
                return Ok(member.nick);
            }
            let notice = protocol::presence("leave", &room.name, &member.nick);
            (member.nick, room.broadcast(&notice, None, &self.metrics))
        };
        self.announce_kicked(&room, kicked);
        Ok(nick)
    }

    /// Whether a member of `room` on this node has `nick`.
    pub fn has_nick(&self, room_name: &str, nick: &str) -> bool {
        self.room(room_name, false).is_ok_and(|room| lock(&room).nick_in_use(nick, u64::MAX))
    }

    /// Cluster mode: the nick member `id` speaks with in `room` (the message itself goes to
    /// Redis, which numbers it).
    pub fn speaker(&self, id: u64, room_name: &str) -> Result<String, ChatError> {
        let room = self.room(room_name, false)?;
        let room = lock(&room);
        room.members.get(&id).map(|m| m.nick.clone()).ok_or(ChatError::NotInRoom)
    }

    /// Numbers, stores and broadcasts a message from member `id` (stamped with the nick the
    /// room knows, never one the client claims). Returns the sequence number.
    pub fn say(&self, id: u64, room_name: &str, text: &str) -> Result<u64, ChatError> {
        let room = self.room(room_name, false)?;
        let (seq, kicked) = {
            let mut room = lock(&room);
            let nick = room.members.get(&id).ok_or(ChatError::NotInRoom)?.nick.clone();
            let seq = room.seq + 1;
            let json: Arc<str> = protocol::message(&room.name, seq, &nick, text, now_ms()).into();
            // Queued under the room's lock, so the store sees each room's messages in order.
            if let Some(store) = &self.store {
                store.append(&room.name, seq, json.clone());
            }
            (seq, room.append(seq, json, self.history, &self.metrics))
        };
        self.metrics.messages_in.fetch_add(1, Relaxed);
        self.announce_kicked(&room, kicked);
        Ok(seq)
    }

    /// Renames member `id` in every room of `rooms`, all or nothing.
    pub fn rename(&self, id: u64, rooms: &[String], new: &str) -> Result<(), ChatError> {
        let mut names: Vec<&String> = rooms.iter().collect();
        names.sort();
        let handles: Vec<_> = names.iter().map(|n| self.room(n, false)).collect::<Result<_, _>>()?;
        let mut kicked_all = Vec::new();
        {
            // Name order: the only place that holds several room locks.
            let mut guards: Vec<_> = handles.iter().map(|r| lock(r)).collect();
            if guards.iter().any(|room| room.nick_in_use(new, id)) {
                return Err(ChatError::NickTaken);
            }
            for room in guards.iter_mut() {
                let Some(member) = room.members.get_mut(&id) else { continue };
                let old = std::mem::replace(&mut member.nick, new.to_owned());
                if self.clustered {
                    continue; // Redis announces the change
                }
                let notice = protocol::nick_change(&room.name, &old, new);
                let kicked = room.broadcast(&notice, None, &self.metrics);
                kicked_all.push(kicked);
            }
        }
        for (room, kicked) in handles.iter().zip(kicked_all) {
            self.announce_kicked(room, kicked);
        }
        Ok(())
    }

    /// Tells a room about members removed for falling behind (which may kick more).
    fn announce_kicked(&self, room: &Arc<Mutex<Room>>, mut kicked: Vec<String>) {
        if self.clustered {
            if !kicked.is_empty() {
                let name = lock(room).name.clone();
                lock(&self.departed).extend(kicked.into_iter().map(|nick| (name.clone(), nick)));
                self.departures.notify_one();
            }
            return;
        }
        while let Some(nick) = kicked.pop() {
            let mut room = lock(room);
            let notice = protocol::presence("leave", &room.name, &nick);
            kicked.extend(room.broadcast(&notice, None, &self.metrics));
        }
    }

    /// Cluster mode: the members removed for falling behind since the last call, as (room,
    /// nick), for the cluster to remove from presence.
    pub fn take_departed(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *lock(&self.departed))
    }

    /// Cluster mode: rooms evicted from memory since the last call.
    pub fn take_evicted(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.evicted))
    }

    /// Cluster mode: makes sure `room` exists here (evicting an idle one if needed) and says
    /// whether its state was loaded from Redis yet.
    pub fn follow(&self, room_name: &str) -> Result<bool, ChatError> {
        let room = self.room(room_name, true)?;
        let synced = lock(&room).follow.synced;
        Ok(synced)
    }

    /// Cluster mode: the room's state as read from Redis (its last sequence number and last
    /// messages, oldest first), taken if the room is not following yet. Messages that arrived
    /// meanwhile are delivered if they come after it. Returns where a fill must start, if one
    /// must.
    pub fn synced(&self, room_name: &str, seq: u64, history: Vec<(u64, Arc<str>)>) -> Option<u64> {
        let room = self.room(room_name, false).ok()?;
        let mut kicked = Vec::new();
        let fill = {
            let mut room = lock(&room);
            if !room.follow.synced {
                room.follow.synced = true;
                room.seq = seq;
                room.history = history.into();
                while room.history.len() > self.history {
                    room.history.pop_front();
                }
                // Only the run of consecutive numbers ending at `seq` is exactly recoverable: a
                // break in it means messages are missing (Redis lost data and numbering was
                // raised past them).
                let mut expected = seq;
                for (n, _) in room.history.iter().rev() {
                    if *n != expected {
                        break;
                    }
                    expected -= 1;
                }
                room.recoverable_from = expected;
            }
            room.advance(self.history, &self.metrics, &mut kicked)
        };
        self.announce_kicked(&room, kicked);
        fill
    }

    /// Cluster mode: message `seq` of `room` as published by Redis. Delivered if it is the
    /// next one, dropped if it was delivered already, held back otherwise. Returns where a fill
    /// must start, if one must.
    pub fn deliver(&self, room_name: &str, seq: u64, json: Arc<str>) -> Option<u64> {
        let room = self.room(room_name, false).ok()?;
        let mut kicked = Vec::new();
        let fill = {
            let mut room = lock(&room);
            if room.follow.synced && seq <= room.seq {
                return None;
            }
            room.follow.hold(seq, json);
            room.advance(self.history, &self.metrics, &mut kicked)
        };
        self.announce_kicked(&room, kicked);
        fill
    }

    /// Cluster mode: the result of a fill: the stream's messages after the last one delivered
    /// here. Messages the stream no longer holds (trimmed, or lost by Redis) are skipped:
    /// local members can't get them, and a `since` before the skip is answered `recovered:
    /// false`. Returns where the next fill must start, if one must.
    pub fn filled(&self, room_name: &str, entries: Vec<(u64, Arc<str>)>) -> Option<u64> {
        let room = self.room(room_name, false).ok()?;
        let mut kicked = Vec::new();
        let fill = {
            let mut room = lock(&room);
            room.follow.filling = false;
            for (seq, json) in entries {
                if seq > room.seq {
                    room.follow.hold(seq, json);
                }
            }
            if let Some(&next) = room.follow.pending.keys().next() {
                if next > room.seq + 1 && room.follow.synced {
                    tracing::warn!(
                        room = %room.name,
                        "messages {}..{} are no longer in Redis: members here skip them",
                        room.seq + 1,
                        next - 1
                    );
                    room.recoverable_from = next - 1;
                    room.seq = next - 1;
                }
            }
            room.advance(self.history, &self.metrics, &mut kicked)
        };
        self.announce_kicked(&room, kicked);
        fill
    }

    /// Cluster mode: Redis says `room` has reached `latest`. If this node is behind and no fill
    /// is in flight, returns where a fill must start.
    pub fn behind(&self, room_name: &str, latest: u64) -> Option<u64> {
        let room = self.room(room_name, false).ok()?;
        let mut room = lock(&room);
        if !room.follow.synced || room.follow.filling || latest <= room.seq {
            return None;
        }
        room.follow.filling = true;
        Some(room.seq + 1)
    }

    /// Cluster mode: the rooms held here and the last sequence number delivered in each (`None`
    /// while a room's state is still being loaded).
    pub fn followed(&self) -> Vec<(String, Option<u64>)> {
        let rooms: Vec<_> = lock(&self.rooms).values().cloned().collect();
        rooms
            .iter()
            .map(|room| {
                let room = lock(room);
                (room.name.clone(), room.follow.synced.then_some(room.seq))
            })
            .collect()
    }

    /// Cluster mode: a presence notice from Redis, for every member here except one with nick
    /// `skip` (the joiner, who gets a `hello` instead).
    pub fn notice(&self, room_name: &str, json: &str, skip: Option<&str>) {
        let Ok(room) = self.room(room_name, false) else { return };
        let kicked = {
            let mut room = lock(&room);
            let skip = skip.and_then(|nick| room.members.iter().find(|(_, m)| m.nick == nick).map(|(id, _)| *id));
            room.broadcast(json, skip, &self.metrics)
        };
        self.announce_kicked(&room, kicked);
    }

    /// Nicks in a room, sorted (for tests and diagnostics).
    pub fn members(&self, room_name: &str) -> Vec<String> {
        let Ok(room) = self.room(room_name, false) else { return Vec::new() };
        let room = lock(&room);
        let mut nicks: Vec<String> = room.members.values().map(|m| m.nick.clone()).collect();
        nicks.sort();
        nicks
    }

    /// Whether `nick` is free in `room` (used to pick guest nicks).
    pub fn nick_free(&self, room_name: &str, nick: &str) -> bool {
        match self.room(room_name, false) {
            Ok(room) => !lock(&room).nick_in_use(nick, u64::MAX),
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frame: &EncodedFrame) -> serde_json::Value {
        let bytes = frame.as_bytes();
        let (_, used) = wsproto::frame::FrameHeader::decode(bytes).unwrap().unwrap();
        serde_json::from_slice(&bytes[used..]).unwrap()
    }

    fn drain(inbox: &mut Inbox) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Ok(frame) = inbox.rx.try_recv() {
            inbox.taken(&frame);
            out.push(text(&frame));
        }
        out
    }

    #[test]
    fn history_recovery_by_since() {
        let hub = Hub::new(3, 10, 1 << 20, Arc::default());
        let (a_out, mut a_in) = outbox(100, 1 << 20);
        hub.join(&Me { id: 1, nick: "alice", outbox: &a_out, deflate: false }, "lobby", None).unwrap();
        for i in 1..=5 {
            assert_eq!(hub.say(1, "lobby", &format!("m{i}")).unwrap(), i);
        }
        drain(&mut a_in);
        let (b_out, mut b_in) = outbox(100, 1 << 20);
        hub.join(&Me { id: 2, nick: "bob", outbox: &b_out, deflate: false }, "lobby", Some(3)).unwrap();
        let hello = &drain(&mut b_in)[0];
        assert_eq!((hello["recovered"].as_bool(), hello["seq"].as_u64()), (Some(true), Some(5)));
        let seqs: Vec<u64> = hello["history"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [4, 5]);
        hub.leave(2, "lobby").unwrap();
        // since=1: message 2 is gone from a 3-message ring.
        hub.join(&Me { id: 2, nick: "bob", outbox: &b_out, deflate: false }, "lobby", Some(1)).unwrap();
        let hello = &drain(&mut b_in).pop().unwrap();
        assert_eq!(hello["recovered"].as_bool(), Some(false));
        assert_eq!(hello["history"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn hello_history_fits_the_budget() {
        let hub = Hub::new(100, 10, 1000, Arc::default());
        let (a, _a_in) = outbox(1000, 1 << 20);
        hub.join(&Me { id: 1, nick: "alice", outbox: &a, deflate: false }, "r", None).unwrap();
        for _ in 0..20 {
            hub.say(1, "r", &"\u{1}".repeat(100)).unwrap(); // 600 bytes of JSON escapes each
        }
        let (b, mut b_in) = outbox(1000, 1 << 20);
        hub.join(&Me { id: 2, nick: "bob", outbox: &b, deflate: false }, "r", Some(10)).unwrap();
        let hello = &drain(&mut b_in)[0];
        let seqs: Vec<u64> = hello["history"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [20], "only the newest message fits 1000 bytes");
        assert_eq!(hello["recovered"], false, "11..=20 did not all fit");
    }

    #[test]
    fn nicks_are_unique_per_room_and_stamped_by_the_server() {
        let hub = Hub::new(10, 10, 1 << 20, Arc::default());
        let (a, mut a_in) = outbox(100, 1 << 20);
        let (b, _b_in) = outbox(100, 1 << 20);
        hub.join(&Me { id: 1, nick: "alice", outbox: &a, deflate: false }, "r", None).unwrap();
        assert_eq!(
            hub.join(&Me { id: 2, nick: "alice", outbox: &b, deflate: false }, "r", None),
            Err(ChatError::NickTaken)
        );
        hub.join(&Me { id: 2, nick: "bob", outbox: &b, deflate: false }, "r", None).unwrap();
        assert_eq!(hub.rename(2, &["r".into()], "alice"), Err(ChatError::NickTaken));
        hub.rename(2, &["r".into()], "carol").unwrap();
        hub.say(2, "r", "hi").unwrap();
        let events = drain(&mut a_in);
        let last = events.last().unwrap();
        assert_eq!((last["nick"].as_str(), last["text"].as_str()), (Some("carol"), Some("hi")));
        assert_eq!(hub.members("r"), ["alice", "carol"]);
    }

    #[test]
    fn a_full_outbox_kicks_only_that_member() {
        let hub = Hub::new(10, 10, 1 << 20, Arc::default());
        let (slow, slow_in) = outbox(4, 1 << 20);
        let (fast, mut fast_in) = outbox(1000, 1 << 20);
        hub.join(&Me { id: 1, nick: "slow", outbox: &slow, deflate: false }, "r", None).unwrap();
        hub.join(&Me { id: 2, nick: "fast", outbox: &fast, deflate: false }, "r", None).unwrap();
        for i in 0..10 {
            hub.say(2, "r", &format!("{i}")).unwrap();
            drain(&mut fast_in);
        }
        assert!(slow_in.kick.is_kicked());
        assert_eq!(hub.members("r"), ["fast"]);
    }

    #[test]
    fn empty_rooms_are_evicted_oldest_first() {
        let hub = Hub::new(10, 2, 1 << 20, Arc::default());
        let (o, _i) = outbox(100, 1 << 20);
        hub.join(&Me { id: 1, nick: "a", outbox: &o, deflate: false }, "one", None).unwrap();
        hub.join(&Me { id: 1, nick: "a", outbox: &o, deflate: false }, "two", None).unwrap();
        assert_eq!(
            hub.join(&Me { id: 1, nick: "a", outbox: &o, deflate: false }, "three", None),
            Err(ChatError::TooManyRooms)
        );
        hub.leave(1, "one").unwrap();
        hub.join(&Me { id: 1, nick: "a", outbox: &o, deflate: false }, "three", None).unwrap();
        assert!(hub.members("one").is_empty());
    }

    fn message(seq: u64) -> Arc<str> {
        protocol::message("r", seq, "x", &format!("m{seq}"), 0).into()
    }

    fn seqs(inbox: &mut Inbox) -> Vec<u64> {
        drain(inbox).iter().filter_map(|e| e["seq"].as_u64()).collect()
    }

    #[test]
    fn a_followed_room_delivers_each_message_once_in_order() {
        let hub = Hub::new(10, 10, 1 << 20, Arc::default()).clustered();
        assert_eq!(hub.follow("r"), Ok(false));
        // Published before the load came back: held, then delivered after the loaded state.
        assert_eq!(hub.deliver("r", 6, message(6)), None);
        assert_eq!(hub.synced("r", 5, vec![(4, message(4)), (5, message(5))]), None);
        assert_eq!(hub.follow("r"), Ok(true));
        let (a, mut a_in) = outbox(100, 1 << 20);
        let me = Me { id: 1, nick: "alice", outbox: &a, deflate: false };
        hub.join_with(&me, "r", Some(4), Some(&["alice".to_owned(), "bob".to_owned()])).unwrap();
        let hello = &drain(&mut a_in)[0];
        assert_eq!((hello["seq"].as_u64(), hello["recovered"].as_bool()), (Some(6), Some(true)));
        assert_eq!(hello["members"], serde_json::json!(["alice", "bob"]), "the cluster's list");
        // A gap: 8 is held and a fill from 7 is asked for, once.
        assert_eq!(hub.deliver("r", 8, message(8)), Some(7));
        assert_eq!(hub.deliver("r", 9, message(9)), None, "a fill is already in flight");
        assert_eq!(seqs(&mut a_in), Vec::<u64>::new());
        assert_eq!(hub.filled("r", vec![(7, message(7)), (8, message(8))]), None);
        assert_eq!(seqs(&mut a_in), [7, 8, 9]);
        // Duplicates (a fill racing the subscription) are dropped.
        assert_eq!(hub.deliver("r", 8, message(8)), None);
        assert_eq!(hub.deliver("r", 10, message(10)), None);
        assert_eq!(seqs(&mut a_in), [10]);
        // Redis no longer has 11 (trimmed while this node was cut off): skipped, and a `since`
        // from before the skip can't be answered exactly.
        assert_eq!(hub.deliver("r", 12, message(12)), Some(11));
        assert_eq!(hub.filled("r", vec![(12, message(12))]), None);
        assert_eq!(seqs(&mut a_in), [12]);
        assert_eq!(hub.behind("r", 12), None, "up to date");
        assert_eq!(hub.behind("r", 14), Some(13), "Redis is ahead: fill");
        assert_eq!(hub.behind("r", 15), None, "one fill at a time");
        let (b, mut b_in) = outbox(100, 1 << 20);
        hub.join_with(&Me { id: 2, nick: "bob", outbox: &b, deflate: false }, "r", Some(9), Some(&[])).unwrap();
        assert_eq!(drain(&mut b_in)[0]["recovered"], false);
    }

    #[test]
    fn past_the_pending_limit_the_fill_still_closes_the_gap() {
        let hub = Hub::new(10, 10, 1 << 20, Arc::default()).clustered();
        hub.follow("r").unwrap();
        hub.synced("r", 0, Vec::new());
        let (a, mut a_in) = outbox(20_000, 1 << 30);
        hub.join_with(&Me { id: 1, nick: "a", outbox: &a, deflate: false }, "r", None, Some(&[])).unwrap();
        drain(&mut a_in);
        // Message 1 is missed; 2.. arrive, more than the limit: a fill from 1 is asked for once.
        let last = PENDING_MAX as u64 + 100;
        assert_eq!(hub.deliver("r", 2, message(2)), Some(1));
        for seq in 3..=last {
            assert_eq!(hub.deliver("r", seq, message(seq)), None);
        }
        // The fill brings 1 and 2: delivered with everything held, in order. What didn't fit
        // (the highest numbers) is asked for by the next fill, not skipped as lost.
        // 2..=PENDING_MAX + 1 were held; 1 took the place of the highest of them.
        let next_fill = hub.filled("r", vec![(1, message(1)), (2, message(2))]);
        let kept = PENDING_MAX as u64;
        assert!(seqs(&mut a_in).into_iter().eq(1..=kept), "1..={kept} delivered, in order");
        assert_eq!(next_fill, None, "nothing is held now; the periodic check notices the rest");
        assert_eq!(hub.behind("r", last), Some(kept + 1));
        assert_eq!(hub.filled("r", ((kept + 1)..=last).map(|n| (n, message(n))).collect()), None);
        assert!(seqs(&mut a_in).into_iter().eq((kept + 1)..=last), "the rest, in order");
    }

    #[test]
    fn a_loaded_stream_with_a_break_recovers_only_after_it() {
        // Redis lost data: its stream holds 1-2 (sent before the loss was noticed) and then
        // numbering raised to 1,000,040.
        let hub = Hub::new(10, 10, 1 << 20, Arc::default()).clustered();
        hub.follow("r").unwrap();
        let history = vec![(1, message(1)), (2, message(2)), (1_000_041, message(1_000_041))];
        hub.synced("r", 1_000_041, history);
        let hello = |since| {
            let (o, mut i) = outbox(100, 1 << 20);
            hub.join_with(&Me { id: 9, nick: "x", outbox: &o, deflate: false }, "r", Some(since), Some(&[])).unwrap();
            hub.leave(9, "r").unwrap();
            drain(&mut i)[0]["recovered"].as_bool()
        };
        assert_eq!(hello(40), Some(false), "messages before the break can't be vouched for");
        assert_eq!(hello(1_000_040), Some(true));
    }

    #[test]
    fn clustered_presence_comes_from_redis_not_from_local_joins() {
        let hub = Hub::new(10, 10, 1 << 20, Arc::default()).clustered();
        let (a, mut a_in) = outbox(100, 1 << 20);
        let (b, _b_in) = outbox(100, 1 << 20);
        assert_eq!(
            hub.join_with(&Me { id: 1, nick: "alice", outbox: &a, deflate: false }, "r", None, Some(&[])),
            Err(ChatError::Unavailable),
            "not followed yet"
        );
        hub.follow("r").unwrap();
        hub.synced("r", 0, Vec::new());
        hub.join_with(&Me { id: 1, nick: "alice", outbox: &a, deflate: false }, "r", None, Some(&[])).unwrap();
        hub.join_with(&Me { id: 2, nick: "bob", outbox: &b, deflate: false }, "r", None, Some(&[])).unwrap();
        drain(&mut a_in);
        assert_eq!(hub.leave(2, "r"), Ok("bob".to_owned()));
        assert!(drain(&mut a_in).is_empty(), "no local notice: Redis publishes it");
        hub.notice("r", &protocol::presence("join", "r", "alice"), Some("alice"));
        assert!(drain(&mut a_in).is_empty(), "the joiner doesn't get her own join");
        hub.notice("r", &protocol::presence("leave", "r", "bob"), None);
        assert_eq!(drain(&mut a_in)[0]["type"], "leave");
    }
}
