//! What a guest can reach: the per-request store state and the linker that
//! exposes WASI and cyclone's own interfaces to components.
//!
//! Guests see `wasi:http/proxy` (HTTP types, clocks, random, stdio) and the
//! rest of WASI 0.2 with only what the manifest grants: the folders in
//! `files` (read-only) and the variables in `environment`; never sockets. Outbound HTTP reaches what the app's
//! `allowed_outbound_hosts` lists (see [`outbound`]). From `cyclone:platform`
//! they see their app's manifest variables, pub/sub and websockets, and
//! through `wasi:keyvalue` the stores their app is granted. Imports nobody
//! provides trap when called, so a component links as long as it never calls
//! them.

pub(crate) mod bindings;
mod guest_log;
pub(crate) mod hibernation;
mod key_value;
pub mod outbound;
pub(crate) mod pubsub;
mod static_files;
mod variables;
pub(crate) mod websocket;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Component, HasSelf, Linker, LinkerInstance, ResourceTable, ResourceType,
};
use wasmtime::{Engine, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

pub use guest_log::GuestLog;

use crate::engine::Wasi;
use crate::limits::CpuClock;

/// What one app's guests may reach, shared by all its requests.
#[derive(Debug)]
pub struct AppCapabilities {
    /// The app's name, for logs.
    pub name: Arc<str>,
    /// The app's manifest variables.
    pub variables: BTreeMap<String, String>,
    /// Where its outbound HTTP may go.
    pub allowed_hosts: crate::config::AllowedHosts,
    /// Its idle outbound connections.
    pub outbound: Arc<outbound::Pool>,
    /// Its static folders, for versioned URLs.
    pub static_files: Arc<crate::static_files::Versions>,
    /// Host folders it may read, with the path the guest sees each at.
    pub files: Vec<(PathBuf, String)>,
    /// The environment variables it sees.
    pub environment: Vec<(String, String)>,
    /// Its pub/sub topics.
    pub pubsub: Arc<dyn crate::pubsub::PubSub>,
    /// Counts the messages it publishes (`cyclone_pubsub_published_total`).
    pub published: prometheus_client::metrics::counter::Counter,
    /// The key-value stores it is granted, by name.
    pub key_value: BTreeMap<String, Arc<crate::kv::Store>>,
    /// Lines one instance may log a second.
    pub log_lines_per_sec: u32,
}

/// Everything one request's store holds.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    /// Outbound HTTP, holding the app's capabilities for this request too.
    hooks: OutboundHttp,
    table: ResourceTable,
    /// The store's resource limits, read by `Store::limiter`.
    pub limits: crate::limits::MemoryCap,
    /// The guest's CPU time, kept by the store's call hook and epoch callback.
    pub cpu: CpuClock,
    /// A denied key-value store was logged for this request already: one
    /// line per request, however often its guest retries.
    kv_denial_logged: bool,
    /// Counts this instance among its app version's live ones until dropped.
    _live: crate::limits::LiveInstance,
}

impl HostState {
    /// State for one request of `app`, with guest output tagged `request_id`.
    ///
    /// Fails only when a granted folder cannot be opened (it was there at
    /// start-up).
    pub fn new(
        app: &Arc<AppCapabilities>,
        request_id: u64,
        limits: StoreLimits,
        cpu: CpuClock,
        live: crate::limits::LiveInstance,
    ) -> wasmtime::Result<Self> {
        let rate = guest_log::Rate::new(app.name.clone(), request_id, app.log_lines_per_sec);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(GuestLog::new("stdout", rate.clone()))
            .stderr(GuestLog::new("stderr", rate))
            .envs(&app.environment);
        for (host, guest) in &app.files {
            wasi.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadOnly)?;
        }
        let wasi = wasi.build();
        Ok(Self {
            wasi,
            http: WasiHttpCtx::new(),
            hooks: OutboundHttp {
                app: app.clone(),
                request_id,
            },
            table: ResourceTable::new(),
            limits: crate::limits::MemoryCap::new(limits, app.name.clone()),
            cpu,
            kv_denial_logged: false,
            _live: live,
        })
    }
}

impl HostState {
    /// Puts `session` in the store's resource table for the guest's `run`.
    pub fn push_session(
        &mut self,
        session: websocket::Session,
    ) -> wasmtime::Result<wasmtime::component::Resource<websocket::Session>> {
        Ok(self.table.push(session)?)
    }

    /// Lends `session` to the guest for one hibernating event.
    pub fn push_event_session(
        &mut self,
        session: hibernation::EventSession,
    ) -> wasmtime::Result<wasmtime::component::Resource<hibernation::EventSession>> {
        Ok(self.table.push(session)?)
    }

