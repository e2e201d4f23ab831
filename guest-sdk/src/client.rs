//! Outbound HTTP, like Tornado's `AsyncHTTPClient`: the host sends the
//! request (`wasi:http/outgoing-handler`) while the handler is suspended.
//!
//! The host only sends requests to what the app's `allowed_outbound_hosts`
//! lists; anything else fails at once with [`FetchError::Denied`]. Failures
//! are values, never panics.
//!
//! ```no_run
//! use std::time::Duration;
//! use cyclone_sdk::client::{self, Client};
//! use cyclone_sdk::time::{join, timeout};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let page = client::get("https://example.com/").await?.text().await?;
//!
//! // Two requests at once, the second bounded to 500 ms.
//! let client = Client::new().connect_timeout(Duration::from_secs(2));
//! let (a, b) = join(
//!     client.get("https://api.example.com/a"),
//!     timeout(Duration::from_millis(500), client.get("https://api.example.com/b")),
//! )
//! .await;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use wasip2::http::types::ErrorCode;

/// Why a request got no response (or its body could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// The host refused to send it: the URL is not in the app's
    /// `allowed_outbound_hosts`, or it reaches an internal address the list
    /// does not name.
    Denied {
        /// The request's URL.
        url: String,
    },
    /// Connecting or waiting for the response took too long.
    Timeout {
        /// The request's URL.
        url: String,
    },
    /// The host name did not resolve or the server could not be reached.
    Unreachable {
        /// The request's URL.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The request could not be built (bad URL, forbidden header such as
    /// `Host`).
    InvalidRequest(String),
    /// Anything else: a protocol error, a body cut short.
    Other {
        /// The request's URL.
        url: String,
        /// What went wrong.
        detail: String,
    },
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Denied { url } => write!(
                f,
                "request to {url} denied: not allowed by the app's allowed_outbound_hosts"
            ),
            FetchError::Timeout { url } => write!(f, "request to {url} timed out"),
            FetchError::Unreachable { url, detail } => write!(f, "cannot reach {url}: {detail}"),
            FetchError::InvalidRequest(detail) => write!(f, "invalid request: {detail}"),
            FetchError::Other { url, detail } => write!(f, "request to {url} failed: {detail}"),
        }
    }
}

impl std::error::Error for FetchError {}

impl FetchError {
    fn from_wstd(url: &str, error: &anyhow::Error) -> Self {
        let url = url.to_owned();
        match error.downcast_ref::<ErrorCode>() {
            Some(ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited) => {
                FetchError::Denied { url }
            }
            Some(
                ErrorCode::ConnectionTimeout
                | ErrorCode::ConnectionReadTimeout
                | ErrorCode::HttpResponseTimeout
                | ErrorCode::DnsTimeout,
            ) => FetchError::Timeout { url },
            Some(
                code @ (ErrorCode::DestinationNotFound
                | ErrorCode::DestinationUnavailable
                | ErrorCode::ConnectionRefused
                | ErrorCode::DnsError(_)),
            ) => FetchError::Unreachable {
                url,
                detail: format!("{code}"),
            },
            Some(code) => FetchError::Other {
                url,
                detail: format!("{code}"),
            },
            None if error
                .downcast_ref::<wasip2::http::types::HeaderError>()
                .is_some() =>
            {
                FetchError::InvalidRequest(format!("{error:#}"))
            }
            None => FetchError::Other {
                url,
                detail: format!("{error:#}"),
            },
        }
    }
}

/// An HTTP client with its timeouts. [`get`] and [`fetch`] use the defaults.
#[derive(Debug, Clone, Default)]
pub struct Client {
    inner: wstd::http::Client,
}

impl Client {
    /// A client with the host's default timeouts (30 s to connect and to the
    /// first byte).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same client with a limit on connecting.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.inner.set_connect_timeout(limit);
        self
    }

    /// The same client with a limit on waiting for the response head.
    pub fn first_byte_timeout(mut self, limit: Duration) -> Self {
        self.inner.set_first_byte_timeout(limit);
        self
    }

    /// The same client with a limit on each wait between body chunks.
    pub fn between_bytes_timeout(mut self, limit: Duration) -> Self {
        self.inner.set_between_bytes_timeout(limit);
        self
    }

    /// Sends `request` and returns the response once its head has arrived;
    /// read the body from the [`ClientResponse`].
    pub async fn fetch(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<ClientResponse, FetchError> {
        let url = request.uri().to_string();
        let response = self
            .inner
            .send(request)
            .await
            .map_err(|e| FetchError::from_wstd(&url, &e))?;
        let (parts, body) = response.into_parts();
        Ok(ClientResponse {
            url,
            status: parts.status,
            headers: parts.headers,
            body: body.into_boxed_body(),
        })
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<ClientResponse, FetchError> {
        let request = http::Request::get(url)
            .body(Vec::new())
            .map_err(|e| FetchError::InvalidRequest(format!("{url}: {e}")))?;
        self.fetch(request).await
    }
}

/// Sends `request` with the default [`Client`].
pub async fn fetch(request: http::Request<Vec<u8>>) -> Result<ClientResponse, FetchError> {
    Client::new().fetch(request).await
}

/// `GET url` with the default [`Client`].
pub async fn get(url: &str) -> Result<ClientResponse, FetchError> {
    Client::new().get(url).await
}

/// A response to an outbound request; the body is read on demand.
pub struct ClientResponse {
    url: String,
    status: StatusCode,
    headers: HeaderMap,
    body: http_body_util::combinators::UnsyncBoxBody<Bytes, anyhow::Error>,
}

impl std::fmt::Debug for ClientResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientResponse")
            .field("url", &self.url)
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl ClientResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The next chunk of the body as it arrives; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(FetchError::from_wstd(&self.url, &e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The whole body.
    pub async fn bytes(mut self) -> Result<Vec<u8>, FetchError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The whole body as UTF-8 text (invalid sequences replaced).
    pub async fn text(self) -> Result<String, FetchError> {
        Ok(String::from_utf8_lossy(&self.bytes().await?).into_owned())
    }

    /// The whole body parsed as JSON.
    pub async fn json<T: DeserializeOwned>(self) -> Result<T, FetchError> {
        let url = self.url.clone();
        let body = self.bytes().await?;
        serde_json::from_slice(&body).map_err(|e| FetchError::Other {
            url,
            detail: format!("invalid JSON: {e}"),
        })
    }
}
