//! Maps a request path to the app that serves it.
//!
//! Precedence does not depend on manifest order: an exact route beats any
//! prefix, and among prefixes the longest wins. The same route twice is an
//! error. Patterns are [`RoutePattern`]s, parsed with the manifest.

use crate::config::RoutePattern;

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
