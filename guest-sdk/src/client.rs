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
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
#[cfg(not(feature = "wasip3"))]
use wasip2::http::types::{IncomingBody, OutgoingBody};
#[cfg(not(feature = "wasip3"))]
use wstd::io::{AsyncInputStream, AsyncOutputStream, AsyncPollable};

use crate::wasi::OutgoingRequest;
use crate::wasi::types::{ErrorCode, Fields, RequestOptions};

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
    fn from_code(url: &str, code: &ErrorCode) -> Self {
        let url = url.to_owned();
        match code {
            ErrorCode::HttpRequestDenied | ErrorCode::DestinationIpProhibited => {
                FetchError::Denied { url }
            }
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::HttpResponseTimeout
            | ErrorCode::DnsTimeout => FetchError::Timeout { url },
            ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::ConnectionRefused
            | ErrorCode::DnsError(_) => FetchError::Unreachable {
                url,
                detail: format!("{code}"),
            },
            ErrorCode::HttpRequestUriInvalid | ErrorCode::HttpRequestMethodInvalid => {
                FetchError::InvalidRequest(format!("{url}: {code}"))
            }
            code => FetchError::Other {
                url,
                detail: format!("{code}"),
            },
        }
    }

    #[cfg(not(feature = "wasip3"))]
    fn from_io(url: &str, error: &std::io::Error) -> Self {
        FetchError::Other {
            url: url.to_owned(),
            detail: error.to_string(),
        }
    }
}

/// An HTTP client with its timeouts. [`get`] and [`fetch`] use the defaults.
#[derive(Debug, Clone, Default)]
pub struct Client {
    connect_timeout: Option<Duration>,
    first_byte_timeout: Option<Duration>,
    between_bytes_timeout: Option<Duration>,
}

