//! A deployed app, and what it takes to run one of its instances:
//! admission (route, app and process-wide caps), a store with its limits,
//! and instantiation under the app's wall-clock timeout. Both front ends,
//! HTTP and websocket, go through here, so each is written once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Instance, InstancePre};
use wasmtime::{Store, StoreLimits};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

use crate::capabilities::bindings::exports::cyclone::platform::hibernating_handler::GuestIndices as EventIndices;
use crate::capabilities::bindings::exports::cyclone::platform::websocket_handler::GuestIndices;
use crate::capabilities::{AppCapabilities, HostState, linker_for};
use crate::config::{AppConfig, Route, ServerConfig};
use crate::engine::Wasi;
use crate::limits::{self, Admission, CpuClock};
use crate::metrics::METRICS;
use crate::response::{Response, internal_error, unavailable};

/// A request that arrived over TLS carries this extension (the server
/// marks it): its guest sees the scheme `https`, and a websocket handshake's
/// own origin is `https://HOST`.
#[derive(Debug, Clone, Copy)]
pub struct Secure;

/// Whether `req` arrived over TLS.
pub fn is_secure<B>(req: &http::Request<B>) -> bool {
    req.extensions().get::<Secure>().is_some()
}

/// One deployed component, ready to instantiate, with its limits.
pub struct App {
    caps: Arc<AppCapabilities>,
    pre: Handler,
    /// Set when the component exports `cyclone:platform/websocket-handler`.
    websocket: Option<WebSocketExport>,
    admission: Option<Arc<Admission>>,
    store_limits: StoreLimits,
    /// Which version of the app this is.
    pub version: Version,
    /// Stores (instances) of this version alive now.
    live: Arc<AtomicUsize>,
    /// The app's request counters.
    pub requests: crate::metrics::Requests,
    /// CPU time one request (or one websocket event) may use.
    pub cpu_budget: Duration,
    /// Wall-clock time one request (or a session's `connect`) may take.
    pub timeout: Option<Duration>,
    /// The largest request body.
    pub max_body_bytes: u64,
    /// The guest reads the body as it arrives (`stream_request_body`).
    pub stream_body: bool,
    /// A WASI 0.3 app's workers: its instances and the requests they serve.
    pub(crate) workers: crate::service::Workers,
}

/// An app's pre-linked HTTP export, by WASI release.
enum Handler {
    /// `wasi:http/incoming-handler@0.2.x`.
    P2(ProxyPre<HostState>),
    /// `wasi:http/handler@0.3.x`.
    P3(ServicePre<HostState>),
}

impl Handler {
    fn instance_pre(&self) -> &InstancePre<HostState> {
        match self {
            Self::P2(pre) => pre.instance_pre(),
            Self::P3(pre) => pre.instance_pre(),
        }
    }
}

/// What outlives requests and is shared between apps: the opened key-value
/// stores and, when pub/sub goes through Redis, the connection to it.
#[derive(Debug, Default)]
pub struct SharedState {
    /// Every store of the manifest, by name.
    pub stores: BTreeMap<String, Arc<crate::kv::Store>>,
    /// The Redis pub/sub connection, when `[pubsub] backend = "redis"`.
    pub bus: Option<Arc<crate::pubsub::redis::Bus>>,
}

impl SharedState {
    /// Opens the stores and the pub/sub connection `manifest` names.
    pub fn open(manifest: &crate::config::Manifest) -> Result<Self, String> {
        let stores = crate::kv::open_all(&manifest.key_value).map_err(|e| e.to_string())?;
        let bus = match manifest.pubsub.redis_url() {
            Some(url) => Some(
                crate::pubsub::redis::Bus::connect(url).map_err(|e| format!("pubsub.url: {e}"))?,
            ),
            None => None,
        };
        Ok(Self { stores, bus })
    }

