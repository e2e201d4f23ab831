//! State that outlives a request: the `[key_value.NAME]` stores and the
//! `[pubsub]` backend.
//!
//! ```toml
//! [key_value.default]             # optional: `default` is SQLite in data_dir
//! backend = "sqlite"
//! path = "data/default.sqlite"    # relative to the manifest's folder
//!
//! [key_value.shared]
//! backend = "redis"
//! url = { env = "CYCLONE_REDIS_URL", default = "redis://127.0.0.1:6379" }
//! max_value_kb = 64
//!
//! [pubsub]
//! backend = "redis"               # or "memory", the default
//! url = { env = "CYCLONE_REDIS_URL", default = "redis://127.0.0.1:6379" }
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::server::kib;
use super::{ConfigError, Variable, invalid};

/// The store every app may be granted without defining it.
pub const DEFAULT_STORE: &str = "default";

/// Where a store keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// An SQLite file on this machine, for one host process.
    Sqlite,
    /// A Redis server, shared by every host that names it.
    Redis,
}

/// One key-value store: a `[key_value.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `"sqlite"` or `"redis"`.
    pub backend: StoreBackend,
    /// SQLite: the database file, relative to the manifest's folder
    /// (default `NAME.sqlite` in `server.data_dir`). After
    /// [`Manifest::load`](super::Manifest::load) it is set and absolute.
    pub path: Option<PathBuf>,
    /// Redis: the server's URL, `redis://[:password@]host[:port][/db]`, or
    /// `{ env = "NAME", default = "..." }` to read it from the environment.
    /// After loading it is a [`Variable::Value`].
    pub url: Option<Variable>,
    /// The largest value, in KiB (default 1024); a bigger one is refused
    /// with `too-large`.
    #[serde(default = "default_max_value_kb")]
    pub max_value_kb: u64,
}

fn default_max_value_kb() -> u64 {
    1024
}

impl StoreConfig {
    /// An SQLite store in `path`, every other field at its default.
    pub fn sqlite(path: PathBuf) -> Self {
        Self {
            backend: StoreBackend::Sqlite,
            path: Some(path),
            url: None,
            max_value_kb: default_max_value_kb(),
        }
    }

    /// The value cap in bytes.
    pub fn max_value_bytes(&self) -> usize {
        kib(self.max_value_kb)
    }

    /// The Redis URL, once loaded.
    pub fn redis_url(&self) -> Option<&str> {
        match &self.url {
            Some(Variable::Value(url)) => Some(url),
            _ => None,
        }
    }

    /// Checks the fields for `backend`, resolves the path against `base` (or
    /// `data_dir`) and the URL from the environment.
    pub(super) fn resolve(
        &mut self,
        name: &str,
        base: &Path,
        data_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let field = format!("key_value.{name}");
        if self.max_value_kb == 0 {
            return Err(invalid(format!("{field}.max_value_kb must be at least 1")));
        }
        match self.backend {
            StoreBackend::Sqlite => {
                if self.url.is_some() {
                    return Err(invalid(format!(
                        "{field}.url: an sqlite store has a `path`, not a `url`"
                    )));
                }
                self.path = Some(match &self.path {
                    Some(path) => base.join(path),
                    None => data_dir.join(format!("{name}.sqlite")),
                });
            }
            StoreBackend::Redis => {
                if self.path.is_some() {
                    return Err(invalid(format!(
                        "{field}.path: a redis store has a `url`, not a `path`"
                    )));
                }
                let Some(url) = &self.url else {
                    return Err(invalid(format!(
                        "{field}: a redis store needs `url`, e.g. url = \"redis://127.0.0.1:6379\""
                    )));
                };
                self.url = Some(Variable::Value(redis_url(&field, url, env)?));
            }
        }
        Ok(())
    }
}

/// Where pub/sub messages travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PubSubBackend {
    /// Within this process (the default).
    #[default]
    Memory,
    /// Through a Redis server: every host on it shares each app's topics.
    Redis,
}

/// The `[pubsub]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubConfig {
    /// `"memory"` (default) or `"redis"`.
    #[serde(default)]
    pub backend: PubSubBackend,
    /// Redis: the server's URL, as for a redis store.
    pub url: Option<Variable>,
}

impl PubSubConfig {
    /// The Redis URL when the backend is Redis, once loaded.
    pub fn redis_url(&self) -> Option<&str> {
        match (&self.backend, &self.url) {
            (PubSubBackend::Redis, Some(Variable::Value(url))) => Some(url),
            _ => None,
        }
    }

    pub(super) fn resolve(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        match (self.backend, &self.url) {
            (PubSubBackend::Memory, None) => Ok(()),
            (PubSubBackend::Memory, Some(_)) => Err(invalid(
                "pubsub.url: only the redis backend has a url (set backend = \"redis\")",
            )),
            (PubSubBackend::Redis, None) => Err(invalid(
                "pubsub: the redis backend needs `url`, e.g. url = \"redis://127.0.0.1:6379\"",
            )),
            (PubSubBackend::Redis, Some(url)) => {
                self.url = Some(Variable::Value(redis_url("pubsub", url, env)?));
                Ok(())
            }
        }
    }
}

/// Resolves `url` from the environment if it says so, and checks it is a
/// Redis URL (nothing is connected here).
fn redis_url(
    field: &str,
    url: &Variable,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let url = match url {
        Variable::Value(url) => url.clone(),
        Variable::Env { env: key, default } => {
            env(key).or_else(|| default.clone()).ok_or_else(|| {
                invalid(format!(
                    "{field}.url comes from the environment variable `{key}`, which is not set"
                ))
            })?
        }
    };
    match redis::Client::open(url.as_str()) {
        Ok(_) => Ok(url),
        Err(e) => Err(invalid(format!(
            "{field}.url is not a Redis URL ({e}); expected redis://[:PASSWORD@]HOST[:PORT][/DB]"
        ))),
    }
}

/// Store names are lowercase letters, digits, `_` and `-`, starting with a letter.
pub(super) fn check_store_name(name: &str) -> Result<(), ConfigError> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "key_value.{name}: store names are lowercase letters, digits, `_` and `-`, starting with a letter"
        )))
    }
}
