//! Deploys into the running host through its admin API: atomic swaps under
//! continuous load, sessions kept on their version, refusals that leave
//! the live version alone, rollback, and restarts that serve what was
//! deployed last.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cyclone_tests::services::free_port;
use cyclone_tests::ws::{open, text};
use cyclone_tests::{Cyclone, components, manifest, run_to_exit};
use tungstenite::Message;

const TOKEN: &str = "test-admin-token-0123456789";
const HELLO_BODY: &str = "Hello, world!";
const RAW_BODY: &str = "raw wasip2 at /\n";

/// A host with the admin API on `admin_port`: `site` (hello) at every path
/// and `ws` (the sockets guest) at `/echo`.
fn host(admin_port: u16) -> (tempfile::TempDir, std::path::PathBuf) {
    manifest(&format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = {{ env = \"CYCLONE_ADMIN_TOKEN\" }}\n\
         [apps.site]\ncomponent = {:?}\nroutes = [\"/...\"]\n\
         [apps.ws]\ncomponent = {:?}\nroutes = [\"/echo\"]\n",
        components::HELLO,
        components::SOCKETS,
    ))
}

fn serve(path: &std::path::Path) -> Cyclone {
    Cyclone::serve_with_env(path, &[("CYCLONE_ADMIN_TOKEN", TOKEN)])
}

/// An admin API call: status and body.
fn admin(port: u16, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(body.to_vec())
        .unwrap();
    let mut response = agent.run(request).expect("the admin API answers");
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, body)
}

fn deploy(port: u16, app: &str, component: &str) -> (u16, serde_json::Value) {
    let bytes = std::fs::read(component).unwrap();
    let (status, body) = admin(
        port,
        "PUT",
        &format!("/apps/{app}/component"),
        TOKEN,
        &bytes,
    );
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

fn apps(port: u16) -> serde_json::Value {
    let (status, body) = admin(port, "GET", "/apps", TOKEN, b"");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn app<'a>(apps: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    apps.as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no app {name} in {apps}"))
}

/// GET / on a connection of its own: status and body, or the error.
fn get_on_new_connection(addr: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {answer:?}"))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of head: {answer:?}"))?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, body.to_owned()));
    }
    // Chunked: SIZE CRLF DATA CRLF …, ending with a chunk of size 0.
    let mut rest = body;
    let mut decoded = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| format!("bad chunk: {body:?}"))?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(|e| format!("{e}: {body:?}"))?;
        if size == 0 {
            return Ok((status, decoded));
        }
        decoded.push_str(
            after
                .get(..size)
                .ok_or_else(|| format!("short chunk: {body:?}"))?,
        );
        rest = after.get(size + 2..).unwrap_or_default();
    }
}

