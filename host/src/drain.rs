//! Counting what a drain waits for: a worker's open connections, the
//! process's websocket sessions.

use tokio::sync::watch;

/// How many of something a drain waits for are open: a worker's
/// connections, the process's websocket sessions.
#[derive(Debug)]
pub struct OpenCount(watch::Sender<usize>);

impl Default for OpenCount {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl OpenCount {
    /// Counts one more as open until the returned guard is dropped.
    pub fn open(&self) -> Open {
        self.0.send_modify(|open| *open += 1);
        Open(self.0.clone())
    }

    /// Returns once none is open.
    pub async fn all_closed(&self) {
        let _ = self.0.subscribe().wait_for(|open| *open == 0).await;
    }
}

/// One open connection or session, counted in an [`OpenCount`] until dropped.
pub struct Open(watch::Sender<usize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.send_modify(|open| *open -= 1);
    }
}
