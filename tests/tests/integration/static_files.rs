//! Static files served by the host (`[apps.NAME] static`), checked with raw
//! HTTP so every header and byte is seen as sent: content types, validators
//! and 304s, ranges, precompressed siblings, caching of versioned URLs, and
//! every way out of the folder answered 404.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use cyclone_tests::{Cyclone, components};

/// `examples/limits` at every path (one instance at most, no queue), and
/// `public/` at `/static/...`: site.css (with .gz and .br siblings),
/// app.js, numbers.txt (the digits 0-9 ten times), docs/index.html, and
/// symlinks to a file inside and to one outside the folder.
fn server() -> Cyclone {
    let dir = tempfile::tempdir().expect("temp dir");
    let public = dir.path().join("public");
    std::fs::create_dir_all(public.join("docs")).unwrap();
    std::fs::write(public.join("site.css"), "body { color: teal }\n").unwrap();
    std::fs::write(public.join("site.css.gz"), "gzip bytes of site.css").unwrap();
    std::fs::write(public.join("site.css.br"), "brotli bytes of site.css").unwrap();
    std::fs::write(public.join("app.js"), "console.log(1)\n").unwrap();
    std::fs::write(public.join("numbers.txt"), "0123456789".repeat(10)).unwrap();
    std::fs::write(public.join("docs/index.html"), "<p>docs</p>\n").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "the secret\n").unwrap();
    std::os::unix::fs::symlink(public.join("app.js"), public.join("inside.js")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), public.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), public.join("up")).unwrap();
    let manifest = dir.path().join("cyclone.toml");
    std::fs::write(
        &manifest,
        format!(
            "[server]\nmax_queued = 0\n\n[apps.limits]\ncomponent = {:?}\nroutes = [\"/...\"]\n\
             max_instances = 1\nstatic = {{ \"/static/...\" = \"public\" }}\n",
            components::LIMITS
        ),
    )
    .unwrap();
    Cyclone::serve(&manifest).keeping(dir)
}

/// A raw HTTP/1.1 exchange: the status, the head's lines and the body.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn get(server: &Cyclone, path: &str, headers: &[&str]) -> Raw {
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    // The write side stays open: a half-closed connection may be dropped
    // before its answer.
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    Raw {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

#[test]
fn files_are_served_with_their_type_and_validators_without_an_instance() {
    let server = server();
    // The app's only instance is busy and it may queue nobody...
    let busy = {
        let url = server.url("/sleep?ms=3000");
        std::thread::spawn(move || ureq::get(&url).call().map(|r| r.status().as_u16()))
    };
    let taken = server.get_once_busy("/hello", 503, Duration::from_millis(500));
    assert_eq!(taken.status, 503, "the instance is taken");
    // ...and its files are served all the same.
    let css = get(&server, "/static/site.css", &[]);
    assert_eq!(css.status, 200, "{}", css.head);
    assert_eq!(css.body, "body { color: teal }\n");
    assert_eq!(css.header("content-type"), Some("text/css"));
    assert_eq!(css.header("cache-control"), Some("no-cache"));
    assert!(css.header("last-modified").is_some(), "{}", css.head);
    let etag = css.header("etag").expect("an ETag").to_owned();
    let js = get(&server, "/static/app.js", &[]);
    assert_eq!(js.header("content-type"), Some("text/javascript"));
    let html = get(&server, "/static/docs/", &[]);
    assert_eq!((html.status, html.body.as_str()), (200, "<p>docs</p>\n"));
    let folder = get(&server, "/static/docs", &[]);
    assert!((300..400).contains(&folder.status), "{}", folder.head);
    assert_eq!(folder.header("location"), Some("/static/docs/"));
    assert_eq!(
        get(&server, "/static/inside.js", &[]).body,
        "console.log(1)\n",
        "a symlink inside the folder is followed"
    );
    assert_eq!(busy.join().unwrap().unwrap(), 200);

    // Revalidation: a matching ETag or a date not before the file's is a 304.
    let not_modified = get(
        &server,
        "/static/site.css",
        &[&format!("if-none-match: {etag}")],
    );
    assert_eq!(not_modified.status, 304, "{}", not_modified.head);
    assert_eq!(not_modified.body, "");
    let other = get(&server, "/static/site.css", &["if-none-match: \"other\""]);
    assert_eq!(other.status, 200);
    let modified = css.header("last-modified").unwrap();
    let since = get(
        &server,
        "/static/site.css",
        &[&format!("if-modified-since: {modified}")],
    );
    assert_eq!(since.status, 304);
    let old = get(
        &server,
        "/static/site.css",
        &["if-modified-since: Mon, 01 Jan 2001 00:00:00 GMT"],
    );
    assert_eq!(old.status, 200);
}

#[test]
fn ranges_precompressed_siblings_and_versioned_urls() {
    let server = server();
    let part = get(&server, "/static/numbers.txt", &["range: bytes=10-14"]);
    assert_eq!(part.status, 206, "{}", part.head);
    assert_eq!(part.body, "01234");
    assert_eq!(part.header("content-range"), Some("bytes 10-14/100"));
    let past = get(&server, "/static/numbers.txt", &["range: bytes=200-300"]);
    assert_eq!(past.status, 416);

    let br = get(&server, "/static/site.css", &["accept-encoding: gzip, br"]);
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.body, "brotli bytes of site.css");
    assert_eq!(br.header("content-type"), Some("text/css"));
    let gzip = get(&server, "/static/site.css", &["accept-encoding: gzip"]);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(gzip.body, "gzip bytes of site.css");
    let plain = get(&server, "/static/app.js", &["accept-encoding: gzip, br"]);
    assert_eq!(plain.header("content-encoding"), None, "no sibling: as is");
    assert_eq!(plain.body, "console.log(1)\n");

    let versioned = get(&server, "/static/site.css?v=0123abcd", &[]);
    assert_eq!(versioned.status, 200);
    assert_eq!(
        versioned.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
}

#[test]
fn no_path_leads_out_of_the_folder() {
    let server = server();
    for path in [
        "/static/../cyclone.toml",
        "/static/..%2fcyclone.toml",
        "/static/%2e%2e/cyclone.toml",
        "/static/%2E%2E%2Fcyclone.toml",
        "/static/docs/..%2f..%2fsecret.txt",
        "/static/..\\secret.txt",
        "/static/..%5csecret.txt",
        "/static/docs%5c..%5c..%5csecret.txt",
        "/static/leak.txt",
        "/static/up/secret.txt",
        "/static/site.css%00.txt",
        "/static/%00",
        "/static/missing.css",
        "/static/%2fetc%2fpasswd",
        "/static//etc/passwd",
    ] {
        let reply = get(&server, path, &[]);
        assert_eq!(reply.status, 404, "{path}: {} {}", reply.head, reply.body);
        assert!(!reply.body.contains("secret"), "{path}");
        assert!(!reply.body.contains("root:"), "{path}");
    }
    assert!(server.wait_for_log("leads outside its folder", Duration::from_secs(10)));
}

#[test]
fn a_static_entry_must_be_a_prefix_route_over_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("public")).unwrap();
    for (setting, names) in [
        (
            "static = { \"/site.css\" = \"public\" }",
            "static: `/site.css` must be a prefix route",
        ),
        (
            "static = { \"/static/...\" = \"nowhere\" }",
            "static: `/static/...` = ",
        ),
    ] {
        let path = write_manifest(dir.path(), setting);
        crate::serve::assert_refuses(&["serve".as_ref(), path.as_os_str()], names);
    }
}

