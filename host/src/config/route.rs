//! Routes in the manifest: `"/exact"` or `"/prefix/..."`, parsed once when
//! the manifest loads, optionally with an instance cap of their own:
//! `{ route = "/poll", max_instances = 900 }`.
//!
//! A route is either an exact path (`/hello`) or a prefix ending in `/...`
//! (`/api/...` matches `/api`, `/api/` and everything below; `/...` matches every
//! path). Precedence does not depend on manifest order: an exact route beats
//! any prefix, and the longest prefix wins.

use std::fmt;

use serde::Deserialize;

/// A parsed route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutePattern {
    /// Matches exactly this path.
    Exact(String),
    /// Matches this path and everything below it (stored without the `/...`).
    Prefix(String),
}

/// Why a route pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route `{route}` {reason}")]
pub struct RouteError {
    route: String,
    reason: &'static str,
}

impl RoutePattern {
    /// Parses `/exact` or `/prefix/...`.
    pub fn parse(route: &str) -> Result<Self, RouteError> {
        let error = |reason| RouteError {
            route: route.to_owned(),
            reason,
        };
        if !route.starts_with('/') {
            return Err(error("must start with `/`"));
        }
        if let Some(prefix) = route.strip_suffix("/...") {
            if prefix.contains("...") {
                return Err(error("may use `...` only once, at the end"));
            }
            return Ok(RoutePattern::Prefix(prefix.to_owned()));
        }
        if route.contains("...") {
            return Err(error("may use `...` only at the end, as `/...`"));
        }
        Ok(RoutePattern::Exact(route.to_owned()))
    }

    /// Whether `path` is this route's.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            RoutePattern::Exact(exact) => path == exact,
            RoutePattern::Prefix(prefix) => path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }

    /// Higher wins: exact routes above all prefixes, longer prefixes above shorter.
    pub fn rank(&self) -> (bool, usize) {
        match self {
            RoutePattern::Exact(p) => (true, p.len()),
            RoutePattern::Prefix(p) => (false, p.len()),
        }
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutePattern::Exact(p) => f.write_str(p),
            RoutePattern::Prefix(p) => write!(f, "{p}/..."),
        }
    }
}

/// One entry of an app's `routes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The paths it matches.
    pub pattern: RoutePattern,
    /// Instances its requests may hold at once, on top of the app's and the
    /// server's caps; `None` for no cap of its own.
    pub max_instances: Option<u32>,
}

impl Route {
    /// A route with no cap of its own.
    pub fn new(pattern: RoutePattern) -> Self {
        Self {
            pattern,
            max_instances: None,
        }
    }
}

/// A route as the manifest writes it.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a route: \"/path\", \"/prefix/...\" or { route = \"/path\", max_instances = N }"
)]
enum RouteEntry {
    Path(String),
    Limited(LimitedRoute),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitedRoute {
    route: String,
    max_instances: u32,
}

impl<'de> Deserialize<'de> for Route {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (route, max_instances) = match RouteEntry::deserialize(deserializer)? {
            RouteEntry::Path(route) => (route, None),
            RouteEntry::Limited(LimitedRoute {
                route,
                max_instances,
            }) => {
                if max_instances == 0 {
                    return Err(serde::de::Error::custom(format!(
                        "route `{route}`: max_instances must be at least 1"
                    )));
                }
                (route, Some(max_instances))
            }
        };
        let pattern = RoutePattern::parse(&route).map_err(serde::de::Error::custom)?;
        Ok(Self {
            pattern,
            max_instances,
        })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pattern.fmt(f)
    }
}
