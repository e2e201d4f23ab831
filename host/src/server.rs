//! Listening sockets, worker event loops, and graceful shutdown.
//!
//! The server runs one single-threaded tokio runtime per worker thread, each
//! accepting on its own `SO_REUSEPORT` socket bound to the same address, so the
//! kernel spreads connections across workers and a request stays on one
//! thread from accept to response. On shutdown every worker stops accepting,
//! lets in-flight connections finish for up to the drain timeout, and exits.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
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
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A request head past max_header_kb is answered 431 by hyper; a client
    // that does not finish its head in time is disconnected.
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(config.max_header_bytes())
        .header_read_timeout(config.header_read_timeout());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes()).unwrap_or(u32::MAX));
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
        let service = hyper::service::service_fn(move |req| {
            let dispatcher = dispatcher.clone();
            async move { dispatcher.handle(req).await }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, "connection closed with error: {e}");
            }
        });
    }
    drop(listener);
    // Websocket sessions close with 1001 while requests drain.
    dispatcher.close_sessions();
    let drained = async {
        graceful.shutdown().await;
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
