//! # chatd — a chat server on wsproto
//!
//! Broadcast chat rooms with a built-in web page, native TLS and safe defaults, in one binary.
//!
//! ## Layout
//!
//! - [`config`]: every setting, with its default (the flags in `main.rs` map onto it).
//! - [`server`]: accepting connections: admission limits, TLS, the HTTP head, routing, Origin.
//! - [`session`]: one chat connection's loop between its WebSocket and the rooms.
//! - [`hub`]: rooms, sequence numbers, history, fan-out encoded once.
//! - [`store`]: history and sequence numbers on disk (`--data-dir`).
//! - [`cluster`]: several nodes sharing rooms through Redis (`--redis`).
//! - [`protocol`]: wire protocol v1 (JSON text frames; `docs/PROTOCOL.md`).
//! - [`tls`]: rustls configuration and certificate reloading.
//! - [`acme`]: automatic certificates (`--domain`): orders, challenges, storage, renewal.
//! - [`redirect`]: the optional plain-HTTP listener (301 to https, ACME webroot).
//! - [`http`], [`metrics`]: plain HTTP answers and `/metrics`.
//! - [`doctor`]: `chatd doctor`, pre-flight checks for a deployment; [`x509`] reads certificates.
//!
//! [`run`] takes a bound listener, a [`Config`] and a shutdown future, so tests start a server on
//! `127.0.0.1:0` and stop it when they like.

// The protocol parser and the HTTP answers build without the server's dependencies
// (`default-features = false`): the fuzz targets use only them, and skipping TLS, ACME,
// Redis and redb cuts the fuzz build from minutes to seconds.
pub mod http;
pub mod protocol;

/// Declares the modules that need the `server` feature (tokio uses the same pattern).
macro_rules! server_only {
    ($($vis:vis mod $name:ident;)*) => { $( #[cfg(feature = "server")] $vis mod $name; )* };
}

server_only! {
    pub mod acme;
    mod app;
    pub mod cluster;
    pub mod config;
    pub mod doctor;
    pub mod hub;
    pub mod metrics;
    pub mod redirect;
    pub mod server;
    pub mod session;
    pub mod store;
    pub mod tls;
    pub mod x509;
}

#[cfg(feature = "server")]
pub use app::{preflight, run, Error, Prepared, Shared};
#[cfg(feature = "server")]
pub use config::{Config, TlsFiles};
