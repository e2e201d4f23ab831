//! An `[apps.NAME]` table: one app's component, routes, grants and limits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::server::kib;
use super::{AllowedHosts, ConfigError, Route, invalid};

/// One app: a component and the routes it answers. An `[apps.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Path of the component (`.wasm`), relative to the manifest's folder.
    pub component: PathBuf,
    /// URL paths this app answers: `/exact/path`, or a prefix ending in
    /// `/...` (`/api/...` matches `/api` and everything below it; `/...`
    /// matches every path): an exact route beats any prefix, and the longest
    /// prefix wins. An entry
    /// may cap the instances its requests hold at once:
    /// `{ route = "/poll", max_instances = 900 }`, so that requests that
    /// wait long cannot take every instance from quick ones.
    pub routes: Vec<Route>,
    /// Variables the app's guest can read, by name (lowercase ASCII letters,
    /// digits and `_`, starting with a letter). A value is a string, or
    /// `{ env = "NAME" }` to take it from the host's environment at start-up
    /// (`{ env = "NAME", default = "..." }` when it may be unset). After
    /// [`Manifest::load`](super::Manifest::load) every value is a [`Variable::Value`].
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    /// Where the app's guest may send HTTP requests: `scheme://host[:port]`
    /// patterns, e.g. `"https://api.example.com"`, `"http://*.internal:8080"`,
    /// `"http://127.0.0.1:*"`. Default: nowhere. Loopback, private and
    /// link-local addresses are reached only through an entry naming them
    /// literally (`localhost` or the IP), whatever a name resolves to.
    #[serde(default)]
    pub allowed_outbound_hosts: AllowedHosts,
    /// Host folders the guest may read, by the path it sees them at:
    /// `files = { "/static" = "public" }` (host folders relative to the
    /// manifest's folder). Read-only. Default: none, the guest sees no files.
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    /// Folders the host serves as static files, without running the guest:
    /// `static = { "/static/..." = "public" }` (prefix routes, folders
    /// relative to the manifest's folder). Default: none.
    #[serde(default, rename = "static")]
    pub static_files: BTreeMap<String, PathBuf>,
    /// Environment variables the guest sees (`std::env::var`). Default: none;
    /// the host's own environment is never passed through.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// The key-value stores the guest may open, by name (default: none).
    /// `"default"` is an SQLite store in `server.data_dir` unless a
    /// `[key_value.default]` table says otherwise; any other name needs its
    /// `[key_value.NAME]` table. A store granted to several apps is shared
    /// by them: they see each other's keys.
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// Instances of this app alive at once (default: `server.max_instances`).
    /// Requests past it wait in the queue, then get 503.
    pub max_instances: Option<u32>,
    /// CPU time one request's guest may use, in milliseconds (default 5000);
    /// past it the instance is stopped and the client gets 503.
    #[serde(default = "defaults::cpu_budget_ms")]
    pub cpu_budget_ms: u64,
    /// Wall-clock time one request's guest may take, in milliseconds (default
    /// 60000; 0 for no limit); past it the instance is stopped and the client
    /// gets 504 (or, once the response has started, a cut connection).
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Largest linear memory one instance may grow to, in MiB (default 128);
    /// an allocation past it fails inside the guest (a Rust guest then aborts:
    /// 500).
    #[serde(default = "defaults::max_memory_mb")]
    pub max_memory_mb: u64,
    /// Largest request body, in KiB (default 10240); a bigger one is answered
    /// 413 without running the guest.
    #[serde(default = "defaults::max_body_kb")]
    pub max_body_kb: u64,
    /// Hand the request body to the guest as it arrives instead of reading
    /// it whole first (default false). For large uploads the guest handles
    /// piece by piece; the price is that the instance is taken before the
    /// body arrives, so slow uploads hold instances (bound them with this
    /// app's `max_instances`).
    #[serde(default)]
    pub stream_request_body: bool,
    /// Largest websocket message the peer may send, in KiB (default 10240);
    /// a bigger one closes the session with 1009.
    #[serde(default = "defaults::websocket_max_message_kb")]
    pub websocket_max_message_kb: u64,
    /// Origins besides the request's own host whose pages may open websocket
    /// sessions, e.g. `["https://app.example.com"]`, or `["*"]` for any
    /// (default: none). A handshake from another origin gets 403; a client
    /// that sends no `Origin` (not a browser) is let through.
    #[serde(default)]
    pub websocket_allowed_origins: Vec<String>,
    /// Seconds between the host's pings on an idle websocket session (default
    /// 30; 0 for none). A peer silent for two intervals is disconnected.
    #[serde(default = "defaults::websocket_ping_secs")]
    pub websocket_ping_secs: u64,
    /// Websocket sessions, live and hibernating, one version of the app may
    /// have open at once (default 10000); a handshake past it gets 503
    /// before any instance is taken. Live sessions are also bounded by
    /// `max_instances`; hibernating ones hold none, so this bounds them.
    #[serde(default = "defaults::websocket_max_sessions")]
    pub websocket_max_sessions: u32,
    /// Lines of stdout and stderr one instance may log a second, with a
    /// burst of as many (default 100). Lines past it are dropped and
    /// counted in the log; a line is cut at 4 KiB.
    #[serde(default = "defaults::max_log_lines_per_sec")]
    pub max_log_lines_per_sec: u32,
    /// Messages each pub/sub topic keeps for `recent` (default 0).
    #[serde(default)]
    pub pubsub_history: usize,
    /// Messages a subscriber may fall behind before it is told it lagged
    /// (default 256).
    #[serde(default = "defaults::pubsub_buffer")]
    pub pubsub_buffer: usize,
    /// How `cyclone build` and `cyclone up` make the component: a shell
    /// command run in the manifest's folder, or `{ command = "…", workdir =
    /// "…", watch = ["src", "Cargo.toml"] }`. Default, when the manifest's
    /// folder holds a `Cargo.toml`: `cargo build --profile guest --target
    /// wasm32-wasip2` there; otherwise the component is used as it is.
    /// `cyclone up --watch` rebuilds when a file under `watch` changes
    /// (default: the working folder, but for `target` and hidden folders).
    /// The host's `serve` ignores it.
    #[serde(default)]
    pub build: Option<Build>,
    /// Let one instance of a WASI 0.3 component serve several requests:
    /// `instance_reuse = { max_requests = 128, max_concurrent = 16,
    /// idle_timeout_ms = 1000 }` (each field optional, these are the
    /// defaults). Absent (the default): a fresh instance per request.
    /// Reuse gives up isolation between requests: what one request leaves
    /// in the instance's memory, the next can read, and a trap fails every
    /// request inside the instance. WASI 0.2 components always get a fresh
    /// instance.
    #[serde(default)]
    pub instance_reuse: Option<InstanceReuse>,
    /// Idle outbound connections the app keeps for its next requests to the
    /// same upstream: `outbound_pool = { max_idle = 128, idle_timeout_ms =
    /// 15000 }` (each field optional, these are the defaults; `max_idle =
    /// 0` opens a new connection for every request).
    #[serde(default)]
    pub outbound_pool: OutboundPool,
}

