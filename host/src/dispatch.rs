//! Request → store → instance → response.
//!
//! Each request gets a fresh `Store` and instance of its app's component. The
//! guest runs in its own task so it can keep streaming the body after the
//! response head has gone out; the instance and its admission permit are
//! released when that task ends. A trap, a guest that never answers, or a
//! refused admission becomes a short error response and a log line; nothing
//! else is affected.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use wasmtime::component::Component;
use wasmtime::{Engine, Store, StoreLimits};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::capabilities::{AllowedHosts, AppCapabilities, HostState, linker_for};
use crate::config::{AppConfig, ServerConfig};
use crate::limits::{
    self, Admission, BodyBuffer, BodyRefused, CappedBody, CpuBudgetExceeded, CpuClock,
    RETRY_AFTER_SECS,
};
use crate::router::Router;
use crate::websocket;

/// The response type the server writes.
pub type Response = hyper::Response<HyperOutgoingBody>;

/// One deployed component, ready to instantiate, with its limits.
pub struct App {
    caps: Arc<AppCapabilities>,
    pre: ProxyPre<HostState>,
    /// Set when the component exports `cyclone:platform/websocket-handler`.
    websocket: Option<Arc<websocket::Support>>,
    admission: Option<Admission>,
    store_limits: StoreLimits,
    pub(crate) cpu_budget: Duration,
    pub(crate) timeout: Option<Duration>,
    max_body_bytes: u64,
    /// The guest reads the body as it arrives (`stream_request_body`).
    stream_body: bool,
}

impl App {
    /// Links `component` and checks that it exports `wasi:http/incoming-handler`.
    pub fn new(
        name: &str,
        config: &AppConfig,
        server: &ServerConfig,
        engine: &Engine,
        component: &Component,
    ) -> wasmtime::Result<Self> {
        let linker = linker_for(engine, component)?;
        let instance_pre = linker.instantiate_pre(component)?;
        let websocket = websocket::Support::new(&instance_pre, config).map(Arc::new);
        let pre = ProxyPre::new(instance_pre)?;
        let allowed_hosts =
            AllowedHosts::parse(&config.allowed_outbound_hosts).map_err(wasmtime::Error::msg)?;
        Ok(Self {
            caps: Arc::new(AppCapabilities {
                name: name.into(),
                variables: config.variable_values(),
                allowed_hosts,
                files: config
                    .files
                    .iter()
                    .map(|(guest, host)| (host.clone(), guest.clone()))
                    .collect(),
                environment: config
                    .environment
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                pubsub: crate::pubsub::InProcess::new(config.pubsub_history, config.pubsub_buffer),
                log_lines_per_sec: config.max_log_lines_per_sec,
            }),
            pre,
            websocket,
            admission: Admission::for_app(config, server),
            store_limits: limits::store_limits(config),
            cpu_budget: config.cpu_budget(),
            timeout: config.timeout(),
            max_body_bytes: config.max_body_bytes(),
            stream_body: config.stream_request_body,
        })
    }

    /// The app's name from the manifest.
    pub fn name(&self) -> &str {
        &self.caps.name
    }

    /// The pre-linked component.
    pub(crate) fn instance_pre(&self) -> &wasmtime::component::InstancePre<HostState> {
        self.pre.instance_pre()
    }

    /// A fresh store for request `id`, its limits and CPU clock set.
    pub(crate) fn new_store(
        &self,
        id: u64,
        cpu: CpuClock,
    ) -> Result<Store<HostState>, Box<Response>> {
        let state = match HostState::new(&self.caps, id, self.store_limits.clone(), cpu) {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(request = id, app = %self.caps.name, "500: cannot prepare the guest's capabilities: {e:#}");
                return Err(Box::new(internal_error(id)));
            }
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().cpu.on_epoch());
        store.call_hook(|mut ctx, hook| {
            ctx.data_mut().cpu.on_call_hook(hook);
            Ok(())
        });
        Ok(store)
    }
}

