//! Hibernating websocket sessions through the real binary, against the
//! `sockets` guest's `/h/{name}` route: every event on a fresh instance,
//! the attachment kept between events, idle sessions holding no instance,
//! limits per event, `on_close` exactly once however the session ends,
//! and topics the host forwards without running the guest.

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

/// Opens a hibernating session at `path` and reads its greeting.
fn hibernating(server: &Cyclone, path: &str) -> Socket {
    let mut socket = open(server, path);
    assert_eq!(text(&mut socket), "opened 1");
    socket
}

#[test]
fn every_event_has_a_fresh_instance_and_the_attachment_loses_no_update() {
    let server = sockets("");
    let mut socket = hibernating(&server, "/h/counter");
    assert!(server.wait_for_log(
        "websocket session opened (hibernating)",
        Duration::from_secs(5)
    ));
    // 100 messages back to back: the events run one at a time, in order,
    // each on an instance that has run nothing before.
    for _ in 0..100 {
        socket.send(Message::text("count")).unwrap();
    }
    for i in 1..=100 {
        assert_eq!(text(&mut socket), format!("count {i} (event 1)"));
    }
    assert_eq!(ask(&mut socket, "size"), "8");
    // Binary messages come back too.
    socket.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert!(matches!(next(&mut socket), Message::Binary(b) if b.as_ref() == [1, 2, 3]));
}

#[test]
fn idle_sessions_hold_no_instance() {
    // One instance for the whole app: a live session would hold it.
    let server = sockets("max_instances = 1");
    let mut sockets: Vec<Socket> = (0..5)
        .map(|i| hibernating(&server, &format!("/h/s{i}")))
        .collect();
    for (i, socket) in sockets.iter_mut().enumerate() {
        assert_eq!(ask(socket, &format!("hello {i}")), format!("hello {i}"));
    }
    assert_eq!(server.get("/plain").status, 200);
    for socket in &mut sockets {
        assert_eq!(ask(socket, "count"), "count 1 (event 1)");
    }
}

#[test]
fn the_attachment_is_capped_at_16_kib() {
    let server = sockets("");
    let mut socket = hibernating(&server, "/h/big");
    assert_eq!(ask(&mut socket, "keep 16384"), "kept");
    let refused = ask(&mut socket, "keep 16385");
    assert!(refused.contains("at most 16384 bytes"), "{refused}");
    assert_eq!(ask(&mut socket, "size"), "16384");
}

#[test]
fn a_trap_closes_with_1011_keeps_the_last_good_attachment_and_closes_once() {
    let server = sockets("");
    let mut other = hibernating(&server, "/h/bystander");
    let mut socket = hibernating(&server, "/h/trap");
    assert_eq!(ask(&mut socket, "count"), "count 1 (event 1)");
    socket.send(Message::text("panic")).unwrap();
    assert_eq!(
        close_frame(&mut socket),
        (1011, "internal error".to_owned())
    );
    // The reply to the server's close goes out on the next write.
    let _ = socket.flush();
    assert!(server.wait_for_log("h closed /h/trap: 1011", Duration::from_secs(10)));
    assert!(server.wait_for_log("count 1 (send refused)", Duration::from_secs(1)));
    assert!(server.wait_for_log(
        "websocket session ended (closed); close handler ran",
        Duration::from_secs(5)
    ));
    std::thread::sleep(Duration::from_millis(500));
    let closes = server
        .log()
        .iter()
        .filter(|line| line.contains("h closed /h/trap"))
        .count();
    assert_eq!(closes, 1);
    assert_eq!(ask(&mut other, "count"), "count 1 (event 1)");
}

#[test]
fn the_cpu_budget_and_the_timeout_apply_to_each_event() {
    let server = sockets("timeout_ms = 1000\ncpu_budget_ms = 300");
    let mut socket = hibernating(&server, "/h/busy");
    // Five events of 150 ms each: more than the budget together, within it
    // one by one; and the session outlives the timeout.
    for _ in 0..5 {
        let spun = ask(&mut socket, "spin 150");
        assert!(spun.starts_with("spun 150"), "{spun}");
    }
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(ask(&mut socket, "count"), "count 1 (event 1)");
    socket.send(Message::text("spin 2000")).unwrap();
    assert_eq!(
        close_frame(&mut socket),
        (1011, "internal error".to_owned())
    );
    assert!(server.wait_for_log("CPU budget exceeded", Duration::from_secs(5)));
    assert!(server.wait_for_log("h closed /h/busy", Duration::from_secs(10)));
}

