//! Tornado's blog demo on cyclone: entries written in Markdown by a logged-in
//! author, kept in the key-value store, with an Atom feed. Serve it with
//! `cyclone up examples/blog`.
//!
//! | Route | What it does |
//! |---|---|
//! | `GET /` | the five latest entries; with none yet, a redirect to `/compose` |
//! | `GET /archive` | every entry, newest first |
//! | `GET /feed` | the ten latest entries as an Atom feed |
//! | `GET /entry/{slug}` | one entry; 404 for an unknown slug |
//! | `GET /compose[?id=N]` | the form for a new entry, or to edit entry `N` (logged in only) |
//! | `POST /compose` | `title`, `markdown` and `id` to edit; then to `/entry/{slug}` |
//! | `GET`, `POST /auth/create` | the first author: `email`, `name`, `password` |
//! | `GET`, `POST /auth/login` | `email`, `password`; then to `next` or `/` |
//! | `GET /auth/logout` | forgets the login; then to `next` or `/` |
//!
//! Passwords are hashed with bcrypt at cost 12 (Tornado's demo uses
//! `bcrypt.gensalt()`, also 12) inside the handler: a few hundred
//! milliseconds of CPU, preempted like any guest, so other requests do not
//! wait for it. Every form carries the XSRF token; the login is a signed
//! cookie holding the author's id.

mod store;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use askama::Template;
use cyclone_sdk::{
    Application, Handler, HttpError, Request, Response, StatusCode, handler_impl, variables,
};
use pulldown_cmark::{Event, Parser};
use unicode_normalization::UnicodeNormalization;

use store::{Blog, Entry};

/// The signed cookie with the logged-in author's id (Tornado's name).
const USER_COOKIE: &str = "blogdemo_user";

/// How long a login lasts: Tornado's default for signed cookies.
const LOGIN_DAYS: u64 = 30;

/// bcrypt's cost: 2^12 rounds, as Tornado's demo hashes.
const BCRYPT_COST: u32 = 12;

#[cyclone_sdk::handler]
async fn handle(req: Request) -> Response {
    Application::new()
        .cookie_secret_variable("cookie_secret")
        .xsrf_cookies()
        .user_cookie(USER_COOKIE)
        .login_url("/auth/login")
        .get("/", home)
        .get("/archive", archive)
        .get("/feed", feed)
        .get("/entry/{slug}", entry)
        .route("/compose", Compose)
        .authenticated()
        .route("/auth/create", AuthCreate)
        .route("/auth/login", AuthLogin)
        .get("/auth/logout", logout)
        .handle(req)
        .await
}

/// What every page's layout (`templates/base.html`) shows.
struct Page {
    title: String,
    css: String,
    logged_in: bool,
    /// This page's path and query, for `next` in the sign-in and sign-out
    /// links.
    here: String,
}

impl Page {
    fn new(req: &mut Request) -> Result<Self, HttpError> {
        let here = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        Ok(Self {
            title: blog_title(),
            css: cyclone_sdk::static_url("blog.css"),
            logged_in: req.current_user()?.is_some(),
            here,
        })
    }
}

/// An entry as a page shows it.
struct EntryView {
    entry: Entry,
    date: String,
}

impl From<Entry> for EntryView {
    fn from(entry: Entry) -> Self {
        let date = format_date(entry.published);
        Self { entry, date }
    }
}

/// `templates/home.html`.
#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    page: Page,
    entries: Vec<EntryView>,
}

async fn home(req: &mut Request) -> Result<Response, HttpError> {
    let entries = Blog::open()?.latest(Some(5))?;
    if entries.is_empty() {
        return Ok(Response::redirect("/compose"));
    }
    Response::render(&Home {
        page: Page::new(req)?,
        entries: entries.into_iter().map(EntryView::from).collect(),
    })
}

/// `templates/archive.html`.
#[derive(Template)]
#[template(path = "archive.html")]
struct Archive {
    page: Page,
    entries: Vec<EntryView>,
}

async fn archive(req: &mut Request) -> Result<Response, HttpError> {
    let entries = Blog::open()?.latest(None)?;
    Response::render(&Archive {
        page: Page::new(req)?,
        entries: entries.into_iter().map(EntryView::from).collect(),
    })
}

/// `templates/entry.html`.
#[derive(Template)]
#[template(path = "entry.html")]
struct EntryPage {
    page: Page,
    entry: EntryView,
}

async fn entry(req: &mut Request) -> Result<Response, HttpError> {
    let slug: String = req.param("slug")?;
    let entry = Blog::open()?
        .entry_by_slug(&slug)?
        .ok_or_else(HttpError::not_found)?;
    Response::render(&EntryPage {
        page: Page::new(req)?,
        entry: entry.into(),
    })
}

