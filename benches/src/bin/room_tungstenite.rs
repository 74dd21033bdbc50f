//! Broadcast room on tokio-tungstenite, as its `examples/server.rs` writes it: a map of peers,
//! each with an unbounded channel; a message is cloned to every other peer's channel and each
//! peer's writer encodes it. Usage: room_tungstenite ADDR
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_channel::mpsc::{unbounded, UnboundedSender};
use futures_util::{future, pin_mut, stream::TryStreamExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Message;

type Tx = UnboundedSender<Message>;
type PeerMap = Arc<Mutex<HashMap<SocketAddr, Tx>>>;

async fn handle_connection(peer_map: PeerMap, raw_stream: TcpStream, addr: SocketAddr) {
    let _ = raw_stream.set_nodelay(true);
    let Ok(ws_stream) = tokio_tungstenite::accept_async(raw_stream).await else { return };
    let (tx, rx) = unbounded();
    peer_map.lock().unwrap_or_else(|e| e.into_inner()).insert(addr, tx);
    let (outgoing, incoming) = ws_stream.split();
    let broadcast_incoming = incoming.try_for_each(|msg| {
        if msg.is_text() || msg.is_binary() {
            let peers = peer_map.lock().unwrap_or_else(|e| e.into_inner());
            // Everyone except ourselves.
            for (_, recp) in peers.iter().filter(|(peer_addr, _)| peer_addr != &&addr) {
                let _ = recp.unbounded_send(msg.clone());
            }
        }
        future::ok(())
    });
    let receive_from_others = rx.map(Ok).forward(outgoing);
    pin_mut!(broadcast_incoming, receive_from_others);
    future::select(broadcast_incoming, receive_from_others).await;
    peer_map.lock().unwrap_or_else(|e| e.into_inner()).remove(&addr);
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9201".into());
    let state = PeerMap::new(Mutex::new(HashMap::new()));
    let listener = TcpListener::bind(&addr).await?;
    while let Ok((stream, addr)) = listener.accept().await {
        tokio::spawn(handle_connection(state.clone(), stream, addr));
    }
    Ok(())
}
