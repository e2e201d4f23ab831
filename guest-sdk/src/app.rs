//! `Application` and `Handler`: Tornado's route table and request lifecycle.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use http::{HeaderValue, Method, StatusCode, header};

use crate::route::Pattern;
use crate::settings::Settings;
use crate::{HttpError, IntoResponse, Request, Response};

type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;
type Outcome = Result<Response, HttpError>;
type ErrorPage = Box<dyn Fn(&Request, &HttpError) -> Response>;

/// A request handler with one method per HTTP verb, like Tornado's
/// `RequestHandler`. Implement the verbs it answers and mark the `impl` with
/// [`#[handler_impl]`](crate::handler_impl), which records them: any other
/// verb is answered 405 with an `Allow` header listing them.
///
/// The [`Application`] creates no handler itself: it moves the value given to
/// [`Application::route`] into the one request this instance serves. For each
/// request it runs, in order: the XSRF check (when enabled), [`prepare`](Self::prepare),
/// the verb's method, the application's error page if that failed, and
/// [`on_finish`](Self::on_finish).
///
/// `HEAD` runs [`head`](Self::head) when implemented, or else `get`, and
/// sends no body either way.
///
/// ```
/// use cyclone_sdk::{Handler, HttpError, Request, Response, handler_impl};
///
/// struct User;
///
/// #[handler_impl]
/// impl Handler for User {
///     async fn get(&mut self, req: &mut Request) -> Result<Response, HttpError> {
///         let id: u64 = req.param("id")?;
///         Ok(Response::json(&serde_json::json!({ "id": id })))
///     }
/// }
/// ```
#[expect(
    async_fn_in_trait,
    reason = "a guest runs one request on one thread; handler futures need not be Send"
)]
pub trait Handler: 'static {
    /// Runs before the verb's method. Return `Ok(Some(response))` to finish the
    /// request early (say, a redirect to a login page) or an error to fail it.
    async fn prepare(&mut self, req: &mut Request) -> Result<Option<Response>, HttpError> {
        let _ = req;
        Ok(None)
    }

    /// Who is logged in, like overriding Tornado's `get_current_user`: by
    /// default [`Request::current_user`] (the signed `user` cookie). Routes
    /// marked [`authenticated`](Application::authenticated) ask it first.
    async fn current_user(&mut self, req: &mut Request) -> Result<Option<String>, HttpError> {
        req.current_user()
    }

    /// Answers `GET`.
    async fn get(&mut self, req: &mut Request) -> Outcome {
        let _ = req;
        Err(HttpError::method_not_allowed())
    }

    /// Answers `HEAD`; by default runs [`get`](Self::get) (the body is dropped).
    async fn head(&mut self, req: &mut Request) -> Outcome {
        self.get(req).await
    }

    /// Answers `POST`.
    async fn post(&mut self, req: &mut Request) -> Outcome {
        let _ = req;
        Err(HttpError::method_not_allowed())
    }

    /// Answers `PUT`.
    async fn put(&mut self, req: &mut Request) -> Outcome {
        let _ = req;
        Err(HttpError::method_not_allowed())
    }

    /// Answers `PATCH`.
    async fn patch(&mut self, req: &mut Request) -> Outcome {
        let _ = req;
        Err(HttpError::method_not_allowed())
    }

    /// Answers `DELETE`.
    async fn delete(&mut self, req: &mut Request) -> Outcome {
        let _ = req;
        Err(HttpError::method_not_allowed())
    }

    /// Answers `OPTIONS`.
    async fn options(&mut self, req: &mut Request) -> Outcome {
        let _ = req;
        Err(HttpError::method_not_allowed())
    }

    /// Runs last, once the response (or the error page) is decided, with its
    /// status; for logging and clean-up. A streamed body is still being sent.
    fn on_finish(&mut self, req: &Request, status: StatusCode) {
        let _ = (req, status);
    }

    /// The verbs this handler implements; written by
    /// [`#[handler_impl]`](crate::handler_impl) from the methods in the `impl`.
    fn allowed_methods(&self) -> &'static [Method];
}