#[test]
fn the_memory_cap_applies_to_each_event() {
    let server = sockets("max_memory_mb = 32");
    let mut bystander = hibernating(&server, "/h/bystander");
    let mut socket = hibernating(&server, "/h/hungry");
    // Each event's instance keeps what it allocates, and each event has a
    // fresh instance: 24 MiB per event fits the 32 MiB cap however many
    // events there are, where a live session's instance would fill it.
    for _ in 0..4 {
        assert_eq!(
            ask(&mut socket, "alloc 24"),
            "allocated 24 MiB (6144 pages)"
        );
    }
    socket.send(Message::text("alloc 48")).unwrap();
    assert_eq!(
        close_frame(&mut socket),
        (1011, "internal error".to_owned())
    );
    assert!(server.wait_for_log(
        "memory allocation of 50331648 bytes failed",
        Duration::from_secs(5)
    ));
    assert!(server.wait_for_log("h closed /h/hungry", Duration::from_secs(10)));
    assert_eq!(ask(&mut bystander, "count"), "count 1 (event 1)");
    let mut newcomer = hibernating(&server, "/h/newcomer");
    assert_eq!(
        ask(&mut newcomer, "alloc 24"),
        "allocated 24 MiB (6144 pages)"
    );
}

#[test]
fn the_close_handler_runs_once_for_each_way_a_session_ends() {
    let server = sockets("");
    // The peer closes.
    let mut peer = hibernating(&server, "/h/peer");
    peer.close(Some(CloseFrame {
        code: CloseCode::from(4002),
        reason: "done here".into(),
    }))
    .unwrap();
    assert!(matches!(next(&mut peer), Message::Close(_)));
    assert!(server.wait_for_log(
        "h closed /h/peer: 4002 done here count 0 (send refused)",
        Duration::from_secs(10)
    ));
    // The guest closes; the peer's reply echoes its code.
    let mut guest = hibernating(&server, "/h/guest");
    guest.send(Message::text("close 4001 see you")).unwrap();
    assert_eq!(close_frame(&mut guest), (4001, "see you".to_owned()));
    let _ = guest.flush();
    assert!(server.wait_for_log("h closed /h/guest: 4001", Duration::from_secs(10)));
    // The connection is cut.
    let mut lost = hibernating(&server, "/h/lost");
    assert_eq!(ask(&mut lost, "count"), "count 1 (event 1)");
    lost.get_mut().shutdown(std::net::Shutdown::Both).unwrap();
    drop(lost);
    assert!(server.wait_for_log("h closed /h/lost: none count 1", Duration::from_secs(10)));
    assert!(server.wait_for_log(
        "websocket session ended (connection lost); close handler ran",
        Duration::from_secs(5)
    ));
}

#[test]
fn a_handler_that_says_it_has_no_close_handler_ends_without_an_instance() {
    let server = sockets("");
    // The peer closes one session, and cuts another's connection.
    let mut closed = open(&server, "/quiet");
    assert_eq!(ask(&mut closed, "one"), "one");
    closed.close(None).unwrap();
    assert!(matches!(next(&mut closed), Message::Close(_)));
    let mut lost = open(&server, "/quiet");
    assert_eq!(ask(&mut lost, "two"), "two");
    lost.get_mut().shutdown(std::net::Shutdown::Both).unwrap();
    drop(lost);
    for ending in ["closed", "connection lost"] {
        assert!(server.wait_for_log(
            &format!("websocket session ended ({ending}); no close handler"),
            Duration::from_secs(10)
        ));
    }
    // Its `on_close` would print this, had the host started an instance
    // for it.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !server
            .log()
            .iter()
            .any(|line| line.contains("quiet close ran")),
        "{:?}",
        server.log()
    );
}

#[test]
fn shutdown_closes_with_1001_and_runs_the_close_handler() {
    let mut server = sockets("");
    let mut socket = hibernating(&server, "/h/leaving");
    server.terminate();
    assert_eq!(
        close_frame(&mut socket),
        (1001, "server shutting down".to_owned())
    );
    let _ = socket.flush();
    assert!(server.wait_for_log("h closed /h/leaving: 1001", Duration::from_secs(10)));
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("cyclone exits");
    assert!(status.success(), "{status:?}");
}

#[test]
fn connect_refuses_and_plain_requests_get_400() {
    let server = sockets("");
    let (status, _) = open_with(&server, "/h/x?refuse", &[]).unwrap_err();
    assert_eq!(status, 401);
    assert_eq!(server.get("/h/x").status, 400);
}

#[test]
fn forwarded_topics_reach_every_session_without_running_the_guest() {
    let server = sockets("");
    let mut sockets: Vec<Socket> = (0..20)
        .map(|i| {
            let mut socket = hibernating(&server, &format!("/h/f{i}"));
            assert_eq!(ask(&mut socket, "fwd news"), "ok");
            // The reply comes before the `fwd` event returns; a message
            // published meanwhile goes to the guest, as documented. The next
            // event's reply shows that one has returned.
            assert_eq!(ask(&mut socket, "size"), "0");
            socket
        })
        .collect();
    let before = server.log().len();
    assert_eq!(server.get("/s/publish?topic=news&body=hello").body, "1");
    for socket in &mut sockets {
        // The published body itself: the guest would have written `news 1 hello`.
        assert_eq!(text(socket), "hello");
    }
    assert_eq!(ask(&mut sockets[0], "last news"), "last 1 hello");
    // No event ran for the fan-out: no instance logged anything.
    assert!(
        server.log()[before..]
            .iter()
            .all(|line| !line.contains("news 1")),
        "{:?}",
        &server.log()[before..]
    );
    assert_eq!(ask(&mut sockets[1], "unsub news"), "ok");
    assert_eq!(server.get("/s/publish?topic=news&body=again").body, "2");
    assert_eq!(text(&mut sockets[0]), "again");
    assert_eq!(ask(&mut sockets[1], "count"), "count 1 (event 1)");
}

