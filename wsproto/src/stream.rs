//! The async layer (feature `tokio`): a [`WebSocket`] over any `AsyncRead + AsyncWrite`.
//!
//! It only moves bytes between the socket and a sans-IO [`Connection`]; every protocol decision
//! is the core's. What it adds is what needs a clock or a socket:
//!
//! - the handshake timeout ([`Config::handshake_timeout`]) over the whole head;
//! - writes batched and vectored: queued frames go out in one `write_vectored` call. Bodies over
//!   8 KiB are written straight from their `Bytes` (a large [`EncodedFrame`] shared by a broadcast is
//!   never copied); smaller frames are coalesced into one buffer, because copying a few hundred
//!   bytes is cheaper than another iovec or allocation, and TLS streams, which write one slice at
//!   a time, then still get one record per batch;
//! - three ways to send: `send_*` queues and writes at once; `feed_*` queues without writing
//!   (the next `recv`, which writes while it waits for input, or [`WebSocket::flush`] writes it),
//!   so a loop that answers every message writes one read's answers in one system call;
//!   `queue_*` is `feed_*` without waiting, failing when the write buffer is full;
//! - backpressure: `send_*` and `feed_*` wait while queued data exceeds
//!   [`Config::write_buffer_limit`];
//! - keepalive: a ping after [`Config::ping_interval`] of silence, failure with 1011 if nothing
//!   arrives within [`Config::pong_timeout`];
//! - [`WebSocket::split`] into an owned reader and writer with no lock between them.
//!
//! [`WebSocket::recv`] writes pending pongs and close replies while it waits for data, so a
//! reader-only loop still answers pings.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{sleep, timeout, Instant, Sleep};

use crate::close::CloseCode;
use crate::config::Config;
use crate::connection::{Connection, Event, Role, State};
use crate::error::{Error, HandshakeError, ProtocolError, UsageError};
use crate::frame::{EncodedFrame, OpCode};
use crate::handshake::client::{ClientHandshake, ClientRequest, Response};
use crate::handshake::server::{error_response, Accept, Request, RequestReader};

macro_rules! ready {
    ($e:expr) => {
        match $e {
            Poll::Ready(v) => v,
            Poll::Pending => return Poll::Pending,
        }
    };
}
const MIN_READ: usize = 4 * 1024;
const MAX_READ: usize = 64 * 1024;
/// A payload with at least this much still to arrive is read straight into the connection.
const DIRECT_READ: usize = 16 * 1024;
/// The most a direct read reserves ahead of the bytes received: what the read buffer it
/// replaces could hold, so a stalled peer costs no more than before.
const DIRECT_MAX: usize = MAX_READ;
/// Frames with bodies up to this size are copied into one contiguous write.
const COALESCE: usize = 8 * 1024;
/// Bytes read at a time while waiting for a handshake head.
const HANDSHAKE_READ: usize = 2048;
/// Bytes taken from the connection per write batch.
const BATCH: usize = 256 * 1024;
/// The most the coalescing buffer is sized for up front (it grows past it if it must).
const STAGE_HINT_MAX: usize = 16 * 1024;

// ---- server handshake -------------------------------------------------------------------------

