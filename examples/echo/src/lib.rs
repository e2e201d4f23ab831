//! The smallest websocket app, both ways of serving a session: at `/echo`
//! one instance runs the whole session and sends every message back; at
//! `/hibernating` the session hibernates between messages and each message
//! runs a fresh instance that sends it back. Text comes back as text and
//! binary as binary, until the client closes.

use cyclone_sdk::websocket::{
    HibernatingHandler, HibernatingSocket, Message, WebSocket, WebSocketHandler,
};
use cyclone_sdk::{Application, Request};

/// Sends every message back, from the instance that holds the session.
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

/// Sends every message back, from an instance that lives for that message.
struct HibernatingEcho;

impl HibernatingHandler for HibernatingEcho {
    // Nothing to do when a session ends: no instance for it.
    const ON_CLOSE: bool = false;

    async fn on_message(&mut self, ws: &HibernatingSocket, message: Message) {
        let _ = ws.send(message).await;
    }
}

/// The two websocket routes.
#[cyclone_sdk::app]
fn app() -> Application {
    Application::new()
        .websocket("/echo", Echo)
        .hibernating("/hibernating", HibernatingEcho)
}
