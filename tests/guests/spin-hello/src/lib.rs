//! A handler written with the Spin SDK's `#[http_component]`. `/kv` and
//! `/kv-denied` (also under `/spin/`) call `wasi:keyvalue@0.2.0-draft2` through the raw bindings
//! the Spin SDK carries, as a component written for Spin would.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};

/// Answers with the request path, or the outcome of the key-value calls.
#[spin_sdk::http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let path = request.path();
    let body = match path.strip_prefix("/spin").unwrap_or(path) {
        "/kv" => match key_value() {
            Ok(text) => text,
            Err(e) => format!("error: {e:?}"),
        },
        "/kv-denied" => format!("{:?}", store::open("secret").map(drop)),
        _ => format!("spin at {path}\n"),
    };
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(body)
        .build())
}

/// Every kind of call once: set/get/exists, increment, compare-and-swap
/// (a stale one fails and hands back a fresh handle), batch, list-keys.
fn key_value() -> Result<String, store::Error> {
    let bucket = store::open("default")?;
    bucket.set("spin:greeting", b"hello from spin")?;
    let greeting = bucket.get("spin:greeting")?.unwrap_or_default();
    let n = atomics::increment(&bucket, "spin:n", 2)?;
    let cas = atomics::Cas::new(&bucket, "spin:greeting")?;
    bucket.set("spin:greeting", b"changed meanwhile")?;
    let stale = match atomics::swap(cas, b"lost") {
        Ok(()) => "swapped".to_owned(),
        Err(atomics::CasError::CasFailed(fresh)) => {
            let current = fresh.current()?.unwrap_or_default();
            atomics::swap(fresh, b"won").map_err(|e| match e {
                atomics::CasError::StoreError(e) => e,
                atomics::CasError::CasFailed(_) => store::Error::Other("lost twice".into()),
            })?;
            format!("retried over {}", String::from_utf8_lossy(&current))
        }
        Err(atomics::CasError::StoreError(e)) => return Err(e),
    };
    batch::set_many(
        &bucket,
        &[
            ("spin:a".into(), b"1".to_vec()),
            ("spin:b".into(), b"2".to_vec()),
        ],
    )?;
    let many = batch::get_many(&bucket, &["spin:a".into(), "spin:zz".into()])?;
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor.as_deref())?;
        keys.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    keys.sort();
    Ok(format!(
        "{}|{n}|{stale}|{}|{many:?}|{}",
        String::from_utf8_lossy(&greeting),
        String::from_utf8_lossy(&bucket.get("spin:greeting")?.unwrap_or_default()),
        keys.join(",")
    ))
}
