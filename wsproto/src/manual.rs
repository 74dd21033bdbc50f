//! The manual: why wsproto does what it does. Documentation only; no code.
//!
//! # Masking (§5.3, §10.3)
//!
//! Clients mask every frame with a fresh 32-bit key; servers never mask. Masking is not
//! encryption: it stops a script in a browser from choosing the exact bytes that cross a
//! proxy, which could otherwise be tricked into caching a forged HTTP response. A server
//! therefore *fails* a connection that sends an unmasked frame (1002), and a client fails on a
//! masked one. Keys come from SipHash keyed by the operating system's randomness (see the
//! crate-private `rand` module); they are unpredictable to the peer, which is what §10.3 needs.
//!
//! # Limits (§10.4)
//!
//! "Implementations SHOULD impose implementation-specific limits on frame sizes and total
//! message size after reassembly." Every limit lives in [`Config`](crate::Config), with a unit,
//! a default and the attack it stops:
//!
//! | limit | default | attack |
//! |---|---|---|
//! | message size | 1 MiB | a peer makes us buffer a huge message |
//! | frame size | = message size | a single 2^63-byte announcement |
//! | fragments per message | 1024 | endless empty continuations that never grow the message |
//! | head size / headers | 8 KiB / 64 | oversized or endless handshakes (431) |
//! | handshake timeout | 10 s | slowloris: a head trickled one byte at a time |
//! | write buffer | 1 MiB | a peer that never reads while we keep producing |
//! | ping interval / pong timeout | 20 s / 20 s | a peer that vanished without a FIN |
//!
//! The announced length of each frame is checked against what is left of the message budget
//! *before* its payload is read: an announced 2^62 bytes fails at once with 1009 and nothing is
//! allocated. The handshake head is scanned once over newly arrived bytes and parsed once,
//! which keeps it linear however it is trickled (tungstenite's CVE-2023-43669 was quadratic
//! re-parsing).
//!
//! Pings are answered automatically; at most 16 answers wait to be written, and beyond that the
//! oldest is dropped, so 200,000 unread pings cost 16 pending pongs, not 200,000. (Answering only
//! the latest, which §5.5.3 allows, fails Autobahn case 2.10: ten pings in a row expect ten
//! pongs.) Pongs go ahead of queued data so a full data queue can't delay them.
//!
//! # UTF-8 (§8.1)
//!
//! Text is validated as it arrives, across frame and read boundaries, and the connection fails
//! (1007) at the first byte that can never become valid. A peer can't make us buffer a whole
//! message of garbage before noticing.
//!
//! # Origin (§10.2)
//!
//! Browsers send `Origin` on every WebSocket request, and a page on any site can open a
//! WebSocket to any server: cookies go along. A server that relies on cookies must check
//! [`Request::origin`](crate::handshake::server::Request::origin) in its accept hook and answer
//! 403 for origins it doesn't know. Non-browser clients usually send no Origin; that is not an
//! attack (they could send any Origin they like).
//!
//! # Conformance
//!
//! The Autobahn test suite's cases 1-10 (framing, pings, reserved bits, opcodes, fragmentation,
//! UTF-8, close handling, limits) run in CI for both roles through the `kosoku` runner; the
//! expected results are checked in under `conformance/` and any change fails the build. Cases
//! 12-13 (permessage-deflate) are excluded: compression is not negotiated in this version.
