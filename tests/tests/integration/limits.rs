//! Async I/O and per-request limits through `examples/aggregator`,
//! `examples/limits` and the probe: concurrent fetches, the outbound policy,
//! suspended requests, CPU budget, timeout, memory, body and header caps, and
//! what a guest cannot reach.

use std::io::{Read, Write};

use std::time::{Duration, Instant};

use cyclone_tests::{Cyclone, Upstream, components, example_manifest, manifest};

/// The aggregator (`component`, one of its builds) fetching `upstreams`
/// (comma-separated), each bounded by `timeout_ms`, allowed to reach
/// `allowed` (a TOML array).
fn aggregator(component: &str, upstreams: &str, timeout_ms: u64, allowed: &str) -> Cyclone {
    let (_dir, path) = manifest(&format!(
        "[apps.aggregator]\ncomponent = {:?}\nroutes = [\"/...\"]\nallowed_outbound_hosts = {allowed}\n\
         [apps.aggregator.variables]\nupstreams = {upstreams:?}\nupstream_timeout_ms = \"{timeout_ms}\"\n",
        component
    ));
    Cyclone::serve(&path)
}

/// The `results` of an aggregator reply, each as its JSON text.
fn results(body: &str) -> Vec<String> {
    let start = body.find("\"results\":[").expect("results") + "\"results\":[".len();
    body[start..body.len() - 2]
        .split("},{")
        .map(|s| s.trim_matches(['{', '}']).to_owned())
        .collect()
}

#[test]
fn the_aggregator_fetches_upstreams_concurrently() {
    fetches_concurrently(components::AGGREGATOR);
}

/// The same through the SDK's client in a WASI 0.3 build.
#[test]
fn the_aggregator_fetches_upstreams_concurrently_on_wasi_03() {
    fetches_concurrently(components::AGGREGATOR_P3);
}

fn fetches_concurrently(component: &str) {
    let upstream = Upstream::start();
    let url = upstream.url("/delay/300");
    let server = aggregator(
        component,
        &[url.as_str(); 3].join(","),
        5_000,
        &format!("[\"http://127.0.0.1:{}\"]", upstream.port()),
    );
    server.get("/aggregate"); // compile and warm up
    let started = Instant::now();
    let reply = server.get("/aggregate");
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = results(&reply.body);
    assert_eq!(results.len(), 3, "{}", reply.body);
    for result in &results {
        assert!(result.contains("\"status\":200"), "{result}");
        assert!(result.contains("\"bytes\":13"), "{result}"); // "waited 300 ms"
    }
    // Three 300 ms fetches one after another take 900 ms.
    assert!(
        elapsed < Duration::from_millis(800),
        "took {elapsed:?}: {}",
        reply.body
    );
}

#[test]
fn a_slow_upstream_times_out_while_the_others_succeed() {
    times_out_the_slow_one(components::AGGREGATOR);
}

/// The same through the SDK's client in a WASI 0.3 build.
#[test]
fn a_slow_upstream_times_out_while_the_others_succeed_on_wasi_03() {
    times_out_the_slow_one(components::AGGREGATOR_P3);
}

fn times_out_the_slow_one(component: &str) {
    let upstream = Upstream::start();
    let (fast, slow) = (upstream.url("/delay/300"), upstream.url("/delay/2000"));
    let server = aggregator(
        component,
        &format!("{fast},{slow},{fast}"),
        500,
        &format!("[\"http://127.0.0.1:{}\"]", upstream.port()),
    );
    let started = Instant::now();
    let reply = server.get("/aggregate");
    assert!(
        started.elapsed() < Duration::from_millis(1_800),
        "{:?}",
        started.elapsed()
    );
    let results = results(&reply.body);
    assert!(results[0].contains("\"status\":200"), "{}", results[0]);
    assert!(
        results[1].contains("\"error\":\"timed out after 500 ms\""),
        "{}",
        results[1]
    );
    assert!(results[2].contains("\"status\":200"), "{}", results[2]);
}

#[test]
fn denied_hosts_and_internal_addresses_are_error_values() {
    reports_denials(components::AGGREGATOR);
}

