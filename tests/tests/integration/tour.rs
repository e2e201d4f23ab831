//! The SDK's web framework through `examples/tour`: routes, JSON,
//! arguments, signed cookies, XSRF, streaming and error pages. The suite runs
//! twice: as `tour` against the WASI 0.2 build and as `tour_p3` against the
//! WASI 0.3 build (cyclone-sdk's `wasip3` feature).

use std::time::Duration;

use cyclone_tests::{Cyclone, Reply, components, example_manifest};

/// The build under test: this file is also the module `tour_p3`.
fn component() -> &'static str {
    if module_path!().ends_with("_p3") {
        components::TOUR_P3
    } else {
        components::TOUR
    }
}

/// The tour served from its own manifest, with the cookie secret and session
/// length replaced by `secret` and `max_age_secs`.
fn tour_with(secret: &str, max_age_secs: &str) -> Cyclone {
    let (dir, path) = example_manifest(
        "tour",
        component(),
        &[
            (
                "default = \"1:tour-secret-for-local-use-only\"",
                &format!("default = {secret:?}"),
            ),
            (
                "default = \"86400\"",
                &format!("default = {max_age_secs:?}"),
            ),
        ],
    );
    let server = Cyclone::serve(&path);
    drop(dir); // the manifest is read at start-up
    server
}

fn tour() -> Cyclone {
    tour_with("1:test-secret", "86400")
}

/// A client's XSRF token: `GET /login` sets the `_xsrf` cookie and puts the
/// same token in the form.
fn xsrf_token(server: &Cyclone) -> String {
    let form = server.get("/login");
    assert_eq!(form.status, 200);
    let token = form
        .cookie("_xsrf")
        .expect("GET /login sets _xsrf")
        .to_owned();
    assert_eq!(token.len(), 32, "{token}");
    assert!(
        form.body
            .contains(&format!("name=\"_xsrf\" value=\"{token}\"")),
        "the form carries the token: {}",
        form.body
    );
    token
}

/// `method path` with the XSRF cookie and header set to `token`.
fn with_xsrf(server: &Cyclone, method: &str, path: &str, token: &str, body: &str) -> Reply {
    let cookie = format!("_xsrf={token}");
    server.request(
        method,
        path,
        &[("cookie", &cookie), ("x-xsrftoken", token)],
        body,
    )
}

/// Posts the login form `fields` (urlencoded, `_xsrf` added) with the XSRF
/// cookie `token`.
fn post_login(server: &Cyclone, token: &str, fields: &str) -> Reply {
    server.request(
        "POST",
        "/login",
        &[
            ("cookie", &format!("_xsrf={token}")),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &format!("{fields}&_xsrf={token}"),
    )
}

/// Logs in as `name` through the form and returns the session cookie's value.
fn log_in(server: &Cyclone, name: &str) -> String {
    let token = xsrf_token(server);
    let reply = post_login(server, &token, &format!("name={name}"));
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(reply.header("location"), Some("/me"));
    let set_cookie = reply.set_cookie("session").expect("a session cookie");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    reply.cookie("session").unwrap().to_owned()
}

fn me(server: &Cyclone, session: &str) -> Reply {
    server.request(
        "GET",
        "/me",
        &[("cookie", &format!("session={session}"))],
        "",
    )
}

#[test]
fn the_home_page_is_html() {
    let server = tour();
    let reply = server.get("/");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        reply.body.contains("<h1>cyclone tour</h1>"),
        "{}",
        reply.body
    );
}

#[test]
fn the_home_page_is_rendered_from_templates_that_escape_what_they_show() {
    let server = tour();
    // base.html (the layout, its title through a filter), nav.html (an
    // include with a conditional), home.html (a block with a loop).
    let anonymous = server.get("/").body;
    assert!(
        anonymous.contains("<title>cyclone tour</title>"),
        "{anonymous}"
    );
    assert!(
        anonymous.contains("<nav><a href=\"/login\">Log in</a></nav>"),
        "{anonymous}"
    );
    assert!(
        anonymous
            .contains("<li><a href=\"/search?q=wasm&#38;tag=rust&#38;tag=web\">/search</a></li>"),
        "{anonymous}"
    );
    assert_eq!(anonymous.matches("<li>").count(), 6, "{anonymous}");
    // A user's name is a value: escaped, never markup.
    let session = log_in(&server, "%3Cb%3Eada%3C%2Fb%3E");
    let page = server
        .request("GET", "/", &[("cookie", &format!("session={session}"))], "")
        .body;
    assert!(
        page.contains("Logged in as <b>&#60;b&#62;ada&#60;/b&#62;</b>"),
        "{page}"
    );
    // The 404 page is a template too, in the same layout.
    let missing = server.get("/nowhere");
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("<title>Not found</title>"),
        "{}",
        missing.body
    );
    assert!(
        missing.body.contains("href=\"/static/tour.css?v="),
        "{}",
        missing.body
    );
}