/// What a route leads to.
trait Endpoint {
    fn allowed(&self) -> Vec<Method>;
    fn current_user<'a>(
        &'a mut self,
        req: &'a mut Request,
    ) -> LocalFuture<'a, Result<Option<String>, HttpError>>;
    fn respond<'a>(&'a mut self, req: &'a mut Request) -> LocalFuture<'a, Outcome>;
    fn finish(&mut self, req: &Request, status: StatusCode);
}

impl<H: Handler> Endpoint for H {
    fn allowed(&self) -> Vec<Method> {
        with_head(self.allowed_methods().to_vec())
    }

    fn current_user<'a>(
        &'a mut self,
        req: &'a mut Request,
    ) -> LocalFuture<'a, Result<Option<String>, HttpError>> {
        Box::pin(Handler::current_user(self, req))
    }

    fn respond<'a>(&'a mut self, req: &'a mut Request) -> LocalFuture<'a, Outcome> {
        Box::pin(async move {
            if let Some(early) = self.prepare(req).await? {
                return Ok(early);
            }
            let method = req.method().clone();
            if !self.allowed().contains(&method) {
                return Err(HttpError::method_not_allowed());
            }
            match method {
                Method::GET => self.get(req).await,
                Method::HEAD => self.head(req).await,
                Method::POST => self.post(req).await,
                Method::PUT => self.put(req).await,
                Method::PATCH => self.patch(req).await,
                Method::DELETE => self.delete(req).await,
                Method::OPTIONS => self.options(req).await,
                _ => Err(HttpError::method_not_allowed()),
            }
        })
    }

    fn finish(&mut self, req: &Request, status: StatusCode) {
        self.on_finish(req, status);
    }
}

/// `methods`, plus `HEAD` when `GET` is there (`HEAD` is served from `GET`).
fn with_head(mut methods: Vec<Method>) -> Vec<Method> {
    if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
        methods.push(Method::HEAD);
    }
    methods
}

type Function = Box<dyn for<'a> FnOnce(&'a mut Request) -> LocalFuture<'a, Outcome>>;

/// Plain async functions for one pattern, by verb.
#[derive(Default)]
struct Functions(Vec<(Method, Function)>);

impl Endpoint for Functions {
    fn allowed(&self) -> Vec<Method> {
        with_head(self.0.iter().map(|(m, _)| m.clone()).collect())
    }

    fn current_user<'a>(
        &'a mut self,
        req: &'a mut Request,
    ) -> LocalFuture<'a, Result<Option<String>, HttpError>> {
        Box::pin(async move { req.current_user() })
    }

    fn respond<'a>(&'a mut self, req: &'a mut Request) -> LocalFuture<'a, Outcome> {
        let wanted = match req.method() {
            &Method::HEAD if !self.0.iter().any(|(m, _)| m == Method::HEAD) => Method::GET,
            other => other.clone(),
        };
        match self.0.iter().position(|(m, _)| *m == wanted) {
            Some(i) => {
                let (_, function) = self.0.swap_remove(i);
                function(req)
            }
            None => Box::pin(async { Err(HttpError::method_not_allowed()) }),
        }
    }

    fn finish(&mut self, _: &Request, _: StatusCode) {}
}

enum Target {
    Handler(Box<dyn Endpoint>),
    Functions(Functions),
    WebSocket(Box<dyn crate::websocket::Endpoint>),
    Hibernating(Box<dyn crate::hibernation::HibernatingEndpoint>),
}

impl Target {
    /// The HTTP endpoint; `None` for a websocket route.
    fn into_endpoint(self) -> Option<Box<dyn Endpoint>> {
        match self {
            Target::Handler(handler) => Some(handler),
            Target::Functions(functions) => Some(Box::new(functions)),
            Target::WebSocket(_) | Target::Hibernating(_) => None,
        }
    }
}

