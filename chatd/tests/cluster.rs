//! Several chatd nodes sharing rooms through one Redis (`--redis`): one order for everyone,
//! presence that agrees across nodes and forgets a killed node within its expiry, and a Redis
//! restart that loses nothing a client can't recover with `since`.
//!
//! `#[ignore]`: these need `redis-server`; `scripts/cluster-test` installs it and runs them.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::redis::Redis;
use common::{close_of, config, next, next_of, say, Running, Server};
use serde_json::Value;
use tokio::net::TcpStream;
use wsproto::stream::WebSocket;

fn node_config(redis: &Redis) -> chatd::Config {
    let mut cluster = chatd::cluster::ClusterConfig::new(redis.url());
    cluster.node_expiry = Duration::from_secs(2);
    chatd::Config { cluster: Some(cluster), history: 100, ..config() }
}

fn members(hello: &Value) -> Vec<String> {
    hello["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()
}

/// (seq, nick, text) of the next `n` messages, skipping presence notices.
async fn messages(ws: &mut WebSocket<TcpStream>, n: usize) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = next_of(ws, "message").await;
        out.push((m["seq"].as_u64().unwrap(), m["nick"].as_str().unwrap().into(), m["text"].as_str().unwrap().into()));
    }
    out
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/cluster-test"]
async fn two_nodes_one_room_one_order() {
    let redis = Redis::start("cluster-order");
    let a = Server::start(node_config(&redis)).await;
    let b = Server::start(node_config(&redis)).await;
    let mut alice = a.client("/ws?room=r&nick=alice").await;
    assert_eq!(members(&next(&mut alice).await), ["alice"]);
    let mut bob = b.client("/ws?room=r&nick=bob").await;
    assert_eq!(members(&next(&mut bob).await), ["alice", "bob"]);
    assert_eq!(next_of(&mut alice, "join").await["nick"], "bob", "a join on B is announced on A");
    let mut carol = a.client("/ws?room=r&nick=carol").await;
    assert_eq!(members(&next(&mut carol).await), ["alice", "bob", "carol"]);

    // Everyone talks at once, from both nodes, without waiting for their own messages.
    const EACH: usize = 30;
    for i in 0..EACH {
        alice.send_text(&say("r", &format!("a{i}"))).await.unwrap();
        bob.send_text(&say("r", &format!("b{i}"))).await.unwrap();
        carol.send_text(&say("r", &format!("c{i}"))).await.unwrap();
    }
    let seen_a = messages(&mut alice, 3 * EACH).await;
    let seen_b = messages(&mut bob, 3 * EACH).await;
    let seen_c = messages(&mut carol, 3 * EACH).await;
    let seqs: Vec<u64> = seen_a.iter().map(|m| m.0).collect();
    assert_eq!(seqs, (1..=3 * EACH as u64).collect::<Vec<_>>(), "every number once, in order");
    assert_eq!(seen_a, seen_b, "A and B deliver the same order");
    assert_eq!(seen_a, seen_c);
    for nick in ["alice", "bob", "carol"] {
        let own: Vec<&str> = seen_a.iter().filter(|m| m.1 == nick).map(|m| m.2.as_str()).collect();
        let sent: Vec<String> = (0..EACH).map(|i| format!("{}{i}", &nick[..1])).collect();
        assert_eq!(own, sent, "{nick}'s messages keep the order they were sent in");
    }

    // bob drops and comes back on the other node with `since`: exactly what he missed.
    drop(bob);
    next_of(&mut alice, "leave").await;
    for i in 0..3 {
        alice.send_text(&say("r", &format!("missed {i}"))).await.unwrap();
    }
    messages(&mut alice, 3).await;
    let since = 3 * EACH;
    let mut bob = a.client(&format!("/ws?room=r&nick=bob&since={since}")).await;
    let hello = next(&mut bob).await;
    assert_eq!(hello["recovered"], true);
    let missed: Vec<u64> = hello["history"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(missed, [since as u64 + 1, since as u64 + 2, since as u64 + 3]);

    // A nick is unique in a room across nodes.
    let mut second_alice = b.client("/ws?room=r&nick=alice").await;
    assert_eq!(next(&mut second_alice).await["code"], "nick_taken");
    assert_eq!(close_of(&mut second_alice).await.code, wsproto::CloseCode::PolicyViolation);
}