#[test]
fn ten_deploys_under_load_swap_atomically_and_keep_sessions() {
    let admin_port = free_port();
    let (dir, path) = host(admin_port);
    let server = serve(&path).keeping(dir);
    // A session opened before the deploys, on the version live then.
    let mut session = open(&server, "/echo");
    session.send(Message::text("before")).unwrap();
    assert_eq!(text(&mut session), "before");

    let stop = AtomicBool::new(false);
    // (when the request was sent, when its answer was read, outcome)
    type Sample = (Instant, Instant, Result<(u16, String), String>);
    let samples: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    // (when the deploy's PUT was sent, when its 200 arrived, the body the
    // new version answers)
    let deploys: Mutex<Vec<(Instant, Instant, &str)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        // Keep-alive clients.
        for _ in 0..2 {
            scope.spawn(|| {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let url = server.url("/");
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let outcome =
                        agent
                            .get(&url)
                            .call()
                            .map_err(|e| e.to_string())
                            .and_then(|mut r| {
                                let status = r.status().as_u16();
                                let body =
                                    r.body_mut().read_to_string().map_err(|e| e.to_string())?;
                                Ok((status, body))
                            });
                    samples
                        .lock()
                        .unwrap()
                        .push((sent, Instant::now(), outcome));
                }
            });
        }
        // A client opening a connection for every request.
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let outcome = get_on_new_connection(server.addr());
                samples
                    .lock()
                    .unwrap()
                    .push((sent, Instant::now(), outcome));
            }
        });
        // Ten deploys, alternating two versions, while they run.
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..10 {
            let (component, body) = if i % 2 == 0 {
                (components::WASIP2_RAW, RAW_BODY)
            } else {
                (components::HELLO, HELLO_BODY)
            };
            let put = Instant::now();
            let (status, json) = deploy(admin_port, "site", component);
            assert_eq!(status, 200, "{json}");
            assert_eq!(json["live"]["version"], i + 2, "{json}");
            deploys.lock().unwrap().push((put, Instant::now(), body));
            // The websocket app too, between two builds that both echo.
            if i % 5 == 0 {
                let other = if i == 0 {
                    components::ECHO
                } else {
                    components::SOCKETS
                };
                assert_eq!(deploy(admin_port, "ws", other).0, 200);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed();
    let samples = samples.into_inner().unwrap();
    let deploys = deploys.into_inner().unwrap();
    let rate = samples.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{} requests in {elapsed:?} ({rate:.0}/s) through 10 deploys",
        samples.len()
    );
    assert!(rate >= 200.0, "only {rate:.0} requests/s");
    let mut checked = 0;
    for (sent, answered, outcome) in &samples {
        let (status, body) = outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("a request failed: {e}"));
        assert_eq!(*status, 200, "{body}");
        assert!(body == HELLO_BODY || body == RAW_BODY, "{body:?}");
        // A request sent after a deploy's 200 and answered before the next
        // deploy's PUT went out can only have met the version that deploy
        // made live. (Requests that overlap a deploy may get either.)
        let last = deploys.iter().rposition(|(_, done, _)| done <= sent);
        let next_put = deploys
            .get(last.map_or(0, |i| i + 1))
            .map(|(put, _, _)| *put);
        if next_put.is_some_and(|put| *answered > put) {
            continue;
        }
        let expected = last.map_or(HELLO_BODY, |i| deploys[i].2);
        assert!(
            body == expected,
            "a request sent {:?} after the start got {body:?}, not {expected:?}; deploys (PUT, 200) at {:?}",
            sent.duration_since(started),
            deploys
                .iter()
                .map(|(put, done, body)| (
                    put.duration_since(started),
                    done.duration_since(started),
                    *body
                ))
                .collect::<Vec<_>>()
        );
        checked += 1;
    }
    println!("{checked} answers between deploys checked against the live version");
    // How many fall between deploys depends on how long each deploy takes
    // on a busy machine; a thousand is plenty to catch a stale version.
    assert!(checked >= 1000, "{checked} of {}", samples.len());
    // Each version served some requests.
    assert!(
        samples
            .iter()
            .any(|(_, _, o)| o.as_ref().unwrap().1 == RAW_BODY)
    );

    // The session still echoes on the version it opened with, which
    // GET /apps shows as retiring with one instance.
    session.send(Message::text("after")).unwrap();
    assert_eq!(text(&mut session), "after");
    let ws = apps(admin_port);
    let ws = app(&ws, "ws");
    assert_eq!(ws["live"]["version"], 3);
    assert_eq!(ws["retiring"][0]["version"], 1, "{ws}");
    assert_eq!(ws["retiring"][0]["instances"], 1, "{ws}");
    // When it ends, its version is unloaded.
    session.close(None).unwrap();
    let _ = session.read();
    assert!(server.wait_for_log(
        "app version unloaded: no route leads to it and its last instance has ended app=ws version=1",
        Duration::from_secs(10)
    ));
    let ws = apps(admin_port);
    assert_eq!(app(&ws, "ws")["retiring"], serde_json::json!([]));
}

