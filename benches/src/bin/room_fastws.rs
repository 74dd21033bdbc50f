//! Broadcast room on fastwebsockets: the hyper upgrade and split halves of its
//! `examples/echo_server_split.rs`, with the peer map of tokio-tungstenite's chat example
//! (fastwebsockets has no broadcast example of its own): every other peer's channel gets the
//! payload; each peer's writer frames it. Usage: room_fastws ADDR
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes as Payload;
use fastwebsockets::{upgrade, FragmentCollectorRead, Frame, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

type PeerMap = Arc<Mutex<HashMap<u64, UnboundedSender<Payload>>>>;

static IDS: AtomicU64 = AtomicU64::new(0);

async fn handle_client(fut: upgrade::UpgradeFut, peers: PeerMap) -> Result<(), WebSocketError> {
    let ws = fut.await?;
    let (rx, mut tx) = ws.split(tokio::io::split);
    let mut rx = FragmentCollectorRead::new(rx);
    let me = IDS.fetch_add(1, Relaxed);
    let (out, mut inbox) = unbounded_channel::<Payload>();
    peers.lock().unwrap_or_else(|e| e.into_inner()).insert(me, out);
    let writer = tokio::spawn(async move {
        while let Some(payload) = inbox.recv().await {
            if tx.write_frame(Frame::text(fastwebsockets::Payload::Borrowed(&payload))).await.is_err() {
                break;
            }
        }
    });
    loop {
        // The load tool sends no pings, so there are no obligated writes to make here.
        let Ok(frame) = rx.read_frame::<_, WebSocketError>(&mut move |_| async { Ok(()) }).await else { break };
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => {
                let payload = Payload::copy_from_slice(&frame.payload);
                let peers = peers.lock().unwrap_or_else(|e| e.into_inner());
                for (_, peer) in peers.iter().filter(|(id, _)| **id != me) {
                    let _ = peer.send(payload.clone());
                }
            }
            _ => {}
        }
    }
    peers.lock().unwrap_or_else(|e| e.into_inner()).remove(&me);
    writer.abort();
    Ok(())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9202".into());
    let listener = TcpListener::bind(&addr).await?;
    let peers = PeerMap::default();
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let peers = peers.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = service_fn(move |mut req: Request<Incoming>| {
                let peers = peers.clone();
                async move {
                    let (response, fut) = upgrade::upgrade(&mut req)?;
                    tokio::task::spawn(async move {
                        let _ = tokio::task::unconstrained(handle_client(fut, peers)).await;
                    });
                    Ok::<Response<Empty<Bytes>>, WebSocketError>(response)
                }
            });
            let _ = http1::Builder::new().serve_connection(io, service).with_upgrades().await;
        });
    }
}
