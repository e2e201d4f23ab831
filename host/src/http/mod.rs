//! The HTTP front end: one request → a fresh store and instance of its
//! app's component → the response. WASI 0.2 components are called here;
//! WASI 0.3 ones through their app's workers ([`crate::service`]).
//!
//! The body is read whole first (unless the app streams bodies), so a slow
//! upload holds no instance. The guest runs in its own task so it can keep
//! streaming the body after the response head has gone out; the instance
//! and its permits are released when that task ends, or at once when the
//! client goes away. A trap, a guest that never answers, or a refused
//! admission becomes a short error response and a log line; nothing else is
//! affected.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use crate::app::{App, Instances, Permits, Target};
use crate::capabilities::HostState;
use crate::engine::Wasi;
use crate::failure::GuestFailure;
use crate::limits::{BodyBuffer, BodyRefused, BufferedBody, CappedBody, CpuClock, StreamedBody};
use crate::metrics::METRICS;
use crate::response::{
    Response, bad_request, internal_error, request_timeout, too_large, unavailable,
};
use crate::service::{Answer, InFlight};

/// Serves `req` on `target`'s app. Never fails: every failure is an error
/// response.
///
/// This future is allocated for every request and lives as long as the
/// guest is suspended, so it holds only what every path needs: reading a
/// body and each WASI release's path are boxed futures, paid for by the
/// requests that take them, and the request comes boxed.
pub(crate) async fn handle(
    instances: &Instances,
    bodies: &BodyBuffer,
    target: &Target,
    mut req: Box<hyper::Request<Incoming>>,
    id: u64,
) -> Response {
    let app = &target.app;
    // Borrowed, not cloned: the app's name is shared by every thread, and
    // only the guard of an abandoned guest keeps a copy.
    let name = app.name();
    let declared_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared_length.is_some_and(|n| n > app.max_body_bytes) {
        METRICS.refused(name, "body");
        tracing::info!(request = id, app = %name, "413: body of {} bytes is over max_body_kb", declared_length.unwrap_or(0));
        return too_large();
    }
    // The body is read whole before an instance is taken, so a slow upload
    // holds memory (bounded) but no instance; unless the app streams bodies
    // to its guest. The request stays boxed meanwhile: its head is the
    // biggest thing this future would otherwise hold while it waits.
    let body = if req.body().is_end_stream() {
        Prepared::Empty
    } else if app.stream_body {
        Prepared::Streamed
    } else {
        // Boxed: only requests with a body pay for reading one.
        match Box::pin(bodies.read(req.body_mut(), app.max_body_bytes)).await {
            Ok(body) => Prepared::Read(body),
            Err(refused) => return body_refused(refused, id, name),
        }
    };
    if app.wasi() == Wasi::P3 {
        let secure = crate::app::is_secure(&*req);
        let (req, streamed) = with_body(*req, body, app);
        let req = Box::new(absolute(req, secure));
        // Boxed: the WASI 0.3 path's future is only paid for by its requests.
        return Box::pin(serve_p3(instances, target, req, streamed, id)).await;
    }
    // Boxed too: this future, which every request keeps, then holds neither
    // path's state.
    Box::pin(serve_p2(instances, target, req, body, id)).await
}

/// `req` with the body the guest gets, as `body` was prepared; and, for a
/// streamed body, what becomes of it (only a streamed body can fail once
/// the guest runs, so only those allocate it).
fn with_body(
    req: hyper::Request<Incoming>,
    body: Prepared,
    app: &App,
) -> (http::Request<WasiBody>, Option<Arc<StreamedBody>>) {
    let mut streamed = None;
    let req = req.map(|incoming| -> WasiBody {
        match body {
            Prepared::Empty => Empty::new().map_err(|never| match never {}).boxed_unsync(),
            Prepared::Streamed => {
                let state = streamed.insert(Arc::new(StreamedBody::default()));
                CappedBody::new(incoming, app.max_body_bytes, state.clone()).boxed_unsync()
            }
            Prepared::Read(body) => body.boxed_unsync(),
        }
    });
    (req, streamed)
}

