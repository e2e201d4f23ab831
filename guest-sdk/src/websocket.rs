//! WebSocket sessions, like Tornado's `WebSocketHandler`.
//!
//! Route a pattern to a [`WebSocketHandler`] with
//! [`Application::websocket`](crate::Application::websocket) and export the
//! application with [`#[app]`](crate::app). For an upgrade request on that
//! route the host calls the handler's [`connect`](WebSocketHandler::connect),
//! which may refuse (say, 401 without a session cookie); when it accepts, the
//! same instance runs [`run`](WebSocketHandler::run) for the whole session.
//!
//! Write a handler in Tornado's style — [`open`](WebSocketHandler::open),
//! [`on_message`](WebSocketHandler::on_message),
//! [`on_close`](WebSocketHandler::on_close) — or override `run` and loop:
//!
//! ```no_run
//! use cyclone_sdk::websocket::{WebSocket, WebSocketHandler};
//! use cyclone_sdk::Request;
//!
//! /// Sends every message back.
//! struct Echo;
//!
//! impl WebSocketHandler for Echo {
//!     async fn run(&mut self, mut ws: WebSocket, _req: &mut Request) {
//!         while let Some(message) = ws.recv().await {
//!             if ws.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     }
//! }
//! ```
//!
//! While the handler waits — for a message, a pub/sub event, a timer — the
//! instance is suspended. The host answers pings, keeps idle sessions alive,
//! and closes a session whose peer sends a message over
//! `websocket_max_message_kb` (1009). When `run` returns the host closes the
//! session with 1000 (or the code given to [`WebSocket::close`]); if the
//! instance traps, with 1011. Other sessions are unaffected either way.
//!
//! A session that mostly waits can hibernate instead: route it with
//! [`Application::hibernating`](crate::Application::hibernating) to a
//! [`HibernatingHandler`], and no instance is alive between its events.

use std::future::Future;
use std::pin::Pin;

use crate::bindings::cyclone::platform::websocket as wit;
pub use crate::hibernation::{
    AttachmentTooLarge, HibernatingHandler, HibernatingSocket, TopicError,
};
use crate::{HttpError, Request};

/// A data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Binary(bytes)
    }
}

/// A close frame: status code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code, e.g. 1000 for a normal close.
    pub code: u16,
    /// Why, for people; at most 123 bytes.
    pub reason: String,
}

/// Why [`WebSocket::send`] sent nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The session is closed or closing; nothing more can be sent.
    Closed,
    /// The message is over the app's `websocket_max_message_kb`, the cap
    /// that applies to the peer's messages too.
    TooLarge,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Closed => "the websocket session is closed",
            Self::TooLarge => "the message is over the app's websocket_max_message_kb",
        })
    }
}

impl std::error::Error for SendError {}

/// One open session.
#[derive(Debug)]
pub struct WebSocket {
    session: wit::Session,
    closed: Option<Option<CloseFrame>>,
}

impl WebSocket {
    fn new(session: wit::Session) -> Self {
        Self {
            session,
            closed: None,
        }
    }

    /// The next message, or `None` once the session is over (see
    /// [`close_frame`](Self::close_frame)). The instance is suspended while
    /// it waits; the future may be dropped without losing a message.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            if self.closed.is_some() {
                return None;
            }
            match self.session.try_next() {
                Some(wit::Event::Message(wit::Message::Text(text))) => {
                    return Some(Message::Text(text));
                }
                Some(wit::Event::Message(wit::Message::Binary(bytes))) => {
                    return Some(Message::Binary(bytes));
                }
                Some(wit::Event::Closed(frame)) => {
                    self.closed = Some(frame.map(|f| CloseFrame {
                        code: f.code,
                        reason: f.reason,
                    }));
                }
                None => crate::time::wait_for(self.session.subscribe()).await,
            }
        }
    }

    /// The peer's close frame once [`recv`](Self::recv) has returned `None`;
    /// `None` before that, or when the connection ended without one.
    pub fn close_frame(&self) -> Option<&CloseFrame> {
        self.closed.as_ref()?.as_ref()
    }

    /// Sends `message`, waiting while the host's send buffer is full (a peer
    /// that reads slowly slows its sender; nothing is dropped).
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        let message = match message.into() {
            Message::Text(text) => wit::Message::Text(text),
            Message::Binary(bytes) => wit::Message::Binary(bytes),
        };
        self.session.send(&message).map_err(|e| match e {
            wit::SendError::Closed => SendError::Closed,
            wit::SendError::TooLarge => SendError::TooLarge,
        })
    }

    /// Starts the closing handshake with `code` (1000 normal, 1001 going
    /// away, 1008 policy, 4000–4999 for the application) and `reason` (cut
    /// to 123 bytes). Later sends fail with [`SendError::Closed`].
    ///
    /// # Panics
    /// For a code a peer may not send (e.g. 1005, 1006, 1015, below 1000).
    pub async fn close(&self, code: u16, reason: &str) {
        self.session.close(code, reason);
    }
}

