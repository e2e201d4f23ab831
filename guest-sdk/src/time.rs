//! Timers on the host's clock, and running futures side by side.
//!
//! A handler is one task on the SDK's executor; these helpers let it wait for
//! several things at once — fetches, timers — like Tornado's
//! `yield [f1, f2]` and `gen.with_timeout`. While everything it waits for is
//! pending, the instance is suspended and costs the host nothing.
//!
//! ```no_run
//! use std::time::Duration;
//! use cyclone_sdk::time::{join, sleep, timeout};
//!
//! # async fn example() {
//! // Both timers run at once: this takes 200 ms, not 300.
//! join(sleep(Duration::from_millis(100)), sleep(Duration::from_millis(200))).await;
//! // A future that takes too long is dropped.
//! let late = timeout(Duration::from_millis(50), sleep(Duration::from_secs(5))).await;
//! assert!(late.is_err());
//! # }
//! ```

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

pub use futures_util::future::{Either, join, join_all, join3};

/// Suspends the handler for `duration`; the instance costs the host nothing
/// meanwhile.
pub async fn sleep(duration: Duration) {
    #[cfg(not(feature = "wasip3"))]
    wstd::task::sleep(wstd::time::Duration::from(duration)).await;
    #[cfg(feature = "wasip3")]
    wasip3::clocks::monotonic_clock::wait_for(
        u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
    )
    .await;
}

/// The error of a [`timeout`] that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(pub Duration);

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "timed out after {} ms", self.0.as_millis())
    }
}

impl std::error::Error for Elapsed {}

/// Runs `future` for at most `limit`: its output, or [`Elapsed`] (the future
/// is dropped, cancelling whatever it was waiting for).
pub async fn timeout<F: Future>(limit: Duration, future: F) -> Result<F::Output, Elapsed> {
    match select(future, sleep(limit)).await {
        Either::Left(output) => Ok(output),
        Either::Right(()) => Err(Elapsed(limit)),
    }
}

/// Runs `a` and `b` at once and returns the output of whichever finishes
/// first; the other is dropped.
pub async fn select<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    match futures_util::future::select(pin!(a), pin!(b)).await {
        Either::Left((a, _)) => Either::Left(a),
        Either::Right((b, _)) => Either::Right(b),
    }
}

/// Waits until the host makes `pollable` ready.
pub(crate) async fn wait_for(pollable: wasip2::io::poll::Pollable) {
    wstd::runtime::AsyncPollable::new(pollable).wait_for().await;
}
