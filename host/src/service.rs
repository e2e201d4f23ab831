//! WASI 0.3 instances and the requests they serve.
//!
//! A request to a WASI 0.3 app goes to a *worker*: a task that owns a store
//! with one instance of the app's `wasi:http/handler` and runs the store's
//! event loop, calling `handle` once per request, concurrently. Without
//! `instance_reuse` (the default) a worker takes one request, so every
//! request gets a fresh instance, as WASI 0.2 requests do. With it, a worker
//! takes up to `max_concurrent` requests at once and `max_requests` in all,
//! and ends after `idle_timeout_ms` without one.
//!
//! Bounds: a worker holds one set of instance permits (an app's or route's
//! `max_instances` counts instances; the process-wide gate counts pool
//! slots, several for an instance with reuse); a request waits for a free
//! place in a worker or for a new instance's permits in the admission
//! queue, whichever comes first.
//!
//! A worker runs on the thread that started it, as every task does on the
//! server's single-threaded event loops. A request goes to a worker on its
//! own thread, or to a new instance there when permits are free at once, and
//! only then to a worker on another thread: a request handed across threads
//! wakes both threads, for the job and for each part of its answer.
//! Each request's call has the app's timeout, and so does sending its
//! response body, during which the request keeps its place in the worker;
//! past it the request gets 504 (or its body is cut) and its worker takes
//! no more, and a worker ends at most one timeout after
//! its last request began, whatever its guest still does. The CPU budget
//! starts over at each request a worker takes. A trap ends the worker and
//! fails the requests inside it, no others.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime::component::Accessor;
use wasmtime_wasi_http::p3::bindings::Service;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{FieldMap, WasiBody, WasiHttpView};

use crate::app::{App, Instances, Permits, Target, TimedOut};
use crate::capabilities::HostState;
use crate::config::InstanceReuse;
use crate::failure::GuestFailure;
use crate::limits::CpuClock;
use crate::response::Response;

/// What a request to a WASI 0.3 app gets back from its worker.
pub(crate) enum Answer {
    /// The guest's response. Its body reads from the instance; `failed`
    /// turns true before the instance is dropped for a failure, so a body
    /// that ends then is known to be cut short. The body holds the
    /// [`InFlight`] until it is sent.
    Response(Response, Arc<AtomicBool>, InFlight),
    /// The guest answered with an error code.
    Code(ErrorCode),
    /// The call failed: a trap, the CPU budget, the timeout, no instance.
    Failed(GuestFailure),
}

/// Held by a response's body until the body is sent, or never will be:
/// until then the request's task in the instance writes it, so the request
/// counts as in flight (against `max_concurrent`, and for the instance's
/// fiber stacks).
pub(crate) struct InFlight {
    _sent: oneshot::Sender<()>,
}

/// A request on its way to a worker.
struct Job {
    /// Boxed: the futures that pass it on keep their arguments for as long
    /// as the request waits, and the box is emptied when the call starts.
    request: Box<http::Request<WasiBody>>,
    answer: oneshot::Sender<Answer>,
    id: u64,
}

/// A request handed to a worker: where its answer comes from.
pub(crate) struct Call {
    answer: oneshot::Receiver<Answer>,
    /// The worker's end, for a request whose answer never came.
    end: watch::Receiver<Option<Result<(), GuestFailure>>>,
    /// The worker's task, when it serves this request alone: stopping it
    /// when the client goes away stops nobody else.
    pub alone: Option<tokio::task::AbortHandle>,
}

impl Call {
    /// The answer; when the worker ended without one, how it ended.
    pub(crate) async fn answer(self) -> Answer {
        if let Ok(answer) = self.answer.await {
            return answer;
        }
        // Boxed: a request waits in this future for as long as its guest
        // takes, and waiting for the worker's end is the rare case.
        Box::pin(ended(self.end)).await
    }
}

/// How a worker that dropped a request's answer ended, as that answer.
async fn ended(mut end: watch::Receiver<Option<Result<(), GuestFailure>>>) -> Answer {
    match end.wait_for(Option::is_some).await.ok().and_then(|e| *e) {
        Some(Err(failure)) => Answer::Failed(failure),
        _ => Answer::Failed(GuestFailure::Trapped),
    }
}

