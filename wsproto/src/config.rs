//! Limits and timeouts, in one struct with documented defaults.
//!
//! Every limit bounds something a hostile peer controls. Each setting below names its unit, the
//! attack it limits and where the default comes from. A [`Config`] is always valid: it is built by
//! [`ConfigBuilder::build`], which returns an error (never panics) for values that cannot work.
//!
//! ```
//! use std::time::Duration;
//! let config = wsproto::Config::builder()
//!     .max_message_size(64 * 1024)
//!     .ping_interval(Some(Duration::from_secs(30)))
//!     .build()
//!     .expect("valid limits");
//! assert_eq!(config.max_frame_size(), 64 * 1024);
//! ```

use std::time::Duration;

use crate::deflate::DeflateConfig;
use crate::error::ConfigError;

/// Connection limits and timeouts. See the [module docs](self) and each getter for defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    max_message_size: usize,
    max_frame_size: usize,
    max_fragments: usize,
    max_head_size: usize,
    max_headers: usize,
    handshake_timeout: Duration,
    write_buffer_limit: usize,
    ping_interval: Option<Duration>,
    pong_timeout: Duration,
    close_timeout: Duration,
    deflate: Option<DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: 1 << 20,
            max_frame_size: 1 << 20,
            max_fragments: 1024,
            max_head_size: 8 * 1024,
            max_headers: 64,
            handshake_timeout: Duration::from_secs(10),
            write_buffer_limit: 1 << 20,
            ping_interval: Some(Duration::from_secs(20)),
            pong_timeout: Duration::from_secs(20),
            close_timeout: Duration::from_secs(5),
            deflate: None,
        }
    }
}

impl Config {
    /// Starts from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder { config: Config::default(), frame_size_set: false }
    }

    /// Largest message, in bytes, after reassembly of all fragments. Default **1 MiB**.
    ///
    /// Limits memory a peer can make this side hold per connection. The announced length of
    /// each frame is checked against what is left of this budget *before* the payload is read,
    /// so a 2^62-byte announcement fails at once (1009) without allocating. Precedent: Python
    /// `websockets`' `max_size` is 1 MiB.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Largest single frame payload, in bytes. Default: **equal to
    /// [`max_message_size`](Self::max_message_size)** (a frame can't be bigger than its
    /// message). Exceeding it closes with 1009.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Most frames one message may be split into. Default **1024**.
    ///
    /// Without it, a peer can send endless empty continuation frames that each cost bookkeeping
    /// while the message never grows (the class of the `ws` fragment-flood CVEs). Exceeding it
    /// closes with 1009.
    pub fn max_fragments(&self) -> usize {
        self.max_fragments
    }

    /// Largest opening-handshake head (request or response line plus headers), in bytes.
    /// Default **8 KiB**, nginx's default header buffer. Exceeding it answers 431.
    pub fn max_head_size(&self) -> usize {
        self.max_head_size
    }

    /// Most header lines in a handshake head. Default **64** (hyper allows 100). Exceeding it
    /// answers 431.
    pub fn max_headers(&self) -> usize {
        self.max_headers
    }

    /// Time allowed for the whole opening handshake head to arrive (async layer). Default
    /// **10 s**: the slowloris defence, like Go's `ReadHeaderTimeout`. Expiry answers 408.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Bytes of queued outgoing data messages, in bytes, above which sending applies
    /// backpressure (the async layer waits for the socket) or fails with
    /// [`UsageError::WriteBufferFull`](crate::UsageError::WriteBufferFull) (sans-IO core).
    /// Default **1 MiB**. Control replies (pong, close) are never refused. tungstenite's
    /// equivalent is unlimited, so a peer that never reads grows it without bound.
    pub fn write_buffer_limit(&self) -> usize {
        self.write_buffer_limit
    }

    /// Interval between keepalive pings when nothing was received (async layer). Default
    /// **20 s**, so a connection survives the common 60 s idle timeout of proxies and NATs.
    /// `None` disables keepalive.
    pub fn ping_interval(&self) -> Option<Duration> {
        self.ping_interval
    }

    /// How long to wait for any frame after a keepalive ping before failing the connection
    /// with 1011 (async layer). Default **20 s**. Detects a peer that vanished without a FIN.
    pub fn pong_timeout(&self) -> Duration {
        self.pong_timeout
    }

    /// How long to wait for the peer's close frame (or its TCP close) after sending ours
    /// (async layer). Default **5 s**, so a peer that never answers a close can't hold the
    /// socket.
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// `permessage-deflate` (RFC 7692): offered by a client, accepted by a server, with these
    /// parameters. Default **off** (`None`): compression costs CPU and, per connection, up to a
    /// few hundred KiB of compressor state (see [`crate::deflate`]). Decompressed messages are
    /// held to [`max_message_size`](Self::max_message_size) while they inflate.
    pub fn deflate(&self) -> Option<&DeflateConfig> {
        self.deflate.as_ref()
    }
}

