//! Building responses.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use cookie::Cookie;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::HttpError;
use crate::serve::Sink;

type StreamFuture<'a> = Pin<Box<dyn Future<Output = std::io::Result<()>> + 'a>>;
type StreamFn = Box<dyn for<'a> FnOnce(&'a mut BodyWriter) -> StreamFuture<'a>>;

/// A response body: bytes in memory, or a function that writes it in chunks.
pub(crate) enum Body {
    Bytes(Vec<u8>),
    /// No body and no `Content-Length`: the answer to `HEAD`.
    Omitted,
    Stream(StreamFn),
}

/// An HTTP response: status, headers and a body.
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field(
                "body",
                &self
                    .body()
                    .map_or("<stream>".into(), String::from_utf8_lossy),
            )
            .finish()
    }
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Body::Bytes(Vec::new()),
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

    /// 200 with `template` rendered as an HTML page, like Tornado's
    /// `self.render`. Templates are [askama](https://docs.rs/askama)'s:
    /// compiled into the component with the handler (`#[derive(Template)]`
    /// on a struct whose fields are the template's values), so a request
    /// parses nothing; `.html` templates escape every value unless marked
    /// `|safe`. A template that fails (a filter's error) is a 500.
    ///
    /// ```
    /// use askama::Template;
    /// use cyclone_sdk::{HttpError, Response};
    ///
    /// // Usually `#[template(path = "entry.html")]`, a file in the crate's
    /// // `templates/` folder that may `{% extends "base.html" %}`.
    /// #[derive(Template)]
    /// #[template(
    ///     source = "<h1>{{ title }}</h1>{% for p in paragraphs %}<p>{{ p }}</p>{% endfor %}",
    ///     ext = "html"
    /// )]
    /// struct Entry<'a> {
    ///     title: &'a str,
    ///     paragraphs: Vec<String>,
    /// }
    ///
    /// fn entry() -> Result<Response, HttpError> {
    ///     Response::render(&Entry {
    ///         title: "Hello",
    ///         paragraphs: vec!["<script>".into()],
    ///     })
    /// }
    /// assert_eq!(
    ///     entry().unwrap().body(),
    ///     Some(&b"<h1>Hello</h1><p>&#60;script&#62;</p>"[..])
    /// );
    /// ```
    pub fn render(template: &impl askama::Template) -> Result<Self, HttpError> {
        Self::render_as("text/html; charset=utf-8", template)
    }

    /// 200 with `template` rendered as a body of `content_type` (an Atom
    /// feed, a text file); see [`render`](Self::render).
    pub fn render_as(
        content_type: &'static str,
        template: &impl askama::Template,
    ) -> Result<Self, HttpError> {
        let body = template
            .render()
            .map_err(|e| HttpError::internal(format!("rendering a template: {e}")))?;
        Ok(Self::with_body(content_type, body.into_bytes()))
    }

    /// 200 with `value` as an `application/json` body.
    ///
    /// # Panics
    /// When `value` cannot be serialised (a map with non-string keys, a
    /// failing `Serialize` impl): a programming error, answered with 500.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        // Not `expect`: formatting serde_json's error links every one of its
        // messages, parsing ones included, into every instance (560 bytes of data).
        let Ok(body) = serde_json::to_vec(value) else {
            panic!("the response value does not serialise to JSON");
        };
        Self::with_body("application/json", body)
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
        response.body = Body::Bytes(body);
        response
    }

    /// 302 Found to `location`.
    pub fn redirect(location: &str) -> Self {
        Self::redirect_with(StatusCode::FOUND, location)
    }

    /// 301 Moved Permanently to `location`.
    pub fn permanent_redirect(location: &str) -> Self {
        Self::redirect_with(StatusCode::MOVED_PERMANENTLY, location)
    }

    /// A redirect to `location` with `status`: 301, 302, 303, 307 or 308.
    ///
    /// # Panics
    /// When `status` is not a redirect or `location` is not a valid header
    /// value: programming errors, answered with 500.
    pub fn redirect_with(status: StatusCode, location: &str) -> Self {
        assert!(
            status.is_redirection(),
            "redirect status must be 3xx, not {status}"
        );
        Self::new(status).with_header(header::LOCATION, location)
    }

    /// 200 with a body written in chunks by `write`, like Tornado's
    /// `write` + `flush`: each [`BodyWriter::flush`] sends what was written so
    /// far, so the client sees it before the handler finishes; what is left is
    /// sent when `write` returns. The body is sent chunked. If `write` returns
    /// an error the connection is cut, so the client can tell the body is
    /// incomplete.
    ///
    /// ```no_run
    /// # use cyclone_sdk::{Response, time::sleep};
    /// # use std::time::Duration;
    /// let response = Response::stream("text/plain", async |body| {
    ///     for i in 1..=3 {
    ///         body.write(format!("tick {i}\n"));
    ///         body.flush().await?;
    ///         sleep(Duration::from_millis(100)).await;
    ///     }
    ///     Ok(())
    /// });
    /// ```
    pub fn stream<F>(content_type: &'static str, write: F) -> Self
    where
        F: AsyncFnOnce(&mut BodyWriter) -> std::io::Result<()> + 'static,
    {
        let mut response = Self::new(StatusCode::OK);
        response
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response.body = Body::Stream(Box::new(move |writer: &mut BodyWriter| {
            Box::pin(write(writer)) as StreamFuture<'_>
        }));
        response
    }

    /// The same response with another status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The same response with a header set (replacing earlier values).
    ///
    /// # Panics
    /// An invalid name or value is a programming error and panics, which the
    /// host answers with 500.
    pub fn with_header<N, V>(mut self, name: N, value: V) -> Self
    where
        N: TryInto<HeaderName>,
        N::Error: fmt::Debug,
        V: TryInto<HeaderValue>,
        V::Error: fmt::Debug,
    {
        let name = name.try_into().expect("valid header name");
        let value = value.try_into().expect("valid header value");
        self.headers.insert(name, value);
        self
    }

    /// The same response with a `Set-Cookie` header added for `cookie`.
    pub fn with_cookie(mut self, cookie: Cookie<'_>) -> Self {
        self.add_cookie(&cookie);
        self
    }

    pub(crate) fn add_cookie(&mut self, cookie: &Cookie<'_>) {
        let value = HeaderValue::try_from(cookie.encoded().to_string())
            .expect("an encoded cookie is a valid header value");
        self.headers.append(header::SET_COOKIE, value);
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

    /// The body, or `None` for a streamed body.
    pub fn body(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Bytes(bytes) => Some(bytes),
            Body::Omitted => Some(&[]),
            Body::Stream(_) => None,
        }
    }

    /// Drops the body, as the answer to a `HEAD` request does.
    pub(crate) fn strip_body(&mut self) {
        self.body = Body::Omitted;
    }

    /// The status, the headers as WASI entries (with `Content-Length` for a
    /// body in memory) and the body, ready to send.
    pub(crate) fn into_wire(mut self) -> (StatusCode, Vec<(String, Vec<u8>)>, Body) {
        // 1xx, 204 and 304 responses have no body and must not declare one.
        let bodiless = self.status.is_informational()
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED;
        if let Body::Bytes(bytes) = &self.body
            && !bodiless
        {
            self.headers
                .insert(header::CONTENT_LENGTH, bytes.len().into());
        }
        (self.status, crate::wasi::entries(&self.headers), self.body)
    }
}

