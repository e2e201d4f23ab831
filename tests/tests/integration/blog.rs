//! Tornado's blog demo, `examples/blog`, through the real binary: the first
//! author, bcrypt logins, composing and editing Markdown entries, the home
//! page, the archive, the Atom feed, and entries that outlive the process in
//! the SQLite key-value store.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cyclone_tests::{Cyclone, Reply, components, example_manifest};

/// The author the tests create.
const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery";

/// A blog served from a temp folder; its store is
/// `.cyclone/data/default.sqlite` there.
struct Blog {
    // Dropped first: the server stops before its folder goes.
    server: Cyclone,
    manifest: PathBuf,
    _dir: tempfile::TempDir,
}

impl Blog {
    fn start() -> Self {
        let (dir, manifest) = example_manifest(
            "blog",
            components::BLOG,
            &[(
                "default = \"1:blog-secret-for-local-use-only\"",
                "default = \"1:test-secret\"",
            )],
        );
        Self {
            server: Cyclone::serve(&manifest),
            manifest,
            _dir: dir,
        }
    }

    /// Stops the server and serves the same manifest and store again.
    fn restart(&mut self) {
        self.server.stop();
        self.server = Cyclone::serve(&self.manifest);
    }

    /// A new visitor with no cookies.
    fn visitor(&self) -> Visitor<'_> {
        Visitor {
            server: &self.server,
            cookies: BTreeMap::new(),
        }
    }

    /// A blog with its author created; and that author, logged in.
    fn with_author() -> (Self, BTreeMap<String, String>) {
        let blog = Self::start();
        let mut ada = blog.visitor();
        let created = ada.create_author(EMAIL, "Ada", PASSWORD, "/compose");
        assert_eq!(created.status, 303, "{}", created.body);
        assert_eq!(created.header("location"), Some("/compose"));
        let cookies = ada.cookies;
        (blog, cookies)
    }
}

/// A client that keeps the cookies it is given, like a browser.
struct Visitor<'a> {
    server: &'a Cyclone,
    cookies: BTreeMap<String, String>,
}

impl Visitor<'_> {
    fn request(&mut self, method: &str, path: &str, form: &str) -> Reply {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let cookie = cookie.join("; ");
        let mut headers = vec![("cookie", cookie.as_str())];
        if method == "POST" {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        let reply = self.server.request(method, path, &headers, form);
        for (name, value) in &reply.headers {
            if name != "set-cookie" {
                continue;
            }
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") || attributes.contains("Max-Age=-") {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.to_owned());
            }
        }
        reply
    }

    fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path, "")
    }

    /// Posts `fields` (name, value) as a form with this visitor's XSRF
    /// token, getting one first from `/auth/login` if it has none.
    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        if !self.cookies.contains_key("_xsrf") {
            self.get("/auth/create");
        }
        let token = self.cookies["_xsrf"].clone();
        let mut form = form_urlencoded(fields);
        form.push_str(&format!("&_xsrf={token}"));
        self.request("POST", path, &form)
    }

    fn create_author(&mut self, email: &str, name: &str, password: &str, next: &str) -> Reply {
        self.post(
            "/auth/create",
            &[
                ("email", email),
                ("name", name),
                ("password", password),
                ("next", next),
            ],
        )
    }

    fn log_in(&mut self, email: &str, password: &str, next: &str) -> Reply {
        self.post(
            "/auth/login",
            &[("email", email), ("password", password), ("next", next)],
        )
    }

    /// Composes an entry and returns where it was saved (`/entry/{slug}`).
    fn compose(&mut self, fields: &[(&str, &str)]) -> String {
        let saved = self.post("/compose", fields);
        assert_eq!(saved.status, 303, "{}", saved.body);
        saved.header("location").unwrap().to_owned()
    }
}