/// The workers of one app version that may take more requests.
pub(crate) struct Workers {
    reuse: Option<InstanceReuse>,
    open: Mutex<VecDeque<Worker>>,
    /// A place in a worker came free.
    freed: Notify,
}

/// A worker that may take requests, as the app's [`Workers`] see it.
struct Worker {
    /// The thread whose event loop runs it (a worker thread's runtime is
    /// single-threaded).
    thread: ThreadId,
    jobs: mpsc::UnboundedSender<Job>,
    state: Arc<Mutex<Load>>,
    end: watch::Receiver<Option<Result<(), GuestFailure>>>,
}

/// A worker's requests.
#[derive(Debug, Default)]
struct Load {
    in_flight: u32,
    taken: u32,
    closed: bool,
}

impl Workers {
    /// The workers of an app with `reuse` (none: one request per instance).
    pub(crate) fn new(reuse: Option<InstanceReuse>) -> Self {
        Self {
            reuse,
            open: Mutex::new(VecDeque::new()),
            freed: Notify::new(),
        }
    }

    /// Slots of the process-wide instance gate one instance takes: one, or
    /// with reuse [`InstanceReuse::pool_slots`].
    pub(crate) fn slots(&self) -> u32 {
        self.reuse.map_or(1, |reuse| reuse.pool_slots())
    }

    /// Hands `request` to a worker of `target`'s app: one with room, or a
    /// new one once the instance permits are granted (a 503, logged, when
    /// the queue refuses).
    pub(crate) async fn call(
        &self,
        instances: &Instances,
        target: &Target,
        request: Box<http::Request<WasiBody>>,
        id: u64,
    ) -> Result<Call, Box<Response>> {
        let (answer, receiver) = oneshot::channel();
        let mut job = Some(Job {
            request,
            answer,
            id,
        });
        let permits = match self.reuse {
            None => instances.admit(target, id).await?,
            // A worker on this thread first, then a new instance on it if
            // one is free at once, then a worker on another thread: a
            // request handed across threads wakes each thread on the way.
            Some(_) => loop {
                let mut freed = pin!(self.freed.notified());
                freed.as_mut().enable();
                if let Some(end) = self.hand_over(&mut job, Place::ThisThread) {
                    return Ok(Call {
                        answer: receiver,
                        end,
                        alone: None,
                    });
                }
                if let Some(permits) = instances.try_admit(target) {
                    break permits;
                }
                if let Some(end) = self.hand_over(&mut job, Place::Anywhere) {
                    return Ok(Call {
                        answer: receiver,
                        end,
                        alone: None,
                    });
                }
                tokio::select! {
                    permits = instances.admit(target, id) => break permits?,
                    () = freed => {}
                }
            },
        };
        let app = target.app.clone();
        let cpu = match self.reuse {
            Some(_) => CpuClock::per_event(app.cpu_budget),
            None => CpuClock::new(app.cpu_budget),
        };
        let store = app.new_store(id, cpu)?;
        let (ended, end) = watch::channel(None);
        // Only a worker that may take more requests is listed, with a
        // queue and a load the callers share; one that serves a single
        // request needs neither.
        let shared = self.reuse.filter(|r| r.max_requests > 1).map(|_| {
            let (jobs, queued) = mpsc::unbounded_channel();
            let load = Arc::new(Mutex::new(Load {
                in_flight: 1,
                taken: 1,
                closed: false,
            }));
            self.lock_open().push_back(Worker {
                thread: std::thread::current().id(),
                jobs,
                state: load.clone(),
                end: end.clone(),
            });
            // Requests that looked for a place while this instance's permits
            // were being taken found none and wait in the queue, where no
            // permits may come: the new instance has room for them.
            self.freed.notify_waiters();
            Shared { queued, load }
        });
        let alone = shared.is_none();
        let Some(job) = job else {
            unreachable!("a job is handed over only to a worker that took it")
        };
        let task =
            crate::app::spawn_guest(store, |store| run(app, store, permits, job, shared, ended));
        Ok(Call {
            answer: receiver,
            end,
            alone: alone.then(|| task.abort_handle()),
        })
    }

