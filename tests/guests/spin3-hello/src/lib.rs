//! A WASI 0.3 component built with the Spin SDK 7 (`#[http_service]`),
//! without cyclone-sdk: `/` answers a greeting, `/echo` streams the request
//! body back as it arrives, anything else is 404.

use spin_sdk::http::{IntoResponse, Request, Response, StatusCode};
use spin_sdk::http_service;
use spin_sdk::wasip3::http::types::{ErrorCode, Response as WasiResponse};

#[http_service]
async fn handle(request: Request) -> Result<WasiResponse, ErrorCode> {
    match request.uri().path() {
        "/" => format!("hello from spin-sdk 7 on {}\n", request.method()).into_response(),
        "/echo" => Response::new(request.into_body()).into_response(),
        _ => (StatusCode::NOT_FOUND, "no such route\n".to_owned()).into_response(),
    }
}
