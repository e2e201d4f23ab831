//! Which version of each app is live, and swapping one in while the host
//! serves.
//!
//! The route table is one value behind an `ArcSwap`: [`dispatch`](crate::dispatch)
//! loads it once per request, and the request keeps the `Arc<App>` of the
//! version it was routed to until its instance is dropped. A deploy builds
//! the new version completely (compiled, linked, checked), then stores a
//! new table in one atomic step: requests and websocket sessions that
//! started on the old version finish on it, and every request routed after
//! the store gets the new one. The old version's compiled code is freed
//! when its last instance ends (the log says `app version unloaded`).
//!
//! A deployed component is written to `DATA_DIR/deployed/APP/SHA256.wasm`,
//! with `DATA_DIR/deployed/APP/state.json` naming the live and the previous
//! version, so that a restart serves what was deployed last and a rollback
//! has the previous version at hand.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::{App, SharedState, Target, Version};
use crate::config::{AppConfig, Manifest, ServerConfig};
use crate::engine::{ComponentCache, Engines, LoadError};
use crate::limits::Admission;
use crate::router::Router;
use crate::tls::Certificate;

/// The route table requests are dispatched through, swapped whole.
pub type Routes = Arc<ArcSwap<Router<Target>>>;

/// Why a deploy or rollback did not happen; the live version is untouched.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// No app has that name.
    #[error("no app named `{0}`")]
    NoSuchApp(String),
    /// The component cannot be read, is not an HTTP component, or does not
    /// compile.
    #[error("{0}")]
    Load(#[from] LoadError),
    /// The component cannot serve: not a component, or does not link
    /// against the host's imports.
    #[error("{0}")]
    Unusable(String),
    /// There is no previous version to go back to.
    #[error("app `{0}` has no previous version")]
    NoPrevious(String),
    /// The host could not write or read its data folder.
    #[error("{0}")]
    Io(String),
}

/// One app's versions.
#[derive(Clone)]
struct Deployed {
    config: AppConfig,
    gate: Option<Arc<Admission>>,
    route_gates: Vec<Option<Arc<Admission>>>,
    live: Arc<App>,
    previous: Option<Version>,
    /// Versions replaced while instances of theirs still ran.
    retiring: Vec<Weak<App>>,
}

/// The apps of a running host and their versions.
pub struct Deployments {
    engines: Engines,
    cache: ComponentCache,
    server: ServerConfig,
    shared: SharedState,
    /// The manifest the process started with: a reload reports the
    /// settings only a restart can change against it.
    started: Manifest,
    /// Where the manifest is read from on a reload (none for a bare component).
    manifest_path: Mutex<Option<PathBuf>>,
    routes: Routes,
    apps: Mutex<BTreeMap<String, Deployed>>,
    /// One deploy or rollback at a time.
    deploying: Mutex<()>,
    /// The server's certificate, when it speaks HTTPS; a reload reads its
    /// files again.
    certificate: Option<Arc<Certificate>>,
}

/// What `state.json` keeps of a version.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredVersion {
    number: u64,
    sha256: String,
    deployed_at: u64,
    file: PathBuf,
    deployed: bool,
}

impl From<&Version> for StoredVersion {
    fn from(v: &Version) -> Self {
        Self {
            number: v.number,
            sha256: v.sha256.clone(),
            deployed_at: v.deployed_at,
            file: v.path.clone(),
            deployed: v.deployed,
        }
    }
}

