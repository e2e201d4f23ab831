//! `examples/chat` through the real binary: long polling (a waiting poll
//! released by a post, a thousand at once), websockets, and both in one room.
//! The suite runs twice: as `chat` against the WASI 0.2 build and as
//! `chat_p3` against the WASI 0.3 build, which serves no websockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cyclone_tests::ws::{close_frame, open, text};
use cyclone_tests::{Cyclone, components, example_manifest};
use tungstenite::Message;

/// The build under test: this file is also the module `chat_p3`.
fn component() -> &'static str {
    if wasi_p3() {
        components::CHAT_P3
    } else {
        components::CHAT
    }
}

/// Whether this is the suite of the WASI 0.3 build.
fn wasi_p3() -> bool {
    module_path!().ends_with("_p3")
}

/// The chat example with its own manifest, and `edits` to it.
pub(crate) fn chat(edits: &[(&str, &str)]) -> Cyclone {
    let (dir, path) = example_manifest("chat", component(), edits);
    Cyclone::serve(&path).keeping(dir)
}

/// The chat example with a pool of `pool` instances, of which waiting polls
/// may hold `polls`.
fn chat_capped(pool: u32, polls: u32) -> Cyclone {
    let pool = format!("max_instances = {pool}");
    let polls = format!("{{ route = \"/a/message/updates\", max_instances = {polls} }}");
    chat(&[
        ("max_instances = 4200", &pool),
        (
            "{ route = \"/a/message/updates\", max_instances = 2000 }",
            &polls,
        ),
    ])
}

