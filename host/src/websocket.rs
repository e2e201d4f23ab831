//! WebSocket sessions: the handshake, the connection, and the host side of
//! the guest's `session`.
//!
//! An upgrade request on a route whose component exports
//! `cyclone:platform/websocket-handler` comes here instead of the guest's
//! HTTP handler. The host checks the handshake and the `Origin` (403 for a
//! foreign one), takes an instance permit, and asks the guest's `connect`
//! whether to accept. On acceptance it answers 101, and one task then runs
//! the session: the guest's `run` on the same instance, next to a pump that
//! moves frames between the connection (tokio-tungstenite over
//! `hyper::upgrade`) and two bounded channels. Frames from the peer wait in
//! the connection while the guest has not taken the previous ones; a guest's
//! `send` waits while the outgoing channel is full. Nothing is dropped.
//!
//! The host answers pings, pings an idle peer every `websocket_ping_secs`
//! and disconnects one silent for two intervals. A message over
//! `websocket_max_message_kb` closes the session with 1009; a guest that
//! traps closes it with 1011; a guest that returns closes it with 1000. When
//! the connection ends the guest sees `closed` and has [`CLOSE_GRACE`] to
//! return before its instance is dropped; either way its permit is released
//! and a log line says how the session ended. On shutdown every session is
//! closed with 1001 and the server waits for them as for requests, up to
//! `drain_timeout_secs`.
//!
//! Limits: `timeout_ms` bounds `connect` only, never a session; the CPU
//! budget applies to the work between two events the guest receives; the
//! memory cap applies to the session's instance.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::capabilities::HostState;
use crate::capabilities::bindings::cyclone::platform::websocket as wit;
use crate::capabilities::bindings::exports::cyclone::platform::websocket_handler::{
    Guest, GuestIndices,
};
use crate::config::AppConfig;
use crate::dispatch::{
    App, Dispatcher, GuestFailure, NoInstance, Response, Target, TimedOut, plain,
};
use crate::limits::CpuClock;
use crate::server::OpenCount;

/// How long a guest may take to return after its connection has ended.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long the closing handshake may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one frame may take to write before the peer counts as gone,
/// when pings are off.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Peer messages waiting for the guest to take them.
const INCOMING_BUFFER: usize = 4;
/// Guest messages waiting to be written.
const OUTGOING_BUFFER: usize = 16;
/// The connection's read buffer; it grows only for a bigger frame.
const READ_BUFFER: usize = 1 << 10;
/// Room in the write buffer beyond one message of the app's cap: frame
/// headers, a pong and a close frame.
const WRITE_HEADROOM: usize = 4 << 10;

/// The open sessions of a process, and the signal that closes them all.
#[derive(Debug)]
pub struct Sessions {
    going_away: watch::Sender<bool>,
    open: OpenCount,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            going_away: watch::Sender::new(false),
            open: OpenCount::default(),
        }
    }
}

impl Sessions {
    /// Tells every session to close with 1001 (going away).
    pub fn close_all(&self) {
        self.going_away.send_replace(true);
    }

    /// Returns once no session is open.
    pub async fn all_closed(&self) {
        self.open.all_closed().await;
    }
}

/// An app's websocket settings, present when its component serves sessions.
pub struct Support {
    indices: GuestIndices,
    config: WebSocketConfig,
    /// The largest message either side may send.
    max_message: usize,
    allowed_origins: Vec<String>,
    ping: Option<Duration>,
}

impl Support {
    /// `Some` when the component exports `cyclone:platform/websocket-handler`.
    pub fn new(pre: &InstancePre<HostState>, app: &AppConfig) -> Option<Self> {
        let indices = GuestIndices::new(pre).ok()?;
        let max = app.websocket_max_message_bytes();
        Some(Self {
            indices,
            // Nothing is written unless the previous write went out, and the
            // write buffer holds at most one message of the cap: a peer that
            // does not read cannot make the host queue for it.
            config: WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER)
                .write_buffer_size(0)
                .max_write_buffer_size(max.saturating_add(WRITE_HEADROOM))
                .max_message_size(Some(max))
                .max_frame_size(Some(max)),
            max_message: max,
            allowed_origins: app
                .websocket_allowed_origins
                .iter()
                .map(|origin| origin.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            ping: app.websocket_ping(),
        })
    }

