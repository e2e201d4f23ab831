//! Timers on the host's clock.

use std::time::Duration;

/// Suspends the handler for `duration`; the instance costs the host nothing
/// meanwhile.
pub async fn sleep(duration: Duration) {
    wstd::task::sleep(wstd::time::Duration::from(duration)).await;
}
