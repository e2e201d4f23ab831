//! WASI 0.3 components: served next to 0.2 ones, built with other
//! toolchains (the `wasip3` crate, spin-sdk 7), streaming bodies both ways,
//! every limit, and instance reuse.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cyclone_tests::{Cyclone, Upstream, components, manifest, read_until};

/// The wasip3 probe as the only app, with `settings` added to its table.
fn probe(settings: &str) -> Cyclone {
    let (dir, path) = manifest(&format!(
        "[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\n{settings}\n",
        components::WASIP3_PROBE
    ));
    Cyclone::serve(&path).keeping(dir)
}

/// `GET path` on a connection of its own, for requests sent from threads.
fn get(server: &Cyclone, path: &str) -> std::thread::JoinHandle<(u16, String, Duration)> {
    let url = server.url(path);
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut reply = ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("a reply");
        let body = reply.body_mut().read_to_string().unwrap_or_default();
        (reply.status().as_u16(), body, started.elapsed())
    })
}

#[test]
fn a_bare_wasi_03_component_is_served_and_sees_an_absolute_uri() {
    let server = Cyclone::serve(components::WASIP3_PROBE);
    let hello = server.get("/hello");
    assert_eq!(hello.status, 200);
    assert_eq!(hello.body, "hello from wasip3\n");
    assert_eq!(
        hello.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let uri = server.get("/uri?x=1");
    assert_eq!(
        uri.body,
        format!("GET http {} /uri?x=1\n", server.addr()),
        "the guest gets scheme, authority and path"
    );
    assert_eq!(server.get("/nowhere").status, 404);
    assert!(server.wait_for_log("WASI 0.3 engine started", Duration::from_secs(5)));
}

#[test]
fn wasi_02_and_03_apps_share_one_manifest() {
    let (_dir, path) = manifest(&format!(
        "[apps.p2]\ncomponent = {:?}\nroutes = [\"/...\"]\n\
         [apps.p3]\ncomponent = {:?}\nroutes = [\"/p3/...\", \"/hello\"]\n\
         [apps.spin]\ncomponent = {:?}\nroutes = [\"/\", \"/echo\"]\n",
        components::WSTD_PLAIN,
        components::WASIP3_PROBE,
        components::SPIN3_HELLO,
    ));
    let server = Cyclone::serve(&path);
    assert_eq!(server.get("/hello").body, "hello from wasip3\n");
    assert_eq!(server.get("/").body, "hello from spin-sdk 7 on GET\n");
    let p2 = server.get("/anything");
    assert_eq!(p2.status, 200, "{}", p2.body);
    assert!(!p2.body.contains("wasip3"), "{}", p2.body);
    // A trap in the 0.3 app answers 500 and touches neither the other apps
    // nor its own next request.
    assert_eq!(server.get("/p3/trap").status, 500);
    assert!(server.wait_for_log("guest failed", Duration::from_secs(5)));
    assert_eq!(server.get("/p3/hello").status, 200);
    assert_eq!(server.get("/").status, 200);
    assert_eq!(server.get("/anything").status, 200);
}

#[test]
fn a_spin_sdk_7_component_runs_unchanged() {
    let server = Cyclone::serve(components::SPIN3_HELLO);
    assert_eq!(server.get("/").body, "hello from spin-sdk 7 on GET\n");
    let echo = server.post("/echo", "spin echoes this");
    assert_eq!(echo.status, 200);
    assert_eq!(echo.body, "spin echoes this");
    assert_eq!(server.get("/missing").status, 404);
}

/// Streams 5 MiB to `path` in 64 KiB chunks and checks that the echo starts
/// coming back before the upload is half done, and comes back whole.
fn echoes_as_it_arrives(server: &Cyclone, path: &str) {
    const CHUNK: usize = 64 << 10;
    const CHUNKS: usize = 80; // 5 MiB
    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let chunk = |i: usize| -> Vec<u8> { vec![b'a' + (i % 26) as u8; CHUNK] };
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut sent = 0;
    for i in 0..4 {
        write!(stream, "{CHUNK:x}\r\n").unwrap();
        stream.write_all(&chunk(i)).unwrap();
        stream.write_all(b"\r\n").unwrap();
        sent += 1;
    }
    // The head and the first bytes of the echo arrive while most of the
    // body has not been sent.
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut received = Vec::new();
    // Read the body's chunked framing by hand: size line, data, CRLF.
    let read_chunk = |reader: &mut BufReader<std::net::TcpStream>| -> Option<Vec<u8>> {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return None;
        }
        let mut data = vec![0; size];
        reader.read_exact(&mut data).ok()?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).ok()?;
        Some(data)
    };
    while received.len() < CHUNK {
        received.extend(read_chunk(&mut reader).expect("echoed bytes before the upload ends"));
    }
    assert!(sent < CHUNKS / 2);
    let writer = std::thread::spawn(move || {
        for i in sent..CHUNKS {
            write!(stream, "{CHUNK:x}\r\n").unwrap();
            stream.write_all(&chunk(i)).unwrap();
            stream.write_all(b"\r\n").unwrap();
        }
        stream.write_all(b"0\r\n\r\n").unwrap();
    });
    while let Some(data) = read_chunk(&mut reader) {
        received.extend(data);
    }
    writer.join().unwrap();
    assert_eq!(received.len(), CHUNK * CHUNKS);
    let expected: Vec<u8> = (0..CHUNKS).flat_map(chunk).collect();
    assert!(received == expected, "the echo differs from what was sent");
}

