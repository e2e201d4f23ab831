//! A websocket client for the tests: tungstenite over a blocking socket.

use std::net::TcpStream;
use std::time::Duration;

use tungstenite::{Message, WebSocket};

use crate::Cyclone;

/// A client's end of a session.
pub type Socket = WebSocket<TcpStream>;

/// A handshake on `path` with extra `headers`: the socket, or the refusal's
/// status and body.
pub fn open_with(
    server: &Cyclone,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Socket, (u16, String)> {
    open_at(server.addr(), path, headers)
}

/// A handshake on `path` at `addr` (`IP:PORT`, say a proxy's), with extra
/// `headers`: the socket, or the refusal's status and body.
pub fn open_at(addr: &str, path: &str, headers: &[(&str, &str)]) -> Result<Socket, (u16, String)> {
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}{path}"))
            .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    match tungstenite::client(request, stream) {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => Err((
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => panic!("handshake on {path} failed: {e}"),
    }
}

/// A handshake on `path` that must succeed.
pub fn open(server: &Cyclone, path: &str) -> Socket {
    open_with(server, path, &[]).unwrap_or_else(|(status, body)| panic!("{path}: {status} {body}"))
}

/// The next data message or close frame, skipping pings.
pub fn next(socket: &mut Socket) -> Message {
    loop {
        match socket.read() {
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(message) => return message,
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// The next message, which must be text.
pub fn text(socket: &mut Socket) -> String {
    match next(socket) {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// Sends the text `line` and returns the text answer.
pub fn ask(socket: &mut Socket, line: &str) -> String {
    socket.send(Message::text(line)).unwrap();
    text(socket)
}

/// The close frame the server sends next.
pub fn close_frame(socket: &mut Socket) -> (u16, String) {
    match next(socket) {
        Message::Close(Some(frame)) => (frame.code.into(), frame.reason.as_str().to_owned()),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

/// Sends a ping with `payload`, then reads (for up to 5 s) until the server
/// has both answered it and pinged on its own; whether it did both.
pub fn pings_both_ways(socket: &mut Socket, payload: &str) -> bool {
    socket
        .send(Message::Ping(payload.as_bytes().to_vec().into()))
        .unwrap();
    let started = std::time::Instant::now();
    let (mut pong, mut ping) = (false, false);
    while !(pong && ping) && started.elapsed() < Duration::from_secs(5) {
        match socket.read().unwrap() {
            Message::Pong(got) => pong = got.as_ref() == payload.as_bytes(),
            Message::Ping(_) => ping = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    pong && ping
}
