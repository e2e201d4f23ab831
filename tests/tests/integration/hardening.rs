//! What no single client can hold: instances of requests nobody waits for,
//! and the server's other resources under hostile clients.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cyclone_tests::{Cyclone, components, manifest, read_until};

/// The probe with `server` settings (TOML lines) and its defaults otherwise.
fn probe_with(server: &str) -> (tempfile::TempDir, Cyclone) {
    probe_with_app(server, "")
}

/// The probe with `server` and `app` settings (TOML lines).
fn probe_with_app(server: &str, app: &str) -> (tempfile::TempDir, Cyclone) {
    let (dir, path) = manifest(&format!(
        "[server]\n{server}\n\n[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\n{app}\n",
        components::PROBE
    ));
    let cyclone = Cyclone::serve(&path);
    (dir, cyclone)
}

/// Asserts that `GET /echo` is answered 200 within `limit`.
fn echo_answers_within(server: &Cyclone, limit: Duration) {
    let started = Instant::now();
    let reply = server.get("/echo");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let waited = started.elapsed();
    assert!(waited < limit, "answered after {waited:?}");
}

/// Sends a request head on a new raw connection and leaves it open.
fn send_head(server: &Cyclone, head: &str) -> TcpStream {
    let mut stream = server.connect();
    stream.write_all(head.as_bytes()).expect("sending a head");
    stream
}

#[test]
fn a_client_that_goes_away_releases_its_instance_at_once() {
    let (_dir, server) = probe_with("max_instances = 6\nqueue_timeout_ms = 10000");
    let polls: Vec<TcpStream> = (0..6)
        .map(|_| send_head(&server, "GET /sleep?ms=60000 HTTP/1.1\r\nhost: x\r\n\r\n"))
        .collect();
    assert!(server.wait_for_log_count("sleeping 60000 ms", 6, Duration::from_secs(30)));
    // Every instance is held; now all six clients give up.
    drop(polls);
    echo_answers_within(&server, Duration::from_secs(1));
    assert!(server.wait_for_log_count(
        "client went away before the response was complete; instance released",
        6,
        Duration::from_secs(5)
    ));
}

#[test]
fn connections_waiting_in_the_protocol_sniffer_cost_no_cpu() {
    let (_dir, server) = probe_with("header_read_timeout_ms = 30000");
    // Each sends the first byte of the HTTP/2 preface, then nothing.
    let idle: Vec<TcpStream> = (0..1000).map(|_| send_head(&server, "P")).collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = server.cpu_time();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let used = server.cpu_time().saturating_sub(before);
    let elapsed = started.elapsed();
    println!("1,000 waiting connections: {used:?} of CPU in {elapsed:?}");
    assert!(
        used < Duration::from_millis(300),
        "1,000 waiting connections used {used:?} of CPU in {elapsed:?}"
    );
    echo_answers_within(&server, Duration::from_millis(500));
    drop(idle);
}

