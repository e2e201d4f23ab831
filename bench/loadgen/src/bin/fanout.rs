//! `fanout --ws ws://A/chatsocket --ws ws://B/chatsocket --sessions 2000
//! --post http://B/a/message/new`: opens `--sessions` chat websockets at
//! each `--ws` URL, waits until all are open and quiet, posts one message
//! (form field `body`) to `--post`, and measures how long each session
//! takes to receive it. Prints one line of `key=value` pairs: sessions
//! opened, open failures, deliveries, missing deliveries, and delivery
//! latency percentiles counted from just before the post was sent. Every
//! session stays open until all have their outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use loadgen::{count, kinds, percentile, raise_open_file_limit};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

/// One post fanned out to many websocket sessions.
#[derive(Parser)]
struct Args {
    /// A `ws://HOST:PORT/path` to open sessions at; repeat for several hosts.
    #[arg(long = "ws", required = true)]
    urls: Vec<String>,
    /// Sessions per URL.
    #[arg(long, default_value_t = 2_000)]
    sessions: usize,
    /// `http://HOST:PORT/path` to POST the message to.
    #[arg(long)]
    post: String,
    /// Handshakes in flight at once while opening.
    #[arg(long, default_value_t = 256)]
    open_concurrency: usize,
    /// Give up on a handshake, or on the delivery, after this many seconds.
    #[arg(long, default_value_t = 20)]
    timeout_secs: u64,
    /// Seconds to wait, once every session is open, before posting.
    #[arg(long, default_value_t = 2)]
    settle_secs: u64,
    /// A server process whose resident memory (VmRSS) to report: 5 s after
    /// every session is open (`rss_open_kib`, when `--settle-secs` is longer)
    /// and just before posting (`rss_kib`).
    #[arg(long)]
    pid: Option<u32>,
}

/// The resident memory of process `pid` in KiB, 0 when it cannot be read.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

enum Outcome {
    OpenFailed(String),
    Delivered(Duration),
    Missed(String),
}

async fn session(
    url: String,
    body: Arc<str>,
    timeout: Duration,
    gate: Arc<Semaphore>,
    opened: Arc<AtomicUsize>,
    mut posted: watch::Receiver<Option<Instant>>,
) -> (Outcome, Option<Socket>) {
    let handshake = async {
        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
        let authority = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .ok_or("a ws:// URL")?;
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect:{}", e.kind()))?;
        let (socket, _) = tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .map_err(|e| format!("handshake:{e}"))?;
        Ok::<_, String>(socket)
    };
    let result = tokio::time::timeout(timeout, handshake).await;
    opened.fetch_add(1, Ordering::Relaxed);
    let mut socket = match result {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => return (Outcome::OpenFailed(e), None),
        Err(_) => return (Outcome::OpenFailed("handshake-timeout".into()), None),
    };
    // Read until our message arrives; anything before it (the room's
    // history) is skipped.
    let receive = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) if text.as_str().contains(&*body) => {
                    return Ok(Instant::now());
                }
                Some(Ok(Message::Close(_))) => return Err("closed".to_owned()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("read:{e}")),
                None => return Err("eof".to_owned()),
            }
        }
    };
    let wait_for_post = async {
        loop {
            if let Some(at) = *posted.borrow_and_update() {
                return at;
            }
            if posted.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let deadline = async {
        let at = wait_for_post.await;
        tokio::time::sleep_until((at + timeout).into()).await;
    };
    let received = tokio::select! {
        received = receive => received,
        () = deadline => Err("timeout".to_owned()),
    };
    let at = *posted.borrow();
    let outcome = match (received, at) {
        (Ok(when), Some(at)) => Outcome::Delivered(when.saturating_duration_since(at)),
        (Ok(_), None) => Outcome::Missed("before-the-post".into()),
        (Err(e), _) => Outcome::Missed(e),
    };
    (outcome, Some(socket))
}

/// A client's end of a session.
type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn post(url: &str, body: &str) -> Result<u16, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let authority = uri.authority().ok_or("a host")?.to_string();
    let stream = TcpStream::connect(&authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::post(uri.path())
        .header("host", authority)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(bytes::Bytes::from(format!("body={body}"))))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    raise_open_file_limit();
    let body: Arc<str> = format!(
        "fanout-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
    .into();
    let timeout = Duration::from_secs(args.timeout_secs);
    let gate = Arc::new(Semaphore::new(args.open_concurrency));
    let opened = Arc::new(AtomicUsize::new(0));
    let (posted_tx, posted_rx) = watch::channel(None);
    let (outcomes_tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let (done_tx, done_rx) = watch::channel(false);
    let total = args.sessions * args.urls.len();
    let started = Instant::now();
    let tasks: Vec<_> = args
        .urls
        .iter()
        .flat_map(|url| std::iter::repeat_n(url, args.sessions))
        .map(|url| {
            let outcomes = outcomes_tx.clone();
            let mut done = done_rx.clone();
            let session = session(
                url.clone(),
                body.clone(),
                timeout,
                gate.clone(),
                opened.clone(),
                posted_rx.clone(),
            );
            // A session stays open until every session has its outcome: one
            // that closed as soon as it had the message would load the
            // server with its close while others still wait for theirs.
            tokio::spawn(async move {
                let (outcome, socket) = session.await;
                let _ = outcomes.send(outcome);
                drop(outcomes);
                let _ = done.wait_for(|done| *done).await;
                drop(socket);
            })
        })
        .collect();
    drop(outcomes_tx);
    while opened.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_time = started.elapsed();
    eprintln!("fanout: all {total} sessions attempted after {open_time:?}; posting");
    // Let the sessions' guests subscribe and send the history first.
    let early = args.settle_secs.min(5);
    tokio::time::sleep(Duration::from_secs(early)).await;
    let rss_open = args.pid.map_or(0, rss_kib);
    tokio::time::sleep(Duration::from_secs(args.settle_secs - early)).await;
    let rss = args.pid.map_or(0, rss_kib);
    let at = Instant::now();
    let _ = posted_tx.send(Some(at));
    let status = post(&args.post, &body).await;
    let post_ms = at.elapsed().as_secs_f64() * 1e3;
    let mut open_errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut missed: BTreeMap<String, usize> = BTreeMap::new();
    let mut delivered = Vec::new();
    while let Some(outcome) = outcomes.recv().await {
        match outcome {
            Outcome::OpenFailed(e) => count(&mut open_errors, &e),
            Outcome::Missed(e) => count(&mut missed, &e),
            Outcome::Delivered(d) => delivered.push(d),
        }
    }
    let _ = done_tx.send(true);
    for task in tasks {
        task.await.expect("session task");
    }
    delivered.sort();
    println!(
        "sessions={total} rss_open_kib={rss_open} rss_kib={rss} opened={} open_errors={} open_s={:.2} post_status={} post_ms={post_ms:.1} delivered={} missed={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} open_error_kinds=[{}] missed_kinds=[{}]",
        total - open_errors.values().sum::<usize>(),
        open_errors.values().sum::<usize>(),
        open_time.as_secs_f64(),
        status.map_or_else(|e| e.replace(' ', "_"), |s| s.to_string()),
        delivered.len(),
        missed.values().sum::<usize>(),
        percentile(&delivered, 0.5),
        percentile(&delivered, 0.99),
        percentile(&delivered, 1.0),
        kinds(&open_errors),
        kinds(&missed),
    );
}
