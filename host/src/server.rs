//! Listening sockets, worker event loops, and graceful shutdown.
//!
//! The server runs one single-threaded tokio runtime per worker thread, each
//! accepting on its own `SO_REUSEPORT` socket bound to the same address, so the
//! kernel spreads connections across workers and a request stays on one
//! thread from accept to response. On shutdown every worker stops accepting,
//! lets in-flight connections finish for up to the drain timeout, and exits.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::dispatch::Dispatcher;

/// Pending connections the kernel queues per listening socket.
const BACKLOG: i32 = 4096;

/// Binds `workers` sockets to `addr` with `SO_REUSEPORT`. With port 0 the
/// first socket picks a free port and the others join it.
pub fn bind(addr: SocketAddr, workers: usize) -> io::Result<Vec<StdListener>> {
    let first = bind_one(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers.max(1) {
        listeners.push(bind_one(addr)?);
    }
    Ok(listeners)
}

fn bind_one(addr: SocketAddr) -> io::Result<StdListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Runs one worker per listener, each on its own thread, until `shutdown`
/// turns true; returns when every worker has drained.
pub fn run(
    listeners: Vec<StdListener>,
    dispatcher: Arc<Dispatcher>,
    shutdown: watch::Receiver<bool>,
    config: &ServerConfig,
) -> io::Result<()> {
    let workers = listeners
        .into_iter()
        .enumerate()
        .map(|(index, listener)| {
            let dispatcher = dispatcher.clone();
            let shutdown = shutdown.clone();
            let config = config.clone();
            std::thread::Builder::new()
                .name(format!("cyclone-worker-{index}"))
                .spawn(move || -> io::Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async {
                        let listener = TcpListener::from_std(listener)?;
                        serve(listener, dispatcher, shutdown, &config).await;
                        io::Result::Ok(())
                    })
                })
        })
        .collect::<io::Result<Vec<_>>>()?;
    for worker in workers {
        worker
            .join()
            .map_err(|_| io::Error::other("a worker thread panicked"))??;
    }
    Ok(())
}

async fn serve(
    listener: TcpListener,
    dispatcher: Arc<Dispatcher>,
    mut shutdown: watch::Receiver<bool>,
    config: &ServerConfig,
) {
    let protocols = Arc::new(Protocols::new(config));
    let connections = OpenCount::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let dispatcher = dispatcher.clone();
        let protocols = protocols.clone();
        let stop = shutdown.clone();
        let open = connections.open();
        tokio::spawn(async move {
            let _open = open;
            if let Err(e) = protocols.serve(stream, dispatcher, stop).await {
                tracing::debug!(%peer, "connection closed with error: {e}");
            }
        });
    }
    drop(listener);
    // Websocket sessions close with 1001 while requests drain.
    dispatcher.close_sessions();
    let drained = async {
        connections.all_closed().await;
        dispatcher.sessions_closed().await;
    };
    if tokio::time::timeout(config.drain_timeout(), drained)
        .await
        .is_err()
    {
        tracing::warn!(
            "drain timeout passed with requests or websocket sessions still open; closing them"
        );
    }
}

/// How many of something a drain waits for are open: a worker's
/// connections, the process's websocket sessions.
#[derive(Debug)]
pub(crate) struct OpenCount(watch::Sender<usize>);

impl Default for OpenCount {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl OpenCount {
    /// Counts one more as open until the returned guard is dropped.
    pub(crate) fn open(&self) -> Open {
        self.0.send_modify(|open| *open += 1);
        Open(self.0.clone())
    }

    /// Returns once none is open.
    pub(crate) async fn all_closed(&self) {
        let _ = self.0.subscribe().wait_for(|open| *open == 0).await;
    }
}

/// One open connection or session, counted in an [`OpenCount`] until dropped.
pub(crate) struct Open(watch::Sender<usize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.send_modify(|open| *open -= 1);
    }
}

