//! Configuration: the `cyclone.toml` manifest and the settings it carries.
//!
//! A manifest names the apps to serve. Each app is one WebAssembly component and
//! the URL routes it answers; component paths are relative to the manifest's
//! folder. Every field is documented here and unknown fields are rejected.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"   # address to bind; `--listen` overrides it
//! max_instances = 1000        # instances alive at once, process-wide
//!
//! [apps.hello]
//! component = "hello.wasm"
//! routes = ["/..."]           # "/..." matches every path
//!
//! [apps.hello.variables]      # read by the guest (`cyclone_sdk::variables`)
//! greeting = "Hello"
//! cookie_secret = { env = "HELLO_COOKIE_SECRET" }               # from the host's environment
//! region = { env = "HELLO_REGION", default = "local" }         # ... with a fallback
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod route;

pub use route::{Route, RouteError, RoutePattern};

/// The default address the server binds.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The manifest file could not be read.
    #[error("{path}: cannot read manifest")]
    Read {
        /// The manifest's path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The manifest is not valid TOML or does not match the schema.
    #[error("{path}: invalid manifest: {message}")]
    Parse {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong, on one line.
        message: String,
    },
    /// The manifest parsed but its values do not make sense together.
    #[error("{path}: {message}")]
    Invalid {
        /// The manifest's path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A parsed manifest, with component paths resolved against its folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Process-wide server settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// The apps to serve, by name.
    #[serde(default)]
    pub apps: BTreeMap<String, AppConfig>,
}

/// Process-wide settings: the `[server]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind (default `127.0.0.1:8080`); `--listen` overrides it.
    pub listen: SocketAddr,
    /// Worker threads, each with its own event loop and listening socket;
    /// 0 (the default) means one per CPU core.
    pub workers: usize,
    /// Component instances alive at once, process-wide (default 1000). The
    /// instance pool is sized from this; requests past it wait in the queue.
    pub max_instances: u32,
    /// Requests allowed to wait for a free instance (default 1000). Past it a
    /// request is answered 503 with `Retry-After` at once.
    pub max_queued: usize,
    /// How long a queued request waits for an instance before 503, in
    /// milliseconds (default 1000).
    pub queue_timeout_ms: u64,
    /// On SIGINT/SIGTERM, how long in-flight requests may run before the
    /// process exits anyway, in seconds (default 10).
    pub drain_timeout_secs: u64,
    /// Largest request head (request line and headers) in KiB (default 64,
    /// at least 8). A bigger one is answered 431.
    pub max_header_kb: u64,
    /// How long a client may take to send a request head, in milliseconds
    /// (default 10000), counted from accept for a connection's first
    /// request; then the connection is closed.
    pub header_read_timeout_ms: u64,
    /// How long a kept-alive connection (HTTP/1.1 or HTTP/2) may sit with no
    /// request in flight before it is closed, in seconds (default 60).
    /// HTTP/2 peers are also pinged at half this interval and dropped when
    /// they do not answer within 20 s. An idle HTTP/1.1 connection is
    /// closed sooner, after `header_read_timeout_ms`, since waiting for the
    /// next request is waiting for its head.
    pub idle_timeout_secs: u64,
    /// How long the host waits for the next bytes of a request body it is
    /// reading, in milliseconds (default 10000); past it the client gets 408.
    pub body_read_timeout_ms: u64,
    /// Request bodies the host may hold in memory at once, all requests
    /// together, in KiB (default 262144, 256 MiB). A body is read whole
    /// before the guest's instance is taken; when the bodies already read
    /// fill this, a new one waits up to `queue_timeout_ms` for room, then
    /// gets 503 with `Retry-After`.
    pub max_buffered_body_kb: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            workers: 0,
            max_instances: 1000,
            max_queued: 1000,
            queue_timeout_ms: 1000,
            drain_timeout_secs: 10,
            max_header_kb: 64,
            header_read_timeout_ms: 10_000,
            idle_timeout_secs: 60,
            body_read_timeout_ms: 10_000,
            max_buffered_body_kb: 256 * 1024,
        }
    }
}

