//! # An echo server: the smallest correct WebSocket server on wsproto
//!
//! Teaches: accepting TCP connections, the server handshake with [`wsproto::stream::accept`],
//! and the receive loop. Pings are answered and close frames echoed by the library; the loop
//! only echoes messages back.
//!
//! This is also the target of the Autobahn conformance run (`scripts/conformance`), so its limits
//! are raised to what Autobahn's 9.* cases send (16 MiB messages, 4 MiB in 64-byte fragments).
//!
//! Run: `cargo run --release -p examples --example echo_server -- 9001`, then connect with any
//! client, e.g. `websocat ws://127.0.0.1:9001`. Next: `05_echo_client.rs`.

use examples::conformance_config;
use tokio::net::TcpListener;
use wsproto::{Config, Event};

/// Accepts connections forever, echoing each in its own task.
pub async fn serve(listener: TcpListener, config: Config) -> std::io::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let config = config.clone();
        tokio::spawn(async move {
            if let Err(e) = echo(tcp, config).await {
                eprintln!("connection ended: {e}");
            }
        });
    }
}

/// One connection: handshake, then echo every message until the close handshake ends.
async fn echo(tcp: tokio::net::TcpStream, config: Config) -> Result<(), wsproto::Error> {
    let mut ws = wsproto::stream::accept(tcp, config).await?;
    while let Some(event) = ws.recv().await? {
        // `feed_*` queues the reply without writing it; the next `recv` writes everything
        // queued while it waits for input. A client that sends ten messages in one packet gets
        // ten replies in one write instead of ten. (`send_*` writes at once: use it when
        // nothing else will call `recv` soon, e.g. a task that only sends.)
        match event {
            Event::Text(text) => ws.feed_text(text).await?,
            Event::Binary(data) => ws.feed_binary(data).await?,
            Event::Ping(_) | Event::Pong(_) | Event::Close(_) => {}
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|_| std::io::Error::other(format!("invalid port {arg:?}")))?,
        None => 9001,
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("echo server on ws://{}", listener.local_addr()?);
    serve(listener, conformance_config()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsproto::handshake::client::ClientRequest;

    #[tokio::test]
    async fn echoes_text_and_binary_then_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, conformance_config()));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = ClientRequest::new(addr.to_string(), "/").unwrap();
        let (mut ws, _) = wsproto::stream::connect(tcp, &request, Config::default()).await.unwrap();
        ws.send_text("hello").await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Event::Text("hello".into())));
        ws.send_binary(vec![1u8, 2, 3]).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Some(Event::Binary(vec![1u8, 2, 3].into())));
        ws.close(wsproto::CloseCode::Normal, "done").await.unwrap();
        match ws.recv().await.unwrap() {
            Some(Event::Close(frame)) => assert_eq!(frame.code, wsproto::CloseCode::Normal),
            other => panic!("expected the echoed close, got {other:?}"),
        }
        assert_eq!(ws.recv().await.unwrap(), None);
        server.abort();
    }
}
