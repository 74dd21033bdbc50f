//! Broadcast room on wsproto with encode-once fan-out: a message is encoded as one server frame
//! and every other member's queue gets a clone of the same bytes. Same semantics as the peers
//! (everyone except the sender). Usage: room_wsproto ADDR
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tokio::net::TcpListener;
use tokio::sync::broadcast;
use wsproto::{CloseCode, Config, EncodedFrame, Event};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9203".into());
    let listener = TcpListener::bind(&addr).await?;
    let (room, _) = broadcast::channel::<(u64, EncodedFrame)>(4096);
    let ids = AtomicU64::new(0);
    let config = Config::builder().ping_interval(None).build().expect("valid");
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (room, config, me) = (room.clone(), config.clone(), ids.fetch_add(1, Relaxed));
        tokio::spawn(async move {
            let Ok(mut ws) = wsproto::stream::accept(tcp, config).await else { return };
            let mut inbox = room.subscribe();
            loop {
                tokio::select! {
                    frame = inbox.recv() => match frame {
                        Ok(first) => {
                            // Queue everything already waiting, so one write carries the batch.
                            let mut next = Some(first);
                            while let Some((from, frame)) = next.take().or_else(|| inbox.try_recv().ok()) {
                                if from != me && ws.queue_encoded(&frame).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let _ = ws.close_now(CloseCode::TryAgainLater, "too slow").await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    event = ws.recv() => match event {
                        Ok(Some(Event::Text(text))) => { let _ = room.send((me, EncodedFrame::text(&text))); }
                        Ok(Some(Event::Binary(data))) => { let _ = room.send((me, EncodedFrame::binary(&data))); }
                        Ok(Some(_)) => {}
                        _ => return,
                    },
                }
            }
        });
    }
}