impl ServerConfig {
    /// Worker threads to run: `workers`, or the CPU count when it is 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The queue wait as a `Duration`.
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }

    /// The drain timeout as a `Duration`.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    /// The request head cap in bytes.
    pub fn max_header_bytes(&self) -> usize {
        kib(self.max_header_kb)
    }

    /// The header read timeout as a `Duration`.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The idle timeout as a `Duration`.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The body read timeout as a `Duration`.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }
}

fn kib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 10)).unwrap_or(usize::MAX)
}

/// One app: a component and the routes it answers. An `[apps.NAME]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Path of the component (`.wasm`), relative to the manifest's folder.
    pub component: PathBuf,
    /// URL paths this app answers: `/exact/path`, or a prefix ending in
    /// `/...` (`/api/...` matches `/api` and everything below it; `/...`
    /// matches every path). See [`crate::router`] for precedence. An entry
    /// may cap the instances its requests hold at once:
    /// `{ route = "/poll", max_instances = 900 }`, so that requests that
    /// wait long cannot take every instance from quick ones.
    pub routes: Vec<Route>,
    /// Variables the app's guest can read, by name (lowercase ASCII letters,
    /// digits and `_`, starting with a letter). A value is a string, or
    /// `{ env = "NAME" }` to take it from the host's environment at start-up
    /// (`{ env = "NAME", default = "..." }` when it may be unset). After
    /// [`Manifest::load`] every value is a [`Variable::Value`].
    #[serde(default)]
    pub variables: BTreeMap<String, Variable>,
    /// Where the app's guest may send HTTP requests: `scheme://host[:port]`
    /// patterns, e.g. `"https://api.example.com"`, `"http://*.internal:8080"`,
    /// `"http://127.0.0.1:*"`. Default: nowhere. Loopback, private and
    /// link-local addresses are reached only through an entry naming them
    /// literally (`localhost` or the IP), whatever a name resolves to.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Host folders the guest may read, by the path it sees them at:
    /// `files = { "/static" = "public" }` (host folders relative to the
    /// manifest's folder). Read-only. Default: none, the guest sees no files.
    #[serde(default)]
    pub files: BTreeMap<String, PathBuf>,
    /// Environment variables the guest sees (`std::env::var`). Default: none;
    /// the host's own environment is never passed through.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
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
    pub fn pubsub_buffer() -> usize {
        256
    }
    pub fn max_log_lines_per_sec() -> u32 {
        100
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
            allowed_outbound_hosts: Vec::new(),
            files: BTreeMap::new(),
            environment: BTreeMap::new(),
            max_instances: None,
            cpu_budget_ms: defaults::cpu_budget_ms(),
            timeout_ms: defaults::timeout_ms(),
            max_memory_mb: defaults::max_memory_mb(),
            max_body_kb: defaults::max_body_kb(),
            stream_request_body: false,
            websocket_max_message_kb: defaults::websocket_max_message_kb(),
            websocket_allowed_origins: Vec::new(),
            websocket_ping_secs: defaults::websocket_ping_secs(),
            max_log_lines_per_sec: defaults::max_log_lines_per_sec(),
            pubsub_history: 0,
            pubsub_buffer: defaults::pubsub_buffer(),
        }
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

    /// The app's variables as plain values (call after [`Manifest::load`],
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
    fn resolve_variables(
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

impl Manifest {
    /// Reads and validates the manifest at `path`, resolving component paths
    /// against its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| e.at(path))
    }

    /// Parses manifest text; component paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        Self::parse_with_env(text, base, &|key| std::env::var(key).ok())
    }

    /// [`Manifest::parse`] with `env` standing in for the process environment.
    fn parse_with_env(
        text: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut manifest: Manifest = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: one_line(&e, text),
        })?;
        if manifest.apps.is_empty() {
            return Err(invalid(
                "no apps: add an [apps.NAME] table with `component` and `routes`",
            ));
        }
        for (name, app) in &mut manifest.apps {
            if app.routes.is_empty() {
                return Err(invalid(format!("app `{name}` has no routes")));
            }
            app.component = base.join(&app.component);
            app.resolve_variables(name, env)?;
            for (guest, host) in &mut app.files {
                if !guest.starts_with('/') {
                    return Err(invalid(format!(
                        "app `{name}`: files: the guest path `{guest}` must start with `/`"
                    )));
                }
                *host = base.join(&*host);
                if !host.is_dir() {
                    return Err(invalid(format!(
                        "app `{name}`: files: `{guest}` = {} is not a folder",
                        host.display()
                    )));
                }
            }
            crate::capabilities::AllowedHosts::parse(&app.allowed_outbound_hosts)
                .map_err(|e| invalid(format!("app `{name}`: allowed_outbound_hosts: {e}")))?;
            if app.websocket_max_message_kb == 0 || app.pubsub_buffer == 0 {
                return Err(invalid(format!(
                    "app `{name}`: websocket_max_message_kb and pubsub_buffer must be at least 1"
                )));
            }
            if app.max_instances == Some(0)
                || app.cpu_budget_ms == 0
                || app.max_memory_mb == 0
                || app.max_log_lines_per_sec == 0
            {
                return Err(invalid(format!(
                    "app `{name}`: max_instances, cpu_budget_ms, max_memory_mb and max_log_lines_per_sec must be at least 1"
                )));
            }
        }
        if manifest.server.max_instances == 0 {
            return Err(invalid("server.max_instances must be at least 1"));
        }
        let server = &manifest.server;
        if server.body_read_timeout_ms == 0
            || server.max_buffered_body_kb == 0
            || server.idle_timeout_secs == 0
        {
            return Err(invalid(
                "server.idle_timeout_secs, body_read_timeout_ms and max_buffered_body_kb must be at least 1",
            ));
        }
        if manifest.server.max_header_kb < 8 {
            return Err(invalid("server.max_header_kb must be at least 8"));
        }
        Ok(manifest)
    }

    /// The largest memory cap of any app: the size of the pool's memory slots.
    pub fn max_memory_bytes(&self) -> usize {
        self.apps
            .values()
            .map(AppConfig::max_memory_bytes)
            .max()
            .unwrap_or_else(|| AppConfig::new(PathBuf::new(), Vec::new()).max_memory_bytes())
    }

    /// A manifest serving one component at every path, for `cyclone serve x.wasm`.
    pub fn single_component(component: &Path) -> Self {
        let name = component
            .file_stem()
            .map_or_else(|| "app".to_owned(), |s| s.to_string_lossy().into_owned());
        Self {
            server: ServerConfig::default(),
            apps: BTreeMap::from([(
                name,
                AppConfig::new(
                    component.to_owned(),
                    vec![Route::new(RoutePattern::Prefix(String::new()))],
                ),
            )]),
        }
    }
}

