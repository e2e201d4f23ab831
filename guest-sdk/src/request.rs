//! The incoming request: path parameters, arguments, JSON, cookies.

use std::cell::OnceCell;
use std::rc::Rc;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cookie::Cookie;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use serde::de::DeserializeOwned;
#[cfg(not(feature = "wasip3"))]
use wasip2::http::types::IncomingRequest;
#[cfg(not(feature = "wasip3"))]
use wasip2::io::streams::StreamError;

use crate::settings::{Settings, XSRF_COOKIE};
use crate::{HttpError, Response};

/// An HTTP request with its body, plus what the
/// [`Application`](crate::Application) learned routing it (path parameters)
/// and the cookies the handler has set so far.
///
/// On WASI 0.2 only the method and path are read from the host when the
/// request arrives; the URI's scheme and authority, the headers and the
/// body are read the first time the handler asks for them, so a handler
/// pays only for what it reads. A body that cannot be read whole (its
/// client went away, or it went over the app's `max_body_kb` while
/// streaming) stops the handler there: the host answers for it.
#[derive(Debug)]
pub struct Request {
    // Boxed: a request is moved through several nested futures (the SDK's,
    // the handler's, the application's), and each keeps its own slot for it
    // while it is suspended. Boxed, each slot is a pointer, not the parts.
    inner: Box<Parts>,
    params: Vec<(String, String)>,
    cookies_out: Vec<Cookie<'static>>,
    xsrf_token: Option<String>,
    /// The current user, once known.
    current_user: Option<Option<String>>,
    settings: Rc<Settings>,
}

/// A request's parts: each cell is filled from `source` when first read,
/// or up front for a request built whole.
#[derive(Debug)]
struct Parts {
    method: Method,
    path: PathAndQuery,
    /// The path and query with the scheme and authority.
    uri: OnceCell<Uri>,
    headers: OnceCell<HeaderMap>,
    body: OnceCell<Vec<u8>>,
    source: Option<Source>,
}

/// Where the parts not read yet come from: the host's request on WASI 0.2.
/// On WASI 0.3 a request is read whole before its handler runs.
#[cfg(not(feature = "wasip3"))]
type Source = IncomingRequest;
#[cfg(feature = "wasip3")]
type Source = std::convert::Infallible;

impl Parts {
    fn uri(&self) -> &Uri {
        self.uri.get_or_init(|| match &self.source {
            Some(source) => read_uri(source, &self.path),
            None => Uri::from(self.path.clone()),
        })
    }

    fn headers(&self) -> &HeaderMap {
        self.headers
            .get_or_init(|| self.source.as_ref().map(read_headers).unwrap_or_default())
    }

    fn body(&self) -> &[u8] {
        self.body
            .get_or_init(|| self.source.as_ref().map(read_body).unwrap_or_default())
    }
}

impl Request {
    /// Reads a request's method and path from the host; the rest waits
    /// until the handler asks for it.
    #[cfg(not(feature = "wasip3"))]
    pub(crate) fn from_incoming(incoming: IncomingRequest) -> Result<Self, HttpError> {
        let unreadable =
            |e: http::Error| HttpError::bad_request(format!("unreadable request: {e}"));
        let method =
            crate::wasi::method_from(incoming.method()).map_err(|e| unreadable(e.into()))?;
        let path = PathAndQuery::try_from(incoming.path_with_query().as_deref().unwrap_or("/"))
            .map_err(|e| unreadable(e.into()))?;
        Ok(Self::new(Parts {
            method,
            path,
            uri: OnceCell::new(),
            headers: OnceCell::new(),
            body: OnceCell::new(),
            source: Some(incoming),
        }))
    }

    /// Builds a request by hand, e.g. to test a handler natively.
    pub fn from_http(request: http::Request<Vec<u8>>) -> Self {
        let (head, body) = request.into_parts();
        let path = head
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Self::new(Parts {
            method: head.method,
            path,
            uri: OnceCell::from(head.uri),
            headers: OnceCell::from(head.headers),
            body: OnceCell::from(body),
            source: None,
        })
    }