    fn lock_open(&self) -> std::sync::MutexGuard<'_, VecDeque<Worker>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives `job` to the first open worker in `place` with room, taking it
    /// out of the option, and returns that worker's end; leaves it when none
    /// has room.
    fn hand_over(
        &self,
        job: &mut Option<Job>,
        place: Place,
    ) -> Option<watch::Receiver<Option<Result<(), GuestFailure>>>> {
        let reuse = self.reuse?;
        let here = std::thread::current().id();
        let mut open = self.lock_open();
        let mut i = 0;
        while i < open.len() {
            let worker = &open[i];
            if place == Place::ThisThread && worker.thread != here {
                i += 1;
                continue;
            }
            let mut load = worker.state.lock().unwrap_or_else(|e| e.into_inner());
            if load.closed {
                drop(load);
                open.remove(i);
                continue;
            }
            if load.in_flight >= reuse.max_concurrent {
                i += 1;
                continue;
            }
            match worker.jobs.send(job.take()?) {
                Ok(()) => {
                    load.in_flight += 1;
                    load.taken += 1;
                    let end = worker.end.clone();
                    if load.taken >= reuse.max_requests {
                        load.closed = true;
                        drop(load);
                        open.remove(i);
                    }
                    return Some(end);
                }
                Err(mpsc::error::SendError(back)) => {
                    *job = Some(back);
                    load.closed = true;
                    drop(load);
                    open.remove(i);
                }
            }
        }
        None
    }

    /// Closes the worker whose load is `state` to new requests.
    fn close(&self, state: &Arc<Mutex<Load>>) {
        state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.lock_open()
            .retain(|worker| !Arc::ptr_eq(&worker.state, state));
    }
}

/// Which workers [`Workers::hand_over`] may pick.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Only those on the calling thread.
    ThisThread,
    /// Any.
    Anywhere,
}

/// What a worker that may take more requests shares with the app's
/// [`Workers`]: where new requests come, and its load.
struct Shared {
    queued: mpsc::UnboundedReceiver<Job>,
    load: Arc<Mutex<Load>>,
}

impl Shared {
    /// One request fewer in flight: how many remain.
    fn finished(&self) -> u32 {
        let mut load = self.load.lock().unwrap_or_else(|e| e.into_inner());
        load.in_flight -= 1;
        load.in_flight
    }
}

/// How one request's call ended, as its worker sees it.
enum Served {
    /// Answered (a response or an error code).
    Answered,
    /// Past the timeout: answered 504; the worker takes no more.
    TimedOut,
}

/// A worker: instantiates the app in `store`, serves `first` and then,
/// when `shared`, what comes on its queue, until no more can come and its
/// requests are answered; then waits (at most a timeout after its last request began)
/// for the guest's tasks, which write response bodies, to end.
async fn run(
    app: Arc<App>,
    mut store: Store<HostState>,
    permits: Permits,
    first: Job,
    mut shared: Option<Shared>,
    ended: watch::Sender<Option<Result<(), GuestFailure>>>,
) {
    let first_id = first.id;
    let failed = Arc::new(AtomicBool::new(false));
    let idle = app
        .workers
        .reuse
        .map_or(Duration::ZERO, |r| r.idle_timeout());
    let deadlines = Deadlines::default();
    let first_start = deadlines.started();
    let outcome: wasmtime::Result<()> = async {
        let service = app.instantiate_service(&mut store).await?;
        let concurrent = store.run_concurrent(async |accessor| -> wasmtime::Result<()> {
            let mut calls = FuturesUnordered::new();
            calls.push(serve(accessor, &service, (first, first_start), &app, &failed, &deadlines));
            let mut queue_done = shared.is_none();
            let mut idle_since: Option<Instant> = None;
            // One timer for the idle timeout, set again only when it fires: a
            // timer armed each time the worker goes idle would cost a request
            // a timer registration and, as the earliest timer, a wake of the
            // event loop.
            let mut idle_timer = shared.is_some().then(|| Box::pin(tokio::time::sleep(idle)));
            loop {
                tokio::select! {
                    Some(served) = calls.next(), if !calls.is_empty() => {
                        let served = served?;
                        if let Some(shared) = &shared {
                            let in_flight = shared.finished();
                            app.workers.freed.notify_one();
                            if matches!(served, Served::TimedOut) {
                                app.workers.close(&shared.load);
                            }
                            if in_flight == 0 && calls.is_empty() {
                                idle_since = Some(Instant::now());
                            }
                        }
                    }
                    job = next_job(&mut shared), if !queue_done => match job {
                        Some(job) => {
                            idle_since = None;
                            let start = deadlines.started();
                            accessor.with(|mut access| access.data_mut().cpu.renew());
                            calls.push(serve(accessor, &service, (job, start), &app, &failed, &deadlines));
                        }
                        None => queue_done = true,
                    },
                    () = std::future::poll_fn(|cx| match &mut idle_timer {
                        Some(timer) => timer.as_mut().poll(cx),
                        None => std::task::Poll::Pending,
                    }), if idle_timer.is_some() => {
                        let now = Instant::now();
                        match idle_since {
                            Some(since) if now >= since + idle => {
                                idle_timer = None;
                                if let Some(shared) = &shared {
                                    app.workers.close(&shared.load);
                                }
                            }
                            since => {
                                let due = since.map_or(now + idle, |since| since + idle);
                                if let Some(timer) = &mut idle_timer {
                                    timer.as_mut().reset(due);
                                }
                            }
                        }
                    }
                }
                if queue_done && calls.is_empty() {
                    break;
                }
            }
            // The guest's tasks may still write response bodies: wait for
            // them, within a timeout of the last request's start (which
            // `backstop` enforces).
            deadlines.draining();
            std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)).await;
            Ok(())
        });
        // A guest that keeps the CPU busy keeps the store's event loop from
        // polling what runs inside it, timeouts included; this one is
        // checked from outside, whenever the loop yields (at least at every
        // epoch tick).
        tokio::select! {
            result = concurrent => result?,
            failure = deadlines.backstop(app.timeout) => Err(failure),
        }
    }
    .await;
    if let Some(shared) = &shared {
        app.workers.close(&shared.load);
    }
    let end = outcome.map_err(|e| {
        failed.store(true, Ordering::Release);
        GuestFailure::classify(&e, first_id, app.name())
    });
    drop(store);
    drop(permits);
    let _ = ended.send(Some(end));
}

