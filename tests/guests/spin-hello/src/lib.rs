//! A handler written with the Spin SDK's `#[http_component]`.

use spin_sdk::http::{IntoResponse, Request, Response};

/// Answers with the request path.
#[spin_sdk::http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(format!("spin at {}\n", request.path()))
        .build())
}
