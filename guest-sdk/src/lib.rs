//! # cyclone-sdk
//!
//! Write HTTP handlers for cyclone in Rust. A handler is an `async fn` from a
//! [`Request`] to anything that implements [`IntoResponse`] — a [`Response`],
//! an [`HttpError`], or a `Result` of the two. The [`handler`] attribute
//! exports it as the component's `wasi:http/incoming-handler`, so the crate
//! builds to a WebAssembly component that cyclone (or any `wasi:http` host)
//! serves.
//!
//! ```no_run
//! use cyclone_sdk::{HttpError, Request, Response, StatusCode};
//!
//! #[cyclone_sdk::handler]
//! async fn handle(req: Request) -> Result<Response, HttpError> {
//!     match req.path() {
//!         "/" => Ok(Response::text("Hello, world!")),
//!         "/echo" => Ok(Response::text(req.text()?.to_owned())),
//!         other => Err(HttpError::new(StatusCode::NOT_FOUND, format!("no page at {other}"))),
//!     }
//! }
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasip2`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//! ```
//!
//! `cargo build --release --target wasm32-wasip2` then leaves the component in
//! `target/wasm32-wasip2/release/<crate>.wasm`, ready for `cyclone serve`.
//!
//! Each request runs in a fresh instance: statics start over for every request.
#![deny(missing_docs)]

mod error;
mod request;
mod response;

pub use cyclone_sdk_macros::handler;
pub use error::HttpError;
pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
pub use request::Request;
pub use response::{IntoResponse, Response};

/// Used by the [`handler`] macro; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    pub use wstd::__internal::wasip2;
    pub use wstd::__internal::wasip2::exports::http::incoming_handler::Guest as IncomingHandler;
    pub use wstd::__internal::wasip2::http::types::{IncomingRequest, ResponseOutparam};

    use crate::{IntoResponse, Request};

    /// Reads the request, runs the handler on the SDK's executor, and writes
    /// its response.
    pub fn serve<F, Fut>(request: IncomingRequest, response_out: ResponseOutparam, handler: F)
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future,
        Fut::Output: IntoResponse,
    {
        let responder = wstd::http::server::Responder::new(response_out);
        wstd::runtime::block_on(async move {
            let response = match Request::from_incoming(request).await {
                Ok(request) => handler(request).await.into_response(),
                Err(error) => error.into_response(),
            };
            // A failure here means the client went away; there is no one to tell.
            let _ = responder.respond(response.into_http()).await;
        })
    }
}
