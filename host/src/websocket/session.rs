//! The guest side of a session: its instance's `connect` decides, and its
//! `run` owns the session next to the connection's pump until one of them
//! ends.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wasmtime::Store;

use super::handshake::refusal_response;
use super::hibernate::Kept;
use super::pump::{Connection, pump};
use crate::app::{App, Instances, Permits, Target};
use crate::capabilities::HostState;
use crate::capabilities::bindings::cyclone::platform::websocket as wit;
use crate::capabilities::bindings::exports::cyclone::platform::hibernating_handler::{
    Decision as EventDecision, Guest as EventGuest,
};
use crate::capabilities::bindings::exports::cyclone::platform::websocket_handler::Guest;
use crate::capabilities::websocket::{Session, close_frame};
use crate::drain::Open;
use crate::failure::GuestFailure;
use crate::response::Response;

/// How long a guest may take to return after its connection has ended.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A session from its handshake on: what its task holds.
pub(crate) struct Opening {
    pub(crate) target: Target,
    pub(crate) instances: Arc<Instances>,
    pub(crate) store: Store<HostState>,
    pub(crate) request: wit::Request,
    pub(crate) decided: oneshot::Sender<Decision>,
    pub(crate) on_upgrade: hyper::upgrade::OnUpgrade,
    pub(crate) going_away: watch::Receiver<bool>,
    pub(crate) id: u64,
    /// Released when the session ends: its instance permits, and its place
    /// among the sessions a drain waits for.
    pub(crate) held: (
        Permits,
        Open,
        crate::metrics::OpenSession,
        tokio::sync::OwnedSemaphorePermit,
    ),
}

/// A session's task: the guest's `connect`, then (accepted, upgraded) its
/// `run` next to the connection's pump. This future lives as long as the
/// session.
pub(crate) async fn live(opening: Opening) {
    let Opening {
        target,
        instances,
        store,
        request,
        decided,
        on_upgrade,
        going_away,
        id,
        held,
    } = opening;
    let app = target.app.clone();
    // Boxed: `connect` is done before the session runs; inline, this task
    // would keep room for it for as long as the session lives.
    let decision = Box::pin(connect(&app, store, request, decided, id));
    let Some((store, accepted)) = decision.await else {
        return;
    };
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::info!(request = id, app = %app.name(), "websocket upgrade failed: {e}");
            return;
        }
    };
    let Some(export) = app.websocket() else {
        return;
    };
    let ws = WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Server,
        Some(super::pump::config(export)),
    )
    .await;
    match accepted {
        Accepted::Live(guest) => {
            run(&app, store, guest, ws, going_away, id).await;
            drop(held);
        }
        Accepted::Hibernate(opened) => {
            let (guest, path, on_close) = *opened;
            // Boxed: this task's future must not keep room for a
            // hibernating session's opening, which it never runs.
            let kept = Kept::new(target, instances, id, &path, export.ping, on_close);
            Box::pin(kept.open(store, guest, ws, going_away, held)).await;
        }
    }
}

/// How an accepted session is served.
enum Accepted {
    /// `run` owns it on the instance that accepted it.
    Live(Guest),
    /// The host keeps it, and runs the guest per event: the path it was
    /// opened at, and whether its end runs `on-close`.
    Hibernate(Box<(EventGuest, String, bool)>),
}

/// The guest's answer to a handshake.
pub(crate) enum Decision {
    /// Open the session, hibernating or live.
    Accept { hibernate: bool },
    /// Answer with this instead: the guest's refusal or a failure.
    Answer(Response),
}