/// The same through the SDK's client in a WASI 0.3 build.
#[test]
fn denied_hosts_and_internal_addresses_are_error_values_on_wasi_03() {
    reports_denials(components::AGGREGATOR_P3);
}

fn reports_denials(component: &str) {
    let upstream = Upstream::start();
    let listed = upstream.url("/ok");
    let unlisted = format!("http://127.0.0.2:{}/ok", upstream.port());
    let by_name = format!("http://localhost:{}/ok", upstream.port());
    let server = aggregator(
        component,
        &format!("{listed},{unlisted}"),
        5_000,
        &format!("[\"http://127.0.0.1:{}\"]", upstream.port()),
    );
    let outcomes = results(&server.get("/aggregate").body);
    assert!(outcomes[0].contains("\"status\":200"), "{}", outcomes[0]);
    assert!(
        outcomes[1].contains("denied: not allowed by the app's allowed_outbound_hosts"),
        "{}",
        outcomes[1]
    );
    assert!(server.wait_for_log("outbound HTTP denied", Duration::from_secs(10)));

    // A wildcard never reaches internal addresses, by IP or by a name that
    // resolves to one.
    let wildcard = aggregator(
        component,
        &format!("{listed},{by_name}"),
        5_000,
        "[\"http://*:*\"]",
    );
    let started = Instant::now();
    let results = results(&wildcard.get("/aggregate").body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a denial never hangs"
    );
    for result in &results {
        assert!(result.contains("denied"), "{result}");
    }
    assert!(wildcard.wait_for_log(
        "which allowed_outbound_hosts does not name explicitly",
        Duration::from_secs(10)
    ));
}

/// The probe guest, allowed to reach `upstream` only.
fn probe_allowed_to(upstream: &Upstream) -> Cyclone {
    let (_dir, path) = manifest(&format!(
        "[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\nallowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\n",
        components::PROBE,
        upstream.port()
    ));
    Cyclone::serve(&path)
}

#[test]
fn ipv6_forms_of_internal_addresses_and_urls_with_credentials_are_refused() {
    let upstream = Upstream::start();
    let port = upstream.port();
    let (_dir, path) = manifest(&format!(
        "[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\n\
         allowed_outbound_hosts = [\"http://*:*\", \"http://127.0.0.1:{port}\"]\n",
        components::PROBE,
    ));
    let server = Cyclone::serve(&path);
    for host in [
        "[::ffff:0:7f00:1]",
        "[::127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::1]",
    ] {
        let reply = server.get(&format!("/fetch?url=http://{host}:{port}/secret"));
        assert_eq!(reply.status, 200);
        assert!(reply.body.starts_with("error: "), "{host}: {}", reply.body);
    }
    assert!(server.wait_for_log(
        "is the internal address 64:ff9b::7f00:1",
        Duration::from_secs(10)
    ));
    // Credentials would travel in the upstream's Host header: refused, even
    // for an upstream the list names.
    let reply = server.get(&format!(
        "/fetch?url=http://user:secret@127.0.0.1:{port}/secret"
    ));
    assert!(reply.body.starts_with("error: "), "{}", reply.body);
    assert!(server.wait_for_log("URLs with credentials", Duration::from_secs(10)));
    let ok = server.get(&format!("/fetch?url={}", upstream.url("/hello")));
    assert_eq!(ok.body, "200 /hello");
}

#[test]
fn a_spoofed_host_header_does_not_bypass_the_list() {
    let upstream = Upstream::start();
    let server = probe_allowed_to(&upstream);
    let allowed = format!("127.0.0.1:{}", upstream.port());
    let denied = format!("http://127.0.0.2:{}/secret", upstream.port());
    let reply = server.get(&format!("/fetch?url={denied}&host={allowed}"));
    assert_eq!(reply.status, 200);
    assert!(reply.body.starts_with("error: "), "{}", reply.body);
    // The guest may not set `Host` at all: the request never leaves.
    assert!(
        reply.body.contains("HeaderError::Forbidden"),
        "{}",
        reply.body
    );
    // The same call without the spoof reaches an allowed upstream.
    let ok = server.get(&format!("/fetch?url={}", upstream.url("/hello")));
    assert_eq!(ok.body, "200 /hello");
}

