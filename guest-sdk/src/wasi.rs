//! The WASI release a build targets: 0.2 by default, 0.3 with the `wasip3`
//! feature. Both name their HTTP types alike, so the conversions between
//! them and the `http` crate's are written once, against [`types`].

use http::Method;

#[cfg(not(feature = "wasip3"))]
pub(crate) use wasip2::http::types;
#[cfg(feature = "wasip3")]
pub(crate) use wasip3::http::types;

/// The request a handler sends out.
#[cfg(not(feature = "wasip3"))]
pub(crate) type OutgoingRequest = types::OutgoingRequest;
/// The request a handler sends out.
#[cfg(feature = "wasip3")]
pub(crate) type OutgoingRequest = types::Request;

/// `method` as an `http` method.
pub(crate) fn method_from(method: types::Method) -> Result<Method, http::method::InvalidMethod> {
    Ok(match method {
        types::Method::Get => Method::GET,
        types::Method::Head => Method::HEAD,
        types::Method::Post => Method::POST,
        types::Method::Put => Method::PUT,
        types::Method::Delete => Method::DELETE,
        types::Method::Connect => Method::CONNECT,
        types::Method::Options => Method::OPTIONS,
        types::Method::Trace => Method::TRACE,
        types::Method::Patch => Method::PATCH,
        types::Method::Other(other) => Method::from_bytes(other.as_bytes())?,
    })
}

/// `method` as a WASI method.
pub(crate) fn method_to(method: &Method) -> types::Method {
    match method.as_str() {
        "GET" => types::Method::Get,
        "HEAD" => types::Method::Head,
        "POST" => types::Method::Post,
        "PUT" => types::Method::Put,
        "DELETE" => types::Method::Delete,
        "CONNECT" => types::Method::Connect,
        "OPTIONS" => types::Method::Options,
        "TRACE" => types::Method::Trace,
        "PATCH" => types::Method::Patch,
        other => types::Method::Other(other.to_owned()),
    }
}

/// `scheme` as it is written in a URI.
pub(crate) fn scheme_str(scheme: &types::Scheme) -> &str {
    match scheme {
        types::Scheme::Http => "http",
        types::Scheme::Https => "https",
        types::Scheme::Other(other) => other.as_str(),
    }
}

/// The scheme written `scheme` in a URI.
pub(crate) fn scheme_to(scheme: &str) -> types::Scheme {
    match scheme {
        "http" => types::Scheme::Http,
        "https" => types::Scheme::Https,
        other => types::Scheme::Other(other.to_owned()),
    }
}

/// `headers` as WASI header entries.
pub(crate) fn entries(headers: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}
