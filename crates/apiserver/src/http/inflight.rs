//! Bounds on the requests in flight, as upstream's `--max-requests-inflight` (read-only
//! requests) and `--max-mutating-requests-inflight` (every other request).
//!
//! A request takes a [`Slot`] when its handling starts and gives it back when the slot is
//! dropped; a request that finds its kind's limit reached is answered 429 with
//! `Retry-After: 1`, as upstream's max-in-flight filter answers. Long-running requests
//! (watches, and later exec, attach, logs, port forwarding, proxying) hold a connection for as
//! long as the client wants and are not counted, as upstream. Members of `system:masters` are
//! served even over the limit (upstream: "a system:master is so powerful that they should
//! always get an answer"); they still take a slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
}

impl Default for Limits {
    fn default() -> Self {
        Self { read_only: 400, mutating: 200 }
    }
}

/// The counters of requests in flight, one per [`RequestKind`].
#[derive(Debug)]
pub struct Inflight {
    limits: Limits,
    read_only: Arc<AtomicUsize>,
    mutating: Arc<AtomicUsize>,
}

/// A request's place among those in flight; given back on drop.
#[derive(Debug)]
pub struct Slot {
    counter: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Inflight {
    /// No request in flight yet.
    pub fn new(limits: Limits) -> Self {
        Self { limits, read_only: Arc::default(), mutating: Arc::default() }
    }

    fn counter(&self, kind: RequestKind) -> (&Arc<AtomicUsize>, usize) {
        match kind {
            RequestKind::ReadOnly => (&self.read_only, self.limits.read_only),
            RequestKind::Mutating => (&self.mutating, self.limits.mutating),
        }
    }

    /// Takes a slot of `kind`; `None` when the limit is reached, unless `exempt`.
    pub fn try_acquire(&self, kind: RequestKind, exempt: bool) -> Option<Slot> {
        let (counter, limit) = self.counter(kind);
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (limit == 0 || n < limit || exempt).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot { counter: Arc::clone(counter) })
    }

    /// The requests of `kind` in flight now.
    pub fn current(&self, kind: RequestKind) -> usize {
        self.counter(kind).0.load(Ordering::Acquire)
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
        let inflight = Inflight::new(Limits { read_only: 2, mutating: 1 });
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
        let inflight = Inflight::new(Limits { read_only: 0, mutating: 1 });
        let slots: Vec<_> =
            (0..1000).filter_map(|_| inflight.try_acquire(RequestKind::ReadOnly, false)).collect();
        assert_eq!(slots.len(), 1000);
        let _m = inflight.try_acquire(RequestKind::Mutating, false);
        assert!(inflight.try_acquire(RequestKind::Mutating, false).is_none());
        let over = inflight.try_acquire(RequestKind::Mutating, true);
        assert!(over.is_some());
        assert_eq!(inflight.current(RequestKind::Mutating), 2);
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