/// The next request on a shared worker's queue; `None` once it is closed
/// and drained (at once for a worker that serves one request).
async fn next_job(shared: &mut Option<Shared>) -> Option<Job> {
    shared.as_mut()?.queued.recv().await
}

/// How long past a request's own timeout its worker's whole instance is
/// stopped, when the request's timeout could not fire inside it (a busy
/// guest).
const BACKSTOP_GRACE: Duration = Duration::from_millis(100);

/// When a worker's requests began, for the timeout checked from outside
/// the store's event loop.
#[derive(Default)]
struct Deadlines {
    inner: Mutex<DeadlineState>,
    changed: Notify,
}

#[derive(Default)]
struct DeadlineState {
    /// Requests in flight, by start time.
    starts: std::collections::BTreeMap<Instant, u32>,
    /// When the latest request began.
    last: Option<Instant>,
    /// The worker takes no more requests and waits for its tasks.
    draining: bool,
}

impl Deadlines {
    fn lock(&self) -> std::sync::MutexGuard<'_, DeadlineState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request begins now; returns its start.
    fn started(&self) -> Instant {
        let now = Instant::now();
        let mut state = self.lock();
        *state.starts.entry(now).or_default() += 1;
        state.last = Some(now);
        drop(state);
        self.changed.notify_one();
        now
    }

    /// The request that began at `start` has its answer.
    fn finished(&self, start: Instant) {
        let mut state = self.lock();
        if let Some(n) = state.starts.get_mut(&start) {
            *n -= 1;
            if *n == 0 {
                state.starts.remove(&start);
            }
        }
        drop(state);
        self.changed.notify_one();
    }

    /// The worker waits for its guest's tasks now.
    fn draining(&self) {
        self.lock().draining = true;
        self.changed.notify_one();
    }

    /// When the instance must be gone: a timeout after its oldest request
    /// in flight began (or, draining, its latest), plus a grace for the
    /// request's own timeout to fire first.
    fn due(&self, limit: Duration) -> Option<Instant> {
        let state = self.lock();
        let from = match state.starts.keys().next() {
            Some(oldest) => Some(*oldest),
            None if state.draining => state.last,
            None => None,
        };
        from.map(|from| from + limit + BACKSTOP_GRACE)
    }