struct Route {
    pattern: Pattern,
    target: Target,
    /// Only for a logged-in user ([`Application::authenticated`]).
    authenticated: bool,
}

/// An ordered route table and the settings its handlers share, like
/// Tornado's `Application`.
///
/// **Precedence:** routes are tried in the order they were added and the
/// first whose pattern matches the path wins, so add specific routes before
/// general ones (`/users/new` before `/users/{id}`, `/{*path}` last). Verbs do
/// not take part in matching: a path that matches a route whose handler lacks
/// the verb is answered 405, not passed on to later routes. Registering plain
/// functions for the same pattern text (`get("/x", …)` then `post("/x", …)`)
/// adds verbs to one route.
///
/// A pattern is literal segments, `{name}` parameters (one non-empty segment
/// each, read with [`Request::param`]) and an optional trailing `{*name}`
/// wildcard that takes the rest of the path. No route matches → 404.
///
/// A component serves one request per instance, so the application is built
/// for each request: build it in the exported handler and call
/// [`handle`](Self::handle).
///
/// ```no_run
/// use cyclone_sdk::{Application, HttpError, Request, Response};
///
/// async fn hello(_req: &mut Request) -> Response {
///     Response::text("Hello, world!")
/// }
///
/// async fn user(req: &mut Request) -> Result<Response, HttpError> {
///     let id: u64 = req.param("id")?;
///     Ok(Response::text(format!("user {id}")))
/// }
///
/// #[cyclone_sdk::handler]
/// async fn handle(req: Request) -> Response {
///     Application::new()
///         .get("/", hello)
///         .get("/users/{id}", user)
///         .handle(req)
///         .await
/// }
/// ```
#[derive(Default)]
#[must_use]
pub struct Application {
    routes: Vec<Route>,
    settings: Settings,
    error_page: Option<ErrorPage>,
}

impl Application {
    /// An application with no routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `pattern` to `handler`, a [`Handler`] for all its verbs.
    ///
    /// # Panics
    /// When `pattern` is malformed (see [`Application`]).
    pub fn route(mut self, pattern: &str, handler: impl Handler) -> Self {
        self.routes.push(Route {
            pattern: parse(pattern),
            target: Target::Handler(Box::new(handler)),
            authenticated: false,
        });
        self
    }

    /// Routes `GET` (and `HEAD`) on `pattern` to the async function `f`.
    pub fn get<F, R>(self, pattern: &str, f: F) -> Self
    where
        F: AsyncFnOnce(&mut Request) -> R + 'static,
        R: IntoResponse,
    {
        self.function(Method::GET, pattern, f)
    }

    /// Routes `POST` on `pattern` to the async function `f`.
    pub fn post<F, R>(self, pattern: &str, f: F) -> Self
    where
        F: AsyncFnOnce(&mut Request) -> R + 'static,
        R: IntoResponse,
    {
        self.function(Method::POST, pattern, f)
    }

    /// Routes `PUT` on `pattern` to the async function `f`.
    pub fn put<F, R>(self, pattern: &str, f: F) -> Self
    where
        F: AsyncFnOnce(&mut Request) -> R + 'static,
        R: IntoResponse,
    {
        self.function(Method::PUT, pattern, f)
    }

    /// Routes `PATCH` on `pattern` to the async function `f`.
    pub fn patch<F, R>(self, pattern: &str, f: F) -> Self
    where
        F: AsyncFnOnce(&mut Request) -> R + 'static,
        R: IntoResponse,
    {
        self.function(Method::PATCH, pattern, f)
    }

    /// Routes `DELETE` on `pattern` to the async function `f`.
    pub fn delete<F, R>(self, pattern: &str, f: F) -> Self
    where
        F: AsyncFnOnce(&mut Request) -> R + 'static,
        R: IntoResponse,
    {
        self.function(Method::DELETE, pattern, f)
    }

