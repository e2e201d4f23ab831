//! WebSocket sessions against hostile or broken peers: the write side stays
//! bounded, protocol errors get the close code RFC 6455 names, every closing
//! handshake ends the connection at once, and origins are compared whole.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use cyclone_tests::ws::{Socket, close_frame, next, open, open_with, text};
use cyclone_tests::{Cyclone, components, manifest, read_until};
use tungstenite::Message;

/// The sockets guest at `/...`, with `extra` manifest lines for its app.
fn sockets(extra: &str) -> (tempfile::TempDir, Cyclone) {
    let (dir, path) = manifest(&format!(
        "[apps.sockets]\ncomponent = {:?}\nroutes = [\"/...\"]\n{extra}\n",
        components::SOCKETS
    ));
    let server = Cyclone::serve(&path);
    (dir, server)
}

/// A client frame: FIN set, `opcode`, masked with a zero key (valid, and the
/// payload stays readable).
fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first_byte];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// After the server's close frame: how long until the server closes the
/// connection once the client has answered the close (tungstenite answers
/// on the next read).
fn time_to_disconnect(socket: &mut Socket) -> Duration {
    let _ = socket.flush();
    let answered = Instant::now();
    loop {
        match socket.read() {
            Ok(_) => {}
            Err(_) => return answered.elapsed(),
        }
        assert!(answered.elapsed() < Duration::from_secs(30), "never closed");
    }
}

/// Closed within this of the handshake: the server's own work, with room
/// for a loaded machine; the old behaviour waited 5 s.
const PROMPT: Duration = Duration::from_millis(1000);

#[test]
fn protocol_errors_get_the_close_code_rfc_6455_names() {
    let (_dir, server) = sockets("");
    let cases: [(&str, Vec<u8>, u16); 5] = [
        // An unmasked text frame from a client.
        (
            "unmasked frame",
            vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'],
            1002,
        ),
        // A ping without FIN: control frames cannot be fragmented.
        ("fragmented control frame", frame(0x09, b"x"), 1002),
        // A ping whose payload is over 125 bytes.
        ("oversize control frame", frame(0x89, &[b'p'; 126]), 1002),
        // Opcode 3 is reserved.
        ("reserved opcode", frame(0x83, b"x"), 1002),
        ("invalid UTF-8", frame(0x81, &[0xff, 0xfe, 0xfd]), 1007),
    ];
    for (what, bytes, code) in cases {
        let mut socket = open(&server, "/echo");
        socket.get_mut().write_all(&bytes).unwrap();
        let (got, _) = close_frame(&mut socket);
        assert_eq!(got, code, "{what}");
        let waited = time_to_disconnect(&mut socket);
        assert!(
            waited < PROMPT,
            "{what}: closed {waited:?} after the close frame"
        );
    }
    assert!(server.wait_for_log_count(
        "websocket session ended (protocol error)",
        5,
        Duration::from_secs(10)
    ));
    // Others are served on.
    let mut socket = open(&server, "/echo");
    socket.send(Message::text("fine")).unwrap();
    assert_eq!(text(&mut socket), "fine");
}

#[test]
fn every_closing_handshake_ends_the_connection_at_once() {
    let (_dir, mut server) = sockets("websocket_max_message_kb = 64");

    // The guest closes, with 1000 and with 1008.
    for code in [1000, 1008] {
        let mut socket = open(&server, "/echo");
        socket
            .send(Message::text(format!("close {code} bye")))
            .unwrap();
        assert_eq!(close_frame(&mut socket).0, code);
        let waited = time_to_disconnect(&mut socket);
        assert!(
            waited < PROMPT,
            "{code}: closed {waited:?} after the handshake"
        );
    }

    // The peer's message is too big: 1009.
    let mut socket = open(&server, "/echo");
    socket.send(Message::binary(vec![7u8; 1 << 20])).unwrap();
    assert_eq!(close_frame(&mut socket).0, 1009);
    let waited = time_to_disconnect(&mut socket);
    assert!(
        waited < PROMPT,
        "1009: closed {waited:?} after the handshake"
    );

    // The guest traps: 1011.
    let mut socket = open(&server, "/echo");
    socket.send(Message::text("panic")).unwrap();
    assert_eq!(close_frame(&mut socket).0, 1011);
    let waited = time_to_disconnect(&mut socket);
    assert!(
        waited < PROMPT,
        "1011: closed {waited:?} after the handshake"
    );

    // The peer closes first.
    let mut socket = open(&server, "/echo");
    socket.close(None).unwrap();
    let started = Instant::now();
    assert!(matches!(next(&mut socket), Message::Close(_)));
    loop {
        if socket.read().is_err() {
            break;
        }
    }
    let waited = started.elapsed();
    assert!(
        waited < PROMPT,
        "peer close: closed {waited:?} after the handshake"
    );

    // The server shuts down: 1001.
    let mut socket = open(&server, "/echo");
    socket.send(Message::text("hi")).unwrap();
    assert_eq!(text(&mut socket), "hi");
    server.terminate();
    assert_eq!(close_frame(&mut socket).0, 1001);
    let waited = time_to_disconnect(&mut socket);
    assert!(
        waited < PROMPT,
        "1001: closed {waited:?} after the handshake"
    );
    assert!(server.wait_exit(Duration::from_secs(15)).is_some());
}

