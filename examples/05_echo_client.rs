//! # An echo client: the client role, driven by Autobahn's fuzzing server
//!
//! Teaches: connecting with [`wsproto::stream::connect`], a client's receive loop, and how the
//! Autobahn test suite drives a client: ask `/getCaseCount`, then for each case connect to
//! `/runCase?case=N&agent=NAME` and echo everything, then `/updateReports?agent=NAME`.
//!
//! Run (with `kosoku -m fuzzingserver 127.0.0.1:9001` listening):
//! `cargo run --release -p examples --example echo_client -- 127.0.0.1:9001`.
//! Next: `06_broadcast.rs`.

use examples::conformance_client_config;
use tokio::net::TcpStream;
use wsproto::handshake::client::ClientRequest;
use wsproto::Event;

const AGENT: &str = "wsproto";

/// Opens one WebSocket to `addr` at `target`.
async fn open(addr: &str, target: &str) -> Result<wsproto::stream::WebSocket<TcpStream>, wsproto::Error> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let request = ClientRequest::new(addr, target)?;
    let (ws, _) = wsproto::stream::connect(tcp, &request, conformance_client_config()).await?;
    Ok(ws)
}

/// Echoes every message on one connection until it closes. Errors are the case's verdict,
/// not ours, so they end the case quietly.
async fn echo(addr: &str, target: &str) -> Result<Option<String>, wsproto::Error> {
    let mut ws = open(addr, target).await?;
    let mut first_text = None;
    while let Some(event) = ws.recv().await? {
        match event {
            Event::Text(text) => {
                first_text.get_or_insert_with(|| text.clone());
                ws.send_text(text).await?;
            }
            Event::Binary(data) => ws.send_binary(data).await?,
            _ => {}
        }
    }
    Ok(first_text)
}

/// Runs every case the fuzzing server offers, then asks it to write its reports.
pub async fn run_all(addr: &str) -> Result<u32, wsproto::Error> {
    let mut ws = open(addr, "/getCaseCount").await?;
    let count: u32 = match ws.recv().await? {
        Some(Event::Text(text)) => text.trim().parse().unwrap_or(0),
        _ => 0,
    };
    while ws.recv().await?.is_some() {}
    for case in 1..=count {
        if let Err(e) = echo(addr, &format!("/runCase?case={case}&agent={AGENT}")).await {
            eprintln!("case {case}: {e}");
        }
    }
    let mut ws = open(addr, &format!("/updateReports?agent={AGENT}")).await?;
    // Some fuzzing servers drop this connection without a close frame once the reports are
    // written; that is the end of the run, not a failure.
    while let Ok(Some(_)) = ws.recv().await {}
    Ok(count)
}

#[tokio::main]
async fn main() -> Result<(), wsproto::Error> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9001".into());
    let count = run_all(&addr).await?;
    println!("ran {count} cases against {addr}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsproto::Config;

    /// A tiny stand-in for the fuzzing server: one case that sends a text and expects it back.
    #[tokio::test]
    async fn follows_the_fuzzing_server_protocol() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let mut paths = Vec::new();
            let mut echoed = None;
            for _ in 0..3 {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let (request, rest) = wsproto::stream::read_request(&mut tcp, &Config::default()).await.unwrap();
                let path = request.target().to_owned();
                let accept = wsproto::handshake::server::Accept::new();
                let mut ws = wsproto::stream::upgrade(tcp, &request, &rest, &accept, Config::default()).await.unwrap();
                if path == "/getCaseCount" {
                    ws.send_text("1").await.unwrap();
                } else if path.starts_with("/runCase") {
                    ws.send_text("ping me back").await.unwrap();
                    echoed = ws.recv().await.unwrap();
                }
                ws.close(wsproto::CloseCode::Normal, "").await.unwrap();
                while let Ok(Some(_)) = ws.recv().await {}
                paths.push(path);
            }
            (paths, echoed)
        });
        assert_eq!(run_all(&addr).await.unwrap(), 1);
        let (paths, echoed) = server.await.unwrap();
        assert_eq!(paths, ["/getCaseCount", "/runCase?case=1&agent=wsproto", "/updateReports?agent=wsproto"]);
        assert_eq!(echoed, Some(Event::Text("ping me back".into())));
    }
}
