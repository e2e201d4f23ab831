//! Guest stdout and stderr, written line by line to the host log.
//!
//! What one instance may log is bounded: a line is cut at [`MAX_LINE`]
//! bytes, and an instance may log `max_log_lines_per_sec` lines a second
//! (with a burst of as many). Lines past the rate are dropped and counted;
//! the count is logged when logging resumes and when the instance ends, so
//! a guest that logs in a loop costs the host a counter, not a log.
//!
//! Lines reach the host log's queue without waiting: the `cyclone` binary
//! writes that queue to stderr from a thread of its own.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// The longest line logged; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 4 << 10;

/// A guest output stream that logs each line, tagged with app and request id.
#[derive(Clone)]
pub struct GuestLog {
    stream: &'static str,
    rate: Arc<Mutex<Rate>>,
}

/// One instance's log allowance, a token bucket of lines, shared by its
/// stdout and stderr. When the instance ends it says what it dropped.
#[derive(Debug)]
pub struct Rate {
    app: Arc<str>,
    request_id: u64,
    per_sec: u32,
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

impl Rate {
    /// An allowance of `per_sec` lines a second, with a burst of as many,
    /// for one request of `app`.
    pub fn new(app: Arc<str>, request_id: u64, per_sec: u32) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            app,
            request_id,
            per_sec,
            tokens: f64::from(per_sec),
            refilled: Instant::now(),
            dropped: 0,
        }))
    }

    /// Takes one line's allowance; on success, also the count of lines
    /// dropped since the last one that was logged.
    fn take(&mut self) -> Option<u64> {
        let now = Instant::now();
        let rate = f64::from(self.per_sec);
        self.tokens =
            (self.tokens + now.duration_since(self.refilled).as_secs_f64() * rate).min(rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.dropped))
        } else {
            self.dropped += 1;
            None
        }
    }

    fn report_dropped(&self, dropped: u64) {
        if dropped > 0 {
            tracing::warn!(
                target: "guest",
                app = %self.app,
                request = self.request_id,
                "{dropped} guest log lines dropped: over max_log_lines_per_sec"
            );
        }
    }
}

impl Drop for Rate {
    fn drop(&mut self) {
        self.report_dropped(self.dropped);
    }
}

impl GuestLog {
    /// Output of `stream` ("stdout" or "stderr") under the instance's
    /// allowance `rate`.
    pub fn new(stream: &'static str, rate: Arc<Mutex<Rate>>) -> Self {
        Self { stream, rate }
    }

    fn emit(&self, line: &[u8], cut: bool) {
        let Ok(mut rate) = self.rate.lock() else {
            return;
        };
        let Some(dropped) = rate.take() else {
            return;
        };
        rate.report_dropped(dropped);
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        let cut = if cut { " [line cut]" } else { "" };
        tracing::info!(
            target: "guest",
            app = %rate.app,
            request = rate.request_id,
            stream = self.stream,
            "{line}{cut}"
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
            cut: false,
        })
    }
}

struct LineWriter {
    log: GuestLog,
    partial: Vec<u8>,
    /// The line being written is over [`MAX_LINE`]: drop the rest of it.
    cut: bool,
}

impl LineWriter {
    fn end_line(&mut self) {
        if !self.partial.is_empty() || self.cut {
            self.log.emit(&self.partial, self.cut);
        }
        self.partial.clear();
        self.cut = false;
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = MAX_LINE - self.partial.len();
        if bytes.len() > room {
            self.partial.extend_from_slice(&bytes[..room]);
            self.cut = true;
        } else {
            self.partial.extend_from_slice(bytes);
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
            self.append(&rest[..end]);
            self.end_line();
            rest = &rest[end + 1..];
        }
        self.append(rest);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.end_line();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.end_line();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_allows_a_burst_then_counts_what_it_drops() {
        let rate = Rate::new("app".into(), 1, 3);
        let mut rate = rate.lock().unwrap();
        assert_eq!(rate.take(), Some(0));
        assert_eq!(rate.take(), Some(0));
        assert_eq!(rate.take(), Some(0));
        assert_eq!(rate.take(), None);
        assert_eq!(rate.take(), None);
        std::thread::sleep(std::time::Duration::from_millis(400));
        assert_eq!(
            rate.take(),
            Some(2),
            "the drop count comes with the next line"
        );
        assert_eq!(rate.take(), None);
    }
}