#[test]
fn a_component_that_cannot_serve_is_refused_and_the_live_version_kept() {
    let admin_port = free_port();
    let (dir, path) = host(admin_port);
    let server = serve(&path).keeping(dir);
    let not_wasm = std::env::temp_dir().join("cyclone-test-not-a-component.txt");
    std::fs::write(&not_wasm, "hello").unwrap();
    let plain_module = std::env::temp_dir().join("cyclone-test-core-module.wasm");
    std::fs::write(&plain_module, b"\0asm\x01\0\0\0").unwrap();
    // A valid component that exports nothing: no wasi:http/incoming-handler.
    let empty = std::env::temp_dir().join("cyclone-test-empty-component.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    for (file, why) in [
        (not_wasm.to_str().unwrap(), "not a component"),
        (plain_module.to_str().unwrap(), "not a component"),
        (empty.to_str().unwrap(), "incoming-handler"),
    ] {
        let (status, json) = deploy(admin_port, "site", file);
        assert_eq!(status, 400, "{file}: {json}");
        assert!(json["error"].as_str().unwrap().contains(why), "{json}");
        assert_eq!(server.get("/").body, HELLO_BODY);
    }
    let (status, json) = deploy(admin_port, "nope", components::HELLO);
    assert_eq!(status, 404, "{json}");
    // Without the token, or with another: 401, and nothing changes.
    let bytes = std::fs::read(components::WASIP2_RAW).unwrap();
    let (status, _) = admin(
        admin_port,
        "PUT",
        "/apps/site/component",
        "wrong-token-0123456789",
        &bytes,
    );
    assert_eq!(status, 401);
    assert_eq!(server.get("/").body, HELLO_BODY);
    let site = apps(admin_port);
    assert_eq!(app(&site, "site")["live"]["version"], 1);
    assert_eq!(app(&site, "site")["live"]["source"], "manifest");
}

#[test]
fn rollback_and_restart_serve_the_versions_they_should() {
    let admin_port = free_port();
    let (dir, path) = host(admin_port);
    let mut server = serve(&path);
    let (status, _) = admin(admin_port, "POST", "/apps/site/rollback", TOKEN, b"");
    assert_eq!(status, 400, "no previous version yet");
    assert_eq!(deploy(admin_port, "site", components::WASIP2_RAW).0, 200);
    assert_eq!(server.get("/").body, RAW_BODY);
    // A restart serves what was deployed last, and says so.
    server.stop();
    let mut server = serve(&path);
    assert_eq!(server.get("/").body, RAW_BODY);
    let site = apps(admin_port);
    let site = app(&site, "site");
    assert_eq!(site["live"]["version"], 2);
    assert_eq!(site["live"]["source"], "deployed");
    assert_eq!(site["previous"]["version"], 1);
    // The CLI speaks the API: rollback brings the manifest's version back.
    let url = format!("http://127.0.0.1:{admin_port}");
    let (status, output) = run_to_exit_with_env(&["rollback", "site", "--admin", &url]);
    assert!(status.success(), "{output}");
    assert_eq!(server.get("/").body, HELLO_BODY);
    let (status, output) =
        run_to_exit_with_env(&["deploy", "site", components::WASIP2_RAW, "--admin", &url]);
    assert!(status.success(), "{output}");
    assert!(output.contains("\"version\": 3"), "{output}");
    assert_eq!(server.get("/").body, RAW_BODY);
    let (status, output) = run_to_exit_with_env(&["apps", "--admin", &url]);
    assert!(
        status.success() && output.contains("\"name\": \"ws\""),
        "{output}"
    );
    // The data folder keeps the live and the previous version, no more.
    // (The raw build is live now; two more distinct builds make three.)
    assert_eq!(deploy(admin_port, "site", components::TOUR).0, 200);
    assert_eq!(deploy(admin_port, "site", components::PROBE).0, 200);
    let folder = path.parent().unwrap().join(".cyclone/data/deployed/site");
    let kept = std::fs::read_dir(&folder)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "wasm")
        })
        .count();
    assert_eq!(kept, 2, "{}", folder.display());
    server.stop();
    drop(dir);
}

