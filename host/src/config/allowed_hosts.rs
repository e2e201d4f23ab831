//! `allowed_outbound_hosts`: where an app's guests may send HTTP requests,
//! as `scheme://host[:port]` patterns, parsed once with the manifest. The
//! check of a request against them, and of the addresses a name resolves
//! to, happens when a guest sends one (`capabilities::outbound`).

use std::net::IpAddr;

use serde::Deserialize;

/// An app's `allowed_outbound_hosts`: `scheme://host[:port]` patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct AllowedHosts {
    entries: Vec<Entry>,
}

/// One pattern of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `None` for `*://`.
    scheme: Option<String>,
    host: HostMatch,
    /// `None` for `:*`.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// `*`: any host, but never an internal address.
    Any,
    /// `*.example.com`: any subdomain (stored as `.example.com`).
    Subdomain(String),
    /// `example.com` or `localhost`, lowercase.
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl AllowedHosts {
    /// Parses the manifest list; the error names the bad entry.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let entries = list
            .iter()
            .map(|text| Entry::parse(text).map_err(|why| format!("`{text}`: {why}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// The entries matching a URL's scheme, host and port.
    pub(crate) fn matching<'a>(
        &'a self,
        scheme: &'a str,
        host: &'a str,
        port: u16,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| {
            e.scheme.as_deref().is_none_or(|s| s == scheme)
                && e.port.is_none_or(|p| p == port)
                && e.host.matches(host)
        })
    }
}

impl TryFrom<Vec<String>> for AllowedHosts {
    type Error = String;

    fn try_from(list: Vec<String>) -> Result<Self, String> {
        Self::parse(&list).map_err(|e| format!("allowed_outbound_hosts: {e}"))
    }
}

impl Entry {
    /// Whether this entry names `host` (which reached `ip`) literally, so it
    /// may reach an internal address: an IP or exact name, not a wildcard.
    pub(crate) fn names(&self, host: &str, ip: IpAddr) -> bool {
        self.host.names(host, ip)
    }

    fn parse(text: &str) -> Result<Self, &'static str> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or("expected scheme://host[:port]")?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "*" => None,
            s @ ("http" | "https") => Some(s.to_owned()),
            _ => return Err("the scheme must be http, https or *"),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err("no path: the entry is scheme://host[:port]");
        }
        let (host, port) = split_port(rest)?;
        let port = match port {
            None => Some(match scheme.as_deref() {
                Some("https") => 443,
                Some("http") => 80,
                _ => return Err("`*://` needs a port (or `:*`)"),
            }),
            Some("*") => None,
            Some(port) => Some(port.parse().map_err(|_| "the port is not a number")?),
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            HostMatch::Subdomain(format!(".{domain}"))
        } else if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
            HostMatch::Ip(ip)
        } else if host.is_empty() || host.contains('*') {
            return Err("the host is a name, an IP, `*` or `*.domain`");
        } else {
            HostMatch::Name(host)
        };
        Ok(Self { scheme, host, port })
    }
}

/// Splits `host:port` (IPv6 in brackets); the port is optional.
fn split_port(text: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or("unclosed `[` in the host")?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((ip, Some(port))),
            None if after.is_empty() => Ok((ip, None)),
            None => Err("unexpected text after `]`"),
        };
    }
    Ok(match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    })
}

impl HostMatch {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Subdomain(suffix) => host.ends_with(suffix.as_str()),
            HostMatch::Name(name) => name == host,
            HostMatch::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
        }
    }

    /// Whether this entry names `host` (which reached `ip`) literally, so it
    /// may reach an internal address.
    fn names(&self, host: &str, ip: IpAddr) -> bool {
        match self {
            HostMatch::Ip(listed) => *listed == ip,
            HostMatch::Name(name) => name == host,
            HostMatch::Any | HostMatch::Subdomain(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_entries_are_rejected_with_a_reason() {
        for (entry, why) in [
            ("example.com", "expected scheme://host[:port]"),
            ("ftp://example.com", "the scheme must be"),
            ("http://example.com/path", "no path"),
            ("http://example.com:http", "not a number"),
            ("*://example.com", "needs a port"),
            ("http://ex*ample.com", "the host is"),
        ] {
            let err = AllowedHosts::parse(&[entry.to_owned()]).unwrap_err();
            assert!(err.contains(why), "{entry}: {err}");
        }
        assert!(
            AllowedHosts::parse(&[
                "http://[::1]:80".to_owned(),
                "https://*.example.com".to_owned()
            ])
            .is_ok()
        );
    }
}