    /// Takes back the session lent with [`HostState::push_event_session`].
    pub fn take_event_session(
        &mut self,
        session: wasmtime::component::Resource<hibernation::EventSession>,
    ) -> wasmtime::Result<hibernation::EventSession> {
        Ok(self.table.delete(session)?)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP for one request: checked against the app's allow-list.
struct OutboundHttp {
    app: Arc<AppCapabilities>,
    request_id: u64,
}

/// What `send_request` hands back to wasmtime-wasi-http.
type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        let app = self.app.clone();
        let request_id = self.request_id;
        Box::new(async move {
            use outbound::{CheckError, Denied, SendError};
            let denied = |why: Denied| {
                tracing::warn!(request = request_id, app = %app.name, "outbound HTTP denied: {why}");
                match why {
                    Denied::Internal { .. } => wasmtime_wasi_http::Error::DestinationIpProhibited,
                    _ => wasmtime_wasi_http::Error::HttpRequestDenied,
                }
            };
            let upstream = outbound::permit(&app.allowed_hosts, request.uri()).map_err(denied)?;
            let response = outbound::send(
                &app.outbound,
                &app.allowed_hosts,
                upstream,
                request,
                options,
            )
            .await
            .map_err(|e| match e {
                SendError::Check(CheckError::Denied(why)) => denied(why),
                SendError::Check(CheckError::Dns(why)) => {
                    tracing::info!(request = request_id, app = %app.name, "outbound HTTP: {why}");
                    wasmtime_wasi_http::Error::DestinationNotFound
                }
                SendError::Http(e) => e,
            })?;
            let io: Box<dyn Future<Output = _> + Send> = Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

/// WASI interfaces the linker provides (any 0.2.x version, and 0.3.0 for
/// WASI 0.3 components). An import outside them is linked as a trap.
const PROVIDED: &[&str] = &[
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:http/",
    "wasi:io/",
    "wasi:keyvalue/",
    "wasi:random/",
    "wasi:sockets/",
    "cyclone:platform/",
];

/// A linker for `component`: WASI 0.2 (and 0.3 when `wasi` is
/// [`Wasi::P3`]: such components also use 0.2 interfaces, e.g. through
/// Rust's standard library), `wasi:http` and `cyclone:platform`, with every
/// other import of the component defined to trap when called.
pub fn linker_for(
    engine: &Engine,
    component: &Component,
    wasi: Wasi,
) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    if wasi == Wasi::P3 {
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    }
    bindings::cyclone::platform::variables::add_to_linker::<_, HasSelf<HostState>>(
        &mut linker,
        |state| state,
    )?;
    bindings::cyclone::platform::static_files::add_to_linker::<_, HasSelf<HostState>>(
        &mut linker,
        |state| state,
    )?;
    bindings::cyclone::platform::pubsub::add_to_linker::<_, HasSelf<HostState>>(
        &mut linker,
        |state| state,
    )?;
    if wasi == Wasi::P3 {
        bindings::cyclone::platform::pubsub_async::add_to_linker::<_, pubsub::HasPubSub>(
            &mut linker,
            |state| state,
        )?;
    }
    bindings::cyclone::platform::websocket::add_to_linker::<_, HasSelf<HostState>>(
        &mut linker,
        |state| state,
    )?;
    bindings::cyclone::platform::hibernation::add_to_linker::<_, HasSelf<HostState>>(
        &mut linker,
        |state| state,
    )?;
    bindings::wasi::keyvalue::store::add_to_linker::<_, HasSelf<HostState>>(
        &mut linker,
        |state| state,
    )?;
    bindings::wasi::keyvalue::atomics::add_to_linker::<_, HasSelf<HostState>>(
        &mut linker,
        |state| state,
    )?;
    bindings::wasi::keyvalue::batch::add_to_linker::<_, HasSelf<HostState>>(
        &mut linker,
        |state| state,
    )?;
    // `Linker::define_unknown_imports_as_traps` would also redefine resources
    // that provided interfaces `use` from `wasi:io` (e.g. `pollable` in
    // `wasi:clocks`) and break them, so stub only interfaces nobody provides.
    for (name, item) in component.component_type().imports(engine) {
        if !PROVIDED.iter().any(|prefix| name.starts_with(prefix)) {
            stub(&mut linker.root(), name, name, &item.ty, engine)?;
        }
    }
    Ok(linker)
}

/// Defines `name` in `linker` as traps; `qualified` is its full name for errors.
fn stub(
    linker: &mut LinkerInstance<'_, HostState>,
    name: &str,
    qualified: &str,
    item: &ComponentItem,
    engine: &Engine,
) -> wasmtime::Result<()> {
    match item {
        ComponentItem::ComponentFunc(_) => {
            let qualified = qualified.to_owned();
            linker.func_new(name, move |_, _, _, _| {
                wasmtime::bail!("`{qualified}` is not provided by cyclone")
            })
        }
        ComponentItem::ComponentInstance(instance) => {
            let mut inner = linker.instance(name)?;
            for (export, item) in instance.exports(engine) {
                stub(
                    &mut inner,
                    export,
                    &format!("{qualified}#{export}"),
                    &item.ty,
                    engine,
                )?;
            }
            Ok(())
        }
        ComponentItem::Resource(_) => {
            linker.resource(name, ResourceType::host::<()>(), |_, _| Ok(()))
        }
        ComponentItem::Module(_) | ComponentItem::Component(_) => {
            wasmtime::bail!(
                "import `{qualified}` is a module or component, which cyclone cannot provide"
            )
        }
        ComponentItem::CoreFunc(_) | ComponentItem::Type(_) => Ok(()),
    }
}