/// Where a route leads: its app, and the route's own instance cap if it
/// has one.
pub struct Target {
    pub(crate) app: Arc<App>,
    admission: Option<Admission>,
}

impl Target {
    /// The target of `route` of `app`.
    pub fn new(app: Arc<App>, route: &crate::config::Route, server: &ServerConfig) -> Self {
        Self {
            app,
            admission: route
                .max_instances
                .map(|permits| Admission::with_permits(permits, server)),
        }
    }
}

/// The instance permits one request or session holds: per route, per app
/// and shared.
pub(crate) struct Permits {
    _route: Option<tokio::sync::OwnedSemaphorePermit>,
    _app: Option<tokio::sync::OwnedSemaphorePermit>,
    _shared: tokio::sync::OwnedSemaphorePermit,
}

/// Routes requests to apps and runs each in a fresh instance.
pub struct Dispatcher {
    router: Router<Target>,
    admission: Admission,
    bodies: BodyBuffer,
    next_request_id: AtomicU64,
    sessions: websocket::Sessions,
}

impl Dispatcher {
    /// A dispatcher over a route table of apps.
    pub fn new(router: Router<Target>, server: &ServerConfig) -> Self {
        Self {
            router,
            admission: Admission::new(server),
            bodies: BodyBuffer::new(server),
            next_request_id: AtomicU64::new(1),
            sessions: websocket::Sessions::default(),
        }
    }

