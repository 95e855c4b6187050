//! The pruner: deletes delivered events once they are older than `keep-delivered`, every hour,
//! in small batches, while the wall clock is trusted (an untrusted one could make everything
//! look old).

use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use crate::clock::{Clock, WallTime, timer};
use crate::store::Store;

/// Delivered events past `keep-delivered` are deleted this often.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// Delivered events deleted per transaction when pruning; a tap waits for at most one such batch.
pub const PRUNE_BATCH: usize = 500;

/// Prunes now, then every [`PRUNE_INTERVAL`], until `stopping` turns true.
pub async fn run(
    store: Store,
    clock: Clock,
    keep_delivered: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        let now = clock.now();
        if now.wall_is == WallTime::Trusted {
            let before = now.wall - keep_delivered;
            loop {
                match store.prune_delivered(before, PRUNE_BATCH).await {
                    Ok(n) if n == PRUNE_BATCH => tokio::task::yield_now().await,
                    Ok(_) => break,
                    Err(e) => {
                        warn!(error = %e, "cannot prune delivered events");
                        break;
                    }
                }
            }
        }
        tokio::select! {
            () = timer::sleep(PRUNE_INTERVAL) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}
