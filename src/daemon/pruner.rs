//! The pruner: keeps personal data no longer than its retention, once at start and then every
//! [`PRUNE_INTERVAL`] of steady time.
//!
//! - Finished events, by how long ago they were tapped: delivered ones after `keep-delivered`,
//!   rejected ones after `keep-rejected`, those of cards EGYM never knew (with the id as read,
//!   whose renderings say whose card it may be) after `keep-unknown`. Their tap times are wall
//!   times, so they are pruned while the wall time is known (trusted, or counted from a trusted
//!   reading in this boot); an untrusted clock could make everything look old. An event still
//!   waiting for delivery is never pruned: only `gym-checkin forget` erases it.
//! - Cached lookups once they are older than `account-cache-ttl` (they would not be trusted
//!   any more), and the visit state of members who are outside once `keep-closed` has passed
//!   since their last tap (the recorder, its owner, forgets it): both in steady time.
//!
//! Each is deleted in batches of [`PRUNE_BATCH`], each batch one job of the database thread, so
//! a tap waits behind one batch at most; the write-ahead log is emptied after a round that
//! deleted anything. A round that deleted something says so in one line (`event=pruned`).

use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use crate::clock::{Clock, timer};
use crate::events::{Listeners, Pruned};
use crate::recorder::RecorderHandle;
use crate::store::{PruneClass, Store, StoreError};

/// A prune round runs this often.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// Rows deleted per job of the database thread; a tap waits for at most one such batch.
pub const PRUNE_BATCH: usize = 500;

/// How long each kind of personal data is kept (see the module's note).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub delivered: Duration,
    pub rejected: Duration,
    pub unknown: Duration,
    pub account_cache: Duration,
    pub closed_visits: Duration,
}

impl Retention {
    fn of(&self, class: PruneClass) -> Duration {
        match class {
            PruneClass::Delivered => self.delivered,
            PruneClass::Rejected => self.rejected,
            PruneClass::Unknown => self.unknown,
        }
    }
}

/// What the pruner works with.
#[derive(Clone, Debug)]
pub struct Pruner {
    pub store: Store,
    pub clock: Clock,
    pub recorder: RecorderHandle,
    pub retention: Retention,
    pub listeners: Listeners,
}

/// Prunes now, then every [`PRUNE_INTERVAL`], until `stopping` turns true.
pub async fn run(pruner: Pruner, mut stopping: watch::Receiver<bool>) {
    loop {
        match round(&pruner, &stopping).await {
            Ok(pruned) if pruned.total() > 0 => pruned.emit(&pruner.listeners),
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "cannot prune what is kept past its retention; trying again at the next round");
            }
        }
        tokio::select! {
            () = timer::sleep(PRUNE_INTERVAL) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// One round: every kind of data past its retention, batch after batch; stops early (with what
/// it did) when `stopping` turns true.
pub async fn round(
    pruner: &Pruner,
    stopping: &watch::Receiver<bool>,
) -> Result<Pruned, StoreError> {
    let Pruner {
        store,
        clock,
        recorder,
        retention,
        ..
    } = pruner;
    let stop = || *stopping.borrow();
    let mut pruned = Pruned::default();
    let now = clock.now();
    if now.wall_known() {
        for class in PruneClass::ALL {
            let before = now.wall - retention.of(class);
            let count = match class {
                PruneClass::Delivered => &mut pruned.delivered,
                PruneClass::Rejected => &mut pruned.rejected,
                PruneClass::Unknown => &mut pruned.unknown,
            };
            while !stop() {
                let n = store.prune_events(class, before, PRUNE_BATCH).await?;
                *count += n as u64;
                if n < PRUNE_BATCH {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
    }
    let before = now.steady - retention.account_cache;
    while !stop() {
        let n = store.prune_accounts(before, PRUNE_BATCH).await?;
        pruned.accounts += n as u64;
        if n < PRUNE_BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    let before = now.steady - retention.closed_visits;
    while !stop() {
        let n = recorder.forget_closed_visits(before, PRUNE_BATCH).await?;
        pruned.visits += n as u64;
        if n < PRUNE_BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    if pruned.total() > 0 {
        pruned.log_emptied = store.empty_log().await?;
    }
    Ok(pruned)
}