/// `a=1&b=x+y`.
fn form_urlencoded(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(name, value)| {
            let value: String = value
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    b' ' => "+".to_owned(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The entries' titles on a page, in order.
fn titles(page: &str) -> Vec<String> {
    page.split("<h1><a href=\"/entry/")
        .skip(1)
        .map(|rest| {
            let (_, after) = rest.split_once("\">").unwrap();
            after.split_once("</a>").unwrap().0.to_owned()
        })
        .collect()
}

#[test]
fn an_empty_blog_leads_a_visitor_to_create_the_first_author() {
    let blog = Blog::start();
    let mut visitor = blog.visitor();
    let home = visitor.get("/");
    assert_eq!(
        (home.status, home.header("location")),
        (302, Some("/compose"))
    );
    let compose = visitor.get("/compose");
    assert_eq!(
        (compose.status, compose.header("location")),
        (302, Some("/auth/login?next=%2Fcompose"))
    );
    let login = visitor.get("/auth/login?next=%2Fcompose");
    assert_eq!(
        (login.status, login.header("location")),
        (302, Some("/auth/create?next=%2Fcompose"))
    );
    let form = visitor.get("/auth/create?next=%2Fcompose");
    assert_eq!(form.status, 200);
    for field in ["email", "name", "password"] {
        assert!(
            form.body.contains(&format!("name=\"{field}\"")),
            "{}",
            form.body
        );
    }
    let token = &visitor.cookies["_xsrf"];
    assert!(
        form.body
            .contains(&format!("name=\"_xsrf\" value=\"{token}\"")),
        "{}",
        form.body
    );
    assert!(
        form.body
            .contains("<input type=\"hidden\" name=\"next\" value=\"/compose\">"),
        "{}",
        form.body
    );
    // The layout links the stylesheet by its content-hashed URL.
    let css = form
        .body
        .split("href=\"/static/blog.css?v=")
        .nth(1)
        .and_then(|rest| rest.split_once('"'))
        .expect("a versioned stylesheet link")
        .0
        .to_owned();
    let style = visitor.get(&format!("/static/blog.css?v={css}"));
    assert_eq!(style.status, 200);
    assert!(style.body.contains(".entry"), "{}", style.body);
}

#[test]
fn the_author_composes_an_entry_that_shows_everywhere() {
    let (blog, cookies) = Blog::with_author();
    let mut ada = blog.visitor();
    ada.cookies = cookies;
    let form = ada.get("/compose");
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("name=\"title\""), "{}", form.body);
    assert!(form.body.contains("name=\"markdown\""), "{}", form.body);

    let at = ada.compose(&[
        ("title", "Hello, Storm!"),
        (
            "markdown",
            "# Greetings\n\nThe *first* post, with <script>alert(1)</script> in it.",
        ),
    ]);
    assert_eq!(at, "/entry/hello-storm");

    let mut reader = blog.visitor();
    let entry = reader.get("/entry/hello-storm");
    assert_eq!(entry.status, 200);
    assert!(
        entry.body.contains("<h1>Greetings</h1>"),
        "Markdown is rendered: {}",
        entry.body
    );
    assert!(entry.body.contains("<em>first</em>"), "{}", entry.body);
    assert!(
        !entry.body.contains("<script>") && entry.body.contains("&lt;script&gt;"),
        "HTML in the Markdown is shown as text: {}",
        entry.body
    );
    assert!(
        !entry.body.contains("Edit this post"),
        "a reader is not offered editing"
    );
    assert!(entry.body.contains("Sign in</a> to compose/edit"));

    let home = reader.get("/");
    assert_eq!(home.status, 200);
    assert_eq!(titles(&home.body), ["Hello, Storm!"]);
    let archive = reader.get("/archive");
    assert!(
        archive
            .body
            .contains("<a href=\"/entry/hello-storm\">Hello, Storm!</a>"),
        "{}",
        archive.body
    );

    let feed = reader.get("/feed");
    assert_eq!(feed.status, 200);
    assert_eq!(
        feed.header("content-type"),
        Some("application/atom+xml; charset=utf-8")
    );
    let xml = roxmltree::Document::parse(&feed.body)
        .unwrap_or_else(|e| panic!("the feed is not XML ({e}): {}", feed.body));
    let root = xml.root_element();
    assert_eq!(root.tag_name().name(), "feed");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2005/Atom")
    );
    let entries: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("entry"))
        .collect();
    assert_eq!(entries.len(), 1);
    let child = |name: &str| {
        entries[0]
            .children()
            .find(|n| n.has_tag_name(name))
            .unwrap_or_else(|| panic!("the entry has no <{name}>"))
    };
    assert_eq!(child("title").text(), Some("Hello, Storm!"));
    let link = child("link").attribute("href").unwrap();
    assert_eq!(link, blog.server.url("/entry/hello-storm"));
    assert!(
        child("content")
            .text()
            .unwrap()
            .contains("<h1>Greetings</h1>"),
        "the content is the entry's HTML, escaped once in the XML"
    );
    for date in ["updated", "published"] {
        let text = child(date).text().unwrap();
        assert!(
            text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T',
            "{date}: {text}"
        );
    }
}