/// Reads and parses a request head within [`Config::handshake_timeout`]. On failure the HTTP
/// error response (400, 431, 408) has already been written.
///
/// Use it when one port serves plain HTTP too: look at [`Request::path`], then call
/// [`upgrade`] (or answer the HTTP request yourself). The returned bytes followed the head.
pub async fn read_request<S>(io: &mut S, config: &Config) -> Result<(Request, Vec<u8>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut reader = RequestReader::new(config);
    // Filled by `read_buf` without zeroing it first (a zeroed 2 KiB per handshake showed in
    // callgrind).
    let mut buf = Vec::with_capacity(HANDSHAKE_READ);
    let read = async {
        loop {
            buf.clear();
            let n = io.read_buf(&mut buf).await?;
            if n == 0 {
                return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some(done) = reader.feed(&buf[..n])? {
                return Ok(done);
            }
        }
    };
    let result = match timeout(config.handshake_timeout(), read).await {
        Ok(result) => result,
        Err(_) => Err(Error::Handshake(HandshakeError::Timeout)),
    };
    if let Err(Error::Handshake(e)) = &result {
        if let Some(response) = e.response() {
            let _ = write_and_close(io, &response).await;
        }
    }
    result
}

/// Validates `request` and answers it: `101` with `accept`'s subprotocol and headers, or the
/// HTTP error for an invalid request. `rest` are the bytes that followed the head.
pub async fn upgrade<S>(
    mut io: S,
    request: &Request,
    rest: &[u8],
    accept: &Accept,
    config: Config,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // permessage-deflate from the config, unless the embedder negotiated it in `accept`.
    let negotiated;
    let accept = match config.deflate() {
        Some(deflate) if accept.deflate().is_none() => {
            negotiated = accept.clone().with_deflate(request, deflate);
            &negotiated
        }
        _ => accept,
    };
    match request.accept(accept) {
        Ok(response) => {
            io.write_all(&response).await?;
            io.flush().await?;
            let mut ws = WebSocket::from_parts(io, Connection::with_deflate(Role::Server, config, accept.deflate()));
            ws.conn.receive(rest);
            Ok(ws)
        }
        Err(Error::Handshake(e)) => {
            if let Some(response) = e.response() {
                let _ = write_and_close(&mut io, &response).await;
            }
            Err(Error::Handshake(e))
        }
        Err(e) => Err(e),
    }
}

/// Answers a request with an HTTP error status (e.g. 403 for a foreign Origin) and closes.
pub async fn reject<S>(io: &mut S, status: u16, body: &str) -> Result<(), Error>
where
    S: AsyncWrite + Unpin,
{
    if !(400..=599).contains(&status) {
        return Err(UsageError::InvalidStatus(status).into());
    }
    write_and_close(io, &error_response(status, &[], body)).await?;
    Ok(())
}

async fn write_and_close<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.flush().await?;
    io.shutdown().await
}

/// Accepts a WebSocket on a freshly accepted stream, with no checks beyond RFC 6455.
pub async fn accept<S>(io: S, config: Config) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(io, config, |_| Ok(Accept::new())).await
}

/// Accepts a WebSocket, letting `hook` inspect the request (path, query, Origin, headers,
/// offered subprotocols) and either accept it or refuse it with an HTTP status, e.g. 403.
pub async fn accept_with<S, F>(mut io: S, config: Config, hook: F) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Result<Accept, u16>,
{
    let (request, rest) = read_request(&mut io, &config).await?;
    // RFC 6455 rules first, so the hook only sees well-formed WebSocket requests.
    if let Err(e) = request.validate() {
        if let Some(response) = e.response() {
            let _ = write_and_close(&mut io, &response).await;
        }
        return Err(e.into());
    }
    match hook(&request) {
        Ok(accept) => upgrade(io, &request, &rest, &accept, config).await,
        Err(status) => {
            reject(&mut io, status, "refused\n").await?;
            Err(HandshakeError::Rejected(status).into())
        }
    }
}

// ---- client handshake -------------------------------------------------------------------------

/// Performs the client handshake on a connected stream (plain TCP or TLS) within
/// [`Config::handshake_timeout`].
pub async fn connect<S>(mut io: S, request: &ClientRequest, config: Config) -> Result<(WebSocket<S>, Response), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut handshake, bytes) = ClientHandshake::new(request, &config);
    let exchange = async {
        io.write_all(&bytes).await?;
        io.flush().await?;
        let mut buf = Vec::with_capacity(HANDSHAKE_READ);
        loop {
            buf.clear();
            let n = io.read_buf(&mut buf).await?;
            if n == 0 {
                return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some(done) = handshake.feed(&buf[..n])? {
                return Ok(done);
            }
        }
    };
    let (response, rest) = match timeout(config.handshake_timeout(), exchange).await {
        Ok(result) => result?,
        Err(_) => return Err(HandshakeError::Timeout.into()),
    };
    let mut ws = WebSocket::from_parts(io, Connection::with_deflate(Role::Client, config, response.deflate()));
    ws.conn.receive(&rest);
    Ok((ws, response))
}