#[test]
fn the_home_page_links_its_stylesheet_by_a_versioned_url() {
    let server = tour();
    let home = server.get("/").body;
    let start = home
        .find("href=\"/static/tour.css?v=")
        .expect("a versioned link")
        + 6;
    let url = &home[start..start + home[start..].find('"').unwrap()];
    assert_eq!(url.len(), "/static/tour.css?v=".len() + 16, "{url}");
    let css = server.get(url);
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css"));
    assert_eq!(
        css.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tour/public/tour.css");
    assert_eq!(css.body, std::fs::read_to_string(file).unwrap());
}

#[test]
fn a_user_is_json_and_a_non_numeric_id_is_a_400() {
    let server = tour();
    let reply = server.get("/users/42");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body, r#"{"id":42,"name":"user 42"}"#);

    let bad = server.get("/users/forty-two");
    assert_eq!(bad.status, 400);
    assert!(
        bad.body
            .contains("path parameter `id`: `forty-two` is invalid"),
        "{}",
        bad.body
    );
    // `{id}` is one segment: deeper paths fall through to the 404 page.
    assert_eq!(server.get("/users/42/posts").status, 404);
}

#[test]
fn head_is_served_from_get_without_a_body() {
    let server = tour();
    let reply = server.request("HEAD", "/users/7", &[], "");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body, "");
}