/// Builds a [`Config`]; [`build`](Self::build) checks the values.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
    frame_size_set: bool,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
}

impl ConfigBuilder {
    /// Sets [`Config::max_message_size`]. Also moves the frame size limit unless it was set.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self.frame_size_set = true;
        self
    }

    setter!(
        /// Sets [`Config::max_fragments`].
        max_fragments: usize
    );
    setter!(
        /// Sets [`Config::max_head_size`].
        max_head_size: usize
    );
    setter!(
        /// Sets [`Config::max_headers`].
        max_headers: usize
    );
    setter!(
        /// Sets [`Config::handshake_timeout`].
        handshake_timeout: Duration
    );
    setter!(
        /// Sets [`Config::write_buffer_limit`].
        write_buffer_limit: usize
    );
    setter!(
        /// Sets [`Config::ping_interval`] (`None` disables keepalive).
        ping_interval: Option<Duration>
    );
    setter!(
        /// Sets [`Config::pong_timeout`].
        pong_timeout: Duration
    );
    setter!(
        /// Sets [`Config::close_timeout`].
        close_timeout: Duration
    );

    /// Turns on `permessage-deflate` with these parameters (see [`Config::deflate`]).
    pub fn deflate(mut self, deflate: DeflateConfig) -> Self {
        self.config.deflate = Some(deflate);
        self
    }

    /// Checks the values and returns the config.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut c = self.config;
        if !self.frame_size_set {
            c.max_frame_size = c.max_message_size;
        }
        if c.max_message_size == 0 {
            return Err(ConfigError("max_message_size must be at least 1 byte"));
        }
        if c.max_frame_size == 0 || c.max_frame_size > c.max_message_size {
            return Err(ConfigError("max_frame_size must be between 1 and max_message_size"));
        }
        if c.max_fragments == 0 {
            return Err(ConfigError("max_fragments must be at least 1"));
        }
        if c.max_head_size < 256 {
            return Err(ConfigError("max_head_size below 256 bytes cannot hold a browser's handshake"));
        }
        if c.max_headers < 8 {
            return Err(ConfigError("max_headers below 8 cannot hold a WebSocket handshake"));
        }
        if c.write_buffer_limit == 0 {
            return Err(ConfigError("write_buffer_limit must be at least 1 byte"));
        }
        let zero = Duration::ZERO;
        if c.handshake_timeout == zero
            || c.pong_timeout == zero
            || c.close_timeout == zero
            || c.ping_interval == Some(zero)
        {
            return Err(ConfigError("timeouts and the ping interval must be longer than zero"));
        }
        if let Some(deflate) = &c.deflate {
            deflate.check()?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::builder().build().unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.max_message_size(), 1 << 20);
        assert_eq!(c.max_frame_size(), c.max_message_size());
        assert_eq!(c.max_fragments(), 1024);
        assert_eq!((c.max_head_size(), c.max_headers()), (8192, 64));
        assert_eq!(c.handshake_timeout(), Duration::from_secs(10));
        assert_eq!(c.ping_interval(), Some(Duration::from_secs(20)));
    }

    #[test]
    fn invalid_values_are_errors_not_panics() {
        assert!(Config::builder().max_message_size(0).build().is_err());
        assert!(Config::builder().max_message_size(10).max_frame_size(11).build().is_err());
        assert!(Config::builder().max_fragments(0).build().is_err());
        assert!(Config::builder().max_head_size(10).build().is_err());
        assert!(Config::builder().ping_interval(Some(Duration::ZERO)).build().is_err());
        assert!(Config::builder().ping_interval(None).build().is_ok());
        let deflate = DeflateConfig::new();
        assert!(Config::builder().deflate(deflate.server_max_window_bits(8)).build().is_err());
        assert!(Config::builder().deflate(deflate.client_max_window_bits(16)).build().is_err());
        assert!(Config::builder().deflate(deflate.level(10)).build().is_err());
        assert_eq!(Config::builder().deflate(deflate).build().unwrap().deflate(), Some(&deflate));
    }
}