#[test]
fn a_5_mib_body_is_echoed_as_it_arrives() {
    let settings = "stream_request_body = true\nmax_body_kb = 8192";
    echoes_as_it_arrives(&probe(settings), "/echo");
    let (dir, path) = manifest(&format!(
        "[apps.spin]\ncomponent = {:?}\nroutes = [\"/...\"]\n{settings}\n",
        components::SPIN3_HELLO
    ));
    echoes_as_it_arrives(&Cyclone::serve(&path).keeping(dir), "/echo");
}

#[test]
fn a_response_streams_in_chunks() {
    let server = probe("");
    let lines = server.get_lines_timed("/chunks?n=3&ms=400");
    let texts: Vec<&str> = lines.iter().map(|(_, line)| line.as_str()).collect();
    assert_eq!(texts, ["chunk 0", "chunk 1", "chunk 2"]);
    // Each chunk arrives when written, not all at the end.
    assert!(
        lines[2].0 - lines[0].0 >= Duration::from_millis(700),
        "{lines:?}"
    );
}

#[test]
fn cpu_timeout_memory_and_size_limits_apply_to_wasi_03_apps() {
    let server = probe(
        "cpu_budget_ms = 500\ntimeout_ms = 2000\nmax_memory_mb = 32\nmax_body_kb = 64\n\
         stream_request_body = true",
    );
    assert_eq!(server.get("/hello").status, 200);

    let started = Instant::now();
    assert_eq!(server.get("/spin").status, 503);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(server.wait_for_log("CPU budget exceeded", Duration::from_secs(5)));
    assert_eq!(server.get("/hello").status, 200);

    let started = Instant::now();
    assert_eq!(server.get("/sleep?ms=20000").status, 504);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1_900) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );

    assert_eq!(server.get("/alloc?mb=8").status, 200);
    assert_eq!(server.get("/alloc?mb=64").status, 500);
    assert_eq!(server.get("/hello").status, 200);

    // Declared too large: refused up front. Chunked and too large: cut at
    // the cap while the guest streams it.
    let reply = server.exchange_raw(
        format!(
            "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            100 << 10
        )
        .as_bytes(),
    );
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    let within = server.post("/echo", &"x".repeat(1000));
    assert_eq!(within.body.len(), 1000);
    let mut chunked =
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("{:x}\r\n", 32 << 10).as_bytes());
        chunked.extend_from_slice(&[b'y'; 32 << 10]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = server.exchange_raw(&chunked);
    assert!(
        reply.starts_with("HTTP/1.1 413") || !reply.contains(&"y".repeat(100 << 10)),
        "a body over the cap is not echoed whole: {}",
        &reply[..reply.len().min(200)]
    );

    let head = format!(
        "GET /hello HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let reply = server.exchange_raw(head.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 431"), "{}", &reply[..200]);
    assert_eq!(server.get("/hello").status, 200);
}

