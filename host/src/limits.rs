//! Limits on what requests may use, all in one place: admission to the
//! instance pool (process-wide, per app and per route), CPU time, memory,
//! and request bodies (read whole within a budget, or capped as they
//! stream). The wall-clock timeout is applied by `app` around the guest's
//! call.
//!
//! Admission is a semaphore with one permit per pool slot. A request takes a
//! permit before its instance is created and holds it until the instance is
//! dropped. When none is free it waits in a short bounded queue; past the
//! queue's length or wait time it is refused, and the server answers 503 with
//! `Retry-After`.
//!
//! CPU: one ticker thread advances the engine's epoch every [`EPOCH_TICK`].
//! A running guest reaches its epoch deadline at the next tick and yields to
//! the worker's event loop, so a busy guest cannot hold a worker. Each store
//! keeps a [`CpuClock`] that counts the time the task owning the store runs
//! (not while it waits or yields); past the budget the guest is trapped and
//! the client gets 503.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{StoreLimits, StoreLimitsBuilder, UpdateDeadline};

use crate::config::{AppConfig, ServerConfig};

/// How often the epoch advances: how long a guest runs before it yields.
/// A quick request that shares a worker with a busy one waits a few ticks
/// (`bench/spin.sh`: /hello p99 ~6 ms at 2 ms, ~33 ms at 10 ms); a guest that
/// finishes within a tick never yields.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

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

/// Counts one live instance in a counter shared by its app version, until
/// dropped (with the store that holds it).
pub struct LiveInstance(Arc<AtomicUsize>);

impl LiveInstance {
    /// Counts one more in `live`.
    pub fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Self(live.clone())
    }
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The admission gate in front of instantiation.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
    queue_timeout: Duration,
    /// The queue's length as a metric, when the gate is named.
    gauge: Option<prometheus_client::metrics::gauge::Gauge>,
}

/// Decrements the queue length when a waiter leaves, however it leaves.
struct QueueSlot<'a>(&'a Admission);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
        if let Some(gauge) = &self.0.gauge {
            gauge.dec();
        }
    }
}

impl Admission {
    /// The process-wide gate: `max_instances` permits and the configured queue.
    pub fn new(server: &ServerConfig) -> Self {
        Self::with_permits(server.max_instances, server)
    }

    /// An app's own gate when it sets `max_instances`, sharing the server's
    /// queue settings.
    pub fn for_app(app: &AppConfig, server: &ServerConfig) -> Option<Self> {
        app.max_instances
            .map(|permits| Self::with_permits(permits, server))
    }

    /// A gate of `permits`, with the server's queue settings.
    pub fn with_permits(permits: u32, server: &ServerConfig) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits as usize)),
            queued: AtomicUsize::new(0),
            max_queued: server.max_queued,
            queue_timeout: server.queue_timeout(),
            gauge: None,
        }
    }

    /// The same gate, its queue length reported as `queued_requests{gate}`.
    pub fn named(mut self, gate: String) -> Self {
        use crate::metrics::{Gate, METRICS};
        self.gauge = Some(METRICS.queued.get_or_create(&Gate { gate }).clone());
        self
    }

    /// Takes a permit, waiting in the queue if none is free.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, Refused> {
        self.admit_many(1).await
    }

    /// Takes `n` permits at once, waiting in the queue while they are not
    /// free.
    pub async fn admit_many(&self, n: u32) -> Result<OwnedSemaphorePermit, Refused> {
        if let Ok(permit) = self.permits.clone().try_acquire_many_owned(n) {
            return Ok(permit);
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::QueueFull);
        }
        if let Some(gauge) = &self.gauge {
            gauge.inc();
        }
        let _slot = QueueSlot(self);
        // Boxed: only a queued request pays for the timer, not every request's future.
        let wait = Box::pin(tokio::time::timeout(
            self.queue_timeout,
            self.permits.clone().acquire_many_owned(n),
        ));
        match wait.await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it as a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(Refused::Timeout),
        }
    }

    /// A permit, waiting for one as long as it takes (counted as queued
    /// meanwhile), whatever the queue's length and timeout.
    pub async fn admit_patiently(&self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return permit;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if let Some(gauge) = &self.gauge {
            gauge.inc();
        }
        let _slot = QueueSlot(self);
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the gate's semaphore is never closed")
    }

    /// Takes a permit if one is free, without queueing.
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.try_admit_many(1)
    }

    /// Takes `n` permits if they are free, without queueing.
    pub fn try_admit_many(&self, n: u32) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_many_owned(n).ok()
    }

    /// Permits free right now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// The request bodies the host holds in memory while they arrive, before
