//! A test guest serving websocket sessions.
//!
//! - `/echo` (callback style): sends every message back; the text
//!   `close CODE REASON` closes the session with that code and reason,
//!   `panic` traps the instance, `spin MS` keeps the CPU busy for MS
//!   milliseconds and answers `spun MS`, `alloc MB` allocates MB MiB more,
//!   touches it, keeps it for the rest of the instance and answers
//!   `allocated MB MiB (PAGES pages)`, `flood N` sends N numbered 1 KiB
//!   messages at once; the peer's close frame is printed.
//! - `/room` (loop style): every text message is published on the topic
//!   `room` and every message of the topic is sent to the peer; the session
//!   prints `subscribed to room` once it gets every message.
//! - `/private`: refused with 401 unless the query is `token=open-sesame`;
//!   `token=headers` is refused with 418 and connection and framing headers
//!   that the host must drop.
//! - `/plain`: an ordinary HTTP route.
//! - `/{app}/publish?topic=T&body=B` publishes (answers the id),
//!   `/{app}/recent?topic=T[&after=N]` lists the kept messages (after `N`)
//!   as `ID:BODY` lines
//!   (`{app}` lets one manifest mount this component twice).
//! - `/lag?n=N`: subscribes to `lag`, publishes N messages without reading,
//!   then answers what the subscription delivers first (`lagged K` or
//!   `message ID`).
//! - `/{app}/flood?topic=T&n=N&kb=K` publishes N messages of K KiB each on
//!   T (each starts with its number), and answers `published N`.
//! - `/h/{name}`: a hibernating session (refused with 401 when the query is
//!   `refuse`). It opens with `opened N`, N counting the events this
//!   instance ran (always 1: each event has a fresh instance). Text
//!   messages: `count` adds one to a counter kept in the attachment and
//!   answers `count C (event N)`; `sub T`, `fwd T` and `unsub T` subscribe,
//!   forward or drop topic T and answer `ok` or the error; `last T` answers
//!   the last message forwarded on T; `keep N` sets an N-byte attachment and
//!   answers `kept` or the error; `size` answers the attachment's length;
//!   `close CODE REASON`, `panic`, `spin MS` and `alloc MB` as on `/echo`;
//!   anything else
//!   comes back. Events of subscribed topics are sent as `T ID BODY` or
//!   `T lagged N`. The close handler prints `h closed NAME: FRAME count C`.
//! - `/quiet`: a hibernating session that sends every message back and says
//!   it has no close handler (`ON_CLOSE = false`); its `on_close`, which
//!   must never run, prints `quiet close ran`.

use cyclone_sdk::pubsub::{self, Event};
use cyclone_sdk::time::{Either, select};
use cyclone_sdk::websocket::{
    CloseFrame, HibernatingHandler, HibernatingSocket, Message, WebSocket, WebSocketHandler,
};
use cyclone_sdk::{Application, HttpError, Request, Response};

/// Echoes, in Tornado's callback style.
struct Echo;

impl WebSocketHandler for Echo {
    async fn open(&mut self, _ws: &WebSocket, req: &mut Request) {
        println!("echo session opened at {}", req.path());
    }

