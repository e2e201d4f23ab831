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
        _ => Err(HttpError::not_found()),
    }
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