fn write_manifest(dir: &Path, setting: &str) -> std::path::PathBuf {
    let path = dir.join("cyclone.toml");
    std::fs::write(
        &path,
        format!(
            "[apps.hello]\ncomponent = {:?}\nroutes = [\"/...\"]\n{setting}\n",
            components::HELLO
        ),
    )
    .unwrap();
    path
}

#[test]
fn static_url_versions_a_file_by_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public");
    std::fs::create_dir(&public).unwrap();
    std::fs::write(public.join("site.css"), "body { color: teal }\n").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "the secret\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), public.join("leak.txt")).unwrap();
    let manifest = dir.path().join("cyclone.toml");
    std::fs::write(
        &manifest,
        format!(
            "[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\n\
             static = {{ \"/assets/...\" = \"public\" }}\n",
            components::PROBE
        ),
    )
    .unwrap();
    let server = Cyclone::serve(&manifest);
    let url = |path: &str| server.get(&format!("/static-url?{path}")).body;
    let first = url("site.css");
    let hash = first
        .strip_prefix("/assets/site.css?v=")
        .unwrap_or_else(|| panic!("{first}"));
    assert_eq!(hash.len(), 16, "{first}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
    assert_eq!(url("site.css"), first, "the same content, the same URL");
    let served = get(&server, &first, &[]);
    assert_eq!(served.body, "body { color: teal }\n");
    assert_eq!(
        served.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    // A new content, a new URL (the file's size changes with it).
    std::fs::write(public.join("site.css"), "body { color: orange }\n").unwrap();
    let second = url("site.css");
    assert_ne!(second, first);
    assert!(second.starts_with("/assets/site.css?v="), "{second}");
    assert_eq!(get(&server, &second, &[]).body, "body { color: orange }\n");

    // No such file, or none inside the folder: the plain path, no version.
    assert_eq!(url("missing.css"), "/static/missing.css");
    assert_eq!(url("leak.txt"), "/static/leak.txt");
    assert_eq!(url("../secret.txt"), "/static/../secret.txt");
    assert_eq!(url("/etc/passwd"), "/static/etc/passwd");
}
