//! The outbound connection pool, seen from a real upstream: an app's
//! requests reuse its idle connections (never another app's), and the pool
//! keeps no more than `max_idle` of them for no longer than
//! `idle_timeout_ms`.

use std::time::{Duration, Instant};

use cyclone_tests::{Cyclone, Upstream, components, manifest};

/// The probe (a WASI 0.2 guest) at `/fetch` and the aggregator's WASI 0.3
/// build at `/aggregate`, both allowed to reach `upstream`, the aggregator
/// fetching `aggregated` (comma-separated paths on it); `pool` is each
/// app's `outbound_pool` line, if any.
fn two_apps(upstream: &Upstream, aggregated: &str, pool: &str) -> Cyclone {
    let port = upstream.port();
    let upstreams: Vec<_> = aggregated.split(',').map(|p| upstream.url(p)).collect();
    let (_dir, path) = manifest(&format!(
        "[apps.probe]\ncomponent = {:?}\nroutes = [\"/fetch\"]\n\
         allowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]\n{pool}\n\
         [apps.aggregator]\ncomponent = {:?}\nroutes = [\"/aggregate\"]\n\
         allowed_outbound_hosts = [\"http://127.0.0.1:{port}\"]\n{pool}\n\
         [apps.aggregator.variables]\nupstreams = {:?}\nupstream_timeout_ms = \"5000\"\n",
        components::PROBE,
        components::AGGREGATOR_P3,
        upstreams.join(","),
    ));
    Cyclone::serve(&path)
}

/// The probe's reply to fetching `path` on `upstream`.
fn fetch(server: &Cyclone, upstream: &Upstream, path: &str) -> String {
    let reply = server.get(&format!("/fetch?url={}", upstream.url(path)));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// The aggregator's reply, checked to hold only successes.
fn aggregate(server: &Cyclone) -> String {
    let reply = server.get("/aggregate");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(!reply.body.contains("error"), "{}", reply.body);
    reply.body
}

#[test]
fn an_apps_requests_reuse_its_idle_connections_but_no_other_app_does() {
    let upstream = Upstream::start();
    let server = two_apps(&upstream, "/keep/a", "");
    // Each request runs in a fresh instance; the connection outlives them.
    assert_eq!(fetch(&server, &upstream, "/keep/x"), "200 conn 1 /x");
    assert_eq!(fetch(&server, &upstream, "/keep/y"), "200 conn 1 /y");
    assert_eq!(fetch(&server, &upstream, "/keep/z"), "200 conn 1 /z");
    assert_eq!(upstream.connections_opened(), 1);
    // The other app (and the other WASI release) opens its own, and reuses it.
    aggregate(&server);
    aggregate(&server);
    assert_eq!(upstream.connections_opened(), 2);
    assert_eq!(upstream.connections_open(), 2);
    assert_eq!(fetch(&server, &upstream, "/keep/w"), "200 conn 1 /w");
    // A response that closes its connection (this one goes out on
    // connection 1) leaves nothing in the pool.
    assert_eq!(fetch(&server, &upstream, "/plain"), "200 /plain");
    assert_eq!(fetch(&server, &upstream, "/keep/v"), "200 conn 3 /v");
}

#[test]
fn a_connection_the_upstream_closed_is_not_reused() {
    let upstream = Upstream::start();
    let server = two_apps(&upstream, "/keep/a", "");
    assert_eq!(fetch(&server, &upstream, "/keep/x"), "200 conn 1 /x");
    upstream.close_kept();
    assert!(upstream.wait_for_open(0, Duration::from_secs(10)));
    // The request goes out on a new connection, with no error.
    assert_eq!(fetch(&server, &upstream, "/keep/y"), "200 conn 2 /y");
    assert_eq!(fetch(&server, &upstream, "/keep/z"), "200 conn 2 /z");
}

#[test]
fn the_pool_keeps_at_most_max_idle_connections_for_idle_timeout_ms() {
    let upstream = Upstream::start();
    let server = two_apps(
        &upstream,
        "/keep/delay/300,/keep/delay/300,/keep/delay/300",
        "outbound_pool = { max_idle = 1, idle_timeout_ms = 1500 }",
    );
    // Three fetches at once need three connections; one stays.
    aggregate(&server);
    assert_eq!(upstream.connections_opened(), 3);
    let idle_since = Instant::now();
    assert!(
        upstream.wait_for_open(1, Duration::from_secs(10)),
        "open: {}",
        upstream.connections_open()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        upstream.connections_open(),
        1,
        "kept while idle for less than idle_timeout_ms"
    );
    // Past its idle timeout the last one is closed, with no request to
    // notice it.
    assert!(upstream.wait_for_open(0, Duration::from_secs(15)));
    assert!(
        idle_since.elapsed() >= Duration::from_millis(1000),
        "closed after {:?}",
        idle_since.elapsed()
    );
    // The next request opens a new one.
    aggregate(&server);
    assert_eq!(upstream.connections_opened(), 6);
}

#[test]
fn max_idle_zero_opens_a_connection_for_every_request() {
    let upstream = Upstream::start();
    let server = two_apps(&upstream, "/keep/a", "outbound_pool = { max_idle = 0 }");
    assert_eq!(fetch(&server, &upstream, "/keep/x"), "200 conn 1 /x");
    assert_eq!(fetch(&server, &upstream, "/keep/y"), "200 conn 2 /y");
    assert!(upstream.wait_for_open(0, Duration::from_secs(10)));
}

#[test]
fn a_misspelt_pool_setting_is_refused_at_start() {
    let (_dir, path) = manifest(&format!(
        "[apps.probe]\ncomponent = {:?}\nroutes = [\"/...\"]\noutbound_pool = {{ max_idel = 3 }}\n",
        components::PROBE,
    ));
    crate::serve::assert_refuses(
        &["serve".as_ref(), path.as_os_str()],
        "unknown field `max_idel`",
    );
}