impl From<StoredVersion> for Version {
    fn from(v: StoredVersion) -> Self {
        Self {
            number: v.number,
            sha256: v.sha256,
            deployed_at: v.deployed_at,
            path: v.file,
            deployed: v.deployed,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    live: StoredVersion,
    previous: Option<StoredVersion>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A linking error on one line; one that names an import from a WASI 0.3
/// release candidate says so.
pub fn link_message(e: &wasmtime::Error) -> String {
    let chain = format!("{e:#}").replace('\n', " ");
    if chain.contains("matching implementation was not found") && chain.contains("@0.3.0-") {
        format!(
            "built for a WASI 0.3 release candidate; cyclone provides WASI 0.3.0 (rebuild with bindings for 0.3.0): {chain}"
        )
    } else {
        chain
    }
}

impl Deployments {
    /// Loads every app of `manifest` (the version deployed last, when the
    /// data folder has one, unless `ignore_deployed`) and builds the route
    /// table; reads the server's certificate when it speaks HTTPS.
    pub fn new(
        manifest: &Manifest,
        engines: Engines,
        cache: ComponentCache,
        shared: SharedState,
        ignore_deployed: bool,
    ) -> Result<Self, crate::StartError> {
        let certificate = manifest
            .server
            .tls
            .as_ref()
            .map(Certificate::load)
            .transpose()
            .map_err(crate::StartError::Tls)?;
        let deployments = Self {
            engines,
            cache,
            server: manifest.server.clone(),
            shared,
            routes: Arc::new(ArcSwap::from_pointee(
                Router::new(Vec::new()).map_err(crate::StartError::Routes)?,
            )),
            started: manifest.clone(),
            manifest_path: Mutex::new(None),
            apps: Mutex::new(BTreeMap::new()),
            deploying: Mutex::new(()),
            certificate,
        };
        let mut apps = BTreeMap::new();
        for (name, config) in &manifest.apps {
            let state = if ignore_deployed {
                None
            } else {
                deployments.read_state(name)
            };
            let (version, previous) = match state {
                Some(state) if state.live.file.exists() => {
                    tracing::info!(
                        app = %name,
                        version = state.live.number,
                        "serving the version deployed last (its component is in the data folder)"
                    );
                    (Version::from(state.live), state.previous.map(Version::from))
                }
                _ => {
                    let bytes =
                        std::fs::read(&config.component).map_err(|source| LoadError::Read {
                            path: config.component.clone(),
                            source,
                        })?;
                    let version = Version {
                        number: 1,
                        sha256: sha256_hex(&bytes),
                        deployed_at: now(),
                        path: config.component.clone(),
                        deployed: false,
                    };
                    (version, None)
                }
            };
            let gate = Admission::for_app(config, &manifest.server)
                .map(|gate| Arc::new(gate.named(format!("app:{name}"))));
            let live = deployments
                .load(name, config, version, gate.clone())
                .map_err(|e| match e {
                    DeployError::Load(e) => crate::StartError::Load(e),
                    DeployError::Unusable(message) => crate::StartError::Link {
                        path: config.component.clone(),
                        message,
                    },
                    other => crate::StartError::State(other.to_string()),
                })?;
            let route_gates = config
                .routes
                .iter()
                .map(|route| Target::gate(route, &manifest.server))
                .collect();
            apps.insert(
                name.clone(),
                Deployed {
                    config: config.clone(),
                    gate,
                    route_gates,
                    live: Arc::new(live),
                    previous,
                    retiring: Vec::new(),
                },
            );
        }
        deployments
            .routes
            .store(Arc::new(router(&apps).map_err(crate::StartError::Routes)?));
        *deployments.apps.lock().unwrap_or_else(|e| e.into_inner()) = apps;
        Ok(deployments)
    }

    /// Remembers where the manifest is, for [`Deployments::reload_file`].
    pub fn set_manifest_path(&self, path: PathBuf) {
        *self.manifest_path.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
    }

    /// Reads the manifest again from its file and applies it; see
    /// [`Deployments::reload`]. The error is the same one line as at start-up.
    pub fn reload_file(&self) -> Result<Reloaded, String> {
        let path = self
            .manifest_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or("this host serves a bare component: there is no manifest to reload")?;
        let outcome = Manifest::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|manifest| self.reload(manifest));
        crate::metrics::METRICS.deployed("-", "reload", outcome.is_ok());
        outcome
    }

    /// Applies a changed manifest with the same atomicity as a deploy:
    /// every added, removed or changed app (routes, limits, grants,
    /// component) is built first, then one new route table goes live. A
    /// changed app gets a new version; it keeps the component it serves
    /// (say, one deployed since) unless the manifest names another file.
    /// When any app cannot be built, nothing changes. Settings only a
    /// restart can change (`[server]`, `[key_value]`, `[pubsub]`, `[admin]`)
    /// are reported, not applied.
    pub fn reload(&self, manifest: Manifest) -> Result<Reloaded, String> {
        let _one_at_a_time = self.deploying.lock().unwrap_or_else(|e| e.into_inner());
        let old = &self.started;
        let mut needs_restart = Vec::new();
        // Certificate files, new or renewed, are read at every reload, before
        // anything changes (a bad file refuses the reload); only turning
        // HTTPS on or off takes a restart, so the paths are not a change.
        let mut server = manifest.server.clone();
        let certificate = match (&self.certificate, &manifest.server.tls) {
            (Some(certificate), Some(files)) => {
                server.tls.clone_from(&old.server.tls);
                Some((certificate, crate::tls::read(files)?))
            }
            _ => None,
        };
        if server != old.server {
            let changes = server_changes(&old.server, &server);
            if changes.is_empty() {
                needs_restart.push("server".to_owned());
            }
            needs_restart.extend(changes);
        }
        if manifest.max_memory_bytes() > old.max_memory_bytes() {
            return Err(format!(
                "an app's max_memory_mb is above what the instance pool was sized for at start-up ({} MiB); raising it takes a restart",
                old.max_memory_bytes() >> 20
            ));
        }
        if manifest.key_value != old.key_value {
            needs_restart.push("key_value".to_owned());
        }
        if manifest.pubsub != old.pubsub {
            needs_restart.push("pubsub".to_owned());
        }
        if manifest.admin != old.admin {
            needs_restart.push("admin".to_owned());
        }
        for (name, config) in &manifest.apps {
            if let Some(store) = config
                .key_value_stores
                .iter()
                .find(|store| !self.shared.stores.contains_key(*store))
            {
                return Err(format!(
                    "app `{name}`: key_value_stores: the store `{store}` is not open in this process; new stores take effect at the next restart"
                ));
            }
        }
        // Build every new or changed app before touching anything.
        let current: BTreeMap<String, (AppConfig, Version, Option<Arc<Admission>>)> = {
            let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
            apps.iter()
                .map(|(name, d)| {
                    (
                        name.clone(),
                        (d.config.clone(), d.live.version.clone(), d.gate.clone()),
                    )
                })
                .collect()
        };
        let mut built = BTreeMap::new();
        let mut report = Reloaded::default();
        for (name, config) in &manifest.apps {
            let version = match current.get(name) {
                Some((live_config, _, _)) if live_config == config => continue,
                Some((live_config, live, _)) => {
                    report.changed.push(name.clone());
                    let path = if live_config.component == config.component {
                        live.path.clone()
                    } else {
                        config.component.clone()
                    };
                    Version {
                        number: live.number + 1,
                        sha256: live.sha256.clone(),
                        deployed_at: now(),
                        deployed: live.deployed && path == live.path,
                        path,
                    }
                }
                None => {
                    report.added.push(name.clone());
                    Version {
                        number: 1,
                        sha256: String::new(),
                        deployed_at: now(),
                        path: config.component.clone(),
                        deployed: false,
                    }
                }
            };
            let mut version = version;
            let bytes = std::fs::read(&version.path)
                .map_err(|e| format!("{}: cannot read component: {e}", version.path.display()))?;
            version.sha256 = sha256_hex(&bytes);
            let gate = match current.get(name) {
                Some((live_config, _, gate))
                    if live_config.max_instances == config.max_instances =>
                {
                    gate.clone()
                }
                _ => Admission::for_app(config, &self.server)
                    .map(|gate| Arc::new(gate.named(format!("app:{name}")))),
            };
            let app = self
                .load(name, config, version, gate.clone())
                .map_err(|e| format!("{}: {e}", config.component.display()))?;
            built.insert(name.clone(), (app, gate));
        }
        report.removed = current
            .keys()
            .filter(|name| !manifest.apps.contains_key(*name))
            .cloned()
            .collect();
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: BTreeMap<String, Deployed> = BTreeMap::new();
        let mut replaced = Vec::new();
        for (name, config) in &manifest.apps {
            // Copies: until the new table is known to be valid, `apps` stays
            // as it is.
            match (built.remove(name), apps.get(name).cloned()) {
                (None, Some(kept)) => {
                    next.insert(name.clone(), kept);
                }
                (Some((app, gate)), old) => {
                    let route_gates = config
                        .routes
                        .iter()
                        .zip(0..)
                        .map(|(route, i)| {
                            let kept = old.as_ref().and_then(|old| {
                                let same = old.config.routes.get(i) == Some(route);
                                same.then(|| old.route_gates[i].clone()).flatten()
                            });
                            kept.or_else(|| Target::gate(route, &self.server))
                        })
                        .collect();
                    let mut retiring = Vec::new();
                    let mut previous = None;
                    if let Some(old) = old {
                        retiring = old.retiring;
                        retiring.push(Arc::downgrade(&old.live));
                        previous = Some(old.live.version.clone());
                        replaced.push(old.live);
                    }
                    next.insert(
                        name.clone(),
                        Deployed {
                            config: config.clone(),
                            gate,
                            route_gates,
                            live: Arc::new(app),
                            previous,
                            retiring,
                        },
                    );
                }
                (None, None) => unreachable!("every app of the manifest is kept or built"),
            }
        }
        // Two apps on one route, say: refused, and nothing has changed.
        let table = router(&next)?;
        // The removed apps' versions stay alive while their instances run.
        replaced.extend(
            apps.iter()
                .filter(|(name, _)| !next.contains_key(*name))
                .map(|(_, d)| d.live.clone()),
        );
        self.routes.store(Arc::new(table));
        *apps = next;
        for (name, deployed) in apps.iter() {
            if report.changed.contains(name) || report.added.contains(name) {
                self.write_state(name, &deployed.live.version, deployed.previous.as_ref());
            }
        }
        drop(apps);
        drop(replaced);
        if let Some((certificate, key)) = certificate {
            certificate.replace(key);
            report.certificate_reloaded = true;
        }
        report.needs_restart = needs_restart;
        tracing::info!(
            added = ?report.added,
            changed = ?report.changed,
            removed = ?report.removed,
            "manifest reloaded"
        );
        for field in &report.needs_restart {
            tracing::warn!("{field} changed in the manifest: it takes effect at the next restart");
        }
        Ok(report)
    }

    /// The server's certificate, when it speaks HTTPS.
    pub fn certificate(&self) -> Option<Arc<Certificate>> {
        self.certificate.clone()
    }

    /// The route table, for the dispatcher.
    pub fn routes(&self) -> Routes {
        self.routes.clone()
    }

    fn folder(&self, app: &str) -> Option<PathBuf> {
        self.server
            .data_dir
            .as_ref()
            .map(|dir| dir.join("deployed").join(app))
    }

    fn read_state(&self, app: &str) -> Option<State> {
        let file = self.folder(app)?.join("state.json");
        let text = std::fs::read_to_string(&file).ok()?;
        match serde_json::from_str(&text) {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::warn!(app, "ignoring {}: {e}", file.display());
                None
            }
        }
    }

    fn write_state(&self, app: &str, live: &Version, previous: Option<&Version>) {
        let Some(folder) = self.folder(app) else {
            return;
        };
        let state = State {
            live: live.into(),
            previous: previous.map(StoredVersion::from),
        };
        let write = || -> std::io::Result<()> {
            let mut file = tempfile::NamedTempFile::new_in(&folder)?;
            serde_json::to_writer_pretty(&mut file, &state)?;
            file.as_file().sync_all()?;
            file.persist(folder.join("state.json"))?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(app, "cannot record the deploy in {}: {e}", folder.display());
        }
    }

    /// Compiles and links `version` of app `name`.
    fn load(
        &self,
        name: &str,
        config: &AppConfig,
        version: Version,
        gate: Option<Arc<Admission>>,
    ) -> Result<App, DeployError> {
        let (component, wasi) = self.cache.load(&self.engines, &version.path)?;
        App::new(name, config, &component, wasi, &self.shared, version, gate)
            .map_err(|e| DeployError::Unusable(link_message(&e)))
    }

    /// Deploys `bytes` as the new version of app `name`; the live version
    /// is untouched unless this succeeds.
    pub fn deploy(&self, name: &str, bytes: &[u8]) -> Result<AppStatus, DeployError> {
        let outcome = self.deploy_inner(name, bytes);
        crate::metrics::METRICS.deployed(name, "deploy", outcome.is_ok());
        self.prune(name);
        outcome
    }

    /// Removes the deployed components of app `name` that are neither live
    /// nor the previous version (older ones, and refused ones), so the data
    /// folder holds at most two.
    fn prune(&self, name: &str) {
        let Some(folder) = self.folder(name) else {
            return;
        };
        let keep: Vec<PathBuf> = {
            let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
            let Some(deployed) = apps.get(name) else {
                return;
            };
            std::iter::once(deployed.live.version.path.clone())
                .chain(deployed.previous.as_ref().map(|v| v.path.clone()))
                .collect()
        };
        let Ok(entries) = std::fs::read_dir(&folder) else {
            return;
        };
        for path in entries.filter_map(|entry| Some(entry.ok()?.path())) {
            if path.extension().is_some_and(|ext| ext == "wasm")
                && !keep.contains(&path)
                && let Err(e) = std::fs::remove_file(&path)
            {
                tracing::warn!(app = name, "cannot remove {}: {e}", path.display());
            }
        }
    }

    fn deploy_inner(&self, name: &str, bytes: &[u8]) -> Result<AppStatus, DeployError> {
        let _one_at_a_time = self.deploying.lock().unwrap_or_else(|e| e.into_inner());
        let (config, number) = self.with_app(name, |deployed| {
            let newest = deployed
                .live
                .version
                .number
                .max(deployed.previous.as_ref().map_or(0, |p| p.number));
            Ok((deployed.config.clone(), newest + 1))
        })?;
        crate::engine::check_component_header(bytes)
            .map_err(|what| DeployError::Unusable(format!("not a component: {what}")))?;
        let sha256 = sha256_hex(bytes);
        let path = match self.folder(name) {
            Some(folder) => {
                let path = folder.join(format!("{sha256}.wasm"));
                let write = || -> std::io::Result<()> {
                    std::fs::create_dir_all(&folder)?;
                    let mut file = tempfile::NamedTempFile::new_in(&folder)?;
                    std::io::Write::write_all(&mut file, bytes)?;
                    file.as_file().sync_all()?;
                    file.persist(&path)?;
                    Ok(())
                };
                write().map_err(|e| DeployError::Io(format!("{}: {e}", folder.display())))?;
                path
            }
            None => return Err(DeployError::Io("the host has no data folder".into())),
        };
        let version = Version {
            number,
            sha256,
            deployed_at: now(),
            path,
            deployed: true,
        };
        self.go_live(name, &config, version)
    }

    /// `read` of app `name`'s versions, under the apps' lock.
    fn with_app<R>(
        &self,
        name: &str,
        read: impl FnOnce(&Deployed) -> Result<R, DeployError>,
    ) -> Result<R, DeployError> {
        let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        let deployed = apps
            .get(name)
            .ok_or_else(|| DeployError::NoSuchApp(name.to_owned()))?;
        read(deployed)
    }

    /// Puts the previous version of app `name` back live.
    pub fn rollback(&self, name: &str) -> Result<AppStatus, DeployError> {
        let outcome = self.rollback_inner(name);
        crate::metrics::METRICS.deployed(name, "rollback", outcome.is_ok());
        outcome
    }

    fn rollback_inner(&self, name: &str) -> Result<AppStatus, DeployError> {
        let _one_at_a_time = self.deploying.lock().unwrap_or_else(|e| e.into_inner());
        let (config, previous) = self.with_app(name, |deployed| {
            let previous = deployed
                .previous
                .clone()
                .ok_or_else(|| DeployError::NoPrevious(name.to_owned()))?;
            Ok((deployed.config.clone(), previous))
        })?;
        let version = Version {
            deployed_at: now(),
            ..previous
        };
        self.go_live(name, &config, version)
    }

    fn go_live(
        &self,
        name: &str,
        config: &AppConfig,
        version: Version,
    ) -> Result<AppStatus, DeployError> {
        let gate = {
            let apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
            apps.get(name).and_then(|d| d.gate.clone())
        };
        let number = version.number;
        let app = Arc::new(self.load(name, config, version, gate)?);
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        let deployed = apps
            .get_mut(name)
            .ok_or_else(|| DeployError::NoSuchApp(name.to_owned()))?;
        let old = std::mem::replace(&mut deployed.live, app);
        deployed.previous = Some(old.version.clone());
        deployed.retiring.retain(|v| v.strong_count() > 0);
        deployed.retiring.push(Arc::downgrade(&old));
        let table = router(&apps).map_err(DeployError::Unusable)?;
        // The swap: every request routed from here on gets the new version.
        self.routes.store(Arc::new(table));
        let deployed = &apps[name];
        self.write_state(name, &deployed.live.version, deployed.previous.as_ref());
        tracing::info!(
            app = %name,
            version = number,
            replaced = old.version.number,
            sha256 = %deployed.live.version.sha256,
            "deployed: new requests go to version {number}; version {} finishes what it started",
            old.version.number
        );
        drop(old);
        Ok(status(name, deployed))
    }

    /// The metrics, with the live instances of each app (all its versions) read now.
    pub fn metrics(&self) -> String {
        let metrics = &crate::metrics::METRICS;
        for app in self.status() {
            let instances = app.live.instances.unwrap_or(0)
                + app
                    .retiring
                    .iter()
                    .filter_map(|v| v.instances)
                    .sum::<usize>();
            metrics
                .instances
                .get_or_create(&crate::metrics::App { app: app.name })
                .set(i64::try_from(instances).unwrap_or(i64::MAX));
        }
        metrics.encode()
    }

    /// Every app's status, by name.
    pub fn status(&self) -> Vec<AppStatus> {
        let mut apps = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        apps.iter_mut()
            .map(|(name, deployed)| {
                deployed.retiring.retain(|v| v.strong_count() > 0);
                status(name, deployed)
            })
            .collect()
    }
}

/// What a reload changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reloaded {
    /// Apps new in the manifest.
    pub added: Vec<String>,
    /// Apps whose settings changed: each has a new version.
    pub changed: Vec<String>,
    /// Apps no longer in the manifest.
    pub removed: Vec<String>,
    /// Settings that changed but only a restart can apply.
    pub needs_restart: Vec<String>,
    /// Whether the server's certificate was read again (HTTPS only).
    pub certificate_reloaded: bool,
}

