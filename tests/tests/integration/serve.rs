//! `cyclone serve` through the real binary: components from several
//! toolchains, manifests, failures, admission and shutdown.

use std::ffi::OsStr;
use std::time::Duration;

use cyclone_tests::{Cyclone, components, example_manifest, manifest, run_to_exit};

#[test]
fn hello_answers_every_path() {
    let server = Cyclone::serve(components::HELLO);
    for path in ["/", "/any/path", "/x?y=z"] {
        let reply = server.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body, "Hello, world!");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
}

#[test]
fn one_connection_carries_several_requests() {
    use std::io::{Read, Write};
    let server = Cyclone::serve(components::HELLO);
    let mut stream = server.connect();
    let request = "GET /one HTTP/1.1\r\nHost: test\r\n\r\n";
    let mut received = String::new();
    for round in 1..=3 {
        stream.write_all(request.as_bytes()).unwrap();
        while received.matches("Hello, world!").count() < round {
            let mut buf = [0; 4096];
            let n = stream.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "connection closed after {round} requests: {received}"
            );
            received.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert_eq!(received.matches("HTTP/1.1 200 OK").count(), 3, "{received}");
}

#[test]
fn http2_with_prior_knowledge_is_served() {
    use http_body_util::BodyExt;
    let server = Cyclone::serve(components::HELLO);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        for path in ["/a", "/b"] {
            let request = http::Request::get(server.url(path))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "Hello, world!");
        }
    });
}

#[test]
fn an_http2_preface_cut_in_two_is_still_http2() {
    use std::io::{Read, Write};
    let server = Cyclone::serve(components::HELLO);
    let mut stream = server.connect();
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    stream.write_all(&preface[..9]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stream.write_all(&preface[9..]).unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    // The server's first frame is its own SETTINGS; an HTTP/1.1 server would
    // answer 400 or hang up instead.
    let mut frame_header = [0; 9];
    stream.read_exact(&mut frame_header).unwrap();
    assert_eq!(
        frame_header[3], 4,
        "not an HTTP/2 SETTINGS frame: {frame_header:?}"
    );
}

#[test]
fn a_body_that_arrives_in_pieces_reaches_the_guest_whole() {
    use std::io::{Read, Write};
    let server = Cyclone::serve(components::PROBE);
    let mut stream = server.connect();
    // A guest that never wakes for the later pieces fails the test, not hangs it.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /echo?a=b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        .unwrap();
    for piece in ["first ", "second ", "third"] {
        std::thread::sleep(Duration::from_millis(150));
        write!(stream, "{:x}\r\n{piece}\r\n", piece.len()).unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.ends_with("POST /echo a=b\nfirst second third"),
        "{reply}"
    );
}

#[test]
fn the_hello_example_manifest_serves() {
    let (_dir, path) = example_manifest("hello", components::HELLO, &[]);
    let server = Cyclone::serve(&path);
    assert_eq!(server.get("/").body, "Hello, world!");
}

#[test]
fn components_from_other_toolchains_run_unchanged() {
    let raw = Cyclone::serve(components::WASIP2_RAW);
    let reply = raw.get("/raw?x=1");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "raw wasip2 at /raw?x=1\n")
    );

    let wstd = Cyclone::serve(components::WSTD_PLAIN);
    let reply = wstd.get("/w");
    assert_eq!((reply.status, reply.body.as_str()), (200, "wstd at /w\n"));

    // Built with the Spin SDK 5.x against wasi 0.2.0: linked by semver.
    let spin = Cyclone::serve(components::SPIN_HELLO);
    let reply = spin.get("/spin/x");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "spin at /spin/x\n")
    );
}

