//! [`WebSocket::split`]: an owned reader and writer with no lock between them.
//!
//! The stream moves into a task of its own that does all the I/O; the halves talk to it through
//! channels. The task keeps reading (and so keeps answering pings and echoing close frames)
//! whether or not the writer is used, and writes whatever the writer sends, so neither half can
//! starve the other and neither holds a lock across an `.await`.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::WebSocket;
use crate::close::CloseCode;
use crate::connection::Event;
use crate::error::Error;
use crate::frame::EncodedFrame;

/// Events queued between the I/O task and the reader.
const EVENTS: usize = 16;
/// Commands queued between the writer and the I/O task.
const COMMANDS: usize = 64;

enum Command {
    Text(String),
    Binary(Bytes),
    Encoded(EncodedFrame),
    Ping(Bytes),
    Close(CloseCode, String),
}

/// The receiving half of a split [`WebSocket`].
#[derive(Debug)]
pub struct ReadHalf {
    events: mpsc::Receiver<Result<Event, Error>>,
}

/// The sending half of a split [`WebSocket`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WriteHalf {
    commands: mpsc::Sender<(Command, oneshot::Sender<Result<(), Error>>)>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Splits into a reader and a writer that can live in different tasks. Must be called
    /// inside a tokio runtime: the stream moves into a spawned I/O task, which ends when the
    /// connection closes or both halves are dropped.
    pub fn split(self) -> (ReadHalf, WriteHalf) {
        let (event_tx, events) = mpsc::channel(EVENTS);
        let (commands, command_rx) = mpsc::channel(COMMANDS);
        tokio::spawn(run(self, event_tx, command_rx));
        (ReadHalf { events }, WriteHalf { commands })
    }
}

async fn run<S>(
    mut ws: WebSocket<S>,
    events: mpsc::Sender<Result<Event, Error>>,
    mut commands: mpsc::Receiver<(Command, oneshot::Sender<Result<(), Error>>)>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut writer_gone = false;
    loop {
        // Read only when the reader has room, so a slow reader pushes back on the peer.
        let permit = tokio::select! {
            permit = events.reserve() => match permit {
                Ok(permit) => permit,
                Err(_) if writer_gone => return,
                Err(_) => { drain_commands(&mut ws, &mut commands).await; return }
            },
            command = commands.recv(), if !writer_gone => {
                match command {
                    Some((command, done)) => { let _ = done.send(apply(&mut ws, command).await); }
                    None => writer_gone = true,
                }
                continue;
            }
        };
        tokio::select! {
            event = ws.recv() => match event {
                Ok(Some(event)) => permit.send(Ok(event)),
                Ok(None) => return,
                Err(e) => { permit.send(Err(e)); return }
            },
            command = commands.recv(), if !writer_gone => match command {
                Some((command, done)) => { let _ = done.send(apply(&mut ws, command).await); }
                None => writer_gone = true,
            },
        }
    }
}

/// The reader is gone: serve the writer until it is gone too.
async fn drain_commands<S>(
    ws: &mut WebSocket<S>,
    commands: &mut mpsc::Receiver<(Command, oneshot::Sender<Result<(), Error>>)>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    while let Some((command, done)) = commands.recv().await {
        let _ = done.send(apply(ws, command).await);
    }
}

async fn apply<S>(ws: &mut WebSocket<S>, command: Command) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match command {
        Command::Text(text) => ws.send_text(text).await,
        Command::Binary(data) => ws.send_binary(data).await,
        Command::Encoded(frame) => ws.send_encoded(&frame).await,
        Command::Ping(payload) => ws.ping(payload).await,
        Command::Close(code, reason) => ws.close(code, &reason).await,
    }
}

impl ReadHalf {
    /// The next event; `Ok(None)` after a clean close. See [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Result<Option<Event>, Error> {
        self.events.recv().await.transpose()
    }
}

impl WriteHalf {
    async fn command(&self, command: Command) -> Result<(), Error> {
        let (done, result) = oneshot::channel();
        let gone = || Error::Io(std::io::ErrorKind::BrokenPipe.into());
        self.commands.send((command, done)).await.map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    /// Sends a text message; resolves once it is written.
    pub async fn send_text(&self, text: impl Into<String>) -> Result<(), Error> {
        self.command(Command::Text(text.into())).await
    }

    /// Sends a binary message.
    pub async fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.command(Command::Binary(data.into())).await
    }

    /// Sends a pre-encoded server frame without copying it.
    pub async fn send_encoded(&self, frame: EncodedFrame) -> Result<(), Error> {
        self.command(Command::Encoded(frame)).await
    }

    /// Sends a ping.
    pub async fn ping(&self, payload: impl Into<Bytes>) -> Result<(), Error> {
        self.command(Command::Ping(payload.into())).await
    }

    /// Starts the closing handshake; the reader then sees the peer's close.
    pub async fn close(&self, code: CloseCode, reason: impl Into<String>) -> Result<(), Error> {
        self.command(Command::Close(code, reason.into())).await
    }
}