/// Instantiates the guest and calls its `connect` (the hibernating
/// handler's when the component has one); sends the decision. Returns the
/// store and how to serve the session when it is accepted.
async fn connect(
    app: &App,
    mut store: Store<HostState>,
    request: wit::Request,
    decided: oneshot::Sender<Decision>,
    id: u64,
) -> Option<(Store<HostState>, Accepted)> {
    let export = app.websocket()?;
    let result = app
        .within_timeout(async {
            let instance = app.instantiate(&mut store).await?;
            let Some(events) = &export.events else {
                let guest = export.indices.load(&mut store, &instance)?;
                return Ok(match guest.call_connect(&mut store, &request).await? {
                    None => Ok(Accepted::Live(guest)),
                    Some(refusal) => Err(refusal),
                });
            };
            let guest = events.load(&mut store, &instance)?;
            wasmtime::Result::Ok(match guest.call_connect(&mut store, &request).await? {
                EventDecision::Refuse(refusal) => Err(refusal),
                EventDecision::Live => {
                    Ok(Accepted::Live(export.indices.load(&mut store, &instance)?))
                }
                EventDecision::Hibernate(keep) => {
                    let path = request.path_with_query.split('?').next().unwrap_or("/");
                    let opened = (guest, path.to_owned(), keep.on_close);
                    Ok(Accepted::Hibernate(Box::new(opened)))
                }
            })
        })
        .await;
    match result {
        Ok(Ok(accepted)) => {
            let hibernate = matches!(accepted, Accepted::Hibernate(_));
            decided.send(Decision::Accept { hibernate }).ok()?;
            Some((store, accepted))
        }
        Ok(Err(refusal)) => {
            tracing::info!(request = id, app = %app.name(), "{}: websocket refused by the guest", refusal.status);
            let _ = decided.send(Decision::Answer(refusal_response(refusal)));
            None
        }
        Err(e) => {
            let failure = GuestFailure::classify(&e, id, app.name());
            let _ = decided.send(Decision::Answer(failure.response(id, app.name())));
            None
        }
    }
}

/// Runs an accepted session to its end.
async fn run(
    app: &App,
    mut store: Store<HostState>,
    guest: Guest,
    ws: Connection,
    going_away: watch::Receiver<bool>,
    id: u64,
) {
    let Some(export) = app.websocket() else {
        return;
    };
    let ping = export.ping;
    let app = app.name();
    let (session, ends) = Session::new(export.max_message);
    let (incoming_tx, outgoing_rx) = ends;
    let session = match store.data_mut().push_session(session) {
        Ok(session) => session,
        Err(e) => {
            tracing::error!(request = id, app = %app, "cannot start the session: {e}");
            return;
        }
    };
    store.data_mut().cpu.renew();
    let (done_tx, done_rx) = oneshot::channel();
    let mut pump = std::pin::pin!(pump(
        ws,
        incoming_tx,
        outgoing_rx,
        done_rx,
        ping,
        going_away,
    ));
    // The guest's failure is logged as soon as it is known, before the
    // closing handshake.
    let failed = |e: &wasmtime::Error| {
        GuestFailure::classify(e, id, app);
    };
    let ending = {
        let mut call = std::pin::pin!(guest.call_run(&mut store, session));
        tokio::select! {
            result = &mut call => {
                let frame = match &result {
                    Ok(()) => close_frame(CloseCode::Normal, ""),
                    Err(e) => {
                        failed(e);
                        close_frame(CloseCode::Error, "internal error")
                    }
                };
                let _ = done_tx.send(frame);
                pump.await
            }
            ending = &mut pump => {
                match tokio::time::timeout(CLOSE_GRACE, call).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failed(&e),
                    Err(_) => tracing::warn!(
                        request = id, app = %app,
                        "the session's guest did not return within {CLOSE_GRACE:?} of the connection ending; stopped"
                    ),
                }
                ending
            }
        }
    };
    drop(store);
    tracing::info!(request = id, app = %app, "websocket session ended ({ending}); instance released");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session's task lives, with this future, as long as the session:
    /// every byte is paid once per open session.
    #[test]
    fn a_session_task_stays_small() {
        fn returned_size<A, R>(_: impl FnOnce(A) -> R) -> usize {
            size_of::<R>()
        }
        let size = returned_size(live);
        println!("session::live: {size} bytes");
        // 3.2 KiB before wasmtime was built with component-model-async (see
        // `http::tests::the_guest_task_stays_small`); 4,352 before a session
        // could hibernate (the route's gate and the instances, for events).
        assert!(size <= 4480, "session::live's future is {size} bytes");
    }
}
