//! One chat connection: the WebSocket loop between a client and the hub.
//!
//! The loop waits on four things, in priority order: a kick (the outbox overflowed: close 1013),
//! shutdown (close 1001), frames the rooms queued for this client, and the client's own frames.
//! Queued frames are handed to the WebSocket without waiting; its `recv` writes them while it
//! waits for input, so the session reads and writes at once and never blocks on a client that
//! stopped reading. A client whose write buffer stays full is kicked like one whose outbox
//! overflowed.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::timeout;
use tracing::{debug, info};
use wsproto::stream::WebSocket;
use wsproto::{CloseCode, EncodedFrame, Event};

use crate::hub::{self, ChatError, Me};
use crate::protocol::{self, ClientMsg};
use crate::Shared;

/// Most queued frames written per flush.
const BATCH: usize = 64;

/// Where a new session starts.
#[derive(Debug)]
pub(crate) struct Start {
    pub(crate) id: u64,
    pub(crate) nick: String,
    pub(crate) room: String,
    pub(crate) since: Option<u64>,
    pub(crate) peer: std::net::SocketAddr,
}

/// A token bucket: `rate` tokens per second, at most `burst`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
    /// Refusals since the last accepted message.
    strikes: u32,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Bucket { rate: f64::from(rate), burst, tokens: burst, at: Instant::now(), strikes: 0 }
    }

    /// Takes a token if there is one.
    fn take(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            true
        } else {
            self.strikes += 1;
            false
        }
    }
}

/// What the loop decided.
enum Flow {
    Continue,
    /// Close with this code and reason, dropping the backlog.
    Close(CloseCode, &'static str),
    /// The connection is over (closed cleanly or failed).
    Done,
}

struct Session<'a, S> {
    ws: WebSocket<S>,
    shared: &'a Shared,
    id: u64,
    nick: String,
    rooms: Vec<String>,
    outbox: hub::Outbox,
    bucket: Bucket,
}

pub(crate) async fn run<S>(ws: WebSocket<S>, shared: Arc<Shared>, start: Start, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let config = &shared.config;
    let (outbox, mut inbox) = hub::outbox(config.queue_messages, config.queue_bytes);
    let mut session = Session {
        ws,
        shared: &shared,
        id: start.id,
        nick: start.nick,
        rooms: Vec::new(),
        outbox,
        bucket: Bucket::new(config.rate_limit, config.rate_burst),
    };
    shared.metrics.sessions.fetch_add(1, Relaxed);
    info!(id = start.id, peer = %start.peer, nick = %session.nick, room = %start.room, "session open");
    let mut flow = match session.join(&start.room, start.since).await {
        Ok(()) => Flow::Continue,
        Err(e) => {
            session.error(e.code(), "cannot join");
            // Storage away is the server's trouble (1011: the page retries); anything else is
            // a refusal the user must fix (1008).
            let code = if e == ChatError::Unavailable { CloseCode::InternalError } else { CloseCode::PolicyViolation };
            Flow::Close(code, e.code())
        }
    };
    // The kick and shutdown waits are made once, not per wake-up: a fresh `Notified` registers
    // with its `Notify` and unregisters when dropped, each under a lock, and a session wakes once
    // per delivery (perf, 1000-member room: BENCHMARKS.md).
    let kick = inbox.kick.clone();
    let mut kicked = std::pin::pin!(kick.kicked());
    let mut stopping = std::pin::pin!(shutdown.changed());
    while let Flow::Continue = flow {
        flow = tokio::select! {
            biased;
            () = &mut kicked => session.fell_behind(),
            _ = &mut stopping => Flow::Close(CloseCode::GoingAway, "server shutting down"),
            Some(frame) = inbox.rx.recv() => session.write(frame, &mut inbox),
            event = session.ws.recv() => session.on_event(event).await,
        };
    }
    if let Flow::Close(code, reason) = flow {
        if matches!(code, CloseCode::TryAgainLater | CloseCode::GoingAway) {
            // Fell behind, or shutting down: drop the backlog, close, await the answer (bounded).
            let _ = session.ws.close_now(code, reason).await;
        } else {
            // A refusal: deliver what is queued (the error event saying why), then close.
            let _ = timeout(config.shutdown_grace, async {
                session.ws.close(code, reason).await?;
                while session.ws.recv().await?.is_some() {}
                Ok::<(), wsproto::Error>(())
            })
            .await;
        }
    }
    for room in std::mem::take(&mut session.rooms) {
        session.leave(&room).await.ok();
    }
    shared.metrics.sessions.fetch_sub(1, Relaxed);
    info!(id = session.id, "session closed");
}