// ---- the connection ---------------------------------------------------------------------------

#[derive(Debug)]
enum Keepalive {
    Off,
    /// Waiting for silence to last a whole interval.
    Idle(Pin<Box<Sleep>>),
    /// Ping sent; anything received before the deadline proves the peer alive.
    AwaitingPong(Pin<Box<Sleep>>),
}

/// A WebSocket over an async stream. See the [module docs](self).
#[derive(Debug)]
pub struct WebSocket<S> {
    io: S,
    conn: Connection,
    /// Heap read buffer, empty unless reads have been filling the stack buffer (big messages).
    read_buf: Vec<u8>,
    /// Chunks taken from the connection and not yet fully written; `written` counts the bytes
    /// of the first one already on the wire.
    pending: VecDeque<Bytes>,
    written: usize,
    keepalive: Keepalive,
    finished: bool,
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps a stream whose handshake is already done (for example by your own HTTP server).
    pub fn from_parts(io: S, conn: Connection) -> Self {
        let keepalive = match conn.config().ping_interval() {
            Some(every) => Keepalive::Idle(Box::pin(sleep(every))),
            None => Keepalive::Off,
        };
        WebSocket { io, conn, read_buf: Vec::new(), pending: VecDeque::new(), written: 0, keepalive, finished: false }
    }

    /// The sans-IO connection (its state, config, queued bytes).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The underlying stream (for example to read the peer address or TLS details).
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The next event. `Ok(None)` once the connection closed cleanly (the peer's close was
    /// reported as [`Event::Close`] just before). Pings are answered and close frames echoed
    /// automatically. Cancel-safe while it waits for input: dropping the future loses no data
    /// (the closing steps after a close frame are simply resumed by the next call).
    ///
    /// On a protocol error, the close frame with the error's code is written before the error
    /// is returned.
    pub async fn recv(&mut self) -> Result<Option<Event>, Error> {
        loop {
            match self.conn.next_event() {
                Ok(Some(event)) => {
                    if let Event::Close(_) = event {
                        // Send the echo now, not on the next call: the caller may stop here.
                        // The peer may already have closed its end; the close still happened.
                        let _ = self.finish().await;
                    }
                    return Ok(Some(event));
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = self.finish().await;
                    return Err(e);
                }
            }
            if self.conn.state() == State::Closed {
                self.finish().await?;
                return Ok(None);
            }
            if let Err(e) = poll_fn(|cx| self.poll_io(cx)).await {
                if let Error::Protocol(_) = e {
                    // Keepalive failure: try to say so (1011) within the close timeout.
                    let _ = timeout(self.conn.config().close_timeout(), self.flush()).await;
                }
                self.finished = true;
                return Err(e);
            }
        }
    }

    /// Sends a text message (a `String` is sent without a copy; see
    /// [`Connection::send_text`]).
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<(), Error> {
        self.reserve().await?;
        self.conn.send_text(text)?;
        self.flush().await
    }

    /// Sends a binary message (a server's `Bytes` go out without a copy).
    pub async fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.reserve().await?;
        self.conn.send_binary(data)?;
        self.flush().await
    }

    /// Queues a text message without writing it yet; waits first if the write buffer is over
    /// its limit. It goes out with the next [`flush`](Self::flush), send, or
    /// [`recv`](Self::recv) (which writes while it waits for input), so a loop that feeds a
    /// reply to every message it receives writes all the replies to one read in one system
    /// call instead of one each.
    pub async fn feed_text(&mut self, text: impl Into<String>) -> Result<(), Error> {
        self.reserve().await?;
        self.conn.send_text(text)
    }

    /// Queues a binary message without writing it yet; see [`feed_text`](Self::feed_text).
    pub async fn feed_binary(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.reserve().await?;
        self.conn.send_binary(data)
    }

    /// Sends one frame of a fragmented message, or a ping or pong. See
    /// [`Connection::send_frame`].
    pub async fn send_frame(&mut self, opcode: OpCode, fin: bool, payload: impl Into<Bytes>) -> Result<(), Error> {
        self.reserve().await?;
        self.conn.send_frame(opcode, fin, payload.into())?;
        self.flush().await
    }

