//! Which revision readers see, and the wait for an acknowledged write to become visible.
//!
//! A batch is answered as soon as its record is durable in the write-ahead log; redb's commit,
//! which makes it visible to readers, comes later (the writer keeps its transaction open for
//! the batches that follow closely). So that a client never reads older state than a write it
//! was told about (nor a revision it cannot list at), every read first waits until the
//! revision visible in redb has reached the last one acknowledged when the read began, asking
//! the writer to commit at once ([`Visibility::ask_commit`]): microseconds, one redb commit.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::{Result, Revision, StoreError};

/// The longest a read waits for acknowledged writes to become visible (normally microseconds;
/// longer only while the store file is reopened after an I/O failure, which replays them).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);

/// The acknowledged and the visible revision.
#[derive(Debug)]
pub(super) struct Visibility {
    acknowledged: AtomicI64,
    visible: AtomicI64,
    published: Notify,
    /// A reader has asked the writer to commit, and no commit has happened since.
    commit_asked: AtomicBool,
}

impl Visibility {
    /// Everything up to `revision` is acknowledged and visible.
    pub fn new(revision: Revision) -> Self {
        Self {
            acknowledged: AtomicI64::new(revision),
            visible: AtomicI64::new(revision),
            published: Notify::new(),
            commit_asked: AtomicBool::new(false),
        }
    }

    /// Writes up to `revision` are durable and about to be answered.
    pub fn acknowledge(&self, revision: Revision) {
        self.acknowledged.fetch_max(revision, Ordering::AcqRel);
    }

    /// Writes up to `revision` are visible in the store file.
    pub fn publish(&self, revision: Revision) {
        self.acknowledged.fetch_max(revision, Ordering::AcqRel);
        self.visible.store(revision, Ordering::Release);
        // Every write acknowledged before a reader asked is visible now: the writer
        // acknowledges and commits on one thread, so this commit holds them all.
        self.commit_asked.store(false, Ordering::Release);
        self.published.notify_waiters();
    }

    /// The writer found nothing to commit when asked: every acknowledged write is visible, so
    /// the next reader may ask again.
    pub fn commit_not_needed(&self) {
        self.commit_asked.store(false, Ordering::Release);
    }

    /// Whether the caller, about to wait for acknowledged writes, should ask the writer to
    /// commit them: some are not visible, and nobody has asked since the last commit.
    pub fn ask_commit(&self) -> bool {
        self.acknowledged() > self.visible() && !self.commit_asked.swap(true, Ordering::AcqRel)
    }

    /// The last revision acknowledged to a writer.
    pub fn acknowledged(&self) -> Revision {
        self.acknowledged.load(Ordering::Acquire)
    }

    /// The revision readers see now.
    pub fn visible(&self) -> Revision {
        self.visible.load(Ordering::Acquire)
    }

    /// Waits until every write acknowledged before the call is visible; returns the visible
    /// revision then.
    pub async fn caught_up(&self) -> Result<Revision> {
        self.caught_up_within(CATCH_UP_LIMIT).await
    }

    /// [`Visibility::caught_up`], failing after `limit`.
    async fn caught_up_within(&self, limit: Duration) -> Result<Revision> {
        let wanted = self.acknowledged.load(Ordering::Acquire);
        let visible = self.visible();
        if visible >= wanted {
            return Ok(visible);
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let published = self.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            let visible = self.visible();
            if visible >= wanted {
                return Ok(visible);
            }
            if tokio::time::timeout_at(deadline, published).await.is_err() {
                return Err(StoreError::Backend {
                    message: format!(
                        "acknowledged writes up to revision {wanted} are not readable yet \
                         (readable: {visible}); the store file is being reopened"
                    ),
                    source: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn reads_wait_for_acknowledged_writes_only() {
        let visibility = Arc::new(Visibility::new(3));
        assert_eq!(visibility.caught_up().await.expect("nothing pending"), 3);
        visibility.acknowledge(5);
        let waiting = tokio::spawn({
            let visibility = Arc::clone(&visibility);
            async move { visibility.caught_up().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        visibility.publish(4);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "revision 5 is not visible yet");
        // A write acknowledged after the read began is not waited for.
        visibility.acknowledge(6);
        visibility.publish(5);
        assert_eq!(waiting.await.expect("task").expect("caught up"), 5);
    }

    #[test]
    fn one_reader_asks_for_a_commit_until_the_next_commit() {
        let visibility = Visibility::new(1);
        assert!(!visibility.ask_commit(), "nothing acknowledged is hidden");
        visibility.acknowledge(2);
        assert!(visibility.ask_commit());
        assert!(!visibility.ask_commit(), "the writer was asked already");
        visibility.publish(2);
        visibility.acknowledge(3);
        assert!(visibility.ask_commit(), "a commit came since: ask again");
        assert!(!visibility.ask_commit());
        visibility.commit_not_needed();
        assert!(visibility.ask_commit(), "the writer had nothing open: ask again");
    }

    #[tokio::test]
    async fn a_write_that_never_becomes_visible_fails_the_read() {
        let visibility = Visibility::new(1);
        visibility.acknowledge(2);
        let error = visibility
            .caught_up_within(Duration::from_millis(30))
            .await
            .expect_err("never visible");
        assert!(error.to_string().contains("not readable yet"), "{error}");
    }
}