    async fn on_message(&mut self, ws: &WebSocket, message: Message) {
        if let Message::Text(text) = &message {
            if text == "panic" {
                panic!("the session was asked to panic");
            }
            if let Some(ms) = text.strip_prefix("spin ") {
                let ms: u64 = ms.parse().unwrap_or(0);
                let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
                let mut x = 1u64;
                while std::time::Instant::now() < until {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                let _ = ws.send(format!("spun {ms} ({})", x % 2)).await;
                return;
            }
            if let Some(mb) = text.strip_prefix("alloc ") {
                let _ = ws.send(allocate(mb)).await;
                return;
            }
            if let Some(n) = text.strip_prefix("flood ") {
                let padding = "x".repeat(1024);
                for i in 0..n.parse().unwrap_or(0) {
                    if ws.send(format!("{i} {padding}")).await.is_err() {
                        return;
                    }
                }
                return;
            }
            if let Some(rest) = text.strip_prefix("close ") {
                let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                ws.close(code.parse().unwrap_or(1000), reason).await;
                return;
            }
        }
        let _ = ws.send(message).await;
    }

    async fn on_close(&mut self, frame: Option<&CloseFrame>) {
        match frame {
            Some(frame) => println!("closed by peer: {} {}", frame.code, frame.reason),
            None => println!("closed without a frame"),
        }
    }
}

/// Allocates `mb` MiB, touches every page of it so the memory is really
/// used, and keeps it for as long as the instance lives; past the app's
/// memory cap the allocation fails and traps.
fn allocate(mb: &str) -> String {
    let mb: usize = mb.parse().unwrap_or(0);
    let mut block = vec![0u8; mb << 20];
    for i in (0..block.len()).step_by(4096) {
        block[i] = 1;
    }
    let touched = block.iter().step_by(4096).filter(|b| **b == 1).count();
    block.leak();
    format!("allocated {mb} MiB ({touched} pages)")
}

/// A room on the pub/sub topic `room`, in loop style.
struct Room;

impl WebSocketHandler for Room {
    async fn run(&mut self, mut ws: WebSocket, _req: &mut Request) {
        let mut room = pubsub::subscribe("room");
        // For tests: from here on this session gets every message.
        println!("subscribed to room");
        loop {
            match select(ws.recv(), room.next()).await {
                Either::Left(Some(Message::Text(text))) => {
                    if let Err(e) = pubsub::publish("room", text) {
                        eprintln!("publish failed: {e}");
                    }
                }
                Either::Left(Some(Message::Binary(_))) => {}
                Either::Left(None) => return,
                Either::Right(Event::Message(message)) => {
                    let text = message.text().unwrap_or_default().to_owned();
                    if ws.send(format!("{} {text}", message.id)).await.is_err() {
                        return;
                    }
                }
                Either::Right(Event::Lagged(n)) => eprintln!("lagged by {n}"),
            }
        }
    }
}

/// Lets in only those who know the token.
struct Private;

impl WebSocketHandler for Private {
    async fn connect(&mut self, req: &mut Request) -> Result<(), HttpError> {
        match req.query() {
            Some("token=open-sesame") => Ok(()),
            // The error page answers this one with headers no refusal may carry.
            Some("token=headers") => Err(HttpError::new(
                cyclone_sdk::StatusCode::IM_A_TEAPOT,
                "refused with headers",
            )),
            _ => Err(HttpError::unauthorized("a token is needed")),
        }
    }

    async fn on_message(&mut self, ws: &WebSocket, _message: Message) {
        let _ = ws.send("welcome").await;
    }
}

/// Events this instance has run: each hibernating event has a fresh one.
static EVENTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A hibernating session whose state lives in its attachment.
struct Hibernating;

/// A hibernating echo that tells the host not to run its close handler.
struct Quiet;

impl HibernatingHandler for Quiet {
    const ON_CLOSE: bool = false;

    async fn on_message(&mut self, ws: &HibernatingSocket, message: Message) {
        let _ = ws.send(message).await;
    }

    async fn on_close(&mut self, _ws: &HibernatingSocket, _frame: Option<&CloseFrame>) {
        println!("quiet close ran");
    }
}

impl Hibernating {
    /// Counts this event; how many this instance has run.
    fn event() -> u32 {
        EVENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }

    /// The counter kept in the attachment (its first 8 bytes).
    fn count(ws: &HibernatingSocket) -> u64 {
        let bytes = ws.attachment();
        bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    }
}

impl HibernatingHandler for Hibernating {
    async fn connect(&mut self, req: &mut Request) -> Result<(), HttpError> {
        match req.query() {
            Some("refuse") => Err(HttpError::unauthorized("refused")),
            _ => Ok(()),
        }
    }

    async fn open(&mut self, ws: &HibernatingSocket, _req: &mut Request) {
        let _ = ws.send(format!("opened {}", Self::event())).await;
    }

