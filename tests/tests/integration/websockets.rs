//! WebSocket sessions through the real binary and a real websocket client,
//! against the `sockets` test guest: echo, broadcast over pub/sub, close
//! codes both ways, the message and memory caps, origins, refusal, traps and
//! release.

use std::time::{Duration, Instant};

use cyclone_tests::ws::{Socket, ask, close_frame, next, open, open_with, pings_both_ways, text};
use cyclone_tests::{Cyclone, components, manifest};
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// The sockets guest at `/...`, with `extra` manifest lines for its app.
fn sockets(extra: &str) -> Cyclone {
    let (_dir, path) = manifest(&format!(
        "[apps.sockets]\ncomponent = {:?}\nroutes = [\"/...\"]\n{extra}\n",
        components::SOCKETS
    ));
    Cyclone::serve(&path)
}

#[test]
fn echoes_text_and_binary() {
    let server = sockets("");
    let mut socket = open(&server, "/echo");
    socket.send(Message::text("hello")).unwrap();
    assert_eq!(text(&mut socket), "hello");
    let bytes: Vec<u8> = (0..=255).collect();
    socket.send(Message::binary(bytes.clone())).unwrap();
    match next(&mut socket) {
        Message::Binary(got) => assert_eq!(got.as_ref(), bytes.as_slice()),
        other => panic!("expected binary, got {other:?}"),
    }
    assert!(server.wait_for_log("echo session opened at /echo", Duration::from_secs(5)));
}

#[test]
fn three_clients_all_receive_a_broadcast() {
    let server = sockets("");
    let mut clients: Vec<Socket> = (0..3).map(|_| open(&server, "/room")).collect();
    // Each session subscribes as it starts, and says so.
    assert!(server.wait_for_log_count("subscribed to room", 3, Duration::from_secs(10)));
    clients[1].send(Message::text("hi all")).unwrap();
    for client in &mut clients {
        assert_eq!(text(client), "1 hi all");
    }
    clients[2].send(Message::text("again")).unwrap();
    for client in &mut clients {
        assert_eq!(text(client), "2 again");
    }
}

#[test]
fn the_guest_closes_with_its_code_and_reason() {
    let server = sockets("");
    let mut socket = open(&server, "/echo");
    socket.send(Message::text("close 4001 see you")).unwrap();
    assert_eq!(close_frame(&mut socket), (4001, "see you".to_owned()));
    assert!(server.wait_for_log("websocket session ended (closed)", Duration::from_secs(10)));
}

#[test]
fn the_guest_sees_the_clients_close_code_and_reason() {
    let server = sockets("");
    let mut socket = open(&server, "/echo");
    socket
        .close(Some(CloseFrame {
            code: CloseCode::from(4002),
            reason: "done here".into(),
        }))
        .unwrap();
    // The server answers the close; its reply echoes the code.
    assert!(matches!(next(&mut socket), Message::Close(_)));
    assert!(server.wait_for_log("closed by peer: 4002 done here", Duration::from_secs(5)));
    assert!(server.wait_for_log("websocket session ended", Duration::from_secs(10)));
}

#[test]
fn a_message_over_the_cap_closes_with_1009() {
    let server = sockets("websocket_max_message_kb = 64");
    let mut socket = open(&server, "/echo");
    socket.send(Message::text("small")).unwrap();
    assert_eq!(text(&mut socket), "small");
    socket.send(Message::binary(vec![7u8; 1 << 20])).unwrap();
    assert_eq!(close_frame(&mut socket).0, 1009);
    assert!(server.wait_for_log(
        "websocket session ended (message too big)",
        Duration::from_secs(10)
    ));
    // The host goes on serving sessions.
    let mut again = open(&server, "/echo");
    again.send(Message::text("still here")).unwrap();
    assert_eq!(text(&mut again), "still here");
}

#[test]
fn a_foreign_origin_is_refused_with_403() {
    let server = sockets("");
    let refused = open_with(&server, "/echo", &[("Origin", "http://evil.example")]);
    assert_eq!(refused.map(|_| ()).unwrap_err().0, 403);
    let own = format!("http://{}", server.addr());
    let mut socket = open_with(&server, "/echo", &[("Origin", own.as_str())]).unwrap();
    socket.send(Message::text("same origin")).unwrap();
    assert_eq!(text(&mut socket), "same origin");

    let server = sockets("websocket_allowed_origins = [\"http://friend.example\"]");
    assert!(open_with(&server, "/echo", &[("Origin", "http://friend.example")]).is_ok());
    let refused = open_with(&server, "/echo", &[("Origin", "http://evil.example")]);
    assert_eq!(refused.map(|_| ()).unwrap_err().0, 403);
}

