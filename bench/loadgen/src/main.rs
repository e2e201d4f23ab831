//! `loadgen --url URL --requests N`: opens N connections at once, sends one
//! GET on each, and waits for every answer; with `--h2 K`, sends the N
//! requests at once over K HTTP/2 connections instead (prior knowledge,
//! spread evenly). Prints one line of `key=value` pairs: successes (2xx),
//! other statuses, connection errors, wall time, requests per second and
//! latency percentiles.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadgen::{count, kinds, percentile, raise_open_file_limit};
use tokio::net::TcpStream;

/// Concurrent one-request connections against one URL.
#[derive(Parser)]
struct Args {
    /// `http://HOST:PORT/path`.
    #[arg(long)]
    url: String,
    /// Requests (and connections) at once.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Give up on a request after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Send the requests over this many HTTP/2 connections (prior
    /// knowledge), not one HTTP/1.1 connection each.
    #[arg(long)]
    h2: Option<usize>,
}

enum Outcome {
    Status(u16, Duration),
    Error(String),
}

/// One GET on a connection of its own (HTTP/1.1).
async fn one(url: hyper::Uri, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let attempt = async {
        let stream = connect(&url).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let response = sender
            .send_request(get(&url, false)?)
            .await
            .map_err(|e| format!("request: {e}"))?;
        status_of(response).await
    };
    finish(started, tokio::time::timeout(timeout, attempt).await)
}

/// One GET on a shared HTTP/2 connection.
async fn one_h2(
    url: hyper::Uri,
    mut sender: http2::SendRequest<Empty<Bytes>>,
    timeout: Duration,
) -> Outcome {
    let started = Instant::now();
    let attempt = async {
        let response = sender
            .send_request(get(&url, true)?)
            .await
            .map_err(|e| format!("request: {e}"))?;
        status_of(response).await
    };
    finish(started, tokio::time::timeout(timeout, attempt).await)
}

/// An HTTP/2 connection (prior knowledge), driven by a task of its own.
async fn open_h2(url: &hyper::Uri) -> Result<http2::SendRequest<Empty<Bytes>>, String> {
    let stream = connect(url).await?;
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn connect(url: &hyper::Uri) -> Result<TcpStream, String> {
    let host = url.host().ok_or("no host")?;
    TcpStream::connect((host, url.port_u16().unwrap_or(80)))
        .await
        .map_err(|e| format!("connect: {}", e.kind()))
}

/// A GET of `url`: HTTP/1.1 sends the path and a `Host` header; HTTP/2
/// takes the scheme and authority from the URI itself.
fn get(url: &hyper::Uri, h2: bool) -> Result<hyper::Request<Empty<Bytes>>, String> {
    if h2 {
        return hyper::Request::get(url.clone())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string());
    }
    let host = url.host().ok_or("no host")?;
    let port = url.port_u16().unwrap_or(80);
    hyper::Request::get(url.path_and_query().map_or("/", |p| p.as_str()))
        .header("host", format!("{host}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())
}

/// The status, once the whole body is in.
async fn status_of(response: hyper::Response<hyper::body::Incoming>) -> Result<u16, String> {
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

fn finish(
    started: Instant,
    result: Result<Result<u16, String>, tokio::time::error::Elapsed>,
) -> Outcome {
    match result {
        Ok(Ok(status)) => Outcome::Status(status, started.elapsed()),
        Ok(Err(e)) => Outcome::Error(e),
        Err(_) => Outcome::Error("timeout".into()),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    raise_open_file_limit();
    let url: hyper::Uri = args.url.parse().expect("a valid URL");
    let timeout = Duration::from_secs(args.timeout_secs);
    let started = Instant::now();
    let tasks: Vec<_> = match args.h2 {
        None => (0..args.requests)
            .map(|_| tokio::spawn(one(url.clone(), timeout)))
            .collect(),
        Some(connections) => {
            let mut senders = Vec::new();
            for _ in 0..connections.max(1) {
                match open_h2(&url).await {
                    Ok(sender) => senders.push(sender),
                    Err(e) => {
                        eprintln!("loadgen: HTTP/2 connection: {e}");
                        std::process::exit(1);
                    }
                }
            }
            (0..args.requests)
                .map(|i| {
                    let sender = senders[i % senders.len()].clone();
                    tokio::spawn(one_h2(url.clone(), sender, timeout))
                })
                .collect()
        }
    };
    let mut ok = 0usize;
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut latencies = Vec::with_capacity(args.requests);
    for task in tasks {
        match task.await.expect("request task") {
            Outcome::Status(status, latency) => {
                if (200..300).contains(&status) {
                    ok += 1;
                    latencies.push(latency);
                } else {
                    *statuses.entry(status).or_default() += 1;
                }
            }
            Outcome::Error(e) => count(&mut errors, &e),
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let others: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}:{n}")).collect();
    println!(
        "requests={} ok={ok} other_status={} errors={} elapsed_s={:.2} rps={:.0} p50_ms={:.0} p99_ms={:.0} max_ms={:.0} other=[{}] error_kinds=[{}]",
        args.requests,
        statuses.values().sum::<usize>(),
        errors.values().sum::<usize>(),
        elapsed.as_secs_f64(),
        args.requests as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        others.join(","),
        kinds(&errors),
    );
}