/// The first bytes of an HTTP/2 connection with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/1.1 and HTTP/2 connection settings, shared by a worker's connections.
struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
}

impl Protocols {
    fn new(config: &ServerConfig) -> Self {
        let mut h1 = http1::Builder::new();
        // A request head past max_header_kb is answered 431 by hyper, however
        // its bytes arrived (the buffer cap alone is only checked between
        // reads); a client that does not finish its head in time is
        // disconnected.
        h1.timer(TokioTimer::new())
            .max_header_size(config.max_header_bytes())
            .max_buf_size(config.max_header_bytes())
            .header_read_timeout(config.header_read_timeout());
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes()).unwrap_or(u32::MAX));
        Self {
            h1,
            h2,
            header_read_timeout: config.header_read_timeout(),
        }
    }

    /// Serves one connection until the client leaves or, after `stop` turns
    /// true, until its request in flight is answered.
    ///
    /// The protocol is told by peeking at the first bytes, so hyper's first
    /// read gets the whole request head into one 8 KiB buffer (reading a
    /// prefix first, as a sniffing wrapper does, makes hyper grow that buffer
    /// to 16 KiB for the connection's lifetime).
    async fn serve(
        &self,
        stream: TcpStream,
        dispatcher: Arc<Dispatcher>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), hyper::Error> {
        let h2 = tokio::select! {
            sniffed = tokio::time::timeout(self.header_read_timeout, speaks_h2(&stream)) => {
                match sniffed {
                    Ok(Ok(h2)) => h2,
                    // Silent past the header read timeout, or gone.
                    _ => return Ok(()),
                }
            }
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        };
        let service = hyper::service::service_fn(move |req| {
            // Boxed before the async block, which would otherwise hold a
            // second copy of it next to the one in `handle`'s future.
            let req = Box::new(detach_head(req));
            let dispatcher = dispatcher.clone();
            async move { dispatcher.handle(req).await }
        });
        let io = TokioIo::new(stream);
        if h2 {
            // Boxed: most connections are HTTP/1.1 and need not carry room for it.
            let connection = Box::pin(self.h2.serve_connection(io, service));
            until_drained(
                connection,
                |c| c.get_mut().as_mut().graceful_shutdown(),
                stop,
            )
            .await
        } else {
            let connection = self.h1.serve_connection(io, service).with_upgrades();
            until_drained(connection, |c| c.graceful_shutdown(), stop).await
        }
    }
}

/// Whether the client on `stream` opens with the HTTP/2 preface, judged from
/// its first bytes without consuming them.
async fn speaks_h2(stream: &TcpStream) -> io::Result<bool> {
    let mut first = [0; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut first).await?;
        if n == 0 || first[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // The preface arrived cut short; look again when more may be there.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Drives `connection`; once `stop` turns true, asks it to finish what is in
/// flight and close, and waits for that.
async fn until_drained<C: Future>(
    connection: C,
    begin_drain: impl FnOnce(Pin<&mut C>),
    mut stop: watch::Receiver<bool>,
) -> C::Output {
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        done = connection.as_mut() => return done,
        _ = stop.wait_for(|stop| *stop) => begin_drain(connection.as_mut()),
    }
    connection.await
}

/// Copies a request's URI and header values out of the connection's read
/// buffer. hyper parses a head into slices of that buffer, and while any
/// slice lives, its next read (it watches a busy connection for the client
/// hanging up) must allocate a second buffer. With the head copied when hyper
/// hands it over, before that read, the one buffer is reused: 8 KiB less for
/// every request that waits.
fn detach_head(req: Request<Incoming>) -> Request<Incoming> {
    let (mut head, body) = req.into_parts();
    for value in head.headers.values_mut() {
        if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
    }
    // Only a URI that reads back as itself replaces the original.
    if let Ok(uri) = Uri::from_maybe_shared(Bytes::from(head.uri.to_string())) {
        head.uri = uri;
    }
    Request::from_parts(head, body)
}
