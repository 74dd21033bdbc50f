//! Helpers shared by the examples.

use std::time::Duration;

use wsproto::Config;

/// The limits Autobahn's conformance cases need, for `echo_server` and `echo_client`: larger
/// than the library defaults, which protect servers on the internet. Case 9.1.6 sends a 16 MiB
/// message, 9.3.1 a 4 MiB message in 64-byte fragments (65,536 of them). Keepalive pings are
/// off so the transcript holds only what the test sent.
pub fn conformance_config() -> Config {
    Config::builder()
        .max_message_size(16 << 20)
        .max_fragments(1 << 20)
        .ping_interval(None)
        .handshake_timeout(Duration::from_secs(30))
        .build()
        .expect("valid limits")
}
