//! The `[admin]` table: the API that deploys components into the running host.
//!
//! ```toml
//! [admin]
//! listen = "127.0.0.1:9901"
//! token = { env = "CYCLONE_ADMIN_TOKEN" }
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, Variable, invalid};

/// The shortest token accepted.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The admin API: off unless `listen` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin API (off when absent). Loopback unless
    /// `allow_remote` says otherwise: the API takes components to run.
    pub listen: Option<SocketAddr>,
    /// The bearer token every admin request must carry, at least 16 bytes:
    /// a string or, better, `{ env = "CYCLONE_ADMIN_TOKEN" }`. After loading
    /// it is a [`Variable::Value`].
    pub token: Option<Variable>,
    /// Serve the admin API on a non-loopback address over plain HTTP
    /// (default false): the token then crosses the network in clear.
    #[serde(default)]
    pub allow_remote: bool,
}

impl AdminConfig {
    /// The token, once loaded.
    pub fn token(&self) -> Option<&str> {
        match &self.token {
            Some(Variable::Value(token)) => Some(token),
            _ => None,
        }
    }

    pub(super) fn resolve(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let Some(listen) = self.listen else {
            return Ok(());
        };
        let token = match &self.token {
            None => {
                return Err(invalid(
                    "admin.token is required with admin.listen: token = { env = \"CYCLONE_ADMIN_TOKEN\" }",
                ));
            }
            Some(Variable::Value(token)) => token.clone(),
            Some(Variable::Env { env: key, default }) => {
                env(key).or_else(|| default.clone()).ok_or_else(|| {
                    invalid(format!(
                        "admin.token comes from the environment variable `{key}`, which is not set"
                    ))
                })?
            }
        };
        if token.len() < MIN_TOKEN_BYTES {
            return Err(invalid(format!(
                "admin.token must be at least {MIN_TOKEN_BYTES} bytes long"
            )));
        }
        if !listen.ip().is_loopback() && !self.allow_remote {
            return Err(invalid(format!(
                "admin.listen = \"{listen}\" is not a loopback address: the admin API has no TLS, so its token would cross the network in clear; listen on 127.0.0.1, or set admin.allow_remote = true"
            )));
        }
        self.token = Some(Variable::Value(token));
        Ok(())
    }
}