#[test]
fn creating_a_user_answers_201_with_its_location() {
    let server = tour();
    let token = xsrf_token(&server);
    let reply = with_xsrf(&server, "POST", "/users", &token, r#"{"name":"Ada"}"#);
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.header("location"), Some("/users/3001"));
    assert_eq!(reply.body, r#"{"id":3001,"name":"Ada"}"#);
}

#[test]
fn bad_json_is_a_400_saying_why() {
    let server = tour();
    let token = xsrf_token(&server);
    let truncated = with_xsrf(&server, "POST", "/users", &token, r#"{"name":"#);
    assert_eq!(truncated.status, 400);
    assert!(
        truncated
            .body
            .contains("invalid JSON body: EOF while parsing"),
        "{}",
        truncated.body
    );
    let wrong_shape = with_xsrf(&server, "POST", "/users", &token, r#"{"nom":"Ada"}"#);
    assert_eq!(wrong_shape.status, 400);
    assert!(
        wrong_shape.body.contains("missing field `name`"),
        "{}",
        wrong_shape.body
    );
}

#[test]
fn deleting_a_user_is_a_204() {
    let server = tour();
    let token = xsrf_token(&server);
    let reply = with_xsrf(&server, "DELETE", "/users/7", &token, "");
    assert_eq!(reply.status, 204);
    assert_eq!(reply.body, "");
    assert_eq!(reply.header("content-length"), None);
}

#[test]
fn a_verb_the_handler_lacks_is_a_405_with_allow() {
    let server = tour();
    let token = xsrf_token(&server);
    let put = with_xsrf(&server, "PUT", "/users", &token, "");
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("POST"));
    let post = with_xsrf(&server, "POST", "/users/7", &token, "");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, DELETE, HEAD"));
}

#[test]
fn search_echoes_single_and_repeated_arguments() {
    let server = tour();
    let reply = server.get("/search?q=wasm%20hosts&tag=a&tag=b");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        r#"{"page":1,"q":"wasm hosts","tags":["a","b"]}"#
    );
    let paged = server.get("/search?q=x&page=3");
    assert_eq!(paged.body, r#"{"page":3,"q":"x","tags":[]}"#);
    let missing = server.get("/search?tag=a");
    assert_eq!(missing.status, 400);
    assert!(
        missing.body.contains("missing argument `q`"),
        "{}",
        missing.body
    );
}

#[test]
fn xsrf_rejects_missing_or_mismatched_tokens_and_accepts_the_cookies_own() {
    let server = tour();
    let token = xsrf_token(&server);
    let form = "application/x-www-form-urlencoded";
    let cookie = format!("_xsrf={token}");

    let no_token = server.request(
        "POST",
        "/login",
        &[("cookie", &cookie), ("content-type", form)],
        "name=ada",
    );
    assert_eq!(no_token.status, 403);
    assert!(
        no_token.body.contains("'_xsrf' argument missing"),
        "{}",
        no_token.body
    );

    let no_cookie = server.request(
        "POST",
        "/login",
        &[("content-type", form)],
        &format!("name=ada&_xsrf={token}"),
    );
    assert_eq!(no_cookie.status, 403);

    let other = "0123456789abcdef0123456789abcdef";
    let mismatch = server.request(
        "POST",
        "/login",
        &[("cookie", &cookie), ("content-type", form)],
        &format!("name=ada&_xsrf={other}"),
    );
    assert_eq!(mismatch.status, 403);
    assert!(
        mismatch.body.contains("does not match"),
        "{}",
        mismatch.body
    );
    let header_mismatch = server.request(
        "DELETE",
        "/users/7",
        &[("cookie", &cookie), ("x-xsrftoken", other)],
        "",
    );
    assert_eq!(header_mismatch.status, 403);

    let accepted = server.request(
        "POST",
        "/login",
        &[("cookie", &cookie), ("content-type", form)],
        &format!("name=ada&_xsrf={token}"),
    );
    assert_eq!(accepted.status, 303);
    let by_header = with_xsrf(&server, "DELETE", "/users/7", &token, "");
    assert_eq!(by_header.status, 204);
    // GET needs no token, and a client that already has one keeps it.
    let again = server.request("GET", "/login", &[("cookie", &cookie)], "");
    assert_eq!(again.cookie("_xsrf"), None);
    assert!(again.body.contains(&token));
}

#[test]
fn login_sets_a_signed_session_that_me_reads() {
    let server = tour();
    let session = log_in(&server, "Ada+Lovelace");
    let reply = me(&server, &session);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, r#"{"name":"Ada Lovelace"}"#);

    let anonymous = server.get("/me");
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous.body.contains("log in at /login"),
        "{}",
        anonymous.body
    );
}

#[test]
fn an_authenticated_route_sends_visitors_to_log_in_and_back() {
    let server = tour();
    // No session: a GET goes to the login page, with the way back...
    let visitor = server.get("/account?tab=keys");
    assert_eq!(visitor.status, 302, "{}", visitor.body);
    assert_eq!(
        visitor.header("location"),
        Some("/login?next=%2Faccount%3Ftab%3Dkeys")
    );
    let form = server.get("/login?next=%2Faccount%3Ftab%3Dkeys");
    assert!(
        form.body
            .contains("name=\"next\" value=\"/account?tab=keys\""),
        "{}",
        form.body
    );
    // ...and anything else is refused, XSRF token or not.
    let token = xsrf_token(&server);
    let post = with_xsrf(&server, "POST", "/account", &token, "");
    assert_eq!(post.status, 403, "{}", post.body);

    // Logging in with `next` leads back; a session opens the route.
    let login = post_login(&server, &token, "name=ada&next=%2Faccount%3Ftab%3Dkeys");
    assert_eq!(login.status, 303, "{}", login.body);
    assert_eq!(login.header("location"), Some("/account?tab=keys"));
    let session = login.cookie("session").unwrap().to_owned();
    let with_session = format!("session={session}; _xsrf={token}");
    let account = server.request("GET", "/account", &[("cookie", &with_session)], "");
    assert_eq!(
        (account.status, account.body.as_str()),
        (200, "the account of ada\n")
    );
    let saved = server.request(
        "POST",
        "/account",
        &[("cookie", &with_session), ("x-xsrftoken", &token)],
        "",
    );
    assert_eq!(
        (saved.status, saved.body.as_str()),
        (200, "saved for ada\n")
    );

    // `next` only leads to this site.
    for away in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
    ] {
        let next: String = away.bytes().map(|b| format!("%{b:02X}")).collect();
        let login = post_login(&server, &token, &format!("name=ada&next={next}"));
        assert_eq!(login.header("location"), Some("/me"), "{away}");
    }
}

