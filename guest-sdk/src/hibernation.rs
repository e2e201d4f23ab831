//! Hibernating websocket sessions: the host keeps the connection, and the
//! handler runs only for events, each in a fresh instance. See
//! [`HibernatingHandler`].

use std::future::Future;
use std::pin::Pin;

use crate::bindings::cyclone::platform::hibernation as wit;
use crate::bindings::cyclone::platform::websocket as wit_ws;
use crate::pubsub;
use crate::websocket::{CloseFrame, Message, SendError};
use crate::{HttpError, Request};

/// A websocket endpoint whose sessions hibernate between events, like a
/// Durable Object's hibernatable websockets: while a session is idle no
/// instance is alive, and the host answers pings and keeps the socket.
///
/// Each callback runs in a fresh instance with a fresh value of the handler
/// (the one the application function builds), so nothing in the handler or
/// in statics survives from one event to the next: keep per-session state
/// in the session's [attachment](HibernatingSocket::set_state) (at most
/// 16 KiB) and shared state in the key-value store. Events of one session
/// run one at a time, in order, each under the app's CPU budget, timeout
/// and memory cap.
///
/// For fan-out, [`forward`](HibernatingSocket::forward) a pub/sub topic:
/// the host then writes each message published on it to the socket itself,
/// without running the guest, and a session costs a few KiB of host memory.
///
/// ```no_run
/// use cyclone_sdk::websocket::{HibernatingHandler, HibernatingSocket, Message};
///
/// /// Counts the messages of each session, and says so.
/// struct Counter;
///
/// impl HibernatingHandler for Counter {
///     async fn on_message(&mut self, ws: &HibernatingSocket, message: Message) {
///         let seen = ws.state::<u64>() + 1;
///         let _ = ws.set_state(&seen);
///         let _ = ws.send(format!("{seen}: {message:?}")).await;
///     }
/// }
/// ```
#[expect(
    async_fn_in_trait,
    reason = "a guest runs one event on one thread; handler futures need not be Send"
)]
pub trait HibernatingHandler: 'static {
    /// Whether [`on_close`](Self::on_close) runs when a session ends. Set
    /// it to `false` when the handler has nothing to do then: the host ends
    /// each session without starting an instance for it, which matters when
    /// thousands of sessions end at once.
    const ON_CLOSE: bool = true;

    /// Runs before the handshake completes; an error refuses the session
    /// with that error's page. Accepts by default.
    async fn connect(&mut self, req: &mut Request) -> Result<(), HttpError> {
        let _ = req;
        Ok(())
    }

    /// Runs once the session is open, in the instance that ran `connect`.
    async fn open(&mut self, ws: &HibernatingSocket, req: &mut Request) {
        let _ = (ws, req);
    }

    /// Runs for every message from the peer.
    async fn on_message(&mut self, ws: &HibernatingSocket, message: Message) {
        let _ = (ws, message);
    }

    /// Runs for events of a [subscribed](HibernatingSocket::subscribe)
    /// topic (up to 64 at a time, in order), and for those of a
    /// [forwarded](HibernatingSocket::forward) one that the host did not
    /// write itself: the messages waiting when forwarding starts, a
    /// [`Lagged`](pubsub::Event::Lagged), and a message that is not a valid
    /// frame.
    async fn on_pubsub(&mut self, ws: &HibernatingSocket, topic: &str, events: Vec<pubsub::Event>) {
        let _ = (ws, topic, events);
    }

    /// Runs once when the session is over, whoever closed it, with the
    /// peer's close frame if it sent one, unless [`ON_CLOSE`](Self::ON_CLOSE)
    /// is `false`. Sends fail here.
    async fn on_close(&mut self, ws: &HibernatingSocket, frame: Option<&CloseFrame>) {
        let _ = (ws, frame);
    }
}

/// Why a topic was not added to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// The name is empty or over 256 bytes.
    InvalidName,
    /// The session has 16 topics already.
    TooMany,
}

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::InvalidName => "topic names are 1 to 256 bytes long",
            Self::TooMany => "a session has at most 16 topics",
        })
    }
}

impl std::error::Error for TopicError {}

/// Why an attachment was not kept: it is over 16 KiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentTooLarge(pub String);

impl std::fmt::Display for AttachmentTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AttachmentTooLarge {}

/// A hibernating session, as one event sees it.
#[derive(Debug)]
pub struct HibernatingSocket {
    /// The host lends the session for one call; it is never dropped here.
    session: std::mem::ManuallyDrop<wit::Session>,
}

impl HibernatingSocket {
    /// The session the host lent to this call.
    #[cfg(not(feature = "wasip3"))]
    fn lent(session: &wit::Session) -> Self {
        // SAFETY: the handle stays valid for the whole export call, and the
        // socket lives only within it (handlers get it by reference, and it
        // is not `Clone`); `ManuallyDrop` keeps the borrowed handle from
        // being dropped as if it were owned.
        let session = unsafe { wit::Session::from_handle(session.handle()) };
        Self {
            session: std::mem::ManuallyDrop::new(session),
        }
    }

