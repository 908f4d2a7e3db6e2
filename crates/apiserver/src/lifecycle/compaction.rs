//! Periodic compaction, as upstream's apiserver does it: each interval, drop history older
//! than the revision seen one interval earlier.

use std::sync::Arc;
use std::time::Duration;

use krust_store::Store;

/// Compacts `store` every `interval`, to the revision of the previous tick.
pub async fn run(store: Arc<dyn Store>, interval: Duration) {
    let mut previous = None;
    let mut compacted = 0;
    loop {
        tokio::time::sleep(interval).await;
        let current = match store.current_revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the revision for compaction");
                continue;
            }
        };
        if let Some(target) = previous.filter(|p| *p > compacted) {
            match store.compact(target).await {
                Ok(()) => {
                    compacted = target;
                    tracing::debug!(revision = target, "compacted");
                }
                Err(e) => tracing::warn!(error = %e, revision = target, "compaction failed"),
            }
        }
        previous = Some(current);
    }
}
