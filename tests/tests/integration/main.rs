//! The integration tests: one binary, each test starting the real `cyclone`
//! on port 0 and talking to it with real clients.

mod browser;
mod chat;
mod deploy;
mod dev;
mod hardening;
mod limits;
mod scale_out;
mod serve;
mod state;
mod tls;
mod tour;
mod wasi_p3;
mod websocket_edges;
mod websockets;