    /// Routes `method` on `pattern` to the async function `f`.
    ///
    /// # Panics
    /// When `pattern` is malformed (see [`Application`]).
    pub fn function<F, R>(mut self, method: Method, pattern: &str, f: F) -> Self
    where
        F: AsyncFnOnce(&mut Request) -> R + 'static,
        R: IntoResponse,
    {
        let function: Function = Box::new(move |req: &mut Request| {
            Box::pin(async move { f(req).await.into_result() }) as LocalFuture<'_, Outcome>
        });
        let existing = self
            .routes
            .iter_mut()
            .find_map(|route| match &mut route.target {
                Target::Functions(functions) if route.pattern.as_str() == pattern => {
                    Some(functions)
                }
                _ => None,
            });
        match existing {
            Some(functions) => {
                functions.0.retain(|(m, _)| *m != method);
                functions.0.push((method, function));
            }
            None => self.routes.push(Route {
                pattern: parse(pattern),
                target: Target::Functions(Functions(vec![(method, function)])),
                authenticated: false,
            }),
        }
        self
    }

    /// Routes websocket sessions on `pattern` to `handler` (see
    /// [`websocket`](crate::websocket)). The application must be exported
    /// with [`#[app]`](crate::app). A plain request to this pattern is
    /// answered 400, like Tornado's.
    ///
    /// # Panics
    /// When `pattern` is malformed (see [`Application`]).
    pub fn websocket(
        mut self,
        pattern: &str,
        handler: impl crate::websocket::WebSocketHandler,
    ) -> Self {
        self.routes.push(Route {
            pattern: parse(pattern),
            target: Target::WebSocket(Box::new(handler)),
            authenticated: false,
        });
        self
    }

    /// Routes websocket sessions on `pattern` to `handler`, whose sessions
    /// hibernate between events (see
    /// [`HibernatingHandler`](crate::websocket::HibernatingHandler)). The
    /// application must be exported with [`#[app]`](crate::app). A plain
    /// request to this pattern is answered 400.
    ///
    /// # Panics
    /// When `pattern` is malformed (see [`Application`]).
    pub fn hibernating(
        mut self,
        pattern: &str,
        handler: impl crate::websocket::HibernatingHandler,
    ) -> Self {
        self.routes.push(Route {
            pattern: parse(pattern),
            target: Target::Hibernating(Box::new(handler)),
            authenticated: false,
        });
        self
    }

    /// Signs cookies with the keys in the app variable `name` (see
    /// [`Request::set_signed_cookie`]). The value is one secret, or for key
    /// rotation a comma-separated list of `VERSION:SECRET` pairs: the first
    /// signs, all verify. Set it in the manifest, from the host's environment:
    ///
    /// ```toml
    /// [apps.site.variables]
    /// cookie_secret = { env = "SITE_COOKIE_SECRET" }   # e.g. "2:new-secret,1:old-secret"
    /// ```
    pub fn cookie_secret_variable(mut self, name: &str) -> Self {
        self.settings.cookie_secret = Some((name.to_owned(), crate::variables::get));
        self
    }

    /// Checks XSRF tokens, like Tornado's `xsrf_cookies=True`: a `POST`,
    /// `PUT`, `PATCH` or `DELETE` must carry the `_xsrf` cookie's value in the
    /// `_xsrf` argument or the `X-XSRFToken` header, or it is answered 403
    /// before any handler runs. Pages get the token from
    /// [`Request::xsrf_token`].
    pub fn xsrf_cookies(mut self) -> Self {
        self.settings.xsrf_cookies = true;
        self
    }