/// The `[server]` fields that differ, named as in the manifest.
fn server_changes(old: &ServerConfig, new: &ServerConfig) -> Vec<String> {
    let table = |config: &ServerConfig| match toml::Value::try_from(config) {
        Ok(toml::Value::Table(table)) => table,
        _ => toml::Table::new(),
    };
    let (old, new) = (table(old), table(new));
    let fields: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    fields
        .into_iter()
        .filter(|field| old.get(*field) != new.get(*field))
        .map(|field| format!("server.{field}"))
        .collect()
}

/// The route table of the live versions.
fn router(apps: &BTreeMap<String, Deployed>) -> Result<Router<Target>, String> {
    let mut routes = Vec::new();
    for deployed in apps.values() {
        for (route, gate) in deployed.config.routes.iter().zip(&deployed.route_gates) {
            routes.push((
                route.pattern.clone(),
                Target::new(deployed.live.clone(), gate.clone()),
            ));
        }
        for (prefix, folder) in deployed.config.static_folders() {
            let files = crate::static_files::StaticFiles::new(prefix, folder)
                .map_err(|e| format!("static route `{prefix}/...`: {}: {e}", folder.display()))?;
            let pattern = crate::config::RoutePattern::Prefix(prefix.to_owned());
            routes.push((pattern, Target::files(deployed.live.clone(), files)));
        }
    }
    Router::new(routes)
}