    /// Whether a page from `req`'s `Origin` may open a session: no `Origin`
    /// (not a browser), the request's own origin (scheme `http`, host and
    /// port, as cyclone serves plain HTTP), or a listed origin. Two
    /// `Origin` headers are refused: which one a browser meant is unknown.
    fn origin_allowed(&self, req: &hyper::Request<Incoming>) -> bool {
        let mut origins = req.headers().get_all(header::ORIGIN).iter();
        let Some(origin) = origins.next() else {
            return true;
        };
        if origins.next().is_some() {
            return false;
        }
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self
            .allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || *allowed == origin)
        {
            return true;
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        match (
            Origin::parse(&origin),
            host.and_then(|h| Origin::parse(&format!("http://{h}"))),
        ) {
            (Some(origin), Some(own)) => origin == own,
            _ => false,
        }
    }
}

/// An origin's scheme, host and port, with the scheme's default port filled in.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(text: &str) -> Option<Self> {
        let uri: http::Uri = text.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        if authority.as_str().contains('@') || uri.path_and_query().is_some_and(|p| p != "/") {
            return None;
        }
        let port = match (authority.port_u16(), scheme.as_str()) {
            (Some(port), _) => port,
            (None, "http" | "ws") => 80,
            (None, "https" | "wss") => 443,
            (None, _) => return None,
        };
        Some(Self {
            scheme,
            host: authority.host().to_ascii_lowercase(),
            port,
        })
    }
}

/// Whether `req` asks to upgrade to a websocket.
pub fn is_upgrade(req: &hyper::Request<Incoming>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    has_token(header::UPGRADE, "websocket") && has_token(header::CONNECTION, "upgrade")
}

/// Serves an upgrade request on `app`: the handshake, the guest's decision,
/// then (in its own task) the session.
pub(crate) async fn handle(
    dispatcher: &Dispatcher,
    target: &Target,
    support: Arc<Support>,
    mut req: hyper::Request<Incoming>,
    id: u64,
) -> Response {
    let app = &target.app;
    let name: Arc<str> = app.name().into();
    if req.method() != http::Method::GET {
        return plain(StatusCode::BAD_REQUEST, "a websocket handshake is a GET\n");
    }
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    if !version_ok {
        let mut response = plain(StatusCode::UPGRADE_REQUIRED, "websocket version 13 only\n");
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    if !support.origin_allowed(&req) {
        let origin = req.headers().get(header::ORIGIN);
        tracing::info!(request = id, app = %name, "403: websocket from a foreign origin {origin:?}");
        return plain(
            StatusCode::FORBIDDEN,
            "Cross origin websockets are not allowed\n",
        );
    }
    let permits = match dispatcher.admit(target, id).await {
        Ok(permits) => permits,
        Err(response) => return *response,
    };
    let store = match app.new_store(id, CpuClock::per_event(app.cpu_budget)) {
        Ok(store) => store,
        Err(response) => return *response,
    };
    let request = wit::Request {
        method: req.method().as_str().to_owned(),
        path_with_query: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned()),
        headers: req
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (decided, decision) = oneshot::channel();
    let app = app.clone();
    let open = dispatcher.sessions().open.open();
    let going_away = dispatcher.sessions().going_away.subscribe();
    tokio::spawn(async move {
        let _permits = permits;
        let _open = open;
        let Some((store, guest)) = connect(&app, &support, store, request, decided, id).await
        else {
            return;
        };
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::info!(request = id, app = %app.name(), "websocket upgrade failed: {e}");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(support.config),
        )
        .await;
        run(store, guest, ws, &support, going_away, id, app.name()).await;
    });
    match decision.await {
        Ok(Decision::Accept) => {
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let mut response = hyper::Response::new(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            if let Ok(accept) = HeaderValue::from_str(&accept) {
                headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
            }
            tracing::info!(request = id, app = %name, "websocket session opened");
            response
        }
        Ok(Decision::Answer(response)) => response,
        Err(_) => crate::dispatch::GuestFailure::Trapped.response(id, &name),
    }
}

/// The guest's answer to a handshake.
enum Decision {
    /// Open the session.
    Accept,
    /// Answer with this instead: the guest's refusal or a failure.
    Answer(Response),
}

/// Instantiates the guest and calls its `connect`; sends the decision.
/// Returns the store and the guest's exports when the session is accepted.
async fn connect(
    app: &App,
    support: &Support,
    mut store: Store<HostState>,
    request: wit::Request,
    decided: oneshot::Sender<Decision>,
    id: u64,
) -> Option<(Store<HostState>, Guest)> {
    let call = async {
        let instance = app
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| wasmtime::Error::new(NoInstance(format!("{e:#}"))))?;
        let guest = support.indices.load(&mut store, &instance)?;
        let refusal = guest.call_connect(&mut store, &request).await?;
        wasmtime::Result::Ok((guest, refusal))
    };
    let result = match app.timeout {
        Some(limit) => tokio::time::timeout(limit, call)
            .await
            .unwrap_or(Err(wasmtime::Error::new(TimedOut(limit)))),
        None => call.await,
    };
    match result {
        Ok((guest, None)) => {
            decided.send(Decision::Accept).ok()?;
            Some((store, guest))
        }
        Ok((_, Some(refusal))) => {
            tracing::info!(request = id, app = %app.name(), "{}: websocket refused by the guest", refusal.status);
            let _ = decided.send(Decision::Answer(refusal_response(refusal)));
            None
        }
        Err(e) => {
            let failure = GuestFailure::classify(&e, id, app.name());
            let _ = decided.send(Decision::Answer(failure.response(id, app.name())));
            None
        }
    }
}

