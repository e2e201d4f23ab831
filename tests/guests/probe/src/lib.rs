//! A test guest exercising the host: `/echo`, `/uri` (the request's URI as
//! the guest sees it, scheme and authority included), `/sleep?ms=N`, `/log[?n=N]`, `/panic`,
//! `/internal` (an `HttpError` with a detail meant only for the log) and
//! `/variable?name=N` (an app variable's value), `/static-url?PATH` (what
//! `static_url(PATH)` gives) and
//! `/fetch?url=U[&host=H][&between_ms=N]` (an outbound GET, optionally with a
//! `Host` header and a between-bytes timeout; answers `STATUS BODY` or
//! `error: WHY`), and `/kv?store=S&op=OP[&key=K][&n=N][&expected=E]`: one
//! key-value call through the SDK (`get`, `set` with the body, `delete`,
//! `exists`, `incr` by `n`, `cas` from `expected` (absent: none) to the
//! body, `keys`, `json`, `batch`), answering its result, or
//! `error: KIND(...)` with status 200 so tests see the SDK's error value.
//! `/c-heap` calls C's allocation functions (as C code linked into a
//! component would) and answers `ok` or the first check that failed.

use cyclone_sdk::{HttpError, Request, Response};

/// Dispatches on the path; anything else is 404.
#[cyclone_sdk::handler]
async fn handle(req: Request) -> Result<Response, HttpError> {
    match req.path() {
        "/echo" => Ok(Response::text(format!(
            "{} {} {}\n{}",
            req.method(),
            req.path(),
            req.query().unwrap_or(""),
            req.text()?
        ))),
        "/uri" => Ok(Response::text(req.uri().to_string())),
        "/static-url" => Ok(Response::text(cyclone_sdk::static_url(
            req.query().unwrap_or(""),
        ))),
        "/sleep" => {
            let ms: u64 = req
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|ms| ms.parse().ok())
                .ok_or_else(|| HttpError::bad_request("expected ?ms=N"))?;
            println!("sleeping {ms} ms");
            wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
            Ok(Response::text(format!("slept {ms} ms")))
        }
        "/log" => {
            println!("hello from stdout");
            eprintln!("hello from stderr");
            // `?n=N`: N more numbered lines, as fast as the guest can print.
            let n: u64 = req
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            for i in 0..n {
                println!("line {i} of a flood");
            }
            if n > 0 {
                println!("{}", "y".repeat(10_000));
            }
            Ok(Response::text("logged"))
        }
        "/panic" => panic!("the probe was asked to panic"),
        "/internal" => Err(HttpError::internal("the database password is hunter2")),
        "/fetch" => {
            let arg = |name: &str| {
                req.query()
                    .unwrap_or("")
                    .split('&')
                    .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_owned)
            };
            let url = arg("url").ok_or_else(|| HttpError::bad_request("expected ?url="))?;
            let mut request = http::Request::get(url.as_str());
            if let Some(host) = arg("host") {
                request = request.header("host", host);
            }
            let request = request
                .body(Vec::new())
                .map_err(|e| HttpError::bad_request(e.to_string()))?;
            let mut client = cyclone_sdk::client::Client::new();
            if let Some(ms) = arg("between_ms").and_then(|ms| ms.parse().ok()) {
                client = client.between_bytes_timeout(std::time::Duration::from_millis(ms));
            }
            Ok(Response::text(match client.fetch(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.text().await {
                        Ok(body) => format!("{status} {body}"),
                        Err(e) => format!("error: {e}"),
                    }
                }
                Err(e) => format!("error: {e}"),
            }))
        }
        "/variable" => {
            let name = req
                .query()
                .and_then(|q| q.strip_prefix("name="))
                .unwrap_or("");
            match cyclone_sdk::variables::get(name) {
                Some(value) => Ok(Response::text(value)),
                None => Err(HttpError::not_found()),
            }
        }
        "/kv" => Ok(Response::text(match key_value(&req) {
            Ok(answer) => answer,
            Err(e) => format!("error: {e:?}"),
        })),
        "/c-heap" => Ok(Response::text(c_heap().err().unwrap_or("ok"))),
        _ => Err(HttpError::not_found()),
    }
}

unsafe extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn calloc(count: usize, size: usize) -> *mut u8;
    fn realloc(ptr: *mut u8, size: usize) -> *mut u8;
    fn free(ptr: *mut u8);
    fn aligned_alloc(align: usize, size: usize) -> *mut u8;
    fn posix_memalign(out: *mut *mut u8, align: usize, size: usize) -> i32;
    fn malloc_usable_size(ptr: *mut u8) -> usize;
}