    /// The open websocket sessions.
    pub(crate) fn sessions(&self) -> &websocket::Sessions {
        &self.sessions
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

    /// Takes an instance permit for a request on `target`: the route's
    /// first, then the app's, then the shared one, so a backlog on one
    /// route or app does not take the permits others need; 503 when refused.
    pub(crate) async fn admit(&self, target: &Target, id: u64) -> Result<Permits, Box<Response>> {
        let name = &target.app.caps.name;
        let gate = async |gate: &Option<Admission>, which: &str| match gate {
            Some(gate) => match gate.admit().await {
                Ok(permit) => Ok(Some(permit)),
                Err(refused) => {
                    tracing::warn!(request = id, app = %name, "503: {which} max_instances: {refused}");
                    Err(Box::new(unavailable()))
                }
            },
            None => Ok(None),
        };
        let route = gate(&target.admission, "route").await?;
        let app = gate(&target.app.admission, "app").await?;
        match self.admission.admit().await {
            Ok(permit) => Ok(Permits {
                _route: route,
                _app: app,
                _shared: permit,
            }),
            Err(refused) => {
                tracing::warn!(request = id, app = %name, "503: {refused}");
                Err(Box::new(unavailable()))
            }
        }
    }

    /// Serves one request. Never fails: every failure is an error response.
    ///
    /// The request comes boxed, and the websocket path and a queued
    /// admission are boxed futures: this future is allocated for every
    /// request and lives as long as the guest is suspended, so it holds only
    /// what the common path needs.
    pub async fn handle(&self, req: Box<hyper::Request<Incoming>>) -> Result<Response, Infallible> {
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let Some(target) = self.router.lookup(req.uri().path()) else {
            return Ok(plain(StatusCode::NOT_FOUND, "Not Found\n"));
        };
        let app = &target.app;
        if let Some(support) = &app.websocket
            && websocket::is_upgrade(&req)
        {
            return Ok(Box::pin(websocket::handle(self, target, support.clone(), *req, id)).await);
        }
        let name = app.caps.name.clone();
        let declared_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared_length.is_some_and(|n| n > app.max_body_bytes) {
            tracing::info!(request = id, app = %name, "413: body of {} bytes is over max_body_kb", declared_length.unwrap_or(0));
            return Ok(too_large());
        }
        let body_over_cap = Arc::new(AtomicBool::new(false));
        let (head, body) = req.into_parts();
        // The body is read whole before an instance is taken, so a slow
        // upload holds memory (bounded) but no instance; unless the app
        // streams bodies to its guest.
        let body: UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error> = if body.is_end_stream() {
            Empty::new().map_err(|never| match never {}).boxed_unsync()
        } else if app.stream_body {
            CappedBody::new(body, app.max_body_bytes, body_over_cap.clone()).boxed_unsync()
        } else {
            match self.bodies.read(body, app.max_body_bytes).await {
                Ok(body) => body.boxed_unsync(),
                Err(refused) => return Ok(body_refused(refused, id, &name)),
            }
        };
        let permits = match self.admit(target, id).await {
            Ok(permits) => permits,
            Err(response) => return Ok(*response),
        };
        let mut store = match app.new_store(id, CpuClock::new(app.cpu_budget)) {
            Ok(store) => store,
            Err(response) => return Ok(*response),
        };
        let req = hyper::Request::from_parts(head, body);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let resources: wasmtime::Result<_> = (|| {
            let http = &mut store.data_mut().http();
            let req = http.new_incoming_request(Scheme::Http, req)?;
            let out = http.new_response_outparam(sender)?;
            Ok((req, out))
        })();
        let (req, out) = match resources {
            Ok(pair) => pair,
            Err(e) => {
                tracing::info!(request = id, app = %name, "400: {e}");
                return Ok(plain(StatusCode::BAD_REQUEST, "Bad Request\n"));
            }
        };

        let pre = app.pre.clone();
        let timeout = app.timeout;
        let task_name = name.clone();
        let (call_done, call_outcome) = tokio::sync::oneshot::channel();
        // The guest may fail after its response head has gone out (while
        // streaming the body), so the task logs its own failure.
        let guest = tokio::spawn(async move {
            let call = async {
                // A component that linked at start-up fails to instantiate only
                // for want of resources (pool slots, memory mappings).
                // Boxed: instantiating takes a 1.2 KiB future that is done
                // before the guest runs; inline, the task would keep room for
                // it for as long as the guest is suspended.
                let proxy = Box::pin(pre.instantiate_async(&mut store))
                    .await
                    .map_err(|e| wasmtime::Error::new(NoInstance(format!("{e:#}"))))?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            let result = match timeout {
                Some(limit) => tokio::time::timeout(limit, call)
                    .await
                    .unwrap_or(Err(wasmtime::Error::new(TimedOut(limit)))),
                None => call.await,
            };
            // Before the store is dropped, so a good response ends without waiting for it.
            let _ = call_done.send(result.is_ok());
            drop(store);
            drop(permits);
            result.map_err(|e| GuestFailure::classify(&e, id, &task_name))
        });

        // Hyper drops this future when the client goes away (a closed
        // connection, an HTTP/2 reset); the guard then stops the guest.
        let abandoned = Abandoned::new(guest.abort_handle(), id, name.clone());
        let response = receiver.await;
        if body_over_cap.load(Ordering::Relaxed) {
            tracing::info!(request = id, app = %name, "413: body over max_body_kb");
            abandoned.stop();
            return Ok(too_large());
        }
        Ok(match response {
            Ok(Ok(response)) => {
                response.map(|body| GuestBody::new(body, call_outcome, abandoned).boxed_unsync())
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
                Ok(Err(failure)) => failure.response(id, &name),
                Err(e) => {
                    tracing::error!(request = id, app = %name, "500: guest task failed: {e}");
                    internal_error(id)
                }
            },
        })
    }
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
    fn new(guest: tokio::task::AbortHandle, id: u64, app: Arc<str>) -> Self {
        Self {
            guest: Some(guest),
            id,
            app,
        }
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

/// Instantiation failed; the cause, for the log.
#[derive(Debug, thiserror::Error)]
#[error("no instance could be created: {0}")]
pub(crate) struct NoInstance(pub(crate) String);

/// The wall-clock timeout ended the guest's call.
#[derive(Debug, thiserror::Error)]
#[error("the request ran past its timeout of {0:?}")]
pub(crate) struct TimedOut(pub(crate) Duration);

/// How a guest's task ended when it failed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GuestFailure {
    /// No instance could be created: no free pool slot, or the kernel refused
    /// memory mappings (→ 503).
    NoInstance,
    /// The guest ran past its CPU budget (→ 503).
    CpuBudget,
    /// The guest ran past the wall-clock timeout (→ 504).
    TimedOut,
    /// The guest trapped (→ 500).
    Trapped,
}

impl GuestFailure {
    /// What ended the call that failed with `e`, logged.
    pub(crate) fn classify(e: &wasmtime::Error, id: u64, app: &str) -> Self {
        // The epoch callback's trap keeps its error under wasmtime's backtrace.
        let failure = if e.downcast_ref::<CpuBudgetExceeded>().is_some() {
            Self::CpuBudget
        } else if e.is::<TimedOut>() {
            Self::TimedOut
        } else if e.is::<NoInstance>() {
            Self::NoInstance
        } else {
            Self::Trapped
        };
        match failure {
            Self::CpuBudget => {
                tracing::warn!(request = id, app = %app, "guest stopped: CPU budget exceeded: {e}");
            }
            Self::NoInstance | Self::TimedOut => {
                tracing::warn!(request = id, app = %app, "guest stopped: {e}");
            }
            Self::Trapped => tracing::error!(request = id, app = %app, "guest failed: {e:?}"),
        }
        failure
    }

    /// The response for a guest that failed before answering, logged.
    pub(crate) fn response(self, id: u64, app: &str) -> Response {
        match self {
            Self::NoInstance => {
                tracing::warn!(request = id, app = %app, "503: no instance could be created");
                unavailable()
            }
            Self::CpuBudget => {
                tracing::warn!(request = id, app = %app, "503: CPU budget exceeded");
                unavailable()
            }
            Self::TimedOut => {
                tracing::warn!(request = id, app = %app, "504: timed out");
                plain(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n")
            }
            Self::Trapped => internal_error(id),
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
    call_outcome: Option<tokio::sync::oneshot::Receiver<bool>>,
    abandoned: Abandoned,
}

impl GuestBody {
    fn new(
        inner: HyperOutgoingBody,
        call_outcome: tokio::sync::oneshot::Receiver<bool>,
        abandoned: Abandoned,
    ) -> Self {
        Self {
            inner,
            call_outcome: Some(call_outcome),
            abandoned,
        }
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
            return Poll::Ready(Some(frame));
        }
        let Some(outcome) = self.call_outcome.as_mut() else {
            return Poll::Ready(None);
        };
        let succeeded = ready!(Pin::new(outcome).poll(cx)).unwrap_or(false);
        self.call_outcome = None;
        self.abandoned.finished();
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

/// A short plain-text response.
pub(crate) fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = hyper::Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The answer to a body the host would not read whole, logged.
fn body_refused(refused: BodyRefused, id: u64, app: &str) -> Response {
    tracing::info!(request = id, app = %app, "{}: {refused}", match refused {
        BodyRefused::TooLarge => "413",
        BodyRefused::TooSlow => "408",
        BodyRefused::Busy => "503",
        BodyRefused::Broken(_) => "400",
    });
    match refused {
        BodyRefused::TooLarge => too_large(),
        BodyRefused::TooSlow => {
            let mut response = plain(StatusCode::REQUEST_TIMEOUT, "Request Timeout\n");
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        BodyRefused::Busy => unavailable(),
        BodyRefused::Broken(_) => plain(StatusCode::BAD_REQUEST, "Bad Request\n"),
    }
}

fn too_large() -> Response {
    plain(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n")
}

fn internal_error(request_id: u64) -> Response {
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Internal Server Error (request {request_id})\n"),
    )
}

fn unavailable() -> Response {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}