    fn pubsub(&self, app: &str, config: &AppConfig) -> Arc<dyn crate::pubsub::PubSub> {
        match &self.bus {
            Some(bus) => crate::pubsub::redis::RedisPubSub::new(
                bus.clone(),
                app,
                config.pubsub_history,
                config.pubsub_buffer,
            ),
            None => crate::pubsub::InProcess::new(config.pubsub_history, config.pubsub_buffer),
        }
    }
}

/// A version of an app: what was deployed, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// 1 for the first, then one more for each deploy.
    pub number: u64,
    /// The SHA-256 of the component's bytes, in hex.
    pub sha256: String,
    /// When it went live, in seconds since the Unix epoch.
    pub deployed_at: u64,
    /// Where its component is: the manifest's file, or one deployed since
    /// (kept in the data folder).
    pub path: std::path::PathBuf,
    /// True when it came through the admin API rather than the manifest.
    pub deployed: bool,
}

/// An app's websocket export and settings, present when its component
/// serves sessions.
pub struct WebSocketExport {
    /// Where `connect` and `run` are in an instance.
    pub indices: GuestIndices,
    /// Where the hibernating handler's functions are, when the component
    /// exports `cyclone:platform/hibernating-handler` too.
    pub events: Option<EventIndices>,
    /// The largest message either side may send, in bytes.
    pub max_message: usize,
    /// Other origins whose pages may open sessions, lowercase, without a
    /// trailing `/`; `*` for any.
    pub allowed_origins: Vec<String>,
    /// The interval between pings, `None` when off.
    pub ping: Option<Duration>,
    /// One permit per session open on this version (`websocket_max_sessions`).
    pub sessions: Arc<tokio::sync::Semaphore>,
}

/// The indices of an export the component may leave out: none when it
/// exports no interface named `interface` (any version), an error naming
/// it when it exports one whose types are not this host's (a component
/// built with another release's SDK).
fn optional_export<T>(
    component: &Component,
    interface: &str,
    found: wasmtime::Result<T>,
) -> wasmtime::Result<Option<T>> {
    let error = match found {
        Ok(indices) => return Ok(Some(indices)),
        Err(error) => error,
    };
    let exported = component
        .component_type()
        .exports(component.engine())
        .find(|(name, _)| name.starts_with(interface))
        .map(|(name, _)| name.to_owned());
    match exported {
        None => Ok(None),
        Some(name) => Err(error.context(format!(
            "it exports {name} with other types than this cyclone's; rebuild it with this release's cyclone-sdk"
        ))),
    }
}

