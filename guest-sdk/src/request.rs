//! The incoming request.

use http::{HeaderMap, Method, Uri};
use wstd::__internal::wasip2::http::types::IncomingRequest;

use crate::HttpError;

/// An HTTP request with its body read into memory.
#[derive(Debug)]
pub struct Request {
    inner: http::Request<Vec<u8>>,
}

impl Request {
    /// Reads a request and its whole body from the host.
    pub(crate) async fn from_incoming(incoming: IncomingRequest) -> Result<Self, HttpError> {
        let request = wstd::http::request::try_from_incoming(incoming)
            .map_err(|e| HttpError::bad_request(format!("unreadable request: {e}")))?;
        let (parts, mut body) = request.into_parts();
        let body = body
            .contents()
            .await
            .map_err(|e| HttpError::bad_request(format!("unreadable request body: {e}")))?
            .to_vec();
        Ok(Self {
            inner: http::Request::from_parts(parts, body),
        })
    }

    /// Builds a request by hand, e.g. to test a handler natively.
    pub fn from_http(request: http::Request<Vec<u8>>) -> Self {
        Self { inner: request }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.inner.method()
    }

    /// The full URI (path and query; the authority when the host knows it).
    pub fn uri(&self) -> &Uri {
        self.inner.uri()
    }

    /// The path, e.g. `/users/7`.
    pub fn path(&self) -> &str {
        self.inner.uri().path()
    }

    /// The raw query string without the `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.inner.uri().query()
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// One header's value as text; `None` when missing or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name)?.to_str().ok()
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        self.inner.body()
    }

    /// The body as UTF-8 text; 400 when it is not UTF-8.
    pub fn text(&self) -> Result<&str, HttpError> {
        std::str::from_utf8(self.inner.body())
            .map_err(|e| HttpError::bad_request(format!("request body is not UTF-8: {e}")))
    }

    /// The underlying `http::Request`.
    pub fn into_http(self) -> http::Request<Vec<u8>> {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_path_query_headers_and_text() {
        let req = Request::from_http(
            http::Request::post("/users?id=7")
                .header("x-name", "ada")
                .body(b"hi".to_vec())
                .unwrap(),
        );
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.path(), "/users");
        assert_eq!(req.query(), Some("id=7"));
        assert_eq!(req.header("x-name"), Some("ada"));
        assert_eq!(req.text().unwrap(), "hi");
        let bad = Request::from_http(http::Request::new(vec![0xff]));
        assert_eq!(bad.text().unwrap_err().status, 400);
    }
}
