//! Guest stdout and stderr, written line by line to the host log.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept before it is logged unfinished, so a guest cannot grow
/// host memory by writing without newlines.
const MAX_LINE: usize = 16 << 10;

/// A guest output stream that logs each line, tagged with app and request id.
#[derive(Clone)]
pub struct GuestLog {
    app: Arc<str>,
    request_id: u64,
    stream: &'static str,
}

impl GuestLog {
    /// Output of `stream` ("stdout" or "stderr") for one request of `app`.
    pub fn new(app: Arc<str>, request_id: u64, stream: &'static str) -> Self {
        Self {
            app,
            request_id,
            stream,
        }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        tracing::info!(
            target: "guest",
            app = %self.app,
            request = self.request_id,
            stream = self.stream,
            "{line}"
        );
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.clone(),
            partial: Vec::new(),
        })
    }
}

struct LineWriter {
    log: GuestLog,
    partial: Vec<u8>,
}

impl LineWriter {
    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            self.log.emit(&self.partial);
            self.partial.clear();
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut rest = buf;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            self.flush_partial();
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() >= MAX_LINE {
            self.flush_partial();
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_partial();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_partial();
    }
}