#[test]
fn a_full_queue_refuses_wasi_03_requests_with_503() {
    let (dir, path) = manifest(&format!(
        "[server]\nmax_queued = 0\n[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\nmax_instances = 2\n",
        components::WASIP3_PROBE
    ));
    let server = Arc::new(Cyclone::serve(&path).keeping(dir));
    assert_eq!(server.get("/hello").status, 200);
    let sleepers: Vec<_> = (0..2)
        .map(|_| get(&server, "/sleep?ms=2000&say=1"))
        .collect();
    assert!(server.wait_for_log_count("sleeping 2000 ms", 2, Duration::from_secs(10)));
    let refused = server.get("/hello");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    for sleeper in sleepers {
        assert_eq!(sleeper.join().unwrap().0, 200);
    }
    assert_eq!(server.get("/hello").status, 200);
}

#[test]
fn outbound_files_and_environment_grants_apply_to_wasi_03_apps() {
    let upstream = Upstream::start();
    let granted = tempfile::tempdir().unwrap();
    std::fs::write(granted.path().join("note.txt"), "granted text\n").unwrap();
    let server = probe(&format!(
        "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\n\
         files = {{ \"/data\" = {:?} }}\nenvironment = {{ GREETING = \"hi\" }}",
        upstream.port(),
        granted.path()
    ));
    let fetched = server.get(&format!("/fetch?url={}", upstream.url("/from-p3")));
    assert_eq!(fetched.body, "200 /from-p3");
    let other = Upstream::start();
    let denied = server.get(&format!("/fetch?url={}", other.url("/x")));
    assert_eq!(denied.status, 502);
    assert!(denied.body.contains("HttpRequestDenied"), "{}", denied.body);

    assert_eq!(server.get("/file?path=note.txt").body, "granted text\n");
    let escape = server.get("/file?path=../../etc/passwd");
    assert_eq!(escape.status, 404, "{}", escape.body);

    assert_eq!(server.get("/env?name=GREETING").body, "hi\n");
    assert_eq!(server.get("/env?name=HOME").status, 404);

    // Without grants: no folder, no variables, nowhere to send requests.
    let bare = probe("");
    assert_eq!(bare.get("/file?path=note.txt").status, 404);
    assert_eq!(bare.get("/env?name=GREETING").status, 404);
    assert_eq!(
        bare.get(&format!("/fetch?url={}", upstream.url("/x")))
            .status,
        502
    );
}

#[test]
fn without_reuse_every_request_gets_a_fresh_instance() {
    let server = probe("");
    for _ in 0..3 {
        assert_eq!(server.get("/count").body, "1\n");
    }
}

#[test]
fn with_reuse_an_instance_serves_up_to_max_requests_then_retires() {
    let server = probe("instance_reuse = { max_requests = 3 }");
    let counts: Vec<String> = (0..7).map(|_| server.get("/count").body).collect();
    assert_eq!(counts, ["1\n", "2\n", "3\n", "1\n", "2\n", "3\n", "1\n"]);
}

#[test]
fn a_reused_instance_idle_past_its_timeout_ends() {
    let server = probe("instance_reuse = { idle_timeout_ms = 300 }");
    assert_eq!(server.get("/count").body, "1\n");
    assert_eq!(server.get("/count").body, "2\n");
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(server.get("/count").body, "1\n");
}

