//! Building responses.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::HttpError;

/// An HTTP response: status, headers and a body held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    /// 200 with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::with_body("text/plain; charset=utf-8", body.into().into_bytes())
    }

    /// 200 with a `text/html; charset=utf-8` body.
    pub fn html(body: impl Into<String>) -> Self {
        Self::with_body("text/html; charset=utf-8", body.into().into_bytes())
    }

    /// 200 with a body of the given content type.
    pub fn bytes(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self::with_body(content_type, body.into())
    }

    fn with_body(content_type: &'static str, body: Vec<u8>) -> Self {
        let mut response = Self::new(StatusCode::OK);
        response
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response.body = body;
        response
    }

    /// The same response with another status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The same response with a header set (replacing earlier values).
    ///
    /// An invalid name or value is a programming error and panics, which the
    /// host answers with 500.
    pub fn with_header<N, V>(mut self, name: N, value: V) -> Self
    where
        N: TryInto<HeaderName>,
        N::Error: std::fmt::Debug,
        V: TryInto<HeaderValue>,
        V::Error: std::fmt::Debug,
    {
        let name = name.try_into().expect("valid header name");
        let value = value.try_into().expect("valid header value");
        self.headers.insert(name, value);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Mutable access to the headers.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The `http` response, with `Content-Length` set so the host need not
    /// chunk the body.
    pub(crate) fn into_http(mut self) -> http::Response<wstd::http::Body> {
        self.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        let mut response = http::Response::new(wstd::http::Body::from(self.body));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Anything a handler may return.
pub trait IntoResponse {
    /// Converts into the response sent to the client.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl From<HttpError> for Response {
    fn from(error: HttpError) -> Self {
        error.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_set_status_type_and_headers() {
        let r = Response::text("hi")
            .with_status(StatusCode::CREATED)
            .with_header("x-a", "1");
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.body(), b"hi");
    }

    #[test]
    fn errors_render_status_and_message() {
        let r = Err::<Response, _>(HttpError::bad_request("no id")).into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(r.body(), b"400 Bad Request: no id\n");
        assert_eq!(
            HttpError::not_found().into_response().body(),
            b"404 Not Found\n"
        );
    }
}