#[test]
fn the_first_head_is_due_within_header_read_timeout_of_accept() {
    let (_dir, server) = probe_with("header_read_timeout_ms = 2000");
    // Both clients start like the HTTP/2 preface and pause; then one
    // dribbles the rest of the preface, the other turns out to send an
    // HTTP/1.1 head, a byte every 200 ms. Neither would finish for seconds:
    // both are closed 2 s after accept, not 2 s after the protocol is known.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let head = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
    for slow in [&preface[..], &head[..]] {
        let mut stream = server.connect();
        let started = Instant::now();
        stream.write_all(&slow[..1]).unwrap();
        std::thread::sleep(Duration::from_millis(1700));
        let mut closed_after = None;
        for byte in &slow[1..] {
            if stream.write_all(&[*byte]).is_err() {
                closed_after = Some(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // A write can still succeed just after the close; a read says for sure.
        let closed_after = closed_after.unwrap_or_else(|| {
            use std::io::Read;
            let mut buf = [0u8; 256];
            while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            started.elapsed()
        });
        assert!(
            closed_after < Duration::from_millis(3000),
            "{:?}: closed after {closed_after:?}",
            String::from_utf8_lossy(&slow[..4])
        );
    }
}

#[test]
fn a_cache_folder_others_can_write_is_refused_with_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(cache.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (status, stderr) = cyclone_tests::run_to_exit(&[
        "serve".as_ref(),
        components::HELLO.as_ref(),
        "--cache-dir".as_ref(),
        cache.path().as_os_str(),
    ]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains(&cache.path().display().to_string()),
        "{stderr}"
    );
    assert!(
        error[0].contains("can be written by other users"),
        "{stderr}"
    );
    assert!(error[0].contains("chmod go-w"), "{stderr}");
}

#[test]
fn a_cache_entry_is_loaded_only_for_the_component_it_was_made_from() {
    let cache = tempfile::tempdir().unwrap();
    for component in [components::HELLO, components::PROBE] {
        let server = Cyclone::serve_with_cache(component, cache.path());
        assert!(server.wait_for_log("compiled", Duration::from_secs(10)));
    }
    let mut entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    // Swap the two entries: each name now holds the other's machine code.
    entries.sort();
    let swap = cache.path().join("swap");
    std::fs::rename(&entries[0], &swap).unwrap();
    std::fs::rename(&entries[1], &entries[0]).unwrap();
    std::fs::rename(&swap, &entries[1]).unwrap();

    let server = Cyclone::serve_with_cache(components::HELLO, cache.path());
    assert_eq!(server.get("/").body, "Hello, world!");
    assert!(server.wait_for_log(
        "cache entry was not made from this component for this engine; recompiling",
        Duration::from_secs(5)
    ));
    assert!(server.wait_for_log("compiled", Duration::from_secs(5)));
    drop(server);
    // The entry was replaced by the right one.
    let server = Cyclone::serve_with_cache(components::HELLO, cache.path());
    assert!(server.wait_for_log("loaded from cache", Duration::from_secs(10)));
    assert_eq!(server.get("/").body, "Hello, world!");
}

#[test]
fn slow_uploads_hold_no_instance() {
    let (_dir, server) = probe_with("max_instances = 4\nqueue_timeout_ms = 10000");
    // Twice max_instances uploads that declare 1,000 bytes and send 10.
    let uploads: Vec<TcpStream> = (0..8)
        .map(|_| {
            send_head(
                &server,
                "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789",
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    echo_answers_within(&server, Duration::from_secs(1));
    // An upload that completes reaches the guest whole.
    let mut upload = uploads.into_iter().next().unwrap();
    upload.write_all(&[b'x'; 990]).unwrap();
    let whole = format!("0123456789{}", "x".repeat(990));
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    use std::io::Read;
    while !String::from_utf8_lossy(&answer).ends_with(&whole) {
        let n = upload.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
}

#[test]
fn a_stalled_body_gets_408() {
    let (_dir, server) = probe_with("body_read_timeout_ms = 1000");
    let mut stalled = send_head(
        &server,
        "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nhalf",
    );
    let started = Instant::now();
    let mut answer = String::new();
    use std::io::Read;
    stalled.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(server.wait_for_log("408: no body bytes arrived", Duration::from_secs(5)));
}

#[test]
fn buffered_bodies_are_bounded_in_total() {
    let (_dir, server) = probe_with("max_buffered_body_kb = 64\nqueue_timeout_ms = 500");
    // One upload has sent 60 KiB of 100 and pauses.
    let mut first = send_head(
        &server,
        "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 102400\r\n\r\n",
    );
    first.write_all(&[b'a'; 60 << 10]).unwrap();
    // A second body does not fit beside it, once the server has read the
    // first's 60 KiB.
    let second = "b".repeat(8 << 10);
    let reply = server.send_until(503, Duration::ZERO, |server| server.post("/echo", &second));
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(server.wait_for_log("503: request bodies in memory fill", Duration::from_secs(5)));
    // Requests without a body are not affected.
    assert_eq!(server.get("/echo").status, 200);
    // Once the first is gone, there is room again.
    drop(first);
    let third = "c".repeat(8 << 10);
    let reply = server.send_until(200, Duration::ZERO, |server| server.post("/echo", &third));
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Runs `f` on a single-threaded runtime with an HTTP/2 connection to `server`.
fn with_h2<F, Fut>(server: &Cyclone, f: F)
where
    F: FnOnce(
        hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
        tokio::task::JoinHandle<Result<(), hyper::Error>>,
    ) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        let connection = tokio::spawn(connection);
        f(sender, connection).await;
    });
}

#[test]
fn an_idle_http2_connection_is_closed_after_idle_timeout() {
    let (_dir, server) = probe_with("idle_timeout_secs = 1");
    let (echo, sleep) = (server.url("/echo"), server.url("/sleep?ms=2500"));
    with_h2(&server, |mut sender, connection| async move {
        let request = http::Request::get(echo)
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        drop(response);
        // Silent from now on (the client still answers pings).
        let started = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
        assert!(ended.is_ok(), "the server kept an idle connection for 10 s");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
            "closed after {waited:?}"
        );
    });
    // A long request is not idle: it is answered although it outlasts the timeout.
    with_h2(&server, |mut sender, _connection| async move {
        let request = http::Request::get(sleep)
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
    });
}

#[test]
fn http2_requests_get_the_same_header_cap_as_http1() {
    let (_dir, server) = probe_with("");
    let echo = server.url("/echo");
    let head = move |count: usize| {
        let mut request = http::Request::get(&echo);
        for i in 0..count {
            request = request.header(format!("x-h{i}"), "v");
        }
        request.body(http_body_util::Empty::new()).unwrap()
    };
    with_h2(&server, |mut sender, _connection| async move {
        let many = sender.send_request(head(1500)).await.unwrap();
        assert_eq!(many.status(), 431);
        let fine = sender.send_request(head(50)).await.unwrap();
        assert_eq!(fine.status(), 200);
    });
    // HTTP/1.1 stops at the same count.
    let mut request = String::from("GET /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for i in 0..150 {
        request.push_str(&format!("x-h{i}: v\r\n"));
    }
    request.push_str("\r\n");
    let answer = server.exchange_raw(request.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[test]
fn a_guest_that_floods_its_log_is_held_to_its_rate() {
    let (_dir, server) = probe_with_app("", "max_log_lines_per_sec = 50");
    let started = Instant::now();
    let reply = server.get("/log?n=100000");
    assert_eq!(reply.body, "logged");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(server.wait_for_log(
        "guest log lines dropped: over max_log_lines_per_sec",
        Duration::from_secs(5)
    ));
    // Every line is either logged or counted as dropped; the last count
    // comes when the instance ends, just after the response.
    let counted = || {
        let log = server.log();
        let flood = log.iter().filter(|l| l.contains("of a flood")).count();
        let dropped: u64 = log
            .iter()
            .filter_map(|l| {
                let (count, _) = l.split_once(" guest log lines dropped")?;
                count.rsplit(" ").next()?.parse::<u64>().ok()
            })
            .sum();
        (flood, dropped as usize)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while counted().0 + counted().1 < 100_001 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (flood, dropped) = counted();
    // A burst of 50, plus what the rate refills while the guest prints.
    assert!((40..=200).contains(&flood), "{flood} lines logged");
    // The flood and the long line after it: each logged or counted.
    assert_eq!(
        flood + dropped,
        100_001,
        "{dropped} dropped, {flood} logged"
    );
    // The next request has its own allowance, and long lines are cut.
    let _ = server.get("/log?n=1");
    assert!(server.wait_for_log_count("line 0 of a flood", 2, Duration::from_secs(5)));
    assert!(server.wait_for_log("[line cut]", Duration::from_secs(5)));
    let long = server
        .log()
        .into_iter()
        .find(|l| l.contains("[line cut]"))
        .expect("a cut line");
    assert!(long.len() < 5000, "{} bytes", long.len());
}

#[test]
fn a_client_that_leaves_mid_body_releases_its_instance_at_once() {
    let (_dir, path) = manifest(&format!(
        "[apps.tour]\ncomponent = {:?}\nroutes = [\"/...\"]\n",
        components::TOUR
    ));
    let server = Cyclone::serve(&path);
    // `/stream` writes five chunks 200 ms apart: leave after the first.
    let mut stream = send_head(&server, "GET /stream HTTP/1.1\r\nhost: x\r\n\r\n");
    read_until(&mut stream, b"chunk 1");
    drop(stream);
    assert!(server.wait_for_log(
        "client went away before the response was complete; instance released",
        Duration::from_secs(5)
    ));
    assert!(
        !server.log().iter().any(|l| l.contains("guest failed")),
        "stopping the guest is not its failure"
    );
}

#[test]
fn an_http2_reset_releases_the_instance_at_once() {
    let (_dir, server) = probe_with("max_instances = 1\nqueue_timeout_ms = 10000");
    let (slow, echo) = (server.url("/sleep?ms=60000"), server.url("/echo"));
    with_h2(&server, |mut sender, _connection| async move {
        let request = http::Request::get(slow)
            .body(http_body_util::Empty::new())
            .unwrap();
        let waiting = tokio::spawn(sender.send_request(request));
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Dropping the response future resets the stream.
        waiting.abort();
        let _ = waiting.await;
        let started = Instant::now();
        let request = http::Request::get(echo)
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    });
    assert!(server.wait_for_log(
        "client went away before the response was complete",
        Duration::from_secs(5)
    ));
}

#[test]
fn a_stalled_log_reader_does_not_stall_requests() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    // Nobody reads this server's stderr: once the pipe is full, a log
    // written in the request path would block its worker.
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(cyclone_tests::cyclone_bin())
        .args([
            "serve",
            components::PROBE,
            "--listen",
            "127.0.0.1:0",
            "--cache-dir",
        ])
        .arg(cache.path())
        .env("CYCLONE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting cyclone");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("cyclone listening on http://")
        .expect("the listening line")
        .to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let started = Instant::now();
    // Each request logs about 100 lines (its allowance) and a count of the
    // rest: far more than a pipe holds, all told.
    let stalled = (0..40).find_map(|i| {
        let outcome = agent
            .get(format!("http://{addr}/log?n=2000"))
            .call()
            .map(|r| r.status().as_u16());
        (!matches!(outcome, Ok(200))).then(|| format!("request {i}: {outcome:?}"))
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(stalled, None);
    println!("40 requests answered in {:?}", started.elapsed());
}

#[test]
fn an_app_that_streams_bodies_takes_its_instance_before_the_body() {
    let (_dir, server) = probe_with_app(
        "max_instances = 1\nqueue_timeout_ms = 500",
        "stream_request_body = true\nmax_body_kb = 1",
    );
    // The trade: a slow upload to such an app holds its instance.
    let mut upload = send_head(
        &server,
        "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nhalf",
    );
    let taken = server.get_once_busy("/echo", 503, Duration::from_millis(300));
    assert_eq!(taken.status, 503);
    upload.write_all(&[b'x'; 96]).unwrap();
    // A chunked body is still cut at the cap, as it streams.
    drop(upload);
    let mut chunked = String::from(
        "POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
    );
    for _ in 0..4 {
        chunked.push_str(&format!("200\r\n{}\r\n", "y".repeat(0x200)));
    }
    chunked.push_str("0\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    let answer = server.exchange_raw(chunked.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(server.wait_for_log("413: body over max_body_kb", Duration::from_secs(5)));
    assert_stopped_by_its_body(&server);
}

/// Asserts that a guest stopped where it read a request body that failed,
/// logged as the client's doing, not as a guest failure.
fn assert_stopped_by_its_body(server: &Cyclone) {
    assert!(server.wait_for_log(
        "guest stopped after its request body failed",
        Duration::from_secs(10)
    ));
    assert!(
        !server
            .log()
            .iter()
            .any(|line| line.contains("guest failed"))
    );
}

#[test]
fn an_upload_broken_off_stops_its_guest_without_a_guest_failure() {
    let (_dir, server) = probe_with_app(
        "max_instances = 1\nqueue_timeout_ms = 500",
        "stream_request_body = true",
    );
    let mut upload = send_head(
        &server,
        "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789",
    );
    upload.flush().unwrap();
    // The guest is reading the body, in the one instance, when the client
    // leaves.
    let busy = server.get_once_busy("/echo", 503, Duration::ZERO);
    assert_eq!(busy.status, 503);
    drop(upload);
    assert_stopped_by_its_body(&server);
    // Its place is free again.
    assert_eq!(server.get("/echo").status, 200);
}