    fn new(parts: Parts) -> Self {
        Self {
            inner: Box::new(parts),
            params: Vec::new(),
            cookies_out: Vec::new(),
            xsrf_token: None,
            current_user: None,
            settings: Rc::default(),
        }
    }

    pub(crate) fn route(&mut self, params: Vec<(String, String)>, settings: Rc<Settings>) {
        self.params = params;
        self.settings = settings;
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.inner.method
    }

    /// The full URI (path and query; the authority when the host knows it).
    pub fn uri(&self) -> &Uri {
        self.inner.uri()
    }

    /// The path, e.g. `/users/7`.
    pub fn path(&self) -> &str {
        self.inner.path.path()
    }

    /// The raw query string without the `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.inner.path.query()
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

    /// The body parsed as JSON into `T`; 400 saying why when it does not parse.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(self.inner.body())
            .map_err(|e| HttpError::bad_request(format!("invalid JSON body: {e}")))
    }

    /// The path parameter `name` of the matched route (`{id}` in
    /// `/users/{id}`), parsed as `T`; 400 naming the parameter when it does not
    /// parse.
    pub fn param<T>(&self, name: &str) -> Result<T, HttpError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let Some((_, value)) = self.params.iter().find(|(n, _)| n == name) else {
            return Err(HttpError::internal(format!(
                "the route of {} has no parameter `{name}`",
                self.path()
            )));
        };
        value.parse().map_err(|e| {
            HttpError::bad_request(format!(
                "path parameter `{name}`: `{value}` is invalid: {e}"
            ))
        })
    }

    /// The last value of the argument `name` from the query string or a
    /// form-encoded body (like Tornado's `get_argument`); 400 when missing.
    pub fn argument(&self, name: &str) -> Result<String, HttpError> {
        self.arguments(name)
            .pop()
            .ok_or_else(|| HttpError::bad_request(format!("missing argument `{name}`")))
    }

    /// The last value of the argument `name`, or `default` when missing.
    pub fn argument_or(&self, name: &str, default: &str) -> String {
        self.arguments(name)
            .pop()
            .unwrap_or_else(|| default.to_owned())
    }

    /// The argument `next` when it is a path on this site, as a login guard
    /// sets it (`/compose?id=3`), else `default`. Anything that could lead
    /// elsewhere (`https://…`, `//host`, a backslash) gives `default`, so a
    /// login or logout page cannot send visitors to another site.
    pub fn next_url(&self, default: &str) -> String {
        let next = self.argument_or("next", "");
        let local = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
        if local { next } else { default.to_owned() }
    }

    /// Every value of the argument `name`, query string first, then a
    /// form-encoded body (`?tag=a&tag=b` gives `["a", "b"]`).
    pub fn arguments(&self, name: &str) -> Vec<String> {
        let query = form_urlencoded::parse(self.query().unwrap_or("").as_bytes());
        let body = form_urlencoded::parse(self.form_body());
        query
            .chain(body)
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
            .collect()
    }

    fn form_body(&self) -> &[u8] {
        let is_form = self
            .header(header::CONTENT_TYPE.as_str())
            .and_then(|t| t.split(';').next())
            .is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if is_form { self.inner.body() } else { &[] }
    }

    /// The value of the cookie `name` sent by the client.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.inner
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|header| header.split(';'))
            .filter_map(cookie_pair)
            .filter(|(cookie, _)| cookie == name)
            .map(|(_, value)| value)
            .next_back()
    }

    /// Sets `cookie` on the response, whatever the handler returns (like
    /// Tornado's `set_cookie`).
    pub fn set_cookie(&mut self, cookie: Cookie<'static>) {
        self.cookies_out.push(cookie);
    }

    /// Tells the client to drop the cookie `name` (set with path `/`).
    pub fn clear_cookie(&mut self, name: &str) {
        let mut cookie = Cookie::build((name.to_owned(), "")).path("/").build();
        cookie.make_removal();
        self.set_cookie(cookie);
    }

    /// The logged-in user, like Tornado's `current_user`: by default the
    /// value of the signed cookie `user` (or the one named by
    /// [`Application::user_cookie`](crate::Application::user_cookie)), read
    /// once per request; `None` when there is none or its signature fails.
    /// A handler that knows its users another way says so with
    /// [`Handler::current_user`](crate::Handler::current_user) or
    /// [`set_current_user`](Self::set_current_user).
    pub fn current_user(&mut self) -> Result<Option<String>, HttpError> {
        if let Some(known) = &self.current_user {
            return Ok(known.clone());
        }
        let name = self
            .settings
            .user_cookie
            .clone()
            .unwrap_or_else(|| crate::settings::USER_COOKIE.to_owned());
        let user = self.signed_cookie(&name)?;
        self.current_user = Some(user.clone());
        Ok(user)
    }

    /// Sets who the current user is for the rest of this request.
    pub fn set_current_user(&mut self, user: Option<String>) {
        self.current_user = Some(user);
    }

    /// The application's login URL, if it set one.
    pub(crate) fn login_url(&self) -> Option<&str> {
        self.settings.login_url.as_deref()
    }

    /// The value of the signed cookie `name`, like Tornado's
    /// `get_secure_cookie`: `None` when missing, tampered with, signed with a
    /// key no longer configured, or expired. Fails (500) only when the cookie
    /// is there and the app has no cookie secret.
    pub fn signed_cookie(&self, name: &str) -> Result<Option<String>, HttpError> {
        // No cookie, nothing to verify: a page that only asks who is logged
        // in works in an app without a cookie secret.
        let Some(signed) = self.cookie(name) else {
            return Ok(None);
        };
        let keys = self.settings.cookie_keys()?;
        Ok(keys.verify(name, &signed, unix_now()))
    }

    /// Sets the cookie `name` to `value`, signed with the app's current key and
    /// valid for `max_age` (like Tornado's `set_secure_cookie`). The cookie is
    /// `HttpOnly`, `SameSite=Lax`, with path `/`. Fails (500) only when the app
    /// has no cookie secret.
    pub fn set_signed_cookie(
        &mut self,
        name: &str,
        value: &str,
        max_age: Duration,
    ) -> Result<(), HttpError> {
        let keys = self.settings.cookie_keys()?;
        let signed = keys.sign(name, value, unix_now().saturating_add(max_age.as_secs()));
        let max_age =
            cookie::time::Duration::seconds(i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX));
        self.set_cookie(
            Cookie::build((name.to_owned(), signed))
                .path("/")
                .http_only(true)
                .same_site(cookie::SameSite::Lax)
                .max_age(max_age)
                .build(),
        );
        Ok(())
    }

    /// The token that protects this client against cross-site request
    /// forgery: the `_xsrf` cookie's value, or a new random token that is set
    /// as that cookie on this response. Put it in forms as the `_xsrf` field,
    /// or send it as the `X-XSRFToken` header.
    pub fn xsrf_token(&mut self) -> String {
        if let Some(token) = &self.xsrf_token {
            return token.clone();
        }
        let token = self
            .cookie(XSRF_COOKIE)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| {
                #[cfg(not(feature = "wasip3"))]
                let bytes = wasip2::random::random::get_random_bytes(16);
                #[cfg(feature = "wasip3")]
                let bytes = wasip3::random::random::get_random_bytes(16);
                let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                self.set_cookie(
                    Cookie::build((XSRF_COOKIE, token.clone()))
                        .path("/")
                        .same_site(cookie::SameSite::Lax)
                        .build(),
                );
                token
            });
        self.xsrf_token = Some(token.clone());
        token
    }

    /// Adds the cookies set during the request to `response`.
    pub(crate) fn apply_cookies(&mut self, response: &mut Response) {
        for cookie in self.cookies_out.drain(..) {
            response.add_cookie(&cookie);
        }
    }

    /// The underlying `http::Request`.
    pub fn into_http(self) -> http::Request<Vec<u8>> {
        let mut parts = *self.inner;
        // What is still in the host is read first.
        parts.uri();
        parts.headers();
        parts.body();
        let mut request = http::Request::new(parts.body.take().unwrap_or_default());
        *request.method_mut() = parts.method;
        *request.uri_mut() = parts.uri.take().unwrap_or_default();
        *request.headers_mut() = parts.headers.take().unwrap_or_default();
        request
    }
}