/// The interfaces of `cyclone:platform` the component at `path` imports.
fn platform_imports(path: &str) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut depth = 0;
    let mut imports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        match payload.unwrap() {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth -= 1,
            // The component's own imports, not those of what it nests.
            wasmparser::Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    let name = import.unwrap().name.name;
                    if name.starts_with("cyclone:platform/") {
                        imports.push(name.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    imports
}

#[test]
fn sdk_components_import_only_the_platform_interfaces_they_use() {
    // An application that names no cookie secret needs nothing of the
    // platform: it runs on any WASI host, and no instance links more.
    assert_eq!(platform_imports(components::LIMITS), Vec::<String>::new());
    // One that signs cookies reads its secret from an app variable.
    let tour = platform_imports(components::TOUR);
    assert!(
        tour.contains(&"cyclone:platform/variables@0.1.0".to_owned()),
        "{tour:?}"
    );
}

#[test]
fn requests_reach_the_guest_whole() {
    let server = Cyclone::serve(components::PROBE);
    let reply = server.post("/echo?a=b", "the body");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "POST /echo a=b\nthe body");
    assert_eq!(server.get("/missing").status, 404);
}

#[test]
fn a_trap_is_a_500_and_the_next_request_is_served() {
    let server = Cyclone::serve(components::PROBE);
    let reply = server.get("/panic");
    assert_eq!(reply.status, 500);
    assert!(
        reply.body.starts_with("Internal Server Error (request "),
        "{}",
        reply.body
    );
    assert!(
        !reply.body.contains("panic"),
        "no internals in the body: {}",
        reply.body
    );
    assert!(server.wait_for_log("the probe was asked to panic", Duration::from_secs(10)));
    assert!(server.wait_for_log("guest failed", Duration::from_secs(10)));
    assert_eq!(server.get("/echo").status, 200);
}

#[test]
fn a_trap_while_streaming_the_body_cuts_the_response_and_is_logged() {
    use std::io::{Read, Write};
    let server = Cyclone::serve(components::WASIP2_RAW);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /trap-mid-body HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let received = String::from_utf8_lossy(&received);
    assert!(received.starts_with("HTTP/1.1 200 OK"), "{received}");
    assert!(
        received.contains("raw wasip2 at /trap-mid-body"),
        "{received}"
    );
    assert!(
        !received.ends_with("0\r\n\r\n"),
        "the body must not look complete: {received:?}"
    );
    assert!(server.wait_for_log(
        "trapped after sending the response head",
        Duration::from_secs(10)
    ));
    assert!(server.wait_for_log("guest failed", Duration::from_secs(10)));
    assert_eq!(server.get("/next").status, 200);
}

#[test]
fn guest_output_goes_to_the_log_with_the_request_id() {
    let server = Cyclone::serve(components::PROBE);
    assert_eq!(server.get("/log").body, "logged");
    assert!(server.wait_for_log("hello from stdout", Duration::from_secs(10)));
    assert!(server.wait_for_log("hello from stderr", Duration::from_secs(10)));
    let log = server.log();
    let line = log
        .iter()
        .find(|l| l.contains("hello from stdout"))
        .unwrap();
    assert!(
        line.contains("request=") && line.contains("app=probe"),
        "{line}"
    );
}

#[test]
fn a_manifest_routes_paths_to_two_components() {
    let (_dir, path) = manifest(&format!(
        r#"
[apps.hello]
component = {hello:?}
routes = ["/hello", "/greet/..."]

[apps.probe]
component = {probe:?}
routes = ["/..."]
"#,
        hello = components::HELLO,
        probe = components::PROBE,
    ));
    let server = Cyclone::serve(&path);
    assert_eq!(server.get("/hello").body, "Hello, world!");
    assert_eq!(server.get("/greet/you").body, "Hello, world!");
    assert_eq!(server.get("/echo").body, "GET /echo \n");
    // Exact `/hello` does not cover `/hello/x`: it falls to the catch-all.
    assert_eq!(server.get("/hello/x").status, 404);
}

#[test]
fn no_route_is_a_404() {
    let (_dir, path) = manifest(&format!(
        "[apps.hello]\ncomponent = {:?}\nroutes = [\"/hello\"]\n",
        components::HELLO
    ));
    let server = Cyclone::serve(&path);
    let reply = server.get("/elsewhere");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body, "Not Found\n");
    assert_eq!(server.get("/hello").status, 200);
}

#[test]
fn component_paths_are_relative_to_the_manifest() {
    let (dir, path) =
        manifest("[apps.hello]\ncomponent = \"sub/hello.wasm\"\nroutes = [\"/...\"]\n");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::copy(components::HELLO, dir.path().join("sub/hello.wasm")).unwrap();
    let server = Cyclone::serve(&path);
    assert_eq!(server.get("/").body, "Hello, world!");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_and_exits_0() {
    let mut server = Cyclone::serve(components::PROBE);
    let url = server.url("/sleep?ms=1500");
    let in_flight = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.get(&url).call().expect("in-flight request");
        (
            response.status().as_u16(),
            response.body_mut().read_to_string().unwrap(),
        )
    });
    assert!(server.wait_for_log("sleeping 1500 ms", Duration::from_secs(30)));
    let waited = server.stop();
    assert_eq!(in_flight.join().unwrap(), (200, "slept 1500 ms".to_owned()));
    assert!(waited < Duration::from_secs(15), "exited after {waited:?}");
    // After the drain nothing listens any more.
    assert!(std::net::TcpStream::connect(server.addr()).is_err());
}