/// Posts a message; returns its id.
pub(crate) fn post(server: &Cyclone, body: &str) -> u64 {
    let reply = server.request(
        "POST",
        "/a/message/new",
        &[("content-type", "application/x-www-form-urlencoded")],
        &format!("body={body}"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let message: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(message["body"], body);
    message["id"].as_u64().expect("an id")
}

/// The `(id, body)` pairs of an updates reply.
pub(crate) fn messages(body: &str) -> Vec<(u64, String)> {
    let reply: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    reply["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Polls for updates after `cursor`.
fn updates(server: &Cyclone, cursor: Option<u64>) -> Vec<(u64, String)> {
    let form = cursor.map_or_else(String::new, |c| format!("cursor={c}"));
    let reply = server.request(
        "POST",
        "/a/message/updates",
        &[("content-type", "application/x-www-form-urlencoded")],
        &form,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    messages(&reply.body)
}

/// Starts a raw updates request on its own connection; read it with [`finish`].
pub(crate) fn start_poll(server: &Cyclone, cursor: Option<u64>) -> TcpStream {
    let form = cursor.map_or_else(String::new, |c| format!("cursor={c}"));
    let mut stream = server.connect();
    write!(
        stream,
        "POST /a/message/updates HTTP/1.1\r\nHost: chat\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    stream
}

#[test]
fn polls_past_their_route_cap_leave_instances_for_posts_and_pages() {
    // A pool of 20, of which waiting polls may hold 10.
    let server = chat_capped(20, 10);
    // 30 polls: 10 wait in instances; the other 20 queue for the route's
    // permits and get 503 after the queue timeout (1 s).
    let pollers: Vec<TcpStream> = (0..30).map(|_| start_poll(&server, None)).collect();
    assert!(server.wait_for_log_count("503: route max_instances", 20, Duration::from_secs(10)));
    let loading = Instant::now();
    assert_eq!(server.get("/").status, 200);
    post(&server, "through");
    assert!(
        loading.elapsed() < Duration::from_secs(1),
        "{:?}",
        loading.elapsed()
    );
    let answers: Vec<String> = pollers.into_iter().map(finish_raw).collect();
    let released = answers
        .iter()
        .filter(|answer| answer.contains("\"through\""))
        .count();
    assert_eq!(released, 10, "{answers:#?}");
}

#[test]
fn a_post_releases_polls_that_fill_the_pool() {
    // 19 waiting polls and the post take all 20 instances. Waking, each poll
    // drops its 30 s timer; in a WASI 0.3 instance that cancel blocks the
    // guest's task while its event loop goes on, on a second fiber stack.
    let server = chat_capped(20, 19);
    // With a cursor, a poll that arrives after the post still gets it.
    let first = post(&server, "before");
    let pollers: Vec<TcpStream> = (0..19).map(|_| start_poll(&server, Some(first))).collect();
    std::thread::sleep(Duration::from_millis(500));
    post(&server, "all");
    for poller in pollers {
        assert_eq!(messages(&finish(poller)).len(), 1);
    }
    assert!(!server.log().iter().any(|line| line.contains("fibers")));
}

/// Reads the whole answer of a request started by [`start_poll`]: its body.
pub(crate) fn finish(stream: TcpStream) -> String {
    let answer = finish_raw(stream);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer.split_once("\r\n\r\n").expect("a body").1.to_owned()
}

/// The whole answer, head and body, of a request started by [`start_poll`].
fn finish_raw(mut stream: TcpStream) -> String {
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("reading the poll");
    answer
}

#[test]
fn the_page_and_the_manifest_defaults() {
    let server = chat(&[]);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.body.contains("/chatsocket") && page.body.contains("/a/message/updates"));
    // Kept messages: all of them without a cursor, the newer ones after one.
    let ids: Vec<u64> = ["one", "two", "three"]
        .iter()
        .map(|b| post(&server, b))
        .collect();
    assert_eq!(
        updates(&server, None),
        [
            (ids[0], "one".into()),
            (ids[1], "two".into()),
            (ids[2], "three".into())
        ]
    );
    assert_eq!(
        updates(&server, Some(ids[0])),
        [(ids[1], "two".into()), (ids[2], "three".into())]
    );
    // Bad input is a 400, not a crash.
    let reply = server.request(
        "POST",
        "/a/message/updates",
        &[("content-type", "application/x-www-form-urlencoded")],
        "cursor=abc",
    );
    assert_eq!(reply.status, 400);
    let reply = server.request(
        "POST",
        "/a/message/new",
        &[("content-type", "application/x-www-form-urlencoded")],
        "nobody=1",
    );
    assert_eq!(reply.status, 400);
    if wasi_p3() {
        return; // no websockets
    }
    // The manifest caps websocket messages at 64 KiB.
    let mut socket = open(&server, "/chatsocket");
    for _ in 0..3 {
        text(&mut socket); // the kept messages
    }
    socket.send(Message::text("x".repeat(100 << 10))).unwrap();
    assert_eq!(close_frame(&mut socket).0, 1009);
}

#[test]
fn a_waiting_poll_returns_soon_after_a_post() {
    let server = chat(&[]);
    let first = post(&server, "before");
    let waiting = start_poll(&server, Some(first));
    std::thread::sleep(Duration::from_millis(500));
    let posted = Instant::now();
    let id = post(&server, "news");
    let body = finish(waiting);
    let latency = posted.elapsed();
    assert_eq!(messages(&body), [(id, "news".to_owned())]);
    assert!(
        latency < Duration::from_secs(1),
        "the poll returned {latency:?} after the post"
    );
}

#[test]
fn one_post_releases_a_thousand_waiting_polls() {
    const POLLERS: usize = 1_000;
    // The example's own manifest.
    let server = chat(&[]);
    // With a cursor, a poll that arrives after the post still gets it.
    let first = post(&server, "before");
    let pollers: Vec<TcpStream> = (0..POLLERS)
        .map(|_| start_poll(&server, Some(first)))
        .collect();
    // None is answered while they wait.
    std::thread::sleep(Duration::from_secs(2));
    // The page still loads at once while they wait.
    let loading = Instant::now();
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(
        loading.elapsed() < Duration::from_secs(1),
        "{:?}",
        loading.elapsed()
    );
    for poller in &pollers {
        poller.set_nonblocking(true).unwrap();
        let mut byte = [0u8];
        let early = (&*poller).read(&mut byte);
        assert!(
            matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a poll was answered before any post: {early:?}"
        );
        poller.set_nonblocking(false).unwrap();
    }
    let posted = Instant::now();
    let id = post(&server, "everyone");
    for poller in pollers {
        assert_eq!(messages(&finish(poller)), [(id, "everyone".to_owned())]);
    }
    let all = posted.elapsed();
    println!("{POLLERS} polls answered {all:?} after the post");
    assert!(all < Duration::from_secs(15), "{all:?}");
}

#[test]
fn websocket_and_polling_clients_share_the_room() {
    let server = chat(&[]);
    if wasi_p3() {
        // The 0.3 build says plainly that it cannot serve a websocket.
        let refused = server.request(
            "GET",
            "/chatsocket",
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            "",
        );
        assert_eq!(refused.status, 501, "{}", refused.body);
        assert!(
            refused.body.contains("cannot serve websockets"),
            "{}",
            refused.body
        );
        return;
    }
    let mut alice = open(&server, "/chatsocket");
    let mut bob = open(&server, "/chatsocket");
    std::thread::sleep(Duration::from_millis(300));

    // Over the websocket: every client, the sender too, and the pollers.
    // The room is empty: with the cursor 0, a poll that arrives after the
    // message still gets it.
    let poll = start_poll(&server, Some(0));
    std::thread::sleep(Duration::from_millis(300));
    alice.send(Message::text("from a socket")).unwrap();
    for client in [&mut alice, &mut bob] {
        let message: serde_json::Value = serde_json::from_str(&text(client)).unwrap();
        assert_eq!(message["body"], "from a socket");
    }
    let polled = messages(&finish(poll));
    assert_eq!(polled.len(), 1);
    assert_eq!(polled[0].1, "from a socket");

    // Posted over HTTP: the websocket clients get it.
    let id = post(&server, "from a form");
    for client in [&mut alice, &mut bob] {
        let message: serde_json::Value = serde_json::from_str(&text(client)).unwrap();
        assert_eq!(message["id"], id);
        assert_eq!(message["body"], "from a form");
    }

    // A newcomer gets the kept messages first.
    let mut carol = open(&server, "/chatsocket");
    let kept: Vec<String> = (0..2)
        .map(|_| {
            serde_json::from_str::<serde_json::Value>(&text(&mut carol)).unwrap()["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kept, ["from a socket", "from a form"]);
}

#[test]
fn the_room_survives_a_restart_and_keeps_its_last_200_messages() {
    let (dir, path) = example_manifest("chat", component(), &[]);
    let mut server = Cyclone::serve(&path);
    let first: Vec<u64> = ["one", "two"].iter().map(|b| post(&server, b)).collect();
    server.stop();
    let server = Cyclone::serve(&path).keeping(dir);
    assert_eq!(
        updates(&server, None),
        [(first[0], "one".into()), (first[1], "two".into())]
    );
    if !wasi_p3() {
        let mut socket = open(&server, "/chatsocket");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text(&mut socket)).unwrap()["body"],
            "one"
        );
    }
    // Numbering goes on; past 200 messages the oldest are forgotten.
    let mut last = first[1];
    for i in 0..199 {
        let id = post(&server, &format!("m{i}"));
        assert_eq!(id, last + 1);
        last = id;
    }
    let kept = updates(&server, None);
    assert_eq!(kept.len(), 200);
    assert_eq!(kept[0], (first[1], "two".into()));
    assert_eq!(kept[199], (last, "m198".into()));
}
