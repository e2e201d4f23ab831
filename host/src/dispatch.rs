//! Request → store → instance → response.
//!
//! Each request gets a fresh `Store` and instance of its app's component. The
//! guest runs in its own task so it can keep streaming the body after the
//! response head has gone out; the instance and its admission permit are
//! released when that task ends. A trap, a guest that never answers, or a
//! refused admission becomes a short error response and a log line; nothing
//! else is affected.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use wasmtime::component::Component;
use wasmtime::{Engine, PoolConcurrencyLimitError, Store, StoreLimits};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::capabilities::{HostState, linker_for};
use crate::config::ServerConfig;
use crate::limits::{self, Admission, RETRY_AFTER_SECS};
use crate::router::Router;

/// The response type the server writes.
pub type Response = hyper::Response<HyperOutgoingBody>;

/// One deployed component, ready to instantiate.
pub struct App {
    name: Arc<str>,
    variables: Arc<BTreeMap<String, String>>,
    pre: ProxyPre<HostState>,
}

impl App {
    /// Links `component` and checks that it exports `wasi:http/incoming-handler`;
    /// its guest will read `variables`.
    pub fn new(
        name: &str,
        variables: BTreeMap<String, String>,
        engine: &Engine,
        component: &Component,
    ) -> wasmtime::Result<Self> {
        let linker = linker_for(engine, component)?;
        let pre = ProxyPre::new(linker.instantiate_pre(component)?)?;
        Ok(Self {
            name: name.into(),
            variables: Arc::new(variables),
            pre,
        })
    }

    /// The app's name from the manifest.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Routes requests to apps and runs each in a fresh instance.
pub struct Dispatcher {
    router: Router<Arc<App>>,
    admission: Admission,
    store_limits: StoreLimits,
    next_request_id: AtomicU64,
}

impl Dispatcher {
    /// A dispatcher over a route table of apps.
    pub fn new(router: Router<Arc<App>>, server: &ServerConfig) -> Self {
        Self {
            router,
            admission: Admission::new(server),
            store_limits: limits::store_limits(server),
            next_request_id: AtomicU64::new(1),
        }
    }

    /// Serves one request. Never fails: every failure is an error response.
    pub async fn handle(&self, req: hyper::Request<Incoming>) -> Result<Response, Infallible> {
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let Some(app) = self.router.lookup(req.uri().path()) else {
            return Ok(plain(StatusCode::NOT_FOUND, "Not Found\n"));
        };
        let permit = match self.admission.admit().await {
            Ok(permit) => permit,
            Err(refused) => {
                tracing::warn!(request = id, app = %app.name, "503: {refused}");
                return Ok(unavailable());
            }
        };

        let mut store = Store::new(
            app.pre.engine(),
            HostState::new(&app.name, &app.variables, id, self.store_limits.clone()),
        );
        store.limiter(|state| &mut state.limits);
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
                tracing::info!(request = id, app = %app.name, "400: {e}");
                return Ok(plain(StatusCode::BAD_REQUEST, "Bad Request\n"));
            }
        };

        let pre = app.pre.clone();
        let name = app.name.clone();
        let (call_done, call_outcome) = tokio::sync::oneshot::channel();
        // The guest may fail after its response head has gone out (while
        // streaming the body), so the task logs its own failure.
        let guest = tokio::spawn(async move {
            let result = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            }
            .await;
            // Before the store is dropped, so a good response ends without waiting for it.
            let _ = call_done.send(result.is_ok());
            drop(store);
            drop(permit);
            result.map_err(|e| {
                let pool_full = e.is::<PoolConcurrencyLimitError>();
                if !pool_full {
                    tracing::error!(request = id, app = %name, "guest failed: {e:?}");
                }
                GuestFailure { pool_full }
            })
        });

        Ok(match receiver.await {
            Ok(Ok(response)) => {
                response.map(|body| GuestBody::new(body, call_outcome).boxed_unsync())
            }
            Ok(Err(code)) => {
                tracing::error!(request = id, app = %app.name, "500: guest answered with error {code:?}");
                internal_error(id)
            }
            // The guest dropped the response outparam without setting it.
            Err(_) => match guest.await {
                Ok(Ok(())) => {
                    tracing::error!(request = id, app = %app.name, "500: guest returned without a response");
                    internal_error(id)
                }
                Ok(Err(GuestFailure { pool_full: true })) => {
                    tracing::warn!(request = id, app = %app.name, "503: the instance pool is exhausted");
                    unavailable()
                }
                Ok(Err(GuestFailure { pool_full: false })) => internal_error(id),
                Err(e) => {
                    tracing::error!(request = id, app = %app.name, "500: guest task failed: {e}");
                    internal_error(id)
                }
            },
        })
    }
}

/// How a guest's task ended when it failed; the cause is already logged.
struct GuestFailure {
    /// Instantiation found no free slot in the pool (→ 503, not 500).
    pool_full: bool,
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
struct GuestBody {
    inner: HyperOutgoingBody,
    call_outcome: Option<tokio::sync::oneshot::Receiver<bool>>,
}

impl GuestBody {
    fn new(inner: HyperOutgoingBody, call_outcome: tokio::sync::oneshot::Receiver<bool>) -> Self {
        Self {
            inner,
            call_outcome: Some(call_outcome),
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

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response {
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