/// Runs an accepted session to its end.
async fn run(
    mut store: Store<HostState>,
    guest: Guest,
    ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    support: &Support,
    going_away: watch::Receiver<bool>,
    id: u64,
    app: &str,
) {
    let ping = support.ping;
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_BUFFER);
    let (outgoing_tx, outgoing_rx) = mpsc::channel(OUTGOING_BUFFER);
    let session = match store.data_mut().push_session(Session::new(
        incoming_rx,
        outgoing_tx,
        support.max_message,
    )) {
        Ok(session) => session,
        Err(e) => {
            tracing::error!(request = id, app = %app, "cannot start the session: {e}");
            return;
        }
    };
    store.data_mut().cpu.renew();
    let (done_tx, done_rx) = oneshot::channel();
    let mut pump = std::pin::pin!(pump(
        ws,
        incoming_tx,
        outgoing_rx,
        done_rx,
        ping,
        going_away,
    ));
    // The guest's failure is logged as soon as it is known, before the
    // closing handshake.
    let failed = |e: &wasmtime::Error| {
        GuestFailure::classify(e, id, app);
    };
    let ending = {
        let mut call = std::pin::pin!(guest.call_run(&mut store, session));
        tokio::select! {
            result = &mut call => {
                let frame = match &result {
                    Ok(()) => close_frame(CloseCode::Normal, ""),
                    Err(e) => {
                        failed(e);
                        close_frame(CloseCode::Error, "internal error")
                    }
                };
                let _ = done_tx.send(frame);
                pump.await
            }
            ending = &mut pump => {
                match tokio::time::timeout(CLOSE_GRACE, call).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failed(&e),
                    Err(_) => tracing::warn!(
                        request = id, app = %app,
                        "the session's guest did not return within {CLOSE_GRACE:?} of the connection ending; stopped"
                    ),
                }
                ending
            }
        }
    };
    drop(store);
    tracing::info!(request = id, app = %app, "websocket session ended ({ending}); instance released");
}

/// How a session's connection ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The closing handshake completed.
    Closed,
    /// The peer sent a message over the size limit (closed with 1009).
    TooBig,
    /// The peer broke the protocol (closed with 1002, or 1007 for text
    /// that is not UTF-8).
    ProtocolError,
    /// The peer went silent past two ping intervals, or stopped reading.
    Unresponsive,
    /// The connection failed or was cut.
    Lost,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::TooBig => "message too big",
            Self::ProtocolError => "protocol error",
            Self::Unresponsive => "peer unresponsive",
            Self::Lost => "connection lost",
        })
    }
}

