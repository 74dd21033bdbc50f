//! A client `Connection` fed arbitrary bytes in two pieces; every event and every outgoing
//! frame drained.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "connection.rs"]
mod connection;

fuzz_target!(|data: &[u8]| connection::drive(wsproto::Role::Client, data));
