//! Key-value stores on embedded SQLite through the real binary: grants,
//! limits, every call of the SDK and of raw `wasi:keyvalue` bindings,
//! durability across `kill -9`, and SQLite errors (a locked, a full and a
//! read-only file) as error values while the host keeps serving.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cyclone_tests::{Cyclone, components, manifest, run_to_exit};

/// The probe app granted `stores`, with `extra` appended to the manifest.
pub(super) fn probe_manifest(stores: &str, extra: &str) -> String {
    format!(
        "[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\nkey_value_stores = [{stores}]\n{extra}",
        components::PROBE
    )
}

pub(super) fn kv(server: &Cyclone, query: &str) -> String {
    let reply = server.get(&format!("/kv?{query}"));
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    reply.body
}

fn kv_put(server: &Cyclone, query: &str, body: &str) -> String {
    let reply = server.request("PUT", &format!("/kv?{query}"), &[], body);
    assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    reply.body
}

/// Every SDK call once, on a fresh store `default` of `server`'s probe app.
pub(super) fn every_call_answers(server: &Cyclone) {
    assert_eq!(kv(server, "op=get&key=a"), "none");
    assert_eq!(kv_put(server, "op=set&key=a", "apple"), "ok");
    assert_eq!(kv(server, "op=get&key=a"), "value apple");
    assert_eq!(kv(server, "op=exists&key=a"), "true");
    assert_eq!(kv(server, "op=incr&key=n&n=5"), "5");
    assert_eq!(kv(server, "op=incr&key=n&n=-2"), "3");
    assert_eq!(kv(server, "op=get&key=n"), "value 3");
    let not_a_number = kv(server, "op=incr&key=a");
    assert!(
        not_a_number.starts_with("error: Other("),
        "a value that is not a number cannot be incremented: {not_a_number}"
    );
    assert_eq!(kv_put(server, "op=cas&key=a&expected=pear", "x"), "false");
    assert_eq!(
        kv_put(server, "op=cas&key=a&expected=apple", "plum"),
        "true"
    );
    assert_eq!(kv_put(server, "op=cas&key=fresh", "new"), "true");
    assert_eq!(kv_put(server, "op=cas&key=fresh", "again"), "false");
    assert_eq!(kv(server, "op=json&key=j"), "Some([1, 2, 3])");
    assert_eq!(
        kv(server, "op=batch"),
        "[Some([111, 110, 101]), Some([116, 119, 111]), None] false"
    );
    assert_eq!(kv(server, "op=keys"), "a,fresh,j,n");
    assert_eq!(kv(server, "op=delete&key=fresh"), "ok");
    assert_eq!(kv(server, "op=exists&key=fresh"), "false");
    assert_eq!(kv(server, "op=get&key=a"), "value plum");
}

#[test]
fn the_default_store_keeps_values_across_restarts() {
    let (dir, path) = manifest(&probe_manifest("\"default\"", ""));
    let server = Cyclone::serve(&path);
    every_call_answers(&server);
    drop(server);

    // The file is where the manifest's folder says, and outlives the process.
    assert!(dir.path().join(".cyclone/data/default.sqlite").exists());
    let server = Cyclone::serve(&path);
    assert_eq!(kv(&server, "op=get&key=a"), "value plum");
    assert_eq!(kv(&server, "op=keys"), "a,j,n");
}

#[test]
fn a_store_is_opened_only_when_granted_and_shared_by_the_apps_granted_it() {
    let (_dir, path) = manifest(&format!(
        "[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\nkey_value_stores = [\"default\"]\n\
         [apps.spin]\ncomponent = {:?}\nroutes = [\"/spin/...\"]\nkey_value_stores = [\"default\"]\n\
         [key_value.secret]\nbackend = \"sqlite\"\n",
        components::PROBE,
        components::SPIN_HELLO,
    ));
    let server = Cyclone::serve(&path);
    // What the Spin app writes in `default`, the probe reads there.
    assert!(server.get("/spin/kv").body.starts_with("hello from spin|"));
    assert_eq!(kv(&server, "op=get&key=spin:greeting"), "value won");
    // Defined but not granted, and not defined at all: both denied, both logged.
    assert_eq!(kv(&server, "store=secret"), "error: AccessDenied");
    assert_eq!(kv(&server, "store=nope"), "error: AccessDenied");
    assert!(server.wait_for_log(
        "key-value store `secret` denied: the app's key_value_stores does not list it",
        Duration::from_secs(5)
    ));
    assert!(server.wait_for_log("store `nope` denied", Duration::from_secs(5)));
}