    /// The path (without the query) the session was opened at.
    pub fn path(&self) -> String {
        self.session.path()
    }

    /// The bytes last set with [`set_attachment`](Self::set_attachment);
    /// empty at first.
    pub fn attachment(&self) -> Vec<u8> {
        self.session.attachment()
    }

    /// Keeps `bytes` with the session for its next events. What an event
    /// sets is kept only if the event returns normally.
    pub fn set_attachment(&self, bytes: impl AsRef<[u8]>) -> Result<(), AttachmentTooLarge> {
        self.session
            .set_attachment(bytes.as_ref())
            .map_err(AttachmentTooLarge)
    }

    /// The attachment as JSON of `T`; `T::default()` when there is none
    /// yet, or it is not `T`.
    pub fn state<T: serde::de::DeserializeOwned + Default>(&self) -> T {
        serde_json::from_slice(&self.attachment()).unwrap_or_default()
    }

    /// Keeps `state`, as JSON, as the attachment.
    pub fn set_state<T: serde::Serialize>(&self, state: &T) -> Result<(), AttachmentTooLarge> {
        let bytes = serde_json::to_vec(state).map_err(|e| AttachmentTooLarge(e.to_string()))?;
        self.set_attachment(bytes)
    }

    /// Sends `message`, waiting while the host's send buffer is full.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        let message = match message.into() {
            Message::Text(text) => wit_ws::Message::Text(text),
            Message::Binary(bytes) => wit_ws::Message::Binary(bytes),
        };
        self.session.send(&message).map_err(|e| match e {
            wit_ws::SendError::Closed => SendError::Closed,
            wit_ws::SendError::TooLarge => SendError::TooLarge,
        })
    }

    /// Starts the closing handshake with `code` and `reason` (cut to 123
    /// bytes); only [`on_close`](HibernatingHandler::on_close) follows.
    ///
    /// # Panics
    /// For a code a peer may not send (e.g. 1005, 1006, 1015, below 1000).
    pub async fn close(&self, code: u16, reason: &str) {
        self.session.close(code, reason);
    }

    /// From now on, [`on_pubsub`](HibernatingHandler::on_pubsub) receives
    /// the messages of `topic`. Each batch runs an instance: for a topic
    /// many sessions share, prefer [`forward`](Self::forward).
    pub fn subscribe(&self, topic: &str) -> Result<(), TopicError> {
        self.session.subscribe(topic).map_err(topic_error)
    }

    /// From now on, the host writes each message of `topic` to the peer as
    /// a text frame itself, running no guest. The messages waiting when this
    /// event returns still come to `on_pubsub` first, so the handler can
    /// skip what it has sent already.
    pub fn forward(&self, topic: &str) -> Result<(), TopicError> {
        self.session
            .forward(topic, wit::FrameKind::Text)
            .map_err(topic_error)
    }

    /// Like [`forward`](Self::forward), writing binary frames.
    pub fn forward_binary(&self, topic: &str) -> Result<(), TopicError> {
        self.session
            .forward(topic, wit::FrameKind::Binary)
            .map_err(topic_error)
    }

    /// Stops receiving `topic`.
    pub fn unsubscribe(&self, topic: &str) {
        self.session.unsubscribe(topic);
    }

    /// The last message the host wrote from the forwarded `topic`, if any.
    pub fn last_forwarded(&self, topic: &str) -> Option<pubsub::Message> {
        self.session
            .last_forwarded(topic)
            .map(crate::pubsub::from_wit)
    }
}

fn topic_error(e: wit::TopicError) -> TopicError {
    match e {
        wit::TopicError::InvalidName => TopicError::InvalidName,
        wit::TopicError::TooMany => TopicError::TooMany,
    }
}

type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A [`HibernatingHandler`] behind a pointer.
#[cfg_attr(feature = "wasip3", allow(dead_code))]
pub(crate) trait HibernatingEndpoint {
    /// [`HibernatingHandler::ON_CLOSE`].
    fn runs_on_close(&self) -> bool;
    fn connect<'a>(&'a mut self, req: &'a mut Request) -> LocalFuture<'a, Result<(), HttpError>>;
    fn open<'a>(
        &'a mut self,
        ws: &'a HibernatingSocket,
        req: &'a mut Request,
    ) -> LocalFuture<'a, ()>;
    fn on_message<'a>(
        &'a mut self,
        ws: &'a HibernatingSocket,
        message: Message,
    ) -> LocalFuture<'a, ()>;
    fn on_pubsub<'a>(
        &'a mut self,
        ws: &'a HibernatingSocket,
        topic: &'a str,
        events: Vec<pubsub::Event>,
    ) -> LocalFuture<'a, ()>;
    fn on_close<'a>(
        &'a mut self,
        ws: &'a HibernatingSocket,
        frame: Option<&'a CloseFrame>,
    ) -> LocalFuture<'a, ()>;
}

impl<H: HibernatingHandler> HibernatingEndpoint for H {
    fn runs_on_close(&self) -> bool {
        H::ON_CLOSE
    }

