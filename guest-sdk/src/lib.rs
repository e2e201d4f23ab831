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
//! With the `wasip3` feature the same code builds as a WASI 0.3 component
//! (exporting `wasi:http/handler@0.3.0`): everything here works the same,
//! except websockets, which need a WASI 0.2 build.
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
#[cfg(all(
    feature = "paged-heap",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
mod heap;
mod hibernation;
pub mod kv;
pub mod pubsub;
mod request;
mod response;
mod route;
#[cfg_attr(feature = "wasip3", path = "serve_p3.rs")]
mod serve;
mod settings;
mod static_files;
pub mod time;
pub mod variables;
mod wasi;
pub mod websocket;

pub use app::{Application, Handler};
pub use cookie::{self, Cookie, SameSite};
pub use cyclone_sdk_macros::{app, handler, handler_impl};
pub use error::HttpError;
pub use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
pub use request::Request;
pub use response::BodyWriter;
pub use response::{IntoResponse, Response};
pub use static_files::static_url;

/// Used by the macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::bindings::cyclone::platform::websocket::{
        Request as HandshakeRequest, Response as HandshakeResponse, Session,
    };
    #[cfg(not(feature = "wasip3"))]
    pub use crate::bindings::export_websocket_handler;
    #[cfg(not(feature = "wasip3"))]
    pub use crate::bindings::exports::cyclone::platform::websocket_handler::Guest as WebSocketGuest;
    #[cfg(feature = "wasip3")]
    pub use wasip3;
    #[cfg(feature = "wasip3")]
    pub use wasip3::exports::http::handler::Guest as HttpHandler;
    #[cfg(feature = "wasip3")]
    pub use wasip3::http::types::{ErrorCode, Request as WasiRequest, Response as WasiResponse};
    #[cfg(not(feature = "wasip3"))]
    pub use wstd::__internal::wasip2;
    #[cfg(not(feature = "wasip3"))]
    pub use wstd::__internal::wasip2::exports::http::incoming_handler::Guest as IncomingHandler;
    #[cfg(not(feature = "wasip3"))]
    pub use wstd::__internal::wasip2::http::types::{IncomingRequest, ResponseOutparam};

    /// The `websocket-handler` export's `connect`.
    #[cfg(not(feature = "wasip3"))]
    pub fn connect(
        app: crate::Application,
        request: HandshakeRequest,
    ) -> Option<HandshakeResponse> {
        crate::websocket::connect(app, request)
    }

    /// The `websocket-handler` export's `run`.
    #[cfg(not(feature = "wasip3"))]
    pub fn run(session: Session) {
        crate::websocket::run(session)
    }

    #[cfg(not(feature = "wasip3"))]
    pub use crate::bindings::cyclone::platform::hibernation::Session as EventSession;
    #[cfg(not(feature = "wasip3"))]
    pub use crate::bindings::cyclone::platform::pubsub::Event as PubSubEvent;
    #[cfg(not(feature = "wasip3"))]
    pub use crate::bindings::cyclone::platform::websocket::{CloseFrame, Message};
    #[cfg(not(feature = "wasip3"))]
    pub use crate::bindings::exports::cyclone::platform::hibernating_handler::{
        Decision, Guest as HibernatingGuest,
    };
    #[cfg(not(feature = "wasip3"))]
    pub use crate::hibernation::exports::{decide, on_close, on_message, on_open, on_pubsub};

    pub use crate::serve::serve;

    /// Exports `$handler` (an `FnOnce(Request)` returning a future of
    /// something that implements `IntoResponse`) as the component's
    /// `wasi:http/incoming-handler@0.2`, implemented by the type `$ty`.
    #[cfg(not(feature = "wasip3"))]
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __export_http {
        ($ty:ident, $handler:expr) => {
            impl ::cyclone_sdk::__private::IncomingHandler for $ty {
                fn handle(
                    request: ::cyclone_sdk::__private::IncomingRequest,
                    response_out: ::cyclone_sdk::__private::ResponseOutparam,
                ) {
                    ::cyclone_sdk::__private::serve(request, response_out, $handler)
                }
            }

            ::cyclone_sdk::__private::wasip2::http::proxy::export!(
                $ty with_types_in ::cyclone_sdk::__private::wasip2
            );
        };
    }

    /// Exports `$handler` as the component's `wasi:http/handler@0.3`,
    /// implemented by the type `$ty`.
    #[cfg(feature = "wasip3")]
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __export_http {
        ($ty:ident, $handler:expr) => {
            impl ::cyclone_sdk::__private::HttpHandler for $ty {
                async fn handle(
                    request: ::cyclone_sdk::__private::WasiRequest,
                ) -> ::core::result::Result<
                    ::cyclone_sdk::__private::WasiResponse,
                    ::cyclone_sdk::__private::ErrorCode,
                > {
                    ::cyclone_sdk::__private::serve(request, $handler).await
                }
            }

            ::cyclone_sdk::__private::wasip3::http::service::export!(
                $ty with_types_in ::cyclone_sdk::__private::wasip3
            );
        };
    }

    /// Exports the websocket handler of the application `$app` (a
    /// `fn() -> Application`), implemented by the type `$ty`.
    #[cfg(not(feature = "wasip3"))]
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __export_websocket {
        ($ty:ident, $app:path) => {
            impl ::cyclone_sdk::__private::WebSocketGuest for $ty {
                fn connect(
                    request: ::cyclone_sdk::__private::HandshakeRequest,
                ) -> ::core::option::Option<::cyclone_sdk::__private::HandshakeResponse> {
                    ::cyclone_sdk::__private::connect($app(), request)
                }

                fn run(session: ::cyclone_sdk::__private::Session) {
                    ::cyclone_sdk::__private::run(session)
                }
            }

            impl ::cyclone_sdk::__private::HibernatingGuest for $ty {
                fn connect(
                    request: ::cyclone_sdk::__private::HandshakeRequest,
                ) -> ::cyclone_sdk::__private::Decision {
                    ::cyclone_sdk::__private::decide($app(), request)
                }

                fn on_open(session: &::cyclone_sdk::__private::EventSession) {
                    ::cyclone_sdk::__private::on_open(session)
                }

                fn on_message(
                    session: &::cyclone_sdk::__private::EventSession,
                    message: ::cyclone_sdk::__private::Message,
                ) {
                    ::cyclone_sdk::__private::on_message($app(), session, message)
                }

                fn on_pubsub(
                    session: &::cyclone_sdk::__private::EventSession,
                    topic: ::std::string::String,
                    events: ::std::vec::Vec<::cyclone_sdk::__private::PubSubEvent>,
                ) {
                    ::cyclone_sdk::__private::on_pubsub($app(), session, topic, events)
                }

                fn on_close(
                    session: &::cyclone_sdk::__private::EventSession,
                    frame: ::core::option::Option<::cyclone_sdk::__private::CloseFrame>,
                ) {
                    ::cyclone_sdk::__private::on_close($app(), session, frame)
                }
            }

            ::cyclone_sdk::__private::export_websocket_handler!($ty);
        };
    }

    /// A WASI 0.3 build serves no websockets: nothing to export.
    #[cfg(feature = "wasip3")]
    #[macro_export]
    #[doc(hidden)]
    macro_rules! __export_websocket {
        ($ty:ident, $app:path) => {};
    }

    pub use crate::{__export_http as export_http, __export_websocket as export_websocket};
}