/// any instance is taken for them: bounded in total (`max_buffered_body_kb`)
/// and in how long a client may pause (`body_read_timeout_ms`).
#[derive(Debug)]
pub struct BodyBuffer {
    /// One permit per KiB buffered, process-wide.
    kib: Arc<Semaphore>,
    progress_timeout: Duration,
    queue_timeout: Duration,
}

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyRefused {
    /// More than the app's `max_body_kb` arrived (→ 413).
    #[error("body over max_body_kb")]
    TooLarge,
    /// The client paused longer than `body_read_timeout_ms` (→ 408).
    #[error("no body bytes arrived within body_read_timeout_ms")]
    TooSlow,
    /// Bodies already buffered fill `max_buffered_body_kb`, and no room
    /// came free within the queue timeout (→ 503).
    #[error("request bodies in memory fill max_buffered_body_kb")]
    Busy,
    /// The body broke off or was malformed (→ 400, if anyone still listens).
    #[error("the body broke off: {0}")]
    Broken(&'static str),
}

impl BodyBuffer {
    /// The process's buffer, sized from `server`.
    pub fn new(server: &ServerConfig) -> Self {
        let kib = usize::try_from(server.max_buffered_body_kb)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            kib: Arc::new(Semaphore::new(kib)),
            progress_timeout: server.body_read_timeout(),
            queue_timeout: server.queue_timeout(),
        }
    }

    /// Reads `body` whole, up to `max` bytes. Memory is counted as it
    /// arrives (a declared length reserves nothing: a client is charged
    /// only for bytes it sent) and given back when the returned body is
    /// dropped.
    pub async fn read<B>(&self, body: B, max: u64) -> Result<BufferedBody, BodyRefused>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        let mut body = body;
        let mut data = bytes::BytesMut::new();
        let mut permit: Option<OwnedSemaphorePermit> = None;
        let mut held_kib: u32 = 0;
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
            let frame = match tokio::time::timeout(self.progress_timeout, frame).await {
                Err(_) => return Err(BodyRefused::TooSlow),
                Ok(None) => break,
                Ok(Some(Err(_))) => return Err(BodyRefused::Broken("connection error")),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers: not passed on
            };
            if (data.len() + chunk.len()) as u64 > max {
                return Err(BodyRefused::TooLarge);
            }
            let needed = u32::try_from((data.len() + chunk.len()).div_ceil(1024))
                .map_err(|_| BodyRefused::TooLarge)?;
            if needed > held_kib {
                let more = self.reserve(needed - held_kib).await?;
                match &mut permit {
                    Some(permit) => permit.merge(more),
                    None => permit = Some(more),
                }
                held_kib = needed;
            }
            data.extend_from_slice(&chunk);
        }
        Ok(BufferedBody {
            data: (!data.is_empty()).then(|| data.freeze()),
            _permit: permit,
        })
    }

    async fn reserve(&self, kib: u32) -> Result<OwnedSemaphorePermit, BodyRefused> {
        if let Ok(permit) = self.kib.clone().try_acquire_many_owned(kib) {
            return Ok(permit);
        }
        match tokio::time::timeout(self.queue_timeout, self.kib.clone().acquire_many_owned(kib))
            .await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(BodyRefused::Busy),
        }
    }
}

