//! # wsproto — RFC 6455 WebSockets, readable and embeddable
//!
//! The protocol core is *sans-IO*: it never touches a socket. You feed it the bytes you read,
//! it gives you events, and it hands you the bytes to write.
//!
//! ```text
//!                    ┌──────────────────────── Connection ───────────────────────┐
//!  bytes read ──────▶│ receive() ─▶ frame::FrameHeader ─▶ unmask ─▶ message ─────│──▶ next_event():
//!                    │               (§5.2 checks, size    (§5.3)   (§5.4 UTF-8, │    Text, Binary,
//!                    │                budget first)                  fragments)  │    Ping, Pong, Close
//!  bytes to write ◀──│ next_outgoing() ◀── pongs (≤ 16) ◀── queue ◀── send_*()    │◀── your messages
//!                    └──────────────────────────────────────────────────────────────┘
//! ```
//!
//! The optional [`stream`] layer (feature `tokio`, on by default) moves those bytes over any
//! `AsyncRead + AsyncWrite` and adds timeouts and keepalive; it never parses anything itself.
//!
//! ## Where each part of RFC 6455 lives
//!
//! | RFC 6455 | module |
//! |---|---|
//! | §1.3, §4.1 opening handshake, client | [`handshake::client`] |
//! | §1.3, §4.2 opening handshake, server | [`handshake::server`] |
//! | §5.2 framing, §5.3 masking | [`frame`], [`frame::mask`] |
//! | §5.4 fragmentation, §8.1 UTF-8 | [`message`] |
//! | §5.5 control frames, §7 closing | [`connection`] |
//! | §5.5.1, §7.4 close codes | [`close`] |
//! | limits (§10.4) | [`config`] |
//! | RFC 7692 `permessage-deflate`: negotiation §5-7.1, compression §7.2 | [`deflate`], [`deflate::negotiate`], [`deflate::codec`] (off unless [`Config::deflate`] is set) |
//!
//! ## A server
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn demo() -> Result<(), wsproto::Error> {
//! use wsproto::{Config, Event};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! let (tcp, _) = listener.accept().await?;
//! let mut ws = wsproto::stream::accept(tcp, Config::default()).await?;
//! while let Some(event) = ws.recv().await? {
//!     match event {
//!         Event::Text(text) => ws.send_text(text).await?,
//!         Event::Binary(data) => ws.send_binary(data).await?,
//!         _ => {} // pings are answered, closes are echoed for you
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ## A client
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn demo() -> Result<(), wsproto::Error> {
//! use wsproto::{handshake::client::ClientRequest, CloseCode, Config, Event};
//! let tcp = tokio::net::TcpStream::connect("127.0.0.1:9001").await?;
//! let request = ClientRequest::new("127.0.0.1:9001", "/")?;
//! let (mut ws, _response) = wsproto::stream::connect(tcp, &request, Config::default()).await?;
//! ws.send_text("hello").await?;
//! if let Some(Event::Text(reply)) = ws.recv().await? {
//!     println!("{reply}");
//! }
//! ws.close(CloseCode::Normal, "bye").await?;
//! # Ok(()) }
//! ```
//!
//! ## Sans-IO, no runtime at all
//!
//! ```
//! use wsproto::{Config, Connection, Event, Role};
//! let mut server = Connection::new(Role::Server, Config::default());
//! // RFC 6455 §5.7: a masked "Hello" from a client.
//! server.receive(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
//! assert_eq!(server.next_event()?, Some(Event::Text("Hello".into())));
//! server.send_text("Hello")?;
//! let mut wire = Vec::new();
//! server.drain_outgoing(&mut wire);
//! assert_eq!(wire, b"\x81\x05Hello");
//! # Ok::<(), wsproto::Error>(())
//! ```
//!
//! The [`manual`] explains the security decisions and where each default comes from.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod close;
pub mod config;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod manual;
pub mod message;
mod rand;
#[cfg(feature = "tokio")]
pub mod stream;

pub use close::{CloseCode, CloseFrame};
pub use config::{Config, ConfigBuilder};
pub use connection::{Connection, Event, Outgoing, Role, State};
pub use error::{ConfigError, Error, HandshakeError, ProtocolError, UsageError};
pub use frame::EncodedFrame;

/// The README's code blocks, compiled as doctests so the embedding example can't rot.
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