impl<S> Session<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn me(&self) -> Me<'_> {
        let deflate = self.ws.connection().deflate().is_some_and(|d| d.accepts_shared_frames());
        Me { id: self.id, nick: &self.nick, outbox: &self.outbox, deflate }
    }

    async fn join(&mut self, room: &str, since: Option<u64>) -> Result<(), ChatError> {
        match &self.shared.cluster {
            // Cluster calls are boxed: their state would otherwise sit in every session's
            // future, 1.5 KB per idle connection, cluster or not.
            Some(cluster) => Box::pin(cluster.join(&self.shared.hub, &self.me(), room, since)).await?,
            None => self.shared.hub.join(&self.me(), room, since)?,
        }
        self.rooms.push(room.to_owned());
        Ok(())
    }

    async fn leave(&mut self, room: &str) -> Result<(), ChatError> {
        let nick = self.shared.hub.leave(self.id, room)?;
        self.rooms.retain(|r| r != room);
        if let Some(cluster) = &self.shared.cluster {
            Box::pin(cluster.leave(&self.shared.hub, room, &nick)).await;
        }
        Ok(())
    }

    async fn rename(&mut self, nick: String) -> Result<(), ChatError> {
        match &self.shared.cluster {
            Some(cluster) => {
                Box::pin(cluster.rename(&self.shared.hub, self.id, &self.nick, &self.rooms, &nick)).await?
            }
            None => self.shared.hub.rename(self.id, &self.rooms, &nick)?,
        }
        self.nick = nick;
        Ok(())
    }

    /// Hands `first` and whatever else is queued to the WebSocket; `recv` writes them.
    fn write(&mut self, first: EncodedFrame, inbox: &mut hub::Inbox) -> Flow {
        let mut next = Some(first);
        for _ in 0..BATCH {
            let Some(frame) = next.take().or_else(|| inbox.rx.try_recv().ok()) else { break };
            inbox.taken(&frame);
            match self.ws.queue_encoded(&frame) {
                Ok(()) => {}
                Err(wsproto::Error::Usage(wsproto::UsageError::WriteBufferFull)) => return self.fell_behind(),
                Err(e) => {
                    // The client is closing: nothing more goes out.
                    debug!(id = self.id, "not queued: {e}");
                    return Flow::Continue;
                }
            }
        }
        Flow::Continue
    }

    fn fell_behind(&self) -> Flow {
        self.shared.metrics.slow_consumers.fetch_add(1, Relaxed);
        info!(id = self.id, "client fell behind; closing with 1013");
        Flow::Close(CloseCode::TryAgainLater, "too slow")
    }

    /// Queues an `error` event for this client only.
    fn error(&mut self, code: &str, text: &str) {
        let _ = self.ws.queue_text(protocol::error(code, text));
    }

    async fn on_event(&mut self, event: Result<Option<Event>, wsproto::Error>) -> Flow {
        match event {
            Ok(Some(Event::Text(text))) => {
                self.shared.metrics.bytes_in.fetch_add(text.len() as u64, Relaxed);
                self.on_text(&text).await
            }
            Ok(Some(Event::Binary(_))) => Flow::Close(CloseCode::UnsupportedData, "text frames only"),
            Ok(Some(Event::Ping(_) | Event::Pong(_))) => Flow::Continue,
            Ok(Some(Event::Close(_))) | Ok(None) => Flow::Done,
            Err(e) => {
                debug!(id = self.id, "connection failed: {e}");
                Flow::Done
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let request = match protocol::parse(text) {
            Ok(request) => request,
            Err(e) => {
                self.error("bad_request", &e.0);
                return Flow::Continue;
            }
        };
        let result = match request {
            ClientMsg::Message { room, text } => return self.say(room, &text),
            ClientMsg::Join { room, since } => {
                if !protocol::valid_room(&room) {
                    self.error("bad_room", "room names are 1-32 of A-Z a-z 0-9 - _ .");
                    return Flow::Continue;
                }
                if self.rooms.len() >= self.shared.config.max_rooms_per_connection {
                    self.error("too_many_rooms", "leave a room first");
                    return Flow::Continue;
                }
                self.join(&room, since).await
            }
            ClientMsg::Leave { room } => self.leave(&room).await,
            ClientMsg::Nick { nick } => {
                if !protocol::valid_nick(&nick) {
                    self.error("bad_nick", "nicks are 1-24 letters, digits, - _ .");
                    return Flow::Continue;
                }
                self.rename(nick).await
            }
        };
        if let Err(e) = result {
            self.error(e.code(), "request refused");
        }
        Flow::Continue
    }

    fn say(&mut self, room: Option<String>, text: &str) -> Flow {
        if !self.bucket.take() {
            self.shared.metrics.rate_limited.fetch_add(1, Relaxed);
            // A client that keeps going after a burst's worth of refusals is not a person typing.
            if self.bucket.strikes > self.shared.config.rate_burst.max(1) {
                return Flow::Close(CloseCode::PolicyViolation, "rate limit");
            }
            self.error("rate_limited", "slow down");
            return Flow::Continue;
        }
        if text.len() > self.shared.config.max_text {
            self.error("too_long", "message text is limited in size");
            return Flow::Continue;
        }
        let Some(room) = room.or_else(|| self.rooms.first().cloned()) else {
            self.error("not_in_room", "join a room first");
            return Flow::Continue;
        };
        let said = match &self.shared.cluster {
            // Queued for Redis; a refusal there comes back through the outbox.
            Some(cluster) => {
                self.shared.hub.speaker(self.id, &room).and_then(|nick| cluster.say(&room, &nick, text, &self.outbox))
            }
            None => self.shared.hub.say(self.id, &room, text).map(drop),
        };
        if let Err(e) = said {
            self.error(e.code(), "message refused");
        }
        Flow::Continue
    }
}
