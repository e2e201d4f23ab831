//! The front door: a request's path picks its route (404 when none does),
//! and the request goes to the websocket front end when it asks to upgrade
//! on an app that serves sessions, to the HTTP front end otherwise. The
//! route table is read once per request from [`deploy`](crate::deploy),
//! which swaps it whole when a version goes live.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::body::Incoming;

use crate::app::Instances;
use crate::config::ServerConfig;
use crate::deploy::Routes;
use crate::limits::BodyBuffer;
use crate::metrics::Requests;
use crate::response::{Response, not_found};
use crate::{http, websocket};

/// Routes requests to apps and runs each in a fresh instance.
pub struct Dispatcher {
    /// The live route table; a deploy swaps it whole.
    routes: Routes,
    instances: Arc<Instances>,
    bodies: BodyBuffer,
    next_request_id: AtomicU64,
    sessions: websocket::Sessions,
}

impl Dispatcher {
    /// A dispatcher over a route table of apps.
    pub fn new(routes: Routes, server: &ServerConfig) -> Self {
        Self {
            routes,
            instances: Arc::new(Instances::new(server)),
            bodies: BodyBuffer::new(server),
            next_request_id: AtomicU64::new(1),
            sessions: websocket::Sessions::default(),
        }
    }

    /// Tells every websocket session, open or opening, to close with 1001
    /// (going away); see [`Dispatcher::sessions_closed`].
    pub fn close_sessions(&self) {
        self.sessions.close_all();
    }

    /// Returns once no websocket session is open.
    pub async fn sessions_closed(&self) {
        self.sessions.all_closed().await;
    }

    /// Serves one request. Never fails: every failure is an error response.
    ///
    /// The websocket path is a boxed future: this future is allocated for
    /// every request and lives as long as the guest is suspended, so it
    /// holds only what the common path needs.
    pub async fn handle(&self, req: Box<hyper::Request<Incoming>>) -> Result<Response, Infallible> {
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let routed = std::time::Instant::now();
        // The table as it is now: this request stays on the versions it
        // names, whatever is deployed meanwhile.
        let routes = self.routes.load_full();
        let Some(target) = routes.lookup(req.uri().path()) else {
            let response = not_found();
            Requests::unrouted().count(response.status().as_u16(), routed.elapsed());
            return Ok(response);
        };
        let response = if let Some(files) = &target.files {
            Box::pin(files.serve(*req)).await
        } else if target.app.websocket().is_some() && websocket::is_upgrade(&req) {
            let session = websocket::handle(&self.instances, &self.sessions, target, *req, id);
            Box::pin(session).await
        } else {
            http::handle(&self.instances, &self.bodies, target, req, id).await
        };
        target
            .app
            .requests
            .count(response.status().as_u16(), routed.elapsed());
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper keeps this future, in the connection's service future, for as
    /// long as the request waits: every byte is paid once per waiting request.
    /// (Sizes are of the test profile's build; bounds are the sizes measured
    /// when written, rounded up, so that growth is a decision.)
    #[test]
    fn the_request_future_stays_small() {
        fn returned_size<A, B, R>(_: impl FnOnce(A, B) -> R) -> usize {
            size_of::<R>()
        }
        let size =
            returned_size(|d: &'static Dispatcher, r: Box<hyper::Request<Incoming>>| d.handle(r));
        println!("Dispatcher::handle: {size} bytes");
        // 168 since each HTTP path boxes its own future; 824 when this one
        // held the WASI 0.2 path's, which a WASI 0.3 request paid for too.
        assert!(size <= 192, "Dispatcher::handle's future is {size} bytes");
    }
}