    fn connect<'a>(&'a mut self, req: &'a mut Request) -> LocalFuture<'a, Result<(), HttpError>> {
        Box::pin(HibernatingHandler::connect(self, req))
    }

    fn open<'a>(
        &'a mut self,
        ws: &'a HibernatingSocket,
        req: &'a mut Request,
    ) -> LocalFuture<'a, ()> {
        Box::pin(HibernatingHandler::open(self, ws, req))
    }

    fn on_message<'a>(
        &'a mut self,
        ws: &'a HibernatingSocket,
        message: Message,
    ) -> LocalFuture<'a, ()> {
        Box::pin(HibernatingHandler::on_message(self, ws, message))
    }

    fn on_pubsub<'a>(
        &'a mut self,
        ws: &'a HibernatingSocket,
        topic: &'a str,
        events: Vec<pubsub::Event>,
    ) -> LocalFuture<'a, ()> {
        Box::pin(HibernatingHandler::on_pubsub(self, ws, topic, events))
    }

    fn on_close<'a>(
        &'a mut self,
        ws: &'a HibernatingSocket,
        frame: Option<&'a CloseFrame>,
    ) -> LocalFuture<'a, ()> {
        Box::pin(HibernatingHandler::on_close(self, ws, frame))
    }
}

/// The `hibernating-handler` export's functions, called by `#[app]`'s code.
#[cfg(not(feature = "wasip3"))]
pub mod exports {
    use super::*;
    use crate::bindings::exports::cyclone::platform::hibernating_handler::{Decision, Keep};

    /// The hibernating session this instance accepted, kept from `connect`
    /// until `on-open`.
    struct Opened {
        endpoint: Box<dyn HibernatingEndpoint>,
        request: Request,
    }

    thread_local! {
        static OPENED: std::cell::RefCell<Option<Opened>> = const { std::cell::RefCell::new(None) };
    }

    /// The `hibernating-handler` export's `connect`: routes the handshake and
    /// asks its handler.
    pub fn decide(app: crate::Application, head: wit_ws::Request) -> Decision {
        let request = match crate::websocket::handshake_request(&head) {
            Ok(request) => request,
            Err(refusal) => return Decision::Refuse(refusal),
        };
        wstd::runtime::block_on(async move {
            match app.connect(request).await {
                Ok(crate::websocket::Accepted::Live(accepted)) => {
                    crate::websocket::keep_accepted(accepted);
                    Decision::Live
                }
                Ok(crate::websocket::Accepted::Hibernating(endpoint, request)) => {
                    let keep = Keep {
                        on_close: endpoint.runs_on_close(),
                    };
                    OPENED.with(|slot| *slot.borrow_mut() = Some(Opened { endpoint, request }));
                    Decision::Hibernate(keep)
                }
                Err(response) => Decision::Refuse(crate::websocket::refusal(response)),
            }
        })
    }

    /// The `hibernating-handler` export's `on-open`.
    pub fn on_open(session: &wit::Session) {
        let Some(mut opened) = OPENED.with(|slot| slot.borrow_mut().take()) else {
            panic!("on-open called without a hibernating connect");
        };
        let ws = HibernatingSocket::lent(session);
        wstd::runtime::block_on(opened.endpoint.open(&ws, &mut opened.request));
    }

    /// The handler of the hibernating route `session` was opened at.
    fn endpoint(app: crate::Application, session: &wit::Session) -> Box<dyn HibernatingEndpoint> {
        let path = session.path();
        match app.hibernating_endpoint(&path) {
            Some(endpoint) => endpoint,
            None => panic!("no hibernating websocket route matches {path}"),
        }
    }

    /// The `hibernating-handler` export's `on-message`.
    pub fn on_message(app: crate::Application, session: &wit::Session, message: wit_ws::Message) {
        let mut endpoint = endpoint(app, session);
        let ws = HibernatingSocket::lent(session);
        let message = match message {
            wit_ws::Message::Text(text) => Message::Text(text),
            wit_ws::Message::Binary(bytes) => Message::Binary(bytes),
        };
        wstd::runtime::block_on(endpoint.on_message(&ws, message));
    }

    /// The `hibernating-handler` export's `on-pubsub`.
    pub fn on_pubsub(
        app: crate::Application,
        session: &wit::Session,
        topic: String,
        events: Vec<crate::bindings::cyclone::platform::pubsub::Event>,
    ) {
        let mut endpoint = endpoint(app, session);
        let ws = HibernatingSocket::lent(session);
        let events = events.into_iter().map(pubsub::from_wit_event).collect();
        wstd::runtime::block_on(endpoint.on_pubsub(&ws, &topic, events));
    }

    /// The `hibernating-handler` export's `on-close`.
    pub fn on_close(
        app: crate::Application,
        session: &wit::Session,
        frame: Option<wit_ws::CloseFrame>,
    ) {
        let mut endpoint = endpoint(app, session);
        let ws = HibernatingSocket::lent(session);
        let frame = frame.map(|f| CloseFrame {
            code: f.code,
            reason: f.reason,
        });
        wstd::runtime::block_on(endpoint.on_close(&ws, frame.as_ref()));
    }
}
