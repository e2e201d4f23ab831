//! Process metrics in the Prometheus text format, through `prometheus-client`:
//! what `GET /metrics` on the admin API answers.
//!
//! Counters and histograms are recorded where things happen ([`METRICS`]
//! is process-wide, like the things it counts); gauges of state (live
//! instances per app, queue depth per gate) are read when scraped.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// An app.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct App {
    /// Its name (`-` for requests no route matched).
    pub app: String,
}

/// An app and a response's status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppStatus {
    /// The app.
    pub app: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub class: String,
}

/// An app and why the host refused or stopped a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppCause {
    /// The app (`-` when none was chosen yet).
    pub app: String,
    /// `cpu_budget`, `timeout`, `memory`, `queue`, `body` or `headers`.
    pub cause: String,
}

/// A compile-cache lookup's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheOutcome {
    /// `hit` or `miss`.
    pub outcome: String,
}

/// A deploy's kind and outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Deploy {
    /// The app.
    pub app: String,
    /// `deploy`, `rollback` or `reload`.
    pub kind: String,
    /// `ok` or `refused`.
    pub outcome: String,
}

/// An admission gate: the process's, an app's, or a route's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Gate {
    /// `server`, `app:NAME` or `route:PATTERN`.
    pub gate: String,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by app and status class.
    pub requests: Family<AppStatus, Counter>,
    /// Time to the response head, by app.
    pub latency: Family<App, Histogram>,
    /// Requests refused or stopped by a limit, by cause.
    pub refusals: Family<AppCause, Counter>,
    /// Guests that trapped.
    pub traps: Family<App, Counter>,
    /// Websocket sessions opened.
    pub sessions_opened: Family<App, Counter>,
    /// Websocket sessions open now.
    pub sessions_open: Family<App, Gauge>,
    /// Pub/sub messages published.
    pub published: Family<App, Counter>,
    /// Compile-cache lookups.
    pub compile_cache: Family<CacheOutcome, Counter>,
    /// Deploys, rollbacks and reloads.
    pub deploys: Family<Deploy, Counter>,
    /// Live instances by app, set when scraped.
    pub instances: Family<App, Gauge>,
    /// Requests waiting for an instance, by gate.
    pub queued: Family<Gate, Gauge>,
}

/// One app's request counters and latency histogram, looked up once (when
/// the app is loaded) so that counting a request allocates nothing.
#[derive(Clone)]
pub struct Requests {
    /// By status class: 1xx to 5xx.
    classes: [Counter; 5],
    latency: Histogram,
}

impl Requests {
    /// The handles of `app`.
    pub fn of(app: &str) -> Self {
        let class = |n: u16| {
            METRICS
                .requests
                .get_or_create(&AppStatus {
                    app: app.to_owned(),
                    class: format!("{n}xx"),
                })
                .clone()
        };
        Self {
            classes: [class(1), class(2), class(3), class(4), class(5)],
            latency: METRICS
                .latency
                .get_or_create(&App {
                    app: app.to_owned(),
                })
                .clone(),
        }
    }

    /// Requests no route matched.
    pub fn unrouted() -> &'static Self {
        static UNROUTED: LazyLock<Requests> = LazyLock::new(|| Requests::of("-"));
        &UNROUTED
    }

    /// Counts a response with `status`, `elapsed` after routing.
    pub fn count(&self, status: u16, elapsed: std::time::Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.classes[class].inc();
        self.latency.observe(elapsed.as_secs_f64());
    }
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests").finish_non_exhaustive()
    }
}

/// Counts one websocket session in `websocket_sessions_open` while it lives.
pub struct OpenSession(Gauge);

impl OpenSession {
    /// A session of `app`, from its handshake to its end.
    pub fn new(app: &str) -> Self {
        let gauge = METRICS
            .sessions_open
            .get_or_create(&App {
                app: app.to_owned(),
            })
            .clone();
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

fn family<L, M>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    family: Family<L, M>,
) -> Family<L, M>
where
    Family<L, M>: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, family.clone());
    family
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("cyclone");
        Self {
            requests: family(
                &mut r,
                "requests",
                "Requests answered, by app and status class",
                Family::default(),
            ),
            latency: family(
                &mut r,
                "request_duration_seconds",
                "Time from routing a request to its response head",
                Family::new_with_constructor(|| {
                    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
                }),
            ),
            refusals: family(
                &mut r,
                "refusals",
                "Requests refused or stopped by a limit: cpu_budget, timeout, memory, queue, body, headers",
                Family::default(),
            ),
            traps: family(&mut r, "traps", "Guests that trapped", Family::default()),
            sessions_opened: family(
                &mut r,
                "websocket_sessions_opened",
                "Websocket sessions opened",
                Family::default(),
            ),
            sessions_open: family(
                &mut r,
                "websocket_sessions_open",
                "Websocket sessions open now",
                Family::default(),
            ),
            published: family(
                &mut r,
                "pubsub_published",
                "Pub/sub messages published",
                Family::default(),
            ),
            compile_cache: family(
                &mut r,
                "compile_cache_lookups",
                "Compile-cache lookups: hit or miss",
                Family::default(),
            ),
            deploys: family(
                &mut r,
                "deploys",
                "Deploys, rollbacks and reloads, by outcome",
                Family::default(),
            ),
            instances: family(
                &mut r,
                "instances",
                "Live instances, by app (all its versions)",
                Family::default(),
            ),
            queued: family(
                &mut r,
                "queued_requests",
                "Requests waiting for an instance, by gate",
                Family::default(),
            ),
            registry: r,
        }
    }

    /// Counts a refusal of a request of `app` for `cause`.
    pub fn refused(&self, app: &str, cause: &str) {
        self.refusals
            .get_or_create(&AppCause {
                app: app.to_owned(),
                cause: cause.to_owned(),
            })
            .inc();
    }

    /// Counts a deploy, rollback or reload of `app`.
    pub fn deployed(&self, app: &str, kind: &str, ok: bool) {
        self.deploys
            .get_or_create(&Deploy {
                app: app.to_owned(),
                kind: kind.to_owned(),
                outcome: if ok { "ok" } else { "refused" }.to_owned(),
            })
            .inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
