//! Bounds on the requests in flight, as upstream's `--max-requests-inflight` (read-only
//! requests) and `--max-mutating-requests-inflight` (every other request).
//!
//! A request takes a [`Slot`] when its handling starts and gives it back when the slot is
//! dropped. A request that finds its kind's limit reached waits in its kind's queue for a
//! slot, for at most [`Limits::queue_wait`], as upstream's API Priority and Fairness (on by
//! default) queues requests beyond the server's concurrency rather than refusing them; here
//! with one priority level and one queue per kind, as many waiting as may be in flight. A
//! request that finds the queue full, or waits its time out, is answered 429 with
//! `Retry-After: 1`. With no queue wait (`--enable-priority-and-fairness=false`) a request
//! over the limit is answered 429 at once, as upstream's max-in-flight filter answers.
//!
//! Long-running requests (watches, and later exec, attach, logs, port forwarding, proxying)
//! hold a connection for as long as the client wants and are not counted, as upstream.
//! Members of `system:masters` are served even over the limit (upstream: "a system:master is
//! so powerful that they should always get an answer"); they still take a slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use http::{HeaderValue, Method, Response, StatusCode};
use krust_api::StatusError;

use super::response::{self, Body};

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `GET` and `HEAD` (upstream: the verbs get, list and watch).
    ReadOnly,
    /// Everything else.
    Mutating,
}

impl RequestKind {
    /// The kind of a request with `method`.
    pub fn of(method: &Method) -> Self {
        if method == Method::GET || method == Method::HEAD {
            Self::ReadOnly
        } else {
            Self::Mutating
        }
    }

    /// The `request_kind` label upstream's metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "readOnly",
            Self::Mutating => "mutating",
        }
    }
}

/// Whether a request holds its connection for as long as the client wants (upstream's
/// `BasicLongRunningRequestCheck`: the verbs watch and proxy, and the subresources attach,
/// exec, proxy, log and portforward).
pub fn is_long_running(verb: &str, subresource: Option<&str>) -> bool {
    matches!(verb, "watch" | "proxy")
        || matches!(subresource, Some("attach" | "exec" | "proxy" | "log" | "portforward"))
}

/// The limits; 0 means no limit, as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Read-only requests in flight at once (upstream's default: 400).
    pub read_only: usize,
    /// Mutating requests in flight at once (upstream's default: 200).
    pub mutating: usize,
    /// How long a request over its kind's limit waits for a slot before it is refused (zero:
    /// refused at once).
    pub queue_wait: Duration,
}

/// How long a queued request waits at most (upstream's API Priority and Fairness waits a
/// quarter of the request timeout of 60 s).
pub const QUEUE_WAIT: Duration = Duration::from_secs(15);

impl Default for Limits {
    fn default() -> Self {
        Self { read_only: 400, mutating: 200, queue_wait: QUEUE_WAIT }
    }
}

/// The requests of one kind: in flight, and waiting for a slot.
#[derive(Debug, Default)]
struct Counter {
    /// In flight.
    in_flight: Arc<AtomicUsize>,
    /// Wakes a waiting request when a slot is given back.
    freed: Arc<Notify>,
    /// Waiting.
    waiting: AtomicUsize,
}

/// The counters of requests in flight, one per [`RequestKind`].
#[derive(Debug)]
pub struct Inflight {
    limits: Limits,
    read_only: Counter,
    mutating: Counter,
}

/// A request's place among those in flight; given back on drop.
#[derive(Debug)]
pub struct Slot {
    counter: Arc<AtomicUsize>,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_one();
    }
}

