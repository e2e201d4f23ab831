//! A tour of cyclone's SDK: the pieces of `tornado.web` an app needs, in one
//! component. Serve it with `cyclone serve examples/tour/cyclone.toml`.
//!
//! | Route | What it shows |
//! |---|---|
//! | `GET /` | an HTML page |
//! | `GET /users/{id}` | a typed path parameter (not a number → 400), JSON |
//! | `DELETE /users/{id}` | 204 |
//! | `POST /users` | a JSON body into a serde type (bad JSON → 400), 201 + `Location` |
//! | `PUT /users` | a verb the handler lacks → 405 with `Allow` |
//! | `GET /search?q=…&tag=a&tag=b` | single and repeated query arguments |
//! | `GET /login`, `POST /login` | a form with the XSRF token; a signed session cookie |
//! | `GET /me` | `prepare` checks the session: 401 when missing, tampered with or expired |
//! | `GET /old` | a permanent redirect |
//! | `GET /stream` | five chunks, 200 ms apart, each flushed as it is written |
//! | anything else | a custom 404 page through the application's error page |

use std::time::Duration;

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
        .get("/old", async |_: &mut Request| {
            Response::permanent_redirect("/")
        })
        .get("/stream", stream)
        .error_page(error_page)
        .handle(req)
        .await
}

async fn home(_req: &mut Request) -> Response {
    // The stylesheet is a static file the host serves; its URL carries a
    // hash of its content, so browsers may cache it for good.
    let css = cyclone_sdk::static_url("tour.css");
    Response::html(format!(
        "<!doctype html>\n<title>cyclone tour</title>\n\
         <link rel=\"stylesheet\" href=\"{css}\">\n<h1>cyclone tour</h1>\n<ul>\n\
         <li><a href=\"/users/7\">/users/7</a></li>\n\
         <li><a href=\"/search?q=wasm&amp;tag=rust&amp;tag=web\">/search</a></li>\n\
         <li><a href=\"/login\">/login</a> then <a href=\"/me\">/me</a></li>\n\
         <li><a href=\"/stream\">/stream</a></li>\n</ul>\n"
    ))
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
    Response::html(format!(
        "<!doctype html>\n<title>Log in</title>\n<form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"_xsrf\" value=\"{token}\">\n\
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
    Ok(Response::redirect_with(StatusCode::SEE_OTHER, "/me"))
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

fn error_page(req: &Request, error: &HttpError) -> Response {
    if error.status == StatusCode::NOT_FOUND {
        let path = html_escape::encode_text(req.path());
        return Response::html(format!(
            "<!doctype html>\n<title>Not found</title>\n<h1>Not found</h1>\n\
             <p>There is no page at <code>{path}</code>. Try <a href=\"/\">the tour's start</a>.</p>\n"
        ));
    }
    error.default_page()
}
