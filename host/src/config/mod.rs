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
//!
//! Key-value stores and the pub/sub backend are top-level tables; an app
//! opens only the stores its `key_value_stores` lists (see [`StoreConfig`]
//! and [`PubSubConfig`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod admin;
mod allowed_hosts;
mod app;
mod route;
mod server;
mod state;

pub use admin::AdminConfig;
pub use allowed_hosts::AllowedHosts;
pub use app::{AppConfig, Build, InstanceReuse, OutboundPool, Variable};
pub use route::{Route, RouteError, RoutePattern};
pub use server::{ServerConfig, TlsFiles};
pub use state::{DEFAULT_STORE, PubSubBackend, PubSubConfig, StoreBackend, StoreConfig};

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
    /// Key-value stores, by name; apps reach those their
    /// `key_value_stores` grant. After loading it holds every granted store,
    /// `default` included when granted and not defined.
    #[serde(default)]
    pub key_value: BTreeMap<String, StoreConfig>,
    /// Where pub/sub messages travel.
    #[serde(default)]
    pub pubsub: PubSubConfig,
    /// The admin API (deploys, rollbacks), off unless it has an address.
    #[serde(default)]
    pub admin: AdminConfig,
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
        let data_dir = base.join(
            manifest
                .server
                .data_dir
                .as_deref()
                .unwrap_or(Path::new(server::DEFAULT_DATA_DIR)),
        );
        manifest.server.data_dir = Some(data_dir.clone());
        if let Some(tls) = &mut manifest.server.tls {
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
        }
        for (name, store) in &mut manifest.key_value {
            state::check_store_name(name)?;
            store.resolve(name, base, &data_dir, env)?;
        }
        manifest.pubsub.resolve(env)?;
        manifest.admin.resolve(env)?;
        for (name, app) in &mut manifest.apps {
            for store in &app.key_value_stores {
                if store == DEFAULT_STORE {
                    manifest.key_value.entry(store.clone()).or_insert_with(|| {
                        StoreConfig::sqlite(data_dir.join(format!("{DEFAULT_STORE}.sqlite")))
                    });
                } else if !manifest.key_value.contains_key(store) {
                    return Err(invalid(format!(
                        "app `{name}`: key_value_stores: no store `{store}`; define it in a [key_value.{store}] table"
                    )));
                }
            }
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
            for (route, folder) in &mut app.static_files {
                if !matches!(RoutePattern::parse(route), Ok(RoutePattern::Prefix(_))) {
                    return Err(invalid(format!(
                        "app `{name}`: static: `{route}` must be a prefix route such as \"/static/...\""
                    )));
                }
                *folder = base.join(&*folder);
                if !folder.is_dir() {
                    return Err(invalid(format!(
                        "app `{name}`: static: `{route}` = {} is not a folder",
                        folder.display()
                    )));
                }
            }
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
            if let Some(reuse) = &app.instance_reuse
                && (reuse.max_requests == 0 || reuse.max_concurrent == 0)
            {
                return Err(invalid(format!(
                    "app `{name}`: instance_reuse: max_requests and max_concurrent must be at least 1"
                )));
            }
        }
        let mut files = BTreeMap::new();
        for (name, store) in &manifest.key_value {
            if let Some(path) = &store.path
                && let Some(other) = files.insert(path.clone(), name)
            {
                return Err(invalid(format!(
                    "key_value.{other} and key_value.{name} use the same file {}; give each store its own",
                    path.display()
                )));
            }
        }
        if manifest.server.max_instances == 0 {
            return Err(invalid("server.max_instances must be at least 1"));
        }
        let server = &manifest.server;
        for (name, app) in &manifest.apps {
            if let Some(reuse) = &app.instance_reuse
                && reuse.pool_slots() > server.max_instances
            {
                return Err(invalid(format!(
                    "app `{name}`: instance_reuse: an instance taking max_concurrent = {} requests \
                     counts as {} of server.max_instances = {}: lower max_concurrent or raise max_instances",
                    reuse.max_concurrent,
                    reuse.pool_slots(),
                    server.max_instances
                )));
            }
        }
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
            key_value: BTreeMap::new(),
            pubsub: PubSubConfig::default(),
            admin: AdminConfig::default(),
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
    fn a_reused_instance_counts_as_the_pool_slots_its_stacks_need() {
        let parse = |server: u32, reuse: &str| {
            Manifest::parse(
                &format!(
                    "[server]\nmax_instances = {server}\n[apps.a]\ncomponent = \"a.wasm\"\n\
                     routes = [\"/\"]\ninstance_reuse = {{ {reuse} }}\n"
                ),
                Path::new("."),
            )
        };
        let m = parse(6, "").unwrap();
        assert_eq!(m.apps["a"].instance_reuse.unwrap().pool_slots(), 6);
        let m = parse(3, "max_concurrent = 7").unwrap();
        assert_eq!(m.apps["a"].instance_reuse.unwrap().pool_slots(), 3);
        assert_eq!(
            parse(1, "max_concurrent = 1").unwrap().apps["a"]
                .instance_reuse
                .unwrap()
                .pool_slots(),
            1
        );
        let err = parse(5, "").unwrap_err().to_string();
        assert!(
            err.contains("counts as 6 of server.max_instances = 5"),
            "{err}"
        );
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
