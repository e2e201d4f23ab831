//! The integration tests: one binary, each test starting the real `cyclone`
//! on port 0 and talking to it with real clients.
// `chat.rs` and `tour.rs` are loaded twice on purpose: once per build of
// their example.
#![allow(clippy::duplicate_mod)]

mod blog;
mod browser;
mod chat;
/// The chat suite again, against the example's WASI 0.3 build.
#[path = "chat.rs"]
mod chat_p3;
mod deploy;
mod dev;
mod hardening;
mod hibernation;
mod limits;
mod outbound;
mod scale_out;
mod serve;
mod state;
mod static_files;
mod tls;
mod tour;
/// The tour suite again, against the example's WASI 0.3 build.
#[path = "tour.rs"]
mod tour_p3;
mod wasi_p3;
mod websocket_edges;
mod websockets;
