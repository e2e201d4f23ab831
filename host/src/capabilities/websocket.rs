//! `cyclone:platform/websocket`: the guest's side of a session, and the
//! bounded channels between it and the connection (driven by
//! the websocket front end).

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::HostState;
use super::bindings::cyclone::platform::websocket as wit;
use wit::{Host, HostSession};

impl Host for HostState {}

impl HostSession for HostState {
    fn subscribe(&mut self, session: Resource<Session>) -> wasmtime::Result<Resource<DynPollable>> {
        subscribe(&mut self.table, session)
    }

    fn try_next(&mut self, session: Resource<Session>) -> wasmtime::Result<Option<wit::Event>> {
        let session = self.table.get_mut(&session)?;
        let fresh = !session.is_finished();
        let event = session.try_next();
        if fresh && event.is_some() {
            self.cpu.renew();
        }
        Ok(event.map(|event| match event {
            PeerEvent::Text(text) => {
                wit::Event::Message(wit::Message::Text(text.as_str().to_owned()))
            }
            PeerEvent::Binary(bytes) => wit::Event::Message(wit::Message::Binary(bytes.into())),
            PeerEvent::Closed(frame) => wit::Event::Closed(frame.map(|frame| wit::CloseFrame {
                code: frame.code.into(),
                reason: frame.reason.as_str().to_owned(),
            })),
        }))
    }

    async fn send(
        &mut self,
        session: Resource<Session>,
        message: wit::Message,
    ) -> wasmtime::Result<Result<(), wit::SendError>> {
        let message = match message {
            wit::Message::Text(text) => Message::text(text),
            wit::Message::Binary(bytes) => Message::binary(bytes),
        };
        let session = self.table.get(&session)?;
        Ok(session
            .send(message)
            .await
            .map_err(|refused| match refused {
                SendRefused::Closed => wit::SendError::Closed,
                SendRefused::TooLarge => wit::SendError::TooLarge,
            }))
    }

    async fn close(
        &mut self,
        session: Resource<Session>,
        code: u16,
        reason: String,
    ) -> wasmtime::Result<()> {
        let session = self.table.get_mut(&session)?;
        session
            .close(code, &reason)
            .await
            .map_err(wasmtime::Error::msg)
    }

    fn drop(&mut self, session: Resource<Session>) -> wasmtime::Result<()> {
        self.table.delete(session)?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Pollable for Session {
    async fn ready(&mut self) {
        Session::ready(self).await;
    }
}

/// Peer messages waiting for the guest to take them.
const INCOMING_BUFFER: usize = 4;
/// Guest messages waiting to be written.
const OUTGOING_BUFFER: usize = 16;

/// What the guest asks the connection to do.
pub(crate) enum Outgoing {
    Message(Message),
    Close(CloseFrame),
}

/// A close frame with `code` and `reason`.
pub(crate) fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }
}

/// The close frame a guest asks for: `code` must be one a peer may send,
/// and `reason` is cut to 123 bytes (on a character boundary).
pub(crate) fn close_frame_checked(code: u16, reason: &str) -> Result<CloseFrame, String> {
    let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !sendable {
        return Err(format!("{code} is not a close code a session may send"));
    }
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Ok(close_frame(CloseCode::from(code), &reason[..end]))
}

/// What the peer sent, as the guest receives it.
#[derive(Clone)]
pub enum PeerEvent {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// The session ended, with the peer's close frame if it sent one.
    Closed(Option<CloseFrame>),
}

/// The host side of a guest's `session` resource.
///
/// The channels carry boxes: a tokio channel allocates its slots 32 at a
/// time, so small items keep an idle session small.
pub struct Session {
    incoming: mpsc::Receiver<Box<PeerEvent>>,
    /// An event taken by [`Session::ready`] and not yet handed out.
    pending: Option<PeerEvent>,
    /// Set once `closed` was handed out; it is handed out again every time.
    finished: Option<Option<CloseFrame>>,
    outgoing: mpsc::Sender<Box<Outgoing>>,
    closing: bool,
    /// The largest message the guest may send: the app's message cap.
    max_message: usize,
}

/// Why a guest's message was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefused {
    /// The session is closed or closing.
    Closed,
    /// The message is over the app's `websocket_max_message_kb`.
    TooLarge,
}

/// The connection's ends of a session's channels: where peer events go in,
/// and where the guest's messages come out.
pub(crate) type PumpEnds = (mpsc::Sender<Box<PeerEvent>>, mpsc::Receiver<Box<Outgoing>>);

impl Session {
    /// A session whose guest may send messages of up to `max_message`
    /// bytes, and the connection's ends of its channels.
    pub(crate) fn new(max_message: usize) -> (Self, PumpEnds) {
        let (incoming_tx, incoming) = mpsc::channel(INCOMING_BUFFER);
        let (outgoing, outgoing_rx) = mpsc::channel(OUTGOING_BUFFER);
        let session = Self {
            incoming,
            pending: None,
            finished: None,
            outgoing,
            closing: false,
            max_message,
        };
        (session, (incoming_tx, outgoing_rx))
    }

    /// Waits until [`Session::try_next`] has an event.
    pub async fn ready(&mut self) {
        if self.pending.is_none() && self.finished.is_none() {
            self.pending = Some(
                self.incoming
                    .recv()
                    .await
                    .map_or(PeerEvent::Closed(None), |event| *event),
            );
        }
    }

    /// Whether `closed` has been handed out.
    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }

    /// The next event if one is waiting.
    pub fn try_next(&mut self) -> Option<PeerEvent> {
        if let Some(frame) = &self.finished {
            return Some(PeerEvent::Closed(frame.clone()));
        }
        let event = self
            .pending
            .take()
            .or_else(|| match self.incoming.try_recv() {
                Ok(event) => Some(*event),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => Some(PeerEvent::Closed(None)),
            })?;
        if let PeerEvent::Closed(frame) = &event {
            self.finished = Some(frame.clone());
        }
        Some(event)
    }

    /// Queues `message`, waiting while the queue is full.
    pub async fn send(&self, message: Message) -> Result<(), SendRefused> {
        if self.closing {
            return Err(SendRefused::Closed);
        }
        if message.len() > self.max_message {
            return Err(SendRefused::TooLarge);
        }
        self.outgoing
            .send(Box::new(Outgoing::Message(message)))
            .await
            .map_err(|_| SendRefused::Closed)
    }

    /// Starts the closing handshake. Fails for a code a peer may not send.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<(), String> {
        let frame = close_frame_checked(code, reason)?;
        if std::mem::replace(&mut self.closing, true) {
            return Ok(());
        }
        let _ = self.outgoing.send(Box::new(Outgoing::Close(frame))).await;
        Ok(())
    }
}
