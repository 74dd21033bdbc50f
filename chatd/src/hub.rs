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

use std::collections::{HashMap, VecDeque};
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
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    /// An empty hub keeping `history` messages per room and at most `max_rooms` rooms; a
    /// `hello` carries at most `hello_budget` bytes of history.
    pub fn new(history: usize, max_rooms: usize, hello_budget: usize, metrics: Arc<Metrics>) -> Self {
        Hub { rooms: Mutex::new(HashMap::new()), history, max_rooms, hello_budget, metrics, store: None }
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
        }));
        rooms.insert(name.to_owned(), room.clone());
        self.metrics.rooms.store(rooms.len() as u64, Relaxed);
        Ok(room)
    }

    /// Joins `room`: sends `me` the `hello` (members, history after `since`), then tells the
    /// others.
    pub fn join(&self, me: &Me<'_>, room_name: &str, since: Option<u64>) -> Result<(), ChatError> {
        let room = self.room(room_name, true)?;
        let kicked = {
            let mut room = lock(&room);
            if room.members.contains_key(&me.id) {
                return Err(ChatError::AlreadyJoined);
            }
            if room.nick_in_use(me.nick, me.id) {
                return Err(ChatError::NickTaken);
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
            let mut members: Vec<&str> = room.members.values().map(|m| m.nick.as_str()).collect();
            members.push(me.nick);
            members.sort_unstable();
            let history = room.history.iter().skip(room.history.len() - fit).map(|(_, json)| &**json);
            let hello = protocol::hello(me.nick, &room.name, &members, room.seq, recovered, history);
            me.outbox.push(Frames::new(&hello).for_member(me.deflate));
            let member = Member { nick: me.nick.to_owned(), outbox: me.outbox.clone(), deflate: me.deflate };
            room.members.insert(me.id, member);
            room.last_active = Instant::now();
            let notice = protocol::presence("join", &room.name, me.nick);
            room.broadcast(&notice, Some(me.id), &self.metrics)
        };
        self.announce_kicked(&room, kicked);
        Ok(())
    }

    /// Leaves `room` and tells the remaining members. The room and its history stay.
    pub fn leave(&self, id: u64, room_name: &str) -> Result<(), ChatError> {
        let room = self.room(room_name, false)?;
        let kicked = {
            let mut room = lock(&room);
            let member = room.members.remove(&id).ok_or(ChatError::NotInRoom)?;
            room.last_active = Instant::now();
            let notice = protocol::presence("leave", &room.name, &member.nick);
            room.broadcast(&notice, None, &self.metrics)
        };
        self.announce_kicked(&room, kicked);
        Ok(())
    }

    /// Numbers, stores and broadcasts a message from member `id` (stamped with the nick the
    /// room knows, never one the client claims). Returns the sequence number.
    pub fn say(&self, id: u64, room_name: &str, text: &str) -> Result<u64, ChatError> {
        let room = self.room(room_name, false)?;
        let (seq, kicked) = {
            let mut room = lock(&room);
            let nick = room.members.get(&id).ok_or(ChatError::NotInRoom)?.nick.clone();
            room.seq += 1;
            let seq = room.seq;
            let json: Arc<str> = protocol::message(&room.name, seq, &nick, text, now_ms()).into();
            let kicked = room.broadcast(&json, None, &self.metrics);
            // Queued under the room's lock, so the store sees each room's messages in order.
            if let Some(store) = &self.store {
                store.append(&room.name, seq, json.clone());
            }
            room.history.push_back((seq, json));
            while room.history.len() > self.history {
                room.history.pop_front();
            }
            room.last_active = Instant::now();
            (seq, kicked)
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
        while let Some(nick) = kicked.pop() {
            let mut room = lock(room);
            let notice = protocol::presence("leave", &room.name, &nick);
            kicked.extend(room.broadcast(&notice, None, &self.metrics));
        }
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
}
