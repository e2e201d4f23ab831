//! A handler written with `wstd` alone, built as a binary (it also exports `wasi:cli/run`).

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    Ok(Response::new(
        format!("wstd at {}\n", request.uri().path()).into(),
    ))
}