impl Client {
    /// A client with the host's default timeouts (30 s each).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same client with a limit on connecting.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = Some(limit);
        self
    }

    /// The same client with a limit on waiting for the response head.
    pub fn first_byte_timeout(mut self, limit: Duration) -> Self {
        self.first_byte_timeout = Some(limit);
        self
    }

    /// The same client with a limit on each wait between body chunks.
    pub fn between_bytes_timeout(mut self, limit: Duration) -> Self {
        self.between_bytes_timeout = Some(limit);
        self
    }

    fn options(&self) -> Option<RequestOptions> {
        if self.connect_timeout.is_none()
            && self.first_byte_timeout.is_none()
            && self.between_bytes_timeout.is_none()
        {
            return None;
        }
        let nanos =
            |d: Option<Duration>| d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let options = RequestOptions::new();
        // A host that does not support an option ignores it.
        let _ = options.set_connect_timeout(nanos(self.connect_timeout));
        let _ = options.set_first_byte_timeout(nanos(self.first_byte_timeout));
        let _ = options.set_between_bytes_timeout(nanos(self.between_bytes_timeout));
        Some(options)
    }

    /// Sends `request` and returns the response once its head has arrived;
    /// read the body from the [`ClientResponse`].
    #[cfg(not(feature = "wasip3"))]
    pub async fn fetch(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<ClientResponse, FetchError> {
        let url = request.uri().to_string();
        let (parts, body) = request.into_parts();
        let outgoing = outgoing_request(&url, &parts, OutgoingRequest::new)?;
        let outgoing_body = outgoing.body().expect("the body is taken once");
        let pending = wasip2::http::outgoing_handler::handle(outgoing, self.options())
            .map_err(|code| FetchError::from_code(&url, &code))?;
        // If the host refuses or fails the request, writing the body fails
        // too and the response says why, so the response decides either
        // way. A response that came is the answer even when the body could
        // not be written whole: the upstream answered without reading it,
        // or (a GET's empty body) the host sent the request and closed the
        // body before the guest had finished it.
        let _ = write_body(outgoing_body, &body).await;
        AsyncPollable::new(pending.subscribe()).wait_for().await;
        let incoming = pending
            .get()
            .expect("the response is ready")
            .expect("the response is taken once")
            .map_err(|code| FetchError::from_code(&url, &code))?;
        let status = status_of(&url, incoming.status())?;
        let headers = header_map(incoming.headers().entries());
        let body = incoming.consume().expect("the body is taken once");
        let stream = AsyncInputStream::new(body.stream().expect("the stream is taken once"));
        Ok(ClientResponse {
            url,
            status,
            headers,
            stream: Some(stream),
            _body: body,
        })
    }

    /// Sends `request` and returns the response once its head has arrived;
    /// read the body from the [`ClientResponse`].
    #[cfg(feature = "wasip3")]
    pub async fn fetch(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<ClientResponse, FetchError> {
        use wasip3::http::types::Response as WasiResponse;
        use wasip3::{wit_future, wit_stream};

        let url = request.uri().to_string();
        let (parts, body) = request.into_parts();
        let (mut contents, contents_rx) = wit_stream::new();
        let (trailers, trailers_rx) = wit_future::new(|| Ok(None));
        let outgoing = outgoing_request(&url, &parts, |fields| {
            OutgoingRequest::new(fields, Some(contents_rx), trailers_rx, self.options()).0
        })?;
        // The body is written while the request goes out; a refused request
        // drops its reader, and the response says why.
        let write = async move {
            if !body.is_empty() {
                contents.write_all(body).await;
            }
            drop(contents);
            drop(trailers);
        };
        let (response, ()) =
            futures_util::future::join(wasip3::http::client::send(outgoing), write).await;
        let response = response.map_err(|code| FetchError::from_code(&url, &code))?;
        let status = status_of(&url, response.get_status_code())?;
        let headers = header_map(response.get_headers().copy_all());
        let (_, done) = wit_future::new(|| Ok(()));
        let (stream, trailers) = WasiResponse::consume_body(response, done);
        Ok(ClientResponse {
            url,
            status,
            headers,
            stream: Some(stream),
            trailers: Some(trailers),
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

/// The `wasi:http` request for `parts`, made by `new` from its headers.
fn outgoing_request(
    url: &str,
    parts: &http::request::Parts,
    new: impl FnOnce(Fields) -> OutgoingRequest,
) -> Result<OutgoingRequest, FetchError> {
    let invalid = |what: String| FetchError::InvalidRequest(format!("{url}: {what}"));
    let fields = Fields::from_list(&crate::wasi::entries(&parts.headers))
        .map_err(|e| invalid(format!("header refused: {e:?}")))?;
    let request = new(fields);
    request
        .set_method(&crate::wasi::method_to(&parts.method))
        .map_err(|()| invalid(format!("method {} refused", parts.method)))?;
    let scheme = match parts.uri.scheme_str() {
        Some(scheme) => crate::wasi::scheme_to(scheme),
        None => {
            return Err(invalid(
                "the URL needs a scheme (http:// or https://)".into(),
            ));
        }
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| invalid("scheme refused".into()))?;
    let authority = parts
        .uri
        .authority()
        .ok_or_else(|| invalid("the URL needs a host".into()))?;
    request
        .set_authority(Some(authority.as_str()))
        .map_err(|()| invalid("host refused".into()))?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    request
        .set_path_with_query(Some(path))
        .map_err(|()| invalid("path refused".into()))?;
    Ok(request)
}

/// `code` as a status; an error naming `url` when it is not one.
fn status_of(url: &str, code: u16) -> Result<StatusCode, FetchError> {
    StatusCode::from_u16(code).map_err(|e| FetchError::Other {
        url: url.to_owned(),
        detail: format!("invalid status: {e}"),
    })
}

/// `entries` as a header map; entries that are not valid headers are left out.
fn header_map(entries: Vec<(String, Vec<u8>)>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in entries {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    headers
}

/// Writes the whole request body and finishes it.
#[cfg(not(feature = "wasip3"))]
async fn write_body(body: OutgoingBody, bytes: &[u8]) -> std::io::Result<()> {
    let stream = AsyncOutputStream::new(body.write().expect("the stream is taken once"));
    let written = async {
        if !bytes.is_empty() {
            stream.write_all(bytes).await?;
        }
        stream.flush().await
    }
    .await;
    // The stream is a child of the body: it goes first.
    drop(stream);
    written?;
    OutgoingBody::finish(body, None).map_err(|e| std::io::Error::other(format!("{e}")))
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
    /// `None` once the body has ended. Declared before `_body`, whose child
    /// it is, so it is dropped first.
    #[cfg(not(feature = "wasip3"))]
    stream: Option<AsyncInputStream>,
    #[cfg(not(feature = "wasip3"))]
    _body: IncomingBody,
    /// `None` once the body has ended.
    #[cfg(feature = "wasip3")]
    stream: Option<wasip3::wit_bindgen::StreamReader<u8>>,
    /// Resolves when the body has ended: an error if it was cut short.
    #[cfg(feature = "wasip3")]
    trailers: Option<
        wasip3::wit_bindgen::FutureReader<Result<Option<wasip3::http::types::Trailers>, ErrorCode>>,
    >,
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
    #[cfg(feature = "wasip3")]
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        use wasip3::wit_bindgen::StreamResult;

        while let Some(stream) = &mut self.stream {
            let (result, chunk) = stream.read(Vec::with_capacity(16 << 10)).await;
            if !chunk.is_empty() {
                return Ok(Some(Bytes::from(chunk)));
            }
            if !matches!(result, StreamResult::Complete(_)) {
                self.stream = None;
            }
        }
        match self.trailers.take() {
            Some(trailers) => match trailers.await {
                Ok(_) => Ok(None),
                Err(code) => Err(FetchError::from_code(&self.url, &code)),
            },
            None => Ok(None),
        }
    }

    /// The next chunk of the body as it arrives; `None` at its end.
    #[cfg(not(feature = "wasip3"))]
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, FetchError> {
        let Some(stream) = &self.stream else {
            return Ok(None);
        };
        let mut buf = vec![0; 16 << 10];
        match stream.read(&mut buf).await {
            Ok(0) => {
                self.stream = None;
                Ok(None)
            }
            Ok(n) => {
                buf.truncate(n);
                Ok(Some(Bytes::from(buf)))
            }
            Err(e) => {
                self.stream = None;
                Err(FetchError::from_io(&self.url, &e))
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
