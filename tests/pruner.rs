//! The pruner on tokio's paused time, with a real SQLite file: delivered events go once they are
//! older than `keep-delivered`, at the pruner's next round, in batches; nothing goes while the
//! wall clock is not trusted, nor anything not yet delivered.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{TestDir, entrance_tap};
use gym_checkin::clock::{Clock, TokioSource, TrustRule, WallMs, boot_reading};
use gym_checkin::daemon::pruner::{self, PRUNE_BATCH, PRUNE_INTERVAL};
use gym_checkin::store::Store;
use gym_checkin::visit::Kind;
use tokio::sync::watch;

/// 2026-12-01T00:00:00Z.
const START: i64 = 1_796_083_200_000;
const DAY: i64 = 86_400_000;
const KEEP: Duration = Duration::from_secs(30 * 86_400);
const MINUTE: Duration = Duration::from_secs(60);

/// Records `n` events tapped at `at_ms` and marks them delivered then; their ids.
async fn delivered(store: &Store, n: usize, at_ms: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let tag = format!("0x{i:08X}");
        let (event, state) = entrance_tap(&tag, Kind::CheckIn, at_ms);
        let at = WallMs::from_millis(at_ms);
        let id = store.record_event(event, state, at).await.unwrap();
        store
            .mark_delivered(id, "acc".into(), 204, at)
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

async fn kept(store: &Store, ids: &[i64]) -> usize {
    let mut n = 0;
    for id in ids {
        n += usize::from(store.event(*id).await.unwrap().is_some());
    }
    n
}

#[tokio::test(start_paused = true)]
async fn delivered_events_go_once_older_than_keep_delivered_at_the_next_hourly_round() {
    let dir = TestDir::new("pruner");
    let store = Store::open_for_paused_time(&dir.path("outbox.db"))
        .await
        .unwrap();
    let flag = Path::new("/run/gym-checkin-test/synchronized");
    let rule = TrustRule::File(flag.into());
    let source = Arc::new(TokioSource::new(START, 5_000, "paused"));
    let (reading, _) = boot_reading(source.as_ref(), &rule);
    let (boot, _) = store.register_boot(reading).await.unwrap();
    let clock = Clock::on_tokio(source.clone(), rule, boot);
    // More than a batch delivered 31 days ago; some 29 days and 12 hours ago; one pending.
    let old = delivered(&store, PRUNE_BATCH + 20, START - 31 * DAY).await;
    let recent = delivered(&store, 5, START - 29 * DAY - DAY / 2).await;
    let (event, state) = entrance_tap("0xAB", Kind::CheckIn, START - 40 * DAY);
    let pending = store
        .record_event(event, state, WallMs::from_millis(START))
        .await
        .unwrap();

    let (stop, stopping) = watch::channel(false);
    let pruner = tokio::spawn(pruner::run(store.clone(), clock.clone(), KEEP, stopping));
    // The clock is not trusted: nothing goes, however old it looks.
    tokio::time::sleep(PRUNE_INTERVAL * 2 + MINUTE).await;
    assert_eq!(kept(&store, &old).await, old.len());

    // Trusted: the next round deletes every old delivered event, in batches. (The test looks a
    // minute after each round: a round and the test's timer due at one instant would race.)
    source.manual().set_path(flag, true);
    assert!(clock.refresh().trust.trusted);
    tokio::time::sleep(PRUNE_INTERVAL + MINUTE).await;
    assert_eq!(kept(&store, &old).await, 0);
    assert_eq!(kept(&store, &recent).await, recent.len());
    assert!(
        store.event(pending).await.unwrap().is_some(),
        "not delivered"
    );

    // Twelve hours on, the recent ones are 30 days old too.
    tokio::time::sleep(Duration::from_secs(12 * 3600) + PRUNE_INTERVAL).await;
    assert_eq!(kept(&store, &recent).await, 0);
    assert!(
        store.event(pending).await.unwrap().is_some(),
        "not delivered"
    );
    stop.send(true).unwrap();
    pruner.await.unwrap();
}
