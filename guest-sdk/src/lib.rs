//! # cyclone-sdk
//!
//! Write web applications for cyclone in Rust, the way `tornado.web` writes
//! them in Python: an [`Application`] routes paths to handlers, a [`Handler`]
//! answers the verbs it implements, errors are [`HttpError`]s rendered by one
//! error page, cookies can be signed, forms can be XSRF-checked, and bodies
//! can be streamed. The crate builds to a WebAssembly component that cyclone
//! serves, one fresh instance per request.
//!
//! ```no_run
//! use cyclone_sdk::{Application, Handler, HttpError, Request, Response, handler_impl};
//!
//! /// `GET /users/{id}` and `DELETE /users/{id}`; any other verb is a 405.
//! struct User;
//!
//! #[handler_impl]
//! impl Handler for User {
//!     async fn get(&mut self, req: &mut Request) -> Result<Response, HttpError> {
//!         let id: u64 = req.param("id")?; // not a number → 400
//!         Ok(Response::json(&serde_json::json!({ "id": id })))
//!     }
//!
//!     async fn delete(&mut self, _req: &mut Request) -> Result<Response, HttpError> {
//!         Ok(Response::new(cyclone_sdk::StatusCode::NO_CONTENT))
//!     }
//! }
//!
//! async fn home(_req: &mut Request) -> Response {
//!     Response::html("<h1>Hello</h1>")
//! }
//!
//! #[cyclone_sdk::handler]
//! async fn handle(req: Request) -> Response {
//!     Application::new()
//!         .get("/", home)
//!         .route("/users/{id}", User)
//!         .handle(req)
//!         .await
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
//! The [`guide`] builds a whole application step by step.
//!
//! The [`handler`] attribute alone also works for a single function from a
//! [`Request`] to anything that implements [`IntoResponse`]. An application
//! with websocket routes ([`Application::websocket`], see [`websocket`]) is
//! exported with [`app`] on a `fn() -> Application` instead; [`pubsub`]
//! connects an app's requests and sessions, and [`kv`] keeps state that
//! outlives them.
//!
//! Each request (and each websocket session) runs in a fresh instance:
//! statics start over for every request, and a panic ends the instance — the
//! host answers 500 (or closes the session with 1011) and logs the panic
//! message; the client sees neither.
#![deny(missing_docs)]

mod app;
#[doc(hidden)]
pub mod bindings;
pub mod client;
mod cookies;
mod error;
pub mod guide;
pub mod kv;
pub mod pubsub;
mod request;
mod response;
mod route;
mod serve;
mod settings;
pub mod time;
pub mod variables;
pub mod websocket;

pub use app::{Application, Handler};
pub use cookie::{self, Cookie, SameSite};
pub use cyclone_sdk_macros::{app, handler, handler_impl};
pub use error::HttpError;
pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
pub use request::Request;
pub use response::BodyWriter;
pub use response::{IntoResponse, Response};

/// Used by the macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;

    pub use wstd::__internal::wasip2;
    pub use wstd::__internal::wasip2::exports::http::incoming_handler::Guest as IncomingHandler;
    pub use wstd::__internal::wasip2::http::types::{IncomingRequest, ResponseOutparam};

    pub use crate::bindings;
    pub use crate::bindings::cyclone::platform::websocket::{
        Request as HandshakeRequest, Response as HandshakeResponse, Session,
    };
    pub use crate::bindings::export_websocket_handler;
    pub use crate::bindings::exports::cyclone::platform::websocket_handler::Guest as WebSocketGuest;

    /// The `websocket-handler` export's `connect`.
    pub fn connect(
        app: crate::Application,
        request: HandshakeRequest,
    ) -> Option<HandshakeResponse> {
        crate::websocket::connect(app, request)
    }

    /// The `websocket-handler` export's `run`.
    pub fn run(session: Session) {
        crate::websocket::run(session)
    }

    use crate::{IntoResponse, Request};

    /// Reads the request, runs the handler on the SDK's executor, and writes
    /// its response.
    pub fn serve<F, Fut>(request: IncomingRequest, response_out: ResponseOutparam, handler: F)
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future,
        Fut::Output: IntoResponse,
    {
        wstd::runtime::block_on(async move {
            let response = match Request::from_incoming(request).await {
                Ok(request) => handler(request).await.into_response(),
                Err(error) => error.into_response(),
            };
            crate::serve::send(response, response_out).await;
        })
    }
}
