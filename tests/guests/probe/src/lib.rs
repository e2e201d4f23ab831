//! A test guest exercising the host: `/echo`, `/sleep?ms=N`, `/log[?n=N]`, `/panic`,
//! `/internal` (an `HttpError` with a detail meant only for the log) and
//! `/variable?name=N` (an app variable's value) and
//! `/fetch?url=U[&host=H][&between_ms=N]` (an outbound GET, optionally with a
//! `Host` header and a between-bytes timeout; answers `STATUS BODY` or
//! `error: WHY`).

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
        _ => Err(HttpError::not_found()),
    }
}