/// `templates/feed.xml`: Atom, every value escaped as XML.
#[derive(Template)]
#[template(path = "feed.xml")]
struct Feed {
    title: String,
    /// `http://HOST`, from the request's `Host`.
    site: String,
    updated: String,
    entries: Vec<FeedEntry>,
}

/// An entry as the feed shows it.
struct FeedEntry {
    entry: Entry,
    published: String,
    updated: String,
}

async fn feed(req: &mut Request) -> Result<Response, HttpError> {
    let entries = Blog::open()?.latest(Some(10))?;
    let updated = entries
        .iter()
        .map(|e| e.updated)
        .max()
        .unwrap_or_else(unix_now);
    // The host the client asked for; wasi:http gives it as the authority.
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.header("host"))
        .unwrap_or("localhost")
        .to_owned();
    let feed = Feed {
        title: blog_title(),
        site: format!("http://{host}"),
        updated: format_rfc3339(updated),
        entries: entries
            .into_iter()
            .map(|entry| FeedEntry {
                published: format_rfc3339(entry.published),
                updated: format_rfc3339(entry.updated),
                entry,
            })
            .collect(),
    };
    Response::render_as("application/atom+xml; charset=utf-8", &feed)
}

/// `templates/compose.html`.
#[derive(Template)]
#[template(path = "compose.html")]
struct ComposePage {
    page: Page,
    xsrf: String,
    entry: Option<Entry>,
}

/// `/compose`, for the logged-in author only (`.authenticated()`).
struct Compose;

impl Compose {
    /// The entry `?id=` names, when it names one; 404 for an unknown id.
    fn entry_to_edit(req: &Request, blog: &Blog) -> Result<Option<Entry>, HttpError> {
        let id = req.argument_or("id", "");
        if id.is_empty() {
            return Ok(None);
        }
        let id: i64 = id
            .parse()
            .map_err(|_| HttpError::bad_request("`id` must be a number"))?;
        blog.entry(id)?.ok_or_else(HttpError::not_found).map(Some)
    }
}

#[handler_impl]
impl Handler for Compose {
    async fn get(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let entry = Self::entry_to_edit(req, &Blog::open()?)?;
        Response::render(&ComposePage {
            xsrf: req.xsrf_token(),
            page: Page::new(req)?,
            entry,
        })
    }

    async fn post(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let title = req.argument("title")?;
        let markdown = req.argument("markdown")?;
        if title.trim().is_empty() {
            return Err(HttpError::bad_request("the title must not be empty"));
        }
        let blog = Blog::open()?;
        let entry = match Self::entry_to_edit(req, &blog)? {
            Some(mut entry) => {
                entry.title = title;
                entry.html = markdown_to_html(&markdown);
                entry.markdown = markdown;
                entry.updated = unix_now();
                blog.save_entry(&entry)?;
                entry
            }
            None => {
                let author_id = author_id(req)?;
                blog.create_entry(author_id, &title, &markdown, unix_now())?
            }
        };
        Ok(Response::redirect_with(
            StatusCode::SEE_OTHER,
            &format!("/entry/{}", entry.slug),
        ))
    }
}

/// The logged-in author's id.
fn author_id(req: &mut Request) -> Result<i64, HttpError> {
    req.current_user()?
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| HttpError::forbidden("log in to write"))
}

/// `templates/auth.html`: the form to create the first author or to log in.
#[derive(Template)]
#[template(path = "auth.html")]
struct AuthPage {
    page: Page,
    xsrf: String,
    /// `create` or `login`.
    action: &'static str,
    next: String,
    error: Option<&'static str>,
}

impl AuthPage {
    fn render(
        req: &mut Request,
        action: &'static str,
        error: Option<&'static str>,
    ) -> Result<Response, HttpError> {
        Response::render(&AuthPage {
            xsrf: req.xsrf_token(),
            next: req.next_url(""),
            page: Page::new(req)?,
            action,
            error,
        })
    }
}

/// Logs the author in with the signed cookie and goes to `next` or `/`.
fn log_in(req: &mut Request, author_id: i64) -> Result<Response, HttpError> {
    req.set_signed_cookie(
        USER_COOKIE,
        &author_id.to_string(),
        Duration::from_secs(LOGIN_DAYS * 86_400),
    )?;
    Ok(Response::redirect_with(
        StatusCode::SEE_OTHER,
        &req.next_url("/"),
    ))
}

/// `/auth/create`: the first author. Once there is one, creating another is
/// refused (400), as in Tornado's demo.
struct AuthCreate;

#[handler_impl]
impl Handler for AuthCreate {
    async fn get(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        AuthPage::render(req, "create", None)
    }