    /// Lets only a logged-in user through the route added last, like
    /// Tornado's `@authenticated`: when its handler's
    /// [`current_user`](Handler::current_user) is `None`, a `GET` or `HEAD`
    /// is redirected to the [`login_url`](Self::login_url) with
    /// `?next=<path and query>`, and any other method is answered 403. On a
    /// websocket route, a handshake without a user is answered 403.
    ///
    /// ```no_run
    /// # use cyclone_sdk::{Application, Request, Response};
    /// # async fn compose(_: &mut Request) -> Response { Response::text("") }
    /// # async fn login_form(_: &mut Request) -> Response { Response::text("") }
    /// let app = Application::new()
    ///     .cookie_secret_variable("cookie_secret")
    ///     .login_url("/auth/login")
    ///     .get("/auth/login", login_form)
    ///     .get("/compose", compose)
    ///     .authenticated();
    /// ```
    ///
    /// # Panics
    /// When no route has been added yet.
    pub fn authenticated(mut self) -> Self {
        self.routes
            .last_mut()
            .expect("authenticated() follows the route it guards")
            .authenticated = true;
        self
    }

    /// Where [`authenticated`](Self::authenticated) routes send a visitor
    /// who is not logged in, like Tornado's `login_url` setting.
    pub fn login_url(mut self, url: &str) -> Self {
        self.settings.login_url = Some(url.to_owned());
        self
    }

    /// The signed cookie [`Request::current_user`] reads (default `user`).
    pub fn user_cookie(mut self, name: &str) -> Self {
        self.settings.user_cookie = Some(name.to_owned());
        self
    }

    /// Renders every error response (a handler's [`HttpError`], 404 for no
    /// route, 405, 403 from the XSRF check) with `page`, like overriding
    /// Tornado's `write_error`. The status is the error's whatever `page`
    /// returns; a 405 also gets its `Allow` header. The default is
    /// [`HttpError::default_page`].
    pub fn error_page(mut self, page: impl Fn(&Request, &HttpError) -> Response + 'static) -> Self {
        self.error_page = Some(Box::new(page));
        self
    }

    /// Serves `req`: finds its route and runs the handler's lifecycle.
    pub async fn handle(self, mut req: Request) -> Response {
        let Self {
            routes,
            settings,
            error_page,
        } = self;
        let xsrf_cookies = settings.xsrf_cookies;
        let path = req.path().to_owned();
        let found = routes.into_iter().find_map(|route| {
            Some((
                route.pattern.matches(&path)?,
                route.target,
                route.authenticated,
            ))
        });
        let mut endpoint = None;
        let outcome = match found {
            None => Err(HttpError::not_found()),
            Some((params, target, authenticated)) => {
                req.route(params, Rc::new(settings));
                match target.into_endpoint() {
                    #[cfg(not(feature = "wasip3"))]
                    None => Err(HttpError::bad_request(
                        "Can \"Upgrade\" only to \"WebSocket\".",
                    )),
                    // The host serves websockets only to WASI 0.2 components.
                    #[cfg(feature = "wasip3")]
                    None => Err(HttpError::new(
                        http::StatusCode::NOT_IMPLEMENTED,
                        "This app is built for WASI 0.3, which cannot serve websockets.",
                    )),
                    Some(target) => {
                        let handler = endpoint.insert(target);
                        match xsrf_cookies.then(|| crate::request::check_xsrf(&req)) {
                            Some(Err(forbidden)) => Err(forbidden),
                            _ => match authenticated {
                                true => match login_required(handler.as_mut(), &mut req).await {
                                    Ok(None) => handler.respond(&mut req).await,
                                    Ok(Some(redirect)) => Ok(redirect),
                                    Err(error) => Err(error),
                                },
                                false => handler.respond(&mut req).await,
                            },
                        }
                    }
                }
            }
        };
        let mut response = match outcome {
            Ok(response) => response,
            Err(error) => {
                let mut page = render_error(error_page.as_ref(), &req, &error);
                if error.status == StatusCode::METHOD_NOT_ALLOWED
                    && let Some(handler) = &endpoint
                {
                    let allow = handler
                        .allowed()
                        .iter()
                        .map(Method::as_str)
                        .collect::<Vec<_>>()
                        .join(", ");
                    let allow = HeaderValue::try_from(allow).expect("method names are valid");
                    page.headers_mut().insert(header::ALLOW, allow);
                }
                page
            }
        };
        if req.method() == Method::HEAD {
            response.strip_body();
        }
        req.apply_cookies(&mut response);
        if let Some(handler) = &mut endpoint {
            handler.finish(&req, response.status());
        }
        response
    }
}

