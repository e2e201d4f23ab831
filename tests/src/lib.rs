//! Harness for cyclone's integration tests: starts the real `cyclone` binary
//! on port 0, reads the address it prints, talks to it with a real HTTP
//! client, and kills it on drop.
//!
//! The binary is `target/<profile>/cyclone` beside the test executable (build
//! it with `cargo build -p cyclone-host`), or `$CYCLONE_BIN` when set.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Paths of the guest components built by `build.rs`, one constant each.
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/components.rs"));
}

pub mod services;
pub mod ws;

/// Reads `stream` until what came holds `needle`, and returns all of it.
/// Panics when the connection ends first.
pub fn read_until(stream: &mut impl std::io::Read, needle: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut buf).expect("reading from cyclone");
        assert!(
            n > 0,
            "the connection closed before {:?}: {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    seen
}

/// How long to wait for the server to start (it may compile components).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The `cyclone` binary under test.
pub fn cyclone_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CYCLONE_BIN") {
        return bin.into();
    }
    // target/<profile>/deps/<test-exe> → target/<profile>/cyclone
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in target/<profile>/deps")
        .join("cyclone");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p cyclone-host` before the tests",
        bin.display()
    );
    bin
}

/// The compile cache the tests share: `target/<profile>/test-compile-cache`.
/// Entries name the engine and component they were made for, and are
/// written to a temporary file and renamed, so concurrent servers can share
/// it; tests about the cache itself use folders of their own.
pub fn shared_cache() -> &'static Path {
    static CACHE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| {
        let dir = cyclone_bin()
            .parent()
            .expect("the binary is in target/<profile>")
            .join("test-compile-cache");
        std::fs::create_dir_all(&dir).expect("creating the shared compile cache");
        dir
    })
}

/// Lines the server wrote to stderr, shared with the thread reading them.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// A running `cyclone serve`, killed on drop.
pub struct Cyclone {
    child: Child,
    addr: String,
    log: Arc<Log>,
    agent: ureq::Agent,
    /// A folder (the manifest's, with its data) removed only after the server.
    folder: Option<tempfile::TempDir>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The whole `Set-Cookie` header that sets cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .find(|v| v.split_once('=').is_some_and(|(n, _)| n.trim() == name))
    }

    /// The value `Set-Cookie` gives cookie `name` (as sent, still encoded).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        let header = self.set_cookie(name)?;
        let (_, rest) = header.split_once('=')?;
        Some(rest.split(';').next().unwrap_or(""))
    }
}

impl Cyclone {
    /// Starts `cyclone serve --listen 127.0.0.1:0 PATH` with the compile
    /// cache the tests share, so each component is compiled once per run
    /// of the tests rather than once per test.
    pub fn serve(path: impl AsRef<OsStr>) -> Self {
        Self::serve_with_cache(path, shared_cache())
    }

    /// Like [`Cyclone::serve`], with `env` added to the server's environment.
    pub fn serve_with_env(path: impl AsRef<OsStr>, env: &[(&str, &str)]) -> Self {
        Self::start(path, shared_cache(), env)
    }

    /// Like [`Cyclone::serve`], with the compile cache in `cache`.
    pub fn serve_with_cache(path: impl AsRef<OsStr>, cache: &Path) -> Self {
        Self::start(path, cache, &[])
    }

    /// Like [`Cyclone::serve`], with the compile cache in `cache` and `env`
    /// added to the server's environment.
    pub fn start(path: impl AsRef<OsStr>, cache: &Path, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(cyclone_bin());
        command
            .arg("serve")
            .arg(path)
            .args(["--listen", "127.0.0.1:0", "--cache-dir"])
            .arg(cache)
            .envs(env.iter().copied());
        Self::launch(command)
    }

    /// Runs `command` (a `cyclone` command line that serves, such as `up`
    /// with `--listen 127.0.0.1:0`), logging at `info`, until it says where
    /// it listens.
    pub fn launch(mut command: Command) -> Self {
        if !command.get_envs().any(|(key, _)| key == "CYCLONE_LOG") {
            command.env("CYCLONE_LOG", "info");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting cyclone");

        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[cyclone] {line}");
                    log.lines.lock().unwrap().push(line);
                    log.grew.notify_all();
                }
            }
        });
        let (first_line, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_line.send(lines.next());
            lines.for_each(drop);
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "cyclone printed no listening line ({other:?}, exit {status:?}); log:\n{}",
                    log.lines.lock().unwrap().join("\n")
                );
            }
        };
        let addr = line
            .strip_prefix("cyclone listening on http://")
            .or_else(|| line.strip_prefix("cyclone listening on https://"))
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .max_redirects(0)
            .max_redirects_will_error(false)
            .build()
            .into();
        Self {
            child,
            addr,
            log,
            agent,
            folder: None,
        }
    }

    /// Keeps `folder` (say, the temp folder of the manifest and its data)
    /// until this server is dropped.
    pub fn keeping(mut self, folder: tempfile::TempDir) -> Self {
        self.folder = Some(folder);
        self
    }

    /// `IP:PORT` the server listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://IP:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A plain TCP connection to the server, for raw HTTP; reads time out after 30 s.
    pub fn connect(&self) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(&self.addr).expect("connecting to cyclone");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("setting a read timeout");
        stream
    }

    /// Sends `request` as raw bytes on a new connection and returns everything
    /// the server answers. The answer is read while the request is still being
    /// written, so a server that answers early and closes (413, 431) is heard
    /// even though the rest of the write fails.
    pub fn exchange_raw(&self, request: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut stream = self.connect();
        let mut reader = stream.try_clone().expect("cloning the connection");
        let answer = std::thread::spawn(move || {
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&answer).into_owned()
        });
        // The server may stop reading; the rest of the write then fails.
        let _ = stream.write_all(request);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        answer.join().expect("the reading thread")
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Reply {
        read(self.agent.get(self.url(path)).call(), path)
    }

    /// GETs `path` until it answers `status`, at least `after` from now
    /// and for at most 10 s more: for a request that should find the
    /// server busy once requests sent from other threads have arrived. The
    /// last reply, whatever its status.
    pub fn get_once_busy(&self, path: &str, status: u16, after: Duration) -> Reply {
        self.send_until(status, after, |server| server.get(path))
    }

    /// Sends a request with `send` until it is answered `status`, at least
    /// `after` from now and for at most 10 s more: for a state the server
    /// reaches on its own time (a body read, a connection's memory freed).
    /// The last reply, whatever its status.
    pub fn send_until(&self, status: u16, after: Duration, send: impl Fn(&Self) -> Reply) -> Reply {
        std::thread::sleep(after);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = send(self);
            if reply.status == status || Instant::now() > deadline {
                return reply;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// POST `body` to `path`.
    pub fn post(&self, path: &str, body: &str) -> Reply {
        read(self.agent.post(self.url(path)).send(body), path)
    }

    /// `method` on `path` with `headers` and `body`.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body.to_owned()).expect("a valid request");
        read(self.agent.run(request), path)
    }

    /// GET `path` and read the body line by line, noting when each line
    /// arrived, counted from when the request was sent.
    pub fn get_lines_timed(&self, path: &str) -> Vec<(Duration, String)> {
        let sent = Instant::now();
        let mut response = self
            .agent
            .get(self.url(path))
            .call()
            .unwrap_or_else(|e| panic!("request to {path} failed: {e}"));
        BufReader::new(response.body_mut().as_reader())
            .lines()
            .map(|line| (sent.elapsed(), line.expect("reading a body line")))
            .collect()
    }

    /// Waits until a log line contains `needle`; false after `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if lines.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Waits until `n` log lines contain `needle`; false after `timeout`.
    pub fn wait_for_log_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if lines.iter().filter(|l| l.contains(needle)).count() >= n {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            lines = self.log.grew.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().clone()
    }

    /// The server process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading the server's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// CPU time the server process has used so far (user and system).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("reading the server's /proc stat");
        // Fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("a command name")
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf with a valid name has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Sends SIGHUP: the host reads its manifest again.
    pub fn hangup(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Kills the process with SIGKILL (no drain, no chance to flush) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping cyclone");
    }

    /// Sends SIGTERM, waits up to 30 s for the process to exit, asserts it
    /// exited 0, and returns how long that took.
    pub fn stop(&mut self) -> Duration {
        let signalled = Instant::now();
        self.terminate();
        let status = self
            .wait_exit(Duration::from_secs(30))
            .expect("cyclone exits after SIGTERM");
        assert!(status.success(), "exit status {status:?}");
        signalled.elapsed()
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("waiting for cyclone") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Cyclone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `method` on `path` at `addr` (`IP:PORT`, say a proxy's) with `headers`
/// and `body`, on a connection of its own.
pub fn request_at(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(body.to_owned()).expect("a valid request");
    read(agent.run(request), path)
}

fn read(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>, path: &str) -> Reply {
    let mut response = result.unwrap_or_else(|e| panic!("request to {path} failed: {e}"));
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    Reply {
        status: response.status().as_u16(),
        headers,
        body: response
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("reading body of {path}: {e}")),
    }
}

/// Runs `cyclone ARGS` to completion (it is expected to refuse to start) and
/// returns its exit status and stderr. A `cyclone` still running after two
/// minutes (it started serving instead) fails the test.
pub fn run_to_exit(args: &[&OsStr]) -> (ExitStatus, String) {
    use std::io::Read;
    let mut child = Command::new(cyclone_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running cyclone");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for cyclone") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cyclone {args:?} was still running after {START_TIMEOUT:?}: {}",
                reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
}

/// The manifest `examples/NAME/cyclone.toml` in a temp folder, pointed at the
/// component the tests built (`component`) and with each `(from, to)` of
/// `edits` applied to its text.
pub fn example_manifest(
    name: &str,
    component: &str,
    edits: &[(&str, &str)],
) -> (tempfile::TempDir, PathBuf) {
    example_manifest_file(name, "cyclone.toml", component, edits)
}

/// Like [`example_manifest`], for the manifest `examples/NAME/FILE`.
pub fn example_manifest_file(
    name: &str,
    file: &str,
    component: &str,
    edits: &[(&str, &str)],
) -> (tempfile::TempDir, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let original = std::fs::read_to_string(root.join("examples").join(name).join(file))
        .expect("reading the example manifest");
    let release_build = format!("../../target/wasm32-wasip2/guest/{name}.wasm");
    assert!(
        original.contains(&release_build),
        "the example manifest names the release build {release_build}"
    );
    let mut text = original.replace(&release_build, component);
    for (from, to) in edits {
        assert!(text.contains(from), "the {name} manifest contains {from:?}");
        text = text.replace(from, to);
    }
    let (dir, path) = manifest(&text);
    // The example's static files, where its manifest expects them.
    let public = root.join("examples").join(name).join("public");
    if public.is_dir() {
        std::os::unix::fs::symlink(&public, dir.path().join("public")).expect("linking public/");
    }
    (dir, path)
}

/// Writes a manifest into a temp folder and returns both.
pub fn manifest(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cyclone.toml");
    std::fs::write(&path, text).expect("writing manifest");
    (dir, path)
}

/// A plain HTTP/1.1 server on `127.0.0.1:0` for guests to call: `GET
/// /delay/MS` answers `waited MS ms` after MS milliseconds; `GET /stall/MS`
/// sends the head and half the body, then the rest after MS milliseconds; any
/// other path answers at once with the path. Each closes its connection,
/// but under `/keep` (`/keep/delay/MS`, `/keep/x`): those keep the connection
/// open and start the body with `conn N` (N counts connections from 1).
/// One thread per connection; stops on drop.
pub struct Upstream {
    addr: std::net::SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<Connections>,
}

/// What an [`Upstream`] knows of its connections.
#[derive(Default)]
struct Connections {
    opened: std::sync::atomic::AtomicUsize,
    open: std::sync::atomic::AtomicUsize,
    /// Those kept open after a `/keep` request.
    kept: Mutex<Vec<std::net::TcpStream>>,
}

impl Upstream {
    /// Starts a server.
    pub fn start() -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding an upstream");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let connections = Arc::new(Connections::default());
        let counts = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let counts = counts.clone();
                let id = counts.opened.fetch_add(1, Ordering::SeqCst) + 1;
                counts.open.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    loop {
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            match stream.read(&mut byte) {
                                Ok(1) => head.push(byte[0]),
                                _ => {
                                    counts.open.fetch_sub(1, Ordering::SeqCst);
                                    return;
                                }
                            }
                        }
                        let head = String::from_utf8_lossy(&head);
                        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                        if let Some(Ok(ms)) = path.strip_prefix("/stall/").map(str::parse::<u64>) {
                            let _ = write!(
                                stream,
                                "HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nhello"
                            );
                            let _ = stream.flush();
                            std::thread::sleep(Duration::from_millis(ms));
                            let _ = write!(stream, "world");
                            break;
                        }
                        let keep = path.starts_with("/keep/");
                        let path = path.strip_prefix("/keep").unwrap_or(&path).to_owned();
                        let body = match path.strip_prefix("/delay/").map(str::parse::<u64>) {
                            Some(Ok(ms)) => {
                                std::thread::sleep(Duration::from_millis(ms));
                                format!("waited {ms} ms")
                            }
                            _ => path,
                        };
                        let (body, connection) = match keep {
                            true => (format!("conn {id} {body}"), "keep-alive"),
                            false => (body, "close"),
                        };
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: {connection}\r\n\r\n{body}",
                            body.len()
                        );
                        if !keep {
                            break;
                        }
                        if let Ok(clone) = stream.try_clone() {
                            counts.kept.lock().unwrap().push(clone);
                        }
                    }
                    // Closing: the peer sees the end before `open` drops.
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    counts.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            stop,
            connections,
        }
    }

    /// Connections accepted so far.
    pub fn connections_opened(&self) -> usize {
        self.connections
            .opened
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        self.connections
            .open
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits up to `limit` for `connections_open()` to be `n`; whether it was.
    pub fn wait_for_open(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.connections_open() != n {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Closes every connection kept open after a `/keep` request, as a
    /// server does when its keep-alive timeout passes.
    pub fn close_kept(&self) {
        for stream in self.connections.kept.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

impl Cyclone {
    /// GETs `path` from `n` threads at once; each reply's status and how long
    /// it took, and the time until the last one finished.
    pub fn get_concurrently(&self, path: &str, n: usize) -> (Vec<(u16, Duration)>, Duration) {
        let started = Instant::now();
        let url = self.url(path);
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let agent = self.agent.clone();
                let url = url.clone();
                std::thread::spawn(move || {
                    let sent = Instant::now();
                    let status = match agent.get(&url).call() {
                        Ok(mut response) => {
                            let _ = response.body_mut().read_to_string();
                            response.status().as_u16()
                        }
                        Err(_) => 0,
                    };
                    (status, sent.elapsed())
                })
            })
            .collect();
        let replies = threads.into_iter().map(|t| t.join().unwrap()).collect();
        (replies, started.elapsed())
    }
}
