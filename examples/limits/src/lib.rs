//! Routes that push against the per-request limits (see `cyclone.toml`):
//!
//! - `GET /hello`: a quick answer, to show the others do not block it;
//! - `GET /sleep?ms=N`: suspends N ms (costs no CPU; past the timeout: 504);
//! - `GET /spin?ms=N`: computes for N ms (past the CPU budget: 503);
//! - `GET /alloc?mb=N`: allocates and touches N MiB (past the memory cap: 500);
//! - `POST /upload`: reads the body and says how big it was (past the cap: 413);
//! - `GET /escape`: tries to read `/etc/passwd` and `$HOME` and to open a
//!   socket, through WASI itself, and reports what it got.

use std::time::{Duration, Instant};

use cyclone_sdk::time::sleep;
use cyclone_sdk::{Application, HttpError, Request, Response};
use serde::Serialize;
use wasip2::cli::environment::get_environment;
use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::network::{
    ErrorCode as SocketError, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress,
};
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

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

// `/escape` asks WASI itself, the sandbox's edge, rather than going through
// `std::fs`, `std::env` and `std::net`. Those link the C library's file,
// environment and socket layers into the component, and every instance of a
// component pays for what it links (each import, each function reachable
// through a pointer, each page of data), whichever route it serves: here,
// 17 KiB more for every suspended `/sleep`. `std::net` alone brought 58
// imports; the socket calls below need 8.
async fn escape(_req: &mut Request) -> Response {
    let environment = get_environment();
    let home = environment.iter().find(|(name, _)| name == "HOME");
    Response::json(&Escape {
        file: match read_file("/etc/passwd") {
            Ok(bytes) => format!("read {bytes} bytes"),
            Err(e) => format!("error: {e}"),
        },
        home: match home {
            Some((_, home)) => format!("HOME={home}"),
            None => "error: no HOME variable".to_owned(),
        },
        socket: match connect((127, 0, 0, 1), 22) {
            Ok(()) => "connected".to_owned(),
            Err(e) => format!("error: {e}"),
        },
        environment_variables: environment.len(),
    })
}

/// What `/escape` got.
#[derive(Serialize)]
struct Escape {
    file: String,
    home: String,
    socket: String,
    environment_variables: usize,
}

/// Reads the file at the absolute `path` from whichever granted folder holds
/// it, and returns its length.
fn read_file(path: &str) -> Result<usize, String> {
    let (folder, relative) = get_directories()
        .into_iter()
        .find_map(|(folder, at)| {
            let relative = path
                .strip_prefix(at.trim_end_matches('/'))?
                .strip_prefix('/')?;
            Some((folder, relative.to_owned()))
        })
        .ok_or("no granted folder holds it")?;
    let file = folder
        .open_at(
            PathFlags::empty(),
            &relative,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .map_err(|e| e.to_string())?;
    let mut length = 0;
    loop {
        let (bytes, end) = file
            .read(64 * 1024, length as u64)
            .map_err(|e| e.to_string())?;
        length += bytes.len();
        if end || bytes.is_empty() {
            return Ok(length);
        }
    }
}

/// Opens a TCP connection to `address`:`port`.
fn connect(address: (u8, u8, u8, u8), port: u16) -> Result<(), SocketError> {
    let socket = create_tcp_socket(IpAddressFamily::Ipv4)?;
    let address = IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address });
    socket.start_connect(&instance_network(), address)?;
    // Only this request's instance waits here.
    socket.subscribe().block();
    socket.finish_connect().map(drop)
}
