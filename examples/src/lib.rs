//! Helpers shared by the examples.

use std::time::Duration;

use wsproto::deflate::DeflateConfig;
use wsproto::Config;

/// The limits Autobahn's conformance cases need, for `echo_server` and `echo_client`: larger
/// than the library defaults, which protect servers on the internet. Case 9.1.6 sends a 16 MiB
/// message, 9.3.1 a 4 MiB message in 64-byte fragments (65,536 of them). Keepalive pings are
/// off so the transcript holds only what the test sent. `permessage-deflate` is on (cases 12
/// and 13), with every message compressed however short so each case exercises it, at level 1
/// (the 18 cases of 1,000 × 128 KiB messages dominate the run's time).
pub fn conformance_config() -> Config {
    conformance_builder(DeflateConfig::new())
}

/// [`conformance_config`] for the client role. Autobahn's server accepts an offer for cases
/// 13.2, 13.5 and 13.6 (the server asks the client not to keep context) only if the offer
/// carries `client_no_context_takeover`, so the client makes that promise (RFC 7692 §7.1.1.2)
/// and keeps it in every case. Context takeover in our compressor is covered by the server role.
pub fn conformance_client_config() -> Config {
    conformance_builder(DeflateConfig::new().client_no_context_takeover(true))
}

fn conformance_builder(deflate: DeflateConfig) -> Config {
    Config::builder()
        .deflate(deflate.min_size(0).level(1))
        .max_message_size(16 << 20)
        .max_fragments(1 << 20)
        .ping_interval(None)
        .handshake_timeout(Duration::from_secs(30))
        .build()
        .expect("valid limits")
}
