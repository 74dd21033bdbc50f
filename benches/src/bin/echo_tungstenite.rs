//! Echo server on tokio-tungstenite, as its `examples/echo-server.rs` writes it.
//! Usage: echo_tungstenite ADDR
use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};

async fn accept_connection(stream: TcpStream) {
    // The same socket option for every server in the comparison (not in the upstream example).
    let _ = stream.set_nodelay(true);
    let Ok(ws_stream) = tokio_tungstenite::accept_async(stream).await else { return };
    let (write, read) = ws_stream.split();
    // We should not forward messages other than text or binary.
    let _ = read.try_filter(|msg| future::ready(msg.is_text() || msg.is_binary())).forward(write).await;
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9101".into());
    let listener = TcpListener::bind(&addr).await?;
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(accept_connection(stream));
    }
    Ok(())
}