#[test]
fn the_drain_is_bounded_by_its_timeout() {
    let (_dir, path) = manifest(&format!(
        "[server]\ndrain_timeout_secs = 1\n\n[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\n",
        components::PROBE
    ));
    let mut server = Cyclone::serve(&path);
    let url = server.url("/sleep?ms=60000");
    let stuck = std::thread::spawn(move || ureq::get(&url).call().map(|r| r.status().as_u16()));
    assert!(server.wait_for_log("sleeping 60000 ms", Duration::from_secs(30)));
    let waited = server.stop();
    assert!(waited < Duration::from_secs(20), "exited after {waited:?}");
    assert!(server.wait_for_log("drain timeout passed", Duration::from_secs(5)));
    assert!(
        stuck.join().unwrap().is_err(),
        "the stuck request is cut off, not answered"
    );
}

#[test]
fn a_second_signal_during_the_drain_exits_at_once_with_status_1() {
    let mut server = Cyclone::serve(components::PROBE);
    let url = server.url("/sleep?ms=60000");
    let stuck = std::thread::spawn(move || ureq::get(&url).call().map(|r| r.status().as_u16()));
    assert!(server.wait_for_log("sleeping 60000 ms", Duration::from_secs(30)));
    server.terminate();
    assert!(server.wait_for_log("shutting down", Duration::from_secs(5)));
    // The drain would wait 10 s for the sleeping request; the second signal does not.
    let signalled = std::time::Instant::now();
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("cyclone exits at the second signal");
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(3));
    assert!(
        stuck.join().unwrap().is_err(),
        "the stuck request is cut off"
    );
}

#[test]
fn a_full_instance_pool_answers_503_with_retry_after() {
    let (_dir, path) = manifest(&format!(
        "[server]\nmax_instances = 1\nmax_queued = 0\n\n[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\n",
        components::PROBE
    ));
    let server = Cyclone::serve(&path);
    let url = server.url("/sleep?ms=2000");
    let busy = std::thread::spawn(move || ureq::get(&url).call().map(|r| r.status().as_u16()).ok());
    assert!(server.wait_for_log("sleeping 2000 ms", Duration::from_secs(30)));
    let reply = server.get("/echo");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(busy.join().unwrap(), Some(200));
    // The slot frees when the instance is dropped, just after its response
    // is sent: a request on its heels may still find it taken.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut status = server.get("/echo").status;
    while status == 503 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        status = server.get("/echo").status;
    }
    assert_eq!(status, 200, "served again once the slot is free");
}

#[test]
fn a_restart_loads_the_compiled_component_from_cache() {
    let cache = tempfile::tempdir().unwrap();
    let first = Cyclone::serve_with_cache(components::HELLO, cache.path());
    assert!(first.wait_for_log("compiled", Duration::from_secs(10)));
    drop(first);

    let second = Cyclone::serve_with_cache(components::HELLO, cache.path());
    assert!(second.wait_for_log("loaded from cache", Duration::from_secs(10)));
    assert!(
        !second.log().iter().any(|l| l.contains("compiled")),
        "{:?}",
        second.log()
    );
    assert_eq!(second.get("/").body, "Hello, world!");
}

#[test]
fn json_logs_are_one_object_a_line_and_compiling_logs_name_size_and_time() {
    let cache = tempfile::tempdir().unwrap();
    let server = Cyclone::start(
        components::HELLO,
        cache.path(),
        &[("CYCLONE_LOG_FORMAT", "json")],
    );
    assert!(server.wait_for_log("compiled", Duration::from_secs(10)));
    assert_eq!(server.get("/").body, "Hello, world!");
    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let compiled = lines
        .iter()
        .find(|line| line["fields"]["message"] == "compiled")
        .expect("a compiled line");
    assert!(
        compiled["fields"]["component"]
            .as_str()
            .unwrap()
            .ends_with("hello.wasm")
    );
    let size = std::fs::metadata(components::HELLO).unwrap().len();
    assert_eq!(compiled["fields"]["bytes"], size);
    assert!(compiled["fields"]["elapsed"].is_string(), "{compiled}");
    assert_eq!(compiled["level"], "INFO");
}

/// Asserts `cyclone ARGS` exits non-zero with one `error:` line containing `names`.
pub(crate) fn assert_refuses(args: &[&OsStr], names: &str) {
    let (status, stderr) = run_to_exit(args);
    assert!(
        !status.success(),
        "cyclone should refuse to start; stderr:\n{stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line; stderr:\n{stderr}");
    assert!(
        errors[0].contains(names),
        "the error names {names}: {}",
        errors[0]
    );
}