/// `[apps.NAME] outbound_pool`: how many idle outbound connections an app
/// keeps, and for how long. The pool is the app's own: no other app's
/// requests use its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundPool {
    /// Idle connections kept, over all upstreams (default 128; 0 keeps none).
    #[serde(default = "defaults::pool_max_idle")]
    pub max_idle: usize,
    /// How long a connection may stay idle before it is closed, in
    /// milliseconds (default 15000).
    #[serde(default = "defaults::pool_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

impl Default for OutboundPool {
    fn default() -> Self {
        Self {
            max_idle: defaults::pool_max_idle(),
            idle_timeout_ms: defaults::pool_idle_timeout_ms(),
        }
    }
}

impl OutboundPool {
    /// How long an idle connection is kept.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

/// `[apps.NAME] instance_reuse`: how long one WASI 0.3 instance lives and
/// how much it takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceReuse {
    /// Requests one instance serves before it retires (default 128).
    #[serde(default = "defaults::reuse_max_requests")]
    pub max_requests: u32,
    /// Requests one instance serves at once (default 16). Each may hold a
    /// fiber stack of the pool, so such an instance counts as
    /// [`InstanceReuse::pool_slots`] of `server.max_instances`.
    #[serde(default = "defaults::reuse_max_concurrent")]
    pub max_concurrent: u32,
    /// How long an instance with no request waits for one before it ends,
    /// in milliseconds (default 1000).
    #[serde(default = "defaults::reuse_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

impl InstanceReuse {
    /// How long an idle instance lives.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// Slots of `server.max_instances` one such instance takes: as many as
    /// cover the fiber stacks it may hold (one per request in flight and
    /// the instance's own two; a slot of the WASI 0.3 pool brings
    /// [`Wasi::stacks_per_instance`](crate::engine::Wasi::stacks_per_instance)),
    /// so that requests that stop mid-call in one instance cannot take the
    /// stacks other instances need. 6 by default.
    pub fn pool_slots(&self) -> u32 {
        (self.max_concurrent.saturating_add(2))
            .div_ceil(crate::engine::Wasi::P3.stacks_per_instance())
    }
}

/// `[apps.NAME] build`: how to make the component.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Build {
    /// A shell command run in the manifest's folder.
    Command(String),
    /// A command with its working folder and the files that trigger a rebuild.
    Table {
        /// The shell command.
        command: String,
        /// Where it runs, relative to the manifest's folder (default: that folder).
        workdir: Option<PathBuf>,
        /// Files and folders whose changes trigger a rebuild under `cyclone
        /// up --watch`, relative to `workdir` (default: all of `workdir`
        /// but `target` and hidden folders).
        #[serde(default)]
        watch: Vec<PathBuf>,
    },
}

