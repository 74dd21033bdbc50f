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

/// The sequence numbers of a hello's history.
fn history_seqs(hello: &Value) -> Vec<u64> {
    hello["history"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

/// A Redis, two in-process nodes on it (configured by `node`), alice on the first and bob on the
/// second, both joined to room `r`.
async fn alice_and_bob(
    name: &str,
    node: impl Fn(&Redis) -> chatd::Config,
) -> (Redis, Server, Server, WebSocket<TcpStream>, WebSocket<TcpStream>) {
    let redis = Redis::start(name);
    let a = Server::start(node(&redis)).await;
    let b = Server::start(node(&redis)).await;
    let mut alice = a.client("/ws?room=r&nick=alice").await;
    next(&mut alice).await;
    let mut bob = b.client("/ws?room=r&nick=bob").await;
    next(&mut bob).await;
    (redis, a, b, alice, bob)
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
        alice.send_text(say("r", &format!("a{i}"))).await.unwrap();
        bob.send_text(say("r", &format!("b{i}"))).await.unwrap();
        carol.send_text(say("r", &format!("c{i}"))).await.unwrap();
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
        alice.send_text(say("r", &format!("missed {i}"))).await.unwrap();
    }
    messages(&mut alice, 3).await;
    let since = 3 * EACH;
    let mut bob = a.client(&format!("/ws?room=r&nick=bob&since={since}")).await;
    let hello = next(&mut bob).await;
    assert_eq!(hello["recovered"], true);
    assert_eq!(history_seqs(&hello), [since as u64 + 1, since as u64 + 2, since as u64 + 3]);

    // Nick changes are announced on every node, and refused if another node's member has it.
    bob.send_text(r#"{"type":"nick","nick":"robert"}"#).await.unwrap();
    let change = next_of(&mut alice, "nick").await;
    assert_eq!((change["old"].as_str(), change["new"].as_str()), (Some("bob"), Some("robert")));
    next_of(&mut bob, "nick").await;
    let mut dan = b.client("/ws?room=r&nick=dan").await;
    next(&mut dan).await;
    bob.send_text(r#"{"type":"nick","nick":"dan"}"#).await.unwrap();
    assert_eq!(next_of(&mut bob, "error").await["code"], "nick_taken", "dan is on the other node");
    bob.send_text(say("r", "as robert")).await.unwrap();
    assert_eq!(messages(&mut dan, 1).await[0].1, "robert");
    // A nick is unique in a room across nodes.
    let mut second_alice = b.client("/ws?room=r&nick=alice").await;
    assert_eq!(next(&mut second_alice).await["code"], "nick_taken");
    assert_eq!(close_of(&mut second_alice).await.code, wsproto::CloseCode::PolicyViolation);
}

/// The chatd binary as a node on a free port, once it listens.
fn node(redis: &Redis) -> (Running, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = redis.url();
    let mut running = Running::start(&["--listen", &addr.to_string(), "--redis", &url, "--node-expiry", "2"]);
    running.wait_for("listening on http://");
    (running, addr)
}

async fn client(addr: SocketAddr, target: &str) -> WebSocket<TcpStream> {
    common::connect(addr, target, None).await.unwrap()
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/cluster-test"]
async fn three_nodes_agree_on_presence_and_forget_a_killed_node() {
    let redis = Redis::start("cluster-presence");
    let (one, addr1) = node(&redis);
    let (_two, addr2) = node(&redis);
    let (mut three, addr3) = node(&redis);
    let mut alice = client(addr1, "/ws?room=r&nick=alice").await;
    next(&mut alice).await;
    let mut bob = client(addr2, "/ws?room=r&nick=bob").await;
    next(&mut bob).await;
    let mut carol = client(addr3, "/ws?room=r&nick=carol").await;
    next(&mut carol).await;
    // Every node gives a newcomer the same list: everyone in the room, wherever they are.
    let mut newcomers = Vec::new();
    let mut expected = vec!["alice", "bob", "carol"];
    for (addr, nick) in [(addr1, "dave"), (addr2, "erin"), (addr3, "frank")] {
        let mut ws = client(addr, &format!("/ws?room=r&nick={nick}")).await;
        expected.push(nick);
        expected.sort_unstable();
        assert_eq!(members(&next(&mut ws).await), expected, "{nick}'s hello on {addr}");
        newcomers.push(ws);
    }
    // A leave is announced on every node, and then no node lists it.
    let mut dave = newcomers.remove(0);
    dave.close(wsproto::CloseCode::Normal, "").await.unwrap();
    while dave.recv().await.unwrap().is_some() {}
    assert_eq!(next_of(&mut alice, "leave").await["nick"], "dave");
    assert_eq!(next_of(&mut bob, "leave").await["nick"], "dave");
    assert_eq!(next_of(&mut carol, "leave").await["nick"], "dave");
    drop(newcomers);
    // (Leaves from two nodes: no order between them.)
    let mut left = [next_of(&mut alice, "leave").await, next_of(&mut alice, "leave").await].map(|e| e["nick"].clone());
    left.sort_by_key(|n| n.to_string());
    assert_eq!(left, ["erin", "frank"]);
    // A node killed outright: its member leaves presence once the lease (2 s) runs out.
    let killed = Instant::now();
    three.child.kill().unwrap();
    three.child.wait().unwrap();
    loop {
        let event = next(&mut alice).await;
        if event["type"] == "leave" && event["nick"] == "carol" {
            break;
        }
    }
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(5), "carol left presence {took:?} after her node died (expiry 2 s)");
    println!("carol's node was reaped {took:?} after SIGKILL (--node-expiry 2)");
    let mut ws = client(addr2, "/ws?room=r&nick=gina").await;
    assert_eq!(members(&next(&mut ws).await), ["alice", "bob", "gina"]);
    // carol reconnects to a live node under the same nick.
    let mut carol = client(addr1, "/ws?room=r&nick=carol").await;
    assert_eq!(next(&mut carol).await["type"], "hello");
    assert_eq!(next_of(&mut bob, "join").await["nick"], "gina");
    assert_eq!(next_of(&mut bob, "join").await["nick"], "carol");
    // Node 1 ran for more than its subscription's keep-alive interval (--node-expiry / 4):
    // the keep-alive PING is answered in subscribed mode without breaking the subscription.
    let mut tcp = TcpStream::connect(addr1).await.unwrap();
    let metrics = common::http_get(&mut tcp, "/metrics").await;
    assert_eq!(common::parse_metric(&metrics, "chatd_cluster_resubscribes_total"), 0, "{metrics}");
    drop(one);
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/cluster-test"]
async fn a_redis_restart_loses_nothing_since_cannot_recover() {
    let (mut redis, _a, b, mut alice, mut bob) = alice_and_bob("cluster-restart", node_config).await;
    for i in 1..=5 {
        alice.send_text(say("r", &format!("before {i}"))).await.unwrap();
    }
    assert_eq!(messages(&mut bob, 5).await.last().unwrap().0, 5);

    redis.stop();
    // While Redis is away a message is refused, never half-sent.
    alice.send_text(say("r", "while down")).await.unwrap();
    assert_eq!(next_of(&mut alice, "error").await["code"], "unavailable");
    redis.restart();

    // Once the nodes are back on Redis, messages flow again, numbering continues.
    let mut sent = 0;
    let first = loop {
        sent += 1;
        alice.send_text(say("r", &format!("after {sent}"))).await.unwrap();
        let event = loop {
            let e = next(&mut alice).await;
            if e["type"] == "message" || e["type"] == "error" {
                break e;
            }
        };
        if event["type"] == "message" {
            break event;
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // a client's retry, not a synchronisation
    };
    assert_eq!(first["seq"], 6, "numbering continues after the restart");
    assert_eq!(first["text"], format!("after {sent}"));
    for i in 1..=3 {
        alice.send_text(say("r", &format!("more {i}"))).await.unwrap();
    }
    let seen: Vec<u64> = messages(&mut alice, 3).await.iter().map(|m| m.0).collect();
    assert_eq!(seen, [7, 8, 9]);
    // bob's node may have resubscribed later than alice's: it fills the gap from the stream, so
    // bob gets 6..=9 once each, in order.
    let seen: Vec<(u64, String)> = messages(&mut bob, 4).await.into_iter().map(|m| (m.0, m.2)).collect();
    assert_eq!(seen.iter().map(|m| m.0).collect::<Vec<_>>(), [6, 7, 8, 9]);
    // And a client that was away for all of it recovers exactly with `since`.
    let mut carol = b.client("/ws?room=r&nick=carol&since=5").await;
    let hello = next(&mut carol).await;
    assert_eq!(hello["recovered"], true);
    assert_eq!(history_seqs(&hello), [6, 7, 8, 9]);
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/cluster-test"]
async fn messages_published_while_unsubscribed_are_filled_from_the_stream() {
    let (redis, _a, b, mut alice, mut bob) = alice_and_bob("cluster-fill", node_config).await;
    alice.send_text(say("r", "one")).await.unwrap();
    messages(&mut bob, 1).await;
    // Redis drops every subscriber; what is published next reaches no node.
    let killed = redis.command("CLIENT KILL TYPE pubsub").unwrap();
    assert!(killed.starts_with(":2"), "both nodes' subscriptions were dropped: {killed}");
    for i in 2..=6 {
        alice.send_text(say("r", &format!("unheard {i}"))).await.unwrap();
    }
    // Both nodes resubscribe and read 2..=6 from the stream: once each, in order.
    let seqs = |m: Vec<(u64, String, String)>| m.into_iter().map(|m| m.0).collect::<Vec<_>>();
    assert_eq!(seqs(messages(&mut bob, 5).await), [2, 3, 4, 5, 6]);
    assert_eq!(seqs(messages(&mut alice, 6).await), [1, 2, 3, 4, 5, 6]);
    assert!(b.metric("chatd_cluster_fills_total").await >= 1);
    alice.send_text(say("r", "seven")).await.unwrap();
    assert_eq!(seqs(messages(&mut bob, 1).await), [7]);
}

#[test]
#[ignore = "needs redis-server: run scripts/cluster-test"]
fn doctor_checks_redis() {
    let redis = Redis::start("cluster-doctor");
    let doctor = |url: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
            .args(["doctor", "--listen", "127.0.0.1:0", "--redis", url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = doctor(&redis.url());
    assert!(report.contains(&format!("ok       Redis at {} answers (version ", redis.url())), "{report}");
    assert!(report.contains("ok       Redis keeps an append-only file"), "{report}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let report = doctor(&format!("redis://{closed}"));
    assert!(report.contains("PROBLEM  Redis at redis://"), "{report}");
}

#[tokio::test]
#[ignore = "needs redis-server: run scripts/cluster-test"]
async fn a_stalled_redis_refuses_what_does_not_fit_and_keeps_the_order_of_the_rest() {
    const SENT: usize = 5000; // more than the node's send queue (4,096) plus one pipeline (256)
    let stall_proof = |redis: &Redis| {
        let mut cluster = chatd::cluster::ClusterConfig::new(redis.url());
        // No lease runs out during the pause.
        cluster.node_expiry = Duration::from_secs(10);
        // Room for every message and error in the clients' queues: this test is about the send
        // queue, not about slow readers.
        chatd::Config { cluster: Some(cluster), queue_messages: 4 * SENT, queue_bytes: 16 << 20, ..config() }
    };
    let (redis, _a, _b, mut alice, mut bob) = alice_and_bob("cluster-stall", stall_proof).await;
    // Redis answers nobody for 1.5 s (less than a request's 2 s deadline): the node's sender
    // waits on its pipeline, the queue fills, and what doesn't fit is refused at once.
    assert!(redis.command("CLIENT PAUSE 1500 ALL").unwrap().starts_with("+OK"));
    for i in 0..SENT {
        alice.send_text(say("r", &format!("{i}"))).await.unwrap();
    }
    let (mut refused, mut delivered) = (0, Vec::new());
    while refused + delivered.len() < SENT {
        let event = next(&mut alice).await;
        match event["type"].as_str() {
            Some("error") => {
                assert_eq!(event["code"], "unavailable");
                refused += 1;
            }
            Some("message") => {
                delivered.push((event["seq"].as_u64().unwrap(), event["text"].as_str().unwrap().to_owned()))
            }
            _ => {}
        }
    }
    assert!(refused > 0, "the send queue is bounded");
    println!("stalled Redis: {} of {SENT} messages accepted, {refused} refused", delivered.len());
    let seqs: Vec<u64> = delivered.iter().map(|m| m.0).collect();
    assert_eq!(seqs, (1..=delivered.len() as u64).collect::<Vec<_>>(), "accepted ones numbered without gaps");
    let sent_order: Vec<usize> = delivered.iter().map(|m| m.1.parse().unwrap()).collect();
    assert!(sent_order.windows(2).all(|w| w[0] < w[1]), "and in the order they were sent");
    let seen_by_bob = messages(&mut bob, delivered.len()).await;
    assert_eq!(seen_by_bob.iter().map(|m| (m.0, m.2.clone())).collect::<Vec<_>>(), delivered);
}