#[test]
fn keys_and_values_past_their_limits_are_too_large() {
    let (_dir, path) = manifest(&probe_manifest(
        "\"default\"",
        "[key_value.default]\nbackend = \"sqlite\"\nmax_value_kb = 1\n",
    ));
    let server = Cyclone::serve(&path);
    assert_eq!(kv_put(&server, "op=set&key=v", &"x".repeat(1024)), "ok");
    let too_big = kv_put(&server, "op=set&key=v", &"x".repeat(1025));
    assert!(too_big.starts_with("error: TooLarge("), "{too_big}");
    assert_eq!(kv(&server, "op=get&key=v").len(), "value ".len() + 1024);
    let longest = "k".repeat(256);
    assert_eq!(kv_put(&server, &format!("op=set&key={longest}"), "v"), "ok");
    let too_long = kv_put(&server, &format!("op=set&key={longest}k"), "v");
    assert!(too_long.starts_with("error: TooLarge("), "{too_long}");
    let empty = kv_put(&server, "op=set&key=", "v");
    assert!(empty.starts_with("error: Other(\"invalid key"), "{empty}");
}

#[test]
fn a_component_written_for_spin_uses_the_store_through_raw_bindings() {
    let (_dir, path) = manifest(&format!(
        "[apps.spin]\ncomponent = {:?}\nroutes = [\"/...\"]\nkey_value_stores = [\"default\"]\n",
        components::SPIN_HELLO
    ));
    let server = Cyclone::serve(&path);
    let first = server.get("/kv");
    assert_eq!(
        first.body,
        "hello from spin|2|retried over changed meanwhile|won|\
         [(\"spin:a\", Some([49])), (\"spin:zz\", None)]|spin:a,spin:b,spin:greeting,spin:n"
    );
    assert!(server.get("/kv").body.contains("|4|"), "increments add up");
    assert_eq!(server.get("/kv-denied").body, "Err(Error::AccessDenied)");
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let (_dir, path) = manifest(&probe_manifest("\"default\"", ""));
    let mut server = Cyclone::serve(&path);
    // 500 writes from 10 clients at once, so many share a transaction.
    std::thread::scope(|scope| {
        for client in 0..10 {
            let server = &server;
            scope.spawn(move || {
                for i in 0..50 {
                    let key = client * 50 + i;
                    assert_eq!(kv_put(server, &format!("op=set&key=w{key}"), "v"), "ok");
                }
            });
        }
    });
    server.kill();
    let server = Cyclone::serve(&path);
    let keys = kv(&server, "op=keys");
    let found = keys.split(',').filter(|k| k.starts_with('w')).count();
    assert_eq!(found, 500, "every acknowledged write is in the file");
}

#[test]
fn store_calls_wait_off_the_event_loop() {
    // One worker: if a store call blocked its event loop, nothing else
    // would be answered while it waits.
    let (dir, path) = manifest(&probe_manifest("\"default\"", "[server]\nworkers = 1\n"));
    let server = Cyclone::serve(&path);
    assert_eq!(kv_put(&server, "op=set&key=before", "v"), "ok");
    // Another process takes the database's write lock and holds it.
    let db = dir.path().join(".cyclone/data/default.sqlite");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let started = Instant::now();
            let answer = kv_put(&server, "op=set&key=during", "v");
            (answer, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        // The write waits for the lock; the worker answers others meanwhile.
        for _ in 0..10 {
            let started = Instant::now();
            assert_eq!(server.get("/echo").status, 200);
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        holder.execute_batch("COMMIT").unwrap();
        let (answer, waited) = writer.join().unwrap();
        assert_eq!(answer, "ok");
        assert!(
            waited > Duration::from_millis(700),
            "the write waited: {waited:?}"
        );
    });
    assert_eq!(kv(&server, "op=get&key=during"), "value v");
}