#[test]
fn editing_keeps_the_address_and_a_repeated_title_gets_a_new_one() {
    let (blog, cookies) = Blog::with_author();
    let mut ada = blog.visitor();
    ada.cookies = cookies;
    assert_eq!(
        ada.compose(&[("title", "Hello, Storm!"), ("markdown", "one")]),
        "/entry/hello-storm"
    );
    assert_eq!(
        ada.compose(&[("title", "hello storm"), ("markdown", "two")]),
        "/entry/hello-storm-2"
    );

    let form = ada.get("/compose?id=1");
    assert!(
        form.body.contains("value=\"Hello, Storm!\""),
        "{}",
        form.body
    );
    assert!(
        form.body
            .contains("<input type=\"hidden\" name=\"id\" value=\"1\">"),
        "{}",
        form.body
    );
    assert_eq!(
        ada.compose(&[
            ("id", "1"),
            ("title", "Hello again"),
            ("markdown", "**edited**")
        ]),
        "/entry/hello-storm",
        "an edit keeps the slug"
    );
    let entry = ada.get("/entry/hello-storm");
    assert!(entry.body.contains("Hello again"), "{}", entry.body);
    assert!(
        entry.body.contains("<strong>edited</strong>"),
        "{}",
        entry.body
    );
    assert!(
        entry.body.contains("href=\"/compose?id=1\">Edit this post"),
        "the author is offered editing: {}",
        entry.body
    );

    assert_eq!(ada.get("/compose?id=99").status, 404);
    let unknown = ada.post(
        "/compose",
        &[("id", "99"), ("title", "x"), ("markdown", "y")],
    );
    assert_eq!(unknown.status, 404);
    assert_eq!(ada.get("/entry/no-such-entry").status, 404);
    let untitled = ada.post("/compose", &[("title", "  "), ("markdown", "y")]);
    assert_eq!(untitled.status, 400);
}

#[test]
fn the_home_page_shows_the_five_latest_and_the_archive_all() {
    let (blog, cookies) = Blog::with_author();
    let mut ada = blog.visitor();
    ada.cookies = cookies;
    for n in 1..=7 {
        ada.compose(&[("title", &format!("Post {n}")), ("markdown", "text")]);
    }
    let home = ada.get("/");
    assert_eq!(
        titles(&home.body),
        ["Post 7", "Post 6", "Post 5", "Post 4", "Post 3"]
    );
    let archive = ada.get("/archive");
    let listed: Vec<&str> = archive
        .body
        .match_indices("\">Post ")
        .map(|(at, _)| &archive.body[at + 2..at + 8])
        .collect();
    assert_eq!(
        listed,
        [
            "Post 7", "Post 6", "Post 5", "Post 4", "Post 3", "Post 2", "Post 1"
        ]
    );
}