#[test]
fn the_guest_may_refuse_a_session() {
    let server = sockets("");
    let (status, body) = open_with(&server, "/private", &[]).map(|_| ()).unwrap_err();
    assert_eq!(status, 401, "{body}");
    let mut socket = open(&server, "/private?token=open-sesame");
    socket.send(Message::text("knock")).unwrap();
    assert_eq!(text(&mut socket), "welcome");
    // No websocket route at the path, and a plain request to a websocket route.
    assert_eq!(
        open_with(&server, "/nowhere", &[])
            .map(|_| ())
            .unwrap_err()
            .0,
        404
    );
    let reply = server.get("/echo");
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("Upgrade"), "{}", reply.body);
    assert_eq!(server.get("/plain").body, "plain HTTP");
}

#[test]
fn a_trapping_session_closes_with_1011_and_others_go_on() {
    let server = sockets("");
    let mut bystander = open(&server, "/echo");
    let mut doomed = open(&server, "/echo");
    doomed.send(Message::text("panic")).unwrap();
    assert_eq!(close_frame(&mut doomed).0, 1011);
    assert!(server.wait_for_log("the session was asked to panic", Duration::from_secs(5)));
    bystander.send(Message::text("unaffected")).unwrap();
    assert_eq!(text(&mut bystander), "unaffected");
    let mut newcomer = open(&server, "/echo");
    newcomer.send(Message::text("new")).unwrap();
    assert_eq!(text(&mut newcomer), "new");
}

#[test]
fn a_session_past_the_memory_cap_closes_with_1011_and_others_go_on() {
    let server = sockets("max_memory_mb = 32");
    let mut bystander = open(&server, "/echo");
    let mut hungry = open(&server, "/echo");
    // A live session's instance keeps what it allocated: 12 MiB twice fits
    // the 32 MiB cap, a third time does not.
    for _ in 0..2 {
        assert_eq!(
            ask(&mut hungry, "alloc 12"),
            "allocated 12 MiB (3072 pages)"
        );
    }
    hungry.send(Message::text("alloc 12")).unwrap();
    assert_eq!(close_frame(&mut hungry).0, 1011);
    assert!(server.wait_for_log(
        "memory allocation of 12582912 bytes failed",
        Duration::from_secs(5)
    ));
    assert_eq!(
        ask(&mut bystander, "alloc 12"),
        "allocated 12 MiB (3072 pages)"
    );
    assert_eq!(ask(&mut open(&server, "/echo"), "new"), "new");
}

#[test]
fn an_abrupt_disconnect_releases_the_instance() {
    // One instance in all: the second session can only start once the first
    // one's instance is released.
    let server = sockets("max_instances = 1");
    let mut socket = open(&server, "/echo");
    socket.send(Message::text("ping")).unwrap();
    assert_eq!(text(&mut socket), "ping");
    socket.get_mut().shutdown(std::net::Shutdown::Both).unwrap();
    drop(socket);
    assert!(server.wait_for_log(
        "websocket session ended (connection lost); instance released",
        Duration::from_secs(10)
    ));
    assert!(server.wait_for_log("closed without a frame", Duration::from_secs(5)));
    let mut next_socket = open(&server, "/echo");
    next_socket.send(Message::text("after")).unwrap();
    assert_eq!(text(&mut next_socket), "after");
}

#[test]
fn the_host_pings_idle_sessions_and_answers_pings() {
    let server = sockets("websocket_ping_secs = 1");
    let mut socket = open(&server, "/echo");
    assert!(pings_both_ways(&mut socket, "are you there"));
}

#[test]
fn a_client_that_reads_late_loses_nothing() {
    let server = sockets("");
    let mut socket = open(&server, "/echo");
    socket.send(Message::text("flood 3000")).unwrap();
    // The guest's sends wait while the client is not reading.
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..3000 {
        let message = text(&mut socket);
        let (n, padding) = message.split_once(' ').unwrap();
        assert_eq!(n.parse::<usize>().unwrap(), i);
        assert_eq!(padding.len(), 1024);
    }
    socket.send(Message::text("after the flood")).unwrap();
    assert_eq!(text(&mut socket), "after the flood");
}