#[test]
fn an_upstream_that_stalls_mid_body_times_out_between_bytes() {
    let upstream = Upstream::start();
    let server = probe_allowed_to(&upstream);
    let quick = server.get(&format!(
        "/fetch?url={}&between_ms=2000",
        upstream.url("/stall/200")
    ));
    assert_eq!(quick.body, "200 helloworld");
    let started = Instant::now();
    let stalled = server.get(&format!(
        "/fetch?url={}&between_ms=300",
        upstream.url("/stall/5000")
    ));
    assert!(stalled.body.starts_with("error: "), "{}", stalled.body);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

fn limits() -> Cyclone {
    let (_dir, path) = example_manifest("limits", components::LIMITS, &[]);
    Cyclone::serve(&path)
}

#[test]
fn five_hundred_sleeping_requests_all_succeed_together() {
    let server = limits();
    let (replies, elapsed) = server.get_concurrently("/sleep?ms=1000", 500);
    let ok = replies.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(
        ok,
        500,
        "statuses: {:?}",
        replies.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    // Queued on two threads one after another they would take 250 s.
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
}

#[test]
fn spinning_guests_do_not_stall_others_and_stop_at_their_budget() {
    let server = limits();
    assert_eq!(server.get("/hello").body, "hello\n");
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url("/spin?ms=20000");
            std::thread::spawn(move || {
                let started = Instant::now();
                let reply = ureq::get(&url)
                    .config()
                    .http_status_as_error(false)
                    .build()
                    .call();
                (reply.map(|r| r.status().as_u16()), started.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Both workers are running a spinner; /hello is still answered.
    for _ in 0..5 {
        let started = Instant::now();
        let reply = server.get("/hello");
        assert_eq!(reply.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "/hello took {:?}",
            started.elapsed()
        );
    }
    for spinner in spinners {
        let (status, elapsed) = spinner.join().unwrap();
        assert_eq!(status.unwrap(), 503);
        // The budget is 1 s of CPU; sharing the CPU it takes a little longer.
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    }
    assert!(server.wait_for_log("CPU budget", Duration::from_secs(10)));
    assert_eq!(server.get("/hello").status, 200);
}

#[test]
fn memory_timeout_and_size_limits_answer_their_status_and_spare_the_next_request() {
    let server = limits();
    assert_eq!(server.get("/alloc?mb=16").status, 200);

    let alloc = server.get("/alloc?mb=256");
    assert_eq!(alloc.status, 500);
    assert_eq!(server.get("/hello").status, 200);

    let started = Instant::now();
    let sleeper = server.get("/sleep?ms=20000");
    let elapsed = started.elapsed();
    assert_eq!(sleeper.status, 504);
    assert!(
        elapsed >= Duration::from_millis(2_900) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
    assert_eq!(server.get("/hello").status, 200);

    // A declared length over the cap is refused before the body is read (or
    // sent: the client waits for an answer first, as with `Expect: 100-continue`).
    let mut stream = server.connect();
    write!(
        stream,
        "POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        2 << 20
    )
    .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");
    let within = server.post("/upload", &"x".repeat(1000));
    assert_eq!(within.body, "1000 bytes\n");

    // A chunked body has no length to check up front: it is cut at the cap.
    let mut chunked =
        b"POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 << 10).as_bytes());
        chunked.extend_from_slice(&[b'y'; 64 << 10]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = server.exchange_raw(&chunked);
    assert!(
        reply.starts_with("HTTP/1.1 413"),
        "{}",
        &reply[..reply.len().min(200)]
    );

    let head = format!(
        "GET /hello HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let reply = server.exchange_raw(head.as_bytes());
    assert!(
        reply.starts_with("HTTP/1.1 431"),
        "{}",
        &reply[..reply.len().min(200)]
    );
    assert_eq!(server.get("/hello").status, 200);
}

#[test]
fn a_full_app_queue_is_a_503_with_retry_after() {
    let (_dir, path) = example_manifest(
        "limits",
        components::LIMITS,
        &[(
            "max_body_kb = 1024",
            "max_body_kb = 1024\nmax_instances = 2",
        )],
    );
    let path_text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("[server]\nmax_queued = 0\n{path_text}")).unwrap();
    let server = std::sync::Arc::new(Cyclone::serve(&path));
    assert_eq!(server.get("/hello").status, 200);
    let sleepers = std::thread::spawn({
        let server = server.clone();
        move || server.get_concurrently("/sleep?ms=2000", 2)
    });
    // Both instances are busy and nothing may wait: refused at once.
    let refused = server.get_once_busy("/hello", 503, Duration::from_millis(500));
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    let (replies, _) = sleepers.join().unwrap();
    assert!(
        replies.iter().all(|(status, _)| *status == 200),
        "{replies:?}"
    );
    assert_eq!(server.get("/hello").status, 200);
}

#[test]
fn a_guest_reaches_no_files_environment_or_sockets() {
    let server = limits();
    let reply = server.get("/escape");
    assert_eq!(reply.status, 200);
    for expected in [
        "\"file\":\"error: ",
        "\"home\":\"error: ",
        "\"socket\":\"error: ",
        "\"environment_variables\":0",
    ] {
        assert!(
            reply.body.contains(expected),
            "{expected} in {}",
            reply.body
        );
    }
    assert_eq!(server.get("/hello").status, 200);
}

#[test]
fn more_instances_than_the_kernel_can_map_are_refused_at_start_up() {
    let available: u64 = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .expect("a Linux machine")
        .trim()
        .parse()
        .unwrap();
    let too_many = available / 6 + 1_000;
    let (_dir, path) = manifest(&format!(
        "[server]\nmax_instances = {too_many}\n[apps.hello]\ncomponent = {:?}\nroutes = [\"/...\"]\n",
        components::HELLO
    ));
    crate::serve::assert_refuses(
        &["serve".as_ref(), path.as_os_str()],
        &format!("server.max_instances = {too_many} needs about"),
    );
}

#[test]
fn the_manifest_can_grant_a_read_only_folder_and_environment_variables() {
    let granted = tempfile::tempdir().unwrap();
    std::fs::write(granted.path().join("passwd"), "guest:x:1:1::/:/bin/false\n").unwrap();
    let (_dir, path) = manifest(&format!(
        "[apps.limits]\ncomponent = {:?}\nroutes = [\"/...\"]\n\
         files = {{ \"/etc\" = {:?} }}\nenvironment = {{ HOME = \"/home/guest\" }}\n",
        components::LIMITS,
        granted.path()
    ));
    let server = Cyclone::serve(&path);
    let reply = server.get("/escape");
    for expected in [
        "\"file\":\"read 26 bytes\"",
        "\"home\":\"HOME=/home/guest\"",
        "\"socket\":\"error: ",
        "\"environment_variables\":1",
    ] {
        assert!(
            reply.body.contains(expected),
            "{expected} in {}",
            reply.body
        );
    }
}

#[test]
fn a_granted_folder_that_does_not_exist_stops_start_up() {
    let (_dir, path) = manifest(&format!(
        "[apps.limits]\ncomponent = {:?}\nroutes = [\"/...\"]\nfiles = {{ \"/data\" = \"no-such-folder\" }}\n",
        components::LIMITS,
    ));
    crate::serve::assert_refuses(&["serve".as_ref(), path.as_os_str()], "files: `/data` = ");
}

#[test]
fn a_client_too_slow_to_send_its_head_is_disconnected() {
    let (_dir, path) = manifest(&format!(
        "[server]\nheader_read_timeout_ms = 500\n[apps.hello]\ncomponent = {:?}\nroutes = [\"/...\"]\n",
        components::HELLO
    ));
    let server = Cyclone::serve(&path);
    // One client sends part of its head, another nothing at all: both are
    // closed on the same clock.
    for (sent, start) in [
        ("a partial head", "GET / HTTP/1.1\r\nhost: x\r\n"),
        ("nothing", ""),
    ] {
        let mut stream = server.connect();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(start.as_bytes()).unwrap();
        let started = Instant::now();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
            "a client that sent {sent} was closed after {waited:?}"
        );
        assert!(!answer.contains("Hello, world!"), "{answer}");
    }
    assert_eq!(server.get("/").body, "Hello, world!");
}