#[test]
fn one_instance_takes_max_concurrent_requests_and_the_rest_wait() {
    let server = Arc::new(probe(
        "max_instances = 1\ninstance_reuse = { max_concurrent = 2, max_requests = 100 }",
    ));
    assert_eq!(server.get("/hello").status, 200);
    let started = Instant::now();
    // Each sleeps 600 ms, less than the queue's timeout of 1 s.
    let sleepers: Vec<_> = (0..3).map(|_| get(&server, "/sleep?ms=600")).collect();
    let mut elapsed: Vec<Duration> = sleepers
        .into_iter()
        .map(|s| {
            let (status, _, elapsed) = s.join().unwrap();
            assert_eq!(status, 200);
            elapsed
        })
        .collect();
    elapsed.sort();
    // Two share the one instance at once; the third waits for a place.
    assert!(elapsed[1] < Duration::from_millis(1_100), "{elapsed:?}");
    assert!(elapsed[2] >= Duration::from_millis(1_150), "{elapsed:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // They were served by that one instance: the next request is its fifth.
    assert_eq!(server.get("/count").body, "5\n");
}

#[test]
fn a_reused_instance_counts_as_the_pool_slots_its_fiber_stacks_need() {
    // Seven requests at once, and the instance's own two, may each hold one
    // of the pool's fiber stacks: three slots' worth, so two such instances
    // fill a pool of six and take fourteen requests between them.
    let (dir, path) = manifest(&format!(
        "[server]\nmax_instances = 6\nqueue_timeout_ms = 2000\n\
         [apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\n\
         instance_reuse = {{ max_concurrent = 7, max_requests = 100 }}\n",
        components::WASIP3_PROBE
    ));
    let server = Arc::new(Cyclone::serve(&path).keeping(dir));
    // Fifteen at once, in whatever order they arrive: no place frees before
    // the sleeps end (6 s), so whichever comes last waits past the queue's
    // timeout (2 s) and is refused, and only it.
    let sleepers: Vec<_> = (0..15).map(|_| get(&server, "/sleep?ms=6000")).collect();
    let mut statuses: Vec<u16> = sleepers.into_iter().map(|s| s.join().unwrap().0).collect();
    statuses.sort();
    assert_eq!(statuses, [[200; 14].as_slice(), &[503]].concat());
    assert_eq!(server.get("/hello").status, 200);
}

#[test]
fn a_response_body_holds_its_place_in_a_reused_instance_until_sent() {
    let (dir, path) = manifest(&format!(
        "[server]\nqueue_timeout_ms = 10000\n\
         [apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\nmax_instances = 1\n\
         instance_reuse = {{ max_concurrent = 1, max_requests = 100 }}\n",
        components::WASIP3_PROBE
    ));
    let server = Cyclone::serve(&path).keeping(dir);
    // The head comes at once, and the three chunks 300 ms apart: once the
    // head is here, the body has about 600 ms more to go.
    let mut streamer = server.connect();
    streamer
        .write_all(b"GET /chunks?n=3&ms=300 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = read_until(&mut streamer, b"\r\n\r\n");
    let (status, _, waited) = get(&server, "/hello").join().unwrap();
    assert_eq!(status, 200);
    streamer.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    for i in 0..3 {
        assert!(answer.contains(&format!("chunk {i}\n")), "{answer}");
    }
    // The one place was taken until the body was sent.
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
}

#[test]
fn a_trap_in_a_reused_instance_fails_only_the_requests_inside_it() {
    let (dir, path) = manifest(&format!(
        "[apps.shared]\ncomponent = {:?}\nroutes = [\"/shared/...\"]\nmax_instances = 1\n\
         instance_reuse = {{ max_concurrent = 8 }}\n\
         [apps.other]\ncomponent = {:?}\nroutes = [\"/...\"]\ninstance_reuse = {{}}\n",
        components::WASIP3_PROBE,
        components::WASIP3_PROBE,
    ));
    let server = Arc::new(Cyclone::serve(&path).keeping(dir));
    assert_eq!(server.get("/shared/count").body, "1\n");
    let other = get(&server, "/sleep?ms=1500");
    let inside: Vec<_> = (0..2)
        .map(|_| get(&server, "/shared/sleep?ms=3000&say=1"))
        .collect();
    assert!(server.wait_for_log_count("sleeping 3000 ms", 2, Duration::from_secs(10)));
    assert_eq!(server.get("/shared/trap").status, 500);
    for request in inside {
        let (status, _, elapsed) = request.join().unwrap();
        assert_eq!(status, 500, "a request inside the trapped instance fails");
        assert!(elapsed < Duration::from_millis(2_900), "{elapsed:?}");
    }
    assert_eq!(
        other.join().unwrap().0,
        200,
        "another app's instance goes on"
    );
    assert_eq!(
        server.get("/shared/count").body,
        "1\n",
        "the next request gets a new instance"
    );
}

#[test]
fn a_guest_blocked_in_a_synchronous_call_is_ended_by_its_timeout_and_holds_only_its_instance() {
    let (dir, path) = manifest(&format!(
        "[apps.blocking]\ncomponent = {:?}\nroutes = [\"/blocking/...\"]\nmax_instances = 1\n\
         timeout_ms = 4000\ninstance_reuse = {{ max_concurrent = 4, max_requests = 100 }}\n\
         [apps.other]\ncomponent = {:?}\nroutes = [\"/...\"]\ninstance_reuse = {{}}\n",
        components::WASIP3_PROBE,
        components::WASIP3_PROBE,
    ));
    let server = Arc::new(Cyclone::serve(&path).keeping(dir));
    // The guest's task stops inside `wait-for`, lowered synchronously.
    let blocked = get(&server, "/blocking/block?ms=20000&say=1");
    assert!(server.wait_for_log("blocking 20000 ms", Duration::from_secs(10)));
    let started = Instant::now();
    let other = server.get("/sleep?ms=100");
    assert_eq!(other.status, 200, "another app's instance goes on");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A request handed to the blocked instance waits behind the call, and
    // its own timeout ends it.
    let behind = server.get("/blocking/hello");
    assert_eq!(behind.status, 504, "{}", behind.body);
    let (status, _, elapsed) = blocked.join().unwrap();
    assert_eq!(status, 504);
    assert!(elapsed < Duration::from_secs(12), "{elapsed:?}");
    // Its instance ends with it; the app's one place is free again.
    let started = Instant::now();
    let next = server.get("/blocking/block?ms=100");
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.body, "blocked 100 ms\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_error_code_answers_500_and_a_reused_instance_serves_on() {
    for reuse in ["", "instance_reuse = { max_concurrent = 1 }"] {
        // One instance at a time, one request in it, and a timeout far
        // past the client's: a request that kept its place in the instance
        // after its answer would keep the next one waiting.
        let server = probe(&format!("max_instances = 1\ntimeout_ms = 60000\n{reuse}"));
        assert_eq!(server.get("/count").body, "1\n");
        let reply = server.get("/error-code");
        assert_eq!(reply.status, 500, "{reuse}: {}", reply.body);
        assert!(
            server.wait_for_log("guest answered with error", Duration::from_secs(5)),
            "{reuse}: {:?}",
            server.log()
        );
        let started = Instant::now();
        let count = server.get("/count");
        assert_eq!(count.status, 200, "{reuse}: {}", count.body);
        assert!(started.elapsed() < Duration::from_secs(5), "{reuse}");
        let expected = if reuse.is_empty() { "1\n" } else { "3\n" };
        assert_eq!(count.body, expected, "{reuse}: the instance serves on");
    }
}

#[test]
fn a_reused_instance_gives_each_request_its_own_timeout_and_cpu_budget() {
    let server = Arc::new(probe(
        "max_instances = 1\ntimeout_ms = 1000\ncpu_budget_ms = 400\n\
         instance_reuse = { max_concurrent = 4, max_requests = 100 }",
    ));
    assert_eq!(server.get("/count").body, "1\n");
    let slow = get(&server, "/sleep?ms=5000&say=1");
    assert!(server.wait_for_log("sleeping 5000 ms", Duration::from_secs(10)));
    let quick = server.get("/sleep?ms=100");
    assert_eq!(quick.status, 200, "{}", quick.body);
    let (status, _, elapsed) = slow.join().unwrap();
    assert_eq!(status, 504);
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    // Three requests of 250 ms of CPU each, one after the other: each has
    // its own 400 ms, so none is stopped. One over it is.
    for _ in 0..3 {
        let reply = server.get("/burn?ms=250");
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(server.get("/burn?ms=2000").status, 503);
    assert_eq!(server.get("/hello").status, 200);
}

#[test]
fn a_guest_busy_in_host_calls_is_stopped_by_its_cpu_budget_or_its_timeout() {
    for reuse in ["", "instance_reuse = {}"] {
        // `/burn` loops on the clock's `now`: most of its time is spent in
        // those host calls, which count as its CPU time.
        let server = probe(&format!("cpu_budget_ms = 400\n{reuse}"));
        assert_eq!(server.get("/burn?ms=100").status, 200);
        let started = Instant::now();
        assert_eq!(server.get("/burn?ms=5000").status, 503, "{reuse}");
        assert!(started.elapsed() < Duration::from_secs(4), "{reuse}");
        assert_eq!(server.get("/hello").status, 200);

        // With CPU to spare, the timeout stops it, though a busy guest
        // keeps the store's event loop from polling timers inside it.
        let server = probe(&format!(
            "cpu_budget_ms = 60000\ntimeout_ms = 1000\n{reuse}"
        ));
        let started = Instant::now();
        assert_eq!(server.get("/burn?ms=5000").status, 504, "{reuse}");
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(4), "{reuse} {elapsed:?}");
        assert_eq!(server.get("/hello").status, 200);
    }
}

#[test]
fn a_component_built_for_a_wasi_03_release_candidate_is_refused_naming_what_it_wanted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rc.wasm");
    let component = wat::parse_str(
        r#"(component
            (import "wasi:http/types@0.3.0-rc-2025-09-16" (instance (export "f" (func))))
            (core module $m (func (export "handle")))
            (core instance $i (instantiate $m))
            (func $handle (canon lift (core func $i "handle")))
            (instance $handler (export "handle" (func $handle)))
            (export "wasi:http/handler@0.3.0-rc-2025-09-16" (instance $handler))
        )"#,
    )
    .expect("a valid component");
    std::fs::write(&path, component).unwrap();
    for names in [
        "rc.wasm: built for a WASI 0.3 release candidate; cyclone provides WASI 0.3.0",
        "wasi:http/types@0.3.0-rc-2025-09-16",
    ] {
        crate::serve::assert_refuses(&["serve".as_ref(), path.as_os_str()], names);
    }
}

