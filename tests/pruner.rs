//! The pruner on tokio's paused time, with a real SQLite file: every kind of personal data goes
//! once it is older than its retention, at the pruner's next round, in batches, and is gone
//! from the database's files; events tapped while the wall time is not known stay until it is;
//! nothing waiting for delivery is ever pruned. And a database from the schema before this one
//! is migrated, rewritten once, and its first prune erases what the new retention no longer
//! allows.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{TestDir, assert_found, found_in_files, id_forms};
use gym_checkin::clock::{Clock, SteadyMs, TokioSource, TrustRule, WallMs, boot_reading};
use gym_checkin::daemon::pruner::{self, PRUNE_BATCH, PRUNE_INTERVAL, Pruner, Retention};
use gym_checkin::events::{Event, Listeners, Pruned, Sink};
use gym_checkin::liveness::Pulse;
use gym_checkin::recorder::Recorder;
use gym_checkin::store::{Answer, Batch, NewEvent, Store, Subject, TimeQuality};
use gym_checkin::visit::{CheckIn, Kind, Membership, after_event};
use tokio::sync::{mpsc, watch};

/// 2026-12-01T00:00:00Z.
const START: i64 = 1_796_083_200_000;
const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const MINUTE: Duration = Duration::from_secs(60);

const RETENTION: Retention = Retention {
    delivered: Duration::from_secs(30 * 86_400),
    rejected: Duration::from_secs(30 * 86_400),
    unknown: Duration::from_secs(7 * 86_400),
    account_cache: Duration::from_secs(12 * 3600),
    closed_visits: Duration::from_secs(3600),
};

/// A store, its clock (trusted while `flag` exists, which it does not yet) and the recorder,
/// on paused time.
struct Desk {
    dir: TestDir,
    store: Store,
    source: Arc<TokioSource>,
    clock: Clock,
    flag: &'static Path,
}

impl Desk {
    async fn open(name: &str) -> Desk {
        let dir = TestDir::new(name);
        let store = Store::open_for_paused_time(&dir.path("outbox.db"))
            .await
            .unwrap();
        let flag = Path::new("/run/gym-checkin-test/synchronized");
        let rule = TrustRule::File(flag.into());
        let source = Arc::new(TokioSource::new(START, 5_000, "paused"));
        let (reading, _) = boot_reading(source.as_ref(), &rule);
        let (boot, _) = store.register_boot(reading).await.unwrap();
        let clock = Clock::on_tokio(source.clone(), rule, boot);
        Desk {
            dir,
            store,
            source,
            clock,
            flag,
        }
    }

    fn db(&self) -> std::path::PathBuf {
        self.dir.path("outbox.db")
    }

    fn trust(&self) {
        self.source.manual().set_path(self.flag, true);
        assert!(self.clock.refresh().trust.trusted);
    }

    /// Records a tap of `tag` made `ago_ms` before now (by wall and steady time alike); its id.
    async fn tap(&self, tag: &str, kind: Kind, ago_ms: i64) -> i64 {
        let now = self.clock.now();
        let steady = SteadyMs::from_millis(now.steady.as_millis() - ago_ms);
        let at = WallMs::from_millis(START - ago_ms);
        let event = NewEvent {
            reader: "entrance".into(),
            raw_id: tag.trim_start_matches("0x").into(),
            tag: tag.into(),
            tag_format: None,
            kind,
            tapped_at: at,
            tapped_steady: steady,
            boot: self.clock.boot().id,
            time: TimeQuality::Trusted,
            automatic: false,
        };
        let state = after_event(
            kind,
            CheckIn {
                steady,
                at: Some(at),
            },
        );
        let batch = Batch::of(vec![(event, state)], at);
        self.store.record_batch(batch).await.unwrap().ids[0]
    }

    async fn delivered(&self, tag: &str, account: &str, ago_ms: i64) -> i64 {
        self.delivered_as(Kind::CheckIn, tag, account, ago_ms).await
    }

    async fn delivered_as(&self, kind: Kind, tag: &str, account: &str, ago_ms: i64) -> i64 {
        let id = self.tap(tag, kind, ago_ms).await;
        let at = WallMs::from_millis(START - ago_ms);
        self.store
            .mark_delivered(id, account.into(), 204, at)
            .await
            .unwrap();
        id
    }

