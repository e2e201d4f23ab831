//! A test guest exercising the host: `/echo`, `/sleep?ms=N`, `/log`, `/panic`,
//! `/internal` (an `HttpError` with a detail meant only for the log) and
//! `/variable?name=N` (an app variable's value).

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
            Ok(Response::text("logged"))
        }
        "/panic" => panic!("the probe was asked to panic"),
        "/internal" => Err(HttpError::internal("the database password is hunter2")),
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
