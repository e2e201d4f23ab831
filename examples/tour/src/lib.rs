//! A tour of cyclone's SDK: the pieces of `tornado.web` an app needs, in one
//! component. Serve it with `cyclone serve examples/tour/cyclone.toml`.
//!
//! | Route | What it shows |
//! |---|---|
//! | `GET /` | an HTML page from templates (`templates/`: a base layout, an include, a loop, a conditional, escaping) |
//! | `GET /users/{id}` | a typed path parameter (not a number → 400), JSON |
//! | `DELETE /users/{id}` | 204 |
//! | `POST /users` | a JSON body into a serde type (bad JSON → 400), 201 + `Location` |
//! | `PUT /users` | a verb the handler lacks → 405 with `Allow` |
//! | `GET /search?q=…&tag=a&tag=b` | single and repeated query arguments |
//! | `GET /login`, `POST /login` | a form with the XSRF token; a signed session cookie; back to `?next=` |
//! | `GET /me` | `prepare` checks the session: 401 when missing, tampered with or expired |
//! | `GET /account`, `POST /account` | `.authenticated()`: no session → a GET goes to `/login?next=/account`, a POST gets 403 |
//! | `GET /old` | a permanent redirect |
//! | `GET /stream` | five chunks, 200 ms apart, each flushed as it is written |
//! | anything else | a custom 404 page, from a template, through the application's error page |

use std::time::Duration;

use askama::Template;
use cyclone_sdk::time::sleep;
use cyclone_sdk::{
    Application, Handler, HttpError, Request, Response, StatusCode, handler_impl, variables,
};
use serde::{Deserialize, Serialize};

/// The session cookie's name.
const SESSION: &str = "session";

#[cyclone_sdk::handler]
async fn handle(req: Request) -> Response {
    Application::new()
        .cookie_secret_variable("cookie_secret")
        .xsrf_cookies()
        .user_cookie(SESSION)
        .login_url("/login")
        .get("/", home)
        .route("/users", Users)
        .route("/users/{id}", User)
        .get("/search", search)
        .get("/login", login_form)
        .post("/login", login)
        .route(
            "/me",
            Me {
                name: String::new(),
            },
        )
        .route("/account", Account)
        .authenticated()
        .get("/old", async |_: &mut Request| {
            Response::permanent_redirect("/")
        })
        .get("/stream", stream)
        .error_page(error_page)
        .handle(req)
        .await
}

/// `templates/home.html`, which extends `base.html` (it includes `nav.html`).
#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    title: &'static str,
    css: String,
    /// The logged-in user's name, escaped like every value in the page.
    user: Option<String>,
    links: Vec<(&'static str, &'static str)>,
}

async fn home(req: &mut Request) -> Result<Response, HttpError> {
    Response::render(&Home {
        title: "cyclone Tour",
        // The stylesheet is a static file the host serves; its URL carries a
        // hash of its content, so browsers may cache it for good.
        css: cyclone_sdk::static_url("tour.css"),
        user: req.current_user()?,
        links: vec![
            ("/users/7", "/users/7"),
            ("/search?q=wasm&tag=rust&tag=web", "/search"),
            ("/login", "/login"),
            ("/me", "/me"),
            ("/account", "/account"),
            ("/stream", "/stream"),
        ],
    })
}

/// A user as the API shows it.
#[derive(Serialize)]
struct UserView {
    id: u64,
    name: String,
}

/// What `POST /users` accepts.
#[derive(Deserialize)]
struct NewUser {
    name: String,
}

/// `/users`: only `POST`.
struct Users;

#[handler_impl]
impl Handler for Users {
    async fn post(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let new: NewUser = req.json()?;
        if new.name.trim().is_empty() {
            return Err(HttpError::bad_request("`name` must not be empty"));
        }
        // Instances keep no state between requests; a real app would insert
        // into a database and get the id back.
        let id = new.name.len() as u64 * 1000 + 1;
        let location = format!("/users/{id}");
        Ok(Response::json(&UserView { id, name: new.name })
            .with_status(StatusCode::CREATED)
            .with_header("location", location))
    }
}

