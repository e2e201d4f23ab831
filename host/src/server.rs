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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::app::Secure;
use crate::config::ServerConfig;
use crate::dispatch::Dispatcher;
use crate::drain::OpenCount;
use crate::response::header_fields_too_large;

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
    tls: Option<TlsAcceptor>,
) -> io::Result<()> {
    let workers = listeners
        .into_iter()
        .enumerate()
        .map(|(index, listener)| {
            let dispatcher = dispatcher.clone();
            let shutdown = shutdown.clone();
            let config = config.clone();
            let tls = tls.clone();
            std::thread::Builder::new()
                .name(format!("cyclone-worker-{index}"))
                .spawn(move || -> io::Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async {
                        let listener = TcpListener::from_std(listener)?;
                        serve(listener, dispatcher, shutdown, &config, tls).await;
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
    tls: Option<TlsAcceptor>,
) {
    let protocols = Arc::new(Protocols::new(config, tls));
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
        let accepted = Instant::now();
        tokio::spawn(async move {
            let _open = open;
            if let Err(e) = protocols.serve(stream, accepted, dispatcher, stop).await {
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

/// How long an HTTP/2 peer may take to answer a keep-alive ping.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The first bytes of an HTTP/2 connection with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/1.1 and HTTP/2 connection settings, shared by a worker's connections.
struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// Set when the server speaks HTTPS.
    tls: Option<TlsAcceptor>,
}

impl Protocols {
    fn new(config: &ServerConfig, tls: Option<TlsAcceptor>) -> Self {
        let mut h1 = http1::Builder::new();
        // A request head past max_header_kb is answered 431 by hyper, however
        // its bytes arrived (the buffer cap alone is only checked between
        // reads); a client that does not finish its head in time is
        // disconnected.
        h1.timer(TokioTimer::new())
            .max_headers(MAX_HEADERS)
            .max_header_size(config.max_header_bytes())
            .max_buf_size(config.max_header_bytes())
            .header_read_timeout(config.header_read_timeout());
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        // A peer that stops answering pings is gone: its connection closes.
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes()).unwrap_or(u32::MAX))
            .keep_alive_interval(config.idle_timeout() / 2)
            .keep_alive_timeout(H2_PING_TIMEOUT);
        Self {
            h1,
            h2,
            header_read_timeout: config.header_read_timeout(),
            idle_timeout: config.idle_timeout(),
            tls,
        }
    }

    /// Serves one connection until the client leaves or, after `stop` turns
    /// true, until its request in flight is answered.
    ///
    /// The client has `header_read_timeout` from `accepted` to finish the
    /// TLS handshake (when the server speaks HTTPS) and send its first
    /// request head, however it spends it (silent, or sending a byte at a
    /// time); later heads on a kept-alive HTTP/1.1 connection get their own
    /// `header_read_timeout` from hyper.
    ///
    /// Over TLS, ALPN tells the protocol. In plain text it is told by
    /// peeking at the first bytes, so hyper's first read gets the whole
    /// request head into one 8 KiB buffer (reading a prefix first makes
    /// hyper grow that buffer to 16 KiB for the connection's lifetime). Only
    /// a client whose first bytes look like the start of the HTTP/2 preface
    /// and stop short has them read and replayed.
    async fn serve(
        &self,
        stream: TcpStream,
        accepted: Instant,
        dispatcher: Arc<Dispatcher>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), hyper::Error> {
        let head_deadline = accepted + self.header_read_timeout;
        let opened = async {
            match &self.tls {
                // Boxed: the handshake's state is large and short-lived.
                Some(acceptor) => Box::pin(acceptor.accept(stream)).await.map(|tls| {
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    Opened::Tls(h2, Box::new(tls))
                }),
                None => sniff(stream).await.map(|(h2, io)| Opened::Plain(h2, io)),
            }
        };
        let opened = tokio::select! {
            opened = tokio::time::timeout_at(head_deadline, opened) => {
                match opened {
                    Ok(Ok(opened)) => opened,
                    // Silent past the header read timeout, gone, or not TLS.
                    _ => return Ok(()),
                }
            }
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        };
        match opened {
            Opened::Plain(h2, io) => {
                self.serve_io(io, h2, false, accepted, dispatcher, stop)
                    .await
            }
            Opened::Tls(h2, io) => {
                self.serve_io(io, h2, true, accepted, dispatcher, stop)
                    .await
            }
        }
    }

    /// Serves HTTP/2 (`h2`) or HTTP/1.1 on a connection accepted at `accepted`.
    async fn serve_io<I>(
        &self,
        io: I,
        h2: bool,
        secure: bool,
        accepted: Instant,
        dispatcher: Arc<Dispatcher>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), hyper::Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let head_deadline = accepted + self.header_read_timeout;
        let activity = Arc::new(Activity::new(accepted));
        let service = hyper::service::service_fn({
            let activity = activity.clone();
            move |req: hyper::Request<Incoming>| {
                let busy = Busy::new(&activity);
                // hyper caps an HTTP/1.1 head at MAX_HEADERS fields; HTTP/2
                // gets the same cap here.
                let too_many = req.headers().len() > MAX_HEADERS;
                // Boxed before the async block, which would otherwise hold a
                // second copy of it next to the one in `handle`'s future.
                let mut req = Box::new(detach_head(req));
                if secure {
                    req.extensions_mut().insert(Secure);
                }
                let dispatcher = dispatcher.clone();
                async move {
                    let _busy = busy;
                    if too_many {
                        crate::metrics::METRICS.refused("-", "headers");
                        return Ok(header_fields_too_large());
                    }
                    dispatcher.handle(req).await
                }
            }
        });
        let io = TokioIo::new(io);
        let watch = Watch {
            first_head: head_deadline,
            idle_timeout: self.idle_timeout,
            activity,
        };
        if h2 {
            // Boxed: most connections are HTTP/1.1 and need not carry room for it.
            let connection = Box::pin(self.h2.serve_connection(io, service));
            until_drained(
                connection,
                |c| c.get_mut().as_mut().graceful_shutdown(),
                watch,
                stop,
            )
            .await
            .unwrap_or(Ok(()))
        } else {
            let connection = self.h1.serve_connection(io, service).with_upgrades();
            until_drained(connection, |c| c.graceful_shutdown(), watch, stop)
                .await
                .unwrap_or(Ok(()))
        }
    }
}

/// A connection ready for HTTP: whether it speaks HTTP/2, and its stream.
enum Opened {
    Plain(bool, Replay),
    /// Boxed: TLS state is large, and most servers speak plain HTTP.
    Tls(bool, Box<TlsStream<TcpStream>>),
}

/// Tells HTTP/2 prior knowledge from HTTP/1.1 by the connection's first
/// bytes. Peeking leaves them for hyper; but a peek returns at once while
/// any byte is there, so when the bytes so far are a strict prefix of the
/// preface they are read instead (each read waiting for readiness, costing
/// nothing while nothing arrives) and replayed to hyper.
async fn sniff(stream: TcpStream) -> io::Result<(bool, Replay)> {
    let mut first = [0; H2_PREFACE.len()];
    let n = stream.peek(&mut first).await?;
    if n == 0 || first[..n] != H2_PREFACE[..n] {
        return Ok((false, Replay::new(stream, Vec::new())));
    }
    if n == H2_PREFACE.len() {
        return Ok((true, Replay::new(stream, Vec::new())));
    }
    let mut read = Vec::with_capacity(H2_PREFACE.len());
    while read.len() < H2_PREFACE.len() && read[..] == H2_PREFACE[..read.len()] {
        stream.readable().await?;
        let mut chunk = [0; H2_PREFACE.len()];
        let wanted = H2_PREFACE.len() - read.len();
        match stream.try_read(&mut chunk[..wanted]) {
            Ok(0) => break,
            Ok(n) => read.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok((read[..] == *H2_PREFACE, Replay::new(stream, read)))
}

/// A connection whose first bytes were read while telling the protocol:
/// hands them out again before reading on.
struct Replay {
    stream: TcpStream,
    /// Bytes read ahead and not yet handed out (usually none).
    pending: Option<Box<[u8]>>,
    offset: usize,
}

impl Replay {
    fn new(stream: TcpStream, read: Vec<u8>) -> Self {
        Self {
            stream,
            pending: (!read.is_empty()).then(|| read.into_boxed_slice()),
            offset: 0,
        }
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(pending) = &this.pending {
            let rest = &pending[this.offset..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.offset += n;
            if this.offset == pending.len() {
                this.pending = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The most header fields a request may have, whatever its protocol.
const MAX_HEADERS: usize = 100;

/// How busy a connection has been, as its requests show.
struct Activity {
    accepted: Instant,
    /// Requests being answered (their service futures alive).
    in_flight: AtomicUsize,
    /// When the last request started or was answered, in ms after `accepted`;
    /// `u64::MAX` before the first request.
    last: AtomicU64,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Self {
            accepted,
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(u64::MAX),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Whether a request has ever arrived.
    fn started(&self) -> bool {
        self.last.load(Ordering::Relaxed) != u64::MAX
    }

    /// When the connection has been idle for `idle_timeout`: `None` while a
    /// request is in flight.
    fn idle_deadline(&self, idle_timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        Some(self.accepted + last + idle_timeout)
    }
}

/// One request in flight on a connection, until its service future ends.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The deadlines a connection is held to: its first request head, counted
/// from accept, and the idle timeout between requests.
struct Watch {
    first_head: Instant,
    idle_timeout: Duration,
    activity: Arc<Activity>,
}

/// Drives `connection`. Closes it if no request has arrived by the first
/// head's deadline; asks it to close, finishing what is in flight, once it
/// has been idle for the idle timeout or once `stop` turns true.
async fn until_drained<C: Future>(
    connection: C,
    begin_drain: impl FnOnce(Pin<&mut C>),
    watch: Watch,
    mut stop: watch::Receiver<bool>,
) -> Option<C::Output> {
    let mut connection = std::pin::pin!(connection);
    let accepted = watch.activity.accepted;
    let timer = tokio::time::sleep_until(watch.first_head.min(accepted + watch.idle_timeout));
    tokio::pin!(timer);
    loop {
        tokio::select! {
            done = connection.as_mut() => return Some(done),
            () = &mut timer => {
                if !watch.activity.started() {
                    if Instant::now() >= watch.first_head {
                        // No request within header_read_timeout of accept.
                        return None;
                    }
                    timer.as_mut().reset(watch.first_head);
                    continue;
                }
                match watch.activity.idle_deadline(watch.idle_timeout) {
                    Some(deadline) if deadline <= Instant::now() => {
                        begin_drain(connection.as_mut());
                        break;
                    }
                    Some(deadline) => timer.as_mut().reset(deadline),
                    // A request is in flight: look again a whole timeout later.
                    None => timer.as_mut().reset(Instant::now() + watch.idle_timeout),
                }
            }
            _ = stop.wait_for(|stop| *stop) => {
                begin_drain(connection.as_mut());
                break;
            }
        }
    }
    Some(connection.await)
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