/// Defaults of per-app fields.
mod defaults {
    pub fn cpu_budget_ms() -> u64 {
        5_000
    }
    pub fn timeout_ms() -> u64 {
        60_000
    }
    pub fn max_memory_mb() -> u64 {
        128
    }
    pub fn max_body_kb() -> u64 {
        10 * 1024
    }
    pub fn websocket_max_message_kb() -> u64 {
        10 * 1024
    }
    pub fn websocket_ping_secs() -> u64 {
        30
    }
    pub fn websocket_max_sessions() -> u32 {
        10_000
    }
    pub fn pubsub_buffer() -> usize {
        256
    }
    pub fn max_log_lines_per_sec() -> u32 {
        100
    }
    pub fn reuse_max_requests() -> u32 {
        128
    }
    pub fn reuse_max_concurrent() -> u32 {
        16
    }
    pub fn reuse_idle_timeout_ms() -> u64 {
        1_000
    }
    pub fn pool_max_idle() -> usize {
        128
    }
    pub fn pool_idle_timeout_ms() -> u64 {
        15_000
    }
}

/// One app variable in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Variable {
    /// A literal value.
    Value(String),
    /// A value read from the host's environment when the manifest loads.
    Env {
        /// The environment variable to read.
        env: String,
        /// The value when the environment variable is unset.
        default: Option<String>,
    },
}

impl AppConfig {
    /// An app serving `component` at `routes`, every other field at its default.
    pub fn new(component: PathBuf, routes: Vec<Route>) -> Self {
        Self {
            component,
            routes,
            variables: BTreeMap::new(),
            allowed_outbound_hosts: AllowedHosts::default(),
            files: BTreeMap::new(),
            static_files: BTreeMap::new(),
            environment: BTreeMap::new(),
            key_value_stores: Vec::new(),
            max_instances: None,
            cpu_budget_ms: defaults::cpu_budget_ms(),
            timeout_ms: defaults::timeout_ms(),
            max_memory_mb: defaults::max_memory_mb(),
            max_body_kb: defaults::max_body_kb(),
            stream_request_body: false,
            websocket_max_message_kb: defaults::websocket_max_message_kb(),
            websocket_allowed_origins: Vec::new(),
            websocket_ping_secs: defaults::websocket_ping_secs(),
            websocket_max_sessions: defaults::websocket_max_sessions(),
            max_log_lines_per_sec: defaults::max_log_lines_per_sec(),
            pubsub_history: 0,
            pubsub_buffer: defaults::pubsub_buffer(),
            build: None,
            instance_reuse: None,
            outbound_pool: OutboundPool::default(),
        }
    }

    /// The `static` table as route prefixes (without `/...`) and folders;
    /// loading the manifest has checked every route is a prefix route.
    pub fn static_folders(&self) -> impl Iterator<Item = (&str, &std::path::Path)> {
        self.static_files
            .iter()
            .filter_map(|(route, folder)| Some((route.strip_suffix("/...")?, folder.as_path())))
    }

    /// The CPU budget as a `Duration`.
    pub fn cpu_budget(&self) -> Duration {
        Duration::from_millis(self.cpu_budget_ms)
    }

    /// The wall-clock timeout, `None` when unlimited.
    pub fn timeout(&self) -> Option<Duration> {
        (self.timeout_ms > 0).then(|| Duration::from_millis(self.timeout_ms))
    }

    /// The memory cap in bytes.
    pub fn max_memory_bytes(&self) -> usize {
        usize::try_from(self.max_memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// The body cap in bytes.
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_kb.saturating_mul(1 << 10)
    }

    /// The websocket message cap in bytes.
    pub fn websocket_max_message_bytes(&self) -> usize {
        kib(self.websocket_max_message_kb)
    }

    /// The interval between websocket pings, `None` when off.
    pub fn websocket_ping(&self) -> Option<Duration> {
        (self.websocket_ping_secs > 0).then(|| Duration::from_secs(self.websocket_ping_secs))
    }

    /// The app's variables as plain values (call after [`Manifest::load`](super::Manifest::load),
    /// which resolves `env` entries).
    pub fn variable_values(&self) -> BTreeMap<String, String> {
        self.variables
            .iter()
            .filter_map(|(name, value)| match value {
                Variable::Value(value) => Some((name.clone(), value.clone())),
                Variable::Env { .. } => None,
            })
            .collect()
    }

    /// Checks variable names and replaces `env` entries by their values.
    pub(super) fn resolve_variables(
        &mut self,
        app: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (name, value) in &mut self.variables {
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(invalid(format!(
                    "app `{app}`: variable `{name}`: names are lowercase letters, digits and `_`, starting with a letter"
                )));
            }
            if let Variable::Env { env: key, default } = value {
                let resolved = env(key).or_else(|| default.clone()).ok_or_else(|| {
                    invalid(format!(
                        "app `{app}`: variable `{name}` comes from the environment variable `{key}`, which is not set"
                    ))
                })?;
                *value = Variable::Value(resolved);
            }
        }
        Ok(())
    }
}