/// Serves `req` on `target`'s WASI 0.2 app, in a fresh instance. The
/// request stays boxed, its body as prepared, until the instance is there:
/// what an async fn is given by value it keeps twice.
async fn serve_p2(
    instances: &Instances,
    target: &Target,
    req: Box<hyper::Request<Incoming>>,
    body: Prepared,
    id: u64,
) -> Response {
    let app = &target.app;
    let name = app.name();
    let permits = match instances.admit(target, id).await {
        Ok(permits) => permits,
        Err(response) => return *response,
    };
    let mut store = match app.new_store(id, CpuClock::new(app.cpu_budget)) {
        Ok(store) => store,
        Err(response) => return *response,
    };
    let scheme = if crate::app::is_secure(&*req) {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let (req, streamed) = with_body(*req, body, app);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let resources: wasmtime::Result<_> = (|| {
        let http = &mut store.data_mut().http();
        let req = http.new_incoming_request(scheme, req)?;
        let out = http.new_response_outparam(sender)?;
        Ok((req, out))
    })();
    let (req, out) = match resources {
        Ok(pair) => pair,
        Err(e) => {
            tracing::info!(request = id, app = %name, "400: {e}");
            return bad_request();
        }
    };

    let (call_done, call_outcome) = tokio::sync::oneshot::channel();
    let guest = crate::app::spawn_guest(store, |store| {
        run_guest(
            app.clone(),
            store,
            Call {
                req,
                out,
                streamed: streamed.clone(),
            },
            permits,
            call_done,
            id,
        )
    });

    // Hyper drops this future when the client goes away (a closed
    // connection, an HTTP/2 reset); the guard then stops the guest.
    let abandoned = Abandoned::new(Some(guest.abort_handle()), id, name.clone());
    let response = receiver.await;
    let abandoned = match body_went_over(streamed, abandoned, id, name) {
        Ok(abandoned) => abandoned,
        Err(response) => return *response,
    };
    match response {
        Ok(Ok(response)) => {
            let (head, body) = response.into_parts();
            let body = GuestBody::new(body, Outcome::Call(call_outcome), abandoned, &head.headers);
            Response::from_parts(head, body.boxed_unsync())
        }
        Ok(Err(code)) => {
            tracing::error!(request = id, app = %name, "500: guest answered with error {code:?}");
            abandoned.stop();
            internal_error(id)
        }
        // The guest dropped the response outparam without setting it.
        Err(_) => match guest.await {
            Ok(Ok(())) => {
                tracing::error!(request = id, app = %name, "500: guest returned without a response");
                internal_error(id)
            }
            Ok(Err(failure)) => failure.response(id, name),
            Err(e) => {
                tracing::error!(request = id, app = %name, "500: guest task failed: {e}");
                internal_error(id)
            }
        },
    }
}

/// Serves `req` on `target`'s WASI 0.3 app through its workers
/// ([`crate::service`]).
async fn serve_p3(
    instances: &Instances,
    target: &Target,
    req: Box<http::Request<WasiBody>>,
    streamed: Option<Arc<StreamedBody>>,
    id: u64,
) -> Response {
    let name = target.app.name();
    // Boxed: admission is over once the request is handed to a worker, and
    // the rest of this future lives as long as the guest takes.
    let call = match Box::pin(target.app.workers.call(instances, target, req, id)).await {
        Ok(call) => call,
        Err(response) => return *response,
    };
    // A worker serving this request alone is stopped when the client goes
    // away; one serving others too finishes the request (within its
    // timeout) and drops the answer.
    let abandoned = Abandoned::new(call.alone.clone(), id, name.clone());
    let answer = call.answer().await;
    let abandoned = match body_went_over(streamed, abandoned, id, name) {
        Ok(abandoned) => abandoned,
        Err(response) => return *response,
    };
    // The answer comes as soon as `handle` returns, and the guest writes the
    // body in a task of its own in the same store, on this thread, which is
    // woken already. Yielding once lets it run first, so hyper finds the
    // head, the body and its end ready and sends them in one write, not two
    // (a short body is the common case; a long one is only a turn of the
    // event loop later). The answer is taken apart only after: what is alive
    // across the yield is stored in this future for its whole life.
    if let Answer::Response(response, ..) = &answer
        && !hyper::body::Body::is_end_stream(response.body())
    {
        tokio::task::yield_now().await;
    }
    match answer {
        Answer::Response(response, failed, in_flight) => {
            let (head, body) = response.into_parts();
            let body = GuestBody::new(body, Outcome::Instance(failed), abandoned, &head.headers)
                .in_flight(in_flight);
            Response::from_parts(head, body.boxed_unsync())
        }
        Answer::Code(code) => {
            tracing::error!(request = id, app = %name, "500: guest answered with error {code:?}");
            abandoned.stop();
            internal_error(id)
        }
        Answer::Failed(failure) => failure.response(id, name),
    }
}

/// A streamed body that went over `max_body_kb` while the guest read it:
/// then the host answers 413 instead of the guest (logged) and stops it.
fn body_went_over(
    streamed: Option<Arc<StreamedBody>>,
    abandoned: Abandoned,
    id: u64,
    app: &str,
) -> Result<Abandoned, Box<Response>> {
    if streamed.is_some_and(|body| body.over_cap()) {
        tracing::info!(request = id, app = %app, "413: body over max_body_kb");
        METRICS.refused(app, "body");
        abandoned.stop();
        return Err(Box::new(too_large()));
    }
    Ok(abandoned)
}

/// `req` with an absolute URI: WASI 0.3 gives the guest the scheme and the
/// authority as parts of the request, where HTTP/1.1 sends a path and a
/// `Host` header.
fn absolute(req: http::Request<WasiBody>, secure: bool) -> http::Request<WasiBody> {
    let (mut parts, body) = req.into_parts();
    let authority = parts.uri.authority().cloned().or_else(|| {
        let host = parts.headers.get(header::HOST)?;
        http::uri::Authority::try_from(host.as_bytes()).ok()
    });
    // Without an authority the guest gets the path alone.
    if let Some(authority) = authority {
        let mut uri = parts.uri.clone().into_parts();
        uri.scheme = Some(if secure {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        });
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = http::Uri::from_parts(uri) {
            parts.uri = uri;
        }
    }
    http::Request::from_parts(parts, body)
}

/// A request's body, as the guest will get it.
enum Prepared {
    /// There is none.
    Empty,
    /// Read whole by the host.
    Read(BufferedBody),
    /// Passed on as it arrives (`stream_request_body`).
    Streamed,
}

/// The guest's side of a request: the resources `handle` is called with,
/// and what became of a body streamed to it.
struct Call {
    req: Resource<HostIncomingRequest>,
    out: Resource<HostResponseOutparam>,
    streamed: Option<Arc<StreamedBody>>,
}

/// Instantiates `app` in `store` and calls its `incoming-handler.handle`
/// under the app's timeout; then drops the store and the permits. The guest
/// may fail after its response head has gone out (while streaming the
/// body), so this logs its own failure; `call_done` says whether the call
/// succeeded, before the store is dropped, so a good response ends without
/// waiting for that.
///
/// The task running this future lives as long as the guest is suspended.
async fn run_guest(
    app: Arc<App>,
    mut store: Store<HostState>,
    call: Call,
    permits: Permits,
    call_done: tokio::sync::oneshot::Sender<bool>,
    id: u64,
) -> Result<(), GuestFailure> {
    let Call { req, out, streamed } = call;
    let result = app
        .within_timeout(async {
            let proxy = app.instantiate_proxy(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        })
        .await;
    let _ = call_done.send(result.is_ok());
    drop(store);
    drop(permits);
    result.map_err(|e| match streamed {
        Some(body) if body.failed() => GuestFailure::after_body_failed(&e, id, app.name()),
        _ => GuestFailure::classify(&e, id, app.name()),
    })
}

/// The answer to a body the host would not read whole, logged.
fn body_refused(refused: BodyRefused, id: u64, app: &str) -> Response {
    let (status, response) = match refused {
        BodyRefused::TooLarge => (413, too_large()),
        BodyRefused::TooSlow => (408, request_timeout()),
        BodyRefused::Busy => (503, unavailable()),
        BodyRefused::Broken(_) => (400, bad_request()),
    };
    tracing::info!(request = id, app = %app, "{status}: {refused}");
    METRICS.refused(app, "body");
    response
}

/// Stops a request's guest when dropped before [`Abandoned::finished`]: the
/// client went away, so nobody will read the answer, and the instance and its
/// permits go back at once instead of when the guest gives up.
struct Abandoned {
    guest: Option<tokio::task::AbortHandle>,
    id: u64,
    app: Arc<str>,
}

impl Abandoned {
    fn new(guest: Option<tokio::task::AbortHandle>, id: u64, app: Arc<str>) -> Self {
        Self { guest, id, app }
    }

    /// The answer was delivered whole: the guest may finish what it does after it.
    fn finished(&mut self) {
        self.guest = None;
    }

    /// The host answers instead of the guest (and has logged why): stop it.
    fn stop(mut self) {
        if let Some(guest) = self.guest.take() {
            guest.abort();
        }
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(guest) = self.guest.take()
            && !guest.is_finished()
        {
            guest.abort();
            tracing::info!(request = self.id, app = %self.app, "client went away before the response was complete; instance released");
        }
    }
}

/// A guest's response body that ends cleanly only once the guest's call has
/// returned without trapping.
///
/// wasmtime-wasi-http ends the body normally when the `outgoing-body` is
/// dropped unfinished, as happens when a trapped guest's store is dropped; a
/// chunked response would then pass a truncated body off as complete. The
/// `wasi:http` contract is that an unfinished body is corrupt, so here its end
/// waits for the call's outcome and becomes an error (the connection is cut)
/// when the guest failed.
///
/// Dropped before its end (the client went away mid-body), it stops the guest.
struct GuestBody {
    inner: HyperOutgoingBody,
    outcome: Option<Outcome>,
    abandoned: Abandoned,
    /// Bytes still owed of a declared `Content-Length`. The server stops
    /// reading the body once they are sent, so that, not the body's end, is
    /// when the answer was delivered whole.
    owed: Option<u64>,
    /// A WASI 0.3 request's place in its instance, given up once the body
    /// is sent.
    in_flight: Option<InFlight>,
}

/// How a [`GuestBody`] learns whether its guest failed.
enum Outcome {
    /// A WASI 0.2 call: its result, sent when it returns.
    Call(tokio::sync::oneshot::Receiver<bool>),
    /// A WASI 0.3 instance: set before the instance is dropped for a
    /// failure, so a body that ended for that reason sees it set.
    Instance(Arc<AtomicBool>),
}

impl GuestBody {
    fn new(
        inner: HyperOutgoingBody,
        outcome: Outcome,
        abandoned: Abandoned,
        headers: &http::HeaderMap,
    ) -> Self {
        // WASI 0.3 bodies carry their length as an exact size hint.
        let owed = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .or_else(|| inner.size_hint().exact());
        Self {
            inner,
            outcome: Some(outcome),
            abandoned,
            owed,
            in_flight: None,
        }
    }

    /// The body of a WASI 0.3 request that holds `in_flight` until sent.
    fn in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }
}

impl Body for GuestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(frame) = ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            if let (Ok(frame), Some(owed)) = (&frame, self.owed)
                && let Some(data) = frame.data_ref()
            {
                let owed = owed.saturating_sub(data.len() as u64);
                self.owed = Some(owed);
                if owed == 0 {
                    self.abandoned.finished();
                    self.in_flight = None;
                }
            }
            return Poll::Ready(Some(frame));
        }
        let succeeded = match self.outcome.as_mut() {
            None => return Poll::Ready(None),
            Some(Outcome::Call(call)) => ready!(Pin::new(call).poll(cx)).unwrap_or(false),
            Some(Outcome::Instance(failed)) => !failed.load(Ordering::Acquire),
        };
        self.outcome = None;
        self.abandoned.finished();
        self.in_flight = None;
        Poll::Ready(if succeeded {
            None
        } else {
            Some(Err(wasmtime_wasi_http::Error::HttpProtocolError))
        })
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The size of the future an async fn of six arguments returns, without
    /// calling it.
    pub(crate) fn returned_size<A, B, C, D, E, F, R>(
        _: impl FnOnce(A, B, C, D, E, F) -> R,
    ) -> usize {
        size_of::<R>()
    }

    /// A request's guest task lives, with this future, for as long as the
    /// guest is suspended: every byte is paid once per waiting request.
    /// Measured as the task is spawned, inside the CPU clock's wrapper.
    #[test]
    fn the_guest_task_stays_small() {
        let size = returned_size(|app, store, call, permits, done, id| {
            CpuClock::new(std::time::Duration::ZERO)
                .timer()
                .time(run_guest(app, store, call, permits, done, id))
        });
        println!("run_guest, timed: {size} bytes");
        // 1.2 KiB before wasmtime was built with component-model-async for
        // WASI 0.3: its `call_async` future holds the concurrent path too,
        // though a 0.2 store never takes it. The wrapper and the app's
        // timeout were async fns, each holding the future twice: 12,848
        // bytes, against 1,864 since they are plain futures.
        assert!(size <= 2048, "the timed run_guest future is {size} bytes");
    }

    /// hyper keeps this future for as long as the request waits.
    #[test]
    fn the_request_future_stays_small() {
        let size = returned_size(
            |i: &'static Instances,
             b: &'static BodyBuffer,
             t: &'static Target,
             r: Box<hyper::Request<Incoming>>,
             id: u64,
             (): ()| handle(i, b, t, r, id),
        );
        println!("http::handle: {size} bytes");
        // 104 since each path is boxed; 760 when the WASI 0.2 path was not.
        assert!(size <= 128, "http::handle's future is {size} bytes");
    }

    /// A WASI 0.2 request's part of the request future, boxed beside it.
    #[test]
    fn the_wasi_02_request_future_stays_small() {
        let size = returned_size(
            |i: &'static Instances,
             t: &'static Target,
             r: Box<hyper::Request<Incoming>>,
             b: Prepared,
             id: u64,
             (): ()| serve_p2(i, t, r, b, id),
        );
        println!("http::serve_p2: {size} bytes");
        // 600; 968 when it was given the request with its body, by value.
        assert!(size <= 640, "http::serve_p2's future is {size} bytes");
    }

    /// A WASI 0.3 request's part of the request future, boxed beside it.
    #[test]
    fn the_wasi_03_request_future_stays_small() {
        let size = returned_size(
            |i: &'static Instances,
             t: &'static Target,
             r: Box<http::Request<WasiBody>>,
             streamed: Option<Arc<StreamedBody>>,
             id: u64,
             (): ()| serve_p3(i, t, r, streamed, id),
        );
        println!("http::serve_p3: {size} bytes");
        // 368; 688 while the hand-over to a worker, admission included, and
        // the wait for a worker's end were not boxed; 1,384 with the request
        // unboxed.
        assert!(size <= 384, "http::serve_p3's future is {size} bytes");
    }
}