#[test]
fn instance_reuse_is_checked_and_ignored_with_a_warning_on_wasi_02_apps() {
    for (setting, names) in [
        (
            "instance_reuse = { max_requests = 0 }",
            "instance_reuse: max_requests and max_concurrent must be at least 1",
        ),
        (
            "instance_reuse = { max_request = 5 }",
            "unknown field `max_request`",
        ),
    ] {
        let (_dir, path) = manifest(&format!(
            "[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\n{setting}\n",
            components::WASIP3_PROBE
        ));
        crate::serve::assert_refuses(&["serve".as_ref(), path.as_os_str()], names);
    }
    let (dir, path) = manifest(&format!(
        "[apps.hello]\ncomponent = {:?}\nroutes = [\"/...\"]\ninstance_reuse = {{}}\n",
        components::HELLO
    ));
    let server = Cyclone::serve(&path).keeping(dir);
    assert_eq!(server.get("/").status, 200);
    assert!(server.wait_for_log(
        "instance_reuse applies to WASI 0.3 components only",
        Duration::from_secs(5)
    ));
}

#[test]
fn the_sdks_hello_builds_as_a_wasi_03_component() {
    let server = Cyclone::serve(components::HELLO_P3);
    for path in ["/", "/any/path"] {
        let reply = server.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body, "Hello, world!");
        assert_eq!(reply.header("content-length"), Some("13"));
    }
    assert!(server.wait_for_log("WASI 0.3 engine started", Duration::from_secs(10)));
    // The body is sent whole, so the host does not take the client for gone.
    assert!(
        !server.wait_for_log("client went away", Duration::from_millis(500)),
        "{:?}",
        server.log()
    );
}

