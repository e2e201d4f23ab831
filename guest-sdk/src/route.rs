//! Route patterns: literal segments, `{name}` parameters and a trailing
//! `{*name}` wildcard.
//!
//! A pattern is a path split at `/`. Each segment is a literal that must match
//! exactly, `{name}` that matches any one non-empty segment, or — last only —
//! `{*name}` that matches the rest of the path (possibly empty). Parameter
//! values are percent-decoded.

use std::fmt;

/// A checked route pattern. It keeps only its text and reads the segments
/// from it as it matches: every request builds its app's routes, and each
/// allocation here is heap an instance keeps while it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    /// Starts with `/`.
    text: Box<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Literal(&'a str),
    Param(&'a str),
    Rest(&'a str),
}

/// The segments of `text`, a pattern that starts with `/` (`/` is one empty
/// literal segment).
fn segments(text: &str) -> impl Iterator<Item = Segment<'_>> {
    text[1..].split('/').map(|part| {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(inner) => match inner.strip_prefix('*') {
                Some(name) => Segment::Rest(name),
                None => Segment::Param(inner),
            },
            None => Segment::Literal(part),
        }
    })
}

/// Why a pattern is malformed; a programming error, so the app panics with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PatternError(String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Pattern {
    /// Parses `text`, e.g. `/users/{id}` or `/static/{*path}`.
    pub(crate) fn parse(text: &str) -> Result<Self, PatternError> {
        let error = |what: &str| PatternError(format!("route `{text}`: {what}"));
        if !text.starts_with('/') {
            return Err(error("must start with `/`"));
        }
        let mut names = Vec::new();
        let mut after_rest = false;
        for segment in segments(text) {
            if after_rest {
                return Err(error("a `{*rest}` wildcard must be the last segment"));
            }
            let name = match segment {
                Segment::Literal(part) if part.contains(['{', '}']) => {
                    return Err(error("a parameter must be a whole segment, like `{id}`"));
                }
                Segment::Literal(_) => continue,
                Segment::Param(name) => name,
                Segment::Rest(name) => {
                    after_rest = true;
                    name
                }
            };
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(error("parameter names are letters, digits and `_`"));
            }
            if names.contains(&name) {
                return Err(error(&format!("parameter `{name}` appears twice")));
            }
            names.push(name);
        }
        Ok(Self { text: text.into() })
    }

    /// The pattern as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The parameters when `path` matches, in pattern order.
    pub(crate) fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        // What is left of the path after the segments matched so far; `None`
        // once the last segment is used up (so `/users/` leaves `Some("")`).
        let mut remaining = Some(path.strip_prefix('/')?);
        let mut params = Vec::new();
        for segment in segments(&self.text) {
            let rest = remaining?;
            if let Segment::Rest(name) = segment {
                params.push((name.to_owned(), decode(rest)));
                return Some(params);
            }
            let (part, tail) = match rest.split_once('/') {
                Some((part, tail)) => (part, Some(tail)),
                None => (rest, None),
            };
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Param(name) if !part.is_empty() => {
                    params.push((name.to_owned(), decode(part)));
                }
                _ => return None,
            }
            remaining = tail;
        }
        remaining.is_none().then_some(params)
    }
}

/// Percent-decodes a path segment as UTF-8 (`+` stays `+`), replacing invalid
/// sequences.
fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
        Pattern::parse(pattern).unwrap().matches(path)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn literals_match_exactly() {
        assert_eq!(params("/", "/"), Some(vec![]));
        assert_eq!(params("/", "/a"), None);
        assert_eq!(params("/users", "/users"), Some(vec![]));
        assert_eq!(params("/users", "/users/"), None);
        assert_eq!(params("/users", "/user"), None);
        assert_eq!(params("/users", "/users/7"), None);
    }

    #[test]
    fn parameters_take_one_nonempty_segment_decoded() {
        assert_eq!(
            params("/users/{id}", "/users/7"),
            Some(pairs(&[("id", "7")]))
        );
        assert_eq!(params("/users/{id}", "/users/"), None);
        assert_eq!(params("/users/{id}", "/users/7/x"), None);
        assert_eq!(
            params("/a/{x}/b/{y}", "/a/1/b/two%20words"),
            Some(pairs(&[("x", "1"), ("y", "two words")]))
        );
        assert_eq!(params("/p/{x}", "/p/a+b"), Some(pairs(&[("x", "a+b")])));
    }

    #[test]
    fn a_wildcard_takes_the_rest_of_the_path() {
        assert_eq!(
            params("/static/{*path}", "/static/css/site.css"),
            Some(pairs(&[("path", "css/site.css")]))
        );
        assert_eq!(
            params("/static/{*path}", "/static/"),
            Some(pairs(&[("path", "")]))
        );
        assert_eq!(params("/static/{*path}", "/static"), None);
        assert_eq!(
            params("/{*all}", "/any/thing"),
            Some(pairs(&[("all", "any/thing")]))
        );
        assert_eq!(params("/{*all}", "/"), Some(pairs(&[("all", "")])));
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for bad in [
            "users",
            "/users/{}",
            "/users/{id",
            "/users/x{id}",
            "/{*rest}/more",
            "/{a}/{a}",
            "/{a-b}",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(
            Pattern::parse("/users/{id}").unwrap().as_str(),
            "/users/{id}"
        );
    }
}
