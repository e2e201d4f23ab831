//! How a guest's call failed, told once: what ended it (classified from the
//! error, logged at the level it deserves) and what the client gets.

use crate::app::{NoInstance, TimedOut};
use crate::limits::CpuBudgetExceeded;
use crate::response::{Response, bad_request, gateway_timeout, internal_error, unavailable};

/// How a guest's task ended when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFailure {
    /// No instance could be created: no free pool slot, or the kernel refused
    /// memory mappings (→ 503).
    NoInstance,
    /// The guest ran past its CPU budget (→ 503).
    CpuBudget,
    /// The guest ran past the wall-clock timeout (→ 504).
    TimedOut,
    /// The guest trapped (→ 500).
    Trapped,
    /// The guest stopped when the request body streamed to it failed: the
    /// client broke it off, or it went over `max_body_kb` (→ 400; the front
    /// end answers 413 for the latter). The client's doing, not the guest's.
    BodyFailed,
}

impl GuestFailure {
    /// What ended the call that failed with `e`, logged.
    pub fn classify(e: &wasmtime::Error, id: u64, app: &str) -> Self {
        Self::of(e).logged(e, id, app)
    }

    /// A call that failed with `e` after its streamed request body did,
    /// logged: a trap then is the consequence it most likely is, of a guest
    /// that reads a body it cannot get whole and has nothing better to do
    /// than stop.
    pub fn after_body_failed(e: &wasmtime::Error, id: u64, app: &str) -> Self {
        match Self::of(e) {
            Self::Trapped => Self::BodyFailed,
            failure => failure,
        }
        .logged(e, id, app)
    }

    /// `self`, logged and counted, for the call that failed with `e`.
    fn logged(self, e: &wasmtime::Error, id: u64, app: &str) -> Self {
        let metrics = &crate::metrics::METRICS;
        match self {
            Self::CpuBudget => {
                metrics.refused(app, "cpu_budget");
                tracing::warn!(request = id, app = %app, "guest stopped: CPU budget exceeded: {e}");
            }
            Self::TimedOut => {
                metrics.refused(app, "timeout");
                tracing::warn!(request = id, app = %app, "guest stopped: {e}");
            }
            Self::NoInstance => {
                tracing::warn!(request = id, app = %app, "guest stopped: {e}");
            }
            Self::BodyFailed => {
                tracing::info!(request = id, app = %app, "guest stopped after its request body failed");
            }
            Self::Trapped => {
                let label = crate::metrics::App {
                    app: app.to_owned(),
                };
                metrics.traps.get_or_create(&label).inc();
                tracing::error!(request = id, app = %app, "guest failed: {e:?}");
            }
        }
        self
    }

    /// The response for a guest that failed before answering, logged.
    pub fn response(self, id: u64, app: &str) -> Response {
        match self {
            Self::NoInstance => {
                tracing::warn!(request = id, app = %app, "503: no instance could be created");
                unavailable()
            }
            Self::CpuBudget => {
                tracing::warn!(request = id, app = %app, "503: CPU budget exceeded");
                unavailable()
            }
            Self::TimedOut => {
                tracing::warn!(request = id, app = %app, "504: timed out");
                gateway_timeout()
            }
            Self::Trapped => internal_error(id),
            Self::BodyFailed => bad_request(),
        }
    }

    /// What ended the call that failed with `e`, as the error tells.
    fn of(e: &wasmtime::Error) -> Self {
        // The epoch callback's trap keeps its error under wasmtime's backtrace.
        if e.downcast_ref::<CpuBudgetExceeded>().is_some() {
            Self::CpuBudget
        } else if e.is::<TimedOut>() {
            Self::TimedOut
        } else if e.is::<NoInstance>() {
            Self::NoInstance
        } else {
            Self::Trapped
        }
    }
}
