//! The `[server]` table: process-wide settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::DEFAULT_LISTEN;

/// Process-wide settings: the `[server]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind (default `127.0.0.1:8080`); `--listen` overrides it.
    pub listen: SocketAddr,
    /// Worker threads, each with its own event loop and listening socket;
    /// 0 (the default) means one per CPU core.
    pub workers: usize,
    /// Component instances alive at once, process-wide (default 1000). The
    /// instance pool is sized from this; requests past it wait in the queue.
    pub max_instances: u32,
    /// Requests allowed to wait for a free instance (default 1000). Past it a
    /// request is answered 503 with `Retry-After` at once.
    pub max_queued: usize,
    /// How long a queued request waits for an instance before 503, in
    /// milliseconds (default 1000).
    pub queue_timeout_ms: u64,
    /// On SIGINT/SIGTERM, how long in-flight requests may run before the
    /// process exits anyway, in seconds (default 10).
    pub drain_timeout_secs: u64,
    /// Largest request head (request line and headers) in KiB (default 64,
    /// at least 8). A bigger one is answered 431.
    pub max_header_kb: u64,
    /// How long a client may take to send a request head, in milliseconds
    /// (default 10000), counted from accept for a connection's first
    /// request; then the connection is closed.
    pub header_read_timeout_ms: u64,
    /// How long a kept-alive connection (HTTP/1.1 or HTTP/2) may sit with no
    /// request in flight before it is closed, in seconds (default 60).
    /// HTTP/2 peers are also pinged at half this interval and dropped when
    /// they do not answer within 20 s. An idle HTTP/1.1 connection is
    /// closed sooner, after `header_read_timeout_ms`, since waiting for the
    /// next request is waiting for its head.
    pub idle_timeout_secs: u64,
    /// How long the host waits for the next bytes of a request body it is
    /// reading, in milliseconds (default 10000); past it the client gets 408.
    pub body_read_timeout_ms: u64,
    /// Request bodies the host may hold in memory at once, all requests
    /// together, in KiB (default 262144, 256 MiB). A body is read whole
    /// before the guest's instance is taken; when the bodies already read
    /// fill this, a new one waits up to `queue_timeout_ms` for room, then
    /// gets 503 with `Retry-After`.
    pub max_buffered_body_kb: u64,
    /// Where the host keeps its data, such as the SQLite file of the
    /// `default` key-value store, relative to the manifest's folder
    /// (default `.cyclone/data`). After loading it is set and absolute.
    pub data_dir: Option<PathBuf>,
    /// Serve HTTPS: `tls = { cert = "cert.pem", key = "key.pem" }`, PEM
    /// files relative to the manifest's folder (the certificate chain, leaf
    /// first, and its private key). HTTP/2 and HTTP/1.1 share the port,
    /// chosen by ALPN. SIGHUP reads both files again. Default: plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// The PEM files of the server's certificate: `[server] tls`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The leaf certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `data_dir` when the manifest does not set it, relative to its folder.
pub const DEFAULT_DATA_DIR: &str = ".cyclone/data";

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            workers: 0,
            max_instances: 1000,
            max_queued: 1000,
            queue_timeout_ms: 1000,
            drain_timeout_secs: 10,
            max_header_kb: 64,
            header_read_timeout_ms: 10_000,
            idle_timeout_secs: 60,
            body_read_timeout_ms: 10_000,
            max_buffered_body_kb: 256 * 1024,
            data_dir: None,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Worker threads to run: `workers`, or the CPU count when it is 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The queue wait as a `Duration`.
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }

    /// The drain timeout as a `Duration`.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// The request head cap in bytes.
    pub fn max_header_bytes(&self) -> usize {
        kib(self.max_header_kb)
    }

    /// The header read timeout as a `Duration`.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The idle timeout as a `Duration`.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The body read timeout as a `Duration`.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
}

/// `n` KiB in bytes, saturating.
pub(super) fn kib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 10)).unwrap_or(usize::MAX)
}