#[test]
fn a_tampered_session_is_a_401() {
    let server = tour();
    let session = log_in(&server, "ada");
    // The value is `VERSION|EXPIRES|BASE64(VALUE)|SIGNATURE`, `|` encoded as %7C.
    let fields: Vec<&str> = session.split("%7C").collect();
    assert_eq!(fields.len(), 4, "{session}");
    let forged_value = [fields[0], fields[1], "Ym9i", fields[3]].join("%7C"); // "bob"
    let forged_expiry = [fields[0], "9999999999", fields[2], fields[3]].join("%7C");
    let mut flipped_signature = fields[3].to_owned();
    let last = flipped_signature.pop().unwrap();
    flipped_signature.push(if last == 'A' { 'B' } else { 'A' });
    let forged_signature = [fields[0], fields[1], fields[2], &flipped_signature].join("%7C");
    for forged in [
        forged_value,
        forged_expiry,
        forged_signature,
        "ada".to_owned(),
    ] {
        assert_eq!(me(&server, &forged).status, 401, "{forged}");
    }
    assert_eq!(me(&server, &session).status, 200);
}

#[test]
fn an_expired_session_is_a_401() {
    let server = tour_with("1:test-secret", "1");
    let session = log_in(&server, "ada");
    assert_eq!(me(&server, &session).status, 200);
    // Expiry has one-second resolution: two seconds later it has passed.
    std::thread::sleep(Duration::from_millis(2_100));
    assert_eq!(me(&server, &session).status, 401);
}

#[test]
fn rotated_keys_verify_old_sessions_until_the_old_key_is_dropped() {
    let old_session = log_in(&tour_with("1:old-secret", "86400"), "ada");
    assert!(old_session.starts_with("1%7C"), "{old_session}");

    let rotated = tour_with("2:new-secret,1:old-secret", "86400");
    assert_eq!(me(&rotated, &old_session).status, 200);
    let new_session = log_in(&rotated, "bob");
    assert!(
        new_session.starts_with("2%7C"),
        "new logins use the first key: {new_session}"
    );
    drop(rotated);

    let only_new = tour_with("2:new-secret", "86400");
    assert_eq!(me(&only_new, &old_session).status, 401);
    assert_eq!(me(&only_new, &new_session).status, 200);
    // The same key under another secret does not verify either.
    let other_secret = tour_with("2:another-secret", "86400");
    assert_eq!(me(&other_secret, &new_session).status, 401);
}

#[test]
fn old_redirects_permanently_home() {
    let server = tour();
    let reply = server.get("/old");
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/"));
}

#[test]
fn a_streamed_body_arrives_chunk_by_chunk() {
    let server = tour();
    let lines = server.get_lines_timed("/stream");
    let texts: Vec<&str> = lines.iter().map(|(_, line)| line.as_str()).collect();
    assert_eq!(
        texts,
        ["chunk 1", "chunk 2", "chunk 3", "chunk 4", "chunk 5"]
    );
    let first = lines[0].0;
    let last = lines[4].0;
    // The chunks are written 200 ms apart, so the last comes ~800 ms after the
    // first; a buffered body would bring them together.
    assert!(
        last.saturating_sub(first) >= Duration::from_millis(500),
        "first chunk at {first:?}, last at {last:?}"
    );
}

#[test]
fn an_unknown_path_gets_the_custom_404_page_naming_it() {
    let server = tour();
    let reply = server.get("/no/such/page?x=1");
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        reply
            .body
            .contains("There is no page at <code>/no/such/page</code>"),
        "{}",
        reply.body
    );
}

#[test]
fn the_example_manifest_runs_with_its_defaults() {
    let (_dir, path) = example_manifest("tour", component(), &[]);
    let server = Cyclone::serve(&path);
    let session = log_in(&server, "ada");
    assert_eq!(me(&server, &session).status, 200);
}

/// The README deploys the tour into an app with no cookie secret: its home
/// page asks who is logged in, which without a cookie needs no key.
#[test]
fn the_home_page_needs_no_cookie_secret_without_a_cookie() {
    let (_dir, path) = example_manifest(
        "tour",
        component(),
        &[(
            "cookie_secret = { env = \"TOUR_COOKIE_SECRET\", default = \"1:tour-secret-for-local-use-only\" }",
            "",
        )],
    );
    let server = Cyclone::serve(&path);
    let home = server.get("/");
    assert_eq!(home.status, 200, "{}", home.body);
    assert_eq!(server.get("/account").status, 302);
}