    async fn post(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let blog = Blog::open()?;
        // Checked before hashing, so a refused request costs no bcrypt, and
        // again atomically when saving.
        if blog.any_author_exists()? {
            return Err(HttpError::bad_request("author already created"));
        }
        let email = req.argument("email")?;
        let name = req.argument("name")?;
        let password = req.argument("password")?;
        if email.trim().is_empty() || password.is_empty() {
            return Err(HttpError::bad_request("an email and a password are needed"));
        }
        let hashed = bcrypt::hash(&password, BCRYPT_COST)
            .map_err(|e| HttpError::internal(format!("hashing a password: {e}")))?;
        let id = blog
            .create_first_author(&email, &name, hashed)?
            .ok_or_else(|| HttpError::bad_request("author already created"))?;
        log_in(req, id)
    }
}

/// `/auth/login`. With no author yet, the form is `/auth/create`'s.
struct AuthLogin;

#[handler_impl]
impl Handler for AuthLogin {
    async fn get(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        if !Blog::open()?.any_author_exists()? {
            let next = req.next_url("");
            let create = if next.is_empty() {
                "/auth/create".to_owned()
            } else {
                let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
                format!("/auth/create?next={next}")
            };
            return Ok(Response::redirect(&create));
        }
        AuthPage::render(req, "login", None)
    }

    async fn post(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let email = req.argument("email")?;
        let password = req.argument("password")?;
        let Some(author) = Blog::open()?.author_by_email(&email)? else {
            return AuthPage::render(req, "login", Some("email not found"));
        };
        let matches = bcrypt::verify(&password, &author.hashed_password)
            .map_err(|e| HttpError::internal(format!("checking a password: {e}")))?;
        if !matches {
            return AuthPage::render(req, "login", Some("incorrect password"));
        }
        log_in(req, author.id)
    }
}

async fn logout(req: &mut Request) -> Response {
    req.clear_cookie(USER_COOKIE);
    Response::redirect(&req.next_url("/"))
}

/// Tornado's demo's slug: the title decomposed (NFKD), each run of
/// characters that are not letters, digits or `_` made one `-`, lower case,
/// ASCII only; `entry` when nothing is left. `Hello, Storm!` → `hello-storm`.
pub(crate) fn slug(title: &str) -> String {
    let spaced: String = title
        .nfkd()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let slug = spaced
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("-");
    let slug: String = slug.chars().filter(char::is_ascii).collect();
    if slug.is_empty() {
        "entry".to_owned()
    } else {
        slug
    }
}

/// Markdown to HTML (CommonMark with tables and strikethrough). HTML written
/// in the Markdown is shown as text, not passed through: what an author
/// types cannot put a script in a reader's page.
pub(crate) fn markdown_to_html(markdown: &str) -> String {
    let options =
        pulldown_cmark::Options::ENABLE_TABLES | pulldown_cmark::Options::ENABLE_STRIKETHROUGH;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// The blog's name: the app variable `blog_title`.
fn blog_title() -> String {
    variables::get("blog_title").unwrap_or_else(|| "cyclone Blog".to_owned())
}

/// Seconds since 1970.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `December 3, 2026 at 07:12 UTC`.
fn format_date(secs: i64) -> String {
    let format = time::macros::format_description!(
        "[month repr:long] [day padding:none], [year] at [hour]:[minute] UTC"
    );
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// `2026-12-03T07:12:00Z`, as Atom wants dates.
fn format_rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_made_as_tornado_makes_them() {
        assert_eq!(slug("Hello, Storm!"), "hello-storm");
        assert_eq!(slug("  Rust  &  WebAssembly "), "rust-webassembly");
        assert_eq!(slug("snake_case stays"), "snake_case-stays");
        // NFKD splits an accent off its letter; the accent is not a word
        // character, so it splits the word, as Python's `\w` does.
        assert_eq!(slug("Café"), "cafe");
        assert_eq!(slug("ﬁne"), "fine");
        assert_eq!(slug("日本"), "entry");
        assert_eq!(slug("!!!"), "entry");
    }

    #[test]
    fn markdown_renders_but_html_in_it_is_text() {
        assert_eq!(
            markdown_to_html("# Hi\n\n*there*"),
            "<h1>Hi</h1>\n<p><em>there</em></p>\n"
        );
        let html = markdown_to_html("<script>alert(1)</script>\n\nsay <b>hi</b>");
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn dates_read_as_people_and_feeds_want() {
        assert_eq!(format_date(1_796_281_920), "December 3, 2026 at 07:12 UTC");
        assert_eq!(format_rfc3339(1_796_281_920), "2026-12-03T07:12:00Z");
    }
}