/// A websocket endpoint, like Tornado's `WebSocketHandler`. Implement the
/// callbacks, or override [`run`](Self::run) to drive the session yourself.
#[expect(
    async_fn_in_trait,
    reason = "a guest runs one session on one thread; handler futures need not be Send"
)]
pub trait WebSocketHandler: 'static {
    /// Runs before the handshake completes; an error refuses the session
    /// with that error's page (e.g. [`HttpError::unauthorized`]). Accepts by
    /// default. Tornado's `check_origin` is the host's job: foreign origins
    /// never get here unless the manifest allows them.
    async fn connect(&mut self, req: &mut Request) -> Result<(), HttpError> {
        let _ = req;
        Ok(())
    }

    /// Runs when the session opens.
    async fn open(&mut self, ws: &WebSocket, req: &mut Request) {
        let _ = (ws, req);
    }

    /// Runs for every message.
    async fn on_message(&mut self, ws: &WebSocket, message: Message) {
        let _ = (ws, message);
    }

    /// Runs once the session is over, with the peer's close frame if it sent one.
    async fn on_close(&mut self, frame: Option<&CloseFrame>) {
        let _ = frame;
    }

    /// Runs the whole session; by default calls `open`, `on_message` for each
    /// message, then `on_close`.
    async fn run(&mut self, mut ws: WebSocket, req: &mut Request) {
        self.open(&ws, req).await;
        while let Some(message) = ws.recv().await {
            self.on_message(&ws, message).await;
        }
        self.on_close(ws.close_frame()).await;
    }
}

type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A [`WebSocketHandler`] behind a pointer.
pub(crate) trait Endpoint {
    fn connect<'a>(&'a mut self, req: &'a mut Request) -> LocalFuture<'a, Result<(), HttpError>>;
    fn run<'a>(&'a mut self, ws: WebSocket, req: &'a mut Request) -> LocalFuture<'a, ()>;
}

impl<H: WebSocketHandler> Endpoint for H {
    fn connect<'a>(&'a mut self, req: &'a mut Request) -> LocalFuture<'a, Result<(), HttpError>> {
        Box::pin(WebSocketHandler::connect(self, req))
    }

    fn run<'a>(&'a mut self, ws: WebSocket, req: &'a mut Request) -> LocalFuture<'a, ()> {
        Box::pin(WebSocketHandler::run(self, ws, req))
    }
}

/// A live session this instance accepted, kept from `connect` until `run`.
pub(crate) struct Live {
    pub(crate) endpoint: Box<dyn Endpoint>,
    pub(crate) request: Request,
}

/// A session a handler accepted.
#[cfg_attr(feature = "wasip3", allow(dead_code))]
pub(crate) enum Accepted {
    /// It runs on this instance.
    Live(Live),
    /// It hibernates between events.
    Hibernating(Box<dyn crate::hibernation::HibernatingEndpoint>, Request),
}

thread_local! {
    static ACCEPTED: std::cell::RefCell<Option<Live>> = const { std::cell::RefCell::new(None) };
}

/// Keeps `live` for the `run` that follows.
pub(crate) fn keep_accepted(live: Live) {
    ACCEPTED.with(|slot| *slot.borrow_mut() = Some(live));
}

/// The request of a handshake's `head`, or the refusal of a malformed one.
pub(crate) fn handshake_request(head: &wit::Request) -> Result<Request, wit::Response> {
    let mut builder = http::Request::builder()
        .method(head.method.as_str())
        .uri(head.path_with_query.as_str());
    for (name, value) in &head.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    builder
        .body(Vec::new())
        .map(Request::from_http)
        .map_err(|e| {
            refusal(
                crate::Response::text(format!("Bad Request: {e}\n"))
                    .with_status(http::StatusCode::BAD_REQUEST),
            )
        })
}

/// The `websocket-handler` export's `connect`: routes the handshake and asks
/// the handler; `None` accepts. A host that calls this one cannot keep
/// hibernating sessions: their routes answer 501.
#[cfg_attr(feature = "wasip3", allow(dead_code))]
pub(crate) fn connect(app: crate::Application, head: wit::Request) -> Option<wit::Response> {
    let request = match handshake_request(&head) {
        Ok(request) => request,
        Err(refusal) => return Some(refusal),
    };
    wstd::runtime::block_on(async move {
        match app.connect(request).await {
            Ok(Accepted::Live(live)) => {
                keep_accepted(live);
                None
            }
            Ok(Accepted::Hibernating(..)) => Some(refusal(
                crate::Response::text("This host cannot keep hibernating websocket sessions.\n")
                    .with_status(http::StatusCode::NOT_IMPLEMENTED),
            )),
            Err(response) => Some(refusal(response)),
        }
    })
}

/// The `websocket-handler` export's `run`.
#[cfg_attr(feature = "wasip3", allow(dead_code))]
pub(crate) fn run(session: wit::Session) {
    let Some(mut accepted) = ACCEPTED.with(|slot| slot.borrow_mut().take()) else {
        panic!("run called without an accepted connect");
    };
    wstd::runtime::block_on(async move {
        accepted
            .endpoint
            .run(WebSocket::new(session), &mut accepted.request)
            .await;
    });
}

/// `response` as the refusal of a handshake.
pub(crate) fn refusal(response: crate::Response) -> wit::Response {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let body = response.body().map(<[u8]>::to_vec).unwrap_or_default();
    wit::Response {
        status,
        headers,
        body,
    }
}