    async fn rejected(&self, tag: &str, ago_ms: i64, unknown: bool) -> i64 {
        let id = self.tap(tag, Kind::CheckIn, ago_ms).await;
        let at = WallMs::from_millis(START - ago_ms);
        let answer = Answer {
            status: Some(if unknown { 404 } else { 422 }),
            error_code: Some(if unknown { "RFID" } else { "invalidTimestamp" }.into()),
            message: "refused".into(),
        };
        if unknown {
            let steady = self.clock.now().steady;
            self.store
                .mark_unknown_tag(id, steady, steady, answer.clone())
                .await
                .unwrap();
        }
        self.store.mark_rejected(id, answer, at).await.unwrap();
        id
    }

    /// Caches a lookup of `tag` made `ago_ms` before now.
    async fn cached(&self, tag: &str, account: &str, ago_ms: i64) {
        let steady = SteadyMs::from_millis(self.clock.now().steady.as_millis() - ago_ms);
        self.store
            .cache_account(
                tag.into(),
                None,
                Some((account.into(), Membership::Other)),
                steady,
            )
            .await
            .unwrap();
    }

    async fn kept(&self, ids: &[i64]) -> usize {
        let mut n = 0;
        for id in ids {
            n += usize::from(self.store.event(*id).await.unwrap().is_some());
        }
        n
    }

    /// Starts the recorder (on the visit state stored now) and the pruner.
    async fn start(&self) -> Running {
        let heard = Sink::default();
        let listeners = Listeners::unheard().with_sink(heard.clone());
        let recorder = Recorder::new(
            self.store.clone(),
            self.clock.clone(),
            Duration::from_secs(120),
            None,
            Arc::new(watch::channel(0).0),
            listeners.clone(),
        )
        .await
        .unwrap();
        let handle = recorder.requests();
        let (stop, stopping) = watch::channel(false);
        let (taps, tap_queue) = mpsc::channel(16);
        let (_corrections, corrections_in) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(recorder.run(
            tap_queue,
            corrections_in,
            stopping.clone(),
            Pulse::unwatched(),
        ));
        let pruner = tokio::spawn(pruner::run(
            Pruner {
                store: self.store.clone(),
                clock: self.clock.clone(),
                recorder: handle,
                retention: RETENTION,
                listeners,
            },
            stopping,
        ));
        Running {
            heard,
            stop,
            _taps: taps,
            tasks: vec![recorder, pruner],
        }
    }
}