#[test]
fn logging_in_checks_the_password_and_logging_out_forgets() {
    let (blog, _) = Blog::with_author();
    let mut visitor = blog.visitor();

    let wrong = visitor.log_in(EMAIL, "wrong password", "/compose");
    assert_eq!(wrong.status, 200);
    assert!(
        wrong.body.contains("Error: incorrect password"),
        "{}",
        wrong.body
    );
    assert!(wrong.set_cookie("blogdemo_user").is_none());
    let unknown = visitor.log_in("nobody@example.com", PASSWORD, "/");
    assert!(
        unknown.body.contains("Error: email not found"),
        "{}",
        unknown.body
    );
    assert!(visitor.get("/compose").status == 302, "still not logged in");

    let right = visitor.log_in(&EMAIL.to_uppercase(), PASSWORD, "/compose");
    assert_eq!(right.status, 303, "{}", right.body);
    assert_eq!(right.header("location"), Some("/compose"));
    let cookie = right.set_cookie("blogdemo_user").unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert_eq!(visitor.get("/compose").status, 200);

    // Another site is never where a login or logout leads.
    let elsewhere = visitor.log_in(EMAIL, PASSWORD, "https://example.com/");
    assert_eq!(elsewhere.header("location"), Some("/"));
    let out = visitor.get("/auth/logout?next=//example.com/");
    assert_eq!((out.status, out.header("location")), (302, Some("/")));
    assert!(!visitor.cookies.contains_key("blogdemo_user"));
    assert_eq!(visitor.get("/compose").status, 302);
    let out = visitor.get("/auth/logout?next=%2Farchive");
    assert_eq!(out.header("location"), Some("/archive"));
}

#[test]
fn composing_needs_a_login_and_the_xsrf_token() {
    let (blog, cookies) = Blog::with_author();
    let mut stranger = blog.visitor();
    let form = stranger.get("/compose?id=1");
    assert_eq!(
        (form.status, form.header("location")),
        (302, Some("/auth/login?next=%2Fcompose%3Fid%3D1"))
    );
    let post = stranger.post("/compose", &[("title", "spam"), ("markdown", "spam")]);
    assert_eq!(post.status, 403, "a POST without a login is refused");

    // A forged login cookie is no login.
    let mut forger = blog.visitor();
    forger
        .cookies
        .insert("blogdemo_user".into(), "1|9999999999|MQ|forged".into());
    assert_eq!(forger.get("/compose").status, 302);

    // The author's own cookie, without the XSRF token in the form: refused
    // before any handler runs.
    let mut ada = blog.visitor();
    ada.cookies = cookies;
    let forged = ada.request("POST", "/compose", "title=x&markdown=y");
    assert_eq!(forged.status, 403);
    assert_eq!(ada.get("/").status, 302, "nothing was saved");
}

#[test]
fn there_is_one_first_author() {
    let (blog, _) = Blog::with_author();
    let mut second = blog.visitor();
    let refused = second.create_author("bob@example.com", "Bob", "hunter2", "/");
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("author already created"));
    assert!(refused.set_cookie("blogdemo_user").is_none());
    let login = second.get("/auth/login");
    assert_eq!(login.status, 200, "with an author, the login form shows");
}

#[test]
fn passwords_are_stored_as_bcrypt_hashes_and_entries_outlive_the_process() {
    let (mut blog, cookies) = Blog::with_author();
    let mut ada = blog.visitor();
    ada.cookies = cookies.clone();
    ada.compose(&[("title", "Kept"), ("markdown", "still *here*")]);

    blog.restart();
    let mut reader = blog.visitor();
    let entry = reader.get("/entry/kept");
    assert_eq!(entry.status, 200);
    assert!(entry.body.contains("still <em>here</em>"));
    let mut ada = blog.visitor();
    assert_eq!(ada.log_in(EMAIL, PASSWORD, "/").status, 303);
    // The login cookie from before the restart still works: the secret is
    // the manifest's, not the process's.
    let mut earlier = blog.visitor();
    earlier.cookies = cookies;
    assert_eq!(earlier.get("/compose").status, 200);

    let db =
        rusqlite::Connection::open(blog.manifest.with_file_name(".cyclone/data/default.sqlite"))
            .unwrap();
    let author: Vec<u8> = db
        .query_row("SELECT value FROM kv WHERE key = 'author:1'", [], |row| {
            row.get(0)
        })
        .unwrap();
    let author: serde_json::Value = serde_json::from_slice(&author).unwrap();
    let hash = author["hashed_password"].as_str().unwrap();
    assert!(hash.starts_with("$2b$12$"), "bcrypt at cost 12: {hash}");
    let plain: i64 = db
        .query_row(
            "SELECT count(*) FROM kv WHERE CAST(value AS TEXT) LIKE ?1",
            [format!("%{PASSWORD}%")],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(plain, 0, "the password is stored nowhere as written");
}