/// A tmpfs of `size` mounted at a temp folder, unmounted on drop. `None`
/// when this machine does not let the tests mount one (not root).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("cannot mount a tmpfs here (needs root): skipping");
            return None;
        }
        Some(Self(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn data_dir_manifest(data: &Path) -> (tempfile::TempDir, PathBuf) {
    manifest(&probe_manifest(
        "\"default\"",
        &format!("[server]\ndata_dir = {:?}\n", data.display().to_string()),
    ))
}

#[test]
fn a_full_disk_is_an_error_value_and_the_host_keeps_serving() {
    let Some(disk) = Tmpfs::mount("1m") else {
        return;
    };
    let (_dir, path) = data_dir_manifest(disk.path());
    let server = Cyclone::serve(&path);
    assert_eq!(kv_put(&server, "op=set&key=first", "kept"), "ok");
    let value = "x".repeat(100 << 10);
    let mut full = None;
    for i in 0..20 {
        let answer = kv_put(&server, &format!("op=set&key=big{i}"), &value);
        if answer != "ok" {
            full = Some(answer);
            break;
        }
    }
    let full = full.expect("a 1 MiB disk fills up");
    assert!(full.starts_with("error: Other(\"full:"), "{full}");
    assert_eq!(server.get("/echo").status, 200);
    assert_eq!(kv(&server, "op=get&key=first"), "value kept");
    // Room again: writes succeed again.
    for i in 0..20 {
        kv(&server, &format!("op=delete&key=big{i}"));
    }
    let reply = server.request("PUT", "/kv?op=set&key=after", &[], "v");
    assert_eq!(reply.body, "ok");
}

/// Sets or clears the immutable attribute, which stops writes even through
/// descriptors already open, root's included. False when the file system
/// or the machine does not allow it.
fn immutable(file: &Path, on: bool) -> bool {
    Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(file)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_file_that_turns_read_only_is_an_error_value_and_the_host_keeps_serving() {
    let (dir, path) = manifest(&probe_manifest("\"default\"", ""));
    let server = Cyclone::serve(&path);
    assert_eq!(kv_put(&server, "op=set&key=first", "kept"), "ok");
    let data = dir.path().join(".cyclone/data");
    let files = ["default.sqlite", "default.sqlite-wal"].map(|f| data.join(f));
    if !files.iter().all(|f| immutable(f, true)) {
        for file in &files {
            immutable(file, false);
        }
        eprintln!("cannot make files immutable here (needs root and chattr): skipping");
        return;
    }
    let refused = kv_put(&server, "op=set&key=second", "v");
    assert!(refused.starts_with("error: Other("), "{refused}");
    assert_eq!(server.get("/echo").status, 200);
    assert_eq!(kv(&server, "op=get&key=first"), "value kept");
    files.iter().for_each(|f| assert!(immutable(f, false)));
    assert_eq!(kv_put(&server, "op=set&key=third", "v"), "ok");
}

#[test]
fn bad_store_settings_are_start_up_errors_naming_the_file_and_field() {
    let p = components::PROBE;
    let app = format!("[apps.a]\ncomponent = {p:?}\nroutes = [\"/\"]\n");
    for (extra, expected) in [
        (
            "key_value_stores = [\"missing\"]\n",
            "app `a`: key_value_stores: no store `missing`; define it in a [key_value.missing] table",
        ),
        (
            "[key_value.x]\nbackend = \"mysql\"\n",
            "unknown variant `mysql`, expected `sqlite` or `redis`",
        ),
        (
            "[key_value.x]\nbackend = \"redis\"\nurl = \"http://example.com\"\n",
            "key_value.x.url is not a Redis URL",
        ),
        (
            "[key_value.x]\nbackend = \"redis\"\n",
            "key_value.x: a redis store needs `url`",
        ),
        (
            "[key_value.x]\nbackend = \"redis\"\nurl = { env = \"CYCLONE_TEST_UNSET_URL\" }\n",
            "key_value.x.url comes from the environment variable `CYCLONE_TEST_UNSET_URL`, which is not set",
        ),
        (
            "[key_value.x]\nbackend = \"sqlite\"\nurl = \"redis://h\"\n",
            "key_value.x.url: an sqlite store has a `path`, not a `url`",
        ),
        (
            "[pubsub]\nbackend = \"redis\"\nurl = \"nope\"\n",
            "pubsub.url is not a Redis URL",
        ),
        ("[pubsub]\nbackend = \"kafka\"\n", "unknown variant `kafka`"),
        (
            "[key_value.a]\nbackend = \"sqlite\"\npath = \"same.db\"\n\
             [key_value.b]\nbackend = \"sqlite\"\npath = \"same.db\"\n",
            "use the same file",
        ),
    ] {
        let (_dir, path) = manifest(&format!("{app}{extra}"));
        let (status, output) = run_to_exit(&["serve".as_ref(), path.as_os_str()]);
        assert!(!status.success(), "{extra}: started");
        assert!(output.contains(&path.display().to_string()), "{output}");
        assert!(output.contains(expected), "{extra}: {output}");
    }
}

#[test]
fn a_data_dir_that_cannot_be_created_is_a_start_up_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let (_dir, path) = data_dir_manifest(&file.path().join("data"));
    let (status, output) = run_to_exit(&["serve".as_ref(), path.as_os_str()]);
    assert!(!status.success());
    assert!(output.contains("key_value.default:"), "{output}");
}
