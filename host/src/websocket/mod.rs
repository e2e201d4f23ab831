//! The websocket front end: the handshake (`handshake`), the guest's
//! `connect` and `run` (`session`) and the connection (`pump`).
//!
//! An upgrade request on a route whose component exports
//! `cyclone:platform/websocket-handler` comes here instead of the guest's
//! HTTP handler. The host checks the handshake and the `Origin` (403 for a
//! foreign one), takes an instance permit, and asks the guest's `connect`
//! whether to accept. On acceptance it answers 101, and one task then runs
//! the session: the guest's `run` on the same instance, next to a pump that
//! moves frames between the connection (tokio-tungstenite over
//! `hyper::upgrade`) and two bounded channels. Frames from the peer wait in
//! the connection while the guest has not taken the previous ones; a guest's
//! `send` waits while the outgoing channel is full. Nothing is dropped.
//!
//! The host answers pings (each pong flushed before the next read), pings an
//! idle peer every `websocket_ping_secs` and disconnects one silent, or not
//! reading, for two intervals; a session's write buffer holds at most one
//! message. A message over `websocket_max_message_kb` closes the session
//! with 1009, a protocol error with 1002 (1007 for text that is not UTF-8);
//! a guest that traps closes it with 1011; a guest that returns closes it
//! with 1000. Every closing handshake ends the connection as soon as it is
//! complete. When the connection ends the guest sees `closed` and has 5 s
//! to return before its instance is dropped; either way its permits are
//! released and a log line says how the session ended. On shutdown every
//! session is closed with 1001 and the server waits for them as for
//! requests, up to `drain_timeout_secs`.
//!
//! Limits: `timeout_ms` bounds `connect` only, never a session; the CPU
//! budget applies to the work between two events the guest receives; the
//! memory cap applies to the session's instance.
//!
//! A component that also exports `cyclone:platform/hibernating-handler`
//! decides per session, in that interface's `connect`, whether the session
//! runs live as above or hibernates (`hibernate`): then no instance is
//! kept between events, and each event runs on a fresh one under the app's
//! limits.

mod handshake;
mod hibernate;
mod pump;
mod session;

use std::sync::Arc;

use http::header;
use hyper::body::Incoming;
use tokio::sync::{oneshot, watch};

use crate::app::{Instances, Target};
use crate::capabilities::bindings::cyclone::platform::websocket as wit;
use crate::drain::OpenCount;
use crate::failure::GuestFailure;
use crate::limits::CpuClock;
use crate::response::Response;
use session::Decision;

/// The open sessions of a process, and the signal that closes them all.
#[derive(Debug)]
pub struct Sessions {
    going_away: watch::Sender<bool>,
    open: OpenCount,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            going_away: watch::Sender::new(false),
            open: OpenCount::default(),
        }
    }
}

impl Sessions {
    /// Tells every session to close with 1001 (going away).
    pub fn close_all(&self) {
        self.going_away.send_replace(true);
    }

    /// Returns once no session is open.
    pub async fn all_closed(&self) {
        self.open.all_closed().await;
    }
}

/// Whether `req` asks to upgrade to a websocket.
pub fn is_upgrade(req: &hyper::Request<Incoming>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    has_token(header::UPGRADE, "websocket") && has_token(header::CONNECTION, "upgrade")
}

/// Serves an upgrade request on `target`'s app, which serves sessions: the
/// handshake, the guest's decision, then (in its own task) the session.
pub(crate) async fn handle(
    instances: &Arc<Instances>,
    sessions: &Sessions,
    target: &Target,
    mut req: hyper::Request<Incoming>,
    id: u64,
) -> Response {
    let app = target.app.clone();
    let name: Arc<str> = app.name().clone();
    let Some(export) = app.websocket() else {
        return GuestFailure::Trapped.response(id, &name);
    };
    let key = match handshake::check(export, &req) {
        Ok(key) => key,
        Err(response) => {
            let origin = req.headers().get(header::ORIGIN);
            tracing::info!(request = id, app = %name, "{}: websocket handshake refused (origin {origin:?})", response.status().as_u16());
            return *response;
        }
    };
    let Ok(session) = export.sessions.clone().try_acquire_owned() else {
        crate::metrics::METRICS.refused(&name, "sessions");
        tracing::warn!(request = id, app = %name, "503: websocket_max_sessions reached");
        return crate::response::unavailable();
    };
    let permits = match instances.admit(target, id).await {
        Ok(permits) => permits,
        Err(response) => return *response,
    };
    let store = match app.new_store(id, CpuClock::per_event(app.cpu_budget)) {
        Ok(store) => store,
        Err(response) => return *response,
    };
    let request = wit::Request {
        method: req.method().as_str().to_owned(),
        path_with_query: req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned()),
        headers: req
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (decided, decision) = oneshot::channel();
    let open = sessions.open.open();
    let going_away = sessions.going_away.subscribe();
    crate::app::spawn_guest(store, |store| {
        session::live(session::Opening {
            target: target.clone(),
            instances: instances.clone(),
            store,
            request,
            decided,
            on_upgrade,
            going_away,
            id,
            held: (
                permits,
                open,
                crate::metrics::OpenSession::new(&name),
                session,
            ),
        })
    });
    match decision.await {
        Ok(Decision::Accept { hibernate }) => {
            let kind = if hibernate { " (hibernating)" } else { "" };
            tracing::info!(request = id, app = %name, "websocket session opened{kind}");
            let label = crate::metrics::App {
                app: name.to_string(),
            };
            crate::metrics::METRICS
                .sessions_opened
                .get_or_create(&label)
                .inc();
            handshake::accept(&key)
        }
        Ok(Decision::Answer(response)) => response,
        Err(_) => GuestFailure::Trapped.response(id, &name),
    }
}