/// What the guest asks the connection to do.
enum Outgoing {
    Message(Message),
    Close(CloseFrame),
}

/// Moves frames between the connection and the session's channels until the
/// connection ends. `done` says the guest has returned, with the close frame
/// to send.
async fn pump(
    ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    incoming: mpsc::Sender<Box<PeerEvent>>,
    mut outgoing: mpsc::Receiver<Box<Outgoing>>,
    mut done: oneshot::Receiver<CloseFrame>,
    ping: Option<Duration>,
    mut going_away: watch::Receiver<bool>,
) -> Ending {
    let (mut sink, mut stream) = ws.split();
    let write_timeout = ping.map_or(WRITE_TIMEOUT, |ping| ping * 2);
    let mut guest_done = false;
    let mut outgoing_open = true;
    let mut closing_since: Option<Instant> = None;
    let mut told_guest = false;
    let mut last_heard = Instant::now();
    let mut ticker = ping.map(|ping| tokio::time::interval_at(Instant::now() + ping, ping));

    macro_rules! write {
        ($message:expr) => {
            match tokio::time::timeout(write_timeout, sink.send($message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ending::Lost,
                Err(_) => return Ending::Unresponsive,
            }
        };
    }

    loop {
        let read = async {
            // Once the guest has returned or been told the session is over,
            // it takes nothing more: read on without waiting for it, so the
            // closing handshake completes at once.
            let permit = if guest_done || told_guest {
                None
            } else {
                incoming.reserve().await.ok()
            };
            (permit, stream.next().await)
        };
        let tick = async {
            match &mut ticker {
                Some(ticker) => ticker.tick().await,
                None => std::future::pending().await,
            }
        };
        let close_deadline = async {
            match closing_since {
                Some(since) => tokio::time::sleep_until(since + CLOSE_TIMEOUT).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = outgoing.recv(), if outgoing_open && closing_since.is_none() => match next.map(|next| *next) {
                Some(Outgoing::Message(message)) => write!(message),
                Some(Outgoing::Close(frame)) => {
                    closing_since = Some(Instant::now());
                    write!(Message::Close(Some(frame)));
                }
                None => outgoing_open = false,
            },
            frame = &mut done, if !guest_done => {
                guest_done = true;
                if closing_since.is_none() {
                    closing_since = Some(Instant::now());
                    if let Ok(frame) = frame {
                        write!(Message::Close(Some(frame)));
                    }
                }
            }
            (permit, frame) = read => {
                let event = match frame {
                    Some(Ok(Message::Text(text))) => PeerEvent::Text(text),
                    Some(Ok(Message::Binary(bytes))) => PeerEvent::Binary(bytes),
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite has queued the reply; reading on sends it.
                        closing_since.get_or_insert_with(Instant::now);
                        told_guest = true;
                        PeerEvent::Closed(frame)
                    }
                    Some(Ok(Message::Ping(_))) => {
                        // tungstenite has queued the pong: send it before
                        // reading on, so a peer that pings and never reads
                        // is dropped instead of queueing pongs without end.
                        last_heard = Instant::now();
                        match tokio::time::timeout(write_timeout, sink.flush()).await {
                            Ok(Ok(())) => continue,
                            Ok(Err(_)) => return Ending::Lost,
                            Err(_) => return Ending::Unresponsive,
                        }
                    }
                    Some(Ok(Message::Pong(_) | Message::Frame(_))) => {
                        last_heard = Instant::now();
                        continue;
                    }
                    Some(Err(tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ))) => return Ending::Lost,
                    Some(Err(e @ (tungstenite::Error::Capacity(_)
                        | tungstenite::Error::Protocol(_)
                        | tungstenite::Error::Utf8(_)))) => {
                        let (frame, ending) = match e {
                            tungstenite::Error::Capacity(_) => {
                                (close_frame(CloseCode::Size, "message too big"), Ending::TooBig)
                            }
                            tungstenite::Error::Utf8(_) => {
                                (close_frame(CloseCode::Invalid, "invalid UTF-8"), Ending::ProtocolError)
                            }
                            _ => (close_frame(CloseCode::Protocol, "protocol error"), Ending::ProtocolError),
                        };
                        if let Some(permit) = permit {
                            permit.send(Box::new(PeerEvent::Closed(Some(frame.clone()))));
                        }
                        if let Ok(ws) = sink.reunite(stream) {
                            close_after_error(ws, frame).await;
                        }
                        return ending;
                    }
                    Some(Err(tungstenite::Error::ConnectionClosed)) | None => {
                        return if told_guest { Ending::Closed } else { Ending::Lost };
                    }
                    Some(Err(_)) => return Ending::Lost,
                };
                last_heard = Instant::now();
                if let Some(permit) = permit {
                    permit.send(Box::new(event));
                }
            }
            _ = tick => {
                let ping = ping.unwrap_or(WRITE_TIMEOUT);
                if last_heard.elapsed() > ping * 2 {
                    return Ending::Unresponsive;
                }
                write!(Message::Ping(Bytes::new()));
            }
            () = async { let _ = going_away.wait_for(|away| *away).await; }, if closing_since.is_none() => {
                closing_since = Some(Instant::now());
                write!(Message::Close(Some(close_frame(CloseCode::Away, "server shutting down"))));
            }
            () = close_deadline => return Ending::Closed,
        }
    }
}

