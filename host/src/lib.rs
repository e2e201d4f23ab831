//! # cyclone-host
//!
//! The cyclone host serves HTTP through WebAssembly components: every request
//! gets a fresh, sandboxed instance of the component its route names.
//! The `cyclone` binary is a thin shell over this library.
//!
//! Modules come in layers, each using only those before it: [`config`]
//! (parsed data), [`metrics`], [`limits`], [`response`], [`drain`],
//! [`pubsub`], [`kv`] →
//! [`engine`] → [`capabilities`] (what a guest can reach) → [`app`]
//! (admission, stores, instantiation under the timeout) → [`failure`] → the
//! front ends, [`http`] and [`websocket`], with [`router`] and [`dispatch`]
//! choosing between them → [`deploy`] (the live version of each app, swapped
//! whole) and [`admin`] (its API) → [`server`].
//!
//! The path of a request: [`server`] accepts it on a worker's event loop →
//! [`dispatch`] finds its route → [`http`] reads its body, has [`app`] admit
//! it to the instance pool and create a store and instance from the app's
//! pre-linked component ([`engine`]), and calls its
//! `wasi:http/incoming-handler` export with the imports in [`capabilities`]
//! → the response streams back.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use std::path::Path;
//! let manifest = cyclone_host::config::Manifest::load(Path::new("cyclone.toml"))?;
//! let host = cyclone_host::Host::new(manifest, &Default::default())?;
//! let (stop, wait) = tokio::sync::watch::channel(false);
//! let listeners = host.bind(None)?;
//! println!("listening on {}", listeners[0].local_addr()?);
//! host.run(listeners, None, wait)?; // returns after `stop.send(true)` and a drain
//! # drop(stop);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod admin;
pub mod app;
pub mod capabilities;
pub mod config;
pub mod deploy;
pub mod dev;
pub mod dispatch;
pub mod drain;
pub mod engine;
pub mod failure;
pub mod http;
pub mod kv;
pub mod limits;
pub mod metrics;
pub mod pubsub;
pub mod response;
pub mod router;
pub mod server;
pub mod service;
pub mod static_files;
pub mod tls;
pub mod websocket;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use config::Manifest;
use dispatch::Dispatcher;
use engine::ComponentCache;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A component could not be loaded.
    #[error(transparent)]
    Load(#[from] engine::LoadError),
    /// A component loaded but cannot serve HTTP here.
    #[error("{path}: {message}")]
    Link {
        /// The component's path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The routes do not form a valid table.
    #[error("{0}")]
    Routes(String),
    /// The machine cannot hold as many instances as the manifest asks for.
    #[error("{0}")]
    Capacity(String),
    /// A key-value store or the pub/sub backend could not be opened.
    #[error("{0}")]
    State(String),
    /// The server's certificate or key could not be read, or they do not match.
    #[error("{0}")]
    Tls(String),
}

/// How [`Host::new`] starts.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The compile cache's folder (none: compile at every start).
    pub cache_dir: Option<PathBuf>,
    /// Serve the manifest's components even where a later deploy is
    /// recorded in the data folder (`cyclone up`, which has just built them).
    pub ignore_deployed: bool,
}

/// A host ready to serve a manifest: engine built, components compiled and linked.
pub struct Host {
    manifest: Manifest,
    dispatcher: Arc<Dispatcher>,
    deployments: Arc<deploy::Deployments>,
}

impl Host {
    /// Builds the engine and loads every app of `manifest`, as `options` say.
    pub fn new(manifest: Manifest, options: &Options) -> Result<Self, StartError> {
        limits::check_map_count(manifest.server.max_instances, 1).map_err(StartError::Capacity)?;
        let engines = engine::Engines::new(&manifest.server, manifest.max_memory_bytes());
        let cache = ComponentCache::new(options.cache_dir.clone());
        let shared = app::SharedState::open(&manifest).map_err(StartError::State)?;
        let deployments = Arc::new(deploy::Deployments::new(
            &manifest,
            engines,
            cache,
            shared,
            options.ignore_deployed,
        )?);
        let dispatcher = Arc::new(Dispatcher::new(deployments.routes(), &manifest.server));
        Ok(Self {
            manifest,
            dispatcher,
            deployments,
        })
    }

    /// The apps' versions: deploys, rollbacks and reloads go through here.
    pub fn deployments(&self) -> Arc<deploy::Deployments> {
        self.deployments.clone()
    }

    /// Binds one listening socket per worker, at `listen` or the manifest's address.
    pub fn bind(&self, listen: Option<SocketAddr>) -> std::io::Result<Vec<TcpListener>> {
        let server = &self.manifest.server;
        server::bind(listen.unwrap_or(server.listen), server.worker_count())
    }

    /// Binds the admin API's socket, when the manifest asks for one.
    pub fn bind_admin(&self) -> std::io::Result<Option<TcpListener>> {
        self.manifest
            .admin
            .listen
            .map(TcpListener::bind)
            .transpose()
    }

    /// Serves on `listeners` (and the admin API on `admin`) until
    /// `shutdown` turns true, then drains.
    pub fn run(
        self,
        listeners: Vec<TcpListener>,
        admin: Option<TcpListener>,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        if let (Some(listener), Some(token)) = (admin, self.manifest.admin.token()) {
            admin::start(
                listener,
                self.deployments.clone(),
                token.to_owned(),
                shutdown.clone(),
            )?;
        }
        let tls = self.deployments.certificate().map(|c| c.acceptor());
        server::run(
            listeners,
            self.dispatcher,
            shutdown,
            &self.manifest.server,
            tls,
        )
    }
}
