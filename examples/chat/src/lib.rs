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
//!   starting with the kept ones. Sessions hibernate: between messages no
//!   instance is alive, and the host itself writes each new message of the
//!   room to every socket.
//!
//! The room's messages live in the key-value store `default`, so they
//! survive restarts (SQLite beside the manifest with `cyclone.toml`; Redis,
//! shared by every host, with `cyclone-redis.toml`). Message `N` is the key
//! `chat:message:N`, claimed with compare-and-swap, so numbers never repeat
//! and have no holes even when hosts post at once; the room keeps the last
//! [`KEEP`]. The pub/sub topic [`ROOM`] carries each new message to the
//! waiting clients of every instance (and, with Redis, every host); a
//! client that sees a number out of turn reads what it missed from the
//! store. Messages posted either way reach clients of both kinds.

use std::time::Duration;

use cyclone_sdk::kv::{self, Store};
use cyclone_sdk::pubsub::{self, Event};
use cyclone_sdk::time::timeout;
use cyclone_sdk::websocket::{HibernatingHandler, HibernatingSocket, Message as Frame};
use cyclone_sdk::{Application, HttpError, Request, Response};
use serde_json::{Value, json};

/// The pub/sub topic that announces new messages.
pub const ROOM: &str = "chat";
/// How long a long poll waits for news before answering an empty list.
pub const POLL_WAIT: Duration = Duration::from_secs(30);
/// Messages the room keeps.
pub const KEEP: u64 = 200;
/// Keys read at once when looking for the newest message.
const SCAN: u64 = 64;

/// A message: its number and text, as clients see it.
#[derive(Debug, Clone)]
struct Posted {
    id: u64,
    json: Value,
}

impl Posted {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let json: Value = serde_json::from_slice(bytes).ok()?;
        Some(Self {
            id: json["id"].as_u64()?,
            json,
        })
    }
}

/// The room's messages in the store.
struct Room {
    store: Store,
}

fn message_key(id: u64) -> String {
    format!("chat:message:{id}")
}

/// The key holding the number of a recent message: a hint, never ahead.
const LAST: &str = "chat:last";

impl Room {
    fn open() -> Result<Self, kv::Error> {
        Ok(Self {
            store: Store::open("default")?,
        })
    }

    fn hint(&self) -> Result<u64, kv::Error> {
        Ok(self
            .store
            .get(LAST)?
            .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0))
    }

    /// Posts `body`: claims the first free number after the hint.
    fn post(&self, body: &str) -> Result<Posted, kv::Error> {
        let mut id = self.hint()? + 1;
        let json = loop {
            let json = json!({ "id": id, "body": body });
            if self
                .store
                .compare_and_swap(&message_key(id), None, json.to_string())?
            {
                break json;
            }
            id += 1;
        };
        // Move the hint forward unless another post already moved it further.
        loop {
            let hint = self.store.get(LAST)?;
            let current = hint
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            if current >= id
                || self
                    .store
                    .compare_and_swap(LAST, hint.as_deref(), id.to_string())?
            {
                break;
            }
        }
        if id > KEEP {
            self.store.delete(&message_key(id - KEEP))?;
        }
        if let Err(e) = pubsub::publish(ROOM, json.to_string()) {
            eprintln!("message {id} stored but not announced: {e}");
        }
        Ok(Posted { id, json })
    }

    /// The number of the newest message (0 for none).
    fn newest(&self) -> Result<u64, kv::Error> {
        let mut newest = self.hint()?;
        loop {
            let keys: Vec<String> = (newest + 1..=newest + SCAN).map(message_key).collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let found = self
                .store
                .get_many(&keys)?
                .iter()
                .take_while(|v| v.is_some())
                .count() as u64;
            newest += found;
            if found < SCAN {
                return Ok(newest);
            }
        }
    }

    /// The kept messages after `cursor` (all of them without one), oldest first.
    fn after(&self, cursor: Option<u64>) -> Result<Vec<Posted>, kv::Error> {
        let newest = self.newest()?;
        let oldest_kept = newest.saturating_sub(KEEP - 1).max(1);
        let first = cursor.map_or(oldest_kept, |c| (c + 1).max(oldest_kept));
        if first > newest {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = (first..=newest).map(message_key).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        Ok(self
            .store
            .get_many(&keys)?
            .into_iter()
            .flatten()
            .filter_map(|v| Posted::parse(&v))
            .collect())
    }
}

async fn page(_req: &mut Request) -> Response {
    Response::html(include_str!("index.html"))
}