#[test]
fn long_polls_wait_side_by_side_in_one_reused_instance() {
    use crate::chat_p3::{chat, finish, messages, post, start_poll};
    // One instance for every poll, taking 16 at once.
    let server = chat(&[
        (
            "{ route = \"/a/message/updates\", max_instances = 2000 }",
            "{ route = \"/a/message/updates\", max_instances = 1 }",
        ),
        (
            "timeout_ms = 60000",
            "timeout_ms = 60000\n\
             instance_reuse = { max_requests = 128, max_concurrent = 16, idle_timeout_ms = 1000 }",
        ),
    ]);
    let first = post(&server, "before");
    let polls: Vec<_> = (0..16).map(|_| start_poll(&server, Some(first))).collect();
    std::thread::sleep(Duration::from_millis(500));
    // A guest waiting for a message does not hold up the others in its
    // instance: one post answers all sixteen.
    let posted = Instant::now();
    let id = post(&server, "news");
    for poll in polls {
        assert_eq!(messages(&finish(poll)), [(id, "news".to_owned())]);
    }
    assert!(
        posted.elapsed() < Duration::from_secs(5),
        "{:?}",
        posted.elapsed()
    );
}

#[test]
fn apps_of_both_releases_need_room_for_two_pools_and_are_refused_plainly_without_it() {
    // Each release has its engine and its pool, which maps its fiber stacks
    // up front (one per slot for 0.2, three for 0.3): about 6 mappings per
    // instance for 0.2, 10 for 0.3 and 12 for both.
    let Some(available) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
    else {
        return; // not Linux: no such limit
    };
    let serve = |max_instances: u64, apps: &[(&str, &str)]| {
        let mut text = format!("[server]\nmax_instances = {max_instances}\n");
        for (i, (name, component)) in apps.iter().enumerate() {
            let route = if i + 1 == apps.len() {
                "/..."
            } else {
                "/p3/..."
            };
            text += &format!("[apps.{name}]\ncomponent = {component:?}\nroutes = [\"{route}\"]\n");
        }
        manifest(&text)
    };
    let max_instances = (available - 2_000) / 11;
    assert!(
        max_instances < 200_000,
        "vm.max_map_count = {available} is too high for this test"
    );
    let (_dir, path) = serve(
        max_instances,
        &[("p3", components::WASIP3_PROBE), ("p2", components::PROBE)],
    );
    crate::serve::assert_refuses(
        &["serve".as_ref(), path.as_os_str()],
        "WASI 0.2 and 0.3 apps side by side",
    );
    // One release alone fits.
    let (_dir, path) = serve(max_instances, &[("p3", components::WASIP3_PROBE)]);
    let server = Cyclone::serve(&path);
    assert_eq!(server.get("/hello").body, "hello from wasip3\n");
    // A count that fits a 0.2 pool but not a 0.3 one (when the 0.2 pool's
    // address space, 8 GiB a slot, fits in the process's too).
    let max_instances = (available - 2_000) / 8;
    if max_instances > 12_000 {
        return;
    }
    let (_dir, path) = serve(max_instances, &[("p3", components::WASIP3_PROBE)]);
    crate::serve::assert_refuses(&["serve".as_ref(), path.as_os_str()], "WASI 0.3 apps: ");
    let (_dir, path) = serve(max_instances, &[("p2", components::PROBE)]);
    assert_eq!(Cyclone::serve(&path).get("/uri").status, 200);
}
