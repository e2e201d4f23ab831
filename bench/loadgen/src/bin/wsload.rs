//! `wsload --url ws://HOST:PORT/path --sessions N`: opens N websocket
//! sessions, keeps them all open, and on each sends a text message every
//! `--interval-ms` (phases spread evenly) and waits for its echo, for
//! `--duration-secs`; then closes them. Prints one line of `key=value`
//! pairs: sessions opened, open failures, echoes received, echo failures,
//! latency percentiles, and the kinds of failures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use loadgen::{count, kinds, percentile, raise_open_file_limit};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

/// Many concurrent websocket sessions echoing now and then.
#[derive(Parser)]
struct Args {
    /// `ws://HOST:PORT/path`.
    #[arg(long)]
    url: String,
    /// Sessions open at once.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Time between one session's messages.
    #[arg(long, default_value_t = 3_000)]
    interval_ms: u64,
    /// How long every session exchanges messages once all are open.
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Handshakes in flight at once while opening.
    #[arg(long, default_value_t = 256)]
    open_concurrency: usize,
    /// Give up on a handshake or an echo after this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

#[derive(Default)]
struct Report {
    opened: bool,
    open_error: Option<String>,
    echoes: Vec<Duration>,
    errors: Vec<String>,
}

async fn session(
    index: usize,
    args: Arc<Args>,
    gate: Arc<Semaphore>,
    opened: Arc<AtomicUsize>,
    mut go: watch::Receiver<Option<Instant>>,
) -> Report {
    let mut report = Report::default();
    let timeout = Duration::from_secs(args.timeout_secs);
    let handshake = async {
        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
        let authority = args
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .ok_or("a ws:// URL")?;
        let stream = TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect:{}", e.kind()))?;
        let (socket, _) = tokio_tungstenite::client_async(args.url.as_str(), stream)
            .await
            .map_err(|e| format!("handshake:{e}"))?;
        Ok::<_, String>(socket)
    };
    let mut socket = match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => {
            report.open_error = Some(e);
            opened.fetch_add(1, Ordering::Relaxed);
            return report;
        }
        Err(_) => {
            report.open_error = Some("handshake-timeout".into());
            opened.fetch_add(1, Ordering::Relaxed);
            return report;
        }
    };
    report.opened = true;
    opened.fetch_add(1, Ordering::Relaxed);
    let start = loop {
        if let Some(start) = *go.borrow_and_update() {
            break start;
        }
        if go.changed().await.is_err() {
            return report;
        }
    };
    let interval = Duration::from_millis(args.interval_ms);
    let phase = interval.mul_f64(index as f64 / args.sessions as f64);
    let end = start + Duration::from_secs(args.duration_secs);
    let mut next = start + phase;
    let mut n = 0u64;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        n += 1;
        let text = format!("{index}:{n}");
        let sent = Instant::now();
        let exchange = async {
            socket
                .send(Message::text(text.clone()))
                .await
                .map_err(|e| format!("send:{e}"))?;
            loop {
                match socket.next().await {
                    Some(Ok(Message::Text(reply))) if reply.as_str() == text => return Ok(()),
                    Some(Ok(Message::Close(frame))) => {
                        return Err(format!("closed:{}", frame.map_or(0, |f| u16::from(f.code))));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("read:{e}")),
                    None => return Err("eof".into()),
                }
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(())) => report.echoes.push(sent.elapsed()),
            Ok(Err(e)) => {
                report.errors.push(e);
                return report;
            }
            Err(_) => report.errors.push("echo-timeout".into()),
        }
        next += interval;
    }
    let _ = socket.close(None).await;
    report
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    raise_open_file_limit();
    let gate = Arc::new(Semaphore::new(args.open_concurrency));
    let opened = Arc::new(AtomicUsize::new(0));
    let (go_tx, go_rx) = watch::channel(None);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.sessions)
        .map(|i| {
            tokio::spawn(session(
                i,
                args.clone(),
                gate.clone(),
                opened.clone(),
                go_rx.clone(),
            ))
        })
        .collect();
    while opened.load(Ordering::Relaxed) < args.sessions {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_time = started.elapsed();
    // Every session is open (or failed): tell the caller, then exchange.
    eprintln!("wsload: all sessions attempted after {open_time:?}");
    let _ = go_tx.send(Some(Instant::now()));
    let mut opened_ok = 0usize;
    let mut open_errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut echoes = Vec::new();
    for task in tasks {
        let report = task.await.expect("session task");
        opened_ok += usize::from(report.opened);
        if let Some(e) = report.open_error {
            count(&mut open_errors, &e);
        }
        for e in report.errors {
            count(&mut errors, &e);
        }
        echoes.extend(report.echoes);
    }
    echoes.sort();
    println!(
        "sessions={} opened={opened_ok} open_errors={} open_s={:.2} echoes={} echo_errors={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} open_error_kinds=[{}] echo_error_kinds=[{}]",
        args.sessions,
        open_errors.values().sum::<usize>(),
        open_time.as_secs_f64(),
        echoes.len(),
        errors.values().sum::<usize>(),
        percentile(&echoes, 0.5),
        percentile(&echoes, 0.99),
        percentile(&echoes, 1.0),
        kinds(&open_errors),
        kinds(&errors),
    );
}
