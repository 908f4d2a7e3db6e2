//! What a connection is doing, for its time limits: requests in flight, when the last one
//! ended, and since when an HTTP/1 request's head has been arriving.
//!
//! As upstream's Go server, an HTTP/1 connection waits for its next request for the idle
//! limit (90 s), and only once the request's first byte has arrived does the head limit (32 s)
//! run; the first request's head is timed from the connection's start. hyper's own header
//! timer cannot tell the two apart (it runs while a kept-alive connection idles), so the timer
//! is kept here: [`Watched`] notes the first byte read while no request is in flight, and
//! [`Activity::begin`] (hyper calls the service once the head is read) clears it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The first bytes of an HTTP/2 connection without TLS's protocol negotiation.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// When a connection last had a request in flight, how many it has now, and since when a
/// request's head has been arriving.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    active: AtomicUsize,
    /// Milliseconds from `opened` to the end of the last request.
    last_ms: AtomicU64,
    /// Milliseconds from `opened` to the first byte of a head not read whole yet, plus one
    /// (zero: no head arriving).
    head_since_ms: AtomicU64,
    /// Told when a head starts arriving (the deadlines changed).
    pub head_started: Notify,
    /// How many bytes of [`HTTP2_PREFACE`] the connection's first bytes matched: all of them
    /// for HTTP/2 (negotiated or not), whose heads are not timed here; [`HTTP1`] once they did
    /// not match.
    preface_matched: AtomicUsize,
}

/// [`Activity::preface_matched`] of a connection known to speak HTTP/1.
const HTTP1: usize = usize::MAX;

/// One request in flight on a connection; held until its response body is done.
#[derive(Debug)]
pub struct Active(Arc<Activity>);

impl Activity {
    /// A connection opened now; `http1` when its first head is timed from now (HTTP/1, or
    /// not known yet).
    pub fn new(http1: bool) -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            active: AtomicUsize::new(0),
            last_ms: 0.into(),
            head_since_ms: AtomicU64::new(u64::from(http1)),
            head_started: Notify::new(),
            preface_matched: AtomicUsize::new(if http1 { 0 } else { HTTP2_PREFACE.len() }),
        })
    }

    /// A request's head was read: it is in flight until the returned guard drops.
    pub fn begin(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.head_since_ms.store(0, Ordering::Release);
        Active(Arc::clone(self))
    }

    /// When the connection counts as idle for `limit`: `None` while a request is in flight
    /// or a head is arriving.
    pub fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 || self.head_since_ms.load(Ordering::Acquire) > 0
        {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        Some(self.opened + last + limit)
    }

    /// When the head now arriving must be read whole, if one is arriving.
    pub fn head_deadline(&self, limit: Duration) -> Option<Instant> {
        match self.head_since_ms.load(Ordering::Acquire) {
            0 => None,
            since => Some(self.opened + Duration::from_millis(since - 1) + limit),
        }
    }

    /// Bytes arrived: the first of them while no request is in flight starts a head.
    fn received(&self, bytes: &[u8]) {
        // Only the connection's task reads: this needs no stronger ordering.
        let matched = self.preface_matched.load(Ordering::Relaxed);
        if bytes.is_empty() || matched == HTTP2_PREFACE.len() {
            return;
        }
        if matched < HTTP2_PREFACE.len() {
            let expected = &HTTP2_PREFACE[matched..];
            let n = expected.len().min(bytes.len());
            if bytes[..n] == expected[..n] {
                self.preface_matched.store(matched + n, Ordering::Relaxed);
                if matched + n == HTTP2_PREFACE.len() {
                    // HTTP/2 chosen without TLS's negotiation: its idle pings are not heads.
                    self.head_since_ms.store(0, Ordering::Release);
                }
                return;
            }
            self.preface_matched.store(HTTP1, Ordering::Relaxed);
        }
        if self.active.load(Ordering::Acquire) == 0
            && self.head_since_ms.load(Ordering::Acquire) == 0
        {
            let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
            let started =
                self.head_since_ms.compare_exchange(0, ms + 1, Ordering::AcqRel, Ordering::Relaxed);
            if started.is_ok() {
                self.head_started.notify_one();
            }
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.fetch_max(ms, Ordering::AcqRel);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's stream that tells its [`Activity`] of the bytes it reads.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.activity.received(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_idle_only_without_requests_and_from_the_last_ones_end() {
        let limit = Duration::from_secs(90);
        let activity = Activity::new(false);
        let opened = activity.opened;
        assert_eq!(activity.idle_deadline(limit), Some(opened + limit));
        let request = activity.begin();
        assert_eq!(activity.idle_deadline(limit), None);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(activity.idle_deadline(limit), None);
        drop(request);
        let deadline = activity.idle_deadline(limit).expect("idle again");
        assert!(deadline >= opened + Duration::from_millis(30) + limit);
        assert!(deadline <= Instant::now() + limit);
    }

    #[tokio::test]
    async fn a_head_is_timed_from_its_first_byte_not_while_idle() {
        let limit = Duration::from_secs(32);
        let activity = Activity::new(true);
        // The first head is timed from the connection's start.
        assert_eq!(activity.head_deadline(limit), Some(activity.opened + limit));
        activity.received(b"GET / HTTP/1.1\r\n");
        assert_eq!(activity.head_deadline(limit), Some(activity.opened + limit));
        let request = activity.begin();
        assert_eq!(activity.head_deadline(limit), None);
        // Bytes while a request is in flight (a pipelined head) start nothing.
        activity.received(b"GET");
        drop(request);
        assert_eq!(activity.head_deadline(limit), None);
        assert!(activity.idle_deadline(limit).is_some());
        tokio::time::sleep(Duration::from_millis(30)).await;
        activity.received(b"GET /api");
        // Waiting for a head is not idling.
        assert_eq!(activity.idle_deadline(limit), None);
        let deadline = activity.head_deadline(limit).expect("a head arriving");
        assert!(deadline >= activity.opened + Duration::from_millis(30) + limit);
        // Later bytes of the same head do not move it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        activity.received(b" HTTP/1.1\r\n");
        assert_eq!(activity.head_deadline(limit), Some(deadline));
    }

    #[test]
    fn http2_without_negotiation_is_not_timed() {
        let activity = Activity::new(true);
        activity.received(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(activity.head_deadline(Duration::from_secs(32)), None);
        // The preface split over reads is recognized too.
        let split = Activity::new(true);
        split.received(b"PRI * HT");
        split.received(b"TP/2.0\r\n");
        assert_eq!(split.head_deadline(Duration::from_secs(32)), None);
        split.received(b"\0\0\0\x04");
        assert_eq!(split.head_deadline(Duration::from_secs(32)), None);
        activity.received(b"\0\0\0\x04");
        assert_eq!(activity.head_deadline(Duration::from_secs(32)), None);
        let h2 = Activity::new(false);
        h2.received(b"\0\0\0\x06");
        assert_eq!(h2.head_deadline(Duration::from_secs(32)), None);
    }
}
