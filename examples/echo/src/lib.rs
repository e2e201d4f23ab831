//! The smallest websocket app: a session at `/echo` sends every message
//! back, text as text and binary as binary, until the client closes.

use cyclone_sdk::websocket::{WebSocket, WebSocketHandler};
use cyclone_sdk::{Application, Request};

/// Sends every message back.
struct Echo;

impl WebSocketHandler for Echo {
    async fn run(&mut self, mut ws: WebSocket, _req: &mut Request) {
        while let Some(message) = ws.recv().await {
            if ws.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// One websocket route.
#[cyclone_sdk::app]
fn app() -> Application {
    Application::new().websocket("/echo", Echo)
}