impl ConfigError {
    fn at(self, path: &Path) -> Self {
        let path = path.to_owned();
        match self {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path, message },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid { path, message },
            other => other,
        }
    }
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: PathBuf::new(),
        message: message.into(),
    }
}

/// TOML errors span several lines (with a source excerpt); keep the message
/// and its line and column on one line.
fn one_line(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_manifest_and_resolves_paths() {
        let m = Manifest::parse(
            "[apps.hello]\ncomponent = \"hello.wasm\"\nroutes = [\"/...\"]\n",
            Path::new("/srv/site"),
        )
        .unwrap();
        assert_eq!(m.apps["hello"].component, Path::new("/srv/site/hello.wasm"));
        assert_eq!(m.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(m.server.max_instances, 1000);
    }

    #[test]
    fn rejects_unknown_fields() {
        let err = Manifest::parse(
            "[apps.hello]\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\nroute = \"/x\"\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `route`"), "{err}");
        assert!(err.to_string().contains("(line 4, column 1)"), "{err}");
    }

    #[test]
    fn rejects_empty_manifest_and_bad_routes() {
        assert!(Manifest::parse("", Path::new(".")).is_err());
        let err = Manifest::parse(
            "[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"nope\"]\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.to_string().contains("must start with `/`"), "{err}");
    }

    #[test]
    fn variables_are_literal_or_from_the_environment() {
        let text = "[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n[apps.a.variables]\n\
            greeting = \"hi\"\nsecret = { env = \"A_SECRET\" }\n\
            region = { env = \"A_REGION\", default = \"local\" }\n";
        let env = |key: &str| (key == "A_SECRET").then(|| "s3cret".to_owned());
        let m = Manifest::parse_with_env(text, Path::new("."), &env).unwrap();
        let values = m.apps["a"].variable_values();
        assert_eq!(values["greeting"], "hi");
        assert_eq!(values["secret"], "s3cret");
        assert_eq!(values["region"], "local");

        let err = Manifest::parse_with_env(text, Path::new("."), &|_| None).unwrap_err();
        assert!(
            err.to_string().contains(
                "variable `secret` comes from the environment variable `A_SECRET`, which is not set"
            ),
            "{err}"
        );
        let bad = "[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n[apps.a.variables]\nBad-Name = \"x\"\n";
        let err = Manifest::parse_with_env(bad, Path::new("."), &|_| None).unwrap_err();
        assert!(err.to_string().contains("variable `Bad-Name`"), "{err}");
        let unknown = "[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n[apps.a.variables]\nx = { envv = \"X\" }\n";
        assert!(Manifest::parse_with_env(unknown, Path::new("."), &|_| None).is_err());
    }

    #[test]
    fn granted_folders_need_an_absolute_guest_path_and_an_existing_folder() {
        let here = std::env::current_dir().unwrap();
        let app = |files: &str| {
            format!("[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\nfiles = {{ {files} }}\n")
        };
        let m = Manifest::parse(&app("\"/src\" = \"src\""), &here).unwrap();
        assert_eq!(m.apps["a"].files["/src"], here.join("src"));
        let relative = Manifest::parse(&app("\"src\" = \"src\""), &here).unwrap_err();
        assert!(
            relative.to_string().contains("must start with `/`"),
            "{relative}"
        );
        let missing = Manifest::parse(&app("\"/x\" = \"no-such-folder\""), &here).unwrap_err();
        assert!(missing.to_string().contains("is not a folder"), "{missing}");
    }

    #[test]
    fn a_route_may_carry_its_own_instance_cap() {
        let m = Manifest::parse(
            "[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"/...\", { route = \"/poll\", max_instances = 9 }]\n",
            Path::new("."),
        )
        .unwrap();
        let routes = &m.apps["a"].routes;
        assert_eq!(routes[0], Route::new(RoutePattern::Prefix(String::new())));
        assert_eq!(routes[1].pattern, RoutePattern::Exact("/poll".into()));
        assert_eq!(routes[1].max_instances, Some(9));
        for (bad, why) in [
            (
                "{ route = \"/p\", max_instances = 0 }",
                "max_instances must be at least 1",
            ),
            (
                "{ route = \"p\", max_instances = 3 }",
                "must start with `/`",
            ),
            ("{ route = \"/p\", max = 3 }", "a route:"),
            ("7", "a route:"),
        ] {
            let err = Manifest::parse(
                &format!("[apps.a]\ncomponent = \"a.wasm\"\nroutes = [{bad}]\n"),
                Path::new("."),
            )
            .unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn server_settings_override_defaults() {
        let m = Manifest::parse(
            "[server]\nlisten = \"0.0.0.0:9000\"\nworkers = 3\n[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n",
            Path::new("."),
        )
        .unwrap();
        assert_eq!(m.server.listen.port(), 9000);
        assert_eq!(m.server.worker_count(), 3);
    }
}
