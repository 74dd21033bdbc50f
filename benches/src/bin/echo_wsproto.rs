//! Echo server on wsproto (the same as examples/04_echo_server.rs, library defaults): replies
//! are fed (`feed_text`), so `recv` writes all the replies to one read in one write.
//! Usage: echo_wsproto ADDR [--deflate]   (--deflate: accept permessage-deflate, defaults)
use tokio::net::TcpListener;
use wsproto::{Config, Event};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9103".into());
    let listener = TcpListener::bind(&addr).await?;
    let mut builder = Config::builder().ping_interval(None);
    if std::env::args().any(|a| a == "--deflate") {
        builder = builder.deflate(wsproto::deflate::DeflateConfig::new());
    }
    let config = builder.build().expect("valid");
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let config = config.clone();
        tokio::spawn(async move {
            let Ok(mut ws) = wsproto::stream::accept(tcp, config).await else { return };
            while let Ok(Some(event)) = ws.recv().await {
                let sent = match event {
                    Event::Text(text) => ws.feed_text(text).await,
                    Event::Binary(data) => ws.feed_binary(data).await,
                    _ => Ok(()),
                };
                if sent.is_err() {
                    return;
                }
            }
        });
    }
}
