//! Tornado's chat demo on cyclone: one room, over long polling and
//! websockets at once.
//!
//! - `GET /`: the page (`index.html`): websocket by default, long polling
//!   with `?transport=poll` or when websockets fail.
//! - `POST /a/message/new` (form field `body`): posts a message; answers it
//!   as JSON `{"id": …, "body": …}`.
//! - `POST /a/message/updates` (optional form field `cursor`, the id of the
//!   last message the client has): `{"messages": [...]}` with every kept
//!   message after the cursor; when there is none it waits, suspended, for
//!   the next one (at most [`POLL_WAIT`], then answers an empty list).
//! - `/chatsocket`: a websocket; a text frame posts its text as a message,
//!   and every message of the room arrives as a text frame holding its JSON,
//!   starting with the kept ones.
//!
//! The room is the pub/sub topic [`ROOM`]; the manifest's `pubsub_history`
//! is how many messages it keeps. Messages posted either way reach clients
//! of both kinds.

use std::time::Duration;

use cyclone_sdk::pubsub::{self, Event, Message};
use cyclone_sdk::time::{Either, select, timeout};
use cyclone_sdk::websocket::{Message as Frame, WebSocket, WebSocketHandler};
use cyclone_sdk::{Application, HttpError, Request, Response};

/// The pub/sub topic of the room.
pub const ROOM: &str = "chat";
/// How long a long poll waits for news before answering an empty list.
pub const POLL_WAIT: Duration = Duration::from_secs(30);

fn to_json(message: &Message) -> serde_json::Value {
    serde_json::json!({
        "id": message.id,
        "body": String::from_utf8_lossy(&message.body),
    })
}

async fn page(_req: &mut Request) -> Response {
    Response::html(include_str!("index.html"))
}

async fn new_message(req: &mut Request) -> Result<Response, HttpError> {
    let body = req.argument("body")?;
    if body.trim().is_empty() {
        return Err(HttpError::bad_request("the message is empty"));
    }
    let id = pubsub::publish(ROOM, &body).map_err(|e| HttpError::bad_request(e.to_string()))?;
    Ok(Response::json(&to_json(&Message {
        id,
        body: body.into_bytes(),
    })))
}

async fn updates(req: &mut Request) -> Result<Response, HttpError> {
    let cursor = match req.argument_or("cursor", "").as_str() {
        "" => None,
        cursor => Some(
            cursor
                .parse::<u64>()
                .map_err(|_| HttpError::bad_request("cursor must be a message id"))?,
        ),
    };
    // Subscribe before reading what is kept, so nothing posted in between is missed.
    let mut live = pubsub::subscribe(ROOM);
    let mut messages = pubsub::recent(ROOM, cursor);
    if messages.is_empty() {
        messages = timeout(POLL_WAIT, news(&mut live, cursor))
            .await
            .unwrap_or_default();
    }
    let messages: Vec<_> = messages.iter().map(to_json).collect();
    Ok(Response::json(&serde_json::json!({ "messages": messages })))
}

/// Waits for the first message after `cursor`.
async fn news(live: &mut pubsub::Subscription, cursor: Option<u64>) -> Vec<Message> {
    loop {
        match live.next().await {
            Event::Message(message) if cursor.is_none_or(|c| message.id > c) => {
                return vec![message];
            }
            Event::Message(_) => {}
            // Fell behind: what is kept is the best answer.
            Event::Lagged(_) => return pubsub::recent(ROOM, cursor),
        }
    }
}

/// A websocket client of the room.
struct ChatSocket;

impl WebSocketHandler for ChatSocket {
    async fn run(&mut self, mut ws: WebSocket, _req: &mut Request) {
        let mut live = pubsub::subscribe(ROOM);
        let mut last_sent = 0;
        for message in pubsub::recent(ROOM, None) {
            last_sent = message.id;
            if ws.send(to_json(&message).to_string()).await.is_err() {
                return;
            }
        }
        loop {
            match select(ws.recv(), live.next()).await {
                Either::Left(Some(Frame::Text(text))) => {
                    if text.trim().is_empty() {
                        continue;
                    }
                    if let Err(e) = pubsub::publish(ROOM, &text) {
                        eprintln!("message not posted: {e}");
                    }
                }
                Either::Left(Some(Frame::Binary(_))) => {}
                Either::Left(None) => return,
                Either::Right(Event::Message(message)) => {
                    // Already sent from the kept messages.
                    if message.id <= last_sent {
                        continue;
                    }
                    last_sent = message.id;
                    if ws.send(to_json(&message).to_string()).await.is_err() {
                        return;
                    }
                }
                Either::Right(Event::Lagged(n)) => {
                    eprintln!("a websocket client fell {n} messages behind; catching up");
                    for message in pubsub::recent(ROOM, Some(last_sent)) {
                        last_sent = message.id;
                        if ws.send(to_json(&message).to_string()).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The chat's routes.
#[cyclone_sdk::app]
fn app() -> Application {
    Application::new()
        .get("/", page)
        .post("/a/message/new", new_message)
        .post("/a/message/updates", updates)
        .websocket("/chatsocket", ChatSocket)
}