/// Checks C's allocation functions: alignment, zeroing, contents kept by
/// `realloc`, refused arguments, and blocks that do not overlap.
fn c_heap() -> Result<(), &'static str> {
    fn check(ok: bool, what: &'static str) -> Result<(), &'static str> {
        if ok { Ok(()) } else { Err(what) }
    }
    // SAFETY: each block is used within its size and freed once.
    unsafe {
        // Each block is filled with its own byte: its number.
        let mut blocks: Vec<(*mut u8, usize)> = Vec::new();
        for align in [16usize, 32, 64, 256, 4096, 65536] {
            for size in [0usize, 1, 24, 1000, 70_000] {
                let p = aligned_alloc(align, size);
                check(!p.is_null(), "aligned_alloc gave null")?;
                check(p.addr().is_multiple_of(align), "aligned_alloc misaligned")?;
                check(malloc_usable_size(p) >= size, "usable size too small")?;
                p.write_bytes(blocks.len() as u8, size);
                blocks.push((p, size));
                let mut q = std::ptr::null_mut();
                check(
                    posix_memalign(&mut q, align, size) == 0,
                    "posix_memalign failed",
                )?;
                check(q.addr().is_multiple_of(align), "posix_memalign misaligned")?;
                q.write_bytes(blocks.len() as u8, size);
                blocks.push((q, size));
            }
        }
        for size in [1usize, 17, 4095, 100_000] {
            let z = calloc(size, 3);
            check(!z.is_null() && z.addr().is_multiple_of(16), "calloc")?;
            check((0..size * 3).all(|k| *z.add(k) == 0), "calloc not zeroed")?;
            z.write_bytes(0xAB, size * 3);
            free(z);
            let m = malloc(size);
            check(!m.is_null() && m.addr().is_multiple_of(16), "malloc")?;
            for k in 0..size {
                *m.add(k) = k as u8;
            }
            let grown = realloc(m, size * 5);
            check(!grown.is_null(), "realloc gave null")?;
            check(
                (0..size).all(|k| *grown.add(k) == k as u8),
                "realloc lost bytes",
            )?;
            let shrunk = realloc(grown, size / 2 + 1);
            check(
                (0..=size / 2).all(|k| *shrunk.add(k) == k as u8),
                "shrink lost bytes",
            )?;
            free(shrunk);
        }
        for (n, &(p, size)) in blocks.iter().enumerate() {
            check(
                (0..size).all(|k| *p.add(k) == n as u8),
                "a block was overwritten by another",
            )?;
            if n % 2 == 0 {
                free(p);
            }
        }
        for &(p, _) in blocks.iter().skip(1).step_by(2) {
            free(p);
        }
        let mut out = std::ptr::null_mut();
        check(
            posix_memalign(&mut out, 24, 8) == 28,
            "posix_memalign took align 24",
        )?;
        // `black_box`: the compiler may drop an allocation whose pointer
        // is only compared with null, and assume it succeeded.
        use std::hint::black_box;
        check(
            black_box(aligned_alloc(3, 8)).is_null(),
            "aligned_alloc took align 3",
        )?;
        check(
            black_box(calloc(usize::MAX / 2, 3)).is_null(),
            "calloc overflowed",
        )?;
        check(
            black_box(malloc(usize::MAX - 8)).is_null(),
            "malloc took usize::MAX",
        )?;
        free(std::ptr::null_mut());
    }
    Ok(())
}

/// One key-value call, from `/kv`'s query.
fn key_value(req: &Request) -> Result<String, cyclone_sdk::kv::Error> {
    use cyclone_sdk::kv::Store;
    let store = Store::open(&req.argument_or("store", "default"))?;
    let key = req.argument_or("key", "k");
    Ok(match req.argument_or("op", "get").as_str() {
        "get" => match store.get(&key)? {
            Some(value) => format!("value {}", String::from_utf8_lossy(&value)),
            None => "none".into(),
        },
        "set" => {
            store.set(&key, req.body())?;
            "ok".into()
        }
        "delete" => {
            store.delete(&key)?;
            "ok".into()
        }
        "exists" => store.exists(&key)?.to_string(),
        "incr" => store
            .increment(&key, req.argument_or("n", "1").parse().unwrap_or(1))?
            .to_string(),
        "cas" => {
            let expected = req.argument("expected").ok();
            store
                .compare_and_swap(&key, expected.as_deref().map(str::as_bytes), req.body())?
                .to_string()
        }
        "keys" => {
            let mut keys = store.all_keys()?;
            keys.sort();
            keys.join(",")
        }
        "json" => {
            store.set_json(&key, &[1, 2, 3])?;
            format!("{:?}", store.get_json::<Vec<u32>>(&key)?)
        }
        "batch" => {
            store.set_many(&[("b1", b"one"), ("b2", b"two")])?;
            let values = store.get_many(&["b1", "b2", "b3"])?;
            store.delete_many(&["b1", "b2"])?;
            format!("{values:?} {}", store.exists("b1")?)
        }
        other => format!("unknown op {other}"),
    })
}