#[test]
fn subscribed_topics_run_the_guest_and_topics_are_checked() {
    let server = sockets("");
    let mut socket = hibernating(&server, "/h/sub");
    assert_eq!(ask(&mut socket, "sub feed"), "ok");
    assert_eq!(server.get("/s/publish?topic=feed&body=one").body, "1");
    assert_eq!(text(&mut socket), "feed 1 one");
    assert_eq!(
        ask(&mut socket, "sub "),
        "topic names are 1 to 256 bytes long"
    );
    for i in 1..16 {
        assert_eq!(ask(&mut socket, &format!("sub t{i}")), "ok");
    }
    assert_eq!(
        ask(&mut socket, "sub t16"),
        "a session has at most 16 topics"
    );
    // One it has already changes kind without taking room.
    assert_eq!(ask(&mut socket, "fwd feed"), "ok");
    // What waits when forwarding starts still goes to the guest; once the
    // next event has run, the handover is over.
    assert_eq!(ask(&mut socket, "size"), "0");
    assert_eq!(server.get("/s/publish?topic=feed&body=two").body, "2");
    assert_eq!(text(&mut socket), "two");
}

#[test]
fn the_host_pings_a_hibernating_session_and_answers_its_pings() {
    let server = sockets("websocket_ping_secs = 1");
    let mut socket = hibernating(&server, "/h/pinged");
    assert!(pings_both_ways(&mut socket, "are you there"));
    // A client that goes silent (this one reads no more) is dropped after
    // two intervals, and the close handler runs.
    assert!(server.wait_for_log(
        "websocket session ended (peer unresponsive); close handler ran",
        Duration::from_secs(10)
    ));
}

#[test]
fn a_forwarded_topic_the_peer_falls_behind_on_reaches_the_guest_as_lagged() {
    let server = sockets("pubsub_buffer = 8");
    let mut socket = hibernating(&server, "/h/slow");
    assert_eq!(ask(&mut socket, "fwd flood"), "ok");
    // 600 messages of 32 KiB while the client reads nothing: the socket's
    // buffers fill, the host waits to write, and the topic's buffer of 8
    // overflows.
    let reply = server.get("/s/flood?topic=flood&n=600&kb=32");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let started = Instant::now();
    let mut lagged = None;
    let mut forwarded = 0;
    while lagged.is_none() && started.elapsed() < Duration::from_secs(30) {
        let message = text(&mut socket);
        match message.strip_prefix("flood lagged ") {
            Some(n) => lagged = Some(n.parse::<u64>().unwrap()),
            None => forwarded += 1,
        }
    }
    let lagged = lagged.expect("the guest was told the session lagged");
    assert!(
        lagged > 0 && forwarded < 600,
        "lagged {lagged}, forwarded {forwarded}"
    );
    // The topic goes on: a later message still comes.
    assert_eq!(server.get("/s/publish?topic=flood&body=after").status, 200);
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no message after the lag"
        );
        let message = text(&mut socket);
        if message.ends_with("after") {
            break;
        }
    }
}

#[test]
fn a_component_built_before_hibernation_still_serves_live_sessions() {
    // Built against the websocket WIT of before: it exports only
    // `websocket-handler`, and imports nothing new.
    let (_dir, path) = manifest(&format!(
        "[apps.frozen]\ncomponent = {:?}\nroutes = [\"/...\"]\n",
        components::WS_FROZEN
    ));
    let server = Cyclone::serve(&path);
    assert_eq!(server.get("/").body, "frozen");
    let mut socket = open(&server, "/socket");
    assert_eq!(ask(&mut socket, "still here"), "still here");
    assert!(server.wait_for_log("websocket session opened", Duration::from_secs(5)));
    assert!(
        !server
            .log()
            .iter()
            .any(|line| line.contains("opened (hibernating)"))
    );
    socket.close(None).unwrap();
    assert!(server.wait_for_log(
        "websocket session ended (closed); instance released",
        Duration::from_secs(10)
    ));
}

#[test]
fn sessions_past_websocket_max_sessions_get_503() {
    let server = sockets("websocket_max_sessions = 2");
    let first = hibernating(&server, "/h/one");
    let _second = hibernating(&server, "/h/two");
    let (status, _) = open_with(&server, "/h/three", &[]).unwrap_err();
    assert_eq!(status, 503);
    assert!(server.wait_for_log(
        "503: websocket_max_sessions reached",
        Duration::from_secs(5)
    ));
    // Live sessions count too.
    let (status, _) = open_with(&server, "/echo", &[]).unwrap_err();
    assert_eq!(status, 503);
    // A session that ends makes room.
    let mut first = first;
    first.get_mut().shutdown(std::net::Shutdown::Both).unwrap();
    drop(first);
    assert!(server.wait_for_log("close handler ran", Duration::from_secs(10)));
    let mut third = hibernating(&server, "/h/three");
    assert_eq!(ask(&mut third, "count"), "count 1 (event 1)");
}