/// A request body read whole; its memory counts against the process's
/// [`BodyBuffer`] until it is dropped.
pub struct BufferedBody {
    data: Option<Bytes>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Body for BufferedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.data.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// The resource limits of one store of `app`: its linear memory cap.
pub fn store_limits(app: &AppConfig) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(app.max_memory_bytes())
        .trap_on_grow_failure(false)
        .build()
}

/// The store's limits, counting each memory growth they refuse as a
/// `memory` refusal of the app.
pub struct MemoryCap {
    limits: StoreLimits,
    app: Arc<str>,
}

impl MemoryCap {
    /// `limits`, for a store of `app`.
    pub fn new(limits: StoreLimits, app: Arc<str>) -> Self {
        Self { limits, app }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            crate::metrics::METRICS.refused(&self.app, "memory");
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Memory mappings one live instance needs: its linear memory (the image and
/// the rest of the accessible part), its tables and its fiber stack with a
/// guard page. Measured with 10,000 suspended instances of a Rust component:
/// 60,291 mappings in all.
pub const MAPS_PER_INSTANCE: u64 = 6;
/// Mappings left for everything else the process maps (heap, code, threads).
pub const MAPS_RESERVED: u64 = 2_000;
/// Mappings a pool holds for each of its fiber stacks from the start, used or
/// not: the stack and its guard page. One stack per instance is part of
/// [`MAPS_PER_INSTANCE`]; every other stack of a slot adds these.
pub const MAPS_PER_STACK: u64 = 2;

/// Checks, on Linux, that `vm.max_map_count` leaves room for `max_instances`
/// live instances with `stacks` fiber stacks per instance slot (summed over
/// the pools of the WASI releases in use). When the kernel runs out of
/// mappings, even the host's own allocations fail and the process aborts,
/// so too many instances must be refused up front, not discovered under
/// load.
pub fn check_map_count(max_instances: u32, stacks: u32) -> Result<(), String> {
    let Ok(text) = std::fs::read_to_string("/proc/sys/vm/max_map_count") else {
        return Ok(());
    };
    let Ok(available) = text.trim().parse::<u64>() else {
        return Ok(());
    };
    map_budget(max_instances, stacks, available)
}

fn map_budget(max_instances: u32, stacks: u32, available: u64) -> Result<(), String> {
    let per_instance = MAPS_PER_INSTANCE + u64::from(stacks.saturating_sub(1)) * MAPS_PER_STACK;
    let needed = u64::from(max_instances) * per_instance + MAPS_RESERVED;
    if needed <= available {
        return Ok(());
    }
    let fits = available.saturating_sub(MAPS_RESERVED) / per_instance;
    Err(format!(
        "server.max_instances = {max_instances} needs about {needed} memory mappings, but \
         vm.max_map_count is {available} (enough for {fits} instances): lower max_instances \
         or raise the limit, e.g. `sysctl -w vm.max_map_count={}`",
        needed.next_power_of_two()
    ))
}

/// Starts the process's one epoch ticker; it stops when the engine is dropped.
pub fn start_epoch_ticker(engine: &wasmtime::Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("cyclone-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// The CPU time one guest has used, against its budget: the time the task
/// that owns its store runs. A [`TaskTimer`] wraps that task and times
/// each poll of it, which is when the guest's code and the host calls it
/// makes run; while the guest waits (a timer, I/O, the next message) the
/// task is not polled and the clock stands still. Two clock reads per poll,
/// where timing each call between guest and host would take two per call.
///
/// A websocket session's clock is [`CpuClock::per_event`]: the budget is for
/// the work between two events the guest receives, so a session may live for
/// days while no single message may keep it busy for long.
#[derive(Debug)]
pub struct CpuClock {
    budget: Duration,
    per_event: bool,
    meter: Arc<Meter>,
}

/// What a [`CpuClock`] shares with the timed task, both counted in
/// nanoseconds after [`now`]'s base.
#[derive(Debug, Default)]
struct Meter {
    /// Used before the poll under way.
    used: AtomicU64,
    /// When the poll under way began; 0 between polls.
    since: AtomicU64,
}

impl Meter {
    fn used(&self, now: u64) -> u64 {
        let since = self.since.load(Ordering::Relaxed);
        let running = if since == 0 {
            0
        } else {
            now.saturating_sub(since)
        };
        self.used.load(Ordering::Relaxed) + running
    }
}

/// Nanoseconds since the first call, plus one (0 means "not running").
fn now() -> u64 {
    static BASE: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    u64::try_from(BASE.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

/// Counts the polls of a store's task on its [`CpuClock`].
pub struct TaskTimer(Arc<Meter>);

impl TaskTimer {
    /// `task`, with each of its polls counted.
    ///
    /// A plain future rather than an `async fn`: an `async fn` keeps its
    /// argument and the pinned copy it polls side by side, and this wraps
    /// the future a suspended guest is held in, so the copy would double
    /// what every suspended request costs.
    pub fn time<F: Future>(self, task: F) -> Timed<F> {
        Timed {
            meter: self.0,
            task,
        }
    }
}

pin_project_lite::pin_project! {
    /// A task whose polls are counted on a [`CpuClock`]: [`TaskTimer::time`].
    pub struct Timed<F> {
        meter: Arc<Meter>,
        #[pin]
        task: F,
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        this.meter.since.store(now(), Ordering::Relaxed);
        let polled = this.task.poll(cx);
        let end = now();
        let since = this.meter.since.swap(0, Ordering::Relaxed);
        this.meter
            .used
            .fetch_add(end.saturating_sub(since), Ordering::Relaxed);
        polled
    }
}

/// The trap raised when a guest runs past its CPU budget.
#[derive(Debug, thiserror::Error)]
#[error("the guest used more than its CPU budget of {budget:?}")]
pub struct CpuBudgetExceeded {
    budget: Duration,
}

impl CpuClock {
    /// A stopped clock with `budget` to spend.
    pub fn new(budget: Duration) -> Self {
        Self {
            budget,
            per_event: false,
            meter: Arc::default(),
        }
    }

    /// A clock whose budget starts over at every event the guest receives.
    pub fn per_event(budget: Duration) -> Self {
        Self {
            per_event: true,
            ..Self::new(budget)
        }
    }

    /// What times the task that owns this clock's store.
    pub fn timer(&self) -> TaskTimer {
        TaskTimer(self.meter.clone())
    }

    /// The guest received an event: a per-event clock starts over.
    pub fn renew(&mut self) {
        if self.per_event {
            self.meter.used.store(0, Ordering::Relaxed);
            if self.meter.since.load(Ordering::Relaxed) != 0 {
                self.meter.since.store(now(), Ordering::Relaxed);
            }
        }
    }

    /// At an epoch deadline: trap past the budget, else yield for a tick.
    pub fn on_epoch(&mut self) -> wasmtime::Result<UpdateDeadline> {
        let used = self.used();
        if used > self.budget {
            return Err(wasmtime::Error::new(CpuBudgetExceeded {
                budget: self.budget,
            }));
        }
        Ok(UpdateDeadline::YieldCustom(1, Box::pin(yield_rounds())))
    }

    /// CPU time used so far.
    pub fn used(&self) -> Duration {
        Duration::from_nanos(self.meter.used(now()))
    }
}

/// How many rounds of its worker's event loop a guest at its epoch deadline
/// lets pass before it resumes.
const YIELD_ROUNDS: usize = 8;

/// Lets [`YIELD_ROUNDS`] rounds of the worker's event loop pass. One
/// `yield_now` lets each task that is ready run once; but a quick request
/// is a chain of steps (the connection reads, its guest's task runs, the
/// connection writes), each woken by I/O or by the step before, and a step
/// woken during that round would wait behind the busy guest's next tick, so
/// one request would take several ticks. Alone on its worker, a busy guest
/// pays a poll for I/O per round: a few microseconds a tick.
async fn yield_rounds() {
    for _ in 0..YIELD_ROUNDS {
        tokio::task::yield_now().await;
    }
}

/// What became of a request body streamed to its guest, for the HTTP front
/// end to read once the guest is done: past its cap (→ 413), or failed on
/// the way in (the client left or broke the body off).
#[derive(Debug, Default)]
pub struct StreamedBody {
    over_cap: AtomicBool,
    broken_off: AtomicBool,
}

impl StreamedBody {
    /// More than the cap arrived.
    pub fn over_cap(&self) -> bool {
        self.over_cap.load(Ordering::Relaxed)
    }

    /// The body could not be read whole: over its cap, or broken off.
    pub fn failed(&self) -> bool {
        self.over_cap() || self.broken_off.load(Ordering::Relaxed)
    }
}

/// A request body that fails once more than `max` bytes have arrived, and
/// says what became of it in a [`StreamedBody`].
pub struct CappedBody<B> {
    inner: B,
    read: u64,
    max: u64,
    state: Arc<StreamedBody>,
}

impl<B> CappedBody<B> {
    /// Wraps `inner`; `state` tells when it fails or goes past `max`.
    pub fn new(inner: B, max: u64, state: Arc<StreamedBody>) -> Self {
        Self {
            inner,
            read: 0,
            max,
            state,
        }
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => {
                self.state.broken_off.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(e.into())));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            self.read += data.len() as u64;
            if self.read > self.max {
                self.state.over_cap.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                    Some(self.read),
                ))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, StreamBody};

    fn buffer(max_kib: u64, progress_ms: u64) -> BodyBuffer {
        BodyBuffer::new(&ServerConfig {
            max_buffered_body_kb: max_kib,
            body_read_timeout_ms: progress_ms,
            queue_timeout_ms: 50,
            ..ServerConfig::default()
        })
    }

    fn chunks(
        parts: Vec<&'static [u8]>,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        StreamBody::new(futures_util::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok(Frame::data(Bytes::from_static(p)))),
        ))
    }

    #[tokio::test]
    async fn a_body_is_read_whole_and_counted_until_dropped() {
        let buffer = buffer(4, 1000);
        let body = buffer
            .read(chunks(vec![&[1; 1000], &[2; 1000], &[3; 100]]), 10_000)
            .await
            .unwrap();
        assert_eq!(buffer.kib.available_permits(), 1, "2,100 bytes hold 3 KiB");
        let whole = body.collect().await.unwrap().to_bytes();
        assert_eq!(whole.len(), 2100);
        assert_eq!(buffer.kib.available_permits(), 4, "given back when dropped");
    }

    #[tokio::test]
    async fn bodies_past_their_cap_or_the_buffer_are_refused() {
        let buffer = buffer(2, 1000);
        let too_large = buffer.read(chunks(vec![&[0; 600], &[0; 600]]), 1000).await;
        assert_eq!(too_large.err(), Some(BodyRefused::TooLarge));
        let held = buffer.read(chunks(vec![&[0; 2048]]), 10_000).await.unwrap();
        let busy = buffer.read(chunks(vec![&[0; 10]]), 10_000).await;
        assert_eq!(busy.err(), Some(BodyRefused::Busy));
        drop(held);
        assert!(buffer.read(chunks(vec![&[0; 10]]), 10_000).await.is_ok());
    }

    #[tokio::test]
    async fn a_body_that_stalls_times_out() {
        let buffer = buffer(64, 50);
        let stalled = StreamBody::new(
            futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(
                Bytes::from_static(b"x"),
            ))])
            .chain(futures_util::stream::pending::<
                Result<Frame<Bytes>, std::convert::Infallible>,
            >()),
        );
        assert_eq!(
            buffer.read(stalled, 1000).await.err(),
            Some(BodyRefused::TooSlow)
        );
        assert_eq!(buffer.kib.available_permits(), 64);
    }