/// Ends a connection whose peer broke the protocol or the size limit: sends
/// `frame`, then closes the write side, so the peer learns at once that the
/// connection is over, and reads and drops what it still sends (the rest of
/// an oversize message, its close reply) until it closes, for at most
/// [`CLOSE_TIMEOUT`]. Closing with unread bytes would reset the connection,
/// and a reset can destroy the close frame before the peer reads it.
///
/// The frame is written raw: after a read error tungstenite's own state may
/// refuse to write.
async fn close_after_error(
    ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    frame: CloseFrame,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut io = ws.into_inner();
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    let mut bytes = Vec::new();
    if tungstenite::protocol::frame::Frame::close(Some(frame))
        .format(&mut bytes)
        .is_err()
    {
        return;
    }
    let write = async {
        io.write_all(&bytes).await?;
        io.shutdown().await
    };
    if !matches!(tokio::time::timeout_at(deadline, write).await, Ok(Ok(()))) {
        return;
    }
    let mut buf = vec![0u8; READ_BUFFER];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }
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

impl Session {
    fn new(
        incoming: mpsc::Receiver<Box<PeerEvent>>,
        outgoing: mpsc::Sender<Box<Outgoing>>,
        max_message: usize,
    ) -> Self {
        Self {
            incoming,
            pending: None,
            finished: None,
            outgoing,
            closing: false,
            max_message,
        }
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
        let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
        if !sendable {
            return Err(format!("{code} is not a close code a session may send"));
        }
        if std::mem::replace(&mut self.closing, true) {
            return Ok(());
        }
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let frame = close_frame(CloseCode::from(code), &reason[..end]);
        let _ = self.outgoing.send(Box::new(Outgoing::Close(frame))).await;
        Ok(())
    }
}

/// Headers that belong to one connection or frame a body; the host sets
/// them itself, so a guest's refusal cannot.
const CONNECTION_HEADERS: [header::HeaderName; 8] = [
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::PROXY_AUTHENTICATE,
    header::HeaderName::from_static("keep-alive"),
];

/// The guest's refusal as a response.
fn refusal_response(refusal: wit::Response) -> Response {
    let mut response = hyper::Response::new(
        Full::new(Bytes::from(refusal.body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = StatusCode::from_u16(refusal.status)
        .ok()
        .filter(|status| !status.is_informational() && !status.is_success())
        .unwrap_or(StatusCode::FORBIDDEN);
    for (name, value) in refusal.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) && !CONNECTION_HEADERS.contains(&name)
            && name.as_str() != "proxy-connection"
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}
