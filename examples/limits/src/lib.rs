//! Routes that push against the per-request limits (see `cyclone.toml`):
//!
//! - `GET /hello`: a quick answer, to show the others do not block it;
//! - `GET /sleep?ms=N`: suspends N ms (costs no CPU; past the timeout: 504);
//! - `GET /spin?ms=N`: computes for N ms (past the CPU budget: 503);
//! - `GET /alloc?mb=N`: allocates and touches N MiB (past the memory cap: 500);
//! - `POST /upload`: reads the body and says how big it was (past the cap: 413);
//! - `GET /escape`: tries to read `/etc/passwd` and `$HOME` and to open a
//!   socket, and reports what it got.

use std::time::{Duration, Instant};

use cyclone_sdk::time::sleep;
use cyclone_sdk::{Application, HttpError, Request, Response};

#[cyclone_sdk::handler]
async fn handle(req: Request) -> Response {
    Application::new()
        .get("/hello", async |_: &mut Request| "hello\n")
        .get("/sleep", sleep_for)
        .get("/spin", spin)
        .get("/alloc", alloc)
        .post("/upload", async |req: &mut Request| {
            format!("{} bytes\n", req.body().len())
        })
        .get("/escape", escape)
        .handle(req)
        .await
}

fn number(req: &Request, name: &str) -> Result<u64, HttpError> {
    req.argument(name)?
        .parse()
        .map_err(|_| HttpError::bad_request(format!("`{name}` must be a number")))
}

async fn sleep_for(req: &mut Request) -> Result<String, HttpError> {
    let ms = number(req, "ms")?;
    sleep(Duration::from_millis(ms)).await;
    Ok(format!("slept {ms} ms\n"))
}

async fn spin(req: &mut Request) -> Result<String, HttpError> {
    let ms = number(req, "ms")?;
    let started = Instant::now();
    let mut x: u64 = 1;
    while started.elapsed() < Duration::from_millis(ms) {
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
    }
    Ok(format!("spun {ms} ms ({x:x})\n"))
}

async fn alloc(req: &mut Request) -> Result<String, HttpError> {
    let mb = usize::try_from(number(req, "mb")?)
        .map_err(|_| HttpError::bad_request("`mb` is too large"))?;
    let mut block = vec![0u8; mb << 20];
    // Touch every page so the memory is really used.
    for i in (0..block.len()).step_by(4096) {
        block[i] = 1;
    }
    let touched = block.iter().step_by(4096).filter(|b| **b == 1).count();
    Ok(format!("allocated {mb} MiB ({touched} pages)\n"))
}

async fn escape(_req: &mut Request) -> Response {
    let file = match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => format!("read {} bytes", text.len()),
        Err(e) => format!("error: {e}"),
    };
    let home = match std::env::var("HOME") {
        Ok(home) => format!("HOME={home}"),
        Err(e) => format!("error: {e}"),
    };
    let socket = match std::net::TcpStream::connect("127.0.0.1:22") {
        Ok(_) => "connected".to_owned(),
        Err(e) => format!("error: {e}"),
    };
    let env_count = std::env::vars().count();
    Response::json(&serde_json::json!({
        "file": file,
        "home": home,
        "socket": socket,
        "environment_variables": env_count,
    }))
}
