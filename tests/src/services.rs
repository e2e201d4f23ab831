//! Real services the tests start on free ports in temp folders: a
//! `redis-server` and nginx. Both must be installed (`.ci/run` installs
//! them); a missing one fails the test with a message saying what to install.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn spawn(command: &mut Command, what: &str, install: &str) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({e}); install it: {install}"))
}

/// A `redis-server` of its own: its port, its folder, append-only
/// persistence on so that a restart keeps what was written.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("a temp folder"),
        };
        redis.restart();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM: it writes what it holds and exits) and
    /// waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill with a live child's pid and a valid signal.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and folder.
    pub fn restart(&mut self) {
        self.stop();
        let child = spawn(
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port"])
                .arg(self.port.to_string())
                .arg("--dir")
                .arg(self.dir.path())
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "yes",
                    "--protected-mode",
                    "no",
                ]),
            "redis-server",
            "apt-get install redis-server",
        );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one inline command; the first line of the answer.
    pub fn command(&self, command: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "{command}\r\n").ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        Some(line.trim_end().to_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// nginx with a configuration of the test's, on a free port.
pub struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx (in the foreground: `config` says `daemon off;`) with
    /// `config`, in which `LISTEN` stands for its address and `UPSTREAMS`
    /// for one `server ADDR;` line per entry of `upstreams`.
    pub fn start(config: &str, upstreams: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temp folder");
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|addr| format!("server {addr};\n"))
            .collect();
        let config = config
            .replace("LISTEN", &format!("127.0.0.1:{port}"))
            .replace("UPSTREAMS", &servers);
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config).expect("writing nginx.conf");
        std::fs::create_dir_all(dir.path().join("logs")).expect("a logs folder");
        let child = spawn(
            Command::new(nginx_binary())
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&path)
                .args(["-e", "stderr", "-g", "pid nginx.pid;"]),
            "nginx",
            "apt-get install nginx",
        );
        let mut nginx = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let mut log = String::new();
                if let Some(mut stderr) = nginx.child.stderr.take() {
                    let _ = stderr.read_to_string(&mut log);
                }
                panic!("nginx exited ({status}): {log}");
            }
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so the master stops its workers too (SIGKILL would leave
        // them running, holding the port); SIGKILL only if it lingers.
        // SAFETY: kill with a live child's pid and a valid signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx is often in `/usr/sbin`, outside a user's `PATH`.
fn nginx_binary() -> PathBuf {
    [
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ]
    .iter()
    .map(Path::new)
    .find(|p| p.exists())
    .map_or_else(|| PathBuf::from("nginx"), Path::to_path_buf)
}