/// Seconds since the Unix epoch, from the host's wall clock.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 403 for a state-changing request without a matching XSRF token.
pub(crate) fn check_xsrf(req: &Request) -> Result<(), HttpError> {
    use subtle::ConstantTimeEq;

    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let sent = req
        .header("x-xsrftoken")
        .or_else(|| req.header("x-csrftoken"))
        .map(str::to_owned)
        .or_else(|| req.arguments(XSRF_COOKIE).pop());
    let Some(sent) = sent else {
        return Err(forbidden("'_xsrf' argument missing from POST"));
    };
    let Some(cookie) = req.cookie(XSRF_COOKIE) else {
        return Err(forbidden("'_xsrf' cookie missing"));
    };
    if sent.is_empty() || !bool::from(sent.as_bytes().ct_eq(cookie.as_bytes())) {
        return Err(forbidden("XSRF cookie does not match the '_xsrf' argument"));
    }
    Ok(())
}

fn forbidden(why: &str) -> HttpError {
    HttpError::new(StatusCode::FORBIDDEN, why)
}

/// A request's head as WASI 0.3 gives it.
#[cfg(feature = "wasip3")]
pub(crate) struct Head {
    pub(crate) method: crate::wasi::types::Method,
    pub(crate) scheme: Option<crate::wasi::types::Scheme>,
    pub(crate) authority: Option<String>,
    pub(crate) path_with_query: Option<String>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
}