/// An app as `GET /apps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AppStatus {
    /// The app's name.
    pub name: String,
    /// Its routes, as the manifest writes them.
    pub routes: Vec<String>,
    /// The live version.
    pub live: VersionStatus,
    /// The version a rollback would bring back.
    pub previous: Option<VersionStatus>,
    /// Replaced versions whose instances are still running.
    pub retiring: Vec<VersionStatus>,
}

/// One version as `GET /apps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    /// Its number.
    pub version: u64,
    /// The SHA-256 of its component, in hex.
    pub sha256: String,
    /// When it went live, RFC 3339.
    pub deployed_at: String,
    /// `manifest` (the manifest's component) or `deployed` (through the
    /// admin API, kept in the data folder).
    pub source: &'static str,
    /// Instances of it alive now (absent for a version not loaded).
    pub instances: Option<usize>,
}

fn version_status(version: &Version, instances: Option<usize>) -> VersionStatus {
    VersionStatus {
        version: version.number,
        sha256: version.sha256.clone(),
        deployed_at: rfc3339(version.deployed_at),
        source: if version.deployed {
            "deployed"
        } else {
            "manifest"
        },
        instances,
    }
}

fn status(name: &str, deployed: &Deployed) -> AppStatus {
    AppStatus {
        name: name.to_owned(),
        routes: deployed
            .config
            .routes
            .iter()
            .map(|r| r.pattern.to_string())
            .collect(),
        live: version_status(&deployed.live.version, Some(deployed.live.live_instances())),
        previous: deployed
            .previous
            .as_ref()
            .map(|version| version_status(version, None)),
        retiring: deployed
            .retiring
            .iter()
            .filter_map(Weak::upgrade)
            .map(|app| version_status(&app.version, Some(app.live_instances())))
            .collect(),
    }
}

/// `secs` since the Unix epoch as RFC 3339, in UTC.
fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_183_445), "2026-12-02T03:50:45Z");
    }
}