/// Anything a handler may return.
pub trait IntoResponse {
    /// Converts into the response sent to the client.
    fn into_response(self) -> Response;

    /// Converts into a response, or an error for the application's error page.
    fn into_result(self) -> Result<Response, HttpError>
    where
        Self: Sized,
    {
        Ok(self.into_response())
    }
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl<T: IntoResponse> IntoResponse for Result<T, HttpError> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }

    fn into_result(self) -> Result<Response, HttpError> {
        self.and_then(IntoResponse::into_result)
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

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        Response::new(self)
    }
}

impl From<HttpError> for Response {
    fn from(error: HttpError) -> Self {
        error.into_response()
    }
}

/// Where a streamed body goes. Get one from [`Response::stream`].
pub struct BodyWriter {
    stream: Sink,
    buffer: Vec<u8>,
}

impl BodyWriter {
    /// A writer into `stream`, the response body's.
    pub(crate) fn new(stream: Sink) -> Self {
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Adds `data` to the body; it is sent at the next [`flush`](Self::flush)
    /// (or when the stream function returns).
    pub fn write(&mut self, data: impl AsRef<[u8]>) {
        self.buffer.extend_from_slice(data.as_ref());
    }

    /// Sends everything written so far to the client. Fails when the client
    /// has gone away.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.stream.write_all(&self.buffer).await?;
            self.buffer.clear();
        }
        self.stream.flush().await
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
        assert_eq!(r.body(), Some(&b"hi"[..]));
    }

    #[test]
    fn templates_render_as_html_or_the_type_given_and_escape_values() {
        #[derive(askama::Template)]
        #[template(
            source = "{% if items.is_empty() %}none{% else %}{% for i in items %}[{{ i|upper }}]{% endfor %}{% endif %}",
            ext = "html"
        )]
        struct List {
            items: Vec<&'static str>,
        }
        let r = Response::render(&List {
            items: vec!["a&b", "<c>"],
        })
        .unwrap();
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(r.body(), Some(&b"[A&#38;B][&#60;C&#62;]"[..]));
        let feed = Response::render_as("application/atom+xml", &List { items: vec![] }).unwrap();
        assert_eq!(feed.headers()["content-type"], "application/atom+xml");
        assert_eq!(feed.body(), Some(&b"none"[..]));
    }

    #[test]
    fn json_and_redirects() {
        let r = Response::json(&serde_json::json!({"id": 7}));
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.body(), Some(&br#"{"id":7}"#[..]));
        for (response, status) in [
            (Response::redirect("/a"), 302),
            (Response::permanent_redirect("/a"), 301),
            (Response::redirect_with(StatusCode::SEE_OTHER, "/a"), 303),
            (
                Response::redirect_with(StatusCode::TEMPORARY_REDIRECT, "/a"),
                307,
            ),
            (
                Response::redirect_with(StatusCode::PERMANENT_REDIRECT, "/a"),
                308,
            ),
        ] {
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()["location"], "/a");
        }
    }

    #[test]
    #[should_panic(expected = "redirect status must be 3xx")]
    fn a_redirect_needs_a_redirect_status() {
        let _ = Response::redirect_with(StatusCode::OK, "/a");
    }

    #[test]
    fn cookies_add_set_cookie_headers() {
        let r = Response::new(StatusCode::OK)
            .with_cookie(Cookie::new("a", "1"))
            .with_cookie(Cookie::build(("b", "two words")).path("/").build());
        let values: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
        assert_eq!(values, ["a=1", "b=two%20words; Path=/"]);
    }

    #[test]
    fn errors_render_status_and_message() {
        let r = Err::<Response, _>(HttpError::bad_request("no id")).into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(r.body(), Some(&b"400 Bad Request: no id\n"[..]));
        assert_eq!(
            HttpError::not_found().into_response().body(),
            Some(&b"404 Not Found\n"[..])
        );
        assert_eq!(
            Err::<Response, _>(HttpError::not_found())
                .into_result()
                .unwrap_err()
                .status,
            404
        );
    }
}