    async fn on_message(&mut self, ws: &HibernatingSocket, message: Message) {
        let event = Self::event();
        let Message::Text(text) = message else {
            let _ = ws.send(message).await;
            return;
        };
        let (word, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let answer = match word {
            "count" => {
                let count = Self::count(ws) + 1;
                let mut bytes = ws.attachment();
                bytes.resize(bytes.len().max(8), 0);
                bytes[..8].copy_from_slice(&count.to_le_bytes());
                let _ = ws.set_attachment(bytes);
                format!("count {count} (event {event})")
            }
            "sub" => ws
                .subscribe(rest)
                .map_or_else(|e| e.to_string(), |()| "ok".into()),
            "fwd" => ws
                .forward(rest)
                .map_or_else(|e| e.to_string(), |()| "ok".into()),
            "unsub" => {
                ws.unsubscribe(rest);
                "ok".into()
            }
            "last" => match ws.last_forwarded(rest) {
                Some(m) => format!("last {} {}", m.id, m.text().unwrap_or_default()),
                None => "none".into(),
            },
            "keep" => {
                let n: usize = rest.parse().unwrap_or(0);
                ws.set_attachment(vec![b'k'; n])
                    .map_or_else(|e| e.to_string(), |()| "kept".into())
            }
            "size" => ws.attachment().len().to_string(),
            "panic" => panic!("the hibernating session was asked to panic"),
            "spin" => {
                let ms: u64 = rest.parse().unwrap_or(0);
                let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
                let mut x = 1u64;
                while std::time::Instant::now() < until {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                format!("spun {ms} ({})", x % 2)
            }
            "alloc" => allocate(rest),
            "close" => {
                let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                ws.close(code.parse().unwrap_or(1000), reason).await;
                return;
            }
            _ => text.clone(),
        };
        let _ = ws.send(answer).await;
    }

    async fn on_pubsub(&mut self, ws: &HibernatingSocket, topic: &str, events: Vec<Event>) {
        for event in events {
            let line = match event {
                Event::Message(m) => format!("{topic} {} {}", m.id, m.text().unwrap_or_default()),
                Event::Lagged(n) => format!("{topic} lagged {n}"),
            };
            if ws.send(line).await.is_err() {
                return;
            }
        }
    }

    async fn on_close(&mut self, ws: &HibernatingSocket, frame: Option<&CloseFrame>) {
        let frame = frame.map_or("none".to_owned(), |f| format!("{} {}", f.code, f.reason));
        let sent = ws.send("too late").await.is_ok();
        println!(
            "h closed {}: {frame} count {} (send {})",
            ws.path(),
            Self::count(ws),
            if sent { "went out" } else { "refused" }
        );
    }
}

async fn plain(_req: &mut Request) -> Response {
    Response::text("plain HTTP")
}

async fn publish(req: &mut Request) -> Result<Response, HttpError> {
    let topic = req.argument("topic")?;
    let body = req.argument("body")?;
    let id = pubsub::publish(&topic, body).map_err(|e| HttpError::bad_request(e.to_string()))?;
    Ok(Response::text(id.to_string()))
}

async fn flood(req: &mut Request) -> Result<Response, HttpError> {
    let topic = req.argument("topic")?;
    let number = |name: &str| {
        req.argument(name)?
            .parse::<usize>()
            .map_err(|_| HttpError::bad_request(format!("{name} is a number")))
    };
    let (n, kb) = (number("n")?, number("kb")?);
    let padding = "x".repeat(kb * 1024);
    for i in 0..n {
        pubsub::publish(&topic, format!("{i} {padding}"))
            .map_err(|e| HttpError::internal(e.to_string()))?;
    }
    Ok(Response::text(format!("published {n}")))
}

async fn recent(req: &mut Request) -> Result<Response, HttpError> {
    let topic = req.argument("topic")?;
    let after = match req.argument_or("after", "").as_str() {
        "" => None,
        after => Some(
            after
                .parse()
                .map_err(|_| HttpError::bad_request("after is a message number"))?,
        ),
    };
    let lines: Vec<String> = pubsub::recent(&topic, after)
        .iter()
        .map(|m| format!("{}:{}", m.id, m.text().unwrap_or_default()))
        .collect();
    Ok(Response::text(lines.join("\n")))
}

async fn lag(req: &mut Request) -> Result<Response, HttpError> {
    let n: u64 = req
        .argument("n")?
        .parse()
        .map_err(|_| HttpError::bad_request("n"))?;
    let mut subscription = pubsub::subscribe("lag");
    for i in 0..n {
        pubsub::publish("lag", i.to_string()).map_err(|e| HttpError::internal(e.to_string()))?;
    }
    Ok(Response::text(match subscription.next().await {
        Event::Lagged(k) => format!("lagged {k}"),
        Event::Message(m) => format!("message {}", m.id),
    }))
}

/// The routes.
#[cyclone_sdk::app]
fn app() -> Application {
    Application::new()
        .error_page(|_req, error| {
            let mut page = error.default_page();
            if error.status == cyclone_sdk::StatusCode::IM_A_TEAPOT {
                for (name, value) in [
                    ("x-refused", "yes"),
                    ("connection", "upgrade"),
                    ("transfer-encoding", "chunked"),
                    ("content-length", "99999"),
                    ("upgrade", "h2c"),
                ] {
                    page = page.with_header(name, value);
                }
            }
            page
        })
        .websocket("/echo", Echo)
        .websocket("/room", Room)
        .websocket("/private", Private)
        .hibernating("/h/{name}", Hibernating)
        .hibernating("/quiet", Quiet)
        .get("/plain", plain)
        .get("/lag", lag)
        .get("/{app}/publish", publish)
        .get("/{app}/recent", recent)
        .get("/{app}/flood", flood)
}
