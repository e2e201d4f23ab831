//! Limits on what requests may use: admission to the instance pool and the
//! per-instance memory cap.
//!
//! Admission is a semaphore with one permit per pool slot. A request takes a
//! permit before its instance is created and holds it until the instance is
//! dropped. When none is free it waits in a short bounded queue; past the
//! queue's length or wait time it is refused, and the server answers 503 with
//! `Retry-After`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{StoreLimits, StoreLimitsBuilder};

use crate::config::ServerConfig;

/// Seconds a refused client is told to wait, in `Retry-After`.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The queue was already full.
    #[error("instance queue is full")]
    QueueFull,
    /// No instance became free within the queue timeout.
    #[error("no instance became free within the queue timeout")]
    Timeout,
}

/// The admission gate in front of instantiation.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
    queue_timeout: Duration,
}

/// Decrements the queue length when a waiter leaves, however it leaves.
struct QueueSlot<'a>(&'a AtomicUsize);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// A gate with `max_instances` permits and the configured queue.
    pub fn new(server: &ServerConfig) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(server.max_instances as usize)),
            queued: AtomicUsize::new(0),
            max_queued: server.max_queued,
            queue_timeout: server.queue_timeout(),
        }
    }

    /// Takes a permit, waiting in the queue if none is free.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, Refused> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::QueueFull);
        }
        let _slot = QueueSlot(&self.queued);
        match tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it as a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(Refused::Timeout),
        }
    }

    /// Permits free right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// The resource limits of one store: its linear memory cap.
pub fn store_limits(server: &ServerConfig) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(server.max_memory_bytes())
        .trap_on_grow_failure(false)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max_instances: u32, max_queued: usize, timeout_ms: u64) -> Admission {
        Admission::new(&ServerConfig {
            max_instances,
            max_queued,
            queue_timeout_ms: timeout_ms,
            ..ServerConfig::default()
        })
    }

    #[tokio::test]
    async fn admits_up_to_the_limit_then_queues_then_refuses() {
        let gate = gate(1, 1, 50);
        let held = gate.admit().await.unwrap();
        assert_eq!(gate.available(), 0);
        // One waiter fits in the queue and times out.
        assert_eq!(gate.admit().await.unwrap_err(), Refused::Timeout);
        drop(held);
        assert!(gate.admit().await.is_ok());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let gate = Arc::new(gate(1, 1, 10_000));
        let held = gate.admit().await.unwrap();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.admit().await.map(drop) }
        });
        while gate.queued.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.admit().await.unwrap_err(), Refused::QueueFull);
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }
}