    /// Resolves with [`TimedOut`] once [`Deadlines::due`] passes.
    async fn backstop(&self, limit: Option<Duration>) -> wasmtime::Error {
        let Some(limit) = limit else {
            return std::future::pending().await;
        };
        loop {
            let changed = self.changed.notified();
            match self.due(limit) {
                Some(due) if due <= Instant::now() => {
                    return wasmtime::Error::new(TimedOut(limit));
                }
                Some(due) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// Calls `handle` for `job` (which began at `start`) under the app's
/// timeout and sends the answer.
/// Fails only when the instance did (a trap ends the worker).
async fn serve(
    accessor: &Accessor<HostState>,
    service: &Service,
    (job, start): (Job, Instant),
    app: &App,
    failed: &Arc<AtomicBool>,
    deadlines: &Deadlines,
) -> wasmtime::Result<Served> {
    let Job {
        request,
        answer,
        id,
    } = job;
    // The answer goes back as soon as `handle` returns; the body is the
    // request's too, within the same timeout. The call is written inside
    // the one future the timeout wraps: a call built first and awaited in
    // there would be stored twice, in a future that lives as long as the
    // request waits.
    let mut answer = Some(answer);
    let result = app
        .within_timeout(async {
            // Built and put in the table inside `with`: what an async block
            // takes apart is kept in its future until its end (the request's
            // head is 224 bytes), and `Service::handle`, which would push it
            // too, keeps it (184 bytes) for as long as the guest takes.
            // (`Request::from_http` does the same, but its future holds on
            // to the borrow of the hooks, so it cannot leave `with`.)
            let (request, io) = accessor.with(|mut access| {
                let (parts, body) = (*request).into_parts();
                let http = access.data_mut().http();
                let headers = FieldMap::new_immutable(http.hooks, parts.headers);
                let uri = parts.uri.into_parts();
                let (request, io) = wasmtime_wasi_http::p3::Request::new(
                    parts.method,
                    uri.scheme,
                    uri.authority,
                    uri.path_and_query,
                    headers,
                    None,
                    body,
                );
                Ok::<_, wasmtime::Error>((http.table.push(request)?, io))
            })?;
            let handled = service
                .wasi_http_handler()
                .call_handle(accessor, request)
                .await?;
            // Only a response has a body whose sending the request waits for.
            let (reply, body_gone) = match handled {
                Ok(response) => {
                    let (in_flight, body_gone) = oneshot::channel();
                    let response = Answer::Response(
                        accessor.with(|mut access| {
                            let response = access.data_mut().http().table.delete(response)?;
                            response.into_http(&mut access, io)
                        })?,
                        failed.clone(),
                        InFlight { _sent: in_flight },
                    );
                    (response, Some(body_gone))
                }
                Err(code) => (Answer::Code(code), None),
            };
            if let Some(answer) = answer.take() {
                let _ = answer.send(reply);
            }
            if let Some(body_gone) = body_gone {
                let _ = body_gone.await;
            }
            Ok(())
        })
        .await;
    let served = match result {
        Ok(()) => Ok(Served::Answered),
        Err(e) if e.is::<TimedOut>() => {
            match answer {
                Some(answer) => {
                    let failure = GuestFailure::classify(&e, id, app.name());
                    let _ = answer.send(Answer::Failed(failure));
                }
                None => tracing::warn!(
                    request = id,
                    app = %app.name(),
                    "the response body was still being sent at the timeout: its instance takes no more requests"
                ),
            }
            Ok(Served::TimedOut)
        }
        Err(e) => Err(e),
    };
    deadlines.finished(start);
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker keeps this future for every request it serves, for as long
    /// as the request waits: every byte is paid once per waiting request.
    /// (Sizes are of the test profile's build; the bound is the size
    /// measured when written, rounded up, so that growth is a decision.)
    #[test]
    fn a_served_request_stays_small() {
        let size = crate::http::tests::returned_size(
            |accessor: &'static Accessor<HostState>,
             service: &'static Service,
             job: (Job, Instant),
             app: &'static App,
             failed: &'static Arc<AtomicBool>,
             deadlines: &'static Deadlines| {
                serve(accessor, service, job, app, failed, deadlines)
            },
        );
        println!("service::serve: {size} bytes");
        // 560; 1,008 when the request's head, taken apart in the future,
        // was kept in it (224 bytes) and `Service::handle` kept the request
        // (184); 1,632 with the request unboxed in the job; 2,464 when the
        // call was a future of its own, awaited inside the timeout's
        // future, which stored it twice.
        assert!(size <= 576, "service::serve's future is {size} bytes");
    }
}