struct Running {
    heard: Sink,
    stop: watch::Sender<bool>,
    _taps: mpsc::Sender<gym_checkin::reader::ReaderMessage>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    fn rounds(&self) -> Vec<Pruned> {
        self.heard
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Pruned(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_kind_of_personal_data_goes_once_older_than_its_retention() {
    let desk = Desk::open("pruner-kinds").await;
    // Delivered: more than a batch 31 days ago, some 29 days and 12 hours ago.
    let mut old_delivered = Vec::new();
    for i in 0..PRUNE_BATCH + 20 {
        old_delivered.push(
            desk.delivered(&format!("0x0A{i:08X}"), "acc-old", 31 * DAY)
                .await,
        );
    }
    let recent_delivered = desk
        .delivered("0x0B00000001", "acc-recent", 29 * DAY + 12 * HOUR)
        .await;
    // Rejected by EGYM: 31 and 28 days ago. Of cards EGYM never knew: 8 and 6 days ago.
    let old_rejected = desk.rejected("0x0C00000001", 31 * DAY, false).await;
    let recent_rejected = desk.rejected("0x0C00000002", 28 * DAY, false).await;
    let old_unknown = desk.rejected("0x0D00000001", 8 * DAY, true).await;
    let recent_unknown = desk.rejected("0x0D00000002", 6 * DAY, true).await;
    // Still waiting for delivery after 40 days: never pruned.
    let pending = desk.tap("0x0E00000001", Kind::CheckIn, 40 * DAY).await;
    // Lookups cached 13 hours and 11 hours ago.
    desk.cached("0x0F00000001", "acc-cached-old", 13 * HOUR)
        .await;
    desk.cached("0x0F00000002", "acc-cached-new", 11 * HOUR)
        .await;
    // Visit state: a member inside for two hours, one out for two hours, one out for 30 minutes.
    desk.tap("0x1000000001", Kind::CheckIn, 2 * HOUR).await;
    desk.tap("0x1000000002", Kind::CheckOut, 2 * HOUR).await;
    desk.tap("0x1000000003", Kind::CheckOut, 30 * 60_000).await;
    let visits = || async { desk.store.visits().await.unwrap() };
    let running = desk.start().await;

    // The clock is not trusted: no event goes, however old it looks; what is counted in steady
    // time (cached lookups, visit state) goes at the first round.
    tokio::time::sleep(MINUTE).await;
    assert_eq!(desk.kept(&old_delivered).await, old_delivered.len());
    assert_eq!(desk.kept(&[old_rejected, old_unknown]).await, 2);
    let cached = |tag: &'static str| {
        let store = desk.store.clone();
        async move { store.cached_account(tag.into(), None).await.unwrap() }
    };
    assert_eq!(cached("0x0F00000001").await, None);
    assert!(cached("0x0F00000002").await.is_some());
    let left = visits().await;
    assert!(left.contains_key("0x1000000001"), "inside: kept while open");
    assert!(!left.contains_key("0x1000000002"), "outside for 2 h: gone");
    assert!(
        left.contains_key("0x1000000003"),
        "outside for 30 min: kept"
    );
    assert_eq!(
        running.rounds(),
        [Pruned {
            accounts: 1,
            visits: 1,
            log_emptied: true,
            ..Pruned::default()
        }]
    );

    // Trusted: the next round deletes every event past its retention, in batches.
    desk.trust();
    tokio::time::sleep(PRUNE_INTERVAL).await;
    assert_eq!(desk.kept(&old_delivered).await, 0);
    assert_eq!(desk.kept(&[old_rejected, old_unknown]).await, 0);
    assert_eq!(
        desk.kept(&[recent_delivered, recent_rejected, recent_unknown, pending])
            .await,
        4
    );
    assert_eq!(
        running.rounds()[1],
        Pruned {
            delivered: (PRUNE_BATCH + 20) as u64,
            rejected: 1,
            unknown: 1,
            visits: 1,
            log_emptied: true,
            ..Pruned::default()
        },
        "with the visit of 30 minutes ago, now 90 minutes old"
    );

    // A day on, the recent ones are past their retention too; the pending one stays.
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert_eq!(
        desk.kept(&[recent_delivered, recent_rejected, recent_unknown])
            .await,
        1,
        "the rejected one of 28 days ago is 29 days old"
    );
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert_eq!(
        desk.kept(&[recent_delivered, recent_rejected, recent_unknown])
            .await,
        0
    );
    assert!(
        desk.store.event(pending).await.unwrap().is_some(),
        "not delivered"
    );
    assert!(visits().await.contains_key("0x1000000001"), "still inside");
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pruned_data_is_gone_from_the_database_files() {
    let desk = Desk::open("pruner-files").await;
    const CARD: &str = "0x5A17C39E42";
    const ACCOUNT: &str = "acc-7f3e91d2";
    // Others' taps around the card's, as in a real outbox.
    for i in 0..300 {
        desk.delivered(&format!("0x0A{i:08X}"), &format!("acc-{i}"), 20 * DAY - i)
            .await;
    }
    // The card's visits, the last one over 31 days ago.
    for (kind, ago) in [
        (Kind::CheckIn, 40 * DAY),
        (Kind::CheckOut, 40 * DAY - 2 * HOUR),
        (Kind::CheckIn, 31 * DAY),
        (Kind::CheckOut, 31 * DAY - 2 * HOUR),
    ] {
        desk.delivered_as(kind, CARD, ACCOUNT, ago).await;
    }
    desk.cached(CARD, ACCOUNT, 2 * DAY).await;
    for i in 300..600 {
        desk.delivered(&format!("0x0A{i:08X}"), &format!("acc-{i}"), 10 * DAY - i)
            .await;
    }
    let forms = id_forms(CARD, ACCOUNT);
    assert_found(&desk.db(), &forms);
    desk.trust();
    let running = desk.start().await;
    tokio::time::sleep(MINUTE).await;
    assert_eq!(running.rounds().len(), 1);
    assert_eq!(
        (
            running.rounds()[0].delivered,
            running.rounds()[0].accounts,
            running.rounds()[0].visits
        ),
        (4, 1, 1)
    );
    assert!(running.rounds()[0].log_emptied);
    assert_eq!(found_in_files(&desk.db(), &forms), Vec::<String>::new());
    // The others' recent events are all there.
    let held = desk
        .store
        .holdings(Subject::card("0x0A00000150").unwrap())
        .await
        .unwrap();
    assert_eq!(held.events, 1);
    running.stop().await;
}