/// Opens an echo session and writes `frame` to it over and over, never
/// reading, for up to 20 s. Returns how long until the server cut the
/// connection, and how much its memory grew.
fn flood_without_reading(frame: Vec<u8>, what: &str) -> (Duration, u64) {
    let (_dir, server) = sockets("websocket_ping_secs = 1");
    let before = server.rss_kib();
    let socket = open(&server, "/echo");
    let mut stream = socket.get_ref().try_clone().unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Whole frames only, about 64 KiB of them.
    let burst: Vec<u8> = frame.repeat((64 << 10) / frame.len());
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < Duration::from_secs(20) {
        match stream.write_all(&burst) {
            Ok(()) => sent += burst.len(),
            Err(_) => break,
        }
    }
    let cut_after = started.elapsed();
    assert!(
        server.wait_for_log(
            "websocket session ended (peer unresponsive)",
            Duration::from_secs(10)
        ),
        "{what}: kept for {cut_after:?}"
    );
    let grown = server.rss_kib().saturating_sub(before);
    println!("{what}: {sent} bytes sent, cut after {cut_after:?}, server grew {grown} KiB");
    (cut_after, grown)
}

#[test]
fn a_peer_that_pings_and_never_reads_is_dropped_and_memory_stays_flat() {
    // 125-byte pings: the server owes a pong for each.
    let (cut_after, grown) = flood_without_reading(frame(0x89, &[b'p'; 125]), "pings");
    assert!(
        cut_after < Duration::from_secs(15),
        "kept for {cut_after:?}"
    );
    assert!(grown < 64 << 10, "the server grew by {grown} KiB");
}

#[test]
fn a_peer_that_floods_messages_and_never_reads_replies_is_dropped() {
    // 1,000-byte messages: the guest echoes each.
    let (cut_after, grown) = flood_without_reading(frame(0x82, &[b'm'; 1000]), "messages");
    assert!(
        cut_after < Duration::from_secs(15),
        "kept for {cut_after:?}"
    );
    assert!(grown < 64 << 10, "the server grew by {grown} KiB");
}

#[test]
fn origins_are_compared_by_scheme_host_and_port_and_must_be_single() {
    let (_dir, server) = sockets("");
    let own = format!("http://{}", server.addr());
    let port = server.addr().rsplit_once(':').unwrap().1.to_owned();
    assert!(open_with(&server, "/echo", &[("Origin", &own)]).is_ok());
    for foreign in [
        format!("https://{}", server.addr()),
        format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap() + 1),
        format!("http://127.0.0.2:{port}"),
        format!("http://user@{}", server.addr()),
    ] {
        let refused = open_with(&server, "/echo", &[("Origin", &foreign)]);
        assert_eq!(refused.map(|_| ()).unwrap_err().0, 403, "{foreign}");
    }
    // Two Origin headers, one of them our own: refused.
    let request = format!(
        "GET /echo HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         origin: {own}\r\norigin: http://evil.example\r\n\r\n",
        addr = server.addr()
    );
    // Without a half-close after it: a client that half-closes may be
    // taken for gone before its handshake is answered.
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(
        &answer,
        b"HTTP/1.1 403",
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn a_refusal_cannot_carry_connection_or_framing_headers() {
    let (_dir, server) = sockets("");
    let mut stream = server.connect();
    let request = format!(
        "GET /private?token=headers HTTP/1.1\r\nhost: {}\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.addr()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let answer = read_until(&mut stream, b"\r\n\r\n");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 418"), "{answer}");
    assert!(answer.contains("x-refused: yes"), "{answer}");
    for forbidden in [
        "transfer-encoding",
        "upgrade:",
        "content-length: 99999",
        "connection: upgrade",
    ] {
        assert!(!answer.contains(forbidden), "{forbidden} in {answer}");
    }
}