#[cfg(feature = "wasip3")]
impl Head {
    /// The head as an `http` request's.
    pub(crate) fn parse(self) -> Result<http::request::Parts, http::Error> {
        let method = crate::wasi::method_from(self.method)?;
        let mut uri = Uri::builder();
        if let Some(scheme) = &self.scheme {
            uri = uri.scheme(crate::wasi::scheme_str(scheme));
        }
        if let Some(authority) = self.authority {
            uri = uri.authority(authority.as_str());
        }
        uri = uri.path_and_query(self.path_with_query.as_deref().unwrap_or("/"));
        let (mut head, ()) = http::Request::builder()
            .method(method)
            .uri(uri.build()?)
            .body(())?
            .into_parts();
        head.headers = header_map(self.headers);
        Ok(head)
    }
}

/// `entries` as a header map. The host checked every name and value; one
/// that does not parse here is left out.
fn header_map(entries: Vec<(String, Vec<u8>)>) -> HeaderMap {
    // Room for these headers only: a map grown by appending has room for
    // six, 300 bytes an instance keeps while it waits.
    let mut headers = HeaderMap::with_capacity(entries.len());
    for (name, value) in entries {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

/// `path` with the scheme and authority `incoming` was sent with. An
/// authority that is not one (a `Host` header the host passed on as it
/// came) leaves the path alone.
#[cfg(not(feature = "wasip3"))]
fn read_uri(incoming: &IncomingRequest, path: &PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(path.clone());
    parts.scheme = incoming
        .scheme()
        .and_then(|scheme| crate::wasi::scheme_str(&scheme).parse().ok());
    parts.authority = incoming
        .authority()
        .and_then(|authority| authority.parse().ok());
    Uri::from_parts(parts).unwrap_or_else(|_| Uri::from(path.clone()))
}

#[cfg(not(feature = "wasip3"))]
fn read_headers(incoming: &IncomingRequest) -> HeaderMap {
    // The fields are a child of the request: dropped before it is.
    header_map(incoming.headers().entries())
}

/// Reads `incoming`'s body to its end, waiting in the host while more is
/// on its way. A body that cannot be read whole stops the handler: the host
/// answers for it (413 past `max_body_kb`; nothing to a client that left).
#[cfg(not(feature = "wasip3"))]
fn read_body(incoming: &IncomingRequest) -> Vec<u8> {
    // Taken only here, once: the cell is filled after.
    let body = incoming.consume().expect("the request body is read once");
    let stream = body.stream().expect("a new body's stream is there");
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                panic!(
                    "the request body could not be read whole: {}",
                    e.to_debug_string()
                )
            }
        }
    }
    // The stream is a child of the body: it goes first. The body is
    // dropped rather than finished: its trailers are not read, and finishing
    // would cost two host calls more.
    drop(stream);
    drop(body);
    bytes
}

