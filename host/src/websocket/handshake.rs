//! The opening handshake: what an upgrade request must carry (a GET,
//! version 13, a key, an acceptable `Origin`), the 101 that accepts it, and
//! the guest's refusal as a response.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio_tungstenite::tungstenite;

use crate::app::WebSocketExport;
use crate::capabilities::bindings::cyclone::platform::websocket as wit;
use crate::response::{Response, plain};

/// Checks `req` as an opening handshake for `export`'s app; its
/// `Sec-WebSocket-Key`, or the response refusing it.
pub(crate) fn check(
    export: &WebSocketExport,
    req: &hyper::Request<Incoming>,
) -> Result<HeaderValue, Box<Response>> {
    if req.method() != http::Method::GET {
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "a websocket handshake is a GET\n",
        )));
    }
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    if !version_ok {
        let mut response = plain(StatusCode::UPGRADE_REQUIRED, "websocket version 13 only\n");
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(Box::new(response));
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "missing Sec-WebSocket-Key\n",
        )));
    };
    if !origin_allowed(&export.allowed_origins, req) {
        return Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            "Cross origin websockets are not allowed\n",
        )));
    }
    Ok(key)
}

/// Whether a page from `req`'s `Origin` may open a session: no `Origin`
/// (not a browser), the request's own origin (its scheme, `https` over TLS
/// and `http` otherwise, host and port), or a listed origin. Two
/// `Origin` headers are refused: which one a browser meant is unknown.
fn origin_allowed(allowed_origins: &[String], req: &hyper::Request<Incoming>) -> bool {
    let mut origins = req.headers().get_all(header::ORIGIN).iter();
    let Some(origin) = origins.next() else {
        return true;
    };
    if origins.next().is_some() {
        return false;
    }
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    if allowed_origins
        .iter()
        .any(|allowed| allowed == "*" || *allowed == origin)
    {
        return true;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match (
        Origin::parse(&origin),
        host.and_then(|h| {
            let scheme = if crate::app::is_secure(req) {
                "https"
            } else {
                "http"
            };
            Origin::parse(&format!("{scheme}://{h}"))
        }),
    ) {
        (Some(origin), Some(own)) => origin == own,
        _ => false,
    }
}

/// An origin's scheme, host and port, with the scheme's default port filled in.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn parse(text: &str) -> Option<Self> {
        let uri: http::Uri = text.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        if authority.as_str().contains('@') || uri.path_and_query().is_some_and(|p| p != "/") {
            return None;
        }
        let port = match (authority.port_u16(), scheme.as_str()) {
            (Some(port), _) => port,
            (None, "http" | "ws") => 80,
            (None, "https" | "wss") => 443,
            (None, _) => return None,
        };
        Some(Self {
            scheme,
            host: authority.host().to_ascii_lowercase(),
            port,
        })
    }
}

/// The 101 that accepts a handshake with `key`.
pub(crate) fn accept(key: &HeaderValue) -> Response {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = hyper::Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Headers that belong to one connection or frame a body; the host sets
/// them itself, so a guest's refusal cannot.
const CONNECTION_HEADERS: [header::HeaderName; 8] = [
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
    header::TRAILER,
    header::PROXY_AUTHENTICATE,
    header::HeaderName::from_static("keep-alive"),
];

/// The guest's refusal as a response.
pub(crate) fn refusal_response(refusal: wit::Response) -> Response {
    let mut response = hyper::Response::new(
        Full::new(Bytes::from(refusal.body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = StatusCode::from_u16(refusal.status)
        .ok()
        .filter(|status| !status.is_informational() && !status.is_success())
        .unwrap_or(StatusCode::FORBIDDEN);
    for (name, value) in refusal.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) && !CONNECTION_HEADERS.contains(&name)
            && name.as_str() != "proxy-connection"
        {
            response.headers_mut().append(name, value);
        }
    }
    response
}