/// Runs `cyclone ARGS` with the admin token in its environment: its exit
/// status, and what it printed on stdout and stderr.
fn run_to_exit_with_env(args: &[&str]) -> (std::process::ExitStatus, String) {
    let output = std::process::Command::new(cyclone_tests::cyclone_bin())
        .args(args)
        .env("CYCLONE_ADMIN_TOKEN", TOKEN)
        .output()
        .expect("running cyclone");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

#[test]
fn an_admin_listener_needs_a_token_and_a_loopback_address() {
    for (admin, expected) in [
        (
            "[admin]\nlisten = \"127.0.0.1:0\"\n",
            "admin.token is required with admin.listen",
        ),
        (
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"short\"\n",
            "admin.token must be at least 16 bytes long",
        ),
        (
            "[admin]\nlisten = \"0.0.0.0:0\"\ntoken = \"0123456789abcdef0123\"\n",
            "is not a loopback address",
        ),
        (
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = { env = \"CYCLONE_TEST_NO_SUCH_TOKEN\" }\n",
            "admin.token comes from the environment variable `CYCLONE_TEST_NO_SUCH_TOKEN`",
        ),
    ] {
        let (_dir, path) = manifest(&format!(
            "{admin}[apps.a]\ncomponent = {:?}\nroutes = [\"/\"]\n",
            components::HELLO
        ));
        let (status, output) = run_to_exit(&["serve".as_ref(), path.as_os_str()]);
        assert!(!status.success(), "{admin}");
        assert!(output.contains(expected), "{admin}: {output}");
        assert_eq!(output.trim().lines().count(), 1, "one line: {output}");
    }
}

#[test]
fn sighup_and_cyclone_reload_apply_a_changed_manifest_and_refuse_a_broken_one() {
    let admin_port = free_port();
    let (dir, path) = host(admin_port);
    let server = serve(&path).keeping(dir);
    assert_eq!(server.get("/raw").body, HELLO_BODY);
    let admin_table = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = {{ env = \"CYCLONE_ADMIN_TOKEN\" }}\n"
    );
    // Add `raw`, drop `ws`, cap `site`, and move the server: the apps
    // change at once, the server's address is only reported.
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n{admin_table}\
             [apps.site]\ncomponent = {:?}\nroutes = [\"/...\"]\nmax_instances = 50\n\
             [apps.raw]\ncomponent = {:?}\nroutes = [\"/raw\"]\n",
            components::HELLO,
            components::WASIP2_RAW,
        ),
    )
    .unwrap();
    server.hangup();
    assert!(server.wait_for_log("manifest reloaded", Duration::from_secs(30)));
    assert!(server.wait_for_log(
        "server.listen changed in the manifest: it takes effect at the next restart",
        Duration::from_secs(5)
    ));
    assert_eq!(server.get("/raw").body, "raw wasip2 at /raw\n");
    assert_eq!(server.get("/").body, HELLO_BODY);
    let listed = apps(admin_port);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["raw", "site"]);
    assert_eq!(
        app(&listed, "site")["live"]["version"],
        2,
        "a changed app gets a new version"
    );

    // A broken manifest: refused with the start-up error, and nothing changes.
    std::fs::write(&path, "[apps.site]\ncomponent = 7\n").unwrap();
    server.hangup();
    assert!(server.wait_for_log(
        "reload refused, the running configuration is kept",
        Duration::from_secs(10)
    ));
    assert!(server.wait_for_log(&path.display().to_string(), Duration::from_secs(1)));
    assert_eq!(server.get("/raw").body, "raw wasip2 at /raw\n");

    // `cyclone reload` does the same through the admin API, and says what changed.
    std::fs::write(
        &path,
        format!(
            "{admin_table}[apps.site]\ncomponent = {:?}\nroutes = [\"/...\"]\nmax_instances = 50\n\
             [apps.raw]\ncomponent = {:?}\nroutes = [\"/raw2\"]\n",
            components::HELLO,
            components::WASIP2_RAW,
        ),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{admin_port}");
    let (status, output) = run_to_exit_with_env(&["reload", "--admin", &url]);
    assert!(status.success(), "{output}");
    let reloaded: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(reloaded["changed"], serde_json::json!(["raw"]));
    // Back to the address it runs on: nothing waits for a restart.
    assert_eq!(reloaded["needs_restart"], serde_json::json!([]));
    assert_eq!(server.get("/raw2").body, "raw wasip2 at /raw2\n");
    assert_eq!(server.get("/raw").body, HELLO_BODY);
    // Two apps on one route: refused, and the running routes kept.
    std::fs::write(
        &path,
        format!(
            "{admin_table}[apps.site]\ncomponent = {:?}\nroutes = [\"/...\"]\n\
             [apps.raw]\ncomponent = {:?}\nroutes = [\"/...\"]\n",
            components::HELLO,
            components::WASIP2_RAW,
        ),
    )
    .unwrap();
    let (status, output) = run_to_exit_with_env(&["reload", "--admin", &url]);
    assert!(!status.success());
    assert!(output.contains("declared twice"), "{output}");
    assert_eq!(server.get("/raw2").body, "raw wasip2 at /raw2\n");
    assert_eq!(app(&apps(admin_port), "raw")["live"]["version"], 2);
    assert_eq!(server.get("/").body, HELLO_BODY);
    // A broken one through the CLI: exit 1 and the reason.
    std::fs::write(&path, "nonsense").unwrap();
    let (status, output) = run_to_exit_with_env(&["reload", "--admin", &url]);
    assert!(!status.success());
    assert!(output.contains("invalid manifest"), "{output}");
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn metrics_count_requests_refusals_traps_sessions_and_deploys() {
    let admin_port = free_port();
    let (dir, path) = manifest(&format!(
        "[server]\nmax_instances = 20\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = {{ env = \"CYCLONE_ADMIN_TOKEN\" }}\n\
         [apps.limits]\ncomponent = {:?}\nroutes = [\"/...\"]\ncpu_budget_ms = 300\ntimeout_ms = 2000\n\
         max_memory_mb = 16\nmax_body_kb = 1\n\
         [apps.ws]\ncomponent = {:?}\nroutes = [\"/echo\", \"/plain\"]\n",
        components::LIMITS,
        components::SOCKETS,
    ));
    let server = serve(&path).keeping(dir);
    for _ in 0..3 {
        assert_eq!(server.get("/hello").status, 200);
    }
    assert_eq!(server.get("/spin?ms=5000").status, 503);
    assert_eq!(server.get("/sleep?ms=10000").status, 504);
    assert_eq!(server.get("/alloc?mb=64").status, 500);
    assert_eq!(server.post("/upload", &"x".repeat(2048)).status, 413);
    let mut socket = open(&server, "/echo");
    socket.send(Message::text("hi")).unwrap();
    assert_eq!(text(&mut socket), "hi");
    assert_eq!(deploy(admin_port, "limits", components::LIMITS).0, 200);
    let (status, text) = admin(admin_port, "GET", "/metrics", TOKEN, b"");
    assert_eq!(status, 200);
    let get = |name: &str, labels: &str| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name}{{{labels}}} in:\n{text}"))
    };
    assert_eq!(
        get("cyclone_requests_total", "app=\"limits\",class=\"2xx\""),
        3.0
    );
    assert!(get("cyclone_requests_total", "app=\"limits\",class=\"5xx\"") >= 3.0);
    assert_eq!(
        get(
            "cyclone_refusals_total",
            "app=\"limits\",cause=\"cpu_budget\""
        ),
        1.0
    );
    assert_eq!(
        get("cyclone_refusals_total", "app=\"limits\",cause=\"timeout\""),
        1.0
    );
    assert!(get("cyclone_refusals_total", "app=\"limits\",cause=\"memory\"") >= 1.0);
    assert_eq!(
        get("cyclone_refusals_total", "app=\"limits\",cause=\"body\""),
        1.0
    );
    assert!(get("cyclone_traps_total", "app=\"limits\"") >= 1.0);
    assert_eq!(
        get("cyclone_websocket_sessions_opened_total", "app=\"ws\""),
        1.0
    );
    assert_eq!(get("cyclone_websocket_sessions_open", "app=\"ws\""), 1.0);
    assert_eq!(get("cyclone_instances", "app=\"ws\""), 1.0);
    assert_eq!(
        get(
            "cyclone_deploys_total",
            "app=\"limits\",kind=\"deploy\",outcome=\"ok\""
        ),
        1.0
    );
    assert!(get("cyclone_compile_cache_lookups_total", "outcome=\"hit\"") >= 1.0);
    assert!(
        text.contains("cyclone_request_duration_seconds_bucket{le="),
        "{text}"
    );
    assert!(
        text.contains("cyclone_queued_requests{gate=\"server\"} 0"),
        "{text}"
    );
    // The token guards the metrics too.
    assert_eq!(
        admin(
            admin_port,
            "GET",
            "/metrics",
            "not-the-token-0123456789",
            b""
        )
        .0,
        401
    );
}

#[test]
fn a_wasi_03_component_deploys_over_a_wasi_02_one_and_rolls_back() {
    let admin_port = free_port();
    let (dir, path) = host(admin_port);
    let server = serve(&path).keeping(dir);
    assert_eq!(server.get("/").body, HELLO_BODY);
    let (status, json) = deploy(admin_port, "site", components::WASIP3_PROBE);
    assert_eq!(status, 200, "{json}");
    assert_eq!(server.get("/hello").body, "hello from wasip3\n");
    assert_eq!(server.get("/count").body, "1\n");
    let (status, body) = admin(admin_port, "POST", "/apps/site/rollback", TOKEN, b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.get("/").body, HELLO_BODY);
}
