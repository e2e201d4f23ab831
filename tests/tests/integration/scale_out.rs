//! Several hosts on one Redis, through the real binaries: a real
//! `redis-server` each test starts on a free port, two `cyclone` hosts
//! with the examples' Redis manifests, and real nginx in front of them.

use std::time::{Duration, Instant};

use cyclone_tests::services::{Nginx, Redis};
use cyclone_tests::ws::{Socket, open, open_at, text};
use cyclone_tests::{Cyclone, Reply, components, example_manifest_file, manifest, request_at};

use crate::state::{every_call_answers, kv, probe_manifest};

/// A host serving `examples/NAME/cyclone-redis.toml` on `redis`.
fn host(name: &str, component: &str, redis: &Redis) -> Cyclone {
    let (dir, path) = example_manifest_file(name, "cyclone-redis.toml", component, &[]);
    Cyclone::serve_with_env(&path, &[("CYCLONE_REDIS_URL", &redis.url())]).keeping(dir)
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Posts a chat message at `addr`; the reply.
fn post_at(addr: &str, body: &str) -> Reply {
    request_at(
        addr,
        "POST",
        "/a/message/new",
        &[FORM],
        &format!("body={body}"),
    )
}

/// The `(id, body)` of a message as the chat sends it.
fn message(json: &str) -> (u64, String) {
    let value: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    (
        value["id"].as_u64().expect("an id"),
        value["body"].as_str().expect("a body").to_owned(),
    )
}

/// Reads messages until one with `body` arrives.
fn receive(socket: &mut Socket, body: &str) -> u64 {
    loop {
        let (id, got) = message(&text(socket));
        if got == body {
            return id;
        }
    }
}

#[test]
fn a_message_posted_to_one_host_reaches_the_other_hosts_clients() {
    let redis = Redis::start();
    let a = host("chat", components::CHAT, &redis);
    let b = host("chat", components::CHAT, &redis);

    // (a) A websocket client on A receives a message posted to B.
    let mut socket = open(&a, "/chatsocket");
    let posted = post_at(b.addr(), "from-b");
    assert_eq!(posted.status, 200, "{}", posted.body);
    let (id, _) = message(&posted.body);
    assert_eq!(receive(&mut socket, "from-b"), id);

    // (b) A long poll waiting on A is released by a post to B.
    std::thread::scope(|scope| {
        let poll = scope.spawn(|| {
            let started = Instant::now();
            let reply = request_at(
                a.addr(),
                "POST",
                "/a/message/updates",
                &[FORM],
                &format!("cursor={id}"),
            );
            (reply, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(post_at(b.addr(), "poll-release").status, 200);
        let (reply, waited) = poll.join().unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.body.contains("poll-release"), "{}", reply.body);
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    });

    // A socket on B also saw both, in order, after what it was sent on opening.
    let mut on_b = open(&b, "/chatsocket");
    let kept: Vec<(u64, String)> = (0..2).map(|_| message(&text(&mut on_b))).collect();
    assert_eq!(kept[0].1, "from-b");
    assert_eq!(kept[1], (id + 1, "poll-release".to_owned()));
}

#[test]
fn concurrent_increments_over_two_hosts_are_all_counted() {
    let redis = Redis::start();
    let hosts = [
        host("counter", components::COUNTER, &redis),
        host("counter", components::COUNTER, &redis),
    ];
    // 1,000 POSTs from 20 clients at once, alternating between the hosts.
    std::thread::scope(|scope| {
        for client in 0..20 {
            let hosts = &hosts;
            scope.spawn(move || {
                for i in 0..50 {
                    let host = &hosts[(client + i) % 2];
                    let reply = host.request("POST", "/count/x", &[], "");
                    assert_eq!(reply.status, 200, "{}", reply.body);
                }
            });
        }
    });
    for host in &hosts {
        assert_eq!(host.get("/count/x").body, "1000");
    }
    assert_eq!(hosts[0].get("/count/never").body, "0");
    assert_eq!(hosts[1].request("DELETE", "/count/x", &[], "").status, 204);
    assert_eq!(hosts[0].get("/count/x").body, "0");
}

#[test]
fn a_redis_outage_is_a_quick_503_and_everything_resumes_after_it() {
    let mut redis = Redis::start();
    let counter = host("counter", components::COUNTER, &redis);
    let a = host("chat", components::CHAT, &redis);
    let b = host("chat", components::CHAT, &redis);
    assert_eq!(counter.request("POST", "/count/x", &[], "").body, "1");
    let mut socket = open(&a, "/chatsocket");
    assert_eq!(post_at(b.addr(), "before").status, 200);
    receive(&mut socket, "before");

    redis.stop();
    for _ in 0..5 {
        let started = Instant::now();
        let reply = counter.request("POST", "/count/x", &[], "");
        let took = started.elapsed();
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert!(took < Duration::from_secs(1), "the 503 took {took:?}");
    }
    assert_eq!(counter.get("/count/x").status, 503);
    let page = a.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/chatsocket"));
    let started = Instant::now();
    assert_eq!(post_at(b.addr(), "during").status, 503);
    assert!(started.elapsed() < Duration::from_secs(1));

    redis.restart();
    // Back without restarting any host.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = counter.request("POST", "/count/x", &[], "");
        if reply.status == 200 {
            assert_eq!(reply.body, "2");
            break;
        }
        assert!(Instant::now() < deadline, "the counter did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The websocket client that stayed connected on A receives what is
    // posted to B after the outage.
    let deadline = Instant::now() + Duration::from_secs(10);
    while post_at(b.addr(), "after").status != 200 {
        assert!(Instant::now() < deadline, "posting did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    receive(&mut socket, "after");
}

#[test]
fn a_host_that_lost_its_subscription_reports_the_gap_as_lagged() {
    let redis = Redis::start();
    let a = host("chat", components::CHAT, &redis);
    let b = host("chat", components::CHAT, &redis);
    let mut socket = open(&a, "/chatsocket");
    assert_eq!(post_at(b.addr(), "first").status, 200);
    receive(&mut socket, "first");
    // Cut every subscribed connection, and have three messages numbered
    // on the room's topic that nobody on A could have received.
    assert!(redis.command("CLIENT KILL TYPE pubsub").is_some());
    for _ in 0..3 {
        assert!(redis.command("INCR cyclone:pubsub:4:chat:chat:n").is_some());
    }
    assert_eq!(post_at(b.addr(), "second").status, 200);
    receive(&mut socket, "second");
    // A counts the gap when it is back, or when the next message's number
    // skips; either way, or partly each, the client hears of all three.
    // When A subscribed again only after "second" was published, it missed
    // that one too (the client reads it from the store), and hears of four.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reported: u64 = a
            .log()
            .iter()
            .filter_map(|line| {
                let (_, rest) = line.split_once("a websocket client fell ")?;
                rest.split_once(' ')?.0.parse::<u64>().ok()
            })
            .sum();
        if reported >= 3 {
            assert!(reported <= 4, "{reported} reported missing");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{reported} of 3 reported missing"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn nginx_in_front_of_two_hosts_serves_one_room() {
    let redis = Redis::start();
    let a = host("chat", components::CHAT, &redis);
    let b = host("chat", components::CHAT, &redis);
    let shipped = include_str!("../../../examples/chat/nginx.conf");
    let upstreams = "server 127.0.0.1:8081;\n        server 127.0.0.1:8082;\n";
    assert!(shipped.contains(upstreams) && shipped.contains("listen 127.0.0.1:8080;"));
    let config = shipped
        .replace(upstreams, "UPSTREAMS")
        .replace("listen 127.0.0.1:8080;", "listen LISTEN;");
    let nginx = Nginx::start(&config, &[a.addr(), b.addr()]);
    let front = nginx.addr();

    let page = request_at(&front, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/chatsocket"));
    // Sockets through nginx land on both hosts (round robin); each gets
    // every message, whichever host the post went through.
    let mut sockets: Vec<Socket> = (0..4)
        .map(|_| open_at(&front, "/chatsocket", &[]).expect("a websocket through nginx"))
        .collect();
    for i in 0..4 {
        assert_eq!(post_at(&front, &format!("m{i}")).status, 200);
    }
    for socket in &mut sockets {
        for i in 0..4 {
            receive(socket, &format!("m{i}"));
        }
    }
    // A long poll through nginx is released by a post through nginx.
    let newest = {
        let reply = request_at(&front, "POST", "/a/message/updates", &[FORM], "");
        let value: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        value["messages"].as_array().unwrap().last().unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    std::thread::scope(|scope| {
        let poll = scope.spawn(|| {
            request_at(
                &front,
                "POST",
                "/a/message/updates",
                &[FORM],
                &format!("cursor={newest}"),
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(post_at(&front, "through-nginx").status, 200);
        let reply = poll.join().unwrap();
        assert_eq!(reply.status, 200);
        assert!(reply.body.contains("through-nginx"), "{}", reply.body);
    });
}

#[test]
fn a_redis_down_at_start_up_is_a_warning_and_calls_work_once_it_is_up() {
    let mut redis = Redis::start();
    redis.stop();
    let counter = host("counter", components::COUNTER, &redis);
    assert!(counter.wait_for_log("Redis is not reachable", Duration::from_secs(5)));
    let started = Instant::now();
    assert_eq!(counter.request("POST", "/count/x", &[], "").status, 503);
    assert!(started.elapsed() < Duration::from_secs(1));
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter.request("POST", "/count/x", &[], "").status != 200 {
        assert!(
            Instant::now() < deadline,
            "the counter did not start working"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(counter.get("/count/x").body, "1");
}

/// Two apps of the sockets guest with pub/sub on `redis`, keeping 3 messages a topic.
fn pubsub_host(redis: &Redis) -> Cyclone {
    let (dir, path) = manifest(&format!(
        "[apps.one]\ncomponent = {c:?}\nroutes = [\"/one/...\"]\npubsub_history = 3\n\
         [apps.two]\ncomponent = {c:?}\nroutes = [\"/two/...\"]\npubsub_history = 3\n\
         [pubsub]\nbackend = \"redis\"\nurl = {url:?}\n",
        c = components::SOCKETS,
        url = redis.url(),
    ));
    Cyclone::serve(&path).keeping(dir)
}

#[test]
fn topics_over_redis_are_numbered_and_kept_across_hosts_and_restarts() {
    let redis = Redis::start();
    let a = pubsub_host(&redis);
    let mut b = pubsub_host(&redis);
    let publish = |host: &Cyclone, app: &str, body: &str| {
        host.get(&format!("/{app}/publish?topic=news&body={body}"))
            .body
    };
    assert_eq!(publish(&a, "one", "a1"), "1");
    assert_eq!(publish(&b, "one", "b2"), "2");
    assert_eq!(publish(&a, "one", "a3"), "3");
    assert_eq!(publish(&b, "one", "b4"), "4");
    // Each app has its own topics, on Redis too.
    assert_eq!(publish(&b, "two", "elsewhere"), "1");
    // The last three, from either host, after a cursor or not.
    assert_eq!(a.get("/one/recent?topic=news").body, "2:b2\n3:a3\n4:b4");
    assert_eq!(b.get("/one/recent?topic=news&after=3").body, "4:b4");
    assert_eq!(a.get("/two/recent?topic=news").body, "1:elsewhere");
    // A restarted host reads the history and goes on numbering.
    b.stop();
    let b = pubsub_host(&redis);
    assert_eq!(b.get("/one/recent?topic=news").body, "2:b2\n3:a3\n4:b4");
    assert_eq!(publish(&b, "one", "b5"), "5");
}

#[test]
fn the_store_on_redis_answers_every_call_as_on_sqlite() {
    let redis = Redis::start();
    let (dir, path) = manifest(&format!(
        "{}[apps.spin]\ncomponent = {:?}\nroutes = [\"/spin/...\"]\nkey_value_stores = [\"default\"]\n\
         [key_value.default]\nbackend = \"redis\"\nurl = {:?}\nmax_value_kb = 1\n",
        probe_manifest("\"default\"", ""),
        components::SPIN_HELLO,
        redis.url(),
    ));
    let server = Cyclone::serve(&path).keeping(dir);
    every_call_answers(&server);
    let too_big = server.request("PUT", "/kv?op=set&key=v", &[], &"x".repeat(1025));
    assert!(
        too_big.body.starts_with("error: TooLarge("),
        "{}",
        too_big.body
    );
    // The store is the hash cyclone:kv:default.
    assert_eq!(
        redis.command("HEXISTS cyclone:kv:default n").as_deref(),
        Some(":1")
    );
    // A component written for Spin, through raw wasi:keyvalue bindings.
    let spin = server.get("/spin/kv");
    assert!(
        spin.body
            .starts_with("hello from spin|2|retried over changed meanwhile|won|"),
        "{}",
        spin.body
    );
    assert_eq!(kv(&server, "op=get&key=spin:greeting"), "value won");
}

#[test]
fn posts_at_once_on_two_hosts_get_distinct_numbers_without_holes() {
    let redis = Redis::start();
    let hosts = [
        host("chat", components::CHAT, &redis),
        host("chat", components::CHAT, &redis),
    ];
    let ids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for client in 0..20 {
            let (hosts, ids) = (&hosts, &ids);
            scope.spawn(move || {
                for i in 0..10 {
                    let reply = post_at(hosts[(client + i) % 2].addr(), &format!("c{client}m{i}"));
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    ids.lock().unwrap().push(message(&reply.body).0);
                }
            });
        }
    });
    let mut ids = ids.into_inner().unwrap();
    ids.sort_unstable();
    assert_eq!(ids, (1..=200).collect::<Vec<u64>>());
    // Both hosts read the room in order.
    for host in &hosts {
        let reply = request_at(host.addr(), "POST", "/a/message/updates", &[FORM], "");
        let value: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        let listed: Vec<u64> = value["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect();
        assert_eq!(listed, (1..=200).collect::<Vec<u64>>());
    }
}

#[test]
fn a_subscriber_that_falls_behind_on_redis_is_told_it_lagged() {
    let redis = Redis::start();
    let (dir, path) = manifest(&format!(
        "[apps.sockets]\ncomponent = {:?}\nroutes = [\"/...\"]\npubsub_buffer = 8\n\
         [pubsub]\nbackend = \"redis\"\nurl = {:?}\n",
        components::SOCKETS,
        redis.url(),
    ));
    let server = Cyclone::serve(&path).keeping(dir);
    // The guest subscribes, publishes 40 without reading, then reads.
    let first = server.get("/lag?n=40").body;
    let lagged: u64 = first
        .strip_prefix("lagged ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("expected `lagged N`, got {first:?}"));
    assert!((1..=32).contains(&lagged), "{first}");
}
