//! A WASI 0.3 component written with the `wasip3` crate's bindings alone:
//! every route exercises one thing the host must provide or bound. A route
//! is the path's last segment (`/any/prefix/hello` is `/hello`).
//!
//! - `/hello`: a fixed body.
//! - `/uri`: the method, scheme, authority and path the guest was given.
//! - `/echo`: the request body streamed back as it arrives, then its length
//!   in a trailer-free end.
//! - `/chunks?n=N&ms=M`: N chunks, M ms apart.
//! - `/sleep?ms=N`: answers after N ms (a timer the instance waits on);
//!   with `say=1` it first prints `sleeping N ms` to stdout, so a test can
//!   tell from the host's log that the request is inside an instance.
//! - `/block?ms=N`: answers after N ms, waiting in a synchronous call: the
//!   guest's task stops mid-call and keeps its fiber stack meanwhile.
//! - `/spin`: loops forever.
//! - `/alloc?mb=N`: allocates and touches N MiB.
//! - `/trap`: panics.
//! - `/env?name=X`: the environment variable X, or 404.
//! - `/file?path=P`: the file P under the first granted folder, or 404.
//! - `/fetch?url=http://HOST/PATH`: an outbound GET; its status and body.
//! - `/count`: how many requests this instance has served (of any route),
//!   this one included (1 for a fresh instance each time).
//! - `/burn?ms=N`: keeps the CPU busy for N ms, then answers.

use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Probe);

/// `wasi:clocks/monotonic-clock` with `wait-for` lowered synchronously
/// (the `wasip3` crate lowers every `async func` asynchronously).
mod blocking {
    wit_bindgen::generate!({
        path: "wit",
        world: "probe:blocking/blocking",
        async: ["-import:wasi:clocks/monotonic-clock@0.3.0#wait-for"],
        generate_all,
    });
}

struct Probe;

/// Requests this instance has served.
static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl wasip3::exports::http::handler::Guest for Probe {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let served = SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let path_with_query = request.get_path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        // Routes are the last segment, so apps may mount the probe anywhere.
        let route = format!("/{}", path.rsplit('/').next().unwrap_or_default());
        match route.as_str() {
            "/" | "/hello" => Ok(text(200, "hello from wasip3\n")),
            "/count" => Ok(text(200, &format!("{served}\n"))),
            "/burn" => {
                let ms = param(query, "ms").unwrap_or(100);
                let start = wasip3::clocks::monotonic_clock::now();
                let mut n: u64 = 0;
                while wasip3::clocks::monotonic_clock::now() - start < ms * 1_000_000 {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
                Ok(text(200, &format!("burned {ms} ms\n")))
            }
            "/uri" => {
                let method = match request.get_method() {
                    Method::Get => "GET".to_owned(),
                    Method::Post => "POST".to_owned(),
                    other => format!("{other:?}"),
                };
                let scheme = match request.get_scheme() {
                    Some(Scheme::Http) => "http".to_owned(),
                    Some(Scheme::Https) => "https".to_owned(),
                    Some(Scheme::Other(s)) => s,
                    None => "-".to_owned(),
                };
                let authority = request.get_authority().unwrap_or_else(|| "-".to_owned());
                Ok(text(
                    200,
                    &format!("{method} {scheme} {authority} {path_with_query}\n"),
                ))
            }
            "/echo" => Ok(echo(request)),
            "/chunks" => {
                let n = param(query, "n").unwrap_or(3);
                let ms = param(query, "ms").unwrap_or(10);
                Ok(chunks(n, ms))
            }
            "/sleep" => {
                let ms = param(query, "ms").unwrap_or(100);
                if param(query, "say") == Some(1) {
                    println!("sleeping {ms} ms");
                }
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                Ok(text(200, &format!("slept {ms} ms\n")))
            }
            "/block" => {
                let ms = param(query, "ms").unwrap_or(100);
                if param(query, "say") == Some(1) {
                    println!("blocking {ms} ms");
                }
                blocking::wasi::clocks::monotonic_clock::wait_for(ms * 1_000_000);
                Ok(text(200, &format!("blocked {ms} ms\n")))
            }
            "/spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/alloc" => {
                let mb = param(query, "mb").unwrap_or(1) as usize;
                let mut block = vec![0u8; mb << 20];
                for i in (0..block.len()).step_by(4096) {
                    block[i] = 1;
                }
                let touched: usize = block.iter().step_by(4096).map(|&b| b as usize).sum();
                Ok(text(
                    200,
                    &format!("allocated {mb} MiB ({touched} pages)\n"),
                ))
            }
            "/trap" => panic!("the probe was asked to trap"),
            "/error-code" => Err(ErrorCode::InternalError(Some(
                "the probe was asked for an error code".to_owned(),
            ))),
            "/env" => {
                let name = query.strip_prefix("name=").unwrap_or_default();
                let value = wasip3::cli::environment::get_environment()
                    .into_iter()
                    .find(|(k, _)| k == name);
                Ok(match value {
                    Some((_, value)) => text(200, &format!("{value}\n")),
                    None => text(404, &format!("{name} is not set\n")),
                })
            }
            "/file" => {
                let path = query.strip_prefix("path=").unwrap_or_default();
                Ok(match read_file(path).await {
                    Ok(contents) => text(200, &contents),
                    Err(e) => text(404, &format!("{path}: {e}\n")),
                })
            }
            "/fetch" => {
                let url = query.strip_prefix("url=").unwrap_or_default();
                Ok(match fetch(url).await {
                    Ok((status, body)) => text(200, &format!("{status} {body}")),
                    Err(e) => text(502, &format!("fetch failed: {e:?}\n")),
                })
            }
            _ => Ok(text(404, "no such route\n")),
        }
    }
}