    /// Sends a pre-encoded server frame without copying it (broadcast: encode once, send to
    /// many).
    pub async fn send_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        self.feed_encoded(frame).await?;
        self.flush().await
    }

    /// Queues a pre-encoded frame without writing it yet; [`flush`](Self::flush) writes
    /// everything queued in as few system calls as possible. Waits first if the write buffer is
    /// over its limit.
    pub async fn feed_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        self.reserve().await?;
        self.conn.send_encoded(frame)
    }

    /// Queues a pre-encoded frame without waiting: it is written by the next
    /// [`recv`](Self::recv) (which writes while it waits for input) or [`flush`](Self::flush).
    /// Fails with [`UsageError::WriteBufferFull`] instead of waiting when the write buffer is
    /// over its limit, so a server loop that reads and writes in one task never blocks on a
    /// peer that stopped reading: it can treat the error as "this peer fell behind".
    pub fn queue_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        self.conn.send_encoded(frame)
    }

    /// Queues a text message without waiting; see [`queue_encoded`](Self::queue_encoded).
    pub fn queue_text(&mut self, text: impl Into<String>) -> Result<(), Error> {
        if self.conn.queued_data_len() >= self.conn.config().write_buffer_limit() {
            return Err(UsageError::WriteBufferFull.into());
        }
        self.conn.send_text(text)
    }

    /// Sends a ping.
    pub async fn ping(&mut self, payload: impl Into<Bytes>) -> Result<(), Error> {
        self.conn.send_ping(payload)?;
        self.flush().await
    }

    /// Starts the closing handshake and writes the close frame. Keep calling
    /// [`recv`](Self::recv) to receive the peer's close (it returns `Ok(None)` at the end); the
    /// wait is bounded by [`Config::close_timeout`].
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.conn.close(code, reason)?;
        self.flush().await
    }

    /// Closes without delivering the backlog (see [`Connection::close_now`]): queued messages
    /// that have not started going out are dropped, the close frame follows the frame in
    /// flight, and the peer's answering close is awaited (its messages discarded), all within
    /// [`Config::close_timeout`]. The stream is then shut down. For a peer that fell behind, or a
    /// fast shutdown.
    pub async fn close_now(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.conn.close_now(code, reason)?;
        // Keep only a chunk that is partly written: cutting a frame would corrupt the stream.
        if self.written > 0 {
            self.pending.truncate(1);
        } else {
            self.pending.clear();
        }
        let wait = self.conn.config().close_timeout();
        let _ = timeout(wait, async {
            self.flush().await?;
            // Wait for the peer's close, discarding what it still sends: closing a socket with
            // unread input sends a TCP reset, which can destroy our close frame before the peer
            // reads it.
            while let Ok(Some(_)) = self.recv().await {}
            Ok::<(), Error>(())
        })
        .await;
        if !self.finished {
            self.finished = true;
            let _ = timeout(wait, self.io.shutdown()).await;
        }
        Ok(())
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_write_out(cx)).await?;
        Ok(())
    }

    /// Waits until queued data is below the write-buffer limit (backpressure).
    async fn reserve(&mut self) -> Result<(), Error> {
        if self.conn.queued_data_len() >= self.conn.config().write_buffer_limit() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Flushes the close frame (bounded by the close timeout) and, once closed, shuts the
    /// stream down. A client first waits for the server to close TCP (§7.1.1).
    async fn finish(&mut self) -> Result<(), Error> {
        if self.finished || self.conn.state() != State::Closed {
            return Ok(());
        }
        self.finished = true;
        let wait = self.conn.config().close_timeout();
        let role = self.conn.role();
        let graceful = async {
            self.flush().await?;
            if role == Role::Client {
                // Drain until the server closes; its bytes after the close are ignored. On the
                // heap: an array here would sit inside every `recv` future (they await this),
                // 1 KiB more state for every idle connection.
                let mut scratch = vec![0u8; 1024];
                while self.io.read(&mut scratch).await? != 0 {}
            }
            self.io.shutdown().await?;
            Ok::<(), Error>(())
        };
        match timeout(wait, graceful).await {
            Ok(result) => result,
            Err(_) => Ok(()), // the peer didn't cooperate in time; dropping the stream closes it
        }
    }

    /// Writes as much as the socket takes without waiting. Ready once nothing is left.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.pending.is_empty() {
                self.refill();
                if self.pending.is_empty() {
                    return Pin::new(&mut self.io).poll_flush(cx);
                }
            }
            // One chunk (small frames coalesced: the usual case) is a plain write; building the
            // 64 slices for a vectored one cost more than the write itself (callgrind).
            let n = if self.pending.len() > 1 && self.io.is_write_vectored() {
                let mut slices = [io::IoSlice::new(&[]); 64];
                let mut count = 0;
                for (i, chunk) in self.pending.iter().take(64).enumerate() {
                    let start = if i == 0 { self.written } else { 0 };
                    slices[i] = io::IoSlice::new(&chunk[start..]);
                    count += 1;
                }
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?
            } else {
                let first = &self.pending[0][self.written..];
                ready!(Pin::new(&mut self.io).poll_write(cx, first))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(first) = self.pending.front() else { return };
            let left = first.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.pending.pop_front();
        }
    }

    /// Moves frames from the connection into the write batch, coalescing small ones.
    fn refill(&mut self) {
        // Sized to what is queued, so a burst of small frames is copied into one allocation
        // that doesn't grow, and an exact fit turns into `Bytes` without a second allocation.
        // Grown frame by frame from empty it cost a `realloc` per frame: 13% of a 20-byte
        // echo's instructions (callgrind, BENCHMARKS.md). Capped: big bodies aren't copied.
        let hint = self.conn.queued_data_len().min(STAGE_HINT_MAX);
        let mut stage = BytesMut::with_capacity(hint);
        let mut taken = 0;
        while taken < BATCH {
            let Some(frame) = self.conn.next_outgoing() else { break };
            taken += frame.len();
            stage.extend_from_slice(frame.head());
            if frame.body().len() <= COALESCE {
                stage.extend_from_slice(frame.body());
            } else {
                self.pending.push_back(stage.split().freeze());
                self.pending.push_back(frame.body().clone());
            }
        }
        if !stage.is_empty() {
            self.pending.push_back(stage.freeze());
        }
    }

    /// One round of I/O while waiting for an event: write what is pending (without waiting),
    /// run the keepalive clock, read. Ready when bytes arrived or the clock queued a ping.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
            return Poll::Ready(Err(e.into()));
        }
        match &mut self.keepalive {
            Keepalive::Off => {}
            Keepalive::Idle(timer) => {
                if timer.as_mut().poll(cx).is_ready() {
                    let deadline = Instant::now() + self.conn.config().pong_timeout();
                    self.keepalive = Keepalive::AwaitingPong(Box::pin(tokio::time::sleep_until(deadline)));
                    if self.conn.state() == State::Open {
                        let _ = self.conn.send_ping(Bytes::from_static(b"keepalive"));
                    }
                    return Poll::Ready(Ok(()));
                }
            }
            Keepalive::AwaitingPong(timer) => {
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(self.fail_keepalive()));
                }
            }
        }
        // The rest of a big frame's payload is read straight into the connection's buffer,
        // reserved in one step (up to DIRECT_MAX): no copy through a read buffer, and no
        // reallocation as it grows (a 64 KiB echo server spent 7% of its time in that copy, perf). The read
        // is limited to the payload, so the next frame doesn't share the allocation.
        if let Some((rbuf, remaining)) = self.conn.payload_to_come(DIRECT_READ) {
            // Never reserve far ahead of what arrived: a peer that announces 16 MiB and sends
            // nothing must not cost 16 MiB (bigger payloads grow in steps of DIRECT_MAX).
            let want = remaining.min(DIRECT_MAX);
            rbuf.reserve(want);
            let mut room = bytes::BufMut::limit(rbuf, want);
            let mut read = std::pin::pin!(self.io.read_buf(&mut room));
            let n = ready!(read.as_mut().poll(cx))?;
            if n == 0 {
                return Poll::Ready(Err(Error::Io(io::ErrorKind::UnexpectedEof.into())));
            }
            // Big frames: the next header comes through the stack buffer (one small read and
            // copy), and the payload after it straight into the connection again.
            self.read_buf = Vec::new();
            self.on_bytes_received();
            return Poll::Ready(Ok(()));
        }
        // Small reads go through a stack buffer, so an idle connection holds no read buffer at
        // all; a heap buffer (up to MAX_READ) exists only while reads keep filling the buffer.
        // The stack buffer is left uninitialised (`ReadBuf::uninit`, safe): zeroing 4 KiB on
        // every poll was 39% of an echo server's instructions (callgrind, BENCHMARKS.md).
        let mut stack = [MaybeUninit::<u8>::uninit(); MIN_READ];
        let mut buf =
            if self.read_buf.is_empty() { ReadBuf::uninit(&mut stack) } else { ReadBuf::new(&mut self.read_buf) };
        let capacity = buf.capacity();
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        if n == 0 {
            // TCP closed without a close frame: 1006, the peer's fault.
            return Poll::Ready(Err(Error::Io(io::ErrorKind::UnexpectedEof.into())));
        }
        self.conn.receive(buf.filled());
        // Grow while reads fill the buffer; give the heap buffer back when traffic is small.
        if n == capacity && capacity < MAX_READ {
            self.read_buf = vec![0; capacity * 2];
        } else if n < MIN_READ && !self.read_buf.is_empty() {
            self.read_buf = Vec::new();
        }
        self.on_bytes_received();
        Poll::Ready(Ok(()))
    }

    /// Input arrived: the keepalive's silence starts again.
    fn on_bytes_received(&mut self) {
        if let Some(every) = self.conn.config().ping_interval() {
            match &mut self.keepalive {
                Keepalive::Idle(timer) => timer.as_mut().reset(Instant::now() + every),
                _ => self.keepalive = Keepalive::Idle(Box::pin(sleep(every))),
            }
        }
    }

    fn fail_keepalive(&mut self) -> Error {
        self.keepalive = Keepalive::Off;
        let e = ProtocolError::PongTimeout;
        let _ = self.conn.close(e.close_code(), "");
        Error::Protocol(e)
    }
}