#[test]
fn a_session_outlives_the_request_timeout_and_its_cpu_budget_is_per_message() {
    let server = sockets("timeout_ms = 1000\ncpu_budget_ms = 300");
    let mut socket = open(&server, "/echo");
    // Five messages of 150 ms CPU each: 750 ms in all, 150 ms per message.
    for _ in 0..5 {
        socket.send(Message::text("spin 150")).unwrap();
        assert!(text(&mut socket).starts_with("spun 150"));
    }
    // Past the request timeout, the session is still there.
    std::thread::sleep(Duration::from_millis(1500));
    socket.send(Message::text("still open")).unwrap();
    assert_eq!(text(&mut socket), "still open");
    // One message over the budget ends the session, and only it.
    let mut other = open(&server, "/echo");
    socket.send(Message::text("spin 2000")).unwrap();
    assert_eq!(close_frame(&mut socket).0, 1011);
    assert!(server.wait_for_log("CPU budget", Duration::from_secs(5)));
    other.send(Message::text("fine")).unwrap();
    assert_eq!(text(&mut other), "fine");
}

#[test]
fn a_lagging_subscriber_is_told_how_many_it_missed() {
    let server = sockets("pubsub_buffer = 8");
    assert_eq!(server.get("/lag?n=20").body, "lagged 12");
    assert_eq!(server.get("/lag?n=5").body, "message 21");
}

#[test]
fn apps_have_their_own_topics() {
    let (_dir, path) = manifest(&format!(
        "[apps.one]\ncomponent = {c:?}\nroutes = [\"/one/...\"]\npubsub_history = 10\n\
         [apps.two]\ncomponent = {c:?}\nroutes = [\"/two/...\"]\npubsub_history = 10\n",
        c = components::SOCKETS
    ));
    let server = Cyclone::serve(&path);
    assert_eq!(server.get("/one/publish?topic=news&body=first").body, "1");
    assert_eq!(server.get("/one/publish?topic=news&body=second").body, "2");
    assert_eq!(
        server.get("/two/publish?topic=news&body=elsewhere").body,
        "1"
    );
    assert_eq!(
        server.get("/one/recent?topic=news").body,
        "1:first\n2:second"
    );
    assert_eq!(server.get("/two/recent?topic=news").body, "1:elsewhere");
    assert_eq!(server.get("/two/recent?topic=other").body, "");
}

#[test]
fn shutdown_closes_sessions_with_1001_and_waits_for_them() {
    let mut server = sockets("");
    let mut socket = open(&server, "/echo");
    socket.send(Message::text("before")).unwrap();
    assert_eq!(text(&mut socket), "before");
    server.terminate();
    assert_eq!(
        close_frame(&mut socket),
        (1001, "server shutting down".to_owned())
    );
    // Reading on sends the client's reply, which ends the closing handshake.
    assert!(socket.read().is_err());
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("cyclone exits once its sessions are closed");
    assert!(status.success(), "{status:?}");
    assert!(
        server
            .log()
            .iter()
            .any(|line| line.contains("closed by peer: 1001"))
    );
}

#[test]
fn the_echo_example_sends_every_message_back() {
    let (_dir, path) = cyclone_tests::example_manifest("echo", components::ECHO, &[]);
    let server = Cyclone::serve(&path);
    let mut socket = open(&server, "/echo");
    for i in 0..3 {
        socket.send(Message::text(format!("message {i}"))).unwrap();
        assert_eq!(text(&mut socket), format!("message {i}"));
    }
    socket.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert!(matches!(next(&mut socket), Message::Binary(b) if b.as_ref() == [0u8, 1, 2, 255]));
    socket.close(None).unwrap();
    assert!(matches!(next(&mut socket), Message::Close(_)));
    assert!(server.wait_for_log("websocket session ended (closed)", Duration::from_secs(10)));
}

#[test]
fn a_peer_that_stops_answering_pings_is_disconnected() {
    let server = sockets("websocket_ping_secs = 1");
    let mut socket = open(&server, "/echo");
    socket.send(Message::text("hello")).unwrap();
    assert_eq!(text(&mut socket), "hello");
    // Never read again: the client answers no pings.
    let started = Instant::now();
    assert!(server.wait_for_log(
        "websocket session ended (peer unresponsive)",
        Duration::from_secs(10)
    ));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "disconnected after {waited:?}"
    );
    assert!(server.wait_for_log("closed without a frame", Duration::from_secs(5)));
    drop(socket);
}
