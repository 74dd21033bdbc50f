//! # 6. A broadcast room: the smallest correct chat
//!
//! Teaches: fan-out. Every message is encoded **once** as a server frame
//! ([`EncodedFrame`]) and every connection gets a clone of the same bytes through a
//! `tokio::sync::broadcast` channel. A connection that falls too far behind (the channel
//! reports it lagged) is closed with 1013 "try again later" instead of slowing everyone down.
//! One task per connection reads and writes: `recv` writes queued frames while it waits.
//!
//! Run: `cargo run -p examples --example 06_broadcast -- 9002`, open two clients (e.g.
//! `websocat ws://127.0.0.1:9002`), type. Next: `07_chat_client.rs` (a client for chatd, the
//! full-featured version of this room).

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use wsproto::{CloseCode, Config, EncodedFrame, Event};

/// Frames a connection may be behind before it is dropped.
const BACKLOG: usize = 256;

/// Serves the room until the listener fails.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let (room, _) = broadcast::channel::<EncodedFrame>(BACKLOG);
    loop {
        let (tcp, _) = listener.accept().await?;
        let room = room.clone();
        tokio::spawn(async move {
            if let Err(e) = member(tcp, room).await {
                eprintln!("member left: {e}");
            }
        });
    }
}

async fn member(tcp: TcpStream, room: broadcast::Sender<EncodedFrame>) -> Result<(), wsproto::Error> {
    let mut ws = wsproto::stream::accept(tcp, Config::default()).await?;
    let mut inbox = room.subscribe();
    loop {
        tokio::select! {
            frame = inbox.recv() => match frame {
                // Queue without waiting, with everything else already waiting, so one write
                // carries the batch; recv() below writes it.
                Ok(frame) => {
                    ws.queue_encoded(&frame)?;
                    while let Ok(frame) = inbox.try_recv() {
                        ws.queue_encoded(&frame)?;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return ws.close_now(CloseCode::TryAgainLater, "too slow").await;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            event = ws.recv() => match event? {
                Some(Event::Text(text)) => {
                    // Encoded once here; every member's send is a reference-count increment.
                    let _ = room.send(EncodedFrame::text(&text));
                }
                Some(_) => {}
                None => return Ok(()),
            },
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(9002);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("broadcast room on ws://{}", listener.local_addr()?);
    serve(listener).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsproto::handshake::client::ClientRequest;

    async fn join(addr: std::net::SocketAddr) -> wsproto::stream::WebSocket<TcpStream> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let request = ClientRequest::new(addr.to_string(), "/").unwrap();
        wsproto::stream::connect(tcp, &request, Config::default()).await.unwrap().0
    }

    #[tokio::test]
    async fn everyone_gets_every_message() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener));
        let mut a = join(addr).await;
        let mut b = join(addr).await;
        // Make sure both are subscribed: each sees its own hello.
        for ws in [&mut a, &mut b] {
            ws.send_text("hello").await.unwrap();
            loop {
                if ws.recv().await.unwrap() == Some(Event::Text("hello".into())) {
                    break;
                }
            }
        }
        a.send_text("from a").await.unwrap();
        loop {
            if b.recv().await.unwrap() == Some(Event::Text("from a".into())) {
                break;
            }
        }
        server.abort();
    }
}