/// `/users/{id}`: `GET` and `DELETE`.
struct User;

#[handler_impl]
impl Handler for User {
    async fn get(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let id: u64 = req.param("id")?;
        Ok(Response::json(&UserView {
            id,
            name: format!("user {id}"),
        }))
    }

    async fn delete(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let _id: u64 = req.param("id")?;
        Ok(Response::new(StatusCode::NO_CONTENT))
    }
}

async fn search(req: &mut Request) -> Result<Response, HttpError> {
    let q = req.argument("q")?;
    let tags = req.arguments("tag");
    let page: u32 = req
        .argument_or("page", "1")
        .parse()
        .map_err(|_| HttpError::bad_request("`page` must be a number"))?;
    Ok(Response::json(
        &serde_json::json!({ "q": q, "tags": tags, "page": page }),
    ))
}

async fn login_form(req: &mut Request) -> Response {
    let token = req.xsrf_token();
    let next =
        html_escape::encode_double_quoted_attribute(&req.argument_or("next", "")).into_owned();
    Response::html(format!(
        "<!doctype html>\n<title>Log in</title>\n<form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"_xsrf\" value=\"{token}\">\n\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\n\
         <label>Name <input name=\"name\"></label>\n<button>Log in</button>\n</form>\n"
    ))
}

async fn login(req: &mut Request) -> Result<Response, HttpError> {
    let name = req.argument("name")?;
    if name.trim().is_empty() {
        return Err(HttpError::bad_request("`name` must not be empty"));
    }
    let max_age = variables::get("session_max_age_secs")
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(86_400);
    req.set_signed_cookie(SESSION, &name, Duration::from_secs(max_age))?;
    // Back where the login was asked for, but only to a path of this site:
    // `next` comes from the client.
    Ok(Response::redirect_with(
        StatusCode::SEE_OTHER,
        &req.next_url("/me"),
    ))
}

/// `/account`: only for a logged-in user (`.authenticated()`), who is the
/// request's current user by the time a verb runs.
struct Account;

#[handler_impl]
impl Handler for Account {
    async fn get(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let name = req.current_user()?.unwrap_or_default();
        Ok(Response::text(format!("the account of {name}\n")))
    }

    async fn post(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let name = req.current_user()?.unwrap_or_default();
        Ok(Response::text(format!("saved for {name}\n")))
    }
}

/// `/me`: `prepare` authenticates, like Tornado's `get_current_user`.
struct Me {
    name: String,
}

#[handler_impl]
impl Handler for Me {
    async fn prepare(&mut self, req: &mut Request) -> Result<Option<Response>, HttpError> {
        self.name = req
            .signed_cookie(SESSION)?
            .ok_or_else(|| HttpError::unauthorized("log in at /login"))?;
        Ok(None)
    }

    async fn get(&mut self, _req: &mut Request) -> Result<Response, HttpError> {
        Ok(Response::json(&serde_json::json!({ "name": self.name })))
    }
}

async fn stream(_req: &mut Request) -> Response {
    Response::stream("text/plain; charset=utf-8", async |body| {
        for i in 1..=5 {
            if i > 1 {
                sleep(Duration::from_millis(200)).await;
            }
            body.write(format!("chunk {i}\n"));
            body.flush().await?;
        }
        Ok(())
    })
}

/// `templates/error.html`: the 404 page, in the site's layout.
#[derive(Template)]
#[template(path = "error.html")]
struct NotFound<'a> {
    css: String,
    user: Option<String>,
    path: &'a str,
}

fn error_page(req: &Request, error: &HttpError) -> Response {
    if error.status == StatusCode::NOT_FOUND {
        let page = NotFound {
            css: cyclone_sdk::static_url("tour.css"),
            user: None,
            path: req.path(),
        };
        // The application gives the page the error's status.
        if let Ok(response) = Response::render(&page) {
            return response;
        }
    }
    error.default_page()
}
