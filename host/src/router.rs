//! Maps a request path to the app that serves it.
//!
//! A route is either an exact path (`/hello`) or a prefix ending in `/...`
//! (`/api/...` matches `/api`, `/api/` and everything below; `/...` matches every
//! path). Precedence does not depend on manifest order: an exact route beats any
//! prefix, and among prefixes the longest wins. The same route twice is an error.

use std::fmt;

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

    fn matches(&self, path: &str) -> bool {
        match self {
            RoutePattern::Exact(exact) => path == exact,
            RoutePattern::Prefix(prefix) => path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }

    /// Higher wins: exact routes above all prefixes, longer prefixes above shorter.
    fn rank(&self) -> (bool, usize) {
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

/// A route table from patterns to targets `T`, sorted by precedence.
#[derive(Debug)]
pub struct Router<T> {
    routes: Vec<(RoutePattern, T)>,
}

impl<T> Router<T> {
    /// Builds the table; fails when one pattern is given twice.
    pub fn new(routes: impl IntoIterator<Item = (RoutePattern, T)>) -> Result<Self, String> {
        let mut routes: Vec<_> = routes.into_iter().collect();
        routes.sort_by_key(|(pattern, _)| std::cmp::Reverse(pattern.rank()));
        for pair in routes.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(format!("route `{}` is declared twice", pair[0].0));
            }
        }
        Ok(Self { routes })
    }

    /// The target of the highest-precedence route matching `path`.
    pub fn lookup(&self, path: &str) -> Option<&T> {
        self.routes
            .iter()
            .find(|(pattern, _)| pattern.matches(path))
            .map(|(_, target)| target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &'static str)]) -> Router<&'static str> {
        Router::new(
            routes
                .iter()
                .map(|(r, t)| (RoutePattern::parse(r).unwrap(), *t)),
        )
        .unwrap()
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let r = router(&[
            ("/...", "root"),
            ("/api/...", "api"),
            ("/api/health", "health"),
        ]);
        assert_eq!(r.lookup("/"), Some(&"root"));
        assert_eq!(r.lookup("/anything/else"), Some(&"root"));
        assert_eq!(r.lookup("/api"), Some(&"api"));
        assert_eq!(r.lookup("/api/users/1"), Some(&"api"));
        assert_eq!(r.lookup("/api/health"), Some(&"health"));
        assert_eq!(r.lookup("/apix"), Some(&"root"));
    }

    #[test]
    fn exact_routes_match_only_themselves() {
        let r = router(&[("/hello", "h")]);
        assert_eq!(r.lookup("/hello"), Some(&"h"));
        assert_eq!(r.lookup("/hello/"), None);
        assert_eq!(r.lookup("/"), None);
    }

    #[test]
    fn rejects_bad_and_duplicate_routes() {
        assert!(RoutePattern::parse("hello").is_err());
        assert!(RoutePattern::parse("/a/.../b").is_err());
        assert!(RoutePattern::parse("/a/...x").is_err());
        let dup = Router::new([
            (RoutePattern::parse("/a/...").unwrap(), 1),
            (RoutePattern::parse("/a/...").unwrap(), 2),
        ]);
        assert!(dup.unwrap_err().contains("declared twice"));
    }
}