/// A request's place in a queue; left on drop.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Inflight {
    /// No request in flight yet.
    pub fn new(limits: Limits) -> Self {
        Self { limits, read_only: Counter::default(), mutating: Counter::default() }
    }

    fn counter(&self, kind: RequestKind) -> (&Counter, usize) {
        match kind {
            RequestKind::ReadOnly => (&self.read_only, self.limits.read_only),
            RequestKind::Mutating => (&self.mutating, self.limits.mutating),
        }
    }

    /// Takes a slot of `kind`; `None` when the limit is reached, unless `exempt`.
    pub fn try_acquire(&self, kind: RequestKind, exempt: bool) -> Option<Slot> {
        let (counter, limit) = self.counter(kind);
        counter
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (limit == 0 || n < limit || exempt).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                counter: Arc::clone(&counter.in_flight),
                freed: Arc::clone(&counter.freed),
            })
    }

    /// Takes a slot of `kind`, waiting in the kind's queue when the limit is reached; `None`
    /// when the queue is full or the wait ran out (see the module documentation).
    pub async fn acquire(&self, kind: RequestKind, exempt: bool) -> Option<Slot> {
        if let Some(slot) = self.try_acquire(kind, exempt) {
            return Some(slot);
        }
        let (counter, limit) = self.counter(kind);
        if self.limits.queue_wait.is_zero()
            || counter.waiting.fetch_add(1, Ordering::AcqRel) >= limit
        {
            if !self.limits.queue_wait.is_zero() {
                counter.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            return None;
        }
        let _waiting = Waiting(&counter.waiting);
        let deadline = tokio::time::Instant::now() + self.limits.queue_wait;
        loop {
            let freed = counter.freed.notified();
            tokio::pin!(freed);
            // Registered before looking again, so that a slot given back meanwhile wakes it.
            freed.as_mut().enable();
            if let Some(slot) = self.try_acquire(kind, exempt) {
                return Some(slot);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// The requests of `kind` in flight now.
    pub fn current(&self, kind: RequestKind) -> usize {
        self.counter(kind).0.in_flight.load(Ordering::Acquire)
    }

    /// The requests of `kind` waiting for a slot now.
    pub fn waiting(&self, kind: RequestKind) -> usize {
        self.counter(kind).0.waiting.load(Ordering::Acquire)
    }
}

/// Upstream's answer to a request over the limit: 429 TooManyRequests, `Retry-After: 1`.
pub fn too_many_requests() -> Response<Body> {
    let mut error = StatusError::new(
        krust_api::Reason::TooManyRequests,
        "Too many requests, please try again later.",
    );
    error.details = Some(serde_json::json!({"retryAfterSeconds": 1}));
    let mut response = response::error(&error);
    debug_assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_at_its_limit_refuses_until_a_slot_is_given_back() {
        let inflight =
            Inflight::new(Limits { read_only: 2, mutating: 1, queue_wait: Duration::ZERO });
        let a = inflight.try_acquire(RequestKind::ReadOnly, false);
        let b = inflight.try_acquire(RequestKind::ReadOnly, false);
        assert!(a.is_some() && b.is_some());
        assert!(inflight.try_acquire(RequestKind::ReadOnly, false).is_none());
        // The other kind has its own limit.
        let m = inflight.try_acquire(RequestKind::Mutating, false);
        assert!(m.is_some());
        assert!(inflight.try_acquire(RequestKind::Mutating, false).is_none());
        assert_eq!(inflight.current(RequestKind::ReadOnly), 2);
        drop(a);
        assert_eq!(inflight.current(RequestKind::ReadOnly), 1);
        assert!(inflight.try_acquire(RequestKind::ReadOnly, false).is_some());
        drop(m);
        assert_eq!(inflight.current(RequestKind::Mutating), 0);
    }

    #[test]
    fn zero_is_no_limit_and_privileged_users_are_served_over_the_limit() {
        let inflight =
            Inflight::new(Limits { read_only: 0, mutating: 1, queue_wait: Duration::ZERO });
        let slots: Vec<_> =
            (0..1000).filter_map(|_| inflight.try_acquire(RequestKind::ReadOnly, false)).collect();
        assert_eq!(slots.len(), 1000);
        let _m = inflight.try_acquire(RequestKind::Mutating, false);
        assert!(inflight.try_acquire(RequestKind::Mutating, false).is_none());
        let over = inflight.try_acquire(RequestKind::Mutating, true);
        assert!(over.is_some());
        assert_eq!(inflight.current(RequestKind::Mutating), 2);
    }

    #[tokio::test]
    async fn a_request_over_the_limit_waits_for_a_slot_in_a_bounded_queue() {
        let limits = Limits { read_only: 1, mutating: 1, queue_wait: Duration::from_secs(5) };
        let inflight = Arc::new(Inflight::new(limits));
        let first = inflight.try_acquire(RequestKind::Mutating, false);
        assert!(first.is_some());
        // Queued: served once the slot is given back.
        let queued = tokio::spawn({
            let inflight = Arc::clone(&inflight);
            async move { inflight.acquire(RequestKind::Mutating, false).await.is_some() }
        });
        while inflight.waiting(RequestKind::Mutating) == 0 {
            tokio::task::yield_now().await;
        }
        // The queue holds as many as may be in flight: one here; the next is refused.
        assert!(inflight.acquire(RequestKind::Mutating, false).await.is_none());
        drop(first);
        assert!(queued.await.expect("the waiter runs"));
        assert_eq!(inflight.waiting(RequestKind::Mutating), 0);
        assert_eq!(inflight.current(RequestKind::Mutating), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_request_is_refused_when_its_wait_runs_out() {
        let limits = Limits { read_only: 1, mutating: 1, queue_wait: Duration::from_secs(15) };
        let inflight = Inflight::new(limits);
        let _held = inflight.try_acquire(RequestKind::ReadOnly, false);
        let started = tokio::time::Instant::now();
        assert!(inflight.acquire(RequestKind::ReadOnly, false).await.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(15));
        assert_eq!(inflight.waiting(RequestKind::ReadOnly), 0);
    }

    #[test]
    fn reads_are_get_and_head_and_watches_and_exec_are_long_running() {
        assert_eq!(RequestKind::of(&Method::GET), RequestKind::ReadOnly);
        assert_eq!(RequestKind::of(&Method::HEAD), RequestKind::ReadOnly);
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(RequestKind::of(&method), RequestKind::Mutating);
        }
        assert!(is_long_running("watch", None));
        assert!(is_long_running("get", Some("log")));
        assert!(is_long_running("create", Some("exec")));
        assert!(!is_long_running("list", None));
        assert!(!is_long_running("update", Some("status")));
    }

    #[test]
    fn the_refusal_is_upstreams_429_with_retry_after() {
        let response = too_many_requests();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()),
            Some("1")
        );
    }
}
