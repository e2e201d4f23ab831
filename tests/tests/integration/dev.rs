//! The developer loop: `cyclone new` writes a crate that builds and serves
//! as it is, `cyclone build` builds it, `cyclone up` serves it, and `cyclone
//! up --watch` redeploys it on every change, keeping sessions, and keeps
//! the running version when a change does not build. One test builds the
//! three templates, so their dependencies compile once per crate.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use cyclone_tests::ws::{open_at, text};
use cyclone_tests::{Cyclone, components, cyclone_bin, shared_cache};
use tungstenite::Message;

/// Runs `cyclone ARGS` in `dir` to the end.
fn cyclone(dir: &Path, args: &[&str]) -> Output {
    Command::new(cyclone_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cyclone")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `cyclone up` in `dir` on a free port, with `extra` arguments.
fn up(dir: &Path, extra: &[&str]) -> Cyclone {
    let mut command = Command::new(cyclone_bin());
    command
        .arg("up")
        .args(extra)
        .args(["--listen", "127.0.0.1:0", "--cache-dir"])
        .arg(shared_cache())
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR");
    Cyclone::launch(command)
}

#[test]
fn new_build_up_and_watch_for_each_template() {
    let dir = tempfile::tempdir().unwrap();
    for (name, template) in [("site", "http"), ("web-app", "app"), ("talk", "websocket")] {
        let made = cyclone(dir.path(), &["new", name, "--template", template]);
        assert!(made.status.success(), "{}", stderr(&made));
        let crate_dir = dir.path().join(name);
        for file in [
            "Cargo.toml",
            "src/lib.rs",
            "cyclone.toml",
            ".cargo/config.toml",
            ".gitignore",
        ] {
            assert!(crate_dir.join(file).is_file(), "{name}: no {file}");
        }
        let built = cyclone(&crate_dir, &["build"]);
        assert!(built.status.success(), "{name}: {}", stderr(&built));
        let component = crate_dir
            .join("target/wasm32-wasip2/guest")
            .join(format!("{}.wasm", name.replace('-', "_")));
        assert!(component.is_file(), "{name}: no {}", component.display());
    }

    let site = up(&dir.path().join("site"), &[]);
    let reply = site.get("/");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "Hello from site!\n");
    assert_eq!(site.post("/echo", "back").body, "back");
    assert_eq!(site.get("/nowhere").status, 404);

    let app = up(&dir.path().join("web-app"), &[]);
    assert_eq!(app.get("/hello/world").body, "Hello, world!\n");
    assert!(app.get("/").body.contains("<h1>web-app</h1>"));

    // The websocket crate under --watch: a change is rebuilt and deployed
    // while a session stays open on the version it started with.
    let crate_dir = dir.path().join("talk");
    let server = up(&crate_dir, &["--watch"]);
    assert!(server.get("/").body.contains("<title>talk</title>"));
    let mut socket = open_at(server.addr(), "/echo", &[]).expect("opening /echo");
    socket.send(Message::text("before")).unwrap();
    assert_eq!(text(&mut socket), "before");

    let source = crate_dir.join("src/lib.rs");
    let original = std::fs::read_to_string(&source).unwrap();
    std::fs::write(
        &source,
        original.replace("<title>talk</title>", "<title>changed</title>"),
    )
    .unwrap();
    assert!(
        server.wait_for_log("rebuilt and deployed", Duration::from_secs(600)),
        "no redeploy: {:#?}",
        server.log()
    );
    assert!(server.get("/").body.contains("<title>changed</title>"));
    socket.send(Message::text("after")).unwrap();
    assert_eq!(text(&mut socket), "after");

    // A change that does not compile: the compiler's error is shown and
    // the running version keeps serving.
    std::fs::write(&source, original.replace("struct Echo;", "struct Echo")).unwrap();
    assert!(
        server.wait_for_log(
            "the running versions keep serving",
            Duration::from_secs(600)
        ),
        "no build failure: {:#?}",
        server.log()
    );
    assert!(
        server.log().iter().any(|line| line.starts_with("error")),
        "the compiler's error is not in the output: {:#?}",
        server.log()
    );
    assert!(server.get("/").body.contains("<title>changed</title>"));

    // Fixed again: deployed again, and the session is still there.
    std::fs::write(
        &source,
        original.replace("<title>talk</title>", "<title>fixed</title>"),
    )
    .unwrap();
    assert!(
        server.wait_for_log_count("rebuilt and deployed", 2, Duration::from_secs(600)),
        "no second redeploy: {:#?}",
        server.log()
    );
    assert!(server.get("/").body.contains("<title>fixed</title>"));
    socket.send(Message::text("still")).unwrap();
    assert_eq!(text(&mut socket), "still");
}

#[test]
fn new_refuses_bad_names_and_existing_folders() {
    let dir = tempfile::tempdir().unwrap();
    let bad = cyclone(dir.path(), &["new", "1st"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("is not a crate name"),
        "{}",
        stderr(&bad)
    );

    std::fs::create_dir(dir.path().join("taken")).unwrap();
    let taken = cyclone(dir.path(), &["new", "taken"]);
    assert!(!taken.status.success());
    assert!(
        stderr(&taken).contains("already exists"),
        "{}",
        stderr(&taken)
    );

    let template = cyclone(dir.path(), &["new", "x", "--template", "grpc"]);
    assert!(!template.status.success());
    assert!(
        stderr(&template).contains("http, app, websocket"),
        "{}",
        stderr(&template)
    );
}

#[test]
fn build_says_what_failed_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cyclone.toml"),
        "[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"/...\"]\nbuild = \"echo building a; exit 3\"\n",
    )
    .unwrap();
    let failed = cyclone(dir.path(), &["build"]);
    assert!(!failed.status.success());
    let err = stderr(&failed);
    assert!(err.contains("building a"), "{err}");
    assert!(
        err.contains("error: building a: `echo building a; exit 3` failed"),
        "{err}"
    );

    // A command that succeeds without making the component.
    std::fs::write(
        dir.path().join("cyclone.toml"),
        "[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"/...\"]\nbuild = \"true\"\n",
    )
    .unwrap();
    let missing = cyclone(dir.path(), &["build"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("a.wasm is not there"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn a_change_saved_while_a_build_runs_is_built_next() {
    let dir = tempfile::tempdir().unwrap();
    let next = dir.path().join("next.wasm");
    std::fs::copy(components::HELLO, &next).unwrap();
    // The build prints `copied` (which its command line, also in the log,
    // does not hold) once the component is in place, then takes a second.
    std::fs::write(
        dir.path().join("cyclone.toml"),
        "[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"/...\"]\n\
         build = { command = \"cp next.wasm a.wasm && echo cop''ied && sleep 1\", watch = [\"next.wasm\"] }\n",
    )
    .unwrap();
    let server = up(dir.path(), &["--watch"]);
    let hello = server.get("/").body;
    assert!(server.wait_for_log("watching", Duration::from_secs(10)));

    // A change: the build copies it.
    std::fs::copy(components::WASIP2_RAW, &next).unwrap();
    assert!(
        server.wait_for_log_count("copied", 2, Duration::from_secs(30)),
        "{:#?}",
        server.log()
    );
    // Saved while that build runs: built next, not taken as built.
    std::fs::copy(components::HELLO, &next).unwrap();
    assert!(
        server.wait_for_log_count("rebuilt and deployed", 2, Duration::from_secs(30)),
        "the change saved during the build was not built: {:#?}",
        server.log()
    );
    assert_eq!(server.get("/").body, hello);
}