// ---- split ------------------------------------------------------------------------------------

mod split;
pub use split::{ReadHalf, WriteHalf};

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code panics on purpose
mod tests {
    use super::*;
    use crate::frame::FrameHeader;

    #[tokio::test]
    async fn a_big_frame_that_stalls_reserves_at_most_direct_max_ahead() {
        let (mut peer, io) = tokio::io::duplex(1 << 21);
        let mut ws = WebSocket::from_parts(io, Connection::new(Role::Server, Config::default()));
        // A 1 MiB frame (the default limit) is announced, 20 KiB of it arrives, then nothing.
        let header =
            FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: Some([1, 2, 3, 4]), payload_len: 1 << 20 };
        let mut head = [0u8; crate::frame::MAX_HEADER_LEN];
        let used = header.encode(&mut head);
        peer.write_all(&head[..used]).await.unwrap();
        peer.write_all(&[0u8; 20 * 1024]).await.unwrap();
        let sent = used + 20 * 1024;
        let mut read = 0;
        while read < sent {
            assert_eq!(ws.conn.next_event().unwrap(), None);
            let before = ws.conn.buffered_len();
            let step = poll_fn(|cx| Poll::Ready(ws.poll_io(cx))).await;
            assert!(!matches!(step, Poll::Ready(Err(_))), "the read failed");
            read += ws.conn.buffered_len() - before;
            if ws.conn.buffered_len() == before {
                break;
            }
        }
        let (rbuf, remaining) = ws.conn.payload_to_come(0).unwrap();
        assert_eq!(remaining, (1 << 20) - rbuf.len());
        assert!(
            rbuf.capacity() <= rbuf.len() + DIRECT_MAX,
            "reserved {} bytes for {} received",
            rbuf.capacity(),
            rbuf.len()
        );
    }
}