impl Application {
    /// Routes a websocket handshake and runs its handler's `connect`: the
    /// accepted session, or the response refusing it (404 for no route, 400
    /// for a route that is not a websocket's).
    pub(crate) async fn connect(
        self,
        mut req: Request,
    ) -> Result<crate::websocket::Accepted, Response> {
        let Self {
            routes,
            settings,
            error_page,
        } = self;
        let path = req.path().to_owned();
        let found = routes.into_iter().find_map(|route| {
            Some((
                route.pattern.matches(&path)?,
                route.target,
                route.authenticated,
            ))
        });
        let error = match found {
            None => HttpError::not_found(),
            Some((params, mut target, authenticated))
                if matches!(target, Target::WebSocket(_) | Target::Hibernating(_)) =>
            {
                req.route(params, Rc::new(settings));
                let refused = match authenticated {
                    true => match req.current_user() {
                        Ok(Some(_)) => None,
                        Ok(None) => Some(HttpError::forbidden("log in first")),
                        Err(error) => Some(error),
                    },
                    false => None,
                };
                let connected = match (refused, &mut target) {
                    (Some(error), _) => Err(error),
                    (None, Target::WebSocket(endpoint)) => endpoint.connect(&mut req).await,
                    (None, Target::Hibernating(endpoint)) => endpoint.connect(&mut req).await,
                    (None, _) => Err(HttpError::bad_request(
                        "this path does not serve websockets",
                    )),
                };
                match (connected, target) {
                    (Ok(()), Target::WebSocket(endpoint)) => {
                        return Ok(crate::websocket::Accepted::Live(crate::websocket::Live {
                            endpoint,
                            request: req,
                        }));
                    }
                    (Ok(()), Target::Hibernating(endpoint)) => {
                        return Ok(crate::websocket::Accepted::Hibernating(endpoint, req));
                    }
                    (Ok(()), _) => HttpError::bad_request("this path does not serve websockets"),
                    (Err(error), _) => error,
                }
            }
            Some(_) => HttpError::bad_request("this path does not serve websockets"),
        };
        let mut page = render_error(error_page.as_ref(), &req, &error);
        req.apply_cookies(&mut page);
        Err(page)
    }
}

impl Application {
    /// The handler of the hibernating route that `path` matches: a fresh
    /// one, as the application function builds it, for one event.
    #[cfg_attr(feature = "wasip3", allow(dead_code))]
    pub(crate) fn hibernating_endpoint(
        self,
        path: &str,
    ) -> Option<Box<dyn crate::hibernation::HibernatingEndpoint>> {
        self.routes
            .into_iter()
            .find(|route| route.pattern.matches(path).is_some())
            .and_then(|route| match route.target {
                Target::Hibernating(endpoint) => Some(endpoint),
                _ => None,
            })
    }
}

/// The guard of an [`authenticated`](Application::authenticated) route:
/// `None` to go on (the user is now the request's current user), or the
/// redirect to the login URL; 403 for a method other than `GET` and `HEAD`.
async fn login_required(
    handler: &mut dyn Endpoint,
    req: &mut Request,
) -> Result<Option<Response>, HttpError> {
    let user = handler.current_user(req).await?;
    let known = user.is_some();
    req.set_current_user(user);
    if known {
        return Ok(None);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(HttpError::forbidden("log in first"));
    }
    let login = req
        .login_url()
        .ok_or_else(|| HttpError::internal("authenticated routes need Application::login_url"))?;
    let here = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |p| p.as_str().to_owned());
    let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
    let separator = if login.contains('?') { '&' } else { '?' };
    Ok(Some(Response::redirect(&format!(
        "{login}{separator}next={next}"
    ))))
}