impl App {
    /// Links `component`, which serves `wasi` HTTP, and checks its export.
    pub fn new(
        name: &str,
        config: &AppConfig,
        component: &Component,
        wasi: Wasi,
        shared: &SharedState,
        version: Version,
        admission: Option<Arc<Admission>>,
    ) -> wasmtime::Result<Self> {
        let linker = linker_for(component.engine(), component, wasi)?;
        let instance_pre = linker.instantiate_pre(component)?;
        // Sessions are a WASI 0.2 export: its calls are synchronous.
        let websocket = match wasi {
            Wasi::P2 => optional_export(
                component,
                "cyclone:platform/websocket-handler@",
                GuestIndices::new(&instance_pre),
            )?,
            Wasi::P3 => None,
        };
        let events = match websocket {
            Some(_) => optional_export(
                component,
                "cyclone:platform/hibernating-handler@",
                EventIndices::new(&instance_pre),
            )?,
            None => None,
        };
        let websocket = websocket.map(|indices| WebSocketExport {
            indices,
            events,
            max_message: config.websocket_max_message_bytes(),
            allowed_origins: config
                .websocket_allowed_origins
                .iter()
                .map(|origin| origin.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            ping: config.websocket_ping(),
            sessions: Arc::new(tokio::sync::Semaphore::new(
                config.websocket_max_sessions as usize,
            )),
        });
        let pre = match wasi {
            Wasi::P2 => Handler::P2(ProxyPre::new(instance_pre)?),
            Wasi::P3 => Handler::P3(ServicePre::new(instance_pre)?),
        };
        Ok(Self {
            caps: Arc::new(AppCapabilities {
                name: name.into(),
                variables: config.variable_values(),
                allowed_hosts: config.allowed_outbound_hosts.clone(),
                outbound: crate::capabilities::outbound::Pool::new(config.outbound_pool),
                static_files: Arc::new(crate::static_files::Versions::new(config)),
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
                pubsub: shared.pubsub(name, config),
                published: METRICS
                    .published
                    .get_or_create(&crate::metrics::App {
                        app: name.to_owned(),
                    })
                    .clone(),
                key_value: config
                    .key_value_stores
                    .iter()
                    .filter_map(|store| Some((store.clone(), shared.stores.get(store)?.clone())))
                    .collect(),
                log_lines_per_sec: config.max_log_lines_per_sec,
            }),
            pre,
            websocket,
            admission,
            store_limits: limits::store_limits(config),
            version,
            live: Arc::new(AtomicUsize::new(0)),
            requests: crate::metrics::Requests::of(name),
            cpu_budget: config.cpu_budget(),
            timeout: config.timeout(),
            max_body_bytes: config.max_body_bytes(),
            stream_body: config.stream_request_body,
            workers: crate::service::Workers::new(match wasi {
                Wasi::P3 => config.instance_reuse,
                Wasi::P2 => {
                    if config.instance_reuse.is_some() {
                        tracing::warn!(
                            app = name,
                            "instance_reuse applies to WASI 0.3 components only; this WASI 0.2 component gets a fresh instance per request"
                        );
                    }
                    None
                }
            }),
        })
    }

    /// The app's name from the manifest.
    pub fn name(&self) -> &Arc<str> {
        &self.caps.name
    }

    /// Instances of this version alive now.
    pub fn live_instances(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The websocket export, when the component serves sessions.
    pub fn websocket(&self) -> Option<&WebSocketExport> {
        self.websocket.as_ref()
    }

    /// A fresh store for request `id`, its limits and CPU clock set; a 500
    /// (logged) when the guest's capabilities cannot be prepared. The task
    /// that will own it is started with [`spawn_guest`], which runs the clock.
    pub(crate) fn new_store(
        &self,
        id: u64,
        cpu: CpuClock,
    ) -> Result<Store<HostState>, Box<Response>> {
        let live = limits::LiveInstance::new(&self.live);
        let state = match HostState::new(&self.caps, id, self.store_limits.clone(), cpu, live) {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(request = id, app = %self.caps.name, "500: cannot prepare the guest's capabilities: {e:#}");
                return Err(Box::new(internal_error(id)));
            }
        };
        let mut store = Store::new(self.pre.instance_pre().engine(), state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().cpu.on_epoch());
        Ok(store)
    }

    /// The WASI release the app's component serves.
    pub fn wasi(&self) -> Wasi {
        match self.pre {
            Handler::P2(_) => Wasi::P2,
            Handler::P3(_) => Wasi::P3,
        }
    }

    /// A WASI 0.2 instance for an HTTP request. A component that linked at
    /// start-up fails to instantiate only for want of resources (pool
    /// slots, memory mappings): [`NoInstance`].
    pub(crate) async fn instantiate_proxy(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Proxy> {
        let Handler::P2(pre) = &self.pre else {
            wasmtime::bail!("the app serves WASI 0.3, not 0.2");
        };
        // Boxed: instantiating takes a 1.2 KiB future that is done before
        // the guest runs; inline, the request's task would keep room for it
        // for as long as the guest is suspended.
        Box::pin(pre.instantiate_async(store))
            .await
            .map_err(|e| wasmtime::Error::new(NoInstance(format!("{e:#}"))))
    }

    /// A WASI 0.3 instance for HTTP requests; see [`App::instantiate_proxy`].
    pub(crate) async fn instantiate_service(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Service> {
        let Handler::P3(pre) = &self.pre else {
            wasmtime::bail!("the app serves WASI 0.2, not 0.3");
        };
        Box::pin(pre.instantiate_async(store))
            .await
            .map_err(|e| wasmtime::Error::new(NoInstance(format!("{e:#}"))))
    }

    /// An instance for a websocket session; see [`App::instantiate_proxy`].
    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Instance> {
        let pre: &InstancePre<HostState> = self.pre.instance_pre();
        Box::pin(pre.instantiate_async(store))
            .await
            .map_err(|e| wasmtime::Error::new(NoInstance(format!("{e:#}"))))
    }

    /// Runs `call` under the app's wall-clock timeout; past it the call is
    /// dropped and fails with [`TimedOut`].
    ///
    /// A plain future rather than an `async fn`, which would hold `call`
    /// twice (the argument and the future it awaits): this wraps what a
    /// suspended guest is held in, so the copy would be paid for every
    /// suspended request.
    pub(crate) fn within_timeout<T>(
        &self,
        call: impl Future<Output = wasmtime::Result<T>>,
    ) -> impl Future<Output = wasmtime::Result<T>> {
        use futures_util::FutureExt;
        use futures_util::future::Either;
        match self.timeout {
            Some(limit) => {
                Either::Left(tokio::time::timeout(limit, call).map(move |result| {
                    result.unwrap_or(Err(wasmtime::Error::new(TimedOut(limit))))
                }))
            }
            None => Either::Right(call),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        tracing::info!(
            app = %self.caps.name,
            version = self.version.number,
            "app version unloaded: no route leads to it and its last instance has ended"
        );
    }
}

/// Instantiation failed; the cause, for the log.
#[derive(Debug, thiserror::Error)]
#[error("no instance could be created: {0}")]
pub struct NoInstance(pub String);

/// The wall-clock timeout ended the guest's call.
#[derive(Debug, thiserror::Error)]
#[error("the request ran past its timeout of {0:?}")]
pub struct TimedOut(pub Duration);

/// Where a route leads: its app, and the route's own instance cap if it
/// has one; or, for a route of the app's `static` table, its files.
#[derive(Clone)]
pub struct Target {
    /// The app that serves the route.
    pub app: Arc<App>,
    admission: Option<Arc<Admission>>,
    /// The folder the host serves at this route, without an instance.
    pub files: Option<Arc<crate::static_files::StaticFiles>>,
}

impl Target {
    /// The target of a route of `app`, with the route's own gate if it has one.
    pub fn new(app: Arc<App>, admission: Option<Arc<Admission>>) -> Self {
        Self {
            app,
            admission,
            files: None,
        }
    }

    /// A route of `app`'s `static` table, serving `files`.
    pub fn files(app: Arc<App>, files: crate::static_files::StaticFiles) -> Self {
        Self {
            app,
            admission: None,
            files: Some(Arc::new(files)),
        }
    }

    /// The gate of `route`, when it caps its instances; kept across versions
    /// of its app, so a deploy does not reset the cap.
    pub fn gate(route: &Route, server: &ServerConfig) -> Option<Arc<Admission>> {
        route.max_instances.map(|permits| {
            Arc::new(
                Admission::with_permits(permits, server).named(format!("route:{}", route.pattern)),
            )
        })
    }
}

/// The process's instances: `server.max_instances`, shared by every app.
pub struct Instances {
    admission: Admission,
}

/// Starts the task that owns `store`, made by `task`, with each of its
/// polls counted on the store's CPU clock: a guest's work is counted only
/// inside a task started here.
pub(crate) fn spawn_guest<F, Fut>(
    store: Store<HostState>,
    task: F,
) -> tokio::task::JoinHandle<Fut::Output>
where
    F: FnOnce(Store<HostState>) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let timer = store.data().cpu.timer();
    // Boxed: a guest's future is kilobytes (wasmtime's call), and tokio
    // moves a task's future by value when it spawns it and again when it
    // stores the output; a box makes each move a pointer's.
    tokio::spawn(Box::pin(timer.time(task(store))))
}

/// The instance permits one request or session holds until its instance is
/// dropped: per route, per app and shared.
pub struct Permits {
    _route: Option<tokio::sync::OwnedSemaphorePermit>,
    _app: Option<tokio::sync::OwnedSemaphorePermit>,
    _shared: tokio::sync::OwnedSemaphorePermit,
}

impl Instances {
    /// The process-wide gate, sized from `server`.
    pub fn new(server: &ServerConfig) -> Self {
        Self {
            admission: Admission::new(server).named("server".to_owned()),
        }
    }

    /// Takes an instance permit for a request on `target`: the route's
    /// first, then the app's, then the shared ones (as many as the app's
    /// instances need of the pool: [`crate::service::Workers::slots`]), so a backlog on one
    /// route or app does not take the permits others need; a 503 (logged)
    /// when refused.
    pub(crate) async fn admit(&self, target: &Target, id: u64) -> Result<Permits, Box<Response>> {
        let name = target.app.name();
        let gate = async |gate: &Option<Arc<Admission>>, which: &str| match gate {
            Some(gate) => match gate.admit().await {
                Ok(permit) => Ok(Some(permit)),
                Err(refused) => {
                    METRICS.refused(name, "queue");
                    tracing::warn!(request = id, app = %name, "503: {which} max_instances: {refused}");
                    Err(Box::new(unavailable()))
                }
            },
            None => Ok(None),
        };
        let route = gate(&target.admission, "route").await?;
        let app = gate(&target.app.admission, "app").await?;
        match self.admission.admit_many(target.app.workers.slots()).await {
            Ok(permit) => Ok(Permits {
                _route: route,
                _app: app,
                _shared: permit,
            }),
            Err(refused) => {
                METRICS.refused(name, "queue");
                tracing::warn!(request = id, app = %name, "503: {refused}");
                Err(Box::new(unavailable()))
            }
        }
    }

    /// Takes an instance permit for a hibernating session's event on
    /// `target`, in the same order as [`Instances::admit`], waiting as long
    /// as it takes: the event's message has been read already, and each
    /// session has at most one event waiting.
    pub(crate) async fn admit_patiently(&self, target: &Target) -> Permits {
        let gate = async |gate: &Option<Arc<Admission>>| match gate {
            Some(gate) => Some(gate.admit_patiently().await),
            None => None,
        };
        Permits {
            _route: gate(&target.admission).await,
            _app: gate(&target.app.admission).await,
            _shared: self.admission.admit_patiently().await,
        }
    }

    /// The permits for a request on `target` if all are free right now;
    /// none taken otherwise.
    pub(crate) fn try_admit(&self, target: &Target) -> Option<Permits> {
        let gate = |gate: &Option<Arc<Admission>>| match gate {
            Some(gate) => gate.try_admit().map(Some),
            None => Some(None),
        };
        Some(Permits {
            _route: gate(&target.admission)?,
            _app: gate(&target.app.admission)?,
            _shared: self.admission.try_admit_many(target.app.workers.slots())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::component::Linker;

    fn component(wat: &str) -> Component {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        Component::new(&engine, wat::parse_str(wat).unwrap()).unwrap()
    }

    fn events(component: &Component) -> wasmtime::Result<Option<EventIndices>> {
        let pre = Linker::<()>::new(component.engine())
            .instantiate_pre(component)
            .unwrap();
        optional_export(
            component,
            "cyclone:platform/hibernating-handler@",
            EventIndices::new(&pre),
        )
    }

    #[test]
    fn an_optional_export_with_other_types_is_an_error_that_names_it() {
        // A hibernating handler from another release: one function, of
        // another type than this host's `on-close`.
        let other = component(
            r#"(component
                (core module $m (func (export "f")))
                (core instance $i (instantiate $m))
                (func $f (canon lift (core func $i "f")))
                (instance $handler (export "on-close" (func $f)))
                (export "cyclone:platform/hibernating-handler@0.1.0" (instance $handler)))"#,
        );
        let message = format!("{:#}", events(&other).err().expect("refused"));
        assert!(
            message
                .contains("it exports cyclone:platform/hibernating-handler@0.1.0 with other types"),
            "{message}"
        );
        // Without the export, there is simply none.
        assert!(events(&component("(component)")).unwrap().is_none());
    }
}