#[cfg(feature = "wasip3")]
fn read_uri(never: &Source, _: &PathAndQuery) -> Uri {
    match *never {}
}

#[cfg(feature = "wasip3")]
fn read_headers(never: &Source) -> HeaderMap {
    match *never {}
}

#[cfg(feature = "wasip3")]
fn read_body(never: &Source) -> Vec<u8> {
    match *never {}
}

/// One `name=value` pair of a `Cookie` header, percent-decoded and trimmed;
/// `None` for a pair without `=`, with an empty name, or not UTF-8 once
/// decoded. A `Cookie` header carries only pairs, so this is all of its
/// grammar; `cookie::Cookie::split_parse_encoded` would do the same through
/// the `Set-Cookie` parser, whose date parsing adds about 1 KiB to the data
/// every instance maps and 36 KiB of code.
fn cookie_pair(pair: &str) -> Option<(String, String)> {
    let (name, value) = pair.split_once('=')?;
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text.trim())
            .decode_utf8()
            .ok()
            .map(|text| text.into_owned())
    };
    let name = decode(name).filter(|name| !name.is_empty())?;
    Some((name, decode(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(builder: http::request::Builder, body: &str) -> Request {
        Request::from_http(builder.body(body.as_bytes().to_vec()).unwrap())
    }

    #[test]
    fn exposes_path_query_headers_and_text() {
        let req = request(
            http::Request::post("/users?id=7").header("x-name", "ada"),
            "hi",
        );
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.path(), "/users");
        assert_eq!(req.query(), Some("id=7"));
        assert_eq!(req.header("x-name"), Some("ada"));
        assert_eq!(req.text().unwrap(), "hi");
        let bad = Request::from_http(http::Request::new(vec![0xff]));
        assert_eq!(bad.text().unwrap_err().status, 400);
    }

    #[test]
    fn arguments_come_from_the_query_and_a_form_body() {
        let req = request(
            http::Request::post("/s?q=rust%20wasm&tag=a&tag=b&empty=").header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            "tag=c&name=Ada+L",
        );
        assert_eq!(req.argument("q").unwrap(), "rust wasm");
        assert_eq!(req.arguments("tag"), ["a", "b", "c"]);
        assert_eq!(req.argument("tag").unwrap(), "c", "the last value wins");
        assert_eq!(req.argument("name").unwrap(), "Ada L");
        assert_eq!(req.argument("empty").unwrap(), "");
        assert_eq!(req.argument_or("page", "1"), "1");
        let missing = req.argument("page").unwrap_err();
        assert_eq!(
            (missing.status.as_u16(), missing.message.as_str()),
            (400, "missing argument `page`")
        );

        let not_a_form = request(
            http::Request::post("/s").header("content-type", "text/plain"),
            "tag=x",
        );
        assert!(not_a_form.arguments("tag").is_empty());
    }

    #[test]
    fn next_url_keeps_only_paths_of_this_site() {
        let next = |query: &str| {
            request(http::Request::get(format!("/login?{query}")), "").next_url("/home")
        };
        assert_eq!(next("next=%2Fcompose%3Fid%3D3"), "/compose?id=3");
        assert_eq!(next("next=/"), "/");
        for elsewhere in [
            "",
            "next=",
            "next=https://example.com/",
            "next=//example.com/",
            "next=/%5Cexample.com",
            "next=compose",
        ] {
            assert_eq!(next(elsewhere), "/home", "{elsewhere}");
        }
    }

    #[test]
    fn path_parameters_parse_or_answer_400() {
        let mut req = request(http::Request::get("/users/7"), "");
        req.route(
            vec![("id".into(), "7".into()), ("name".into(), "x".into())],
            Rc::default(),
        );
        assert_eq!(req.param::<u64>("id").unwrap(), 7);
        assert_eq!(req.param::<String>("name").unwrap(), "x");
        let bad = req.param::<u64>("name").unwrap_err();
        assert_eq!(bad.status, 400);
        assert!(
            bad.message
                .contains("path parameter `name`: `x` is invalid"),
            "{}",
            bad.message
        );
        assert_eq!(req.param::<u64>("nope").unwrap_err().status, 500);
    }

    #[test]
    fn json_bodies_parse_or_say_why() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct User {
            name: String,
        }
        let good = request(http::Request::post("/"), r#"{"name":"ada"}"#);
        assert_eq!(good.json::<User>().unwrap(), User { name: "ada".into() });
        let bad = request(http::Request::post("/"), r#"{"name":"#);
        let err = bad.json::<User>().unwrap_err();
        assert_eq!(err.status, 400);
        assert!(
            err.message.starts_with("invalid JSON body: EOF"),
            "{}",
            err.message
        );
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let req = request(
            http::Request::get("/")
                .header("cookie", "a=1; b=two%20words")
                .header("cookie", "c=3"),
            "",
        );
        assert_eq!(req.cookie("b").as_deref(), Some("two words"));
        assert_eq!(req.cookie("c").as_deref(), Some("3"));
        assert_eq!(req.cookie("d"), None);
    }

    #[test]
    fn cookie_pairs_are_trimmed_decoded_or_skipped() {
        let req = request(
            http::Request::get("/").header(
                "cookie",
                " ; name = val%20ue ;novalue; =anon; bad=%FF; foo%20!%25%3F%3D=bar%3B%3B%2C%20a;empty=",
            ),
            "",
        );
        assert_eq!(req.cookie("name").as_deref(), Some("val ue"));
        assert_eq!(req.cookie("foo !%?=").as_deref(), Some("bar;;, a"));
        assert_eq!(req.cookie("empty").as_deref(), Some(""));
        for skipped in ["novalue", "", "bad"] {
            assert_eq!(req.cookie(skipped), None, "{skipped}");
        }
    }

    #[test]
    fn xsrf_needs_a_matching_token_on_state_changing_requests() {
        let get = request(http::Request::get("/"), "");
        assert!(check_xsrf(&get).is_ok());
        let no_token = request(http::Request::post("/").header("cookie", "_xsrf=abc"), "");
        assert_eq!(check_xsrf(&no_token).unwrap_err().status, 403);
        let no_cookie = request(http::Request::post("/").header("x-xsrftoken", "abc"), "");
        assert_eq!(check_xsrf(&no_cookie).unwrap_err().status, 403);
        let mismatch = request(
            http::Request::post("/")
                .header("cookie", "_xsrf=abc")
                .header("x-xsrftoken", "abd"),
            "",
        );
        assert_eq!(check_xsrf(&mismatch).unwrap_err().status, 403);
        let header = request(
            http::Request::delete("/")
                .header("cookie", "_xsrf=abc")
                .header("x-xsrftoken", "abc"),
            "",
        );
        assert!(check_xsrf(&header).is_ok());
        let form = request(
            http::Request::post("/")
                .header("cookie", "_xsrf=abc")
                .header("content-type", "application/x-www-form-urlencoded"),
            "name=ada&_xsrf=abc",
        );
        assert!(check_xsrf(&form).is_ok());
    }
}