/// The error page for `error`, its detail logged.
fn render_error(page: Option<&ErrorPage>, req: &Request, error: &HttpError) -> Response {
    if let Some(detail) = &error.log_message {
        eprintln!(
            "{} {}: {}: {detail}",
            req.method(),
            req.path(),
            error.status.as_u16()
        );
    }
    match page {
        Some(page) => page(req, error),
        None => error.default_page(),
    }
    .with_status(error.status)
}

fn parse(pattern: &str) -> Pattern {
    Pattern::parse(pattern).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Runs a future that never waits on the host (all of these).
    fn run<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("the future waited on the host"),
        }
    }

    fn call(app: Application, method: &str, uri: &str) -> Response {
        let req = http::Request::builder().method(method).uri(uri);
        run(app.handle(Request::from_http(req.body(Vec::new()).unwrap())))
    }

    fn body(response: &Response) -> String {
        String::from_utf8_lossy(response.body().expect("a body in memory")).into_owned()
    }

    fn named(name: &'static str) -> impl AsyncFnOnce(&mut Request) -> Response {
        async move |req: &mut Request| {
            let params: Vec<String> = ["id", "path"]
                .iter()
                .filter_map(|p| req.param::<String>(p).ok())
                .collect();
            Response::text(format!("{name} {}", params.join(",")))
        }
    }

    #[test]
    fn the_first_matching_route_wins() {
        let app = || {
            Application::new()
                .get("/users/new", named("new"))
                .get("/users/{id}", named("user"))
                .get("/users", named("list"))
                .get("/{*path}", named("fallback"))
        };
        assert_eq!(body(&call(app(), "GET", "/users/new")), "new ");
        assert_eq!(body(&call(app(), "GET", "/users/7")), "user 7");
        assert_eq!(body(&call(app(), "GET", "/users")), "list ");
        assert_eq!(
            body(&call(app(), "GET", "/users/7/posts")),
            "fallback users/7/posts"
        );
        let reversed = Application::new()
            .get("/users/{id}", named("user"))
            .get("/users/new", named("new"));
        assert_eq!(body(&call(reversed, "GET", "/users/new")), "user new");
        assert_eq!(call(Application::new(), "GET", "/x").status(), 404);
    }

    #[test]
    fn functions_on_one_pattern_share_a_route_and_405_lists_them() {
        let app = || {
            Application::new()
                .get("/x", named("get"))
                .post("/x", named("post"))
        };
        assert_eq!(body(&call(app(), "POST", "/x")), "post ");
        let head = call(app(), "HEAD", "/x");
        assert_eq!((head.status().as_u16(), body(&head)), (200, String::new()));
        let put = call(app(), "PUT", "/x");
        assert_eq!(put.status(), 405);
        assert_eq!(put.headers()["allow"], "GET, POST, HEAD");
    }

    struct Users {
        log: Rc<RefCell<Vec<String>>>,
    }

    impl Handler for Users {
        async fn prepare(&mut self, req: &mut Request) -> Result<Option<Response>, HttpError> {
            self.log.borrow_mut().push("prepare".into());
            match req.header("x-auth") {
                Some("no") => Err(HttpError::unauthorized("who are you?")),
                Some("redirect") => Ok(Some(Response::redirect("/login"))),
                _ => Ok(None),
            }
        }

        async fn get(&mut self, req: &mut Request) -> Outcome {
            self.log.borrow_mut().push("get".into());
            Ok(Response::text(format!("user {}", req.param::<u32>("id")?)))
        }

        async fn delete(&mut self, _req: &mut Request) -> Outcome {
            Ok(Response::new(StatusCode::NO_CONTENT))
        }

        fn on_finish(&mut self, _req: &Request, status: StatusCode) {
            self.log
                .borrow_mut()
                .push(format!("finish {}", status.as_u16()));
        }

        fn allowed_methods(&self) -> &'static [Method] {
            &[Method::GET, Method::DELETE]
        }
    }

    fn users(log: &Rc<RefCell<Vec<String>>>) -> Application {
        Application::new().route("/users/{id}", Users { log: log.clone() })
    }

    fn with_header(app: Application, name: &str, value: &str) -> Response {
        let req = http::Request::get("/users/7").header(name, value);
        run(app.handle(Request::from_http(req.body(Vec::new()).unwrap())))
    }

    #[test]
    fn the_handler_lifecycle_runs_in_order() {
        let log = Rc::new(RefCell::new(Vec::new()));
        assert_eq!(body(&call(users(&log), "GET", "/users/7")), "user 7");
        assert_eq!(*log.borrow(), ["prepare", "get", "finish 200"]);

        log.borrow_mut().clear();
        let bad = call(users(&log), "GET", "/users/seven");
        assert_eq!(bad.status(), 400);
        assert!(body(&bad).contains("path parameter `id`"), "{}", body(&bad));
        assert_eq!(*log.borrow(), ["prepare", "get", "finish 400"]);

        log.borrow_mut().clear();
        assert_eq!(with_header(users(&log), "x-auth", "no").status(), 401);
        assert_eq!(*log.borrow(), ["prepare", "finish 401"]);
        let early = with_header(users(&log), "x-auth", "redirect");
        assert_eq!(early.status(), 302);
        assert_eq!(early.headers()["location"], "/login");

        let head = call(users(&log), "HEAD", "/users/7");
        assert_eq!((head.status().as_u16(), body(&head)), (200, String::new()));
        assert_eq!(call(users(&log), "DELETE", "/users/7").status(), 204);
        let post = call(users(&log), "POST", "/users/7");
        assert_eq!(post.status(), 405);
        assert_eq!(post.headers()["allow"], "GET, DELETE, HEAD");
    }

    #[test]
    fn errors_go_through_the_error_page_and_keep_their_status() {
        let app = Application::new()
            .get("/fail", async |_: &mut Request| -> Outcome {
                Err(HttpError::new(StatusCode::IM_A_TEAPOT, "short and stout"))
            })
            .error_page(|req, error| {
                Response::html(format!(
                    "<p>{} at {}: {}</p>",
                    error.status.as_u16(),
                    req.path(),
                    error.message
                ))
            });
        let teapot = call(app, "GET", "/fail");
        assert_eq!(teapot.status(), 418);
        assert_eq!(body(&teapot), "<p>418 at /fail: short and stout</p>");
        let missing = call(
            Application::new().error_page(|req, _| Response::html(req.path().to_owned())),
            "GET",
            "/nope",
        );
        assert_eq!(
            (missing.status().as_u16(), body(&missing)),
            (404, "/nope".to_owned())
        );
    }

    #[test]
    fn xsrf_is_checked_before_any_handler_when_enabled() {
        let app = || Application::new().xsrf_cookies().post("/x", named("post"));
        assert_eq!(call(app(), "POST", "/x").status(), 403);
        let req = http::Request::post("/x")
            .header("cookie", "_xsrf=t0ken")
            .header("x-xsrftoken", "t0ken");
        let ok = run(app().handle(Request::from_http(req.body(Vec::new()).unwrap())));
        assert_eq!(body(&ok), "post ");
        let off = Application::new().post("/x", named("post"));
        assert_eq!(call(off, "POST", "/x").status(), 200);
    }

    #[test]
    fn cookies_set_on_the_request_reach_the_response() {
        let app = Application::new().get("/c", async |req: &mut Request| {
            req.set_cookie(crate::Cookie::new("a", "1"));
            req.clear_cookie("b");
            Err::<Response, _>(HttpError::not_found())
        });
        let response = call(app, "GET", "/c");
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies.len(), 2);
        assert_eq!(cookies[0], "a=1");
        assert!(
            cookies[1]
                .to_str()
                .unwrap()
                .starts_with("b=; Path=/; Max-Age=0"),
            "{:?}",
            cookies[1]
        );
    }
}