#[test]
fn a_core_module_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("core.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    assert_refuses(
        &["serve".as_ref(), module.as_os_str()],
        "core.wasm: not a WebAssembly component",
    );
}

#[test]
fn a_missing_component_is_refused_with_a_clear_error() {
    assert_refuses(
        &["serve".as_ref(), "/no/such/app.wasm".as_ref()],
        "/no/such/app.wasm: cannot read component",
    );
    let (_dir, path) = manifest("[apps.a]\ncomponent = \"gone.wasm\"\nroutes = [\"/...\"]\n");
    assert_refuses(
        &["serve".as_ref(), path.as_os_str()],
        "gone.wasm: cannot read component",
    );
}

#[test]
fn a_bad_manifest_is_refused_with_a_clear_error() {
    let (_dir, path) = manifest("[apps.a]\ncomponent = \"a.wasm\"\nroutez = [\"/\"]\n");
    assert_refuses(
        &["serve".as_ref(), path.as_os_str()],
        "cyclone.toml: invalid manifest: unknown field `routez`",
    );
    let (_dir, path) = manifest("this is not toml");
    assert_refuses(
        &["serve".as_ref(), path.as_os_str()],
        "cyclone.toml: invalid manifest",
    );
    assert_refuses(
        &["serve".as_ref(), "/no/cyclone.toml".as_ref()],
        "/no/cyclone.toml: cannot read manifest",
    );
}

#[test]
fn a_component_without_the_http_export_is_refused() {
    // The wstd component exports wasi:cli/run as well; a component exporting
    // nothing usable is the empty component.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    assert_refuses(
        &["serve".as_ref(), empty.as_os_str()],
        "empty.wasm: not an HTTP component: it exports neither `wasi:http/incoming-handler@0.2.x` (WASI 0.2) nor `wasi:http/handler@0.3.x` (WASI 0.3); its exports: none",
    );
}

#[test]
fn a_secret_from_the_environment_reaches_the_guest() {
    let (_dir, path) = manifest(&format!(
        "[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\n\
         [apps.probe.variables]\ngreeting = \"hello\"\nsecret = {{ env = \"PROBE_SECRET\" }}\n",
        components::PROBE
    ));
    let server = Cyclone::serve_with_env(&path, &[("PROBE_SECRET", "from the environment")]);
    assert_eq!(server.get("/variable?name=greeting").body, "hello");
    assert_eq!(
        server.get("/variable?name=secret").body,
        "from the environment"
    );
    assert_eq!(server.get("/variable?name=missing").status, 404);

    // Another app in the same host sees only its own variables.
    let (_dir2, two) = manifest(&format!(
        "[apps.a]\ncomponent = {probe:?}\nroutes = [\"/a/...\"]\n[apps.a.variables]\nname = \"a\"\n\
         [apps.b]\ncomponent = {probe:?}\nroutes = [\"/...\"]\n",
        probe = components::PROBE
    ));
    let server = Cyclone::serve(&two);
    assert_eq!(server.get("/variable?name=name").status, 404);
}

#[test]
fn an_unset_environment_variable_stops_start_up_with_a_clear_error() {
    let (_dir, path) = manifest(&format!(
        "[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\n\
         [apps.probe.variables]\nsecret = {{ env = \"CYCLONE_TEST_SURELY_UNSET\" }}\n",
        components::PROBE
    ));
    assert_refuses(
        &["serve".as_ref(), path.as_os_str()],
        "variable `secret` comes from the environment variable `CYCLONE_TEST_SURELY_UNSET`, which is not set",
    );
}

#[test]
fn an_internal_error_shows_the_client_nothing_and_logs_the_detail() {
    let server = Cyclone::serve(components::PROBE);
    let reply = server.get("/internal");
    assert_eq!(reply.status, 500);
    assert_eq!(reply.body, "500 Internal Server Error\n");
    assert!(server.wait_for_log("the database password is hunter2", Duration::from_secs(10)));
}

#[test]
fn c_code_in_a_component_allocates_with_the_sdk_heap() {
    // The SDK supplies C's `malloc` and its kin; C code linked into a
    // component (here called directly) gets aligned, zeroed, kept and
    // disjoint blocks from them, and its bad arguments are refused.
    let server = Cyclone::serve(components::PROBE);
    let reply = server.get("/c-heap");
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
}