async fn new_message(req: &mut Request) -> Result<Response, HttpError> {
    let body = req.argument("body")?;
    if body.trim().is_empty() {
        return Err(HttpError::bad_request("the message is empty"));
    }
    let posted = Room::open()?.post(&body)?;
    Ok(Response::json(&posted.json))
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
    let room = Room::open()?;
    // Subscribe before reading what is kept, so nothing posted in between is missed.
    let mut live = pubsub::subscribe(ROOM);
    let mut messages = room.after(cursor)?;
    if messages.is_empty() {
        messages = timeout(POLL_WAIT, news(&room, &mut live, cursor))
            .await
            .unwrap_or(Ok(Vec::new()))?;
    }
    let messages: Vec<&Value> = messages.iter().map(|m| &m.json).collect();
    Ok(Response::json(&json!({ "messages": messages })))
}

/// Waits for the first messages after `cursor`.
async fn news(
    room: &Room,
    live: &mut pubsub::Subscription,
    cursor: Option<u64>,
) -> Result<Vec<Posted>, kv::Error> {
    loop {
        match live.next().await {
            Event::Message(message) => match Posted::parse(&message.body) {
                Some(posted) if cursor.is_none_or(|c| posted.id == c + 1) => {
                    return Ok(vec![posted]);
                }
                Some(posted) if cursor.is_some_and(|c| posted.id <= c) => {}
                // Out of turn: the store has everything in order.
                _ => {
                    let messages = room.after(cursor)?;
                    if !messages.is_empty() {
                        return Ok(messages);
                    }
                }
            },
            // Fell behind: the store has what was missed.
            Event::Lagged(_) => {
                let messages = room.after(cursor)?;
                if !messages.is_empty() {
                    return Ok(messages);
                }
            }
        }
    }
}

/// A websocket client of the room.
struct ChatSocket;

impl ChatSocket {
    /// Sends `messages` the client has not had; false once it is gone.
    async fn send(ws: &HibernatingSocket, messages: Vec<Posted>, last_sent: &mut u64) -> bool {
        for message in messages {
            if message.id <= *last_sent {
                continue;
            }
            *last_sent = message.id;
            if ws.send(message.json.to_string()).await.is_err() {
                return false;
            }
        }
        true
    }

    /// What the client missed, from the store; nothing when it cannot be read.
    fn missed(room: &Room, last_sent: u64) -> Vec<Posted> {
        room.after(Some(last_sent)).unwrap_or_else(|e| {
            eprintln!("cannot read the room's messages: {e}");
            Vec::new()
        })
    }

    /// The number of the last message the client has: the session keeps
    /// what this guest sent in its attachment, and the host knows what it
    /// forwarded itself.
    fn last_sent(ws: &HibernatingSocket) -> u64 {
        let forwarded = ws
            .last_forwarded(ROOM)
            .and_then(|message| Posted::parse(&message.body))
            .map_or(0, |posted| posted.id);
        ws.state::<u64>().max(forwarded)
    }
}

impl HibernatingHandler for ChatSocket {
    // Nothing to do when a session ends: no instance for it.
    const ON_CLOSE: bool = false;

    async fn open(&mut self, ws: &HibernatingSocket, _req: &mut Request) {
        let room = match Room::open() {
            Ok(room) => room,
            Err(e) => {
                eprintln!("cannot open the room's store: {e}");
                ws.close(1000, "").await;
                return;
            }
        };
        // Forwarding starts before the kept messages are read, so nothing
        // published in between is lost; what arrives meanwhile comes to
        // `on_pubsub` first, which skips what this sent already.
        if let Err(e) = ws.forward(ROOM) {
            eprintln!("cannot follow the room: {e}");
        }
        let mut last_sent = 0;
        let kept = room.after(None).unwrap_or_default();
        Self::send(ws, kept, &mut last_sent).await;
        let _ = ws.set_state(&last_sent);
    }

    async fn on_message(&mut self, _ws: &HibernatingSocket, message: Frame) {
        if let Frame::Text(text) = message
            && !text.trim().is_empty()
            && let Err(e) = Room::open().and_then(|room| room.post(&text))
        {
            eprintln!("message not posted: {e}");
        }
    }

    async fn on_pubsub(&mut self, ws: &HibernatingSocket, _topic: &str, events: Vec<Event>) {
        let room = match Room::open() {
            Ok(room) => room,
            Err(e) => {
                eprintln!("cannot open the room's store: {e}");
                return;
            }
        };
        let mut last_sent = Self::last_sent(ws);
        for event in events {
            let delivered = match event {
                Event::Message(message) => match Posted::parse(&message.body) {
                    Some(posted) if posted.id <= last_sent + 1 => vec![posted],
                    _ => Self::missed(&room, last_sent),
                },
                Event::Lagged(n) => {
                    eprintln!("a websocket client fell {n} messages behind; catching up");
                    Self::missed(&room, last_sent)
                }
            };
            if !Self::send(ws, delivered, &mut last_sent).await {
                break;
            }
        }
        let _ = ws.set_state(&last_sent);
    }
}

/// The chat's routes.
#[cyclone_sdk::app]
fn app() -> Application {
    Application::new()
        .get("/", page)
        .post("/a/message/new", new_message)
        .post("/a/message/updates", updates)
        .hibernating("/chatsocket", ChatSocket)
}
