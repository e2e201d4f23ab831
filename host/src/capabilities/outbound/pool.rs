//! One app's idle outbound connections, kept for its next requests to the
//! same upstream (scheme, host and port): no TCP or TLS handshake, no DNS
//! lookup. Bounded in number (`max_idle`, over all upstreams; past it the
//! longest idle is closed) and in time (`idle_timeout`, enforced by a task
//! that runs only while the pool holds a connection). A connection is closed
//! the moment the pool lets it go: dropping its `SendRequest` ends its task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;
use wasmtime_wasi_http::WasiBody;

use super::Upstream;
use crate::config::OutboundPool;

/// Idle connections of one app, by upstream.
#[derive(Debug)]
pub struct Pool {
    config: OutboundPool,
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    /// Each upstream's connections, longest idle first.
    by_upstream: HashMap<Upstream, Vec<Parked>>,
    count: usize,
    /// A task is closing connections as they expire.
    reaping: bool,
}

#[derive(Debug)]
struct Parked {
    sender: SendRequest<WasiBody>,
    since: Instant,
}

impl Pool {
    /// An empty pool keeping what `config` allows.
    pub fn new(config: OutboundPool) -> Arc<Self> {
        Arc::new(Self {
            config,
            idle: Mutex::new(Idle::default()),
        })
    }

    /// The most recently parked live connection to `upstream`, if any.
    pub fn take(&self, upstream: &Upstream) -> Option<SendRequest<WasiBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let idle = &mut *idle;
        let list = idle.by_upstream.get_mut(upstream)?;
        let expired_before = Instant::now() - self.config.idle_timeout();
        let mut found = None;
        while let Some(parked) = list.pop() {
            idle.count -= 1;
            if !parked.sender.is_closed() && parked.since > expired_before {
                found = Some(parked.sender);
                break;
            }
        }
        if list.is_empty() {
            idle.by_upstream.remove(upstream);
        }
        found
    }

    /// Keeps `sender` for the next request to `upstream`, closing the
    /// longest idle connection if the pool is full.
    pub fn put(self: &Arc<Self>, upstream: Upstream, sender: SendRequest<WasiBody>) {
        if self.config.max_idle == 0 || sender.is_closed() {
            return;
        }
        // The reaper needs a runtime; without one, keep nothing.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.count >= self.config.max_idle {
            idle.close_longest_idle();
        }
        idle.by_upstream.entry(upstream).or_default().push(Parked {
            sender,
            since: Instant::now(),
        });
        idle.count += 1;
        if !idle.reaping {
            idle.reaping = true;
            runtime.spawn(reap(Arc::downgrade(self), self.config.idle_timeout()));
        }
    }

    /// Closes the connections idle for `idle_timeout` or closed by their
    /// upstream; when the next one expires, or `None` when none is left
    /// (and the reaper ends).
    fn reap(&self) -> Option<Instant> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = self.config.idle_timeout();
        let expired_before = Instant::now() - timeout;
        idle.by_upstream.retain(|_, list| {
            list.retain(|p| !p.sender.is_closed() && p.since > expired_before);
            !list.is_empty()
        });
        idle.count = idle.by_upstream.values().map(Vec::len).sum();
        let oldest = idle.by_upstream.values().map(|list| list[0].since).min();
        if oldest.is_none() {
            idle.reaping = false;
        }
        oldest.map(|since| since + timeout)
    }

    /// Idle connections held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.lock().unwrap().count
    }
}

impl Idle {
    fn close_longest_idle(&mut self) {
        let Some(upstream) = self
            .by_upstream
            .iter()
            .min_by_key(|(_, list)| list[0].since)
            .map(|(upstream, _)| upstream.clone())
        else {
            return;
        };
        let list = self.by_upstream.get_mut(&upstream).expect("just found");
        list.remove(0);
        self.count -= 1;
        if list.is_empty() {
            self.by_upstream.remove(&upstream);
        }
    }
}

/// Closes `pool`'s connections as they expire, until it holds none or is
/// gone.
async fn reap(pool: Weak<Pool>, timeout: std::time::Duration) {
    let mut next = Instant::now() + timeout;
    loop {
        tokio::time::sleep_until(next).await;
        let Some(pool) = pool.upgrade() else { return };
        match pool.reap() {
            Some(at) => next = at,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hyper_util::rt::TokioIo;

    use super::*;

    /// A connection to `listener` (the kernel completes it; nobody answers).
    async fn connection(listener: &tokio::net::TcpListener) -> SendRequest<WasiBody> {
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(connection);
        sender
    }

    fn upstream(host: &str) -> Upstream {
        Upstream {
            host: host.to_owned(),
            port: 80,
            tls: false,
        }
    }

    async fn listener() -> tokio::net::TcpListener {
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    async fn connections(n: usize) -> (tokio::net::TcpListener, Vec<SendRequest<WasiBody>>) {
        let listener = listener().await;
        let mut made = Vec::new();
        for _ in 0..n {
            made.push(connection(&listener).await);
        }
        (listener, made)
    }

    #[tokio::test]
    async fn it_keeps_at_most_max_idle_and_closes_the_longest_idle_first() {
        let (_listener, made) = connections(3).await;
        let mut made = made.into_iter();
        let pool = Pool::new(OutboundPool {
            max_idle: 2,
            idle_timeout_ms: 60_000,
        });
        pool.put(upstream("a"), made.next().unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        pool.put(upstream("b"), made.next().unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        pool.put(upstream("a"), made.next().unwrap());
        assert_eq!(pool.len(), 2);
        // The first `a` went; `b` and the second `a` stay.
        assert!(pool.take(&upstream("b")).is_some());
        assert!(pool.take(&upstream("a")).is_some());
        assert!(pool.take(&upstream("a")).is_none());
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn idle_connections_close_after_the_idle_timeout() {
        let (_listener, made) = connections(2).await;
        let mut made = made.into_iter();
        let pool = Pool::new(OutboundPool {
            max_idle: 8,
            idle_timeout_ms: 2_000,
        });
        let start = tokio::time::Instant::now();
        let at = |ms| tokio::time::sleep_until(start + Duration::from_millis(ms));
        pool.put(upstream("a"), made.next().unwrap());
        at(1_000).await;
        pool.put(upstream("a"), made.next().unwrap());
        at(2_500).await;
        assert_eq!(pool.len(), 1, "the first expired, the second not yet");
        at(3_500).await;
        assert_eq!(pool.len(), 0);
        assert!(pool.take(&upstream("a")).is_none());
        assert!(!pool.idle.lock().unwrap().reaping, "the reaper ended");
    }

    #[tokio::test]
    async fn max_idle_zero_keeps_nothing() {
        let listener = listener().await;
        let pool = Pool::new(OutboundPool {
            max_idle: 0,
            idle_timeout_ms: 1_000,
        });
        pool.put(upstream("a"), connection(&listener).await);
        assert!(pool.take(&upstream("a")).is_none());
    }
}
