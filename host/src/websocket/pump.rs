//! The connection side of a session: frames between the peer (tokio-
//! tungstenite over `hyper::upgrade`) and the session's bounded channels,
//! pings, and every way the connection can end.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::app::WebSocketExport;
use crate::capabilities::websocket::{Outgoing, PeerEvent, close_frame};

/// The upgraded connection of a session.
pub(crate) type Connection = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// How long the closing handshake may take before the connection is dropped.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one frame may take to write before the peer counts as gone,
/// when pings are off.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The connection's read buffer; it grows only for a bigger frame.
const READ_BUFFER: usize = 1 << 10;
/// Room in the write buffer beyond one message of the app's cap: frame
/// headers, a pong and a close frame.
const WRITE_HEADROOM: usize = 4 << 10;

/// tungstenite's settings for a session of `export`'s app.
///
/// Nothing is written unless the previous write went out, and the write
/// buffer holds at most one message of the cap: a peer that does not read
/// cannot make the host queue for it.
pub(crate) fn config(export: &WebSocketExport) -> WebSocketConfig {
    let max = export.max_message;
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(max.saturating_add(WRITE_HEADROOM))
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// How a session's connection ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
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

/// Moves frames between the connection and the session's channels until the
/// connection ends. `done` says the guest has returned, with the close frame
/// to send.
pub(crate) async fn pump(
    ws: Connection,
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
                        let (frame, ending) = error_close(&e);
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

/// The close frame for a peer's message over the cap (1009), text that is
/// not UTF-8 (1007) or another protocol error (1002), and how the session
/// ended.
pub(crate) fn error_close(e: &tungstenite::Error) -> (CloseFrame, Ending) {
    match e {
        tungstenite::Error::Capacity(_) => (
            close_frame(CloseCode::Size, "message too big"),
            Ending::TooBig,
        ),
        tungstenite::Error::Utf8(_) => (
            close_frame(CloseCode::Invalid, "invalid UTF-8"),
            Ending::ProtocolError,
        ),
        _ => (
            close_frame(CloseCode::Protocol, "protocol error"),
            Ending::ProtocolError,
        ),
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
pub(crate) async fn close_after_error(ws: Connection, frame: CloseFrame) {
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