    fn gate(max_instances: u32, max_queued: usize, timeout_ms: u64) -> Admission {
        Admission::new(&ServerConfig {
            max_instances,
            max_queued,
            queue_timeout_ms: timeout_ms,
            ..ServerConfig::default()
        })
    }

    #[test]
    fn the_map_budget_covers_every_instance() {
        assert!(map_budget(1000, 1, 65_530).is_ok());
        assert!(map_budget(10_000, 1, 65_530).is_ok());
        // WASI 0.3 pools hold three stacks per slot: 10 mappings an instance.
        assert!(map_budget(6_000, 3, 65_530).is_ok());
        let err = map_budget(10_000, 3, 65_530).unwrap_err();
        assert!(err.contains("needs about 102000 memory mappings"), "{err}");
        assert!(err.contains("enough for 6353 instances"), "{err}");
        // Both pools (WASI 0.2 and 0.3 apps side by side): 12.
        assert!(map_budget(5_000, 4, 65_530).is_ok());
        let err = map_budget(10_000, 4, 65_530).unwrap_err();
        assert!(err.contains("needs about 122000 memory mappings"), "{err}");
        assert!(err.contains("enough for 5294 instances"), "{err}");
        let err = map_budget(20_000, 1, 65_530).unwrap_err();
        assert!(err.contains("needs about 122000 memory mappings"), "{err}");
        assert!(err.contains("enough for 10588 instances"), "{err}");
        assert!(err.contains("sysctl -w vm.max_map_count=131072"), "{err}");
    }