/// `name=N` in `query`, as a number.
fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// A response of `status` with `body`, written by a task of its own.
fn text(status: u16, body: &str) -> Response {
    let (mut tx, rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let headers = Fields::from_list(&[(
        "content-type".to_owned(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("valid header");
    let (response, _sent) = Response::new(headers, Some(rx), trailers_rx);
    response.set_status_code(status).expect("valid status");
    let body = body.as_bytes().to_vec();
    wit_bindgen::spawn_local(async move {
        tx.write_all(body).await;
    });
    response
}

/// The request's body, copied to the response as each piece arrives.
fn echo(request: Request) -> Response {
    let (_, request_done) = wit_future::new(|| Ok(()));
    let (mut contents, _trailers) = Request::consume_body(request, request_done);
    let (mut tx, rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (response, _sent) = Response::new(Fields::new(), Some(rx), trailers_rx);
    wit_bindgen::spawn_local(async move {
        loop {
            let (result, chunk) = contents.read(Vec::with_capacity(64 << 10)).await;
            if !chunk.is_empty() && !tx.write_all(chunk).await.is_empty() {
                return;
            }
            if !matches!(result, wit_bindgen::StreamResult::Complete(_)) {
                return;
            }
        }
    });
    response
}

/// `n` chunks of text, `ms` apart.
fn chunks(n: u64, ms: u64) -> Response {
    let (mut tx, rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (response, _sent) = Response::new(Fields::new(), Some(rx), trailers_rx);
    wit_bindgen::spawn_local(async move {
        for i in 0..n {
            if i > 0 {
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
            }
            if !tx
                .write_all(format!("chunk {i}\n").into_bytes())
                .await
                .is_empty()
            {
                return;
            }
        }
    });
    response
}

/// The file at `path` under the first granted folder, through WASI 0.3's
/// filesystem.
async fn read_file(path: &str) -> Result<String, String> {
    use wasip3::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let (dir, _) = wasip3::filesystem::preopens::get_directories()
        .into_iter()
        .next()
        .ok_or("no folder is granted")?;
    let file = dir
        .open_at(
            PathFlags::empty(),
            path.trim_start_matches('/').to_owned(),
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (contents, _done) = file.read_via_stream(0);
    let bytes = contents.collect().await;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// GETs `url` (`http://HOST/PATH`): the status and body.
async fn fetch(url: &str) -> Result<(u16, String), ErrorCode> {
    let rest = url
        .strip_prefix("http://")
        .ok_or(ErrorCode::HttpRequestUriInvalid)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    drop(trailers_tx);
    let (request, _sent) = Request::new(Fields::new(), None, trailers_rx, None);
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| ErrorCode::HttpRequestUriInvalid)?;
    request
        .set_authority(Some(authority))
        .map_err(|()| ErrorCode::HttpRequestUriInvalid)?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| ErrorCode::HttpRequestUriInvalid)?;
    let response = wasip3::http::client::send(request).await?;
    let status = response.get_status_code();
    let (_, response_done) = wit_future::new(|| Ok(()));
    let (contents, _trailers) = Response::consume_body(response, response_done);
    let body = contents.collect().await;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