    #[tokio::test]
    async fn the_cpu_clock_counts_only_the_time_its_task_runs() {
        let mut clock = CpuClock::per_event(Duration::from_millis(30));
        let busy = |ms| std::thread::sleep(Duration::from_millis(ms));
        clock
            .timer()
            .time(async {
                busy(20);
                // Waiting is not counted.
                tokio::time::sleep(Duration::from_millis(50)).await;
            })
            .await;
        let used = clock.used();
        assert!(
            used >= Duration::from_millis(20) && used < Duration::from_millis(45),
            "{used:?}"
        );
        assert!(matches!(
            clock.on_epoch(),
            Ok(UpdateDeadline::YieldCustom(1, _))
        ));
        clock.timer().time(async { busy(20) }).await;
        let Err(err) = clock.on_epoch() else {
            panic!("past the budget the guest is stopped");
        };
        assert!(err.is::<CpuBudgetExceeded>());
        // A per-event clock starts over at the next event.
        clock.renew();
        assert!(clock.used() < Duration::from_millis(5));
    }

    /// A busy guest's yield at its deadline lets a request that needs
    /// several trips through the event loop finish before it resumes:
    /// here, three round trips over a loopback socket, each woken by I/O.
    #[tokio::test]
    async fn a_yield_at_the_deadline_lets_a_chain_of_io_finish() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let echo = tokio::spawn(async move {
            let mut byte = [0];
            while server.read_exact(&mut byte).await.is_ok() {
                server.write_all(&byte).await.unwrap();
            }
        });
        let trips = Arc::new(AtomicUsize::new(0));
        let chain = tokio::spawn({
            let trips = trips.clone();
            async move {
                let mut byte = [0];
                for _ in 0..3 {
                    client.write_all(b"x").await.unwrap();
                    client.read_exact(&mut byte).await.unwrap();
                    trips.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // The busy guest reaches its deadline while the chain is ready to run.
        yield_rounds().await;
        assert_eq!(trips.load(Ordering::Relaxed), 3, "the chain finished first");
        chain.await.unwrap();
        echo.abort();
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
